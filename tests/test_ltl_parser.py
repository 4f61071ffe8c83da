"""Parsing: the spec's examples, precedence, round trips, and every error path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from softhard.data.ltl import FormulaSyntaxError, UnknownSymbolError, parse
from softhard.data.ltl.syntax import Arithmetic, Binary, Compare, Count, Integer, Symbol, Unary
from tests.formula_strategies import formulas

SPEC_EXAMPLES = [  # ltl-spec.md, word abba
    ("a", "1001"),
    ("Y a", "0100"),
    ("O a", "0111"),
    ("H b", "1000"),
    ("b S a", "0111"),
    ("a U b", "1100"),
    ("F a", "1110"),
    ("#b > #a", "0010"),
    ("b U a", "1110"),
]


@pytest.mark.parametrize("text, expected", SPEC_EXAMPLES)
def test_spec_worked_examples(text, expected):
    assert "".join(str(int(x)) for x in parse(text).evaluate("abba")) == expected


def test_accepts_reads_the_last_position():
    phi = parse("Y a")
    assert phi.accepts("ab") and not phi.accepts("ba")
    assert isinstance(phi.accepts("ab"), bool)


@pytest.mark.parametrize(
    "text, same_as",
    [
        ("a & b | c", "(a & b) | c"),
        ("a | b & c", "a | (b & c)"),
        ("a -> b -> c", "a -> (b -> c)"),
        ("a <-> b -> c", "a <-> (b -> c)"),
        ("a | b -> c", "(a | b) -> c"),
        ("a S b S c", "a S (b S c)"),
        ("a U b S c", "a U (b S c)"),
        ("a & b S c", "a & (b S c)"),
        ("!a S b", "(!a) S b"),
        ("Y a U b", "(Y a) U b"),
        ("!#a > #b", "!(#a > #b)"),
        ("#a + #b > 2 & c", "(#a + #b > 2) & c"),
        ("#a - #b % 3 = 1", "#a - #b % 3 = 1"),
        ("#(a | b) >= 2", "#(a | b) >= 2"),
        ("YXa", "Y X a"),
        ("aUb", "a U b"),
        ("  a\n&\tb ", "a & b"),
    ],
)
def test_precedence_and_associativity(text, same_as):
    assert parse(text) == parse(same_as)


def test_structure_of_a_mixed_formula():
    phi = parse("!#a > #b & c")
    assert phi == Binary("&", Unary("!", Compare(">", Count(Symbol("a")), Count(Symbol("b")))), Symbol("c"))


def test_term_arithmetic_is_left_associative():
    a, b, c = (Count(Symbol(s)) for s in "abc")
    assert parse("#a - #b - #c = 0") == Compare("=", Arithmetic("-", Arithmetic("-", a, b), c), Integer(0))


def test_keywords_are_not_symbols_but_prefixes_are():
    assert parse("trueish & false_") == Binary("&", Symbol("trueish"), Symbol("false_"))
    assert parse("foo S bar").evaluate(["foo", "bar", "foo"]).tolist() == [False, False, True]


@settings(max_examples=300, deadline=None)
@given(formulas())
def test_printing_round_trips(formula):
    assert parse(str(formula)) == formula


@pytest.mark.parametrize(
    "text, token, offset",
    [
        ("a &", "", 3),
        ("(a", "", 2),
        ("a b", "b", 2),
        ("a ) ", ")", 2),
        ("(a | b))", ")", 7),
        ("A", "A", 0),
        ("a & $", "$", 4),
        ("#a", "", 2),
        ("#a & b", "&", 3),
        ("#a > ", "", 5),
        ("#a % 1 = 0", "1", 5),
        ("#a % 3 = 3", "3", 9),
        ("#a % 3 > 1", ">", 7),
        ("#a < #b < #c", "<", 8),
        ("S a", "S", 0),
        ("", "", 0),
        ("3", "", 1),
        ("a & (#a)", ")", 7),
        ("#a > 2147483648", "2147483648", 5),
        ("#a % 99999999999999999999 = 0", "99999999999999999999", 5),
    ],
)
def test_syntax_errors_name_token_and_offset(text, token, offset):
    with pytest.raises(FormulaSyntaxError) as info:
        parse(text)
    assert (info.value.token, info.value.offset) == (token, offset)
    assert f"at offset {offset}" in str(info.value)
    assert (repr(token) if token else "end of formula") in str(info.value)
    assert isinstance(info.value, ValueError)


def test_largest_integer_literal_is_exact():
    """At the bound every sum is still exact in int64: no wrap-around flips a comparison."""
    phi = parse("#b + 2147483647 + 2147483647 > 2147483647 + 2147483647")
    assert phi.evaluate("ab", "a,b").tolist() == [False, True]
    assert parse("#b - 2147483647 < 0").evaluate("b", "a,b").tolist() == [True]


def test_unknown_symbols_name_symbol_and_position():
    with pytest.raises(UnknownSymbolError, match=r"'z' at position 2.*a,b"):
        parse("a").evaluate("abz", "a,b")
    with pytest.raises(UnknownSymbolError, match=r"'A' at position 1"):
        parse("a").evaluate("aA")
    with pytest.raises(UnknownSymbolError, match=r"'true' at position 0"):
        parse("a").evaluate(["true", "a"])


def test_formula_symbol_outside_the_alphabet_is_an_error():
    with pytest.raises(ValueError, match="'d'.*a,b"):
        parse("a & d").evaluate("ab", "a,b")


def test_empty_word_is_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        parse("a").evaluate("")


def test_batch_equals_one_by_one_for_mixed_lengths():
    phi = parse("(a S b) | F(#a > #b)")
    words = ["ab", "babba", "a", "bbbab", "aab"]
    batch = phi.evaluate_batch(words, "a,b")
    for word, truth in zip(words, batch):
        np.testing.assert_array_equal(truth, phi.evaluate(word, "a,b"))


@pytest.mark.parametrize("text", ["a", "true"])
def test_batch_of_no_words_is_empty(text):
    assert parse(text).evaluate_batch([]) == []


def test_truth_table_lists_every_subformula_once_root_last():
    table = parse("(a S b) & Y (a S b)").truth_table("abab")
    assert list(table) == ["a", "b", "a S b", "Y (a S b)", "(a S b) & Y (a S b)"]
    assert table["Y (a S b)"].tolist() == [False, False, False, True]
