"""Templates and guards: Jinja2 in an immutable sandbox, compiled once, rendered many times.

The YAML is the author's and is trusted like a Makefile; data (inputs, LLM replies,
tool output, event payloads) is untrusted and only ever a *value* in the scope: it is
never parsed as a template. The sandbox stops attribute escapes (`''.__class__`), and
the operator limits below stop a template from hanging or exhausting memory
(`2 ** 10 ** 10`, `'x' * 10 ** 10`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.meta import find_undeclared_variables
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

RESERVED_NAMES = frozenset({"event", "result", "run"})
"""Names every template sees besides the context keys; no input or context key may take them."""

MAX_EXPONENT = 10_000
MAX_SEQUENCE_LENGTH = 1_000_000
MAX_INT_BITS = 14_000
"""Below Python's 4,300-digit limit for printing an int, so every result can be shown."""
MAX_FORMAT_WIDTH = 10_000


class ExpressionError(Exception):
    """A template or guard failed while rendering; the message is one line for a person."""


class _Undefined(StrictUndefined):
    """StrictUndefined that also refuses to be shown inside a list or dict (`{{ [missing] }}`)."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error  # type: ignore[assignment]


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on `**`, `*` and format widths so a template cannot exhaust memory."""

    intercepted_binops = frozenset({"**", "*", "%"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            return _bounded_power(left, right)
        if operator_name == "%":
            if isinstance(left, str):
                _check_printf_widths(left, right)
            return operator.mod(left, right)
        return _bounded_multiply(left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_widths(value.__self__)
        return wrapped


_PRINTF_SPEC = re.compile(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def _check_printf_widths(template: str, values: Any) -> None:
    for width, precision in _PRINTF_SPEC.findall(template):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                raise SecurityError(f"a % format width or precision over {MAX_FORMAT_WIDTH} is not allowed")


def _check_format_widths(template: str) -> None:
    for spec in _FORMAT_SPEC.findall(template):
        if "{" in spec or any(int(number) > MAX_FORMAT_WIDTH for number in re.findall(r"\d+", spec)):
            raise SecurityError(f"a format width or precision over {MAX_FORMAT_WIDTH} is not allowed")


def _bounded_width(filter_function: Any) -> Any:
    def bounded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
            raise SecurityError(f"a width over {MAX_FORMAT_WIDTH} is not allowed")
        return filter_function(value, width, *args, **kwargs)

    return bounded


def _bounded_format_filter(filter_function: Any) -> Any:
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            _check_printf_widths(value, args)
        return filter_function(value, *args, **kwargs)

    return bounded


def _bounded_power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise SecurityError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise SecurityError("result of ** would be too large")
    return operator.pow(base, exponent)


def _bounded_multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if len(sequence) * times > MAX_SEQUENCE_LENGTH:
                raise SecurityError("result of * would be too long")
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("result of * would be too large")
    return operator.mul(left, right)


ENVIRONMENT = _LimitedSandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
ENVIRONMENT.filters["center"] = _bounded_width(ENVIRONMENT.filters["center"])
ENVIRONMENT.filters["indent"] = _bounded_width(ENVIRONMENT.filters["indent"])
ENVIRONMENT.filters["format"] = _bounded_format_filter(ENVIRONMENT.filters["format"])
GLOBAL_NAMES = frozenset(ENVIRONMENT.globals)


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled value template or guard. `render(scope)` returns a Python value."""

    source: str
    names: frozenset[str]
    _render: Callable[[dict[str, Any]], Any]

    def render(self, scope: dict[str, Any]) -> Any:
        try:
            return self._render(scope)
        except ExpressionError:
            raise
        except (
            TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError, MemoryError,
            RecursionError,
        ) as exc:
            raise ExpressionError(describe_template_error(exc, self.source)) from exc


def describe_template_error(exc: BaseException, source: str) -> str:
    """One line naming what went wrong and in which template."""
    if isinstance(exc, UndefinedError):
        what = f"undefined variable: {exc.message}"
    elif isinstance(exc, SecurityError):
        what = f"not allowed in the sandbox: {exc}"
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    snippet = " ".join(source.split())
    if len(snippet) > 60:
        snippet = snippet[:57] + "..."
    return f"{what} (in {snippet!r})"


def _run_template(template: Any, scope: dict[str, Any]) -> str:
    return "".join(template.root_render_func(template.new_context(scope, shared=True)))


def _evaluate(template: Any, scope: dict[str, Any]) -> Any:
    context = template.new_context(scope, shared=True)
    for _ in template.root_render_func(context):
        pass
    value = context.vars["result"]
    _reject_undefined(value)
    return value


def _reject_undefined(value: Any) -> None:
    """Raise UndefinedError (naming the variable) if `value` is, or holds, an undefined name."""
    if isinstance(value, Undefined):
        str(value)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_undefined(item)
    elif isinstance(value, dict):
        for item in value.values():
            _reject_undefined(item)


def _flatten_globals(template: Any) -> Any:
    """A template's globals as a plain dict: Jinja otherwise rebuilds them from a ChainMap on every render.

    Safe because ENVIRONMENT's globals never change after import.
    """
    template.globals = dict(template.globals)
    return template


def _parse_expression(source: str) -> nodes.Expr:
    parser = Parser(ENVIRONMENT, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("unexpected text after the expression", parser.stream.current.lineno)
    return expression


def _expression_template(expression: nodes.Expr) -> tuple[Any, frozenset[str]]:
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)], lineno=1)
    body.set_environment(ENVIRONMENT)
    names = frozenset(find_undeclared_variables(body)) - {"result"} - GLOBAL_NAMES
    # `result` is both the assignment target and a visible name; keep it when the expression reads it
    if any(node.name == "result" for node in expression.find_all(nodes.Name)):
        names = names | {"result"}
    return _flatten_globals(ENVIRONMENT.from_string(body)), names


def _single_expression(ast: nodes.Template) -> nodes.Expr | None:
    """The expression when a parsed template is exactly one `{{ expression }}` and nothing else."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return None
    (only,) = ast.body[0].nodes if len(ast.body[0].nodes) == 1 else (None,)
    if only is None or isinstance(only, nodes.TemplateData):
        return None
    return only


def compile_guard(source: str) -> Expression:
    """Compile a guard such as `attempts < 3`. Raises TemplateSyntaxError."""
    template, names = _expression_template(_parse_expression(source))
    return Expression(source, names, lambda scope: _evaluate(template, scope))


def compile_template(text: str) -> Expression:
    """Compile a value template. Exactly one `{{ expr }}` keeps the expression's type; anything else renders to text.

    Raises TemplateSyntaxError.
    """
    if not is_template(text):
        return Expression(text, frozenset(), lambda scope: text)
    ast = ENVIRONMENT.parse(text)
    single = _single_expression(ast)
    if single is not None:
        template, names = _expression_template(single)
        return Expression(text, names, lambda scope: _evaluate(template, scope))
    names = frozenset(find_undeclared_variables(ast)) - GLOBAL_NAMES
    template = _flatten_globals(ENVIRONMENT.from_string(ast))
    return Expression(text, names, lambda scope: _run_template(template, scope))


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def base_scope() -> dict[str, Any]:
    """The names every render sees before the context is layered on (Jinja's globals such as `range`)."""
    return dict(ENVIRONMENT.globals)
