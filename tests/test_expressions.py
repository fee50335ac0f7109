"""Templates and guards: types kept, whitespace control, undefined names caught anywhere, bounded resources."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import TemplateSyntaxError

from agentfsm.spec.expressions import ExpressionError, base_scope, compile_guard, compile_template


def render(text: str, **data: Any) -> Any:
    return compile_template(text).render({**base_scope(), **data})


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        ("{{ -x }}", {"x": 5}, -5),
        ("{{ -1 }}", {}, -1),
        ("{{- x -}}", {"x": 5}, 5),
        ("{{ x - 1 }}", {"x": 5}, 4),
        ("{# note #}{{ x }}", {"x": [1]}, [1]),
        ("{{ x }}\n", {"x": 1}, "1\n"),
        ("{{ a }}{{ b }}", {"a": 1, "b": 2}, "12"),
        ("{% raw %}{{ x }}{% endraw %}", {}, "{{ x }}"),
        ("no braces", {}, "no braces"),
    ],
)
def test_exactly_one_expression_keeps_its_type_and_anything_else_is_text(text: str, data: dict[str, Any],
                                                                          expected: Any) -> None:
    assert render(text, **data) == expected


@pytest.mark.parametrize("text", ["{{ x- }}", "{{ 7 - }}", "{{ x }", "{% if %}"])
def test_broken_templates_do_not_compile(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        compile_template(text)


@pytest.mark.parametrize(
    "text", ["{{ missing }}", "{{ [missing] }}", "{{ {'a': missing} }}", "a {{ [missing] }}", "{{ [[1, missing]] }}"]
)
def test_an_undefined_name_fails_even_inside_a_list_or_mapping(text: str) -> None:
    with pytest.raises(ExpressionError, match="'missing' is undefined"):
        render(text)


def test_a_guard_over_a_list_holding_an_undefined_name_fails_rather_than_being_true() -> None:
    with pytest.raises(ExpressionError, match="'missing' is undefined"):
        compile_guard("[missing]").render(base_scope())


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ 'x' * 10**9 }}",
        "{{ 9 ** 5000 }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '%*d' % (5, 1) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:{}}'.format(1, 999999999) }}",
        "{{ 'x' | center(999999999) }}",
        "{{ 'x' | indent(999999999) }}",
        "{{ '%0999999999d' | format(1) }}",
    ],
)
def test_templates_cannot_escape_the_sandbox_or_exhaust_memory(text: str) -> None:
    with pytest.raises(ExpressionError, match="not allowed in the sandbox"):
        render(text)


def test_ordinary_formatting_still_works() -> None:
    assert render("{{ '%5d' % 3 }}") == "    3"
    assert render("{{ '{:>4}|{:.2f}'.format('a', 1.234) }}") == "   a|1.23"
    assert render("{{ 'ab' | center(6) }}") == "  ab  "
    assert render("{{ 2 ** 10 }}") == 1024


def test_every_integer_a_template_makes_can_be_printed() -> None:
    value = render("{{ 2 ** 9000 * 2 ** 4000 }}")
    assert len(str(value)) < 4300
