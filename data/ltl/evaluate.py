"""Vectorised evaluation: every subformula's truth over a batch of equal-length words.

Words are (B, n) arrays of symbol ids. Every operator is a numpy operation over the
position axis: Y/X are shifts, O/H/F/G exclusive prefix (or suffix) scans, and since
and until compare two running-maximum scans (see ``since``). No Python loop runs over
positions.

Each node computes its values from its operands' (``Node._values`` in data.ltl.syntax,
through the operator table, whose temporal rows point at the kernels here). This module
holds those kernels and the drivers that walk a formula; it imports nothing from the
syntax, so the syntax's ``Formula.evaluate`` calls it without an import loop. Formulas
and terms (data.ltl.syntax nodes) are left unannotated for the same reason.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from softhard.data.alphabet import Alphabet, Word, as_alphabet


def _shift_later(x: np.ndarray, fill) -> np.ndarray:
    """out[:, i] = x[:, i-1], with ``fill`` at i = 0."""
    out = np.empty_like(x)
    out[:, 0] = fill
    out[:, 1:] = x[:, :-1]
    return out


def _reverse(x: np.ndarray) -> np.ndarray:
    return x[:, ::-1]


def yesterday(p: np.ndarray) -> np.ndarray:
    """Y p: p at i - 1."""
    return _shift_later(p, False)


def once(p: np.ndarray) -> np.ndarray:
    """O p: some j < i has p."""
    return _shift_later(np.logical_or.accumulate(p, axis=1), False)


def historically(p: np.ndarray) -> np.ndarray:
    """H p: every j < i has p."""
    return ~once(~p)


def since(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p S q at i: the last q strictly before i is no earlier than the last !p before i.

    With last_q(i) = max{j < i : q_j} and last_not_p(i) = max{k < i : !p_k} (-1 if none),
    every k strictly between last_q and i has p exactly when last_not_p <= last_q.
    """
    positions = np.arange(p.shape[1])
    last_q = _shift_later(np.maximum.accumulate(np.where(q, positions, -1), axis=1), -1)
    last_not_p = _shift_later(np.maximum.accumulate(np.where(p, -1, positions), axis=1), -1)
    return (last_q >= 0) & (last_q >= last_not_p)


def mirrored(past_operator):
    """The mirror image of a past operator: run it on the reversed word. The result is copied
    into forward order, not left a reversed view: torch.as_tensor refuses negative strides."""

    def operator(*args):
        return _reverse(past_operator(*map(_reverse, args))).copy()

    return operator


def evaluate_nodes(root, ids: np.ndarray, alphabet: Alphabet) -> dict:
    """Values of every node below ``root`` on words ``ids`` (B, n): bool arrays for formulas,
    int64 arrays for terms, each of shape (B, n)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"expected a (batch, length) array of symbol ids with length >= 1, got shape {ids.shape}")
    alphabet.require(root.symbols, f"formula {root}")
    values = {}
    for node in root.walk():
        values[node] = node._values([values[child] for child in node.children()], ids, alphabet)
    return values


def _encode_one(formula, word: Word, alphabet: Alphabet | None) -> tuple[np.ndarray, Alphabet]:
    alphabet = alphabet if alphabet is not None else Alphabet.covering([word], formula.symbols)
    return alphabet.encode(word)[None, :], alphabet


def evaluate(formula, word: Word, alphabet=None) -> np.ndarray:
    alphabet = None if alphabet is None else as_alphabet(alphabet)
    ids, alphabet = _encode_one(formula, word, alphabet)
    return evaluate_nodes(formula, ids, alphabet)[formula][0]


def truth_table(formula, word: Word, alphabet=None) -> dict[str, np.ndarray]:
    alphabet = None if alphabet is None else as_alphabet(alphabet)
    ids, alphabet = _encode_one(formula, word, alphabet)
    return {str(node): table[0] for node, table in truth_tables(formula, ids, alphabet).items()}


def truth_tables(formula, ids: np.ndarray, alphabet: Alphabet) -> dict:
    """Every subformula's truth on equal-length encoded words: ``{subformula: (B, n) bool}``."""
    values = evaluate_nodes(formula, ids, alphabet)
    return {node: values[node] for node in formula.subformulas()}


def label_positions(formula, ids: np.ndarray, alphabet: Alphabet) -> np.ndarray:
    """The formula's truth at every position of equal-length encoded words: (B, n) bool."""
    return evaluate_nodes(formula, ids, alphabet)[formula]


def evaluate_batch(formula, words: Iterable[Word], alphabet=None) -> list[np.ndarray]:
    """Truth at every position of each word; words of equal length are evaluated together."""
    words = list(words)
    if not words:
        return []
    alphabet = Alphabet.covering(words, formula.symbols) if alphabet is None else as_alphabet(alphabet)
    results: list[np.ndarray | None] = [None] * len(words)
    by_length: dict[int, list[int]] = {}
    for index, word in enumerate(words):
        if len(word) == 0:
            raise ValueError(f"words are non-empty: word {index} is empty")
        by_length.setdefault(len(word), []).append(index)
    for indices in by_length.values():
        ids = alphabet.encode_equal_length([words[i] for i in indices])
        truth = label_positions(formula, ids, alphabet)
        for row, index in enumerate(indices):
            results[index] = truth[row]
    return results
