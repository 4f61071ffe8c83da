"""The abstract syntax of formulas and counting terms (see docs/ltl-spec.md in shared/).

Nodes are frozen dataclasses: equal subformulas compare and hash equal, so evaluators
and compilers share work on repeated subformulas, and ``str(node)`` prints text that
``parse`` reads back to the same node.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

PAST_UNARY = ("Y", "O", "H")
FUTURE_UNARY = ("X", "F", "G")
TEMPORAL_UNARY = PAST_UNARY + FUTURE_UNARY
BOOLEAN_BINARY = ("&", "|", "->", "<->")
TEMPORAL_BINARY = ("S", "U")
COMPARISONS = ("<", "<=", "=", "!=", ">", ">=")


def node(cls):
    """A frozen dataclass whose hash is computed once: nodes key many dicts, and a recomputed
    hash costs a walk of the whole subtree each time."""
    cls = dataclass(frozen=True)(cls)
    names = tuple(f.name for f in fields(cls))

    def __hash__(self):
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((cls.__name__,) + tuple(getattr(self, name) for name in names))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self):  # string hashes differ between processes: never pickle the cache
        return {key: value for key, value in self.__dict__.items() if key != "_hash"}

    cls.__hash__ = __hash__
    cls.__getstate__ = __getstate__
    return cls


class Node:
    """Common traversal for formulas and terms."""

    def children(self) -> tuple["Node", ...]:
        return ()

    def walk(self) -> Iterator["Node"]:
        """Every node below and including this one, children before parents, each once."""
        seen: set[Node] = set()
        stack: list[tuple[Node, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if node in seen:
                continue
            if expanded:
                seen.add(node)
                yield node
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children()))

    def _operand_text(self) -> str:
        """Text of this node as the operand of a tighter operator."""
        return str(self)


class Formula(Node):
    """A formula: one truth value per position of a word."""

    def subformulas(self) -> list["Formula"]:
        """Every distinct subformula (terms excluded), children before parents, root last."""
        return [node for node in self.walk() if isinstance(node, Formula)]

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(node.name for node in self.walk() if isinstance(node, Symbol))

    @property
    def depth(self) -> int:
        """Nesting depth of temporal operators (Y, X, O, H, F, G, S, U)."""
        return temporal_depth(self)

    # Evaluation lives in data.ltl.evaluate; these methods are the stable public API.
    def evaluate(self, word, alphabet=None):
        """Truth at every position of ``word``: numpy bool array of shape (n,)."""
        from softhard.data.ltl.evaluate import evaluate

        return evaluate(self, word, alphabet)

    def accepts(self, word, alphabet=None) -> bool:
        """Whether ``word`` is in the language: truth at the last position."""
        return bool(self.evaluate(word, alphabet)[-1])

    def evaluate_batch(self, words, alphabet=None):
        """Truth at every position of each word: a list of bool arrays, one per word."""
        from softhard.data.ltl.evaluate import evaluate_batch

        return evaluate_batch(self, words, alphabet)

    def truth_table(self, word, alphabet=None):
        """Every subformula's truth at every position: ``{str(subformula): bool array (n,)}``."""
        from softhard.data.ltl.evaluate import truth_table

        return truth_table(self, word, alphabet)


class Term(Node):
    """A counting term: one integer per position of a word."""


@node
class Symbol(Formula):
    name: str

    def __str__(self) -> str:
        return self.name


@node
class Constant(Formula):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@node
class Unary(Formula):
    """``!p`` or a unary temporal operator (Y X O H F G)."""

    op: str
    arg: Formula

    def children(self):
        return (self.arg,)

    def __str__(self) -> str:
        sep = "" if self.op == "!" else " "
        return f"{self.op}{sep}{self.arg._operand_text()}"


@node
class Binary(Formula):
    """A Boolean connective (& | -> <->) or since/until (S U)."""

    op: str
    left: Formula
    right: Formula

    def children(self):
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"{self.left._operand_text()} {self.op} {self.right._operand_text()}"

    def _operand_text(self) -> str:
        return f"({self})"


@node
class Compare(Formula):
    """``left op right`` over counting terms."""

    op: str
    left: Term
    right: Term

    def children(self):
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"

    def _operand_text(self) -> str:
        return f"({self})"


@node
class Modulo(Formula):
    """``term % modulus = residue``."""

    term: Term
    modulus: int
    residue: int

    def children(self):
        return (self.term,)

    def __str__(self) -> str:
        return f"{self.term} % {self.modulus} = {self.residue}"

    def _operand_text(self) -> str:
        return f"({self})"


@node
class Count(Term):
    """``#p``: positions j <= i (inclusive) where p holds."""

    arg: Formula

    def children(self):
        return (self.arg,)

    def __str__(self) -> str:
        return f"#{self.arg._operand_text()}"


@node
class Integer(Term):
    value: int

    def __str__(self) -> str:
        return str(self.value)


@node
class Arithmetic(Term):
    """``left + right`` or ``left - right`` (left-associative, so ``right`` is never Arithmetic
    when parsed)."""

    op: str
    left: Term
    right: Term

    def children(self):
        return (self.left, self.right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


def temporal_depth(node: Node) -> int:
    below = max((temporal_depth(child) for child in node.children()), default=0)
    is_temporal = (isinstance(node, Unary) and node.op in TEMPORAL_UNARY) or (
        isinstance(node, Binary) and node.op in TEMPORAL_BINARY
    )
    return below + int(is_temporal)


def is_past(node: Node) -> bool:
    return (isinstance(node, Unary) and node.op in PAST_UNARY) or (isinstance(node, Binary) and node.op == "S")


def is_future(node: Node) -> bool:
    return (isinstance(node, Unary) and node.op in FUTURE_UNARY) or (isinstance(node, Binary) and node.op == "U")


def uses_counting(node: Node) -> bool:
    return any(isinstance(n, (Compare, Modulo)) for n in node.walk())
