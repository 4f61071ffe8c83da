"""Stage 3: the attention heads of each temporal, counting and comparison node, per mode, with gaps.

Every head has d_head = 2. Its query, key and value are affine in the residual stream, written
here as dicts {residual coordinate: coefficient} (``ONE`` is the constant-1 coordinate, ``POS_*``
the positional features, a Formula its 0/1 dimension). The model computes the raw score
``q.k / sqrt(d_head)``; queries carry a factor sqrt(d_head), so the raw score is the designed
``score(i, j)`` below (exactly so in ``hard`` mode up to one common rounding, which keeps ties).
The sink (column 0, hard position -1) has key ``sink_k`` and value 0. The head's output
``out_coef * y + out_bias`` (y = attention-weighted value) is written to the subformula's own
dimension, which nothing else writes (but the other sign head of = and !=); the MLP of the
same layer then snaps 0/1 dimensions back to exact 0/1 (``assemble.py``), so errors never pile
up over layers. Counting heads and position-times heads (further down) write numeric values.

Notation: s_j in {0, 1} is the head's *target indicator* at key j; the **target set** at query i
is the visible j with s_j = 1 (Y, X: every visible j). ``target_rule`` says which targets hard
attention must pick: "last" (the rightmost target, Y and S), "first" (the leftmost, X and U) or
"any" (O, H, F, G: every target gives the same value, so the whole set is declared).

Constructions (strict masks; sink value 0; p, q the operands):

=====  ==============  ==========  ============  =====================  ========
op     mask            hard kind   s_j           value -> output        rule
=====  ==============  ==========  ============  =====================  ========
Y p    strict_past     rightmost   1             p_j -> y               last
X p    strict_future   leftmost    1             p_j -> y               first
O p    strict_past     rightmost   p_j           p_j -> y               any
H p    strict_past     rightmost   1 - p_j       1 - p_j -> 1 - y       any
F p    strict_future   leftmost    p_j           p_j -> y               any
G p    strict_future   leftmost    1 - p_j       1 - p_j -> 1 - y       any
p S q  strict_past     rightmost   [q | !p]_j    q_j -> y               last
p U q  strict_future   leftmost    [q | !p]_j    q_j -> y               first
=====  ==============  ==========  ============  =====================  ========

Why: p S q holds at i iff the last j < i where q or !p holds has q (between it and i, p & !q
holds everywhere); if there is no such j, no q occurred and the sink's value 0 is right.
[q | !p] is a Boolean subformula with its own dimension, computed by an earlier MLP (or by the
token embedding when p and q are local). H p = 1 - O !p, G p = 1 - F !p; the sink gives O = 0 /
H = 1 when no target is visible (i = 0 for the past, i = n-1 for the future).

Scores per mode (beta = 1/2, eps = EPSILON, n the longest word for soft-scaled):

* ``hard`` (unique hard attention, no positions): score = s_j (Y, X: 1), sink 1/2. With a target
  the maxima are exactly the targets and rightmost/leftmost tie-breaking picks the last/first
  one; without, the sink (1/2 > 0) is the unique maximum. Exact: there is nothing to round.
* ``soft-scaled`` (softmax, bounded feature j/n, tau(n) from the gap):
  - Y, S: score = s_j + beta j/n, sink 3/4: targets in [1, 3/2), non-targets in [0, 1/2).
    X, U: score = s_j - beta j/n, sink 1/4: targets in (1/2, 1], non-targets in (-1/2, 0].
    The chosen target beats every other key by gap = beta/n = 1/(2n) (the next target), 1/4
    (the sink) or 1/2 (non-targets).
  - O, H, F, G: no positions needed: score = s_j, sink 1/2; every target beats every
    non-target and the sink by gap = 1/2, and all targets carry the same value.
  tau(n) = gap / log((n + 1) / eps): each of the <= n+1 other keys gets weight <= eps/(n+1)
  of the chosen ones, so the output is within eps of the hard output, for every word of length
  <= n (shorter words only widen the gap).
* ``soft-unbounded`` (softmax, fixed tau, unbounded feature i):
  - Y, O, H, S: score = 2 i s_j + j (Y: j), sink i - 1/2 (Y: -1/2). The rightmost target
    scores >= 2i + j* and beats the other targets by >= 1 and the sink by >= i + 1/2; without a
    target the sink beats the non-targets (j <= i - 1) by >= 1/2. Scores are distinct multiples
    of 1/2: gap = 1/2 whatever n is.
  - F, G: one extra layer first computes z_k ~ k p_k (a "position-times" head, below); then
    F p: score = 2 z_k - k = k (2 p_k - 1), sink 0: targets score +k >= i+1, non-targets -k <=
    -(i+1), all distinct integers (up to the z error): gap 1 (1 - 4 delta_z). G p: s = 1 - p,
    score = k - 2 z_k. So F/G of operand depth d sit in layer d + 1 (not d) in this mode.
  - X, U: no score affine in (1, i, i^2, local Booleans) does it (the leftmost target must beat the
    next target by a fixed margin, so target scores fall without bound along the word, yet must
    stay above a non-target at i+1 whose score depends on i alone), but one earlier head gives
    an n-dependent query: the word-length head (below) writes N ~ n, then
    score = (N + 1) s_j - j, sink -1/2: targets score >= n + 1 - (n - 1) = 2 and the leftmost
    beats the next by 1, non-targets score -j <= -(i+1) <= -1, the sink beats them by >= 1/2
    when there is no target: gap 1/2. Three families of competitors (targets, sink,
    non-targets), each spaced >= 1 apart: tau = gap / log(1 + 3/eps). X is U with s_j = 1
    (every key a target, the next one wins by 1). Both wait for block 1. Scores are of size n
    (not n^2, as an earlier X score (i+1)^2 - (j-i-1)^2 over i and i^2 was): fp32 keeps them.
  - word-length head for N = n (operator "n"): mask none, score 0 on every word key, sink -1,
    value 2j + 1: the average over j < n is n, less the sink's weight w <= e^{-1/tau}/n times
    n: error <= e^{-1/tau} = eps/2 whatever n is. Numeric, not snapped; shared by every X and U.
  - position-times head for z_k = k p_k (operator "i*"): mask past, query 2 p_k - 1, key k + 1,
    sink key 0, value k (the feature i): score (2p_k - 1)(m + 1) at key m <= k. With p_k = 1
    the self key wins by 1 over m = k-1 (the sink by k+1); with p_k = 0 the sink wins by >= 1.
    Scores are distinct integers, so the error is <= sum_m m e^{-m/tau} ~ eps. z is numeric and
    not snapped.
  tau = gap / log(1 + 2/eps): the other keys' weights sum to <= 2 sum_m e^{-m gap/tau} <= eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from softhard.data.ltl.syntax import (
    Binary,
    Compare,
    Constant,
    Count,
    Formula,
    Modulo,
    Term,
    Unary,
    is_past,
    is_temporal,
    linear_form,
)

ONE, POS_I, POS_I2, POS_IN, POS_INV = "<one>", "<i>", "<i^2>", "<i/n>", "<1/i>"
POS_PARITY = "<(-1)^i>"
EPSILON = 1e-3  # soft modes: the largest attention error per head (the MLP snaps errors < 3/8 away)
BETA = 0.5  # soft-scaled: weight of the j/n tie-breaking term
D_HEAD = 2
_SQ = math.sqrt(D_HEAD)  # queries carry sqrt(d_head), so q.k / sqrt(d_head) is the designed score

RULE = {"Y": "last", "S": "last", "X": "first", "U": "first", "O": "any", "H": "any", "F": "any", "G": "any"}


@dataclass
class HeadSpec:
    """Everything about one compiled head except where it sits (assemble.py places it)."""

    node: Formula  # the temporal subformula it computes
    op: str
    mask: str  # strict_past | strict_future
    hard_kind: str  # rightmost | leftmost: the unique-hard attention it simulates
    kind: str  # the model's attention kind: the hard kind, or softmax
    target_rule: str  # last | first | any (see the module docstring)
    score_formula: Formula | None  # s_j as a formula (None: every key is a target)
    q: list  # D_HEAD dicts {coordinate: coefficient}
    k: list  # D_HEAD dicts
    v: dict  # the value coordinate 0
    sink_k: tuple  # the sink's key
    out_coef: float  # output = out_coef * y + out_bias, into the node's dimension
    out_bias: float
    gap: float  # the least score margin of the chosen keys over every other visible key
    tau: float = 1.0  # the fixed temperature (attn.tau); 1 in hard mode
    sink_v: float = 0.0  # the sink's value (coordinate 0)
    notes: str = ""


def reads_aux_score(node) -> bool:
    """p S q and p U q (the binary temporal operators): their heads read the target indicator q | !p."""
    return is_temporal(node) and node.operator.arity == 2


def aux_score(node: Binary) -> Formula:
    """[q | !p]: the target indicator of p S q and p U q."""
    return Binary("|", node.right, Unary("!", node.left))


def target_indicator(node: Formula) -> tuple[Formula | None, dict]:
    """(s_j as a formula, s_j as an affine function of the residual stream)."""
    op = node.op
    if op in ("Y", "X"):
        return None, {ONE: 1.0}
    if op in ("O", "F"):
        return node.arg, {node.arg: 1.0}
    if op in ("H", "G"):
        return Unary("!", node.arg), {ONE: 1.0, node.arg: -1.0}
    aux = aux_score(node)
    return aux, {aux: 1.0}


def build_head(node: Formula, mode: str, length: int | None) -> HeadSpec:
    op = node.op
    past = is_past(node)
    score_formula, s = target_indicator(node)
    if op in ("H", "G"):
        v, out_coef, out_bias = {ONE: 1.0, node.arg: -1.0}, -1.0, 1.0
    elif op in ("S", "U"):
        v, out_coef, out_bias = {node.right: 1.0}, 1.0, 0.0
    else:
        v, out_coef, out_bias = {node.arg: 1.0}, 1.0, 0.0
    hard_kind = "rightmost" if past else "leftmost"
    zero: dict = {}

    if mode == "hard":
        q, k, sink_k, gap, tau = [{ONE: _SQ}, zero], [s, zero], (0.5, 0.0), 0.5, 1.0
        kind = hard_kind
        notes = "score s_j, sink 1/2; hard tie-breaking picks the last/first target"
    elif mode == "soft-scaled":
        kind = "softmax"
        if op in ("O", "H", "F", "G"):
            q, k, sink_k, gap = [{ONE: _SQ}, zero], [s, zero], (0.5, 0.0), 0.5
            notes = "score s_j, sink 1/2, no positions"
        else:
            sign = 1.0 if past else -1.0
            q, k = [{ONE: _SQ}, {ONE: sign * BETA * _SQ}], [s, {POS_IN: 1.0}]
            sink_k, gap = ((0.75 if past else 0.25), 0.0), BETA / length
            notes = f"score s_j {'+' if past else '-'} j/(2n), sink {sink_k[0]}"
        tau = gap / math.log((length + 1) / EPSILON)
    elif mode == "soft-unbounded":
        kind = "softmax"
        if op in ("X", "U"):
            q, k = [{WORD_LENGTH: _SQ, ONE: _SQ}, {ONE: _SQ}], [s, {POS_I: -1.0}]
            sink_k, gap = (0.0, -0.5), 0.5
            notes = "score (N + 1) s_j - j with N ~ n (word-length head), sink -1/2"
        elif past:
            q = [{POS_I: 2 * _SQ} if op != "Y" else zero, {ONE: _SQ}]
            k = [s, {POS_I: 1.0}]
            sink_k, gap = (0.5, -0.5), 0.5  # sink score i - 1/2 (Y: -1/2)
            notes = "score 2 i s_j + j, sink i - 1/2" if op != "Y" else "score j, sink -1/2"
        elif op in ("F", "G"):
            z = PositionTimes(node.arg)
            q, v_sign = [{ONE: _SQ}, zero], 1.0 if op == "F" else -1.0
            k = [{z: 2.0 * v_sign, POS_I: -v_sign}, zero]
            sink_k, gap = (0.0, 0.0), 1.0
            notes = "score k (2 p_k - 1), sink 0" if op == "F" else "score k (1 - 2 p_k), sink 0"
        else:
            raise NotImplementedError(f"operator {op} has no construction in mode 'soft-unbounded'")
        tau = gap / math.log(1 + (3 if op in ("X", "U") else 2) / EPSILON)
    else:
        raise ValueError(f"unknown mode {mode!r}")

    return HeadSpec(
        node=node, op=op, mask="strict_past" if past else "strict_future", hard_kind=hard_kind, kind=kind,
        target_rule=RULE[op], score_formula=score_formula, q=q, k=k, v=v, sink_k=sink_k,
        out_coef=out_coef, out_bias=out_bias, gap=gap, tau=tau, notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# Counting (every mode; Modulo is not constructed)
#
# ``#p`` (count head): mask past, hard kind average, score 1 on every word key, sink 1/2, value
#   p_j: the output is the fraction c = #p/(i+1) (kept as is: the one non-0/1 coordinate kind).
#   Gap 1/2 (words over the sink). Softmax of equal word scores is exactly uniform over the words,
#   so the only error is the sink's weight <= e^{-1/(2 tau)}/(i+1); tau = TAU_COUNT keeps it below
#   1/(10 C (i+1)) for coefficient sums C <= MAX_COEFFICIENTS, whatever n is.
# ``t1 op t2`` (sign heads): t = t1 - t2 = sum_k c_k #p_k + c0 is an integer, and
#   t/(i+1) = sum_k c_k [#p_k/(i+1)] + c0 [1/(i+1)] is affine in the residual stream (feature 1/i =
#   1/(i+1)). A sign head with query (t + 1/2)/(i+1), key 1 on every word and sink key 0 scores
#   every word key (t + 1/2)/(i+1) and the sink 0; with value 1 and rightmost hard attention it
#   outputs exactly g1 = [t >= 0] (words win iff t + 1/2 > 0), whatever the magnitude: the sign
#   comes from comparing with the sink, not from a ReLU slope. g2 = [t <= 0] uses -(t - 1/2).
#   Then  >: 1 - g2,  >=: g1,  <: 1 - g1,  <=: g2,  =: g1 + g2 - 1,  !=: 2 - g1 - g2  (g1 | g2
#   always holds), all affine, written by the heads' output weights and snapped by the MLP.
#   Gap (margin of |score| around 0) = 1/(2(i+1)) >= 1/(2n), of which the count error uses <= 1/5:
#   soft-scaled tau = (0.4/n) / log((n+1)/eps).
#   soft-unbounded (fixed tau): key (j, 1), query (c + K, c - K i) with c = (+-t + 1/2)/(i+1) and
#   K = sum |c_k| + |c0| + 2 > 1 + |c|, so word j scores c (j+1) + K (j - i): +-t + 1/2 at j = i
#   (magnitude >= 1/2, whatever i is) and at least 1 less per step to the left; sink 0. If
#   +-t >= 0 the words (value 1) beat the sink by >= 1/2; else every word is below the sink by
#   >= 1/2 + m. Gap 1/2; the count error enters multiplied by j + 1 <= i + 1, i.e. as the error of
#   t itself, <= C e^{-1/(2 TAU_COUNT)} <= 0.01. tau = 0.4 / log(1 + 2/eps).
# ---------------------------------------------------------------------------------------------

MAX_COEFFICIENTS = 1000  # the largest sum of |coefficients| of counts in one comparison
TAU_COUNT = 0.5 / math.log(10 * MAX_COEFFICIENTS / 0.1)  # sink weight <= 0.01 / (MAX_COEFFICIENTS (i+1))


def linear_term(node: Term | Compare | Modulo) -> tuple[dict, int]:
    """``syntax.linear_form`` (a term; left - right for a comparison; the counted term for a modular
    test) as ({Count: coefficient}, constant), without the counts whose coefficients cancel."""
    coefficients, constant = linear_form(node)
    return {count: c for count, c in coefficients.items() if c}, constant


def build_count_head(node: Count, mode: str) -> HeadSpec:
    return HeadSpec(
        node=node, op="#", mask="past", hard_kind="average", kind="average" if mode == "hard" else "softmax",
        target_rule="all", score_formula=None, q=[{ONE: _SQ}, {}], k=[{ONE: 1.0}, {}], v={node.arg: 1.0},
        sink_k=(0.5, 0.0), out_coef=1.0, out_bias=0.0, gap=0.5, tau=1.0 if mode == "hard" else TAU_COUNT,
        notes="uniform over j <= i: #p/(i+1); score 1, sink 1/2",
    )


SIGN_USE = {  # op -> ((uses g1, coefficient), (uses g2, coefficient), bias)
    ">": (None, -1.0, 1.0), ">=": (1.0, None, 0.0), "<": (-1.0, None, 1.0), "<=": (None, 1.0, 0.0),
    "=": (1.0, 1.0, -1.0), "!=": (-1.0, -1.0, 2.0),
}


def build_sign_heads(node: Compare, mode: str, length) -> list:
    coefs, c0 = linear_term(node)
    if sum(abs(c) for c in coefs.values()) > MAX_COEFFICIENTS:
        raise NotImplementedError(f"comparison {node}: count coefficients sum above {MAX_COEFFICIENTS}")
    g1_coef, g2_coef, bias = SIGN_USE[node.op]
    specs = []
    for which, coef in (("g1", g1_coef), ("g2", g2_coef)):
        if coef is None:
            continue
        sign = 1.0 if which == "g1" else -1.0
        query = {n: sign * c * _SQ for n, c in coefs.items()}
        query[POS_INV] = (sign * c0 + 0.5) * _SQ
        score = Compare(">=" if which == "g1" else "<=", node.left, node.right)
        notes = f"[{score}] = [{'' if which == 'g1' else '-'}t + 1/2 >= 0]: "
        if mode == "soft-unbounded":
            # score(j) = c (j + 1) + K (j - i) with c = (+-t + 1/2)/(i+1): q = (c + K, c - K i), k = (j, 1)
            big = sum(abs(c) for c in coefs.values()) + abs(c0) + 2.0
            q = [{**query, ONE: big * _SQ}, {**query, POS_I: -big * _SQ}]
            k = [{POS_I: 1.0}, {ONE: 1.0}]
            gap = 0.5
            tau = 0.8 * gap / math.log(1 + 2 / EPSILON)
            notes += f"word j scores c (j+1) + {big:g} (j - i) (= +-t + 1/2 at j = i, falling >= 1 per step), sink 0"
        else:
            q, k = [query, {}], [{ONE: 1.0}, {}]
            # the margin at query i is 1/(2(i+1)): recorded as 1/(2n) for the words of length <= n
            gap = 0.5 / length if length else 0.5
            tau = 1.0 if mode == "hard" else (0.8 * gap) / math.log((length + 1) / EPSILON)
            notes += "every word scores (+-t + 1/2)/(i+1), sink 0"
        specs.append(HeadSpec(
            node=node, op="compare", mask="past", hard_kind="rightmost", kind="rightmost" if mode == "hard" else "softmax",
            target_rule="query", score_formula=score, q=q, k=k, v={ONE: 1.0},
            sink_k=(0.0, 0.0), out_coef=coef, out_bias=bias if not specs else 0.0, gap=gap, tau=tau,
            notes=notes,
        ))
    return specs


@dataclass(frozen=True)
class PositionTimes:
    """The numeric coordinate z_k = k [arg]_k (soft-unbounded F and G)."""

    arg: Formula

    def __str__(self) -> str:
        return f"<i*[{self.arg}]>"


def build_position_times_head(z: PositionTimes) -> HeadSpec:
    gap = 1.0
    return HeadSpec(
        node=z, op="i*", mask="past", hard_kind="rightmost", kind="softmax", target_rule="self",
        score_formula=z.arg, q=[{z.arg: 2 * _SQ, ONE: -_SQ}, {}], k=[{POS_I: 1.0, ONE: 1.0}, {}], v={POS_I: 1.0},
        sink_k=(0.0, 0.0), out_coef=1.0, out_bias=0.0, gap=gap, tau=gap / math.log(1 + 2 / EPSILON),
        notes="score (2 p_k - 1)(m + 1), sink 0, value m: k p_k",
    )


@dataclass(frozen=True)
class WordLength:
    """The numeric coordinate N ~ n, the word's length (soft-unbounded X and U)."""

    def __str__(self) -> str:
        return "<n>"


WORD_LENGTH = WordLength()


def build_word_length_head() -> HeadSpec:
    gap = 1.0
    return HeadSpec(
        node=WORD_LENGTH, op="n", mask="none", hard_kind="average", kind="softmax", target_rule="all",
        score_formula=None, q=[{ONE: _SQ}, {}], k=[{}, {}], v={POS_I: 2.0, ONE: 1.0}, sink_k=(-gap, 0.0),
        out_coef=1.0, out_bias=0.0, gap=gap, tau=gap / math.log(1 + 2 / EPSILON),
        notes="uniform over every key, value 2j + 1: n; score 0, sink -1",
    )


# ---------------------------------------------------------------------------------------------
# Modular counting ``t % m = r`` by lookup (hard and soft-scaled)
#
# t = sum_k c_k #p_k + c0 is reduced count by count: t % m = (sum_k c_k (#p_k % m) + c0) % m, a
# Boolean function of the *residue atoms* [#p_k % m = a], a = 0..m-2 (a = m-1 when none holds),
# computed by the MLP as a truth table (so (m - 1) * counts <= MAX_LEAVES).
# A residue atom's head (operator "mod") reads the count fraction c = #p/(i+1) at the query and
# attends to the key j with j + 1 = #p (the sink stands for j + 1 = 0, i.e. #p = 0): mask past,
#   score(j) = [2 #p (j+1) - (j+1)^2] / (i+1) = [#p^2 - (j + 1 - #p)^2] / (i+1)
# from query (c, -1/(i+1)) and key (2(j+1), (j+1)^2), affine in the features i and i^2 (hard), or
# divided by n, from key (2(j+1)/n, (j+1)^2/n) (soft-scaled: scores stay <= 1). The features i
# and i^2 are in the residual stream in soft-scaled mode too: the word-relative i/n cannot do it,
# as the key j + 1 = #p must be found
# on every word of length <= n, and no score in j/T, (j/T)^2 with query coefficients affine in
# #p/(i+1), 1/(i+1) peaks at j + 1 = #p independently of the word length T. The
# sink scores 0 (= score at j + 1 = 0). The one maximum is j + 1 = #p, ahead of the keys d steps
# away by d^2/(i+1) (hard) or d^2/(n(i+1)) (soft-scaled): gap 1/n, resp. 1/n^2 at i + 1 = n.
# Value cos(2 pi (j + 1 - a)/m), affine in the periodic features ((-1)^j for m = 2, cos and sin of
# 2 pi j/m otherwise); the sink's value cos(2 pi a/m). It is 1 where #p = a mod m and
# <= cos(2 pi/m) elsewhere: output (y - cos(2 pi/m)) / (1 - cos(2 pi/m)), snapped to 0/1.
# soft-unbounded: no construction: the gap 1/(i+1) shrinks with i, and scaling the score by i + 1
# needs the count #p itself at the query, a product of two residual coordinates.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResidueAtom:
    """The 0/1 coordinate [#p % m = a]."""

    count: Count
    m: int
    a: int

    def __str__(self) -> str:
        return f"<{self.count} % {self.m} = {self.a}>"


def residue_atoms(node: Modulo) -> list:
    """The residue atoms ``t % m = r`` is a truth table of: a = 0..m-2 for each count in t."""
    coefs, _ = linear_term(node)
    return [ResidueAtom(count, node.modulus, a) for count in coefs for a in range(node.modulus - 1)]


def modulo_value(node: Modulo, atoms: dict) -> bool:
    """``t % m = r`` from the residue atoms' values (a count whose atoms are all 0 has residue m - 1)."""
    coefs, c0 = linear_term(node)
    m = node.modulus
    total = c0 + sum(c * next((a for a in range(m - 1) if atoms[ResidueAtom(count, m, a)]), m - 1)
                     for count, c in coefs.items())
    return total % m == node.residue


def periodic_features(m: int) -> list:
    """(feature name for models.positional, coordinate) of the period-m features."""
    names = ["(-1)^i"] if m == 2 else [f"cos(2pi i/{m})", f"sin(2pi i/{m})"]
    return [(name, f"<{name}>") for name in names]


def build_residue_head(atom: ResidueAtom, mode: str, length) -> HeadSpec:
    m, a = atom.m, atom.a
    q = [{atom.count: _SQ}, {POS_INV: -_SQ}]
    if mode == "hard":
        k = [{POS_I: 2.0, ONE: 2.0}, {POS_I2: 1.0, POS_I: 2.0, ONE: 1.0}]
        gap, tau = (1.0 / length if length else 1.0), 1.0
        notes = "score [#p^2 - (j+1-#p)^2]/(i+1), sink 0 (j + 1 = 0)"
    else:
        k = [{POS_I: 2.0 / length, ONE: 2.0 / length}, {POS_I2: 1.0 / length, POS_I: 2.0 / length, ONE: 1.0 / length}]
        gap = 1.0 / length**2
        tau = gap / math.log((length + 1) / EPSILON)
        notes = "score [#p^2 - (j+1-#p)^2]/(n(i+1)), sink 0 (j + 1 = 0)"
    phase = 2 * math.pi * (1 - a) / m  # value cos(2 pi j/m + phase) = cos(2 pi (j + 1 - a)/m)
    if m == 2:
        v = {POS_PARITY: math.cos(phase)}
    else:
        (_, cos_m), (_, sin_m) = periodic_features(m)
        v = {cos_m: math.cos(phase), sin_m: -math.sin(phase)}
    near = math.cos(2 * math.pi / m)  # the largest value off the residue
    return HeadSpec(
        node=atom, op="mod", mask="past", hard_kind="rightmost", kind="rightmost" if mode == "hard" else "softmax",
        target_rule="lookup", score_formula=atom.count.arg, q=q, k=k, v=v, sink_k=(0.0, 0.0),
        out_coef=1.0 / (1.0 - near), out_bias=-near / (1.0 - near), gap=gap, tau=tau,
        sink_v=math.cos(2 * math.pi * a / m), notes=notes + f"; value cos(2 pi (j+1-{a})/{m})",
    )


def build_heads(node, mode: str, length) -> list:
    """Every head that computes ``node`` (one, or two for some comparisons)."""
    if isinstance(node, WordLength):
        return [build_word_length_head()]
    if isinstance(node, ResidueAtom):
        return [build_residue_head(node, mode, length)]
    if isinstance(node, PositionTimes):
        return [build_position_times_head(node)]
    if isinstance(node, Count):
        return [build_count_head(node, mode)]
    if isinstance(node, Compare):
        return build_sign_heads(node, mode, length)
    return [build_head(node, mode, length)]


def is_numeric(node) -> bool:
    """Attention outputs that are numbers, not 0/1 truth values (the MLP does not snap them)."""
    return isinstance(node, (Count, PositionTimes, WordLength))


def is_boolean(node: Formula) -> bool:
    """Computed by an MLP truth table (Modulo: over its residue atoms)."""
    return isinstance(node, (Constant, Modulo)) or (
        isinstance(node, (Unary, Binary)) and node.operator.kind == "boolean"
    )
