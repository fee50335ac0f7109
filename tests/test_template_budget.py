"""Templates are bounded in time and memory, and nothing runs them before a render (issue 9).

Each payload below is one the adversarial campaign used: before the budget it built hundreds of
megabytes, ran for minutes, or (at compile time, in `validate`) ran at all.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentfsm
from agentfsm.limits import TEMPLATE_MAX_STEPS
from agentfsm.spec.expressions import ENVIRONMENT, ExpressionError, base_scope, compile_guard, compile_template
from tests.crash_harness import environment

ROOT = Path(__file__).resolve().parent.parent


def failure(text: str, **scope: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        compile_template(text).render({**base_scope(), **scope})
    return caught.value


@pytest.mark.parametrize("text", [
    "{{ ('%(a)400000000d' % {'a': 1})|length }}",
    "{{ '%(a)400000000d'|format(a=1) }}",
    "{{ '%(a).400000000f'|format(a=1) }}",
])
def test_named_printf_widths_are_bounded_like_plain_ones(text: str) -> None:
    assert "format width or precision over 10000" in str(failure(text))


@pytest.mark.parametrize("text", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10) recursive %}{% if loop.depth < 9 %}{{ loop(range(10)) }}{% endif %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{{ lipsum(1, false, 10**9, 10**9 + 1) }}",
    "{{ [1]|slice(10**9)|list|length }}",
    "{{ (['x'] * 10**6)|join(big) }}",
    "{{ ([big] * 10**6)|join }}",
    "{{ big|replace('', big) }}",
    "{{ big|replace('x', 'yy')|replace('y', 'zz')|replace('z', 'ww')|replace('w', 'vv') }}",
    "{{ [1, 2, 3]|batch(10**9, 0)|list|length }}",
    "{{ big|replace('x', 'x\n')|indent(big[:10000]) }}",
    "{{ big|wordwrap(1, true, big) }}",
    "{{ ''.join([big] * 20) }}",
    "{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
    "{% for i in range(100000) %}{{ big }}{% endfor %}",
    "{% for i in range(1000) %}{{ (big * 9)|upper|length }}{% endfor %}",
    "{{ ([[1] * 1000] * 2000)|sum(start=[])|length }}",
])
def test_a_render_over_its_budget_is_a_template_limit_error(text: str) -> None:
    error = failure(text, big="x" * 1_000_000)
    assert error.error_type == "template.limit", error
    assert "over the template budget" in str(error)
    assert len(str(error)) < 300 and "\n" not in str(error)


def test_ordinary_templates_fit_the_budget_with_room_to_spare() -> None:
    text = "{% for row in rows %}{{ loop.index }}. {{ row|upper|replace('A', 'a')|center(12) }}\n{% endfor %}"
    rendered = compile_template(text).render({**base_scope(), "rows": ["abc"] * 10_000})
    assert rendered.count("\n") == 10_000
    joined = compile_template("{{ words|join(', ')|wordwrap(20)|indent(2) }}")
    assert joined.render({**base_scope(), "words": ["word"] * 1000}).startswith("word, word, word,")
    assert compile_template("{{ ([[1] * 10] * 10)|sum(start=[])|length }}").render(base_scope()) == 100
    assert compile_template("{{ lipsum(2, false, 5, 6)|wordcount }}").render(base_scope()) > 0


def test_the_budget_is_per_render_not_per_template() -> None:
    loop = compile_template("{% for i in range(n) %}{% for j in range(1000) %}{% endfor %}{% endfor %}done")
    for _ in range(3):  # each render has the whole budget: three renders of 60% of it pass
        assert loop.render({**base_scope(), "n": TEMPLATE_MAX_STEPS * 6 // 10 // 1000}) == "done"


@pytest.fixture
def counted_filters() -> Iterator[list[str]]:
    """Every call of `slice` and `upper`, recorded: what compiling must never make."""
    calls: list[str] = []
    saved = {name: ENVIRONMENT.filters[name] for name in ("slice", "upper")}

    def counting(name: str) -> Any:
        original = saved[name]

        def run(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        run.__dict__.update(original.__dict__)  # Jinja's pass_eval_context mark
        return run

    for name in saved:
        ENVIRONMENT.filters[name] = counting(name)
    yield calls
    ENVIRONMENT.filters.update(saved)


@pytest.mark.parametrize("text", [
    "{{ [1]|slice(3)|list|length }}",
    "a {{ [1]|slice(3)|list|length }} b {{ 'x'|upper }}",
    "{% autoescape [1]|slice(3)|list|length > 0 %}{{ 'x'|upper }}{% endautoescape %}",
    "{% if 'x'|upper == 'X' %}{{ [1]|slice(3)|list }}{% endif %}",
])
def test_compiling_a_template_runs_none_of_it(text: str, counted_filters: list[str]) -> None:
    """Jinja folds constant expressions while compiling: `validate` ran `[1]|slice(10**9)|list` (24 GB)."""
    template = compile_template(text)
    assert counted_filters == []
    template.render(base_scope())
    assert counted_filters != []


def test_compiling_a_guard_runs_none_of_it(counted_filters: list[str]) -> None:
    guard = compile_guard("([1]|slice(3)|list|length) > 2 and 'x'|upper == 'X'")
    assert counted_filters == []
    assert guard.render(base_scope()) is True


def test_validate_of_a_machine_whose_template_would_take_all_memory(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        agentfsm: 1
        name: folding
        initial: a
        states:
          a: {type: set, set: {n: "{{ [1]|slice(1000000000)|list|length }}"}, next: b}
          b: {type: final}
        """), encoding="utf-8")
    limited = "import resource, sys, runpy; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); " \
              "sys.argv = ['agentfsm', 'validate', sys.argv[1]]; runpy.run_module('agentfsm', run_name='__main__')"
    completed = subprocess.run([sys.executable, "-c", limited, str(path)], capture_output=True, text=True,
                               timeout=120, env=environment(), cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    result = asyncio.run(agentfsm.run(path))
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "template.limit", result.error


def machine(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_template_limit_is_caught_at_the_state_like_other_errors(tmp_path: Path) -> None:
    path = machine(tmp_path, """\
        agentfsm: 1
        name: budget
        initial: a
        states:
          a:
            type: set
            set: {x: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"}
            next: b
            catch: [{errors: [template.limit], to: handled, as: error}]
          b: {type: final, output: not reached}
          handled: {type: final, output: "{{ error.type }}"}
        """)
    result = asyncio.run(agentfsm.run(path))
    assert (result.status, result.output) == ("succeeded", "template.limit"), result.error


LONG_RENDER = ("{% set xs = range(100000)|map('string')|list %}"
               "{% for i in range(900) %}{{ (xs|sort|first)[:0] }}{% endfor %}")
"""A render inside every bound that still takes many seconds: 900 sorts of 100,000 strings."""


def test_a_states_timeout_stops_its_template_mid_render(tmp_path: Path) -> None:
    path = machine(tmp_path, f"""\
        agentfsm: 1
        name: slow
        initial: a
        states:
          a: {{type: set, set: {{x: "{LONG_RENDER}"}}, timeout: 0.2s, next: b}}
          b: {{type: final}}
        """)
    result = asyncio.run(agentfsm.run(path))
    assert result.status == "failed" and result.error is not None
    assert result.error["type"] == "timeout", result.error
    assert result.error["state"] == "a"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_a_long_render(tmp_path: Path) -> None:
    path = machine(tmp_path, f"""\
        agentfsm: 1
        name: slow
        initial: start
        states:
          start: {{type: set, set: {{n: 1}}, next: a}}
          a: {{type: set, set: {{x: "{LONG_RENDER}"}}, next: b}}
          b: {{type: final}}
        """)
    process = subprocess.Popen([sys.executable, "-m", "agentfsm", "run", str(path), "--store",
                                tmp_path / "runs.db"], cwd=ROOT, env=environment(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the first step is recorded: the second is rendering
            if "start" in line and "--done--> a" in line:
                break
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)  # uninterrupted, the render goes on for far longer
        err = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert code == 130, err
    assert "interrupted" in err and "paused" in err
