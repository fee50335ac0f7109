"""How `agentfsm` reads its command line and ends: plain help (`RUN EVENT`, `--limit N`, flags bare), usage errors
as one line, global options in either place, and a quiet end when the reader of stdout goes away.

Only typer is imported here: `agentfsm --help` and `validate` stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from agentfsm.cli import exit_codes


def _argument_name(param: Any) -> str:
    """`RUN`, `FILE...`: the argument's metavar, as classic CLI help writes it (typer 0.29 writes `{RUN}`)."""
    name = param.metavar or param.name.upper()
    return f"{name}..." if param.nargs != 1 else name


class PlainCommand(TyperCommand):
    """A command whose help reads like usual CLI help: `agentfsm send [OPTIONS] RUN EVENT`, arguments listed
    without a type (`RUN`, not `RUN <str>`). Options keep click's plain records: their metavar (`--limit N`, set
    in app.py), nothing after a flag."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = [param for param in self.get_params(ctx) if not param.hidden]
        arguments = [(_argument_name(p), p.help or "") for p in params if isinstance(p, TyperArgument)]
        records = [p.get_help_record(ctx) for p in params if not isinstance(p, TyperArgument)]
        options = [record for record in records if record is not None]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
        if ctx.parent is not None:  # the global options work after the command too (lift_global_options)
            found = [option.get_help_record(ctx.parent) for option in _global_options(ctx.parent.command)]
            lifted = [record for record in found if record is not None]
            if lifted:
                with formatter.section("Global options (before or after the command)"):
                    formatter.write_dl(lifted)


class PlainGroup(TyperGroup):
    """The top-level help: each command with the whole first sentence of its help (click would cut it at ~60
    characters with `...`)."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            found = self.get_command(ctx, name)
            if found is not None and not found.hidden:
                rows.append((name, found.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    # typer's own handling of a closed pipe (click's) exits 1; these two calls are where it would see one
    def make_context(self, *args: Any, **kwargs: Any) -> Any:  # parses: `--help` and `--version` print here
        with _closed_stdout_ends_the_command():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:  # runs the command (and `CMD --help`)
        with _closed_stdout_ends_the_command():
            return super().invoke(ctx)


class _StdoutClosed(Exception):
    """The reader of stdout went away (`agentfsm runs | head -1`): the end of the command, not an error.

    Not an OSError, so that typer passes it on to `run` instead of handling the BrokenPipeError itself."""


@contextmanager
def _closed_stdout_ends_the_command() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise _StdoutClosed from None


def _stop_writing_to_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it once more at exit, and that flush must not meet the closed
    pipe again (it would print "Exception ignored ... BrokenPipeError" and exit 120)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing flushes to a pipe
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def _global_options(group: Any) -> list[Any]:
    """The group's options that may also come after the command: all but the eager ones (`--help`, `--version`,
    which act on their own where they stand)."""
    return [param for param in getattr(group, "params", []) if param.param_type_name == "option"
            and not param.is_eager]


def _by_name(options: list[Any]) -> dict[str, Any]:
    return {name: option for option in options for name in (*option.opts, *option.secondary_opts)}


def _takes_value(option: Any) -> bool:
    return not (option.is_flag or option.count)


def _command_at(args: list[str], group_options: dict[str, Any]) -> int | None:
    """Where the command's name is in `args`: the first word that is not a group option or its value."""
    at = 0
    while at < len(args):
        word = args[at]
        if word == "--":
            return None
        if word == "-" or not word.startswith("-"):
            return at
        option = group_options.get(word.split("=", 1)[0])
        at += 1 + (option.nargs if option is not None and _takes_value(option) and "=" not in word else 0)
    return None


def _split_cluster(word: str, lifted: dict[str, Any], own: dict[str, Any]) -> tuple[str, str, bool]:
    """A word of short options (`-v`, `-qv`, `-ix=-v`) split into the global flags it holds and the rest:
    (global letters, the command's letters, whether the word's last option takes the next word as its value).
    Letters after an option that takes a value are that value, never options."""
    globals_, rest = "", ""
    for at, letter in enumerate(word[1:], start=1):
        name = f"-{letter}"
        option = own.get(name)
        if option is None and name in lifted and not _takes_value(lifted[name]):
            globals_ += letter
            continue
        rest += letter
        if option is not None and _takes_value(option):
            return globals_, rest + word[at + 1:], at + 1 == len(word)
    return globals_, rest, False


def _split_command_words(words: list[str], lifted: dict[str, Any],
                         own: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The words after the command's name: (the global options among them, the command's own words). The
    command's own options win over a global one of the same name; an option's value stays a value even when it
    looks like an option (`-i -v`, `--data=-v`); nothing after `--` is looked at."""
    taken: list[str] = []
    kept: list[str] = []
    at = 0
    while at < len(words):
        word = words[at]
        at += 1
        if word == "--":
            kept.extend(words[at - 1:])
            break
        if word == "-" or not word.startswith("-"):
            kept.append(word)
            continue
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            is_global = name not in own and name in lifted
            option = lifted.get(name) if is_global else own.get(name)
            values = option.nargs if option is not None and _takes_value(option) and "=" not in word else 0
            if is_global and at + values > len(words):  # lifted, it would take the command's name as its value
                raise _click_exceptions().UsageError(f"Option '{name}' requires an argument.")
            into = taken if is_global else kept
        else:
            letters, rest, needs_value = _split_cluster(word, lifted, own)
            if letters:
                taken.append(f"-{letters}")
            if not rest:
                continue
            word, into, values = f"-{rest}", kept, int(needs_value)
        into.append(word)
        into.extend(words[at:at + values])
        at += values
    return taken, kept


def lift_global_options(group: Any, args: list[str]) -> list[str]:
    """`agentfsm runs --debug` as `agentfsm --debug runs`: the global options found after the command's name
    move before it, where click reads them. In either place they mean the same; given twice, the later wins
    (a count, `-v`, adds up)."""
    group_options = _by_name([param for param in getattr(group, "params", []) if param.param_type_name == "option"])
    at = _command_at(args, group_options)
    command = None if at is None else getattr(group, "commands", {}).get(args[at])
    if at is None or command is None:  # no command, or an unknown one: click says so
        return args
    own = _by_name([param for param in command.params if param.param_type_name == "option"])
    taken, kept = _split_command_words(args[at + 1:], _by_name(_global_options(group)), own)
    return [*args[:at], *taken, args[at], *kept]


def _click_exceptions() -> ModuleType:
    """typer 0.29+ carries its own copy of click (`typer._click`); older versions use click itself."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer < 0.29
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _command_path(group: Any, args: list[str] | None) -> str:
    """`agentfsm CMD` for an error click raised without its context (`run FILE -i` with no value): the first
    argument naming a command."""
    commands = getattr(group, "commands", {})
    named = next((arg for arg in (sys.argv[1:] if args is None else args) if arg in commands), None)
    return "agentfsm" if named is None else f"agentfsm {named}"


def run(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the app and return its exit code. Global options may follow the command. Usage errors (an unknown
    option, a missing argument, a bad value) print one line, `error: MESSAGE (see: agentfsm CMD --help)`, and
    exit 2, instead of click's usage block. A command whose reader closes stdout early (`| head`) stops there
    and exits 0, quietly: the reader has what it wanted."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if args is None else list(args)
    try:
        code = _main(command, args)
        sys.stdout.flush()  # now, not in Python's flush at exit, which would report a closed pipe on stderr
    except (_StdoutClosed, BrokenPipeError):  # BrokenPipeError: from the help `agentfsm` alone prints, or flush
        _stop_writing_to_stdout()
        return exit_codes.SUCCESS
    return code


def _main(command: Any, args: list[str]) -> int:
    errors = _click_exceptions()
    try:
        # standalone_mode=False: click raises its errors instead of printing them; typer.Exit(code) and --help
        # come back as the return value
        code = command.main(lift_global_options(command, args), prog_name="agentfsm", standalone_mode=False)
    except getattr(errors, "NoArgsIsHelpError", ()) as exc:  # `agentfsm` alone: its help (click 8.2+)
        typer.echo(exc.ctx.get_help())
        return exit_codes.BAD_INPUT
    except errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else _command_path(command, args)
        typer.echo(f"error: {_one_line(exc.format_message())} (see: {where} --help)", err=True)
        return exit_codes.BAD_INPUT
    except errors.ClickException as exc:  # not raised by our options today; still one line
        typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
        return exit_codes.BAD_INPUT
    except typer.Abort:  # click's Ctrl-C or end of input at a prompt: agentfsm has no prompt, but no traceback
        typer.echo("interrupted", err=True)
        return exit_codes.INTERRUPTED
    return code if isinstance(code, int) else exit_codes.SUCCESS
