"""The abstract syntax of formulas and counting terms, and the operator table (see
docs/ltl-spec.md in shared/).

``OPERATORS`` is the one place an operator's meaning is written down: the parser reads
its spelling, arity, precedence and associativity; the evaluator (through each node's
``_values``) its function over arrays; the automata its Boolean function, direction,
recurrence and boundary value; the counting sampler its comparisons and, through
``linear_form``, the linear form of count terms.

Nodes are frozen dataclasses: equal subformulas compare and hash equal, so evaluators
and compilers share work on repeated subformulas, and ``str(node)`` prints text that
``parse`` reads back to the same node. Hashing, equality, printing and every traversal
here are iterative, so a formula of any depth stays within Python's recursion limit.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator

import numpy as np

from softhard.data.alphabet import Alphabet, Word
from softhard.data.ltl import evaluate as vectorised


@dataclass(frozen=True)
class Operator:
    """One row of the operator table.

    ``function`` is, by ``kind``:
    - ``boolean``: the truth function of the operands' truth values;
    - ``comparison`` and ``arithmetic``: the function of the two integer operands;
    - ``temporal``: the recurrence ``function(own, *operands)``, the value at a position
      from the operator's own value and its operands' values at the neighbour one step
      nearer the boundary (the previous position for the past, the next for the future).
    Boolean, comparison and arithmetic functions are written with Python's operators, so
    they take Python bools or ints and numpy arrays alike. ``vectorised`` is the value at
    every position of (B, n) operand arrays: the function itself, or for a temporal
    operator its closed form (data.ltl.evaluate).
    """

    text: str
    kind: str  # boolean | temporal | comparison | arithmetic
    arity: int
    function: Callable
    vectorised: Callable
    direction: str | None = None  # temporal: past | future
    strict: bool = False  # temporal: never reads the position itself (every one, by the spec)
    boundary: bool | None = None  # temporal: the value with nothing to look at (i = 0 past, n-1 future)
    mirror: str | None = None  # temporal: the same operator in the other direction
    sign: int = 0  # arithmetic: the right operand's coefficient in a linear form
    precedence: int = 0  # binary formula operators: how tightly they bind (higher: tighter)
    right_associative: bool = False


def _connective(text: str, arity: int, function: Callable, precedence: int = 0, right: bool = False) -> Operator:
    return Operator(text, "boolean", arity, function, function, precedence=precedence, right_associative=right)


def _past(text: str, arity: int, boundary: bool, recurrence: Callable, closed_form: Callable, **binding) -> Operator:
    return Operator(text, "temporal", arity, recurrence, closed_form, "past", True, boundary, **binding)


def _future(past: Operator, text: str) -> Operator:
    """The mirror image of a past operator: the same recurrence read from the other end."""
    return replace(past, text=text, direction="future", mirror=past.text, vectorised=vectorised.mirrored(past.vectorised))


def _integers(text: str, kind: str, function: Callable, sign: int = 0) -> Operator:
    return Operator(text, kind, 2, function, function, sign=sign)


_PAST = [
    _past("Y", 1, False, lambda own, p: p, vectorised.yesterday, mirror="X"),
    _past("O", 1, False, lambda own, p: p | own, vectorised.once, mirror="F"),
    _past("H", 1, True, lambda own, p: p & own, vectorised.historically, mirror="G"),
    _past("S", 2, False, lambda own, p, q: q | (p & own), vectorised.since, mirror="U", precedence=4, right_associative=True),
]
OPERATORS: dict[str, Operator] = {
    row.text: row
    for row in [
        _connective("!", 1, lambda p: p ^ True),  # not p, for bools and bool arrays alike
        _connective("&", 2, operator.and_, precedence=3),
        _connective("|", 2, operator.or_, precedence=2),
        _connective("->", 2, operator.le, precedence=1, right=True),  # p -> q is p <= q on truth values
        _connective("<->", 2, operator.eq, precedence=1, right=True),
        *_PAST,
        *(_future(row, row.mirror) for row in _PAST),
        _integers("<", "comparison", operator.lt),
        _integers("<=", "comparison", operator.le),
        _integers("=", "comparison", operator.eq),
        _integers("!=", "comparison", operator.ne),
        _integers(">", "comparison", operator.gt),
        _integers(">=", "comparison", operator.ge),
        _integers("+", "arithmetic", operator.add, sign=1),
        _integers("-", "arithmetic", operator.sub, sign=-1),
    ]
}


def operator_texts(**wanted) -> tuple[str, ...]:
    """The operators whose table fields equal ``wanted``, e.g. ``operator_texts(kind="comparison")``."""
    return tuple(text for text, row in OPERATORS.items() if all(getattr(row, k) == v for k, v in wanted.items()))


COMPARISONS = operator_texts(kind="comparison")


def node(cls):
    """A frozen dataclass node, compared and hashed by ``Node`` (never field by field, which
    would recurse down the tree)."""
    cls = dataclass(frozen=True, eq=False, repr=False)(cls)
    cls._field_names = tuple(f.name for f in fields(cls))
    return cls


class Node:
    """Common identity, printing and traversal for formulas and terms."""

    _field_names: tuple[str, ...] = ()

    def __post_init__(self):
        # Children are built before their parents, so their hashes are already cached: the hash
        # is computed once, in constant time per node (nodes key many dicts).
        values = tuple(getattr(self, name) for name in self._field_names)
        object.__setattr__(self, "_hash", hash((type(self).__name__,) + values))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        pairs, compared = [(self, other)], set()
        while pairs:
            a, b = pairs.pop()
            if a is b or (id(a), id(b)) in compared:
                continue
            compared.add((id(a), id(b)))
            if type(a) is not type(b) or a._hash != b._hash:
                return False
            for name in a._field_names:
                x, y = getattr(a, name), getattr(b, name)
                if isinstance(x, Node):
                    pairs.append((x, y))
                elif x != y:
                    return False
        return True

    def __getstate__(self):  # string hashes differ between processes: never pickle the cache
        return {key: value for key, value in self.__dict__.items() if key != "_hash"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

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

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(node.name for node in self.walk() if isinstance(node, Symbol))

    def __str__(self) -> str:
        return render(self, lambda node: node._pieces())

    def __repr__(self) -> str:
        """The dataclass form, e.g. ``Unary(op='Y', arg=Symbol(name='a'))``."""
        return render(self, Node._repr_pieces)

    def _repr_pieces(self) -> tuple:
        pieces: list = [f"{type(self).__qualname__}("]
        for k, name in enumerate(self._field_names):
            value = getattr(self, name)
            pieces += [", " if k else "", f"{name}=", value if isinstance(value, Node) else repr(value)]
        return (*pieces, ")")

    def _pieces(self) -> tuple:
        """This node's text: strings and the nodes printed in between, in order."""
        raise NotImplementedError

    def _as_operand(self) -> tuple:
        """The pieces of this node as the operand of a tighter operator."""
        return (self,)

    def _values(self, operands: list[np.ndarray], ids: np.ndarray, alphabet: Alphabet) -> np.ndarray:
        """Values on encoded words ``ids`` (B, n), given the operands' values (data.ltl.evaluate)."""
        raise NotImplementedError


def render(root: Node, pieces) -> str:
    """The text of ``root``, where ``pieces(node)`` gives a node's strings and the nodes
    rendered in between, in order."""
    parts, stack = [], [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        else:
            stack.extend(reversed(pieces(item)))
    return "".join(parts)


class Formula(Node):
    """A formula: one truth value per position of a word."""

    def subformulas(self) -> list["Formula"]:
        """Every distinct subformula (terms excluded), children before parents, root last."""
        return [node for node in self.walk() if isinstance(node, Formula)]

    @property
    def depth(self) -> int:
        """Nesting depth of temporal operators (Y, X, O, H, F, G, S, U)."""
        return temporal_depth(self)

    def evaluate(self, word: Word, alphabet=None) -> np.ndarray:
        """Truth at every position of ``word``: numpy bool array of shape (n,)."""
        return vectorised.evaluate(self, word, alphabet)

    def accepts(self, word: Word, alphabet=None) -> bool:
        """Whether ``word`` is in the language: truth at the last position."""
        return bool(self.evaluate(word, alphabet)[-1])

    def evaluate_batch(self, words, alphabet=None) -> list[np.ndarray]:
        """Truth at every position of each word: a list of bool arrays, one per word."""
        return vectorised.evaluate_batch(self, words, alphabet)

    def truth_table(self, word: Word, alphabet=None) -> dict[str, np.ndarray]:
        """Every subformula's truth at every position: ``{str(subformula): bool array (n,)}``."""
        return vectorised.truth_table(self, word, alphabet)


class Term(Node):
    """A counting term: one integer per position of a word."""


class _Operation:
    """A node whose ``op`` names its row of the operator table."""

    @property
    def operator(self) -> Operator:
        return OPERATORS[self.op]

    def _values(self, operands, ids, alphabet):
        return self.operator.vectorised(*operands)


class _Parenthesised:
    """A node printed in parentheses where it is the operand of a tighter operator."""

    def _as_operand(self) -> tuple:
        return ("(", self, ")")


@node
class Symbol(Formula):
    name: str

    def _pieces(self):
        return (self.name,)

    def _values(self, operands, ids, alphabet):
        return ids == alphabet.id(self.name)


@node
class Constant(Formula):
    value: bool

    def _pieces(self):
        return ("true" if self.value else "false",)

    def _values(self, operands, ids, alphabet):
        return np.full(ids.shape, self.value)


@node
class Unary(_Operation, Formula):
    """``!p`` or a unary temporal operator (Y X O H F G)."""

    op: str
    arg: Formula

    def children(self):
        return (self.arg,)

    def _pieces(self):
        return (self.op if self.op == "!" else f"{self.op} ", *self.arg._as_operand())


@node
class Binary(_Parenthesised, _Operation, Formula):
    """A Boolean connective (& | -> <->) or since/until (S U)."""

    op: str
    left: Formula
    right: Formula

    def children(self):
        return (self.left, self.right)

    def _pieces(self):
        return (*self.left._as_operand(), f" {self.op} ", *self.right._as_operand())


@node
class Compare(_Parenthesised, _Operation, Formula):
    """``left op right`` over counting terms."""

    op: str
    left: Term
    right: Term

    def children(self):
        return (self.left, self.right)

    def _pieces(self):
        return (self.left, f" {self.op} ", self.right)


@node
class Modulo(_Parenthesised, Formula):
    """``term % modulus = residue``."""

    term: Term
    modulus: int
    residue: int

    def children(self):
        return (self.term,)

    def _pieces(self):
        return (self.term, f" % {self.modulus} = {self.residue}")

    def _values(self, operands, ids, alphabet):
        return np.mod(operands[0], self.modulus) == self.residue


@node
class Count(Term):
    """``#p``: positions j <= i (inclusive) where p holds."""

    arg: Formula

    def children(self):
        return (self.arg,)

    def _pieces(self):
        return ("#", *self.arg._as_operand())

    def _values(self, operands, ids, alphabet):
        return np.cumsum(operands[0], axis=1, dtype=np.int64)


@node
class Integer(Term):
    value: int

    def _pieces(self):
        return (str(self.value),)

    def _values(self, operands, ids, alphabet):
        return np.full(ids.shape, self.value, dtype=np.int64)


@node
class Arithmetic(_Operation, Term):
    """``left + right`` or ``left - right`` (left-associative, so ``right`` is never Arithmetic
    when parsed)."""

    op: str
    left: Term
    right: Term

    def children(self):
        return (self.left, self.right)

    def _pieces(self):
        return (self.left, f" {self.op} ", self.right)


def is_temporal(node: Node) -> bool:
    return isinstance(node, (Unary, Binary)) and node.operator.kind == "temporal"


def is_past(node: Node) -> bool:
    return is_temporal(node) and node.operator.direction == "past"


def is_future(node: Node) -> bool:
    return is_temporal(node) and node.operator.direction == "future"


def temporal_depth(node: Node) -> int:
    depth: dict[Node, int] = {}
    for below in node.walk():
        depth[below] = max((depth[child] for child in below.children()), default=0) + is_temporal(below)
    return depth[node]


def uses_counting(node: Node) -> bool:
    return any(isinstance(n, (Compare, Modulo)) for n in node.walk())


def linear_form(node: Term | Compare | Modulo) -> tuple[dict[Count, int], int]:
    """A term as ``({count: coefficient}, constant)``: the term itself, ``left - right`` for a
    comparison, the counted term for a modular test. Counts appear in reading order, a count
    whose coefficients cancel with coefficient 0."""
    if isinstance(node, Compare):
        node = Arithmetic("-", node.left, node.right)
    elif isinstance(node, Modulo):
        node = node.term
    coefficients: dict[Count, int] = {}
    constant = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        term, sign = stack.pop()
        if isinstance(term, Integer):
            constant += sign * term.value
        elif isinstance(term, Count):
            coefficients[term] = coefficients.get(term, 0) + sign
        elif isinstance(term, Arithmetic):
            stack.append((term.right, sign * term.operator.sign))
            stack.append((term.left, sign))
        else:
            raise TypeError(f"not a counting term: {term}")
    return coefficients, constant
