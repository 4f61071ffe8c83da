"""Parser for the formula language: precedence climbing over the operator table.

Precedence, tightest first: atoms; prefix ``! Y X O H F G #``; terms ``+ -`` then
comparisons and ``% m = r``; ``S U`` (right); ``&``; ``|``; ``-> <->`` (right).
A prefix operator meeting ``#`` or an integer reads a whole comparison, so
``!#a > #b`` is ``!(#a > #b)``.

Each grammar rule is a generator that yields the sub-rules it needs and receives their
results; ``_run`` drives them on an explicit stack, so nesting is bounded by
``MAX_NESTING`` (prefix operators, ``#``, parentheses and right-nested ``S U -> <->``,
counted along one path), not by Python's recursion limit.
"""

from __future__ import annotations

import re
from typing import Generator, NamedTuple

from softhard.data.alphabet import SYMBOL
from softhard.data.errors import FormulaSyntaxError
from softhard.data.ltl.syntax import (
    COMPARISONS,
    OPERATORS,
    Arithmetic,
    Binary,
    Compare,
    Constant,
    Count,
    Formula,
    Integer,
    Modulo,
    Operator,
    Symbol,
    Term,
    Unary,
)

# Integer literals stay below 2**31, as do counts (word lengths): every sum of fewer than 2**32
# such operands is exact in the evaluators' int64 arithmetic, which would otherwise wrap silently.
MAX_INTEGER = 2**31 - 1
MAX_NESTING = 100_000
_CAPITALS = "".join(text for text, row in OPERATORS.items() if row.kind == "temporal")
_SIGNS = sorted((text for text in OPERATORS if text not in _CAPITALS), key=len, reverse=True) + ["(", ")", "#", "%"]
_TOKEN = re.compile(
    rf"(?P<space>\s+)|(?P<int>[0-9]+)|(?P<name>{SYMBOL})"
    rf"|(?P<op>{'|'.join(map(re.escape, _SIGNS))})|(?P<capital>[{_CAPITALS}])"
)


class Token(NamedTuple):
    kind: str  # "int", "name", "op", "capital" or "end"
    text: str
    offset: int


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


Rule = Generator["Rule", object, object]


def _run(rule: Rule):
    """The result of ``rule``, running the sub-rules it yields on an explicit stack."""
    stack, value = [rule], None
    while stack:
        try:
            sub_rule = stack[-1].send(value)
        except StopIteration as done:
            stack.pop()
            value = done.value
        else:
            stack.append(sub_rule)
            value = None
    return value


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.index = 0
        self.nesting = 0

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

    def enter(self) -> Token:
        """Consume the token that opens one more nesting level, refusing past MAX_NESTING;
        the caller leaves the level (``self.nesting -= 1``) once its operand is read."""
        if self.nesting == MAX_NESTING:
            self.fail(f"at most MAX_NESTING = {MAX_NESTING} nested operators and parentheses")
        self.nesting += 1
        return self.advance()

    def parse(self) -> Formula:
        formula = _run(self.formula(0))
        if self.token.kind != "end":
            self.fail("an operator or the end of the formula")
        return formula

    def binary_operator(self, weakest: int) -> Operator | None:
        """The binary formula operator at the current token, if it binds at least ``weakest``."""
        row = OPERATORS.get(self.token.text)
        if row is None or row.arity != 2 or row.precedence < max(weakest, 1):
            return None
        return row

    def formula(self, weakest: int) -> Rule:
        """Operands joined by binary operators of precedence >= ``weakest``."""
        left = yield self.prefix()
        while (row := self.binary_operator(weakest)) is not None:
            if row.right_associative:
                self.enter()
                left = Binary(row.text, left, (yield self.formula(row.precedence)))
                self.nesting -= 1
            else:
                self.advance()
                left = Binary(row.text, left, (yield self.formula(row.precedence + 1)))
        return left

    def prefix(self) -> Rule:
        token = self.token
        row = OPERATORS.get(token.text)
        if row is not None and row.arity == 1:  # ! Y X O H F G
            self.enter()
            arg = yield self.prefix()
            self.nesting -= 1
            return Unary(token.text, arg)
        if token.text == "#" or token.kind == "int":
            return (yield self.comparison((yield self.term())))
        return (yield self.atom())

    def atom(self) -> Rule:
        token = self.token
        if token.kind == "name":
            self.advance()
            if token.text in ("true", "false"):
                return Constant(token.text == "true")
            return Symbol(token.text)
        if token.text == "(":
            self.enter()
            formula = yield self.formula(0)
            self.expect(")")
            self.nesting -= 1
            return formula
        self.fail("a formula")

    def term(self) -> Rule:
        left = yield self.term_operand()
        while (row := OPERATORS.get(self.token.text)) is not None and row.kind == "arithmetic":
            self.advance()
            left = Arithmetic(row.text, left, (yield self.term_operand()))
        return left

    def term_operand(self) -> Rule:
        token = self.token
        if token.text == "#":
            self.enter()
            arg = yield self.prefix()
            self.nesting -= 1
            return Count(arg)
        if token.kind == "int":
            self.advance()
            return Integer(int(token.text))
        self.fail("a counting term ('#' or an integer)")

    def comparison(self, left: Term) -> Rule:
        if self.token.text in COMPARISONS:
            op = self.advance().text
            return Compare(op, left, (yield self.term()))
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
