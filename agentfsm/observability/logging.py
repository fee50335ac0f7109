"""Logs: structlog and stdlib `logging` through one renderer on stderr, secrets redacted, and a step-logging hook.

`configure_logging(verbosity, fmt)` sets both up together: records of stdlib loggers
(`agentfsm`, `httpx`...) and structlog events come out through the same processors, as
text (`fmt="text"`) or one JSON object per line (`fmt="json"`: timestamp, level, logger,
event, fields). Before rendering, every value of a known secret (`bindings.known_secrets`:
API keys and `{env: NAME}` headers read at run start) is replaced with `[redacted]`; the
rendered line is checked once more, and a stdlib filter does the same for plain records.

`LoggingObserver` watches a run: one INFO event per step (`step`), one DEBUG event per
LLM or tool call record (`llm.call`, `tool.call`). It logs names, counts and timings,
never arguments, results, request bodies or headers.

`LogContext` keeps the run id, step and state of the run being advanced (a context variable,
so concurrent runs keep theirs apart), and every line logged meanwhile carries them: ours,
the HTTP library's, an observer's failure. Lines go to stderr through `SharedStream`, so on
a terminal they are written whole above the live progress line, never into it.

Light on purpose: no pydantic, no runtime import, so the CLI can import it before a command runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import IO, TYPE_CHECKING, Any, Literal

from agentfsm.bindings.known_secrets import known_secrets, redact
from agentfsm.observability.terminal import SharedStream, json_visible

if TYPE_CHECKING:
    from agentfsm.runtime.calls import CallRecord
    from agentfsm.runtime.events import RunEnded, RunStarted, StepEnded, StepStarted

LogFormat = Literal["text", "json"]
LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
"""The level for `-v` counted: none WARNING, `-v` INFO, `-vv` (or more) DEBUG."""
QUIET_LOGGERS = {"httpcore": logging.WARNING, "asyncio": logging.INFO}
"""Kept out even at `-vv`: httpcore's DEBUG trace prints raw response headers; asyncio's names its selector."""
FIRST_KEYS = ("timestamp", "level", "logger", "event")

_HANDLER_NAME = "agentfsm-cli"


def level_for(verbosity: int) -> int:
    return LEVELS[max(0, min(verbosity, len(LEVELS) - 1))]


# -- redaction -------------------------------------------------------------------------------


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {_redacted(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)  # an exception, a path, an object: rendered as text, so checked as text
    cleaned = redact(text)
    return value if cleaned == text else cleaned


def redact_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: every known secret in the event's values (and keys) becomes `[redacted]`."""
    if not known_secrets():
        return event_dict
    return {redact(key): _redacted(value) for key, value in event_dict.items()}


class RedactingRenderer:
    """Wraps the final renderer: the rendered line is checked too (a secret split by escaping is still caught)."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> str:
        return redact(str(self.renderer(logger, method_name, event_dict)))


class SecretFilter(logging.Filter):
    """A stdlib filter: a plain record's message (its text with the arguments merged in) is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict) or not known_secrets():  # a structlog event: its processors redact it
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# -- the run a line is about ----------------------------------------------------------------------

RUN_CONTEXT: ContextVar[tuple[str, int, str | None] | None] = ContextVar("agentfsm_log_run", default=None)
"""(run id, step, state) of the run the current task advances, as `LogContext` last saw it."""


class LogContext:
    """An observer keeping `RUN_CONTEXT` up to date: the run, the step it is at, the state it is in."""

    def on_run_started(self, *, event: RunStarted) -> None:
        RUN_CONTEXT.set((event.run_id, event.step, event.state))

    def on_step_started(self, *, event: StepStarted) -> None:
        RUN_CONTEXT.set((event.run_id, event.step, event.state))


def add_run_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the run id, step and state of the run being advanced, unless the event has them."""
    where = RUN_CONTEXT.get()
    if where is not None:
        event_dict.setdefault("run_id", where[0])
        event_dict.setdefault("step", where[1])
        event_dict.setdefault("state", where[2])
    return event_dict


class RunContextFilter(logging.Filter):
    """A stdlib filter for plain lines: `%(where)s` is ` (run ID, step N, state S)` while a run is advanced."""

    def filter(self, record: logging.LogRecord) -> bool:
        where = RUN_CONTEXT.get()
        record.where = "" if where is None else f" (run {where[0]}, step {where[1]}, state {where[2]})"
        return True


# -- setup -----------------------------------------------------------------------------------


def configure_plain_logging(stream: IO[str] | None = None) -> None:
    """The default (no -v, text): warnings only, as plain redacted lines, without importing structlog."""
    handler = logging.StreamHandler(SharedStream(stream if stream is not None else sys.stderr))
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s%(where)s"))
    handler.addFilter(SecretFilter())
    handler.addFilter(RunContextFilter())
    _install(handler, logging.WARNING)


def configure_logging(verbosity: int = 0, fmt: LogFormat = "text", stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr) at the level `-v` counts, as text or JSON lines."""
    import structlog  # only when logs are asked for: it costs ~70 ms of start-up

    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (one of: text, json)")
    stream = stream if stream is not None else sys.stderr
    level = level_for(verbosity)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_run_context,
    ]
    if fmt == "json":
        json_renderer = structlog.processors.JSONRenderer(ensure_ascii=False, default=str)

        def renderer(logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
            ordered = {key: event_dict.pop(key) for key in FIRST_KEYS if key in event_dict}
            return json_visible(json_renderer(logger, method_name, {**ordered, **event_dict}))

    else:
        colors = bool(getattr(stream, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=20)  # type: ignore[assignment]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # the traceback as text, so it is redacted like the rest
            redact_secrets,
            RedactingRenderer(renderer),
        ],
    )
    handler = logging.StreamHandler(SharedStream(stream))
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(SecretFilter())
    _install(handler, level)


def _install(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("agentfsm").setLevel(level)
    for name, quiet_level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, quiet_level))


# -- the observer ----------------------------------------------------------------------------


class LoggingObserver:
    """Logs each step at INFO and each LLM/tool call record at DEBUG, on the `agentfsm` logger.

    Fields only: names, events, counts, durations, error types and (redacted) messages.
    Never a call's arguments or result, a request body or a header.
    """

    def __init__(self, logger: Any = None) -> None:
        import structlog

        self.log = logger if logger is not None else structlog.stdlib.get_logger("agentfsm")

    def on_run_started(self, *, event: RunStarted) -> None:
        self.log.info("run.start", run_id=event.run_id, step=event.step, state=event.state)

    def on_step_ended(self, *, event: StepEnded) -> None:
        # a log event's `event` is its name ("step"), so the state's event is `state_event`
        fields: dict[str, Any] = {
            "run_id": event.run_id, "step": event.step, "state": event.state, "state_event": event.event,
            "next_state": event.next_state, "duration_ms": round(event.duration * 1000, 3),
            "retries": event.retries,
        }
        if event.error:
            fields["error_type"] = event.error.get("type")
            fields["error_message"] = event.error.get("message")
        self.log.info("step", **fields)
        for call in event.calls:
            self._call(event, call)

    def _call(self, step: StepEnded, call: CallRecord) -> None:
        if call.kind == "child":
            self.log.debug("child.run", run_id=step.run_id, step=step.step, state=step.state, child=call.name,
                           child_run=call.run_id, status=call.status, duration_ms=round(call.duration * 1000, 3))
            return
        fields: dict[str, Any] = {"run_id": step.run_id, "step": step.step, "state": step.state,
                                  "binding": call.binding}
        if call.kind == "llm":
            fields.update(model=call.model, prompt_tokens=call.prompt_tokens,
                          completion_tokens=call.completion_tokens, finish_reason=call.finish_reason,
                          retries=call.retries)
        elif call.via:
            fields["via"] = call.via
        fields["duration_ms"] = round(call.duration * 1000, 3)
        if isinstance(call.error, Mapping):
            fields["error_type"] = call.error.get("type")
            fields["error_message"] = call.error.get("message")
        self.log.debug(f"{call.kind}.call", **fields)

    def on_run_ended(self, *, event: RunEnded) -> None:
        result = event.result
        fields: dict[str, Any] = {"run_id": event.run_id, "step": result.steps,
                                  "state": getattr(result.context, "state", None), "status": result.status,
                                  "steps": result.steps}
        if result.error:
            fields["error_type"] = result.error.get("type")
            fields["error_message"] = result.error.get("message")
        self.log.info("run.end", **fields)
