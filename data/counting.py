"""The count-aware automaton for counting formulas (non-regular), for exact sampling.

A counting formula is compiled in two parts. Every comparison (``#a > #b``) and modular
test is abstracted to a proposition read off an extended letter, and the formula over
those letters becomes a minimal DFA (data.automata). A comparison only depends on a
linear form of the counts, ``sum_p c_p #p + k`` with letter-local predicates p, whose
value moves by a fixed step per letter; the automaton's state is therefore
(DFA state, value of each distinct form). For words of length n every form stays within
``n`` steps of 0, so the product is finite: (DFA states) x (2 n max|step| + 1) per form.
data.sampling counts its paths exactly as for a DFA, so sampling is uniform within
each class.

Limit: the product times n + 1 layers may hold at most ``MAX_TABLE_CELLS`` counts
(about 320 MB); past it, AutomatonTooLargeError names the limit. The registry's
counting languages reach n = 2,000 inside it (100x a length-20 run: Dyck-1, with two
counts' difference and four DFA states, needs 32 million cells there).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from softhard.data.alphabet import Alphabet
from softhard.data.automata import compile_letters
from softhard.data.errors import AutomatonTooLargeError
from softhard.data.ltl.evaluate import evaluate_nodes
from softhard.data.ltl.syntax import Binary, Compare, Constant, Formula, Modulo, Symbol, Unary, linear_form

MAX_TABLE_CELLS = 40_000_000
MAX_PROPOSITIONS = 8


@dataclass(frozen=True)
class _Proposition:
    """A comparison or modular test as ``test(sign * form_value + constant)``."""

    node: Formula
    dimension: int | None  # index of its form; None when it compares constants only
    sign: int
    constant: int

    def truth(self, form_values: np.ndarray) -> np.ndarray:
        value = self.sign * form_values + self.constant
        if isinstance(self.node, Modulo):
            return np.mod(value, self.node.modulus) == self.node.residue
        return self.node.operator.function(value, 0)


def counting_automaton(formula: Formula, alphabet: Alphabet, length: int, accept: bool = True):
    """(transitions, accepting, start) of the count-aware automaton for words of ``length``.

    ``accept=False`` accepts the non-members instead.
    """
    alphabet.require(formula.symbols, f"formula {formula}")
    nodes = [node for node in formula.walk() if isinstance(node, (Compare, Modulo))]
    if len(nodes) > MAX_PROPOSITIONS:
        raise AutomatonTooLargeError(
            f"formula {formula} has {len(nodes)} count tests; the counting sampler allows MAX_PROPOSITIONS = {MAX_PROPOSITIONS}"
        )
    predicates: list[Formula] = []
    forms: list[tuple[int, ...]] = []
    propositions = []
    linear = [(node, _counted_form(node, predicates)) for node in nodes]
    for node, (coefficients, constant) in linear:
        vector = tuple(coefficients.get(p, 0) for p in predicates)
        propositions.append(_proposition(node, vector, constant, forms))
    steps = _letter_steps(forms, predicates, alphabet)  # (D, k)

    letters = []
    for symbol in alphabet:
        for bits in itertools.product((False, True), repeat=len(propositions)):
            letter = {Symbol(s): s == symbol for s in formula.symbols}
            letter.update({p.node: bit for p, bit in zip(propositions, bits)})
            letters.append(letter)
    names = Alphabet(f"x{k}" for k in range(len(letters)))
    dfa = compile_letters(formula, letters, names)

    low = length * np.minimum(steps.min(axis=1, initial=0), 0)
    high = length * np.maximum(steps.max(axis=1, initial=0), 0)
    shape = tuple(int(h - l + 1) for l, h in zip(low, high))
    size = dfa.num_states * int(np.prod(shape, dtype=np.int64))
    if size * (length + 1) > MAX_TABLE_CELLS:
        raise AutomatonTooLargeError(
            f"formula {formula} at length {length} needs {size} count-aware states x {length + 1} layers, "
            f"over the limit MAX_TABLE_CELLS = {MAX_TABLE_CELLS} (data.counting)"
        )
    grid = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), dtype=np.int64)
    grid = grid + low[:, None]  # (D, V) form values; one empty column when no count matters
    values = grid.shape[1]
    k = len(alphabet)
    transitions = np.empty((dfa.num_states, values, k), dtype=np.int64)
    for letter in range(k):
        moved = np.clip(grid + steps[:, letter : letter + 1], low[:, None], high[:, None])  # (D, V)
        extended = np.full(values, letter * (1 << len(propositions)), dtype=np.int64)
        for position, p in enumerate(propositions):
            form = moved[p.dimension] if p.dimension is not None else np.zeros(values, dtype=np.int64)
            extended += p.truth(form).astype(np.int64) << (len(propositions) - 1 - position)
        flat = np.ravel_multi_index(tuple(moved - low[:, None]), shape) if shape else np.zeros(values, dtype=np.int64)
        transitions[:, :, letter] = dfa.transitions[:, extended] * values + flat[None, :]
    accepting = np.repeat(dfa.accepting if accept else ~dfa.accepting, values)
    origin = np.ravel_multi_index(tuple(-low), shape) if shape else 0
    return transitions.reshape(-1, k), accepting, dfa.start * values + int(origin)


def _proposition(node, vector, constant, forms) -> _Proposition:
    if not any(vector):
        return _Proposition(node, None, 1, constant)
    sign = 1 if next(c for c in vector if c) > 0 else -1
    normal = tuple(sign * c for c in vector)
    if normal not in forms:
        forms.append(normal)
    return _Proposition(node, forms.index(normal), sign, constant)


def _counted_form(node: Compare | Modulo, predicates: list[Formula]) -> tuple[dict[Formula, int], int]:
    """The linear form of a comparison or modular test over counted predicates (each checked to
    be letter-local and recorded in ``predicates``), and its constant."""
    coefficients, constant = linear_form(node)
    for count in coefficients:
        _require_local(count.arg)
        if count.arg not in predicates:
            predicates.append(count.arg)
    return {count.arg: c for count, c in coefficients.items()}, constant


def _require_local(predicate: Formula) -> None:
    for node in predicate.walk():
        local = isinstance(node, (Symbol, Constant)) or (isinstance(node, (Unary, Binary)) and node.operator.kind == "boolean")
        if not local:
            raise ValueError(
                f"the counting sampler counts letter predicates only: #({predicate}) contains {node}"
            )


def _letter_steps(forms, predicates, alphabet: Alphabet) -> np.ndarray:
    """(D, k): how much each form moves on each letter."""
    if not forms:
        return np.zeros((0, len(alphabet)), dtype=np.int64)
    letters = np.arange(len(alphabet))[:, None]  # each letter as a one-symbol word
    holds = np.stack([evaluate_nodes(p, letters, alphabet)[p][:, 0] for p in predicates])  # (P, k)
    return np.array(forms, dtype=np.int64) @ holds.astype(np.int64)
