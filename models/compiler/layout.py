"""Stage 2: the residual layout and the schedule (which layer computes which subformula).

Residual stream: one coordinate ``<one>`` (constant 1), the positional features the mode uses
(``<i/n>`` in soft-scaled, ``<i>`` in soft-unbounded, plus ``<1/i>`` = 1/(i+1)
when the formula counts), then one dimension per subformula (children first), one per counting
term ``#p`` (holding the fraction #p/(i+1), the only non-0/1 coordinates) and one per auxiliary
target indicator ``q | !p`` of S/U.

Schedule, with the *layer depth* d of a node (temporal operators, ``#`` and comparisons each add
one attention layer; Boolean connectives and ``+ -`` add none):
- d = 0 (symbols, constants and Boolean combinations of them: "local" nodes): written by the
  token embedding, a lookup table from the symbol to every local node's value;
- attention nodes (temporal operators, ``#p``, comparisons) of depth d: heads in block d - 1;
  (soft-unbounded F p and G p add two layers: one for z_k = k p_k, ``PositionTimes``, one for
  themselves; soft-unbounded X and U read N ~ n from the word-length head of block 0, so it sits in
  block 1 at the earliest);
- ``t % m = r``: the residue atoms ``[#p % m = a]`` (``ResidueAtom``, one head each) in the block
  after their count, the test itself as a truth table over them in that block's MLP (m <= 3,
  where the raw atoms are near 0/1) or the next one (m > 3, after the atoms are snapped);
- other Boolean nodes of depth d: the MLP of block d - 1, as one truth table over their
  *leaves* (the nodes below them, reached through Boolean connectives, that an earlier block,
  the embedding or this block's heads compute), which are all ready by then;
- a Boolean node with more than MAX_LEAVES leaves at the depth of its children gets one layer
  more: its Boolean children are computed in the block before, so its leaves are just its
  children (at most 2), at the cost of one block whose heads do nothing; this holds for the
  target indicator ``q | !p`` too, and then p S q (p U q) is one layer later as well.
So the model has max(1, depth) blocks; for counting-free formulas whose Boolean nodes have at
most MAX_LEAVES leaves depth = temporal depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from softhard.data.ltl.syntax import (
    Arithmetic,
    Compare,
    Constant,
    Count,
    Formula,
    Integer,
    Modulo,
    Node,
    is_future,
    is_temporal,
    uses_counting,
)
from softhard.models.compiler.operators import (
    ONE,
    POS_I,
    POS_I2,
    POS_IN,
    POS_INV,
    RULE,
    WORD_LENGTH,
    PositionTimes,
    ResidueAtom,
    WordLength,
    aux_score,
    is_boolean,
    linear_term,
    modulo_value,
    periodic_features,
    reads_aux_score,
    residue_atoms,
)

MAX_LEAVES = 12  # a truth table over k leaves takes up to 2^k ReLU pairs (assemble.py)
# residual dimensions (one per subformula, helper and feature); bounds the layers too, since each
# layer computes a node of its own, and so the model's size (layers times width)
MAX_DIMENSIONS = 2048
FEATURES = {"hard": [], "soft-scaled": [("i/n", POS_IN)], "soft-unbounded": [("i", POS_I)]}
# the position and its square the residue lookups of modular counting score with (both modes)
LOOKUP_FEATURES = [("i", POS_I), ("i^2", POS_I2)]


def needs_position_times(node: Node, mode: str) -> bool:
    """soft-unbounded F and G read z_k = k p_k, computed by one extra head first."""
    return mode == "soft-unbounded" and is_future(node) and RULE[node.op] == "any"


def needs_word_length(node: Node, mode: str) -> bool:
    """soft-unbounded X and U read N ~ n, computed by the word-length head in block 0."""
    return mode == "soft-unbounded" and is_future(node) and RULE[node.op] == "first"


def _depth_inputs(node: Node) -> list:
    """The nodes whose layer depths ``node``'s is computed from."""
    inputs = list(node.children())
    if isinstance(node, Modulo):
        inputs += linear_term(node)[0]
    if reads_aux_score(node):
        inputs.append(aux_score(node))
    return inputs


def layer_depth(node: Node, memo: dict, mode: str, known: set) -> int:
    """The block after which ``node`` is ready (0: the embedding); ``known``: the nodes with a
    residual dimension, which a Boolean node's leaves must have. Fills ``memo`` for every node
    below, children first (iteratively: formulas of any depth)."""
    return bottom_up(node, _depth_inputs, lambda top: _own_depth(top, memo, mode, known), memo)


def bottom_up(node: Node, inputs, value, values: dict):
    """``values[node]``, computing ``values[top] = value(top)`` for every node it needs once the nodes
    ``inputs(top)`` have theirs (inputs first, without recursion: formulas of any depth); ``values``
    keeps what is already known and gains the rest."""
    stack = [node]
    while stack:
        top = stack[-1]
        if top in values:
            stack.pop()
            continue
        pending = [below for below in inputs(top) if below not in values]
        if pending:
            stack.extend(pending)
        else:
            values[stack.pop()] = value(top)
    return values[node]


def _own_depth(node: Node, memo: dict, mode: str, known: set) -> int:
    """layer_depth of ``node`` once its ``_depth_inputs`` are in ``memo``."""
    below = max((memo[child] for child in node.children()), default=0)
    if isinstance(node, Modulo):  # its truth table reads the residue atoms, one head after the counts
        below = 1 + max((memo[count] for count in linear_term(node)[0]), default=-1)
    if reads_aux_score(node):  # its heads read q | !p, which may take a layer of its own
        below = max(below, memo[aux_score(node)])
    if needs_word_length(node, mode):
        below = max(below, 1)
    adds = is_temporal(node) or isinstance(node, (Count, Compare))
    if is_boolean(node) and below > 0:  # too many leaves for one truth table: a layer of its own
        adds = len(boolean_leaves(node, known.__contains__, memo, below)) > MAX_LEAVES
    if isinstance(node, Modulo) and node.modulus > 3 and below > 0:  # raw residue atoms go down to -1/(1 - cos(2 pi/m))
        adds = True
    return below + int(adds) + int(needs_position_times(node, mode))


def is_attention_node(node) -> bool:
    """Computed by attention heads: temporal operators, counts, comparisons, position-times, word
    length, residue atoms."""
    return is_temporal(node) or isinstance(node, (Count, Compare, PositionTimes, WordLength, ResidueAtom))


@dataclass
class Layout:
    coordinates: list  # ONE, positional names, then nodes, in residual order
    index: dict  # coordinate -> residual dimension
    local: list  # depth-0 nodes (token embedding)
    attention: list  # per block: the nodes its heads compute (temporal, counts, comparisons)
    boolean: list  # per block: the Boolean nodes its MLP computes
    depth: dict  # node -> layer depth
    aux: set = field(default_factory=set)  # auxiliary target indicators (not subformulas of the root)
    features: list = field(default_factory=list)  # (feature name for models.positional, coordinate)

    @property
    def n_layers(self) -> int:
        return len(self.attention)


def _helpers(node: Node, mode: str) -> list:
    """The coordinates ``node``'s heads or truth table read that are no subformula of their own."""
    helpers = []
    if reads_aux_score(node):
        helpers.append(aux_score(node))
    if needs_position_times(node, mode):
        helpers.append(PositionTimes(node.arg))
    if isinstance(node, Modulo):
        helpers += residue_atoms(node)
    return helpers


def plan(formula: Formula, mode: str) -> Layout:
    """The layout and schedule of ``formula``; NotImplementedError when it needs more than
    MAX_DIMENSIONS residual dimensions."""
    subformulas = [n for n in formula.walk() if not isinstance(n, (Integer, Arithmetic))]
    known = set(subformulas)
    nodes = []
    for node in subformulas:
        if needs_word_length(node, mode) and WORD_LENGTH not in known:
            known.add(WORD_LENGTH)
            nodes.insert(0, WORD_LENGTH)
        for helper in _helpers(node, mode):  # each just before its first user; its operands come earlier
            if helper not in known:
                known.add(helper)
                nodes.append(helper)
        nodes.append(node)
    aux = {node for node in nodes if isinstance(node, Formula)} - set(subformulas)  # the target indicators q | !p
    moduli = sorted({node.modulus for node in nodes if isinstance(node, Modulo)})
    features = list(FEATURES[mode]) + ([("1/i", POS_INV)] if uses_counting(formula) else [])
    if moduli:
        features += LOOKUP_FEATURES + [f for m in moduli for f in periodic_features(m)]
    coordinates = [ONE] + [name for _, name in features] + nodes
    if len(coordinates) > MAX_DIMENSIONS:
        raise NotImplementedError(f"cannot compile: the formula needs {len(coordinates)} residual dimensions (one per "
                                  f"subformula), above MAX_DIMENSIONS = {MAX_DIMENSIONS}")
    index = {c: d for d, c in enumerate(coordinates)}
    memo: dict = {}
    depth = max(1, layer_depth(formula, memo, mode, known))
    for node in nodes:
        if isinstance(node, PositionTimes):
            memo[node] = layer_depth(node.arg, memo, mode, known) + 1
        elif isinstance(node, WordLength):
            memo[node] = 1
        elif isinstance(node, ResidueAtom):
            memo[node] = layer_depth(node.count, memo, mode, known) + 1
        else:
            layer_depth(node, memo, mode, known)
    attention = [[] for _ in range(depth)]
    boolean = [[] for _ in range(depth)]
    local = []
    for node in nodes:
        d = memo[node]
        if d == 0:
            local.append(node)
        elif is_attention_node(node):
            attention[d - 1].append(node)
        elif is_boolean(node):
            boolean[d - 1].append(node)
        else:  # validation rejects everything else first
            raise NotImplementedError(f"no construction for `{node}` ({type(node).__name__})")
    return Layout(coordinates, index, local, attention, boolean, memo, aux, features)


def leaves(node: Formula, layout: Layout) -> list:
    """The leaves of the truth table of a Boolean node (``boolean_leaves`` at its own depth)."""
    return boolean_leaves(node, layout.index.__contains__, layout.depth, layout.depth[node])


def boolean_leaves(node: Formula, has_dimension, depth: dict, block_depth: int) -> list:
    """The nodes with a residual dimension below a Boolean node of depth ``block_depth``, reached
    through Boolean connectives, that are ready when its MLP runs: local nodes (embedding),
    attention nodes (this or an earlier block's heads) and Boolean nodes of smaller depth (an
    earlier MLP); each once, in reading order. A local node without a dimension, such as the
    ``!p`` inside an auxiliary ``q | !p``, is looked through; a constant without one is folded
    into the table."""
    found, seen = {}, set()  # found: an ordered set
    stack = [node]
    while stack:
        below = stack.pop()
        if below in seen:
            continue
        seen.add(below)
        if below is not node and has_dimension(below):
            d = depth.get(below, 0)
            if d == 0 or d < block_depth or is_attention_node(below):
                found[below] = None
                continue
        if isinstance(below, Modulo):
            found.update(dict.fromkeys(residue_atoms(below)))
        elif not isinstance(below, Constant):
            stack.extend(reversed(below.children()))
    return list(found)


def boolean_value(node: Formula, assignment: dict) -> bool:
    """The value of a Boolean node given its leaves' values, through the operator table's truth
    functions (iteratively: formulas of any depth)."""
    def inputs(top: Node) -> tuple:
        return () if top in assignment or isinstance(top, (Constant, Modulo)) else top.children()

    def value(top: Node) -> bool:
        if top in assignment:
            return assignment[top]
        if isinstance(top, Constant):
            return top.value
        if isinstance(top, Modulo):
            return modulo_value(top, assignment)
        return bool(top.operator.function(*(values[child] for child in top.children())))

    values: dict = {}
    return bottom_up(node, inputs, value, values)
