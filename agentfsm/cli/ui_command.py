"""`agentfsm ui`: serve the web UI (the `ui` extra: starlette and uvicorn, imported only here)."""

from __future__ import annotations

from pathlib import Path

from agentfsm.cli import exit_codes
from agentfsm.cli.render import note
from agentfsm.service.errors import InputError


def ui_command(store: str | None, *, host: str, port: int, token: str | None, open_browser: bool) -> int:
    try:
        from agentfsm.web.serve import serve
    except ImportError as exc:
        raise InputError(f"agentfsm ui needs the ui extra ({exc.name} is not installed): "
                         "pip install 'agentfsm[ui]'") from None
    if not 0 <= port <= 65535:
        raise InputError(f"--port: {port} is not a port (0 to 65535; 0 picks a free one)")
    from agentfsm.cli.commands import progress_observers

    # the runs the page starts or continues log with their run context and export spans (--otel), as the CLI's do
    watching = progress_observers(quiet=True, log_steps=False, stream=False)
    serve(store, host=host, port=port, token=token, open_browser=open_browser, root=Path.cwd(), say=note,
          observers=watching)
    return exit_codes.SUCCESS
