"""Alphabets: the ordered symbols of a language, and words encoded as symbol ids."""

from __future__ import annotations

from typing import Iterable, Sequence

import re

import numpy as np

from softhard.data.errors import UnknownSymbolError

Word = str | Sequence[str]

SYMBOL = r"[a-z][a-z0-9_]*"  # the formula tokenizer reads names with this pattern too
RESERVED = frozenset({"true", "false"})  # the other keywords (Y X O H F G S U) are capitals
_SYMBOL = re.compile(SYMBOL + r"\Z")


def is_symbol(text: str) -> bool:
    """Whether ``text`` is a valid symbol name: ``[a-z][a-z0-9_]*`` and no keyword."""
    return isinstance(text, str) and bool(_SYMBOL.match(text)) and text not in RESERVED


def as_alphabet(alphabet: "Alphabet | str | Iterable[str]") -> "Alphabet":
    """An Alphabet as given, or built from ``"a,b,c"`` or from a sequence of symbols."""
    if isinstance(alphabet, Alphabet):
        return alphabet
    return Alphabet.from_text(alphabet) if isinstance(alphabet, str) else Alphabet(alphabet)


class Alphabet:
    """An ordered set of symbols; symbol ``k`` has id ``k`` in encoded words."""

    def __init__(self, symbols: Iterable[str]):
        symbols = tuple(symbols)
        if not symbols:
            raise ValueError("an alphabet needs at least one symbol")
        for symbol in symbols:
            if not is_symbol(symbol):
                raise ValueError(f"invalid alphabet symbol {symbol!r}: symbols are [a-z][a-z0-9_]* and no keyword")
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicates:
            raise ValueError(f"alphabet repeats symbol {duplicates[0]!r}")
        self.symbols = symbols
        self._ids = {symbol: index for index, symbol in enumerate(symbols)}

    @classmethod
    def from_text(cls, text: str) -> "Alphabet":
        """Parse ``"a,b,c"``."""
        return cls(part.strip() for part in text.split(","))

    @classmethod
    def covering(cls, words: Iterable[Word], extra: Iterable[str] = ()) -> "Alphabet":
        """The sorted alphabet of every symbol in ``words`` and ``extra``, each validated."""
        found = set(extra)
        for word in words:
            for position, symbol in enumerate(word):
                if not is_symbol(symbol):
                    raise UnknownSymbolError(symbol, position)
                found.add(symbol)
        return cls(sorted(found))

    def __len__(self) -> int:
        return len(self.symbols)

    def __iter__(self):
        return iter(self.symbols)

    def __contains__(self, symbol) -> bool:
        return symbol in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and other.symbols == self.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Alphabet({','.join(self.symbols)})"

    def __str__(self) -> str:
        return ",".join(self.symbols)

    def id(self, symbol: str) -> int:
        return self._ids[symbol]

    def encode(self, word: Word) -> np.ndarray:
        """Symbol ids of a non-empty word, shape (n,); unknown symbols raise UnknownSymbolError."""
        if len(word) == 0:
            raise ValueError("words are non-empty: got an empty word")
        ids = np.empty(len(word), dtype=np.int64)
        for position, symbol in enumerate(word):
            index = self._ids.get(symbol) if isinstance(symbol, str) else None
            if index is None:
                raise UnknownSymbolError(symbol, position, self.symbols)
            ids[position] = index
        return ids

    def encode_equal_length(self, words: Sequence[Word]) -> np.ndarray:
        """Symbol ids of non-empty words of one length, shape (B, n). Python strings over a
        one-character alphabet are mapped in one numpy pass over their code points."""
        if not words:
            raise ValueError("no words to encode")
        if len(word_lengths := {len(word) for word in words}) > 1:
            raise ValueError(f"words of one length expected, got lengths {sorted(word_lengths)}")
        one_character = all(len(symbol) == 1 for symbol in self.symbols)
        if not (one_character and all(isinstance(word, str) for word in words)) or 0 in word_lengths:
            return np.stack([self.encode(word) for word in words])
        codes = np.array(words).view(np.uint32).reshape(len(words), -1)  # (B, n) code points
        order = np.argsort([ord(symbol) for symbol in self.symbols])
        sorted_codes = np.array([ord(self.symbols[k]) for k in order], dtype=np.uint32)
        slots = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
        unknown = sorted_codes[slots] != codes
        if unknown.any():
            row, position = map(int, np.argwhere(unknown)[0])
            raise UnknownSymbolError(words[row][position], position, self.symbols)
        return order[slots].astype(np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    def require(self, symbols: Iterable[str], what: str) -> None:
        """Fail if ``what`` (e.g. a formula) mentions a symbol outside this alphabet."""
        missing = sorted(set(symbols) - set(self.symbols))
        if missing:
            raise ValueError(f"{what} uses symbol {missing[0]!r}, which is not in the alphabet {self}")
