"""Minimal DFAs for regular formulas (past, future and modular counting, mixed freely).

Stage 1, atoms: an *atom* is the value, at one position, of every temporal subformula
(and of every modular counter), together with the letter there. Past operators are
functions of the previous atom (``Y p`` at i is p at i-1; ``p S q`` at i is
``q | (p & p S q)`` at i-1); strict future operators are the mirror image, functions
of the next atom, with fixed values at the last position (``X, F, U`` false, ``G``
true). The automaton over atoms guesses future values and checks them one step
later; on a finite word exactly one run survives, the true valuation, so the word is
accepted iff that run ends in an atom where the formula holds.
Stage 2, subsets: the usual subset construction over live atoms gives a DFA.
Stage 3, minimisation: Moore's partition refinement, then a canonical numbering
(breadth-first from the start state, letters in alphabet order), so two minimal DFAs
of one language are equal arrays.

Limits (documented, checked as the work grows, never a hang): at most ``MAX_ATOMS``
candidate atoms are valued, at most ``MAX_NODE_VALUES`` subformula values computed for
them (atoms x subformulas: a deep formula costs that much per atom) and at most
``MAX_DFA_STATES`` subset states built; past any, ``AutomatonTooLargeError`` names the
limit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from softhard.data.alphabet import Alphabet, Word
from softhard.data.errors import AutomatonTooLargeError, NotRegularError
from softhard.data.ltl.syntax import (
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Formula,
    Integer,
    Modulo,
    Node,
    Symbol,
    Unary,
    is_future,
    is_past,
)

MAX_ATOMS = 100_000
MAX_NODE_VALUES = 3_000_000
MAX_DFA_STATES = 10_000



@dataclass(frozen=True)
class DFA:
    """A complete DFA over ``alphabet``: ``transitions[state, symbol_id]``; the empty word is
    never accepted (languages hold non-empty words only)."""

    alphabet: Alphabet
    transitions: np.ndarray  # (S, k) int64
    accepting: np.ndarray  # (S,) bool
    start: int = 0

    @property
    def num_states(self) -> int:
        return len(self.accepting)

    def run(self, ids: np.ndarray) -> np.ndarray:
        """Final states after reading equal-length encoded words (B, n): shape (B,)."""
        ids = np.asarray(ids)
        states = np.full(ids.shape[0], self.start)
        for column in ids.T:
            states = self.transitions[states, column]
        return states

    def accepts(self, word: Word) -> bool:
        return bool(self.accepting[self.run(self.alphabet.encode(word)[None, :])[0]])

    def complement(self) -> "DFA":
        """The DFA of the non-members among non-empty words."""
        return DFA(self.alphabet, self.transitions, ~self.accepting, self.start)

    def minimize(self) -> "DFA":
        return _minimize(self)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, DFA)
            and self.alphabet == other.alphabet
            and self.start == other.start
            and np.array_equal(self.transitions, other.transitions)
            and np.array_equal(self.accepting, other.accepting)
        )

    __hash__ = None


def compile_dfa(formula: Formula, alphabet: Alphabet) -> DFA:
    """The minimal DFA of ``{w : w, |w|-1 |= formula}`` over ``alphabet``.

    Raises NotRegularError for count comparisons, AutomatonTooLargeError past the limits,
    ValueError if the formula names a symbol outside the alphabet.
    """
    alphabet.require(formula.symbols, f"formula {formula}")
    comparisons = [str(node) for node in formula.walk() if isinstance(node, Compare)]
    if comparisons:
        raise NotRegularError(
            f"formula {formula} compares counts ({comparisons[0]}), so its language is not regular "
            "and has no DFA; data.sampling samples it with the counting sampler"
        )
    letters = [{Symbol(s): s == symbol for s in formula.symbols} for symbol in alphabet]
    return compile_letters(formula, letters, alphabet)


def compile_letters(formula: Formula, letters: list[Mapping[Node, bool]], alphabet: Alphabet) -> DFA:
    """The minimal DFA over abstract letters: letter k fixes the truth of the leaf nodes in
    ``letters[k]`` (symbols, or whole comparisons for the counting sampler)."""
    transitions, accepting = _AtomAutomaton(formula, letters).determinize()
    return DFA(alphabet, transitions, accepting, 0).minimize()


class _AtomAutomaton:
    """Atoms are tuples (letter, past values, counters, future values); a valuation is a
    list holding every node's value at one atom, indexed like ``self.nodes``."""

    def __init__(self, formula: Formula, letters: list[Mapping[Node, bool]]):
        self.formula = formula
        self.nodes = _post_order_stopping_at(formula, set(letters[0]))
        self.index = {node: k for k, node in enumerate(self.nodes)}
        self.letter_values = [[letter.get(node) for node in self.nodes] for letter in letters]
        self.past = [node for node in self.nodes if is_past(node)]
        self.future = [node for node in self.nodes if is_future(node)]
        self.counts = [node for node in self.nodes if isinstance(node, Count)]
        self.slot = {node: k for group in (self.past, self.future, self.counts) for k, node in enumerate(group)}
        moduli = [node.modulus for node in self.nodes if isinstance(node, Modulo)]
        self.modulus = math.lcm(*moduli) if moduli else 1
        self.steps = [(self.index[node], self._step(node)) for node in self.nodes if node not in letters[0]]
        self.guesses = 1 << len(self.future)
        if self.guesses * len(letters) > MAX_ATOMS:
            raise AutomatonTooLargeError(
                f"formula {formula} has {len(self.future)} future operators: {self.guesses * len(letters)} "
                f"atoms per step exceed the limit MAX_ATOMS = {MAX_ATOMS} (data.automata)"
            )
        self._check_work(self.guesses * len(letters))
        self.valued = 0
        self.valuations: dict[tuple, list] = {}
        self._groups: dict[tuple, dict[tuple, list[tuple]]] = {}

    def _step(self, node: Node):
        """How one node's value follows from the atom and its children's values."""
        at = self.index.get
        m = self.modulus
        if isinstance(node, Constant):
            return lambda env, atom: node.value
        if is_past(node):
            k = self.slot[node]
            return lambda env, atom: atom[1][k]
        if is_future(node):
            k = self.slot[node]
            return lambda env, atom: atom[3][k]
        if isinstance(node, Unary):  # only "!" is left
            a, op = at(node.arg), node.operator.function
            return lambda env, atom: op(env[a])
        if isinstance(node, Binary):
            a, b, op = at(node.left), at(node.right), node.operator.function
            return lambda env, atom: op(env[a], env[b])
        if isinstance(node, Count):
            k, a = self.slot[node], at(node.arg)
            return lambda env, atom: (atom[2][k] + env[a]) % m
        if isinstance(node, Integer):
            return lambda env, atom: node.value % m
        if isinstance(node, Arithmetic):
            a, b, op = at(node.left), at(node.right), node.operator.function
            return lambda env, atom: op(env[a], env[b]) % m
        if isinstance(node, Modulo):
            a = at(node.term)
            return lambda env, atom: env[a] % node.modulus == node.residue
        raise TypeError(f"cannot compile node {node}")

    def _check_work(self, atoms: int) -> None:
        if atoms * len(self.steps) > MAX_NODE_VALUES:
            raise AutomatonTooLargeError(
                f"formula {self.formula} needs more than MAX_NODE_VALUES = {MAX_NODE_VALUES} subformula values "
                f"({atoms} atoms x {len(self.steps)} subformulas) (data.automata)"
            )

    def valuation(self, atom: tuple) -> list:
        env = list(self.letter_values[atom[0]])
        for k, step in self.steps:
            env[k] = step(env, atom)
        return env

    def _recurrence(self, node: Node, env: list, own: bool) -> bool:
        """The value of a past node one step later, or of a future node one step earlier
        (the operator table's recurrence)."""
        return bool(node.operator.function(own, *(env[self.index[child]] for child in node.children())))

    def next_past(self, atom: tuple, env: list) -> tuple[tuple, tuple]:
        past = tuple(self._recurrence(node, env, own) for node, own in zip(self.past, atom[1]))
        counters = tuple(int(env[self.index[node]]) for node in self.counts)  # inclusive count at i = exclusive at i+1
        return past, counters

    def future_promise(self, atom: tuple, env: list) -> tuple:
        """The future values the previous atom must have had, given this atom."""
        return tuple(self._recurrence(node, env, own) for node, own in zip(self.future, atom[3]))

    def candidates(self, letter: int, past: tuple, counters: tuple) -> dict[tuple, list[tuple]]:
        """Atoms with this letter, past and counters, grouped by the future values they
        require of the previous atom."""
        key = (letter, past, counters)
        if key not in self._groups:
            self.valued += self.guesses
            if self.valued > MAX_ATOMS:
                raise AutomatonTooLargeError(
                    f"formula {self.formula} needs more than MAX_ATOMS = {MAX_ATOMS} atoms (data.automata)"
                )
            self._check_work(self.valued)
            groups: dict[tuple, list[tuple]] = {}
            for bits in range(self.guesses):
                future = tuple(bool(bits >> k & 1) for k in range(len(self.future)))
                atom = (letter, past, counters, future)
                env = self.valuations[atom] = self.valuation(atom)
                groups.setdefault(self.future_promise(atom, env), []).append(atom)
            self._groups[key] = groups
        return self._groups[key]

    def is_final(self, atom: tuple, env: list) -> bool:
        at_end = all(value == node.operator.boundary for node, value in zip(self.future, atom[3]))
        return at_end and bool(env[-1])  # the root comes last

    # --- stages 1 and 2 ------------------------------------------------------------
    def atom_graph(self):
        start_past = tuple(node.operator.boundary for node in self.past)
        start_counters = tuple(0 for _ in self.counts)
        initial = [
            atom
            for letter in range(len(self.letter_values))
            for group in self.candidates(letter, start_past, start_counters).values()
            for atom in group
        ]
        successors: dict[tuple, list[tuple]] = {}
        final: set[tuple] = set()
        queue = deque(initial)
        seen = set(initial)
        while queue:
            atom = queue.popleft()
            env = self.valuations[atom]
            if self.is_final(atom, env):
                final.add(atom)
            past, counters = self.next_past(atom, env)
            successors[atom] = []
            for letter in range(len(self.letter_values)):
                for nxt in self.candidates(letter, past, counters).get(atom[3], ()):
                    successors[atom].append(nxt)
                    if nxt not in seen:
                        seen.add(nxt)
                        queue.append(nxt)
        return initial, successors, final

    def determinize(self) -> tuple[np.ndarray, np.ndarray]:
        initial, successors, final = self.atom_graph()
        live = _co_reachable(successors, final)
        k = len(self.letter_values)
        subsets: dict[frozenset, int] = {frozenset({"start"}): 0}
        order: list[frozenset] = [frozenset({"start"})]
        rows: list[list[int]] = []
        index = 0
        while index < len(order):
            current = order[index]
            if "start" in current:
                nexts = [frozenset(a for a in initial if a[0] == letter and a in live) for letter in range(k)]
            else:
                nexts = [set() for _ in range(k)]
                for atom in current:
                    for nxt in successors[atom]:
                        if nxt in live:
                            nexts[nxt[0]].add(nxt)
                nexts = [frozenset(s) for s in nexts]
            row = []
            for subset in nexts:
                if subset not in subsets:
                    if len(order) >= MAX_DFA_STATES:
                        raise AutomatonTooLargeError(
                            f"formula {self.formula} needs more than MAX_DFA_STATES = {MAX_DFA_STATES} "
                            "DFA states before minimisation (data.automata)"
                        )
                    subsets[subset] = len(order)
                    order.append(subset)
                row.append(subsets[subset])
            rows.append(row)
            index += 1
        accepting = np.array(["start" not in s and any(a in final for a in s) for s in order])
        return np.array(rows, dtype=np.int64).reshape(len(order), k), accepting


def _post_order_stopping_at(root: Node, leaves: set) -> list[Node]:
    """Post-order of distinct nodes, not descending below ``leaves``."""
    order: list[Node] = []
    seen: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            if node not in leaves:
                stack.extend((child, False) for child in reversed(node.children()))
    return order


def _co_reachable(successors: dict[tuple, list[tuple]], final: set[tuple]) -> set[tuple]:
    predecessors: dict[tuple, list[tuple]] = {}
    for atom, nexts in successors.items():
        for nxt in nexts:
            predecessors.setdefault(nxt, []).append(atom)
    live = set(final)
    queue = deque(final)
    while queue:
        for previous in predecessors.get(queue.popleft(), ()):
            if previous not in live:
                live.add(previous)
                queue.append(previous)
    return live


def _minimize(dfa: DFA) -> DFA:
    """Moore refinement, then canonical breadth-first numbering. Assumes every state is reachable."""
    classes = dfa.accepting.astype(np.int64)
    count = len(np.unique(classes))
    while True:
        signature = np.column_stack([classes, classes[dfa.transitions]])
        _, refined = np.unique(signature, axis=0, return_inverse=True)
        refined = refined.reshape(-1)
        new_count = int(refined.max()) + 1
        classes = refined
        if new_count == count:
            break
        count = new_count
    representative = np.zeros(count, dtype=np.int64)
    representative[classes[::-1]] = np.arange(len(classes))[::-1]
    quotient = classes[dfa.transitions[representative]]
    accepting = dfa.accepting[representative]
    return _canonical(DFA(dfa.alphabet, quotient, accepting, int(classes[dfa.start])))


def _canonical(dfa: DFA) -> DFA:
    numbering = {dfa.start: 0}
    queue = deque([dfa.start])
    while queue:
        state = queue.popleft()
        for nxt in dfa.transitions[state]:
            if int(nxt) not in numbering:
                numbering[int(nxt)] = len(numbering)
                queue.append(int(nxt))
    old = np.array(sorted(numbering, key=numbering.get))
    remap = np.full(dfa.num_states, -1, dtype=np.int64)
    remap[old] = np.arange(len(old))
    return DFA(dfa.alphabet, remap[dfa.transitions[old]], dfa.accepting[old].copy(), 0)
