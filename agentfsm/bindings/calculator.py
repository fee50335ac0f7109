"""Safe arithmetic evaluator behind the builtin `calculator` tool: parses untrusted text, never executes it."""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

Number = int | float

MAX_LENGTH = 1000
MAX_NODES = 1000
# A 1000-character sum such as `1+1+...+1` is a left-deep tree about 500 levels deep.
MAX_DEPTH = 500
MAX_EXPONENT = 10_000
MAX_INT_BITS = 14_000  # below Python's 4,300-digit limit for printing an int
MAX_ROUND_DIGITS = 1000
_SEGMENT_WIDTH = 40

# LLMs write these; each maps one character to one, so error columns still match the input.
_NORMALIZE = str.maketrans({"×": "*", "÷": "/", "−": "-", "\n": " ", "\r": " ", "\t": " ", "\u00a0": " "})

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY_SYMBOLS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
}
_ALLOWED_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)

# Names for the syntax that parses as Python but is not arithmetic.
_KINDS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.Compare: "comparison",
    ast.BoolOp: "boolean operator",
    ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment expression",
    ast.Tuple: "tuple",
    ast.List: "list",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice",
}


class CalculatorError(ValueError):
    """Why an expression was refused or could not be computed, as one human-readable line."""


@dataclass(frozen=True, slots=True)
class _Function:
    """A whitelisted function: how many arguments it takes and what it computes."""

    min_args: int
    max_args: int | None  # None: any number from min_args up
    apply: Callable[[list[Number]], Number]


def evaluate(expression: str) -> int | float:
    """Compute an arithmetic expression such as `17 * 23` or `sqrt(2) / 2`; raise CalculatorError otherwise."""
    if not isinstance(expression, str):
        raise CalculatorError(f"expression must be text, not {type(expression).__name__}")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"expression too long: {len(expression)} characters (at most {MAX_LENGTH})")
    source = expression.translate(_NORMALIZE)
    body = source.lstrip(" ")
    if not body.strip():
        raise CalculatorError("empty expression")
    tree = _parse(body, indent=len(source) - len(body))
    _validate(tree, body)
    try:
        return _compute(tree, body)
    except (RecursionError, MemoryError) as error:
        raise CalculatorError("expression too complex") from error


def format_number(value: int | float) -> str:
    """Render a result for people: `17.0` as `17`, `0.1 + 0.2` as `0.3`, big integers in full."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"format_number() needs an int or float, not {type(value).__name__}")
    if isinstance(value, int):
        return _int_to_decimal(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.12g}"
    rounded = float(text)
    if rounded == 0:
        return "0"  # also turns -0.0 into 0
    if rounded.is_integer() and abs(rounded) < 1e15:
        return str(int(rounded))
    return text


# --- parsing and validation -------------------------------------------------------------------


def _parse(body: str, indent: int) -> ast.Expression:
    """Parse one expression; `indent` is how many leading spaces were cut, so columns match the input."""
    try:
        with warnings.catch_warnings():
            # Invalid escapes and the like warn on stderr; the text is rejected or accepted regardless.
            warnings.simplefilter("ignore")
            return ast.parse(body, mode="eval")
    except SyntaxError as error:
        raise CalculatorError(_syntax_message(error, body, indent)) from error
    except ValueError as error:  # null bytes, on Pythons that do not report them as SyntaxError
        raise CalculatorError(f"syntax error: {error}") from error
    except (RecursionError, MemoryError) as error:
        raise CalculatorError("expression too complex") from error


def _syntax_message(error: SyntaxError, body: str, indent: int) -> str:
    """Turn a SyntaxError into `syntax error at column N: ...`, with a hint for common LLM slips."""
    reason = error.msg or "invalid syntax"
    if body.rstrip().endswith("="):
        reason = f"{reason} (remove the trailing '=')"
    if error.offset is None:
        return f"syntax error: {reason}"
    # The parser reports 0 when the text ends before the expression does.
    column = error.offset if error.offset >= 1 else len(body.rstrip()) + 1
    return f"syntax error at column {column + indent}: {reason}"


def _validate(tree: ast.Expression, source: str) -> None:
    """Reject anything but numbers, whitelisted names and arithmetic, before computing anything."""
    stack: list[tuple[ast.expr, int]] = [(tree.body, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise CalculatorError(f"expression too complex: more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise CalculatorError(f"expression too deeply nested: more than {MAX_DEPTH} levels")
        _check_node(node, source)
        stack.extend((child, depth + 1) for child in _operands(node))


def _check_node(node: ast.expr, source: str) -> None:
    """Raise CalculatorError unless this one node (not its operands) is allowed."""
    if isinstance(node, ast.Constant):
        _check_constant(node, source)
    elif isinstance(node, ast.Name):
        _check_name(node)
    elif isinstance(node, ast.BinOp):
        _check_binary(node)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _ALLOWED_UNARY):
            symbol = "not" if isinstance(node.op, ast.Not) else "~"
            raise CalculatorError(f"not arithmetic: operator '{symbol}' is not allowed")
    elif isinstance(node, ast.Call):
        _check_call(node, source)
    else:
        raise CalculatorError(_not_arithmetic(node, source))


def _check_constant(node: ast.Constant, source: str) -> None:
    """Only finite real numbers: no strings, bytes, booleans, None, complex or `1e999`."""
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(_not_arithmetic(node, source))
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"number too large: {_segment(node, source)}")


def _check_name(node: ast.Name) -> None:
    """A bare name must be one of the constants."""
    if node.id in _CONSTANTS:
        return
    if node.id in _FUNCTIONS:
        raise CalculatorError(f"'{node.id}' is a function; call it, as in {node.id}(x)")
    raise CalculatorError(f"unknown name '{node.id}' (the only constants are {_listing(_CONSTANTS)})")


def _check_binary(node: ast.BinOp) -> None:
    """Allow the arithmetic operators; point `^` users to `**`."""
    if isinstance(node.op, _ALLOWED_BINARY):
        return
    symbol = _BINARY_SYMBOLS.get(type(node.op), type(node.op).__name__)
    if isinstance(node.op, ast.BitXor):
        raise CalculatorError("not arithmetic: '^' is not allowed; write powers with '**', as in 2**10")
    raise CalculatorError(f"not arithmetic: operator '{symbol}' is not allowed")


def _check_call(node: ast.Call, source: str) -> None:
    """A call must name a whitelisted function, pass plain positional arguments, and the right number."""
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(f"not arithmetic: calling {_segment(node.func, source)!r} is not allowed")
    name = node.func.id
    if name in _CONSTANTS:
        raise CalculatorError(f"'{name}' is a constant, not a function")
    if name not in _FUNCTIONS:
        raise CalculatorError(f"not arithmetic: function call '{name}' is not allowed")
    if node.keywords:
        raise CalculatorError(f"not arithmetic: keyword arguments to {name}() are not allowed")
    _check_arity(name, _FUNCTIONS[name], len(node.args))


def _check_arity(name: str, function: _Function, given: int) -> None:
    """Raise `sqrt takes exactly 1 argument (2 given)` and the like."""
    low, high = function.min_args, function.max_args
    if low <= given and (high is None or given <= high):
        return
    if high is None:
        expected = f"at least {_arguments(low)}"
    elif low == high:
        expected = f"exactly {_arguments(low)}"
    else:
        expected = f"{low} or {_arguments(high)}" if high == low + 1 else f"{low} to {_arguments(high)}"
    raise CalculatorError(f"{name}() takes {expected} ({given} given)")


def _arguments(count: int) -> str:
    """`1 argument`, `2 arguments`."""
    return f"{count} argument" if count == 1 else f"{count} arguments"


def _not_arithmetic(node: ast.AST, source: str) -> str:
    """`not arithmetic: lambda 'lambda: 1' is not allowed`, naming the kind of syntax found."""
    kind = _KINDS.get(type(node), type(node).__name__)
    if isinstance(node, ast.Constant):
        kind = _constant_kind(node.value)
    message = f"not arithmetic: {kind} {_segment(node, source)!r} is not allowed"
    if isinstance(node, ast.Tuple):
        message += " (write numbers without thousands separators, and one expression only)"
    return message


def _constant_kind(value: object) -> str:
    """What a non-number literal is, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, complex):
        return "complex number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    return "constant"


def _segment(node: ast.AST, source: str) -> str:
    """The source text of a node, shortened for one-line messages."""
    text = ast.get_source_segment(source, node) or type(node).__name__
    return text if len(text) <= _SEGMENT_WIDTH else text[: _SEGMENT_WIDTH - 1] + "…"


def _listing(names: dict[str, object]) -> str:
    """`e, pi`."""
    return ", ".join(sorted(names))


def _operands(node: ast.expr) -> list[ast.expr]:
    """The sub-expressions whose values an allowed node needs, in evaluation order."""
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


# --- computing --------------------------------------------------------------------------------


def _compute(tree: ast.Expression, source: str) -> Number:
    """Evaluate a validated tree with an explicit stack, so depth never touches Python's recursion limit."""
    pending: list[tuple[ast.expr, bool]] = [(tree.body, False)]
    values: list[Number] = []
    while pending:
        node, operands_ready = pending.pop()
        operands = _operands(node)
        if not operands_ready:
            pending.append((node, True))
            pending.extend((child, False) for child in reversed(operands))
            continue
        arguments = values[len(values) - len(operands) :]
        del values[len(values) - len(operands) :]
        values.append(_checked(_apply(node, arguments, source)))
    return values[0]


def _apply(node: ast.expr, arguments: list[Number], source: str) -> Number:
    """The value of one validated node, given its operands' values."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        return -arguments[0] if isinstance(node.op, ast.USub) else +arguments[0]
    if isinstance(node, ast.BinOp):
        return _binary(node, arguments[0], arguments[1], source)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return _call(node.func.id, arguments)


def _binary(node: ast.BinOp, left: Number, right: Number, source: str) -> Number:
    """Apply an arithmetic operator, refusing results too large to compute quickly."""
    op = node.op
    try:
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return _multiply(left, right)
        if isinstance(op, ast.Div):
            return left / right
        if isinstance(op, ast.FloorDiv):
            return left // right
        if isinstance(op, ast.Mod):
            return left % right
        return _power(left, right, _segment(node.right, source))
    except ZeroDivisionError as error:
        raise CalculatorError("modulo by zero" if isinstance(op, ast.Mod) else "division by zero") from error
    except OverflowError as error:
        raise CalculatorError("result too large") from error


def _multiply(left: Number, right: Number) -> Number:
    """Multiply, checking integer size first since the product's bits are about the sum of both."""
    if isinstance(left, int) and isinstance(right, int) and left and right:
        if left.bit_length() + right.bit_length() - 1 > MAX_INT_BITS:
            raise CalculatorError("result too large")
    return left * right


def _power(base: Number, exponent: Number, exponent_text: str) -> Number:
    """`base ** exponent` with a bounded exponent and integer result size estimated before computing."""
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large: {exponent_text} (at most {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise CalculatorError("result too large")
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("domain error: a negative number to a fractional power is not a real number")
    return result


def _checked(value: Number) -> Number:
    """Refuse integers over MAX_INT_BITS and non-finite floats, whichever operation produced them."""
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise CalculatorError("result too large")
        return value
    if math.isinf(value):
        raise CalculatorError("result too large")
    if math.isnan(value):
        raise CalculatorError("result is not a number")
    return value


def _call(name: str, arguments: list[Number]) -> Number:
    """Call a whitelisted function, translating Python's errors into CalculatorError."""
    try:
        return _FUNCTIONS[name].apply(arguments)
    except CalculatorError:
        raise
    except OverflowError as error:
        raise CalculatorError("result too large") from error
    except ZeroDivisionError as error:
        raise CalculatorError("division by zero") from error
    except ValueError as error:
        # Safety net: _sqrt and _log check the known domains first, for clearer messages.
        raise CalculatorError(f"domain error: {name}() is undefined for {_shown(arguments)}") from error


def _shown(arguments: list[Number]) -> str:
    """Arguments for an error message, each shortened."""
    return ", ".join(_short(format_number(value)) for value in arguments)


def _short(text: str) -> str:
    """Keep a number readable inside one line."""
    return text if len(text) <= _SEGMENT_WIDTH else text[: _SEGMENT_WIDTH - 1] + "…"


def _as_float(name: str, value: Number) -> float:
    """Convert for a float-only math function; a huge integer cannot be."""
    try:
        return float(value)
    except OverflowError as error:
        raise CalculatorError(f"number too large for {name}()") from error


def _sqrt(arguments: list[Number]) -> float:
    """Square root of a non-negative number."""
    (value,) = arguments
    if value < 0:
        shown = _short(format_number(value))
        raise CalculatorError(f"domain error: sqrt needs a number that is not negative, got {shown}")
    return math.sqrt(_as_float("sqrt", value))


def _log(arguments: list[Number]) -> float:
    """Natural logarithm, or `log(x, base)`; math.log takes huge integers directly."""
    value = arguments[0]
    _require_positive("log", value)
    if len(arguments) == 1:
        return math.log(value)
    base = arguments[1]
    if base <= 0 or base == 1:
        raise CalculatorError(f"domain error: log base must be positive and not 1, got {_short(format_number(base))}")
    return math.log(value, base)


def _log10(arguments: list[Number]) -> float:
    """Base-10 logarithm."""
    (value,) = arguments
    _require_positive("log10", value)
    return math.log10(value)


def _require_positive(name: str, value: Number) -> None:
    """Logarithms are undefined at zero and below."""
    if value <= 0:
        raise CalculatorError(f"domain error: {name} needs a positive number, got {_short(format_number(value))}")


def _round(arguments: list[Number]) -> Number:
    """`round(x)` or `round(x, digits)` with a bounded whole number of digits."""
    if len(arguments) == 1:
        return round(arguments[0])
    value, digits = arguments
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        raise CalculatorError(
            f"round() digits must be a whole number from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}, "
            f"got {_short(format_number(digits))}"
        )
    return round(value, digits)


def _float_function(name: str, function: Callable[[float], float]) -> _Function:
    """A one-argument function of floats, such as exp or sin."""
    return _Function(1, 1, lambda arguments: function(_as_float(name, arguments[0])))


_FUNCTIONS: dict[str, _Function] = {
    "abs": _Function(1, 1, lambda arguments: abs(arguments[0])),
    "round": _Function(1, 2, _round),
    "min": _Function(1, None, min),
    "max": _Function(1, None, max),
    "sqrt": _Function(1, 1, _sqrt),
    "floor": _Function(1, 1, lambda arguments: math.floor(arguments[0])),
    "ceil": _Function(1, 1, lambda arguments: math.ceil(arguments[0])),
    "log": _Function(1, 2, _log),
    "log10": _Function(1, 1, _log10),
    "exp": _float_function("exp", math.exp),
    "sin": _float_function("sin", math.sin),
    "cos": _float_function("cos", math.cos),
    "tan": _float_function("tan", math.tan),
}


# --- formatting -------------------------------------------------------------------------------

# Below the smallest limit sys.set_int_max_str_digits accepts (640), so str() of a chunk always works.
_CHUNK_DIGITS = 600
_CHUNK = 10**_CHUNK_DIGITS


def _int_to_decimal(value: int) -> str:
    """Decimal digits of any int, without tripping Python's int-to-str digit limit (4300 by default)."""
    if value < 0:
        return "-" + _int_to_decimal(-value)
    chunks: list[str] = []
    while value >= _CHUNK:
        value, low = divmod(value, _CHUNK)
        chunks.append(str(low).rjust(_CHUNK_DIGITS, "0"))
    chunks.append(str(value))
    return "".join(reversed(chunks))
