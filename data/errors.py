"""Every error data/ raises on bad input: each is a ValueError naming the bad value."""

from __future__ import annotations


class FormulaSyntaxError(ValueError):
    """A malformed formula: names the offending token and its character offset."""

    def __init__(self, token: str, offset: int, expected: str | None = None):
        self.token = token
        self.offset = offset
        shown = "end of formula" if token == "" else repr(token)
        message = f"unexpected {shown} at offset {offset}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)


class UnknownSymbolError(ValueError):
    """A word holds a symbol outside the declared alphabet (or one that is no valid symbol)."""

    def __init__(self, symbol: object, position: int, alphabet: tuple[str, ...] | None = None):
        self.symbol = symbol
        self.position = position
        where = f"not in the alphabet {','.join(alphabet)}" if alphabet else "not a valid symbol"
        super().__init__(f"unknown symbol {symbol!r} at position {position}: {where}")


class AutomatonTooLargeError(ValueError):
    """Compiling a formula would exceed a documented state limit."""


class NotRegularError(ValueError):
    """The formula compares counts, so no finite automaton recognises its language."""


class EmptyClassError(ValueError):
    """A language has no member (or no non-member) of the requested length."""
