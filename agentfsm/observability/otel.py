"""OpenTelemetry: a span per run, per step and per LLM and tool call, exported while a run advances.

`OpenTelemetryObserver` is an observer on the typed event stream: it turns a run's events into
spans, the model and tool calls named and described by the OpenTelemetry GenAI semantic conventions
(`chat {model}` with `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.usage.*`, `gen_ai.response.finish_reasons`; `execute_tool {tool}`; the run as
`invoke_workflow {machine}`). Spans carry names, counts, timings and error types; the prompts,
replies, tool arguments and results only when `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`
is true, and then with every known secret redacted. Like every observer but the store's, it
cannot break a run: a failure is logged and the run goes on.

The CLI turns it on with `--otel` or the standard variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SDK_DISABLED=true` turns
it off), exporting over OTLP/HTTP (protobuf) as the SDK's own variables configure it.

This module imports OpenTelemetry only when tracing is on (the `otel` extra), so the CLI starts as fast without it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentfsm.bindings.known_secrets import redact

CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EXTRA_HINT = "pip install 'agentfsm[otel]'"
TRACER_NAME = "agentfsm"
MAX_CONTENT = 64 * 1024
"""Characters of a captured prompt, reply, argument or result kept on a span (collectors cap attributes too)."""

logger = logging.getLogger("agentfsm")
_requested = False


def request() -> None:
    """`--otel` was given: trace the runs this process drives."""
    global _requested
    _requested = True


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to export traces: `--otel`, or the standard variables ask for it, and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if _requested:
        return True
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def capture_content(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(CAPTURE_CONTENT, "").strip().lower() == "true"


class TelemetryUnavailable(Exception):
    """`--otel` without the `otel` extra installed."""


def cli_observers() -> list[object]:
    """The observers the CLI adds for OpenTelemetry: none unless asked for; the exporter is set up once."""
    if not wanted():
        return []
    try:
        provider = _provider()
    except ImportError:
        if _requested:
            raise TelemetryUnavailable(f"--otel needs OpenTelemetry, which is not installed: {EXTRA_HINT}") from None
        logger.warning("OTEL_* variables ask for traces, but OpenTelemetry is not installed (%s): not exporting",
                       EXTRA_HINT)
        return []
    return [OpenTelemetryObserver(provider.get_tracer(TRACER_NAME))]


_PROVIDER: Any = None


def _provider() -> Any:
    """The SDK's tracer provider with the exporters `OTEL_TRACES_EXPORTER` names (`otlp`, the default, over
    HTTP; `console`, to stderr), made once per process and shut down (flushed) at exit."""
    global _PROVIDER
    if _PROVIDER is not None:
        return _PROVIDER
    import atexit
    import sys

    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # service.name: OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES when set, else agentfsm
    resource = Resource.create({"service.name": "agentfsm"} if not os.environ.get("OTEL_SERVICE_NAME") else {})
    provider = TracerProvider(resource=resource)
    names = [name.strip().lower() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif name not in ("none", ""):
            logger.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored (otlp, console or none)", name)
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)
    _PROVIDER = provider
    return provider


# -- the observer ------------------------------------------------------------------------------------


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@dataclass
class _RunSpans:
    """The open spans of one run: the run's, the step's, and calls in flight (tools may run concurrently)."""

    run: Any
    step: Any = None
    llm: Any = None
    tools: dict[tuple[str, str | None], Any] = field(default_factory=dict)
    children: dict[str, Any] = field(default_factory=dict)


class OpenTelemetryObserver:
    """Turns a run's events into OpenTelemetry spans (see the module's doc); several runs at once are kept apart.

    `tracer` is an OpenTelemetry tracer (`provider.get_tracer("agentfsm")`). Spans leave through the
    provider's processors (the CLI's batches them in the background and flushes them at exit), never
    waiting on a collector in the run's own loop.
    """

    critical = False

    def __init__(self, tracer: Any, *, capture: bool | None = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.capture = capture_content() if capture is None else capture
        self.runs: dict[str, _RunSpans] = {}
        self._trace, self._kind = trace, SpanKind
        self._status, self._code = Status, StatusCode

    def _start(self, name: str, parent: Any, at: float, attributes: dict[str, Any], kind: Any = None) -> Any:
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, kind=kind or self._kind.INTERNAL,
                                      attributes={key: value for key, value in attributes.items() if value is not None},
                                      start_time=_ns(at))

    def _fail(self, span: Any, error: Mapping[str, Any] | None) -> None:
        if not error:
            return
        span.set_attribute("error.type", str(error.get("type") or "error"))
        span.set_status(self._status(self._code.ERROR, redact(str(error.get("message") or ""))[:500]))

    # -- the run -----------------------------------------------------------------------------------

    def on_run_started(self, *, event: Any) -> None:
        span = self._start(f"invoke_workflow {event.machine}", None, event.at, {
            "gen_ai.operation.name": "invoke_workflow", "gen_ai.agent.name": event.machine,
            "agentfsm.run.id": event.run_id, "agentfsm.machine": event.machine,
            "agentfsm.run.resumed": event.resumed, "agentfsm.run.first_step": event.step + 1})
        self.runs[event.run_id] = _RunSpans(span)

    def on_run_ended(self, *, event: Any) -> None:
        spans = self.runs.pop(event.run_id, None)
        if spans is None:
            return
        result = event.result
        self._close_open(spans, event.at)
        spans.run.set_attribute("agentfsm.run.status", result.status)
        spans.run.set_attribute("agentfsm.run.steps", result.steps)
        for key, value in _usage_totals(result.usage).items():
            spans.run.set_attribute(key, value)
        if result.status == "failed":
            self._fail(spans.run, result.error or {"type": "failed"})
        spans.run.end(end_time=_ns(event.at))

    def on_pause(self, *, event: Any) -> None:
        spans = self.runs.pop(event.run_id, None)
        if spans is None:
            return
        self._close_open(spans, event.at)
        spans.run.set_attribute("agentfsm.run.status", "paused")
        spans.run.set_attribute("agentfsm.run.paused_reason", event.reason)
        spans.run.end(end_time=_ns(event.at))

    def _close_open(self, spans: _RunSpans, at: float) -> None:
        for span in [spans.llm, *spans.tools.values(), *spans.children.values(), spans.step]:
            if span is not None:
                span.end(end_time=_ns(at))
        spans.llm, spans.step = None, None
        spans.tools.clear()
        spans.children.clear()

    # -- steps -------------------------------------------------------------------------------------

    def on_step_started(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        if spans.step is not None:  # a step that never ended (it was undone): close it where the next begins
            spans.step.end(end_time=_ns(event.at))
        spans.step = self._start(f"step {event.state}", spans.run, event.at, {
            "agentfsm.run.id": event.run_id, "agentfsm.step": event.step, "agentfsm.state": event.state,
            "agentfsm.visit": event.visit})

    def on_step_ended(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        span = spans.step
        if span is None:  # no StepStarted seen: the step's own timing still places it
            span = self._start(f"step {event.state}", spans.run, event.started_at, {
                "agentfsm.run.id": event.run_id, "agentfsm.step": event.step, "agentfsm.state": event.state})
        for key, value in (("agentfsm.event", event.event), ("agentfsm.next_state", event.next_state),
                           ("agentfsm.retries", event.retries), ("agentfsm.rule", event.rule)):
            if value is not None:
                span.set_attribute(key, value)
        self._fail(span, event.error)
        span.end(end_time=_ns(event.at))
        spans.step = None

    def on_retry(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is not None and spans.step is not None:
            spans.step.add_event("retry", {"agentfsm.attempt": event.attempt, "agentfsm.delay": event.delay,
                                           "error.type": str(event.error.get("type"))}, timestamp=_ns(event.at))

    def on_wait(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is not None and spans.step is not None:
            spans.step.set_attribute("agentfsm.waiting_for", list(event.events))
            spans.step.end(end_time=_ns(event.at))
            spans.step = None

    # -- calls -------------------------------------------------------------------------------------

    def on_llm_call_started(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        provider = event.provider or "unknown"
        spans.llm = self._start(f"chat {event.model or event.binding}", spans.step or spans.run, event.at, {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.system": provider,
            "gen_ai.request.model": event.model, "agentfsm.llm.binding": event.binding,
            "agentfsm.llm.messages": event.messages}, self._kind.CLIENT)

    def on_llm_call_ended(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        record = event.record
        span = spans.llm
        if span is None:
            span = self._start(f"chat {record.model or record.binding}", spans.step or spans.run,
                               event.at - record.duration, {"gen_ai.operation.name": "chat",
                                                            "gen_ai.request.model": record.model,
                                                            "agentfsm.llm.binding": record.binding},
                               self._kind.CLIENT)
        if record.error is None:
            span.set_attribute("gen_ai.response.model", record.model or "")
            span.set_attribute("gen_ai.usage.input_tokens", record.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", record.completion_tokens)
            if record.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [record.finish_reason])
        if record.retries:
            span.set_attribute("agentfsm.llm.retries", record.retries)
        if self.capture:
            _capture_exchange(span, event.request, event.reply)
        self._fail(span, record.error)
        span.end(end_time=_ns(event.at))
        spans.llm = None

    def on_tool_call_started(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        parent = spans.llm if event.via == "llm" and spans.llm is not None else spans.step or spans.run
        span = self._start(f"execute_tool {event.tool}", parent, event.at, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.tool, "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": event.call_id, "agentfsm.tool.via": event.via})
        if self.capture:
            span.set_attribute("gen_ai.tool.call.arguments", _content(event.arguments))
        spans.tools[(event.tool, event.call_id)] = span

    def on_tool_call_ended(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None:
            return
        record = event.record
        span = spans.tools.pop((record.binding, record.call_id), None)
        if span is None:
            span = self._start(f"execute_tool {record.binding}", spans.step or spans.run, event.at - record.duration,
                               {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": record.binding})
        if self.capture and record.error is None:
            span.set_attribute("gen_ai.tool.call.result", _content(record.result))
        self._fail(span, record.error)
        span.end(end_time=_ns(event.at))

    # -- child runs (a nested machine, a branch, an agent) ---------------------------------------------

    def on_child_started(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        if spans is None or event.reused:
            return
        spans.children[event.child_run] = self._start(f"invoke_workflow {event.child}", spans.step or spans.run,
                                                      event.at, {"gen_ai.operation.name": "invoke_workflow",
                                                                 "gen_ai.agent.name": event.child,
                                                                 "agentfsm.run.id": event.child_run,
                                                                 "agentfsm.parent_run.id": event.run_id})

    def on_child_step(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        child = spans.children.get(event.child_run) if spans is not None else None
        if child is not None:
            child.add_event("step", {"agentfsm.step": event.step, "agentfsm.state": event.state,
                                     "agentfsm.next_state": event.next_state or ""}, timestamp=_ns(event.at))

    def on_child_ended(self, *, event: Any) -> None:
        spans = self.runs.get(event.run_id)
        child = spans.children.pop(event.child_run, None) if spans is not None else None
        if child is not None:
            child.set_attribute("agentfsm.run.status", event.status)
            self._fail(child, event.error)
            child.end(end_time=_ns(event.at))


def _usage_totals(usage: Mapping[str, Mapping[str, int]] | None) -> dict[str, int]:
    if not usage:
        return {}
    return {"gen_ai.usage.input_tokens": sum(int(u.get("prompt_tokens", 0)) for u in usage.values()),
            "gen_ai.usage.output_tokens": sum(int(u.get("completion_tokens", 0)) for u in usage.values())}


def _content(value: Any) -> str:
    """A captured value as JSON text (a string as itself), secrets redacted, cut to MAX_CONTENT."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    return redact(text)[:MAX_CONTENT]


def _capture_exchange(span: Any, request: Any, reply: Any) -> None:
    """The prompt and the reply, in the conventions' message shape (`role`, `parts`), as JSON attributes."""
    from agentfsm.bindings.llm import reply_json, request_json

    if request is not None:
        sent = request_json(request)
        if sent.get("system"):
            span.set_attribute("gen_ai.system_instructions",
                               _content([{"type": "text", "content": sent["system"]}]))
        span.set_attribute("gen_ai.input.messages", _content([_message(m) for m in sent["messages"]]))
    if reply is not None:
        answered = reply_json(reply)
        message = _message({"role": "assistant", "content": answered["text"],
                            "tool_calls": answered["tool_calls"]})
        message["finish_reason"] = answered["finish_reason"]
        span.set_attribute("gen_ai.output.messages", _content([message]))


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if message.get("content"):
        parts.append({"type": "text", "content": message["content"]})
    for call in message.get("tool_calls") or ():
        parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                      "arguments": call.get("arguments")})
    for result in message.get("tool_results") or ():
        parts.append({"type": "tool_call_response", "id": result.get("call_id"), "response": result.get("content")})
    role = "tool" if message.get("tool_results") else message.get("role", "user")
    return {"role": role, "parts": parts}
