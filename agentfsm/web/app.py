"""The UI's HTTP API (documented in docs/ui.md) and its page: thin handlers over `agentfsm.service`.

Each handler parses the request, calls the application layer (the same calls the CLI makes) and
returns a JSON view from `service/views.py`; a refusal is `{"error": "<the CLI's one line>"}`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentfsm.service import browse, debugging, views
from agentfsm.service.driving import Driver
from agentfsm.service.errors import USER_ERRORS, InputError, MachineFileError, RunNotFound
from agentfsm.service.inputs import checked_data
from agentfsm.service.runs import Runs
from agentfsm.web import live
from agentfsm.web.diagrams import machine_diagram, run_diagram
from agentfsm.web.security import Guard

STATIC = Path(__file__).parent / "static"
Handler = Callable[[Request], Awaitable[Response]]


class UI:
    """What the handlers share: the runs of one store, the driver advancing runs, the folder of machine files."""

    def __init__(self, runs: Runs, root: Path, poll: float, observers: Iterable[object] = ()) -> None:
        self.runs = runs
        self.driver = Driver(runs, observers)
        self.root = root
        self.poll = poll
        self.changes = live.Changes(runs.store.backend, poll)


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_finite(value), status_code=status)


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: such a float is shown as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def refusing(handler: Handler) -> Handler:
    """A refusal becomes `{"error": line}` (404 for a run or step that is not there, 400 otherwise)."""
    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except MachineFileError as exc:
            return _json({"error": str(exc.problems[0]) if exc.problems else str(exc),
                          "problems": [str(found) for found in exc.problems]}, 400)
        except RunNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except USER_ERRORS as exc:
            return _json({"error": str(exc)}, 400)

    return handle


def _ui(request: Request) -> UI:
    return request.app.state.ui  # type: ignore[no-any-return]


def _int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}: '{text}' is not a whole number") from None


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}", parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError("the request's body is nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"the request's body is not JSON: {exc}") from None
    checked_data(body, "the request's body")  # refused here, with a 400, not later in the run's background task
    if not isinstance(body, dict):
        raise InputError("the request's body must be a JSON object")
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# -- reading --------------------------------------------------------------------------------------------------


@refusing
async def list_runs(request: Request) -> Response:
    query = request.query_params
    page = await browse.runs_page(_ui(request).runs, status=query.get("status") or None,
                                  machine=query.get("machine") or None, cursor=query.get("cursor") or None,
                                  limit=_int(request, "limit"))
    return _json(views.runs_page_json(page, time.time()))


@refusing
async def show_run(request: Request) -> Response:
    view = await browse.run_view(_ui(request).runs, request.path_params["run"],
                                 request.query_params.get("branch") or None)
    return _json({**views.run_view_json(view, time.time()), **await run_diagram(_ui(request).runs, view)})


@refusing
async def list_steps(request: Request) -> Response:
    window = await browse.steps_window(_ui(request).runs, request.path_params["run"],
                                       branch=request.query_params.get("branch") or None,
                                       first=_int(request, "first"), limit=_int(request, "limit"))
    return _json(views.steps_window_json(window))


@refusing
async def show_step(request: Request) -> Response:
    view = await browse.step_view(_ui(request).runs, request.path_params["run"], request.path_params["step"],
                                  request.query_params.get("branch") or None)
    return _json(views.step_view_json(view))


@refusing
async def list_machines(request: Request) -> Response:
    return _json({"root": str(_ui(request).root), "files": browse.machine_files(_ui(request).root)})


@refusing
async def show_machine(request: Request) -> Response:
    view = browse.machine_view(_ui(request).root, request.path_params["path"])
    return _json({**views.machine_view_json(view), **machine_diagram(view.spec)})


# -- acting ---------------------------------------------------------------------------------------------------


@refusing
async def send_event(request: Request) -> Response:
    body = await _body(request)
    event = body.get("event")
    if not isinstance(event, str) or not event:
        raise InputError("event: give the event's name")
    run_id = request.path_params["run"]
    await _ui(request).driver.send(run_id, event, body.get("data"))
    return _json(await _run_now(request, run_id))


@refusing
async def resume_run(request: Request) -> Response:
    run_id = request.path_params["run"]
    await _ui(request).driver.resume(run_id)
    return _json(await _run_now(request, run_id))


@refusing
async def cancel_run(request: Request) -> Response:
    run = await _ui(request).runs.cancel(request.path_params["run"])
    return _json({"run": views.listed_run_json(run, time.time())})


@refusing
async def rollback_run(request: Request) -> Response:
    body = await _body(request)
    to = body.get("to")
    if not isinstance(to, str | int) or isinstance(to, bool) or to == "":
        raise InputError("to: give a step number, a checkpoint name, state:NAME or start")
    branch = body.get("branch") or None
    if branch is not None and not isinstance(branch, str):
        raise InputError("branch: give the new branch's name as text")
    made = await _ui(request).driver.rollback(request.path_params["run"], str(to), branch=branch,
                                             resume=bool(body.get("resume")))
    return _json({**views.rollback_json(made), **await _run_now(request, made.run_id)})


@refusing
async def start_run(request: Request) -> Response:
    from agentfsm.service.machines import load_machine

    ui = _ui(request)
    body = await _body(request)
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise InputError("inputs: give a JSON object of input names to values")
    machine = load_machine(browse.machine_path(ui.root, request.path_params["path"]))
    machine.new_context(inputs)  # the machine's own check: unknown, missing or ill-typed inputs (as `run`)
    run_id = await ui.driver.start(machine, inputs)
    return _json(await _run_now(request, run_id))


@refusing
async def change_breakpoints(request: Request) -> Response:
    """`{"breakpoint": "STATE[:GUARD]"}` sets one on the run (as `agentfsm break RUN STATE`); with `"remove": true`
    drops it (as `--remove`). Answers the run's breakpoints: `kept` (set on the run), `all` (the file's too)."""
    body = await _body(request)
    text = body.get("breakpoint")
    if not isinstance(text, str) or not text.strip():
        raise InputError("breakpoint: give a state, or STATE:GUARD")
    runs = _ui(request).runs
    change = debugging.remove_breakpoint if body.get("remove") else debugging.set_breakpoint
    run = await change(runs, request.path_params["run"], text)
    return _json({"kept": run.breakpoints, "all": await debugging.breakpoints_of(runs, run.id)})


async def _run_now(request: Request, run_id: str) -> dict[str, Any]:
    return {"run": views.listed_run_json(await _ui(request).runs.get(run_id), time.time())}


# -- the page -------------------------------------------------------------------------------------------------


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


_PAGE_HEADERS = {
    # the page loads nothing from elsewhere and runs only its own scripts: a value that slipped into markup
    # could not run (no inline script) nor reach another host
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def create_app(runs: Runs, *, root: Path, token: str | None = None, loopback_only: bool = True,
               poll: float = live.POLL, observers: Iterable[object] = ()) -> Guard:
    """The UI over `runs`, machine files from `root`; `token` (if any) is needed by every request; `observers`
    watch the runs it starts and continues."""
    ui = UI(runs, root, poll, observers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await ui.changes.close()
        await ui.driver.close()

    app = Starlette(routes=[
        Route("/", page),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}", show_run),
        Route("/api/runs/{run}/steps", list_steps),
        Route("/api/runs/{run}/steps/{step:int}", show_step),
        Route("/api/runs/{run}/send", send_event, methods=["POST"]),
        Route("/api/runs/{run}/resume", resume_run, methods=["POST"]),
        Route("/api/runs/{run}/cancel", cancel_run, methods=["POST"]),
        Route("/api/runs/{run}/rollback", rollback_run, methods=["POST"]),
        Route("/api/runs/{run}/breakpoints", change_breakpoints, methods=["POST"]),
        Route("/api/machines", list_machines),
        Route("/api/machines/{path:path}/start", start_run, methods=["POST"]),
        Route("/api/machines/{path:path}", show_machine),
        Route("/api/live/runs", live.runs_stream),
        Route("/api/live/runs/{run}", live.run_stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    app.state.ui = ui
    return Guard(app, token=token, loopback_only=loopback_only)
