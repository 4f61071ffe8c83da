"""Recursive-descent parser for the formula language, one function per precedence level.

Precedence, tightest first: atoms; prefix ``! Y X O H F G #``; terms ``+ -`` then
comparisons and ``% m = r``; ``S U`` (right); ``&``; ``|``; ``-> <->`` (right).
A prefix operator meeting ``#`` or an integer reads a whole comparison, so
``!#a > #b`` is ``!(#a > #b)``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from softhard.data.errors import FormulaSyntaxError
from softhard.data.ltl.syntax import (
    COMPARISONS,
    TEMPORAL_UNARY,
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Formula,
    Integer,
    Modulo,
    Symbol,
    Term,
    Unary,
)

# Integer literals stay below 2**31, as do counts (word lengths): every sum of fewer than 2**32
# such operands is exact in the evaluators' int64 arithmetic, which would otherwise wrap silently.
MAX_INTEGER = 2**31 - 1
KEYWORDS = frozenset({"true", "false", "Y", "X", "O", "H", "F", "G", "S", "U"})
SYMBOL_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")
_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<int>[0-9]+)|(?P<name>[a-z][a-z0-9_]*)"
    r"|(?P<op><->|->|<=|>=|!=|[!&|()#+\-<>=%])|(?P<capital>[YXOHFGSU])"
)


class Token(NamedTuple):
    kind: str  # "int", "name", "op", "capital" or "end"
    text: str
    offset: int


def is_symbol(text: str) -> bool:
    """Whether ``text`` is a valid symbol name: ``[a-z][a-z0-9_]*`` and no keyword."""
    return isinstance(text, str) and bool(SYMBOL_PATTERN.match(text)) and text not in KEYWORDS


def tokenize(text: str) -> list[Token]:
    tokens, offset = [], 0
    while offset < len(text):
        match = _TOKEN.match(text, offset)
        if match is None:
            raise FormulaSyntaxError(text[offset], offset)
        if match.lastgroup == "int" and int(match.group()) > MAX_INTEGER:
            raise FormulaSyntaxError(match.group(), offset, f"an integer <= {MAX_INTEGER}")
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), offset))
        offset = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse(text: str) -> Formula:
    """Parse a formula; raises FormulaSyntaxError naming the bad token and its offset."""
    if not isinstance(text, str):
        raise TypeError(f"parse expects a str, got {type(text).__name__}")
    return _Parser(tokenize(text)).parse()


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def fail(self, expected: str):
        raise FormulaSyntaxError(self.token.text, self.token.offset, expected)

    def expect(self, text: str) -> Token:
        if self.token.text != text or self.token.kind == "end":
            self.fail(repr(text))
        return self.advance()

    def parse(self) -> Formula:
        formula = self.implication()
        if self.token.kind != "end":
            self.fail("an operator or the end of the formula")
        return formula

    def implication(self) -> Formula:
        left = self.disjunction()
        if self.token.text in ("->", "<->"):
            op = self.advance().text
            return Binary(op, left, self.implication())
        return left

    def disjunction(self) -> Formula:
        left = self.conjunction()
        while self.token.text == "|":
            self.advance()
            left = Binary("|", left, self.conjunction())
        return left

    def conjunction(self) -> Formula:
        left = self.temporal()
        while self.token.text == "&":
            self.advance()
            left = Binary("&", left, self.temporal())
        return left

    def temporal(self) -> Formula:
        left = self.prefix()
        if self.token.kind == "capital" and self.token.text in ("S", "U"):
            op = self.advance().text
            return Binary(op, left, self.temporal())
        return left

    def prefix(self) -> Formula:
        token = self.token
        if token.text == "!" and token.kind == "op":
            self.advance()
            return Unary("!", self.prefix())
        if token.kind == "capital" and token.text in TEMPORAL_UNARY:
            self.advance()
            return Unary(token.text, self.prefix())
        if token.text == "#" or token.kind == "int":
            return self.comparison(self.term())
        return self.atom()

    def atom(self) -> Formula:
        token = self.token
        if token.kind == "name":
            self.advance()
            if token.text in ("true", "false"):
                return Constant(token.text == "true")
            return Symbol(token.text)
        if token.text == "(":
            self.advance()
            formula = self.implication()
            self.expect(")")
            return formula
        self.fail("a formula")

    def term(self) -> Term:
        left = self.term_operand()
        while self.token.text in ("+", "-"):
            op = self.advance().text
            left = Arithmetic(op, left, self.term_operand())
        return left

    def term_operand(self) -> Term:
        token = self.token
        if token.text == "#":
            self.advance()
            return Count(self.prefix())
        if token.kind == "int":
            self.advance()
            return Integer(int(token.text))
        self.fail("a counting term ('#' or an integer)")

    def comparison(self, left: Term) -> Formula:
        if self.token.text in COMPARISONS:
            op = self.advance().text
            return Compare(op, left, self.term())
        if self.token.text == "%":
            self.advance()
            modulus = self.integer("a modulus >= 2", lambda m: m >= 2)
            self.expect("=")
            residue = self.integer(f"a residue in 0..{modulus - 1}", lambda r: r < modulus)
            return Modulo(left, modulus, residue)
        self.fail("a comparison (< <= = != > >=) or '%' after a counting term")

    def integer(self, expected: str, valid) -> int:
        if self.token.kind != "int" or not valid(int(self.token.text)):
            self.fail(expected)
        return int(self.advance().text)
