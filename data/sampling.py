"""Exact uniform sampling of words of one length from an automaton, by counting paths.

``counts[r][s]`` is the number of words of length r that lead from state s to an
accepting state. Reading left to right from the start state, the next letter is drawn
with probability ``counts[r-1][next(s, letter)] / counts[r][s]``, so every accepted word
of length n has probability exactly ``1 / counts[n][start]``: no rejection, no
truncation. Counts are kept as natural logarithms: a count of zero is exactly -inf and
every other count is >= 1 (log >= 0), so nothing underflows or overflows at any length;
the drawing probabilities are exact up to float64 rounding (relative error about
1e-12 at n = 10,000).
"""

from __future__ import annotations

import numpy as np

from softhard.data.errors import EmptyClassError


def log_path_counts(transitions: np.ndarray, accepting: np.ndarray, length: int) -> np.ndarray:
    """(length + 1, S) array: log of the number of words of each length r from each state to
    an accepting state."""
    table = np.empty((length + 1, len(accepting)))
    table[0] = np.where(accepting, 0.0, -np.inf)
    for r in range(1, length + 1):
        table[r] = _log_sum_exp(table[r - 1][transitions])
    return table


def _log_sum_exp(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the last axis, exact -inf where every entry is -inf."""
    top = x.max(axis=-1)
    finite = np.isfinite(top)
    shifted = np.exp(x - np.where(finite, top, 0.0)[..., None])
    with np.errstate(divide="ignore"):  # all -inf: log(0) = -inf is the right answer
        return np.where(finite, top + np.log(shifted.sum(axis=-1)), -np.inf)


class PathSampler:
    """Uniform sampler over the words of one length accepted by a complete automaton.

    Args:
        transitions: (S, k) next-state table over symbol ids 0..k-1.
        accepting: (S,) bool mask of accepting states.
        start: the start state.
        length: the word length n >= 1.
        description: how errors name the language, e.g. ``"positive words of 'tomita2'"``.
    Raises:
        EmptyClassError: no accepted word has this length.
    """

    def __init__(self, transitions: np.ndarray, accepting: np.ndarray, start: int, length: int, description: str):
        if length < 1:
            raise ValueError(f"word length must be >= 1, got {length}")
        self.transitions = transitions
        self.start = start
        self.length = length
        self.log_counts = log_path_counts(transitions, accepting, length)
        if not np.isfinite(self.log_counts[length, start]):
            raise EmptyClassError(f"there are no {description} of length {length}")

    @property
    def log_size(self) -> float:
        """Natural log of the number of words this sampler draws from."""
        return float(self.log_counts[self.length, self.start])

    def all_words(self) -> np.ndarray:
        """Every accepted word, (size, length) int64 ids in lexicographic order of symbol ids.

        Follows only letters with completions left, so every prefix kept reaches a word: the work
        is O(size x length x k). Meant for small classes (data.dataset splits them between
        training and held-out words); the caller checks ``log_size`` first.
        """
        states = np.array([self.start], dtype=np.int64)
        words = np.zeros((1, 0), dtype=np.int64)
        for t in range(self.length):
            alive = np.isfinite(self.log_counts[self.length - t - 1][self.transitions[states]])  # (prefixes, k)
            prefix, letter = np.nonzero(alive)  # row-major: prefixes in order, letters in order within each
            words = np.concatenate([words[prefix], letter[:, None].astype(np.int64)], axis=1)
            states = self.transitions[states[prefix], letter]
        return words

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """(count, length) int64 symbol ids, each row uniform over the accepted words."""
        states = np.full(count, self.start, dtype=np.int64)
        words = np.empty((count, self.length), dtype=np.int64)
        for t in range(self.length):
            log_weights = self.log_counts[self.length - t - 1][self.transitions[states]]  # (count, k)
            weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
            cumulative = np.cumsum(weights, axis=1)
            threshold = rng.random(count) * cumulative[:, -1]
            letters = (cumulative <= threshold[:, None]).sum(axis=1)
            # Rounding can put the threshold on the total: take the last letter of positive weight.
            last_positive = weights.shape[1] - 1 - np.argmax(weights[:, ::-1] > 0, axis=1)
            letters = np.minimum(letters, last_positive)
            words[:, t] = letters
            states = self.transitions[states, letters]
        return words
