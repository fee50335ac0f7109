"""Tests for the calculator tool's safe arithmetic evaluator."""

from __future__ import annotations

import math
import sys

import pytest

from agentfsm.bindings import calculator
from agentfsm.bindings.calculator import MAX_INT_BITS, MAX_LENGTH, CalculatorError, evaluate, format_number


def error_of(expression: str) -> str:
    """The CalculatorError message evaluate() raises for an expression."""
    with pytest.raises(CalculatorError) as info:
        evaluate(expression)
    return str(info.value)


# --- arithmetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("17 * 23", 391),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 * 3 ** 2", 18),
        ("-2 ** 2", -4),  # ** binds tighter than unary minus, as in Python
        ("(-2) ** 2", 4),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("10 - 4 - 3", 3),  # left-associative
        ("-(2 + 3)", -5),
        ("--5", 5),
        ("+7", 7),
        ("- -+-1", -1),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("0 ** 0", 1),
        ("1_000 + 1", 1001),
        ("0x10 + 1", 17),
    ],
)
def test_integer_arithmetic(expression: str, expected: int) -> None:
    result = evaluate(expression)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("7 / 2", 3.5),
        ("17 / 1", 17.0),
        ("0.1 + 0.2", 0.1 + 0.2),
        ("2 ** -1", 0.5),
        ("2 ** 0.5", math.sqrt(2)),
        ("1.5e3 * 2", 3000.0),
        ("7.5 // 2", 3.0),
        ("7.5 % 2", 1.5),
        ("1e-999", 0.0),
    ],
)
def test_float_arithmetic(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert type(result) is float
    assert result == pytest.approx(expected)


def test_true_division_of_ints_keeps_python_semantics() -> None:
    assert evaluate("17 / 1") == 17.0
    assert type(evaluate("17 / 1")) is float


def test_whitespace_is_fine() -> None:
    assert evaluate("  1 +\t2  ") == 3
    assert evaluate("1 +\n2\r\n* 3") == 7
    assert evaluate("\n  (1 + 2)\n") == 3


def test_times_divide_and_minus_signs_are_normalized() -> None:
    assert evaluate("3 × 4") == 12
    assert evaluate("12 ÷ 4") == 3.0
    assert evaluate("6 × 7 ÷ 2") == 21.0
    assert evaluate("10 − 4") == 6


# --- functions and constants ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("abs(-3)", 3),
        ("abs(-2.5)", 2.5),
        ("round(2.567)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(1234, -2)", 1200),
        ("min(3, 1, 2)", 1),
        ("max(3, 1.5, 2)", 3),
        ("min(5)", 5),
        ("sqrt(16)", 4.0),
        ("sqrt(2) ** 2", 2.0),
        ("floor(2.7)", 2),
        ("floor(-2.5)", -3),
        ("ceil(2.1)", 3),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log(100, 10)", 2.0),
        ("log10(1000)", 3.0),
        ("exp(0)", 1.0),
        ("sin(0)", 0.0),
        ("cos(pi)", -1.0),
        ("tan(pi / 4)", 1.0),
        ("pi", math.pi),
        ("e", math.e),
        ("2 * pi * 3", 6 * math.pi),
        ("sqrt(max(9, 16)) + abs(min(-1, -2))", 6.0),
    ],
)
def test_functions_and_constants(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected)


def test_floor_and_ceil_return_ints() -> None:
    assert type(evaluate("floor(2.7)")) is int
    assert type(evaluate("ceil(2.1)")) is int
    assert type(evaluate("round(2.5)")) is int


def test_log_accepts_integers_beyond_float_range() -> None:
    assert evaluate("log10(10**4000)") == pytest.approx(4000)
    assert evaluate("log(2**10000, 2)") == pytest.approx(10000)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("sqrt()", "sqrt() takes exactly 1 argument (0 given)"),
        ("sqrt(1, 2)", "sqrt() takes exactly 1 argument (2 given)"),
        ("abs(1, 2)", "abs() takes exactly 1 argument (2 given)"),
        ("log()", "log() takes 1 or 2 arguments (0 given)"),
        ("log(1, 2, 3)", "log() takes 1 or 2 arguments (3 given)"),
        ("round(1, 2, 3)", "round() takes 1 or 2 arguments (3 given)"),
        ("min()", "min() takes at least 1 argument (0 given)"),
        ("max()", "max() takes at least 1 argument (0 given)"),
        ("exp(1, 2)", "exp() takes exactly 1 argument (2 given)"),
    ],
)
def test_wrong_argument_count(expression: str, message: str) -> None:
    assert error_of(expression) == message


def test_keyword_and_unpacked_arguments_are_rejected() -> None:
    assert "keyword arguments" in error_of("sqrt(x=4)")
    assert "unpacking" in error_of("min(*[1, 2])")


def test_constants_and_functions_are_not_interchangeable() -> None:
    assert error_of("pi(2)") == "'pi' is a constant, not a function"
    assert "'sqrt' is a function" in error_of("sqrt + 1")


@pytest.mark.parametrize("expression", ["x", "x + 1", "inf", "nan", "tau", "sum", "print"])
def test_unknown_names(expression: str) -> None:
    message = error_of(expression)
    assert message.startswith("unknown name")
    assert "e, pi" in message


def test_round_digits_must_be_a_bounded_whole_number() -> None:
    assert "whole number" in error_of("round(1.5, 0.5)")
    # round(x, -n) computes 10**n, so n must stay small.
    assert "whole number" in error_of("round(5, -10**9)")


# --- domain and arithmetic errors ----------------------------------------------------------------


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "1.0 / 0.0", "5 / (3 - 3)", "0 ** -1"])
def test_division_by_zero(expression: str) -> None:
    assert error_of(expression) == "division by zero"


@pytest.mark.parametrize("expression", ["1 % 0", "1.5 % 0.0"])
def test_modulo_by_zero(expression: str) -> None:
    assert error_of(expression) == "modulo by zero"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("sqrt(-1)", "sqrt needs a number that is not negative, got -1"),
        ("log(0)", "log needs a positive number, got 0"),
        ("log(-2.5)", "log needs a positive number, got -2.5"),
        ("log10(0)", "log10 needs a positive number, got 0"),
        ("log(8, 1)", "log base must be positive and not 1, got 1"),
        ("log(8, 0)", "log base must be positive and not 1, got 0"),
        ("(-8) ** 0.5", "not a real number"),
        ("(-1) ** (1 / 3)", "not a real number"),
    ],
)
def test_domain_errors(expression: str, fragment: str) -> None:
    message = error_of(expression)
    assert message.startswith("domain error: ")
    assert fragment in message


@pytest.mark.parametrize(
    "expression",
    [
        "1e308 * 10",
        "1e308 + 1e308",
        "exp(1000)",
        "2.0 ** 10000",
        "1.5 ** 5000",
        "1e308 // 1e-308",
        "10 ** 5000 / 3",  # int too large for a float
        "10 ** 400 + 0.5",
        "(10 ** 400) ** 0.5",
    ],
)
def test_float_overflow_is_result_too_large(expression: str) -> None:
    assert error_of(expression) == "result too large"


def test_infinite_literal_is_rejected() -> None:
    assert error_of("1e999") == "number too large: 1e999"


def test_float_only_functions_refuse_huge_integers() -> None:
    assert error_of("sqrt(10**400)") == "number too large for sqrt()"
    assert error_of("sin(10**400)") == "number too large for sin()"


# --- resource limits -----------------------------------------------------------------------------


def test_big_but_bounded_powers_are_computed() -> None:
    assert evaluate("2 ** 10000") == 2**10000
    assert evaluate("10 ** 4000") == 10**4000
    assert evaluate("(10 ** 1000) ** 4") == 10**4000
    assert evaluate("2 ** -10000") == 0.0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # Right-associative: 10**10 is computed (it is small), then 2**(10**10) is refused unevaluated.
        ("2**10**10", "exponent too large: 10**10 (at most 10000)"),
        ("9**9**9", "exponent too large: 9**9 (at most 10000)"),
        ("2 ** 10001", "exponent too large: 10001 (at most 10000)"),
        ("1 ** 100000", "exponent too large: 100000 (at most 10000)"),
        ("2 ** -100000", "exponent too large: -100000 (at most 10000)"),
        ("2 ** 1e6", "exponent too large: 1e6 (at most 10000)"),
        ("9**9**9**9", "exponent too large: 9**9 (at most 10000)"),
    ],
)
def test_exponent_limit(expression: str, message: str) -> None:
    assert error_of(expression) == message


@pytest.mark.parametrize(
    "expression",
    [
        "(10 ** 10000) ** 4",
        "(2 ** 10000) ** 10000",
        "3 ** 10000 * 3 ** 10000 * 3 ** 10000 * 3 ** 10000 * 3 ** 10000 * 3 ** 10000 * 3 ** 10000",
        "*".join(["(10**5000)"] * 10),
        "(10**10000)**3 * (10**10000)**3",
        "(10**10000)**3 * 10**200",
        "max(2**10000, 3) ** 11",
    ],
)
def test_integer_size_cap(expression: str) -> None:
    assert error_of(expression) == "result too large"


def test_integer_cap_is_max_int_bits() -> None:
    assert MAX_INT_BITS == 14_000  # every result prints: Python refuses str() of ints over 4,300 digits
    at_cap = "2**10000 * 2**3999"  # 2**13999 has exactly 14_000 bits
    assert evaluate(at_cap) == 2**13_999
    assert len(str(evaluate(at_cap))) < 4300
    assert error_of("2**10000 * 2**4000") == "result too large"
    assert error_of(at_cap + " + " + at_cap) == "result too large"


def test_too_long_input() -> None:
    assert evaluate("1+" * 499 + "1") == 500  # 999 characters
    too_long = f"expression too long: {MAX_LENGTH + 1} characters (at most {MAX_LENGTH})"
    assert error_of("1" * (MAX_LENGTH + 1)) == too_long
    assert error_of("1 + " * 100_000 + "1").startswith("expression too long")


def test_long_flat_sum_is_not_too_deep() -> None:
    # A flat sum is a left-deep tree; the evaluator must not recurse once per level.
    assert evaluate("+".join(["1"] * 500)) == 500
    assert evaluate("-".join(["1"] * 500)) == -498


def test_deeply_nested_parentheses() -> None:
    assert evaluate("(" * 150 + "1" + ")" * 150) == 1
    message = error_of("(" * 400 + "1" + ")" * 400)
    assert message.startswith("syntax error at column ")
    assert error_of("(" * 500 + "1" + ")" * 500).startswith("expression too long")


def test_deep_unary_chain_is_refused() -> None:
    assert error_of("-" * 999 + "1").startswith("expression too deeply nested")


def test_recursion_error_in_parser_becomes_calculator_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(calculator.ast, "parse", explode)
    assert error_of("1 + 1") == "expression too complex"


def test_near_the_recursion_limit_it_fails_cleanly() -> None:
    def nest(levels: int, expression: str) -> int | float:
        return evaluate(expression) if levels == 0 else nest(levels - 1, expression)

    used = 0
    frame = sys._getframe()
    while frame is not None:
        used += 1
        frame = frame.f_back
    levels = max(sys.getrecursionlimit() - used - 60, 0)
    assert nest(levels, "17 * 23") == 391
    # ast.parse itself needs stack for a 500-level tree; running out must surface as CalculatorError.
    try:
        assert nest(levels, "+".join(["1"] * 500)) == 500
    except CalculatorError as error:
        assert str(error) == "expression too complex"


# --- not arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "not arithmetic: function call '__import__' is not allowed"),
        ("__import__('os').system('echo hi')", "not arithmetic: calling "),
        ("open('x')", "not arithmetic: function call 'open' is not allowed"),
        ("eval('1')", "not arithmetic: function call 'eval' is not allowed"),
        ("exec('1')", "not arithmetic: function call 'exec' is not allowed"),
        ("globals()", "not arithmetic: function call 'globals' is not allowed"),
        ("pow(2, 3)", "not arithmetic: function call 'pow' is not allowed"),
        ("().__class__", "not arithmetic: attribute access '().__class__' is not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not arithmetic: calling "),
        ("a.b", "not arithmetic: attribute access 'a.b' is not allowed"),
        ("math.pi", "not arithmetic: attribute access 'math.pi' is not allowed"),
        ("(1).real", "not arithmetic: attribute access '(1).real' is not allowed"),
        ("lambda: 1", "not arithmetic: lambda 'lambda: 1' is not allowed"),
        ("(lambda: 1)()", "not arithmetic: calling "),
        ("[x for x in (1, 2)]", "not arithmetic: list comprehension"),
        ("{x for x in (1, 2)}", "not arithmetic: set comprehension"),
        ("{x: 1 for x in (1, 2)}", "not arithmetic: dict comprehension"),
        ("(x for x in (1, 2))", "not arithmetic: generator expression"),
        ("'abc'", "not arithmetic: string"),
        ("'1' + '2'", "not arithmetic: string"),
        ("'ab' * 10**9", "not arithmetic: string"),
        ("b'x'", "not arithmetic: bytes"),
        ("f'{1}'", "not arithmetic: f-string"),
        ("True", "not arithmetic: boolean 'True' is not allowed"),
        ("False + 1", "not arithmetic: boolean 'False' is not allowed"),
        ("None", "not arithmetic: constant 'None' is not allowed"),
        ("...", "not arithmetic: constant '...' is not allowed"),
        ("1j", "not arithmetic: complex number '1j' is not allowed"),
        ("2 + 3j", "not arithmetic: complex number '3j' is not allowed"),
        ("[1, 2]", "not arithmetic: list"),
        ("{1: 2}", "not arithmetic: dict"),
        ("{1}", "not arithmetic: set"),
        ("(1, 2)", "not arithmetic: tuple"),
        ("1[0]", "not arithmetic: subscript"),
        ("1 < 2", "not arithmetic: comparison"),
        ("1 == 1", "not arithmetic: comparison"),
        ("1 and 2", "not arithmetic: boolean operator"),
        ("not 1", "not arithmetic: operator 'not' is not allowed"),
        ("~1", "not arithmetic: operator '~' is not allowed"),
        ("1 & 2", "not arithmetic: operator '&' is not allowed"),
        ("1 | 2", "not arithmetic: operator '|' is not allowed"),
        ("1 << 100000000", "not arithmetic: operator '<<' is not allowed"),
        ("1 >> 2", "not arithmetic: operator '>>' is not allowed"),
        ("1 @ 2", "not arithmetic: operator '@' is not allowed"),
        ("1 if 1 else 2", "not arithmetic: conditional expression"),
        ("(x := 1)", "not arithmetic: assignment expression"),
        ("(yield)", "not arithmetic: yield"),
        ("await x", "not arithmetic: await"),
    ],
)
def test_not_arithmetic(expression: str, message: str) -> None:
    assert error_of(expression).startswith(message)


def test_not_arithmetic_anywhere_in_the_tree_is_rejected_before_computing() -> None:
    # Validation runs first, so the division by zero is never reached.
    assert error_of("1 / 0 + __import__('os')").startswith("not arithmetic: function call '__import__'")
    assert error_of("sqrt(abs(open('x')))").startswith("not arithmetic: function call 'open'")


def test_caret_suggests_double_star() -> None:
    message = error_of("2 ^ 10")
    assert "'^' is not allowed" in message
    assert "'**'" in message


def test_thousands_separator_is_explained() -> None:
    message = error_of("1,000 + 2")
    assert message.startswith("not arithmetic: tuple")
    assert "thousands separators" in message


def test_long_source_in_message_is_shortened() -> None:
    message = error_of("lambda: " + "1 + " * 100 + "1")
    assert len(message) < 120
    assert "…" in message


# --- syntax errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "prefix"),
    [
        ("1 +* 2", "syntax error at column 4: "),
        ("1..2", "syntax error at column 3: "),
        ("(1 + 2", "syntax error at column 1: '(' was never closed"),
        ("1 + 2)", "syntax error at column 6: "),
        ("   1 +* 2", "syntax error at column 7: "),  # columns count the leading spaces
        ("3 × × 4", "syntax error at column 5: "),  # columns count the original characters
        ("√4", "syntax error at column 1: invalid character"),
        ("1 +", "syntax error at column 4: "),  # end of input
        ("2 ** ", "syntax error at column 5: "),
        ("1,000,", "not arithmetic: tuple"),
    ],
)
def test_syntax_errors_carry_the_column(expression: str, prefix: str) -> None:
    assert error_of(expression).startswith(prefix)


def test_trailing_equals_is_rejected_with_a_hint() -> None:
    message = error_of("17 * 23 =")
    assert message.startswith("syntax error at column ")
    assert "remove the trailing '='" in message


@pytest.mark.parametrize("expression", ["", "   ", "\n\t"])
def test_empty_expression(expression: str) -> None:
    assert error_of(expression) == "empty expression"


def test_null_byte_is_a_syntax_error() -> None:
    assert error_of("1\x00").startswith("syntax error")


def test_python_statements_are_syntax_errors() -> None:
    assert error_of("import os").startswith("syntax error at column 1")
    assert error_of("x = 1").startswith("syntax error")
    assert error_of("1; 2").startswith("syntax error")


def test_invalid_escape_does_not_leak_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    assert error_of(r"'\d'").startswith("not arithmetic: string")
    assert len(recwarn) == 0


def test_non_text_input() -> None:
    with pytest.raises(CalculatorError, match="expression must be text, not int"):
        evaluate(5)  # type: ignore[arg-type]


def test_calculator_error_is_a_value_error() -> None:
    assert issubclass(CalculatorError, ValueError)


def test_messages_are_one_line() -> None:
    for expression in ["1 +", "__import__('os')", "2**10**10", "(" * 300 + "1", "1 +\n* 2"]:
        assert "\n" not in error_of(expression)


# --- format_number -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (17.0, "17"),
        (17, "17"),
        (-17.0, "-17"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.1 + 0.2, "0.3"),
        (1 / 3, "0.333333333333"),
        (2 / 3, "0.666666666667"),
        (2.5, "2.5"),
        (-2.5, "-2.5"),
        (1e14, "100000000000000"),
        (123456789.0, "123456789"),
        (1e20, "1e+20"),
        (1.5e-7, "1.5e-07"),
        (0.0001, "0.0001"),
        (math.sqrt(2), "1.41421356237"),
        (math.pi, "3.14159265359"),
        (391, "391"),
        (-5, "-5"),
        (10**20, "100000000000000000000"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
    ],
)
def test_format_number(value: int | float, expected: str) -> None:
    assert format_number(value) == expected


def test_format_number_renders_huge_ints_in_full() -> None:
    # Beyond Python's default 4300-digit limit for str(int).
    value = 10**30000 + 7
    text = format_number(value)
    assert text == "1" + "0" * 29_999 + "7"
    assert format_number(-value) == "-" + text
    assert format_number(10**600) == "1" + "0" * 600
    assert format_number(10**600 - 1) == "9" * 600
    assert format_number(10**1200 + 10**5) == "1" + "0" * 1194 + "1" + "0" * 5


def test_format_number_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        format_number(True)
    with pytest.raises(TypeError):
        format_number("1")  # type: ignore[arg-type]


def test_format_number_of_evaluated_results() -> None:
    assert format_number(evaluate("17 / 1")) == "17"
    assert format_number(evaluate("0.1 + 0.2")) == "0.3"
    assert format_number(evaluate("17 * 23")) == "391"
    assert format_number(evaluate("2 ** 100")) == str(2**100)
