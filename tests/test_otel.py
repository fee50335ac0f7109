"""OpenTelemetry: a span per run, step, LLM and tool call (GenAI conventions), in memory and over real OTLP/HTTP."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfsm.bindings.known_secrets import forget_secrets, register_secret
from agentfsm.observability.otel import OpenTelemetryObserver
from agentfsm.service.runs import Runs

ROOT = Path(__file__).resolve().parent.parent

MACHINE = """\
agentfsm: 1
name: helper
inputs:
  question: {type: string}
llms:
  brain:
    provider: scripted
    model: scripted-1
    replies:
      - {match: 'Result of calc', reply: 'The answer is 3.'}
      - {tool_calls: [{name: calc, arguments: {expression: '1 + 2'}}]}
tools:
  calc: {builtin: calculator}
initial: ask
states:
  ask:
    type: llm
    llm: brain
    tools: [calc]
    prompt: "{{ question }}"
    save: answer
    next: check
  check:
    type: tool
    tool: calc
    args: {expression: "2 * 3"}
    save: six
    next: done
  done:
    type: final
    output: "{{ answer }}"
"""


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    path = tmp_path / "helper.yaml"
    path.write_text(MACHINE, encoding="utf-8")
    return path


def traced(runs: Runs, machine: Path, inputs: dict[str, Any], *, capture: bool) -> list[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(provider.get_tracer("agentfsm"), capture=capture)
    result = asyncio.run(runs.start(machine, inputs, observers=[observer]))
    assert result.status == "succeeded", result.error
    return list(exporter.get_finished_spans())


def test_a_run_is_a_tree_of_spans_with_the_genai_attributes(runs: Runs, machine: Path) -> None:
    spans = traced(runs, machine, {"question": "What is 1 + 2? key sk-never-shown"}, capture=False)
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["chat scripted-1", "execute_tool calc", "invoke_workflow helper", "step ask",
                               "step check", "step done"]
    [run] = by_name["invoke_workflow helper"]
    assert run.parent is None
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["agentfsm.run.status"] == "succeeded"
    steps = {span.name: span for span in spans if span.name.startswith("step ")}
    assert all(span.parent.span_id == run.context.span_id for span in steps.values())
    assert all(span.context.trace_id == run.context.trace_id for span in spans)
    assert steps["step ask"].attributes["agentfsm.next_state"] == "check"

    chats = by_name["chat scripted-1"]
    assert len(chats) == 2  # the model asks for calc, then answers with its result
    for chat in chats:
        assert chat.parent.span_id == steps["step ask"].context.span_id
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.provider.name"] == "scripted"
        assert chat.attributes["gen_ai.request.model"] == "scripted-1"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.start_time <= chat.end_time
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):  # the run's totals add its calls up
        assert run.attributes[key] == sum(chat.attributes[key] for chat in chats) > 0
    assert chats[0].attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert chats[1].attributes["gen_ai.response.finish_reasons"] == ("stop",)

    tools = by_name["execute_tool calc"]
    assert sorted(span.parent.span_id == steps[name].context.span_id
                  for span in tools for name in ("step ask", "step check")) == [False, False, True, True]
    assert {span.attributes["gen_ai.tool.name"] for span in tools} == {"calc"}
    assert any(span.attributes.get("gen_ai.tool.call.id") for span in tools)  # the model's call carries its id
    for span in spans:  # no content unless asked for
        assert not any(key.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.tool.call.arg", "gen_ai.tool.call.res"))
                       for key in span.attributes)
        assert "sk-never-shown" not in repr(dict(span.attributes))


def test_prompts_and_replies_only_when_content_is_captured_and_never_a_secret(runs: Runs, machine: Path) -> None:
    register_secret("sk-otel-secret-42")
    try:
        spans = traced(runs, machine, {"question": "What is 1 + 2? My key is sk-otel-secret-42"}, capture=True)
    finally:
        forget_secrets()
    chats = [span for span in spans if span.name.startswith("chat")]
    assert '"What is 1 + 2? My key is [redacted]"' in chats[0].attributes["gen_ai.input.messages"]
    assert '"tool_call"' in chats[0].attributes["gen_ai.output.messages"]
    assert "The answer is 3." in chats[1].attributes["gen_ai.output.messages"]
    tool = next(span for span in spans if span.name == "execute_tool calc" and span.attributes.get("gen_ai.tool.call.id"))
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"expression": "1 + 2"}'
    assert tool.attributes["gen_ai.tool.call.result"] == "3"
    assert all("sk-otel-secret-42" not in repr(dict(span.attributes)) for span in spans)


def test_a_failing_tracer_cannot_break_a_run(runs: Runs, machine: Path) -> None:
    class Broken:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("collector exploded")

    result = asyncio.run(runs.start(machine, {"question": "1 + 2?"},
                                    observers=[OpenTelemetryObserver(Broken(), capture=False)]))
    assert result.status == "succeeded" and result.output == "The answer is 3."


# -- a real OTLP/HTTP receiver, a real `agentfsm run --otel` ------------------------------------------------


class Collector(http.server.ThreadingHTTPServer):
    """A small OTLP/HTTP receiver: decodes each protobuf export request it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Receive)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[Any, Any]]:
        """(resource, span) for every span received."""
        return [(resource.resource, span) for request in self.requests for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans]


class _Receive(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 - the handler's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.paths.append(self.path)
        self.server.requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def agentfsm(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentfsm", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def _attributes(span: Any) -> dict[str, Any]:
    values = {}
    for pair in span.attributes:
        kind = pair.value.WhichOneof("value")
        value = getattr(pair.value, kind)
        values[pair.key] = list(v.string_value for v in value.values) if kind == "array_value" else value
    return values


@pytest.mark.parametrize("how", ["--otel", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_agentfsm_run_exports_its_spans_to_an_otlp_http_collector(collector: Collector, machine: Path,
                                                                 tmp_path: Path, how: str) -> None:
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "agentfsm-test",
           "AGENTFSM_STORE": f"sqlite:///{tmp_path / 'runs.db'}"}
    args = ["run", str(machine), "-i", "question=1 + 2?", "--json", "-q"]
    if how == "--otel":
        args.append("--otel")
    done = agentfsm(*args, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    received = collector.spans()
    names = sorted(span.name for _, span in received)
    assert names == ["chat scripted-1", "chat scripted-1", "execute_tool calc", "execute_tool calc",
                     "invoke_workflow helper", "step ask", "step check", "step done"]
    resource = {pair.key: pair.value.string_value for pair in received[0][0].attributes}
    assert resource["service.name"] == "agentfsm-test"
    run = next(span for _, span in received if span.name == "invoke_workflow helper")
    assert run.parent_span_id == b""
    steps = {span.span_id: span for _, span in received if span.name.startswith("step ")}
    assert all(span.parent_span_id == run.span_id for span in steps.values())
    chat = next(span for _, span in received if span.name == "chat scripted-1")
    assert steps[chat.parent_span_id].name == "step ask"
    attributes = _attributes(chat)
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "scripted"
    assert attributes["gen_ai.request.model"] == "scripted-1"
    assert attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert all(span.trace_id == run.trace_id for _, span in received)


def test_otel_without_the_extra_is_one_clear_line(machine: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked" / "opentelemetry"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": f"{blocked.parent}{os.pathsep}{ROOT}",
           "AGENTFSM_STORE": f"sqlite:///{tmp_path / 'runs.db'}"}
    done = agentfsm("run", str(machine), "-i", "question=1 + 2?", "--otel", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --otel needs OpenTelemetry, which is not installed: pip install 'agentfsm[otel]'"]
    assert not (tmp_path / "runs.db").exists()  # refused before anything was stored


def test_help_and_a_plain_run_never_import_opentelemetry(machine: Path, tmp_path: Path) -> None:
    probe = textwrap.dedent(f"""
        import sys
        from agentfsm.cli import app, usage
        usage.run(app.app, ["--help"])
        usage.run(app.app, ["run", {str(machine)!r}, "-i", "question=1 + 2?", "-q", "--json"])
        print("opentelemetry" in " ".join(sys.modules))
    """)
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["AGENTFSM_STORE"] = f"sqlite:///{tmp_path / 'runs.db'}"
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


def test_a_worker_exports_the_spans_of_the_runs_it_advances(collector: Collector, machine: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AGENTFSM_STORE": f"sqlite:///{tmp_path / 'runs.db'}"}
    queued = agentfsm("submit", str(machine), "-i", "question=1 + 2?", env=env, cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    run_id = queued.stdout.strip()
    done = agentfsm("worker", "--once", "--otel", env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url},
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    runs = [span for _, span in collector.spans() if span.name == "invoke_workflow helper"]
    assert [_attributes(span)["agentfsm.run.id"] for span in runs] == [run_id]
    assert sum(span.name.startswith("chat ") for _, span in collector.spans()) == 2


def test_the_otel_flag_alone_turns_export_on(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             machine: Path, tmp_path: Path) -> None:
    from agentfsm.observability import otel
    from tests.cli_inprocess import Cli

    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)  # nothing but the flag asks for traces
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(otel, "_PROVIDER", provider)  # the exporter the flag's provider would send to
    monkeypatch.setattr(otel, "_requested", False)  # restored after the test: --otel sets it for the process
    cli, store = Cli(monkeypatch, capsys), f"sqlite:///{tmp_path / 'runs.db'}"
    plain = cli("run", machine, "-i", "question=1 + 2?", "--json", "-q", store=store)
    assert plain.code == 0, plain
    assert exporter.get_finished_spans() == ()
    flagged = cli("run", machine, "-i", "question=1 + 2?", "--json", "-q", "--otel", store=store)
    assert flagged.code == 0, flagged
    assert "invoke_workflow helper" in [span.name for span in exporter.get_finished_spans()]


def test_a_run_continued_from_the_web_ui_exports_its_spans(collector: Collector, tmp_path: Path) -> None:
    import re

    import httpx

    from tests.helpers import environment_without_proxies

    store = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**environment_without_proxies(), "OTEL_SERVICE_NAME": "agentfsm-ui"}
    waiting = agentfsm("run", str(ROOT / "machines/approval.yaml"), "-i", "topic=spans", "--json", "-q",
                       "--store", store, env=env, cwd=tmp_path)
    assert waiting.returncode == 3, waiting.stderr
    run_id = json.loads(waiting.stdout)["run_id"]
    server = subprocess.Popen([sys.executable, "-m", "agentfsm", "ui", "--port", "0", "--store", store, "--otel"],
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    try:
        assert server.stderr is not None
        lines = [server.stderr.readline(), server.stderr.readline()]
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", lines[1])
        assert found, lines
        with httpx.Client(base_url=found.group(1), timeout=30) as client:
            sent = client.post(f"api/runs/{run_id}/send", json={"event": "approved"},
                               headers={"X-Agentfsm-Token": ""})
            assert sent.status_code == 200, sent.text
            for _ in range(200):
                if client.get(f"api/runs/{run_id}").json()["run"]["status"] == "succeeded":
                    break
                time.sleep(0.05)
    finally:
        server.terminate()  # a stopped server flushes its spans on the way out
        server.wait(timeout=30)
    assert server.returncode == 0
    names = [span.name for _, span in collector.spans()]
    assert "invoke_workflow approval" in names and any(name.startswith("step ") for name in names)
