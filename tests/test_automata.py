"""Compiled DFAs (data.automata) against the evaluator, against the registry's regular
expressions (via greenery 4), and the documented limits and errors.

Every check here is exhaustive over a finite set: all words of lengths 1..8, or a full
product-automaton equivalence check, so a disagreement cannot hide behind sampling.
"""

from __future__ import annotations

import itertools
import random
from collections import deque

import numpy as np
import pytest
from greenery import parse as parse_regex

from softhard.data.alphabet import Alphabet
from softhard.data.automata import DFA, MAX_ATOMS, MAX_DFA_STATES, MAX_NODE_VALUES, compile_dfa
from softhard.data.errors import AutomatonTooLargeError, NotRegularError
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.syntax import Arithmetic, Binary, Constant, Count, Formula, Integer, Modulo, Symbol, Unary
from softhard.data.registry import REGISTRY

MAX_LENGTH = 8
REGULAR = sorted(name for name, spec in REGISTRY.items() if spec.language().is_regular)
WITH_REGEX = sorted(name for name, spec in REGISTRY.items() if spec.regex is not None)
COUNTING = sorted(name for name, spec in REGISTRY.items() if not spec.language().is_regular)


def all_words(k: int, n: int) -> np.ndarray:
    """Every word of length n over k symbols: (k**n, n) ids."""
    return np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64).reshape(-1, n)


def assert_dfa_matches_evaluator(formula: Formula, alphabet: Alphabet, dfa: DFA) -> None:
    for n in range(1, MAX_LENGTH + 1):
        ids = all_words(len(alphabet), n)
        expected = label_positions(formula, ids, alphabet)[:, -1]
        got = dfa.accepting[dfa.run(ids)]
        if not np.array_equal(got, expected):
            bad = int(np.flatnonzero(got != expected)[0])
            word = "".join(alphabet.decode(ids[bad]))
            raise AssertionError(f"{formula} on {word!r}: DFA says {bool(got[bad])}, evaluator {bool(expected[bad])}")


def reachable(transitions: np.ndarray, start: int) -> list[int]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in transitions[queue.popleft()]:
            if int(nxt) not in seen:
                seen.add(int(nxt))
                queue.append(int(nxt))
    return sorted(seen)


def minimal_state_count(transitions: np.ndarray, accepting: np.ndarray, start: int) -> int:
    """Number of states of the minimal complete DFA (own Moore refinement, independent of
    data.automata)."""
    states = reachable(transitions, start)
    block = {s: bool(accepting[s]) for s in states}
    while True:
        signature = {s: (block[s],) + tuple(block[int(t)] for t in transitions[s]) for s in states}
        ids = {sig: k for k, sig in enumerate(sorted(set(signature.values()), key=repr))}
        refined = {s: ids[signature[s]] for s in states}
        if len(set(refined.values())) == len(set(block.values())):
            return len(set(refined.values()))
        block = refined


def equivalent(a: tuple, b: tuple) -> str | None:
    """Product BFS over two complete DFAs (transitions, accepting, start) on the same letters:
    None if they accept the same words, else a shortest distinguishing word (as ids)."""
    (ta, aa, sa), (tb, ab, sb) = a, b
    seen = {(sa, sb): ()}
    queue = deque([(sa, sb)])
    while queue:
        p, q = queue.popleft()
        if bool(aa[p]) != bool(ab[q]):
            return seen[(p, q)]
        for letter in range(ta.shape[1]):
            pair = (int(ta[p, letter]), int(tb[q, letter]))
            if pair not in seen:
                seen[pair] = seen[(p, q)] + (letter,)
                queue.append(pair)
    return None


def regex_dfa(regex: str, alphabet: Alphabet) -> tuple[np.ndarray, np.ndarray, int]:
    """greenery's FSM for ``regex`` as a complete table over ``alphabet`` (in its order),
    restricted to NON-EMPTY words: a fresh non-accepting start state copies the FSM's
    initial transitions. Missing transitions go to an explicit dead state."""
    fsm = parse_regex(regex).to_fsm()
    states = sorted(fsm.states, key=repr)
    index = {s: k + 1 for k, s in enumerate(states)}  # 0 = the fresh start
    dead = len(states) + 1
    table = np.full((len(states) + 2, len(alphabet)), dead, dtype=np.int64)
    accepting = np.zeros(len(states) + 2, dtype=bool)
    for state in states:
        accepting[index[state]] = state in fsm.finals
        for letter, symbol in enumerate(alphabet):
            classes = [cc for cc in fsm.map.get(state, {}) if cc.accepts(symbol)]
            assert len(classes) <= 1, f"ambiguous character classes for {symbol!r}"
            if classes:
                table[index[state], letter] = index[fsm.map[state][classes[0]]]
    table[0] = table[index[fsm.initial]]
    return table, accepting, 0


# --- random regular formulas ---------------------------------------------------------------


def random_regular_formula(rng: random.Random, depth: int, symbols: str) -> Formula:
    """Past, future and modular-counting operators mixed; at most ``depth`` operator levels."""
    if depth == 0 or rng.random() < 0.15:
        return Constant(rng.random() < 0.5) if rng.random() < 0.08 else Symbol(rng.choice(symbols))
    kind = rng.random()
    if kind < 0.45:
        return Unary(rng.choice("!YOHXFG"), random_regular_formula(rng, depth - 1, symbols))
    if kind < 0.85:
        op = rng.choice(["S", "U", "&", "|", "->", "<->", "S", "U"])
        return Binary(op, random_regular_formula(rng, depth - 1, symbols), random_regular_formula(rng, depth - 1, symbols))
    modulus = rng.randint(2, 3)
    term = Count(random_regular_formula(rng, depth - 1, symbols))
    if rng.random() < 0.4:
        other = Count(random_regular_formula(rng, depth - 1, symbols)) if rng.random() < 0.6 else Integer(rng.randint(0, 3))
        term = Arithmetic(rng.choice("+-"), term, other)
    return Modulo(term, modulus, rng.randrange(modulus))


def random_regular_cases(count: int, seed: int):
    """Formulas whose language is not constant on short words. Future operators only
    matter at the last position when a past operator (or a count) looks back at them, so
    most roots are past operators or modular tests over mixed subformulas."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        symbols = rng.choice(["ab", "abc"])
        depth = rng.randint(2, 4)
        root = rng.random()
        if root < 0.35:
            formula = Unary(rng.choice("YOH"), random_regular_formula(rng, depth - 1, symbols))
        elif root < 0.65:
            formula = Binary("S", random_regular_formula(rng, depth - 1, symbols), random_regular_formula(rng, depth - 1, symbols))
        elif root < 0.8:
            modulus = rng.randint(2, 3)
            formula = Modulo(Count(random_regular_formula(rng, depth - 1, symbols)), modulus, rng.randrange(modulus))
        else:
            formula = random_regular_formula(rng, depth, symbols)
        alphabet = Alphabet(symbols)
        accepted = [label_positions(formula, all_words(len(symbols), n), alphabet)[:, -1] for n in range(1, 6)]
        if len({bool(x) for row in accepted for x in row}) < 2:
            continue  # constant language on short words: no test power
        cases.append((formula, alphabet))
    return cases


RANDOM_CASES = random_regular_cases(40, seed=1234)


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGULAR)
def test_registry_dfa_agrees_with_evaluator_on_every_short_word(name):
    language = REGISTRY[name].language()
    dfa = language.dfa
    assert dfa == compile_dfa(language.formula, language.alphabet)
    assert_dfa_matches_evaluator(language.formula, language.alphabet, dfa)


@pytest.mark.parametrize("index", range(len(RANDOM_CASES)))
def test_random_regular_formula_dfa_agrees_with_evaluator(index):
    formula, alphabet = RANDOM_CASES[index]
    try:
        dfa = compile_dfa(formula, alphabet)
    except AutomatonTooLargeError as error:  # allowed, but must name a limit
        assert "MAX_ATOMS" in str(error) or "MAX_DFA_STATES" in str(error)
        pytest.skip(f"{formula}: {error}")
    assert_dfa_matches_evaluator(formula, alphabet, dfa)
    # the text form compiles to the same canonical DFA
    assert compile_dfa(parse(str(formula)), alphabet) == dfa


def test_random_cases_mix_past_future_and_modular_tests():
    """Guard against a generator that silently stops covering an operator family."""
    text = " ".join(str(f) for f, _ in RANDOM_CASES)
    for needle in ("Y", "O", "H", "S", "X", "F", "G", "U", "%"):
        assert needle in text, needle
    compiled = 0
    for formula, alphabet in RANDOM_CASES:
        try:
            compile_dfa(formula, alphabet)
            compiled += 1
        except AutomatonTooLargeError:
            pass
    assert compiled >= 30


@pytest.mark.parametrize("index", range(len(RANDOM_CASES)))
def test_compiled_dfas_are_complete_minimal_and_reject_the_empty_word(index):
    formula, alphabet = RANDOM_CASES[index]
    try:
        dfa = compile_dfa(formula, alphabet)
    except AutomatonTooLargeError:
        pytest.skip("over the limits")
    assert dfa.transitions.shape == (dfa.num_states, len(alphabet))
    assert dfa.transitions.min() >= 0 and dfa.transitions.max() < dfa.num_states
    assert dfa.start == 0 and not dfa.accepting[dfa.start]
    assert minimal_state_count(dfa.transitions, dfa.accepting, dfa.start) == dfa.num_states


@pytest.mark.parametrize(
    "left, right, symbols",
    [
        ("a", "!!a", "ab"),
        ("F a", "true U a", "abc"),
        ("G a", "!F!a", "ab"),
        ("O b", "true S b", "abc"),
        ("H b", "!O!b", "ab"),
        ("a S b", "(a S b) & true", "abc"),
        ("X a | X b", "X(a | b)", "abc"),
        ("#a % 2 = 0", "#a + #a % 4 = 0 | #a + #a % 4 = 2 & false | #a % 2 = 0", "ab"),
        ("#a - #b % 3 = 0", "#b - #a % 3 = 0", "ab"),
    ],
)
def test_equivalent_formulas_compile_to_equal_dfas(left, right, symbols):
    alphabet = Alphabet(symbols)
    assert compile_dfa(parse(left), alphabet) == compile_dfa(parse(right), alphabet)


def test_different_languages_compile_to_different_dfas():
    alphabet = Alphabet("ab")
    assert compile_dfa(parse("F a"), alphabet) != compile_dfa(parse("a | F a"), alphabet)
    assert compile_dfa(parse("a"), alphabet) != compile_dfa(parse("a"), Alphabet("abc"))


@pytest.mark.parametrize("name", WITH_REGEX)
def test_registry_dfa_equals_its_regex(name):
    spec = REGISTRY[name]
    language = spec.language()
    ours = language.dfa
    theirs = regex_dfa(spec.regex, language.alphabet)
    witness = equivalent((ours.transitions, ours.accepting, ours.start), theirs)
    assert witness is None, (
        f"{name}: DFA of {spec.formula!r} and regex {spec.regex!r} differ on "
        f"{''.join(language.alphabet.decode(witness))!r}"
    )
    # ours is minimal: as many states as the minimal DFA of the regex language
    assert ours.num_states == minimal_state_count(*theirs)


def test_regex_harness_detects_a_difference():
    """The regex comparison can fail: a near-miss regex is told apart."""
    alphabet = Alphabet("ab")
    ours = compile_dfa(parse("a & H a"), alphabet)  # a+
    same = regex_dfa("a*", alphabet)  # a* restricted to non-empty words = a+
    near = regex_dfa("a*b?", alphabet)
    assert equivalent((ours.transitions, ours.accepting, ours.start), same) is None
    assert equivalent((ours.transitions, ours.accepting, ours.start), near) == (1,)  # 'b'


def test_too_many_future_operators_fails_fast_naming_the_limit():
    # 17 distinct future subformulas: 2**17 guesses x 2 letters > MAX_ATOMS, refused up front
    formula = parse("X " * 17 + "a")
    assert 2**17 * 2 > MAX_ATOMS
    with pytest.raises(AutomatonTooLargeError, match="MAX_ATOMS"):
        compile_dfa(formula, Alphabet("ab"))
    # mixing in past operators does not dodge the check
    with pytest.raises(AutomatonTooLargeError, match="MAX_ATOMS"):
        compile_dfa(parse("O a & H b & " + "F " * 16 + "(a U b)"), Alphabet("ab"))


def test_too_many_dfa_states_fails_naming_the_limit():
    # Y^13 a must remember the last 13 letters: 2**13 + ... > MAX_DFA_STATES subsets;
    # the check fires while the subsets are built, so the work is bounded by the limit.
    assert 2**13 < MAX_DFA_STATES < 2**14
    with pytest.raises(AutomatonTooLargeError, match="MAX_DFA_STATES"):
        compile_dfa(parse("Y " * 13 + "a"), Alphabet("ab"))


@pytest.mark.parametrize("formula", ["#a > #b", "H(#a >= #b) & b", "a S (#a = #b + 1)", "!(#true <= 3)"])
def test_count_comparisons_raise_not_regular(formula):
    with pytest.raises(NotRegularError, match="not regular"):
        compile_dfa(parse(formula), Alphabet("ab"))


@pytest.mark.parametrize("name", COUNTING)
def test_counting_registry_languages_have_no_dfa(name):
    language = REGISTRY[name].language()
    assert not language.is_regular
    with pytest.raises(NotRegularError):
        language.dfa


def test_formula_symbol_outside_the_alphabet_is_refused():
    with pytest.raises(ValueError, match="'c'"):
        compile_dfa(parse("a U c"), Alphabet("ab"))


def test_ten_thousand_deep_formulas_compile_to_their_shallow_dfas():
    """Nesting costs no recursion: 10,000 parentheses and an even number of negations around a
    formula leave its canonical DFA unchanged; an odd number complements it."""
    alphabet = Alphabet("ab")
    shallow = compile_dfa(parse("a S b"), alphabet)
    assert compile_dfa(parse("(" * 10_000 + "a S b" + ")" * 10_000), alphabet) == shallow
    assert compile_dfa(parse("!" * 10_000 + "(a S b)"), alphabet) == shallow
    assert compile_dfa(parse("!" * 9_999 + "(a S b)"), alphabet) == compile_dfa(parse("!(a S b)"), alphabet)


def test_deep_yesterday_chain_counts_the_length():
    """Over the one-letter alphabet, Y^k a accepts exactly the words longer than k: a DFA of
    k + 2 states (lengths 0..k, then accepting for good)."""
    k = 300
    dfa = compile_dfa(parse("Y " * k + "a"), Alphabet("a"))
    assert dfa.num_states == k + 2
    assert [dfa.accepts("a" * n) for n in range(1, k + 5)] == [n > k for n in range(1, k + 5)]


def test_deep_formula_over_the_work_limit_fails_fast_naming_it(monkeypatch):
    """Y^3000 a over {a, b} must remember 3,000 letters and every atom values 3,000 subformulas:
    the work limit stops it after MAX_NODE_VALUES / 3,000 atoms (lowered here to keep the test
    short; the default stops it within seconds), long before MAX_ATOMS."""
    from softhard.data import automata

    assert MAX_NODE_VALUES // 3000 < MAX_ATOMS
    monkeypatch.setattr(automata, "MAX_NODE_VALUES", 300_000)
    with pytest.raises(AutomatonTooLargeError, match="MAX_NODE_VALUES = 300000") as info:
        compile_dfa(parse("Y " * 3000 + "a"), Alphabet("ab"))
    assert "\n" not in str(info.value) and "101 atoms x 3000 subformulas" in str(info.value)
