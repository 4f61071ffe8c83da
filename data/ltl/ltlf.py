"""Formulas as LTLf text for flloat (an independent implementation, used as a test oracle
and by benchmarks/bench_labelling.py); this module only writes text and needs no flloat.

flloat's temporal operators are the usual NON-strict finite-trace ones, evaluated with
``formula.truth(trace, i)`` on a list of ``{symbol: bool}`` dicts:

    flloat X p at i   = i < n-1 and p at i+1          (strong next, false at the end)
    flloat WX p at i  = i = n-1 or p at i+1            (weak next, true at the end)
    flloat p U q at i = some j >= i has q, p on i..j-1
    flloat F p at i   = some j >= i has p
    flloat G p at i   = p at every j >= i

so our STRICT operators (shared/docs/ltl-spec.md) translate as

    X p   -> X p
    p U q -> X(p U q)      (some j > i has q, p strictly between)
    F p   -> X(F p)        (some j > i has p; false at the last position)
    G p   -> WX(G p)       (p at every j > i; true at the last position)

Past operators are the mirror image: Y, O, H, S become X, F, G, U (translated as above)
evaluated on the reversed word at position n-1-i. tests/test_oracles.py pins this
translation to the spec's hand-computed worked examples.
"""

from __future__ import annotations

from softhard.data.ltl.syntax import Binary, Constant, Formula, Node, Symbol, Unary, render

_STRICT = {"X": ("X(", ")"), "F": ("X(F(", "))"), "G": ("WX(G(", "))")}


def to_flloat(formula: Formula, mirror: bool = False) -> str:
    """Fully parenthesised flloat text of a future-only formula (or, with ``mirror``, of a
    past-only formula read as future over the reversed word). Raises ValueError for a formula
    mixing directions or using counting."""
    direction = "past" if mirror else "future"

    def pieces(node: Node) -> tuple:
        if isinstance(node, Symbol):
            return (node.name,)
        if isinstance(node, Constant):
            return ("true" if node.value else "false",)
        if not isinstance(node, (Unary, Binary)):
            raise ValueError(f"flloat has no counting: cannot translate {node}")
        row = node.operator
        if row.kind == "temporal" and row.direction != direction:
            raise ValueError(f"cannot translate mixed-direction formula {node}")
        op = row.mirror if mirror and row.kind == "temporal" else node.op
        if isinstance(node, Unary):
            opening, closing = _STRICT.get(op, (f"{op}(", ")"))
            return (opening, node.arg, closing)
        if row.kind == "temporal":
            return ("X((", node.left, f") {op} (", node.right, "))")
        return ("((", node.left, f") {op} (", node.right, "))")

    return render(formula, pieces)
