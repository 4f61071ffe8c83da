"""Hypothesis strategies for random formulas, shared by the formula tests."""

from __future__ import annotations

from hypothesis import strategies as st

from softhard.data.ltl.syntax import (
    COMPARISONS,
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Integer,
    Modulo,
    Symbol,
    Unary,
    operator_texts,
)

SYMBOLS = ("a", "b", "c")
PAST = operator_texts(kind="temporal", arity=1, direction="past")
FUTURE = operator_texts(kind="temporal", arity=1, direction="future")
BINARY = operator_texts(arity=2, kind="boolean") + operator_texts(arity=2, kind="temporal")


def terms(formulas):
    operand = st.one_of(st.builds(Count, formulas), st.builds(Integer, st.integers(0, 3)))
    chain = st.lists(st.tuples(st.sampled_from(operator_texts(kind="arithmetic")), operand), max_size=2)

    def fold(first, rest):
        for op, right in rest:
            first = Arithmetic(op, first, right)
        return first

    return st.builds(fold, operand, chain)


def formulas(max_leaves: int = 12, counting: bool = True, unary=PAST + FUTURE + ("!",), binary=BINARY):
    leaves = st.one_of(st.builds(Symbol, st.sampled_from(SYMBOLS)), st.builds(Constant, st.booleans()))

    def extend(children):
        options = [
            st.builds(Unary, st.sampled_from(unary), children),
            st.builds(Binary, st.sampled_from(binary), children, children),
        ]
        if counting:
            options.append(st.builds(Compare, st.sampled_from(COMPARISONS), terms(children), terms(children)))
            options.append(
                st.integers(2, 4).flatmap(
                    lambda m: st.builds(Modulo, terms(children), st.just(m), st.integers(0, m - 1))
                )
            )
        return st.one_of(*options)

    return st.recursive(leaves, extend, max_leaves=max_leaves)


words = st.text(alphabet="abc", min_size=1, max_size=12)
