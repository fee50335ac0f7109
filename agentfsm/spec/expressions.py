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
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agentfsm.limits import TEMPLATE_MAX_ITEMS, TEMPLATE_MAX_STRING, TEMPLATE_MAX_WIDTH
from agentfsm.spec.template_budget import (
    TemplateLimit,
    budgeted,
    bounded_filters,
    bounded_lipsum,
    built,
    check_method,
    emitted,
    step,
)
from agentfsm.spec import functions

RESERVED_NAMES = frozenset({"event", "result", "run"})
"""Names every template sees besides the context keys; no input or context key may take them."""

MAX_EXPONENT = 10_000
MAX_INT_BITS = 14_000
"""Below Python's 4,300-digit limit for printing an int, so every result can be shown."""
MAX_FORMAT_WIDTH = TEMPLATE_MAX_WIDTH
_STEP_FILTER = "agentfsm.step"
"""A filter no template can name (the dot): the compiler puts it at the top of every loop body."""


class ExpressionError(Exception):
    """A template or guard failed while rendering; the message is one line for a person.

    `error_type` is the taxonomy type a state reports it as: `template.limit` when the render went over its
    budget, `timeout` when the state's timeout ran out during it, else `template.error`.
    """

    def __init__(self, message: str, error_type: str = "template.error") -> None:
        super().__init__(message)
        self.error_type = error_type


class _Undefined(StrictUndefined):
    """StrictUndefined that also refuses to be shown inside a list or dict (`{{ [missing] }}`)."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error  # type: ignore[assignment]


class _CompileOnly(CodeGenerator):
    """Jinja's code generator, minus everything that runs template code while compiling.

    Jinja folds constant expressions at compile time (its optimizer, constant output, `{% autoescape %}`
    values): `validate` would run `[1]|slice(10**9)|list` outside any budget. Here nothing but literal text is
    evaluated before a render; every `~` and every piece of output is counted against the render's budget.
    """

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def _output_const_repr(self, group: Any) -> str:
        return f"environment.emitted({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.emitted(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.built(")
        super().visit_Concat(node, frame)
        self.write(")")

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        for keyword in node.options:
            self.writeline(f"context.eval_ctx.{keyword.key} = ")
            self.visit(keyword.value, frame)
            if isinstance(keyword.value, nodes.Const):
                setattr(frame.eval_ctx, keyword.key, keyword.value.value)
            else:
                frame.eval_ctx.volatile = True


class _NamesUsed(_CompileOnly):
    """jinja2.meta's TrackingCodeGenerator on our generator: finding a template's names must not fold it either."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment, "<introspection>", "<introspection>", optimized=False)
        self.undeclared_identifiers: set[str] = set()

    def write(self, x: str) -> None:
        """Nothing is written: only the names matter."""

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for _, (action, param) in frame.symbols.loads.items():
            if action == "resolve" and param not in self.environment.globals:
                self.undeclared_identifiers.add(param)


def find_undeclared_variables(ast: nodes.Template) -> set[str]:
    names = _NamesUsed(ast.environment)
    names.visit(ast)
    return names.undeclared_identifiers


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on `**`, `*` and format widths so a template cannot exhaust memory,
    and every call, loop iteration and piece of output counted against the render's budget."""

    code_generator_class = _CompileOnly
    intercepted_binops = frozenset({"**", "*", "%", "+"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            return _bounded_power(left, right)
        if operator_name == "%":
            if isinstance(left, str):
                _check_printf_widths(left, right)
            return built(operator.mod(left, right))
        if operator_name == "+":
            return built(operator.add(left, right))
        return _bounded_multiply(left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's
        step()
        check_method(__obj, args, kwargs)
        return built(super().call(__context, __obj, *args, **kwargs))

    # what the generated code calls (`environment.emitted(...)`): the functions themselves, no wrapper between
    emitted = staticmethod(emitted)
    built = staticmethod(built)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_widths(value.__self__)
        return wrapped


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
"""A printf conversion, with its optional `(name)` (`%(a)400000000d` is as wide as `%400000000d`)."""
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
            bound = TEMPLATE_MAX_STRING if isinstance(sequence, str) else TEMPLATE_MAX_ITEMS
            if len(sequence) * times > bound:
                raise SecurityError("result of * would be too long")
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("result of * would be too large")
    return operator.mul(left, right)


ENVIRONMENT = _LimitedSandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True, optimized=False)
ENVIRONMENT.filters["format"] = _bounded_format_filter(ENVIRONMENT.filters["format"])
ENVIRONMENT.filters.update(functions.FILTERS)
ENVIRONMENT.filters = bounded_filters(ENVIRONMENT.filters)
ENVIRONMENT.filters[_STEP_FILTER] = lambda _: step()
ENVIRONMENT.globals["lipsum"] = bounded_lipsum(ENVIRONMENT.globals["lipsum"])
ENVIRONMENT.globals.update(functions.GLOBALS)
ENVIRONMENT.tests.update(functions.TESTS)
GLOBAL_NAMES = frozenset(ENVIRONMENT.globals)


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled value template or guard. `render(scope)` returns a Python value."""

    source: str
    names: frozenset[str]
    _render: Callable[[dict[str, Any]], Any]

    def render(self, scope: dict[str, Any]) -> Any:
        try:
            with budgeted():
                return self._render(scope)
        except ExpressionError:
            raise
        except TemplateLimit as exc:
            raise ExpressionError(describe_template_error(exc, self.source), exc.error_type) from exc
        except (
            TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError, MemoryError,
            RecursionError,
        ) as exc:
            raise ExpressionError(describe_template_error(exc, self.source)) from exc


def describe_template_error(exc: BaseException, source: str) -> str:
    """One line naming what went wrong and in which template."""
    if isinstance(exc, UndefinedError):
        what = f"undefined variable: {exc.message}"
    elif isinstance(exc, TemplateLimit):
        what = f"over the template budget: {exc}"
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
    ast = _count_loops(ENVIRONMENT.parse(text))
    single = _single_expression(ast)
    if single is not None:
        template, names = _expression_template(single)
        return Expression(text, names, lambda scope: _evaluate(template, scope))
    names = frozenset(find_undeclared_variables(ast)) - GLOBAL_NAMES
    template = _flatten_globals(ENVIRONMENT.from_string(ast))
    return Expression(text, names, lambda scope: _run_template(template, scope))


def _count_loops(ast: nodes.Template) -> nodes.Template:
    """Make every loop body start by counting a step (a recursive loop's calls are counted by the sandbox)."""
    for loop in ast.find_all(nodes.For):
        counting = nodes.Filter(nodes.Const(None), _STEP_FILTER, [], [], None, None, lineno=loop.lineno)
        loop.body.insert(0, nodes.ExprStmt(counting, lineno=loop.lineno))
    return ast


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def base_scope() -> dict[str, Any]:
    """The names every render sees before the context is layered on (Jinja's globals such as `range`)."""
    return dict(ENVIRONMENT.globals)
