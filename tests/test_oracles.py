"""The vectorised evaluator against an independent LTLf implementation: flloat 0.3.0.

Our strict operators are translated to flloat's non-strict ones by data/ltl/ltlf.py (see
its docstring); ``test_translation_on_the_spec_examples`` pins the translation itself to
the spec's hand-computed worked examples, so a wrong translation cannot silently agree
with a wrong evaluator.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from flloat.parser.ltlf import LTLfParser

from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.ltlf import to_flloat
from softhard.data.ltl.syntax import Binary, Constant, Formula, Symbol, Unary, operator_texts

_FLLOAT = LTLfParser()

FUTURE_UNARY = operator_texts(kind="temporal", arity=1, direction="future")
PAST_UNARY = operator_texts(kind="temporal", arity=1, direction="past")
BOOLEAN = operator_texts(kind="boolean", arity=2)

# The spec's worked examples (word abba, positions 0..3), copied verbatim.
SPEC_EXAMPLES = [
    ("a", "1 0 0 1"),
    ("Y a", "0 1 0 0"),
    ("O a", "0 1 1 1"),
    ("H b", "1 0 0 0"),
    ("b S a", "0 1 1 1"),
    ("a U b", "1 1 0 0"),
    ("F a", "1 1 1 0"),
    ("#b > #a", "0 0 1 0"),
    ("b U a", "1 1 1 0"),
]


def flloat_truth(node: Formula, word: str, symbols: str, past: bool = False) -> list[bool]:
    """flloat's truth of the translated formula at every position of ``word``."""
    formula = _FLLOAT(to_flloat(node, mirror=past))
    trace_word = word[::-1] if past else word
    trace = [{s: c == s for s in symbols} for c in trace_word]
    n = len(word)
    truth = [bool(formula.truth(trace, i)) for i in range(n)]
    return truth[::-1] if past else truth


def random_formula(rng: random.Random, depth: int, symbols: str, unary: tuple, binary: tuple) -> Formula:
    """A random formula whose syntax tree has at most ``depth`` operator levels."""
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.1:
            return Constant(rng.random() < 0.5)
        return Symbol(rng.choice(symbols))
    if rng.random() < 0.5:
        return Unary(rng.choice(unary + ("!",)), random_formula(rng, depth - 1, symbols, unary, binary))
    return Binary(
        rng.choice(binary + BOOLEAN),
        random_formula(rng, depth - 1, symbols, unary, binary),
        random_formula(rng, depth - 1, symbols, unary, binary),
    )


def random_word(rng: random.Random, symbols: str, max_length: int) -> str:
    return "".join(rng.choice(symbols) for _ in range(rng.randint(1, max_length)))


def bits(text: str) -> list[bool]:
    return [c == "1" for c in text.split()]


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("formula, expected", SPEC_EXAMPLES)
def test_spec_worked_examples(formula, expected):
    """Every row of the spec's table on ``abba``, via evaluate, evaluate_batch and the
    vectorised batch labeller."""
    phi = parse(formula)
    assert phi.evaluate("abba").tolist() == bits(expected)
    assert phi.evaluate("abba", "a,b").tolist() == bits(expected)
    assert [t.tolist() for t in phi.evaluate_batch(["abba", "abba"])] == [bits(expected)] * 2
    ids = Alphabet("ab").encode("abba")[None, :]
    assert label_positions(phi, ids, Alphabet("ab")).tolist() == [bits(expected)]
    assert phi.accepts("abba") == bits(expected)[-1]


@pytest.mark.parametrize("formula, expected", [row for row in SPEC_EXAMPLES if "#" not in row[0]])
def test_translation_on_the_spec_examples(formula, expected):
    """The flloat translation reproduces the spec's hand-computed table (so the oracle is
    the spec, not an echo of our evaluator)."""
    phi = parse(formula)
    past = any(op in formula for op in ("Y", "O", "H", "S"))
    assert flloat_truth(phi, "abba", "ab", past=past) == bits(expected)


@pytest.mark.parametrize(
    "formula, word, expected",
    [
        # strict G: true at the last position, and it ignores position i itself
        ("G b", "abba", "0 0 0 1"),
        ("G a", "ba", "1 1"),
        # strict X at the end is false; strict F never looks at i
        ("X a", "aa", "1 0"),
        ("F a", "a", "0"),
        ("a U b", "b", "0"),
        ("(a U b) U a", "bab", "1 0 0"),
        ("(a U b) U a", "bba", "0 1 0"),
        ("G false", "ab", "0 1"),
        # past mirrors
        ("H a", "ba", "1 0"),
        ("O a", "a", "0"),
        ("Y true", "aaa", "0 1 1"),
    ],
)
def test_translation_hand_checked(formula, word, expected):
    """Hand-computed values (from the spec's table) for the corner cases of the translation."""
    phi = parse(formula)
    past = any(op in formula for op in ("Y", "O", "H", "S"))
    assert flloat_truth(phi, word, "ab", past=past) == bits(expected)
    assert phi.evaluate(word, "a,b").tolist() == bits(expected)


def _check_pairs(seed: int, count: int, past: bool):
    rng = random.Random(seed)
    unary, binary = (PAST_UNARY, ("S",)) if past else (FUTURE_UNARY, ("U",))
    checked = 0
    for _ in range(count):
        symbols = rng.choice(["ab", "abc"])
        phi = random_formula(rng, rng.randint(1, 4), symbols, unary, binary)
        for _ in range(2):
            word = random_word(rng, symbols, 7)
            expected = flloat_truth(phi, word, symbols, past=past)
            ours = phi.evaluate(word, Alphabet(symbols)).tolist()
            assert ours == expected, f"{phi} on {word!r}: ours {ours}, flloat {expected}"
            # the text form round-trips and evaluates the same
            assert parse(str(phi)).evaluate(word, Alphabet(symbols)).tolist() == expected
            checked += 1
    return checked


def test_future_formulas_match_flloat():
    assert _check_pairs(seed=20240611, count=180, past=False) == 360


def test_past_formulas_match_flloat_on_the_reversed_word():
    assert _check_pairs(seed=7, count=130, past=True) == 260


def test_batch_labelling_matches_flloat_per_word():
    """label_positions on a (B, n) batch: every row equals flloat on that row alone."""
    rng = random.Random(99)
    alphabet = Alphabet("abc")
    for _ in range(25):
        phi = random_formula(rng, 3, "abc", FUTURE_UNARY, ("U",))
        n = rng.randint(1, 6)
        words = ["".join(rng.choice("abc") for _ in range(n)) for _ in range(6)]
        ids = np.stack([alphabet.encode(w) for w in words])
        batch = label_positions(phi, ids, alphabet)
        for row, word in zip(batch, words):
            assert row.tolist() == flloat_truth(phi, word, "abc"), f"{phi} on {word!r}"
