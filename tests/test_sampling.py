"""Exact uniform samplers (data.sampling, data.counting via data.language): labels,
uniformity (chi-square against the exact class, enumerated by the evaluator), long words,
empty classes and reproducibility. Every random draw uses a fixed seed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from softhard.data.cli import main
from softhard.data.errors import AutomatonTooLargeError, EmptyClassError
from softhard.data.language import Language
from softhard.data.registry import REGISTRY

COUNTING = ["majority", "dyck1", "equal_count", "majority_abc", "dyck_depth3"]
Z_999 = 3.090232  # standard normal quantile at 0.999


def chi2_critical(df: int, z: float = Z_999) -> float:
    """Upper 0.1% point of chi-square(df), Wilson-Hilferty approximation (accurate to well
    under 1% for df >= 3; e.g. df=100: 149.4 vs the table's 149.45; df=10: 29.55 vs 29.59)."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def codes(ids: np.ndarray, k: int) -> np.ndarray:
    """Each word of a (B, n) id array as one integer (base k)."""
    return ids @ (k ** np.arange(ids.shape[1])[::-1])


def all_words(k: int, n: int) -> np.ndarray:
    return np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64).reshape(-1, n)


def class_members(language: Language, n: int, label: str) -> np.ndarray:
    """Codes of every word of length n in the class, found by the evaluator (not the sampler)."""
    k = len(language.alphabet)
    words = all_words(k, n)
    if label == "any":
        return codes(words, k)
    accepted = language.label(words)[:, -1]
    return codes(words[accepted == (label == "positive")], k)


def chi_square_uniform(draws: np.ndarray, members: np.ndarray) -> tuple[float, int]:
    """Pearson statistic of the draws' codes against uniform over ``members``; raises if a
    draw falls outside the class."""
    index = {int(c): i for i, c in enumerate(members)}
    observed = np.zeros(len(members))
    for c in draws:
        observed[index[int(c)]] += 1  # KeyError: the sampler left the class
    expected = len(draws) / len(members)
    return float(((observed - expected) ** 2 / expected).sum()), len(members) - 1


def assert_uniform(language: Language, n: int, label: str, per_word: int, seed: int):
    members = class_members(language, n, label)
    k = len(language.alphabet)
    draws = language.sample(n, per_word * len(members), label, np.random.default_rng(seed))
    assert draws.shape == (per_word * len(members), n)
    statistic, df = chi_square_uniform(codes(draws, k), members)
    assert statistic < chi2_critical(df), f"{language.title} {label} n={n}: chi2 {statistic:.1f} on {df} df"
    return draws, members


def assert_labels(language: Language, ids: np.ndarray, label: str):
    truth = language.label(ids)[:, -1]
    assert truth.all() if label == "positive" else not truth.any(), f"{language.title}: a {label} word is mislabelled"


# --- the statistics harness itself -----------------------------------------------------


def test_chi2_critical_matches_table_values():
    # chi-square 0.999 quantiles from standard tables
    for df, table in [(10, 29.588), (50, 86.661), (100, 149.449), (255, 331.7)]:
        assert abs(chi2_critical(df) - table) / table < 0.01


def test_chi_square_detects_a_biased_sampler():
    """The uniformity test has power: a naive random walk (uniform over letters that can
    still reach the class) is not uniform over words, and the same statistic rejects it."""
    language = REGISTRY["tomita4"].language()
    n = 8
    sampler = language.sampler(n, "positive")
    rng = np.random.default_rng(0)
    members = class_members(language, n, "positive")
    draws = np.empty((30 * len(members), n), dtype=np.int64)
    states = np.full(len(draws), sampler.start)
    for t in range(n):
        alive = np.isfinite(sampler.log_counts[n - t - 1][sampler.transitions[states]])  # (B, k)
        choice = (rng.random(len(draws))[:, None] * alive.sum(1, keepdims=True)).astype(int)
        letters = np.argmax(np.cumsum(alive, axis=1) > choice, axis=1)
        draws[:, t] = letters
        states = sampler.transitions[states, letters]
    statistic, df = chi_square_uniform(codes(draws, 2), members)
    assert statistic > chi2_critical(df)


# --- uniformity over small exhaustive classes -------------------------------------------


@pytest.mark.parametrize(
    "name, n, label",
    [
        ("tomita4", 8, "positive"),
        ("tomita4", 8, "negative"),
        ("request_response", 6, "positive"),
        ("request_response", 5, "negative"),
        ("since_ab", 5, "positive"),
        ("tomita6", 8, "negative"),
    ],
)
def test_regular_sampler_is_uniform_over_the_class(name, n, label):
    language = REGISTRY[name].language()
    draws, members = assert_uniform(language, n, label, per_word=25, seed=11)
    assert_labels(language, draws, label)
    assert language.sampler(n, label).log_size == pytest.approx(math.log(len(members)), abs=1e-9)


@pytest.mark.parametrize(
    "name, n, label",
    [
        ("majority", 8, "positive"),
        ("majority", 8, "negative"),
        ("dyck1", 8, "positive"),
        ("dyck1", 8, "negative"),
        ("majority_abc", 5, "positive"),
        ("equal_count", 5, "negative"),
        ("dyck_depth3", 10, "positive"),
    ],
)
def test_counting_sampler_is_uniform_over_the_class(name, n, label):
    language = REGISTRY[name].language()
    draws, members = assert_uniform(language, n, label, per_word=25, seed=12)
    assert_labels(language, draws, label)
    assert language.sampler(n, label).log_size == pytest.approx(math.log(len(members)), abs=1e-9)


@pytest.mark.parametrize("name, n", [("majority", 8), ("majority_abc", 5)])
def test_label_any_is_uniform_over_all_words(name, n):
    language = REGISTRY[name].language()
    draws, members = assert_uniform(language, n, "any", per_word=25, seed=13)
    assert len(members) == len(language.alphabet) ** n


def _binned_chi_square(observed_k: np.ndarray, weights: dict[int, int], min_expected: float = 20.0):
    """Chi-square of observed values of k against P(k) proportional to integer weights,
    merging adjacent k until each bin expects >= min_expected draws."""
    total = sum(weights.values())
    draws = len(observed_k)
    counts = np.bincount(observed_k, minlength=max(weights) + 1)
    bins, expected, observed = [], 0.0, 0
    for k in sorted(weights):
        expected += draws * (weights[k] / total)  # exact big-int ratio, then float
        observed += int(counts[k])
        if expected >= min_expected:
            bins.append((observed, expected))
            expected, observed = 0.0, 0
    if expected > 0 and bins:  # fold the remainder into the last bin
        o, e = bins.pop()
        bins.append((o + observed, e + expected))
    assert int(sum(o for o, _ in bins)) == draws, "a draw fell outside the class"
    statistic = sum((o - e) ** 2 / e for o, e in bins)
    return statistic, len(bins) - 1


@pytest.mark.parametrize(
    "name, label, member",
    [
        ("majority", "positive", lambda n, k: 2 * k > n),
        ("majority", "negative", lambda n, k: 2 * k <= n),
        ("parity", "positive", lambda n, k: k % 2 == 0),
    ],
)
def test_long_words_have_the_exact_count_distribution(name, label, member):
    """At n = 1,000 the classes cannot be enumerated, but the number of a's in a uniform
    member is distributed as C(n, k) restricted to the class: checks the log-space counts
    stay exact at long lengths."""
    n = 1000
    language = REGISTRY[name].language()
    draws = language.sample(n, 4000, label, np.random.default_rng(21))
    k_a = (draws == language.alphabet.id("a")).sum(axis=1)
    weights = {k: math.comb(n, k) for k in range(n + 1) if member(n, k)}
    statistic, df = _binned_chi_square(k_a, weights)
    assert statistic < chi2_critical(df), f"chi2 {statistic:.1f} on {df} df"


# --- labels at long lengths ---------------------------------------------------------------


@pytest.mark.parametrize("name", COUNTING)
def test_counting_languages_give_both_classes_at_length_1000(name):
    language = REGISTRY[name].language()
    rng = np.random.default_rng(31)
    for label in ("positive", "negative"):
        ids = language.sample(1000, 16, label, rng)
        assert ids.shape == (16, 1000) and ids.dtype == np.int64
        assert ids.min() >= 0 and ids.max() < len(language.alphabet)
        assert_labels(language, ids, label)


@pytest.mark.parametrize("name", ["tomita2", "since_ab", "request_response", "dyck_depth2", "parity", "no_aa"])
def test_regular_languages_sample_length_10000(name):
    language = REGISTRY[name].language()
    rng = np.random.default_rng(41)
    for label in ("positive", "negative"):
        ids = language.sample(10_000, 3, label, rng)
        assert ids.shape == (3, 10_000)
        assert_labels(language, ids, label)
    if name == "tomita2":  # (ab)+ has exactly one member of each even length
        assert language.sample(10_000, 2, "positive", rng).tolist() == [[0, 1] * 5000] * 2


def test_counting_sampler_too_long_fails_naming_the_limit():
    with pytest.raises(AutomatonTooLargeError, match="MAX_TABLE_CELLS"):
        REGISTRY["majority"].language().sample(10_000, 1, "positive", np.random.default_rng(0))


# --- empty classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, n, label",
    [
        ("tomita2", 3, "positive"),
        ("tomita2", 9, "positive"),
        ("even_length", 5, "positive"),
        ("dyck1", 7, "positive"),
        ("dyck_depth2", 1, "positive"),
        ("everything", 4, "negative"),
        ("nothing_counted", 6, "positive"),
    ],
)
def test_empty_class_names_the_language_and_length(name, n, label):
    extra = {
        "everything": Language.from_text("a | H b | !a", "a,b", "everything"),  # regular, no non-members
        "nothing_counted": Language.from_text("#a > #a + #b", "a,b", "nothing_counted"),  # counting, empty
    }
    language = extra[name] if name in extra else REGISTRY[name].language()
    with pytest.raises(EmptyClassError) as error:
        language.sample(n, 5, label, np.random.default_rng(0))
    message = str(error.value)
    assert name in message
    assert str(n) in message.split()
    # and the class really is empty (the evaluator agrees)
    assert len(class_members(language, n, label)) == 0


def test_the_other_class_is_not_empty():
    language = REGISTRY["tomita2"].language()
    ids = language.sample(3, 50, "negative", np.random.default_rng(0))
    assert_labels(language, ids, "negative")


# --- reproducibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["since_ab", "majority"])
def test_same_seed_gives_the_same_words(name):
    for label in ("positive", "negative", "any"):
        first = REGISTRY[name].language().sample(40, 50, label, np.random.default_rng(5))
        again = REGISTRY[name].language().sample(40, 50, label, np.random.default_rng(5))
        other = REGISTRY[name].language().sample(40, 50, label, np.random.default_rng(6))
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


def test_zero_count_and_bad_arguments():
    language = REGISTRY["since_ab"].language()
    rng = np.random.default_rng(0)
    assert language.sample(7, 0, "positive", rng).shape == (0, 7)
    with pytest.raises(ValueError, match="label"):
        language.sample(7, 3, "members", rng)
    with pytest.raises(ValueError, match="length"):
        language.sample(0, 3, "positive", rng)


# --- comparisons without a count form ----------------------------------------------------


@pytest.mark.parametrize("formula", ["a & 1 < 2", "Y b & #a - #a = 0", "#true - #true >= 0 -> a"])
def test_counting_sampler_accepts_comparisons_whose_counts_cancel(formula):
    """``1 < 2`` and ``#a - #a = 0`` are valid comparisons (ltl-spec.md: integer literals are
    terms); the counting sampler must sample them like any other counting formula (found
    failing: data.counting builds a zero-dimensional grid of form values and numpy raises
    'cannot reshape array of size 0 into shape (0,newaxis)')."""
    language = Language.from_text(formula, "a,b")
    assert not language.is_regular
    for label in ("positive", "negative"):
        draws, _ = assert_uniform(language, 4, label, per_word=25, seed=51)
        assert_labels(language, draws, label)


def test_sample_both_gives_members_then_non_members_and_skips_an_empty_class():
    language = Language.from_text("a S b", "a,b,c")
    ids = language.sample_both(9, 5, seed=3)
    assert ids.shape == (10, 9)
    assert language.label(ids)[:, -1].tolist() == [True] * 5 + [False] * 5
    assert np.array_equal(ids, language.sample_both(9, 5, seed=3))  # seeded by (seed, length)
    assert not np.array_equal(ids, language.sample_both(9, 5, seed=4))
    tautology = Language.from_text("a | !a", "a,b")  # no non-member: members only
    words = tautology.sample_both(4, 3, seed=0)
    assert words.shape == (3, 4) and tautology.label(words).all()


def test_deep_formulas_sample_uniformly_through_both_samplers():
    """A count term of 10,000 summands (the counting sampler) and a formula under 10,000
    parentheses (the DFA) sample exactly like their shallow equivalents: uniform over the class
    and labelled by the deep formula itself."""
    summed = Language.from_text(" + ".join(["#a"] * 10_000) + " > " + " + ".join(["#b"] * 10_000), "a,b")
    shallow = Language.from_text("#a > #b", "a,b")
    _, members = assert_uniform(summed, 5, "positive", per_word=40, seed=3)
    np.testing.assert_array_equal(members, class_members(shallow, 5, "positive"))
    nested = Language.from_text("(" * 10_000 + "a S b" + ")" * 10_000, "a,b")
    draws, _ = assert_uniform(nested, 5, "negative", per_word=20, seed=4)
    assert_labels(nested, draws, "negative")


def test_cli_samples_a_formula_of_400_nested_yesterdays(capsys):
    """The issue's crash: `softhard data sample` with Y^400 a (a raw RecursionError before)."""
    k = 400
    assert main(["sample", "--formula", "Y " * k + "a", "--alphabet", "a,b", "--length", str(k + 3), "--count", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and all(row["label"] == (row["word"][2] == "a") for row in rows)  # a at n-1-k = 2


@pytest.mark.parametrize("name", ["tomita4", "no_aa", "majority", "dyck1"])
@pytest.mark.parametrize("label", ["positive", "negative"])
def test_all_words_are_the_class_in_lexicographic_order(name, label):
    """PathSampler.all_words against the evaluator's enumeration of the class, regular and counting."""
    language = REGISTRY[name].language()
    for n in (2, 5, 8):
        try:
            words = language.sampler(n, label).all_words()
        except EmptyClassError:
            assert len(class_members(language, n, label)) == 0
            continue
        expected = np.sort(class_members(language, n, label))
        assert codes(words, len(language.alphabet)).tolist() == expected.tolist()
