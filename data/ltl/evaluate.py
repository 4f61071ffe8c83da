"""Vectorised evaluation: every subformula's truth over a batch of equal-length words.

Words are (B, n) arrays of symbol ids. Every operator is a numpy operation over the
position axis: Y/X are shifts, O/H/F/G exclusive prefix (or suffix) scans, and since
and until compare two running-maximum scans (see ``_since``). No Python loop runs over
positions.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from softhard.data.alphabet import Alphabet, Word
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
)

_COMPARE = {"<": np.less, "<=": np.less_equal, "=": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal}
_BOOLEAN = {
    "&": np.logical_and,
    "|": np.logical_or,
    "->": lambda p, q: ~p | q,
    "<->": np.equal,
}


def _shift_later(x: np.ndarray, fill) -> np.ndarray:
    """out[:, i] = x[:, i-1], with ``fill`` at i = 0."""
    out = np.empty_like(x)
    out[:, 0] = fill
    out[:, 1:] = x[:, :-1]
    return out


def _reverse(x: np.ndarray) -> np.ndarray:
    return x[:, ::-1]


def _once(p: np.ndarray) -> np.ndarray:
    """O p: some j < i has p."""
    return _shift_later(np.logical_or.accumulate(p, axis=1), False)


def _since(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p S q at i: the last q strictly before i is no earlier than the last !p before i.

    With last_q(i) = max{j < i : q_j} and last_not_p(i) = max{k < i : !p_k} (-1 if none),
    every k strictly between last_q and i has p exactly when last_not_p <= last_q.
    """
    positions = np.arange(p.shape[1])
    last_q = _shift_later(np.maximum.accumulate(np.where(q, positions, -1), axis=1), -1)
    last_not_p = _shift_later(np.maximum.accumulate(np.where(p, -1, positions), axis=1), -1)
    return (last_q >= 0) & (last_q >= last_not_p)


def _future(past_operator):
    """The mirror image of a past operator: run it on the reversed word. The result is copied
    into forward order, not left a reversed view: torch.as_tensor refuses negative strides."""

    def operator(*args):
        return _reverse(past_operator(*map(_reverse, args))).copy()

    return operator


_UNARY = {
    "!": np.logical_not,
    "Y": lambda p: _shift_later(p, False),
    "O": _once,
    "H": lambda p: ~_once(~p),
}
_UNARY["X"] = _future(_UNARY["Y"])
_UNARY["F"] = _future(_once)
_UNARY["G"] = _future(_UNARY["H"])
_TEMPORAL_BINARY = {"S": _since, "U": _future(_since)}


def evaluate_nodes(root: Node, ids: np.ndarray, alphabet: Alphabet) -> dict[Node, np.ndarray]:
    """Values of every node below ``root`` on words ``ids`` (B, n): bool arrays for formulas,
    int64 arrays for terms, each of shape (B, n)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"expected a (batch, length) array of symbol ids with length >= 1, got shape {ids.shape}")
    alphabet.require(root_symbols(root), f"formula {root}")
    values: dict[Node, np.ndarray] = {}
    for node in root.walk():
        values[node] = _evaluate_node(node, values, ids, alphabet)
    return values


def root_symbols(root: Node) -> set[str]:
    return {node.name for node in root.walk() if isinstance(node, Symbol)}


def _evaluate_node(node: Node, values, ids: np.ndarray, alphabet: Alphabet) -> np.ndarray:
    if isinstance(node, Symbol):
        return ids == alphabet.id(node.name)
    if isinstance(node, Constant):
        return np.full(ids.shape, node.value)
    if isinstance(node, Integer):
        return np.full(ids.shape, node.value, dtype=np.int64)
    args = [values[child] for child in node.children()]
    if isinstance(node, Unary):
        return _UNARY[node.op](*args)
    if isinstance(node, Binary):
        return (_TEMPORAL_BINARY.get(node.op) or _BOOLEAN[node.op])(*args)
    if isinstance(node, Count):
        return np.cumsum(args[0], axis=1, dtype=np.int64)
    if isinstance(node, Arithmetic):
        return args[0] + args[1] if node.op == "+" else args[0] - args[1]
    if isinstance(node, Compare):
        return _COMPARE[node.op](*args)
    if isinstance(node, Modulo):
        return np.mod(args[0], node.modulus) == node.residue
    raise TypeError(f"not a formula node: {node!r}")


def _encode_one(formula: Formula, word: Word, alphabet: Alphabet | None) -> tuple[np.ndarray, Alphabet]:
    alphabet = alphabet if alphabet is not None else Alphabet.covering([word], formula.symbols)
    return alphabet.encode(word)[None, :], _as_alphabet(alphabet)


def _as_alphabet(alphabet) -> Alphabet:
    if isinstance(alphabet, Alphabet):
        return alphabet
    return Alphabet.from_text(alphabet) if isinstance(alphabet, str) else Alphabet(alphabet)


def evaluate(formula: Formula, word: Word, alphabet=None) -> np.ndarray:
    alphabet = None if alphabet is None else _as_alphabet(alphabet)
    ids, alphabet = _encode_one(formula, word, alphabet)
    return evaluate_nodes(formula, ids, alphabet)[formula][0]


def truth_table(formula: Formula, word: Word, alphabet=None) -> dict[str, np.ndarray]:
    alphabet = None if alphabet is None else _as_alphabet(alphabet)
    ids, alphabet = _encode_one(formula, word, alphabet)
    return {str(node): table[0] for node, table in truth_tables(formula, ids, alphabet).items()}


def truth_tables(formula: Formula, ids: np.ndarray, alphabet: Alphabet) -> dict[Formula, np.ndarray]:
    """Every subformula's truth on equal-length encoded words: ``{subformula: (B, n) bool}``."""
    values = evaluate_nodes(formula, ids, alphabet)
    return {node: values[node] for node in formula.subformulas()}


def label_positions(formula: Formula, ids: np.ndarray, alphabet: Alphabet) -> np.ndarray:
    """The formula's truth at every position of equal-length encoded words: (B, n) bool."""
    return evaluate_nodes(formula, ids, alphabet)[formula]


def evaluate_batch(formula: Formula, words: Iterable[Word], alphabet=None) -> list[np.ndarray]:
    """Truth at every position of each word; words of equal length are evaluated together."""
    words = list(words)
    if not words:
        return []
    alphabet = Alphabet.covering(words, formula.symbols) if alphabet is None else _as_alphabet(alphabet)
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
