"""The vectorised evaluator and the operator table against a literal, position-by-position
reading of the spec (written out here independently of the table)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings

from softhard.data.ltl import parse
from softhard.data.ltl.syntax import (
    OPERATORS,
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Integer,
    Modulo,
    Symbol,
    Unary,
    linear_form,
    operator_texts,
)
from tests.formula_strategies import formulas, words


def reference(node, w: str, i: int):
    """The semantics table of ltl-spec.md, transcribed quantifier by quantifier."""
    n = len(w)
    holds = lambda p, j: reference(p, w, j)  # noqa: E731
    if isinstance(node, Symbol):
        return w[i] == node.name
    if isinstance(node, Constant):
        return node.value
    if isinstance(node, Integer):
        return node.value
    if isinstance(node, Count):
        return sum(1 for j in range(i + 1) if holds(node.arg, j))
    if isinstance(node, Arithmetic):
        left, right = holds(node.left, i), holds(node.right, i)
        return left + right if node.op == "+" else left - right
    if isinstance(node, Compare):
        left, right = holds(node.left, i), holds(node.right, i)
        return {"<": left < right, "<=": left <= right, "=": left == right, "!=": left != right, ">": left > right, ">=": left >= right}[node.op]
    if isinstance(node, Modulo):
        return holds(node.term, i) % node.modulus == node.residue
    if isinstance(node, Unary):
        p = node.arg
        return {
            "!": lambda: not holds(p, i),
            "Y": lambda: i > 0 and holds(p, i - 1),
            "X": lambda: i < n - 1 and holds(p, i + 1),
            "O": lambda: any(holds(p, j) for j in range(i)),
            "H": lambda: all(holds(p, j) for j in range(i)),
            "F": lambda: any(holds(p, j) for j in range(i + 1, n)),
            "G": lambda: all(holds(p, j) for j in range(i + 1, n)),
        }[node.op]()
    assert isinstance(node, Binary)
    p, q = node.left, node.right
    if node.op == "S":
        return any(holds(q, j) and all(holds(p, k) for k in range(j + 1, i)) for j in range(i))
    if node.op == "U":
        return any(holds(q, j) and all(holds(p, k) for k in range(i + 1, j)) for j in range(i + 1, n))
    left, right = holds(p, i), holds(q, i)
    return {"&": left and right, "|": left or right, "->": (not left) or right, "<->": left == right}[node.op]


@settings(max_examples=300, deadline=None)
@given(formulas(), words)
def test_evaluator_matches_the_literal_semantics(formula, word):
    expected = [bool(reference(formula, word, i)) for i in range(len(word))]
    assert formula.evaluate(word, "a,b,c").tolist() == expected


@settings(max_examples=100, deadline=None)
@given(formulas(), words)
def test_every_subformula_table_matches_the_literal_semantics(formula, word):
    for text, truth in formula.truth_table(word, "a,b,c").items():
        node = parse(text)
        assert truth.tolist() == [bool(reference(node, word, i)) for i in range(len(word))]


# --- the operator table against the spec ---------------------------------------------------

BOOLEAN_SPEC = {  # ltl-spec.md: not, and, or, implies, iff
    "!": lambda p: not p,
    "&": lambda p, q: p and q,
    "|": lambda p, q: p or q,
    "->": lambda p, q: (not p) or q,
    "<->": lambda p, q: p == q,
}
COMPARISON_SPEC = {"<": (-1,), "<=": (-1, 0), "=": (0,), "!=": (-1, 1), ">": (1,), ">=": (0, 1)}  # allowed signs


def test_the_table_holds_exactly_the_spec_operators():
    assert set(operator_texts(kind="boolean")) == set(BOOLEAN_SPEC)
    assert set(operator_texts(kind="comparison")) == set(COMPARISON_SPEC)
    assert set(operator_texts(kind="arithmetic")) == {"+", "-"}
    assert set(operator_texts(kind="temporal", direction="past")) == {"Y", "O", "H", "S"}
    assert set(operator_texts(kind="temporal", direction="future")) == {"X", "F", "G", "U"}
    assert operator_texts(kind="temporal", strict=False) == ()  # every temporal operator is strict
    for text in operator_texts(kind="temporal"):
        row, mirror = OPERATORS[text], OPERATORS[OPERATORS[text].mirror]
        assert mirror.mirror == text and mirror.direction != row.direction
        assert (mirror.arity, mirror.boundary) == (row.arity, row.boundary)


@pytest.mark.parametrize("text", list(BOOLEAN_SPEC))
def test_boolean_functions_on_python_bools_and_arrays(text):
    row = OPERATORS[text]
    inputs = list(itertools.product((False, True), repeat=row.arity))
    for values in inputs:
        result = row.function(*values)
        assert type(result) is bool and result == BOOLEAN_SPEC[text](*values)
    columns = [np.array(column) for column in zip(*inputs)]
    assert row.vectorised(*columns).tolist() == [BOOLEAN_SPEC[text](*values) for values in inputs]


@pytest.mark.parametrize("text", list(COMPARISON_SPEC))
def test_comparisons_and_arithmetic_on_ints_and_arrays(text):
    pairs = list(itertools.product(range(-2, 3), repeat=2))
    left, right = (np.array(column) for column in zip(*pairs))
    expected = [np.sign(a - b) in COMPARISON_SPEC[text] for a, b in pairs]
    assert [OPERATORS[text].function(a, b) for a, b in pairs] == expected
    assert OPERATORS[text].vectorised(left, right).tolist() == expected
    assert OPERATORS["+"].vectorised(left, right).tolist() == [a + b for a, b in pairs]
    assert OPERATORS["-"].vectorised(left, right).tolist() == [a - b for a, b in pairs]


@pytest.mark.parametrize("text", ["Y", "O", "H", "S", "X", "F", "G", "U"])
def test_temporal_closed_forms_follow_the_recurrence_from_the_boundary(text):
    """The closed form (evaluator) equals the table's recurrence run position by position from
    its boundary value, and the literal semantics, on random operand rows."""
    row = OPERATORS[text]
    rng = np.random.default_rng(len(text) + ord(text))
    operands = [rng.random((6, 9)) < 0.5 for _ in range(row.arity)]
    closed = row.vectorised(*operands)
    order = range(9) if row.direction == "past" else range(8, -1, -1)
    step = 1 if row.direction == "past" else -1
    for b in range(6):
        value = row.boundary
        for i in order:
            if i != order[0]:
                value = row.function(value, *(bool(p[b, i - step]) for p in operands))
            assert closed[b, i] == value, (text, b, i)
    word = "".join(rng.choice(list("ab"), size=9))
    node = Unary(text, Symbol("a")) if row.arity == 1 else Binary(text, Symbol("a"), Symbol("b"))
    assert node.evaluate(word, "a,b").tolist() == [bool(reference(node, word, i)) for i in range(9)]


@pytest.mark.parametrize(
    "text, same_as",
    [("a | b & c S d", "a | (b & (c S d))"), ("a -> b | c", "a -> (b | c)"), ("a <-> b <-> c", "a <-> (b <-> c)")],
)
def test_precedence_in_the_table_is_the_spec_order(text, same_as):
    assert [OPERATORS[op].precedence for op in ("->", "|", "&", "S")] == sorted(
        OPERATORS[op].precedence for op in ("->", "|", "&", "S")
    )
    assert OPERATORS["<->"].precedence == OPERATORS["->"].precedence
    assert OPERATORS["U"].precedence == OPERATORS["S"].precedence
    assert parse(text) == parse(same_as)


def test_linear_forms_of_terms_comparisons_and_modular_tests():
    a, b = Count(Symbol("a")), Count(Symbol("b"))
    assert linear_form(parse("#a - #b + 3 - #a + #a > #b - 2").left) == ({a: 1, b: -1}, 3)
    assert linear_form(parse("#a - #b + 3 - #a + #a > #b - 2")) == ({a: 1, b: -2}, 5)
    assert linear_form(parse("#a - #a % 3 = 0")) == ({a: 0}, 0)  # cancelled, still listed
    deep = parse(" + ".join(["#a"] * 10_000) + " - #b = 7")
    assert linear_form(deep) == ({a: 10_000, b: -1}, -7)
