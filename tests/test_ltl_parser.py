"""Parsing: the spec's examples, precedence, round trips, and every error path."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

import softhard.data as data_package
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


# --- deep formulas: every path is iterative, nesting is bounded by MAX_NESTING -------------

DEEP = 10_000


def test_ten_thousand_nested_yesterdays_parse_print_and_shift_the_word():
    """Y^k a holds at i iff i >= k and a is at i - k: the deep formula against that shallow rule."""
    phi = parse("Y " * DEEP + "a")
    built = Symbol("a")
    for _ in range(DEEP):
        built = Unary("Y", built)
    assert phi == built and hash(phi) == hash(built)
    assert str(phi) == "Y " * DEEP + "a"
    assert parse(str(phi)) == phi
    assert phi != parse("Y " * DEEP + "b") and phi != parse("Y " * (DEEP - 1) + "a")
    assert phi.depth == DEEP
    word = "".join(np.random.default_rng(0).choice(list("ab"), size=DEEP + 40))
    shifted = [i >= DEEP and word[i - DEEP] == "a" for i in range(len(word))]
    assert phi.evaluate(word, "a,b").tolist() == shifted
    assert sum(shifted) > 0


def test_ten_thousand_next_yesterday_pairs_equal_their_shallow_form():
    """(X Y)^k a at i is i < n-1 and a at i: checked against `a & X true` on every position."""
    phi = parse("X Y " * DEEP + "a")
    assert phi.depth == 2 * DEEP
    word = "".join(np.random.default_rng(1).choice(list("ab"), size=60))
    assert phi.evaluate(word, "a,b").tolist() == parse("a & X true").evaluate(word, "a,b").tolist()


def test_ten_thousand_nested_parentheses_and_negations():
    shallow = parse("a S (b | c)")
    deep = parse("(" * DEEP + "a S (b | c)" + ")" * DEEP)
    assert deep == shallow and str(deep) == str(shallow)
    negated = parse("!" * DEEP + "(a S (b | c))")
    assert str(negated) == "!" * DEEP + "(a S (b | c))" and parse(str(negated)) == negated
    for seed in range(3):
        word = "".join(np.random.default_rng(seed).choice(list("abc"), size=30))
        assert negated.evaluate(word).tolist() == shallow.evaluate(word).tolist()  # an even number of !
        assert parse("!" + str(negated)).evaluate(word).tolist() == (~shallow.evaluate(word)).tolist()


def test_long_operator_chains_print_and_evaluate():
    """Left-nested & and + chains and right-nested -> and S chains, against shallow equivalents."""
    conjunction = parse(" & ".join(["a"] * DEEP))
    assert parse(str(conjunction)) == conjunction
    assert conjunction.evaluate("abaa").tolist() == [True, False, True, True]
    total = parse(" + ".join(["#a"] * DEEP) + f" >= {2 * DEEP}")  # #a counted DEEP times: #a >= 2
    assert parse(str(total)) == total
    assert total.evaluate("abaa").tolist() == [False, False, True, True]
    implications = parse("a -> " * DEEP + "b")  # a -> (a -> ... (a -> b)) is a -> b
    assert parse(str(implications)) == implications
    assert implications.evaluate("abba").tolist() == parse("a -> b").evaluate("abba").tolist()
    # a S (a S ... (a S b)) with k S's holds on b a a a ... exactly at i >= k (each S steps past one a)
    word = "b" + "a" * 302
    for k in (1, 2, 3, 300):
        chain = parse("a S " * k + "b")
        assert parse(str(chain)) == chain
        assert chain.evaluate(word).tolist() == [i >= k for i in range(len(word))]


def test_nesting_up_to_the_limit_parses_and_one_more_is_refused_naming_it():
    from softhard.data.ltl import MAX_NESTING

    assert parse("Y " * MAX_NESTING + "a").depth == MAX_NESTING
    with pytest.raises(FormulaSyntaxError) as info:
        parse("Y " * (MAX_NESTING + 1) + "a")
    assert (info.value.token, info.value.offset) == ("Y", 2 * MAX_NESTING)
    assert f"MAX_NESTING = {MAX_NESTING}" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "opening, closing, operator_offset",
    [("(", ")", 0), ("!", "", 0), ("#", " > 0", 0), ("a -> ", "", 2), ("b S ", "", 2)],
)
def test_every_kind_of_nesting_counts_towards_the_limit(monkeypatch, opening, closing, operator_offset):
    """Parentheses, prefix operators, # and right-nested binary operators each open a level:
    the 51st is refused, at its own token, under a limit of 50."""
    from softhard.data.ltl import parser

    at_the_limit = opening * 50 + "a" + closing * 50
    expected = parse(at_the_limit)
    monkeypatch.setattr(parser, "MAX_NESTING", 50)
    assert parse(at_the_limit) == expected
    with pytest.raises(FormulaSyntaxError, match="MAX_NESTING = 50") as info:
        parse(opening * 51 + "a" + closing * 51)
    assert info.value.offset == 50 * len(opening) + operator_offset
    assert info.value.token == opening[operator_offset:].split()[0]


# --- module structure ---------------------------------------------------------------------


def _data_imports() -> dict[str, set[str]]:
    """softhard.data's modules -> the softhard.data modules (and the packages they run) each
    imports; fails on a softhard import anywhere but a module's top level (a lazy import, the
    usual way round a loop; heavy third-party packages may be imported where they are used)."""
    root = Path(data_package.__file__).parent
    paths = {
        ".".join(("softhard", "data", *(p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"))): path
        for path in root.rglob("*.py")
    }
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        nested = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in imports]
        assert not [node for node in nested if "softhard" in ast.unparse(node)], f"{name} imports softhard lazily"
        targets = set()
        for node in imports:
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            else:
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module for a in node.names)
        own_packages = {name.rsplit(".", k)[0] for k in range(1, name.count("."))}
        ran = {t.rsplit(".", k)[0] for t in targets for k in range(t.count(".") + 1)}  # a module runs its packages
        graph[name] = {t for t in ran if t in paths and t not in own_packages and t != name}
    return graph


def test_data_modules_import_one_another_without_a_loop():
    graph = _data_imports()
    assert "softhard.data.ltl.parser" in graph["softhard.data.ltl"]  # the graph is really read
    assert "softhard.data.alphabet" in graph["softhard.data.ltl.evaluate"]
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on a loop
