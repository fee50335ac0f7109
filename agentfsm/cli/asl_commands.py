"""What `import` does: call the application layer (`agentfsm.service.asl`), print what it returns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from agentfsm.cli import exit_codes
from agentfsm.cli.render import note, say_error


def import_command(file: Path, *, output: Path | None, binds: list[str], as_json: bool) -> int:
    from agentfsm.service.asl import import_file, import_view

    outcome = import_file(file, binds=binds, output=output)
    if as_json:
        typer.echo(json.dumps(import_view(outcome), ensure_ascii=False))
        return exit_codes.SUCCESS if outcome.imported else exit_codes.BAD_INPUT
    if not outcome.imported:
        for refusal in outcome.refusals:
            say_error(f"{file}: {refusal['pointer']}: refused: {refusal['message']}")
        note(f"{file}: not imported ({len(outcome.refusals)} part(s) refused); nothing written")
        return exit_codes.BAD_INPUT
    if outcome.written is None:
        sys.stdout.write(outcome.text or "")
    else:
        note(f"wrote {outcome.written}")
    for line in outcome.notes:
        note(line)
    if outcome.unbound:
        note(f"{len(outcome.unbound)} tool(s) to bind (each fails with tool.unbound until then), with --bind "
             "RESOURCE=python:module:function or by editing tools: in the file:")
        for item in outcome.unbound:
            note(f"  {item['tool']}: {item['resource']}")
    return exit_codes.SUCCESS


def export_command(file: Path, *, output: Path | None, as_json: bool) -> int:
    from agentfsm.service.asl import export_file

    outcome = export_file(file, output=output)
    if as_json:
        typer.echo(json.dumps({"source": str(file), "exported": outcome.text is not None,
                               "written": None if outcome.written is None else str(outcome.written),
                               "refusals": outcome.refusals}, ensure_ascii=False))
        return exit_codes.SUCCESS if outcome.text is not None else exit_codes.BAD_INPUT
    if outcome.text is None:
        for refusal in outcome.refusals:
            say_error(f"{file}: {refusal['pointer']}: refused: {refusal['message']}")
        note(f"{file}: not exported ({len(outcome.refusals)} part(s) refused); nothing written")
        return exit_codes.BAD_INPUT
    if outcome.written is None:
        sys.stdout.write(outcome.text)
    else:
        note(f"wrote {outcome.written}")
    return exit_codes.SUCCESS
