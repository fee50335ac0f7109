"""State kinds are plug-ins: a kind is one module (spec model, checks, runtime State, compile step), and the
language, `validate`, the compiler and the diagrams all take it from the registry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from agentfsm.spec.kinds import BUILTIN_KINDS, kinds

ECHO_KIND = '''
"""`type: echo`: saves a rendered text, then goes where `next:` says. Everything about it is in this module."""
from typing import Any, Literal

from pydantic import Field

from agentfsm.compiler.env import state_options
from agentfsm.compiler.scope import compile_text, make_scope, rendered
from agentfsm.runtime.model import State
from agentfsm.spec.kinds import Kind, register
from agentfsm.spec.models import TEXT_TEMPLATE, ActiveStateSpec


class EchoStateSpec(ActiveStateSpec):
    """Save `text` under `into`."""

    type: Literal["echo"]
    text: str = Field(description="What to save.", json_schema_extra=TEXT_TEMPLATE)
    into: str = Field("echo", description="Where.")

    def check(self, name, reporter):
        super().check(name, reporter)
        if self.into == "nowhere":
            reporter.report(("states", name, "into"), "invalid-value", f"states.{name}.into: 'nowhere' is no place")


class EchoState(State):
    def __init__(self, name: str, text: str, into: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.text, self.into = compile_text(text), into

    async def execute(self, context):
        context.data[self.into] = rendered(self.text, make_scope(context), "text")


def compile_echo(name, spec, env):
    return EchoState(name, spec.text, spec.into, **state_options(spec))


KIND = register(Kind("echo", EchoStateSpec, compile_echo))
'''

MACHINE = """\
agentfsm: 1
name: echoes
inputs: {who: {type: string, default: Ada}}
initial: say
states:
  say: {type: echo, text: "Hello, {{ who }}!", into: greeting, next: done}
  done: {type: final, output: "{{ greeting }}"}
"""

SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import echo_kind  # a third party's kind: registered when imported, before the language is first used
import agentfsm
from agentfsm.observability.diagram import mermaid_from_spec
from agentfsm.spec.loader import load_spec, validate_file

good, bad = sys.argv[2], sys.argv[3]
result = asyncio.run(agentfsm.run(good))
print(json.dumps({
    "output": result.output,
    "problems": [p.code for p in validate_file(bad).problems],
    "diagram": mermaid_from_spec(load_spec(good).spec),
}))
"""


def test_the_built_in_kinds_are_registered_in_their_documented_order() -> None:
    assert tuple(kinds())[:len(BUILTIN_KINDS)] == BUILTIN_KINDS
    for name, kind in kinds().items():
        assert kind.name == name and kind.spec.model_fields["type"].annotation.__args__ == (name,)


def test_a_kind_from_one_module_is_validated_compiled_run_and_drawn(tmp_path: Path) -> None:
    (tmp_path / "echo_kind.py").write_text(textwrap.dedent(ECHO_KIND), encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(MACHINE, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(MACHINE.replace("into: greeting", "into: nowhere"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(good), str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["output"] == "Hello, Ada!"
    assert "invalid-value" in seen["problems"]  # the kind's own check ran in `validate`
    assert 'state "say" as s_say' in seen["diagram"] and "s_say --> s_done : done" in seen["diagram"]
