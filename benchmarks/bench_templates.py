"""What the render budget costs: µs per render of agentfsm's templates against Jinja's own immutable sandbox.

Each template is rendered by `agentfsm.spec.expressions` (the sandbox plus the per-render budget: every loop
iteration and call counted, output and built values measured, the clock looked at) and, as the yardstick in
the same run, by a plain `jinja2.sandbox.ImmutableSandboxedEnvironment` on the same text and data. Prints
the best of `--repeats` timings of `--number` renders each, and the ratio.

    python benchmarks/bench_templates.py [--repeats 5] [--number 2000]
"""

from __future__ import annotations

import argparse
import os
import timeit

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentfsm.spec.expressions import base_scope, compile_template

ROWS = [{"name": f"item {n}", "price": n * 1.5, "tags": ["a", "b"]} for n in range(100)]
CASES = {
    "value `{{ x }}`": ("{{ x }}", {"x": 42}),
    "guard-like `{{ n < 3 and ok }}`": ("{{ n < 3 and ok }}", {"n": 2, "ok": True}),
    "prompt, 3 fields": ("Customer: {{ name }} (plan: {{ plan|upper }}). Question: {{ question|trim }}",
                         {"name": "Ada", "plan": "pro", "question": "  Why was I charged twice?  "}),
    "loop of 100 rows, 3 filters each": (
        "{% for row in rows %}{{ loop.index }}. {{ row.name|title }}: {{ '%.2f'|format(row.price) }} "
        "[{{ row.tags|join(',') }}]\n{% endfor %}", {"rows": ROWS}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000)
    options = parser.parse_args()
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    print(f"load average: {os.getloadavg()[0]:.2f}; best of {options.repeats} x {options.number} renders")
    print(f"{'template':36} {'agentfsm µs':>12} {'jinja sandbox µs':>17} {'ratio':>6}")
    for label, (text, data) in CASES.items():
        ours = compile_template(text)
        scope = {**base_scope(), **data}
        theirs = plain.from_string(text)
        assert str(ours.render(dict(scope))) == theirs.render(**data), label
        mine = min(timeit.repeat(lambda: ours.render(dict(scope)), number=options.number,
                                 repeat=options.repeats)) / options.number * 1e6
        yardstick = min(timeit.repeat(lambda: theirs.render(**data), number=options.number,
                                      repeat=options.repeats)) / options.number * 1e6
        print(f"{label:36} {mine:12.1f} {yardstick:17.1f} {mine / yardstick:6.2f}")


if __name__ == "__main__":
    main()
