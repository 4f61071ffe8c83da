"""The vectorised evaluator against a literal, position-by-position reading of the spec."""

from __future__ import annotations

from hypothesis import given, settings

from softhard.data.ltl import parse
from softhard.data.ltl.syntax import Arithmetic, Binary, Compare, Constant, Count, Integer, Modulo, Symbol, Unary
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
