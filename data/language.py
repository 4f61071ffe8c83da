"""A language: a formula over an alphabet, with exact labels and exact uniform samplers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from softhard.data.alphabet import Alphabet
from softhard.data.automata import DFA, compile_dfa
from softhard.data.counting import counting_automaton
from softhard.data.errors import EmptyClassError, NotRegularError
from softhard.data.ltl import Formula, parse
from softhard.data.ltl.evaluate import label_positions, truth_tables
from softhard.data.ltl.syntax import Compare
from softhard.data.sampling import PathSampler

LABELS = ("positive", "negative", "any")


@dataclass(frozen=True)
class Language:
    """``{w over alphabet : w, |w|-1 |= formula}``. ``name`` only labels messages."""

    formula: Formula
    alphabet: Alphabet
    name: str = ""
    _samplers: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self.alphabet.require(self.formula.symbols, f"formula {self.formula}")

    @classmethod
    def from_text(cls, formula: str, alphabet: str, name: str = "") -> "Language":
        return cls(parse(formula), Alphabet.from_text(alphabet), name)

    @property
    def title(self) -> str:
        return repr(self.name) if self.name else f"formula {self.formula}"

    @cached_property
    def is_regular(self) -> bool:
        """False when the formula compares counts (modular tests stay regular)."""
        return not any(isinstance(node, Compare) for node in self.formula.walk())

    @cached_property
    def dfa(self) -> DFA:
        """The minimal DFA; raises NotRegularError for count comparisons."""
        return compile_dfa(self.formula, self.alphabet)

    def sampler(self, length: int, label: str) -> PathSampler:
        """The exact uniform sampler of members (``positive``) or non-members (``negative``)."""
        if label not in ("positive", "negative"):
            raise ValueError(f"label must be 'positive' or 'negative' for a class sampler, got {label!r}")
        key = (length, label)
        if key not in self._samplers:
            accept = label == "positive"
            if self.is_regular:
                dfa = self.dfa if accept else self.dfa.complement()
                automaton = (dfa.transitions, dfa.accepting, dfa.start)
            else:
                automaton = counting_automaton(self.formula, self.alphabet, length, accept)
            what = f"{'members' if accept else 'non-members'} of {self.title}"
            self._samplers[key] = PathSampler(*automaton, length, what)
        return self._samplers[key]

    def sample(self, length: int, count: int, label: str, rng: np.random.Generator) -> np.ndarray:
        """(count, length) symbol ids: uniform over members, non-members, or all words (``any``)."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if length < 1:
            raise ValueError(f"word length must be >= 1, got {length}")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if label == "any":
            return rng.integers(0, len(self.alphabet), size=(count, length), dtype=np.int64)
        return self.sampler(length, label).sample(count, rng)

    def sample_both(self, length: int, count: int, seed: int) -> np.ndarray:
        """``count`` members then ``count`` non-members of one length, (<= 2 count, length) ids.

        A class with no word of this length is left out (every word is in one of the two). The
        generator is seeded by (seed, length), so a length gets the same words whatever other
        lengths are drawn beside it.
        """
        rng = np.random.default_rng([seed, length])
        samples = []
        for label in ("positive", "negative"):
            try:
                samples.append(self.sample(length, count, label, rng))
            except EmptyClassError:
                continue
        return np.concatenate(samples)

    def label(self, ids: np.ndarray) -> np.ndarray:
        """Truth of the formula at every position of equal-length encoded words: (B, n) bool."""
        return label_positions(self.formula, ids, self.alphabet)

    def truth_tables(self, ids: np.ndarray) -> dict[Formula, np.ndarray]:
        return truth_tables(self.formula, ids, self.alphabet)


__all__ = ["Language", "LABELS", "NotRegularError"]
