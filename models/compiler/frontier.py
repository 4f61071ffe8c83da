"""The per-head temperature frontier: how far each head's temperature can rise, per operator family.

For each length n the formula is compiled in soft-scaled mode for n. For each head h in turn (the
other heads at the theory's temperatures), the largest factor c_h on tau_h(n) at which the whole
model stays exact is found (``critical_factor`` below, which the global sweep in ``sweep.py``
uses too: bracket by 4, then bisection in log c), on two word sets:

  worst-case  chosen per operator from the letters that make the head's target indicator s_j and
              value v_j true or false (only for heads whose s and v are local):
              set-valued heads (O H F G): one target among n - 1 non-targets, the target at the far
                end (past: t u...u, future: u...u t), so the last query sees it among the most keys;
              tie-breaking heads (Y X S U): many candidate targets in a row before the query, all
                of the other value than the chosen one (past: T1...T1 T0 T0 and T0...T0 T1 T1;
                future mirrored), so the chosen target's margin is the tie-break alone.
  random      ``--words`` uniformly random words (seeded by seed and n).

The gap lemma predicts two laws. Tie-breaking heads separate the chosen target from the next by
their gap (1/(2n)); the other targets' weights form a geometric series that does not grow with
n, so the critical temperature is proportional to the gap: tau_c ~ gap, ~ 1/n, no log n.
Set-valued heads (and counts) separate targets from non-targets by a constant gap (1/2) but face
up to n non-targets: tau_c ~ gap / ln n. (Measured to n = 16,384: docs/constructions.md.)

Rows of frontier.csv:
  head             "layer.head" (``HeadInfo.layer``, ``.head``) and its subformula, e.g. "0.0 a S b"
  operator         Y X O H F G S U, # (count), compare, mod (residue lookup)
  target_rule      last | first | any | all | query | lookup
  length           n
  dtype            float32 | float64 | bfloat16
  words            worst-case | random
  critical_factor  the largest c_h found exact; C_MAX (65536) when exact up to the largest factor
                   tried; empty when not even C_MIN (1/256) is
  gap              the head's score gap at n
  theory_factor    the factor its family's law gives with constant 1: gap/tau_h(n) = log((n+1)/eps)
                   for tie-breaking heads and comparisons (tau_c = gap), that over ln n for
                   set-valued ones (tau_c = gap / ln n)
  critical_tau     critical_factor * tau_h(n): the critical temperature itself
"""

from __future__ import annotations

import math

import numpy as np

from softhard.data.alphabet import Alphabet
from softhard.data.language import Language
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.syntax import Formula, Unary, is_past, is_temporal, temporal_depth, uses_counting
from softhard.models.compiler.blocked import evaluate
from softhard.models.compiler.compiled import CompiledModel, HeadInfo
from softhard.models.compiler.compiling import compile_formula

BRACKET = 4.0  # the bracket grows by this factor per test
C_MIN, C_MAX = BRACKET**-4, BRACKET**8  # the factors searched
def critical_factor(exact, exact_at_one: bool, steps: int) -> float | None:
    """The largest c in [C_MIN, C_MAX] with exact(c), for exact monotone (True up to some c*, then False).

    exact_at_one is exact(1), already known. Brackets c* by factors of BRACKET from 1, then bisects
    the bracket in log c ``steps`` times. None when exact(C_MIN) is False; C_MAX when exact(C_MAX).
    """
    good, bad = (1.0, None) if exact_at_one else (None, 1.0)
    while bad is None and good < C_MAX:
        c = good * BRACKET
        good, bad = (c, None) if exact(c) else (good, c)
    while good is None and bad > C_MIN:
        c = bad / BRACKET
        good, bad = (c, bad) if exact(c) else (None, c)
    if good is None or bad is None:
        return good
    for _ in range(steps):
        mid = math.sqrt(good * bad)
        good, bad = (mid, bad) if exact(mid) else (good, mid)
    return good


COLUMNS = ("head", "operator", "target_rule", "length", "dtype", "words", "critical_factor", "gap", "theory_factor",
           "critical_tau")
FAMILY = {**{op: "tie-breaking" for op in "YXSU"}, **{op: "set-valued" for op in "OHFG#"},
          "compare": "comparison", "mod": "comparison"}
LAW = {"tie-breaking": "gap", "comparison": "gap", "set-valued": "gap / ln n"}


def value_formula(node: Formula) -> Formula:
    """v_j, the value a temporal head reads at its targets (H, G: 1 - p, the head's output negated)."""
    if node.op in ("H", "G"):
        return Unary("!", node.arg)
    return node.right if node.op in ("S", "U") else node.arg


def worst_case_words(info: HeadInfo, alphabet: Alphabet, n: int) -> np.ndarray | None:
    """The worst-case words of one head (module docstring), (B, n) ids; None when its s_j or v_j is
    not local (not a function of the letter) or the alphabet has no letters of the classes needed."""
    if not is_temporal(info.node) or n < 3:
        return None
    value = value_formula(info.node)
    local = [f for f in (info.score_formula, value) if f is not None]
    if any(temporal_depth(f) or uses_counting(f) for f in local):
        return None
    letters = np.arange(len(alphabet))[:, None]
    s = np.ones(len(alphabet), bool) if info.score_formula is None else label_positions(info.score_formula, letters,
                                                                                        alphabet)[:, 0]
    v = label_positions(value, letters, alphabet)[:, 0]
    past = is_past(info.node)
    if info.target_rule == "any":
        if s.all() or not s.any():
            return None
        target, other = int(np.flatnonzero(s)[0]), int(np.flatnonzero(~s)[0])
        word = np.full(n, other)
        word[0 if past else -1] = target
        return word[None]
    ones, zeros = np.flatnonzero(s & v), np.flatnonzero(s & ~v)
    if not (len(ones) and len(zeros)):
        return None
    words = []
    for many, chosen in ((ones[0], zeros[0]), (zeros[0], ones[0])):
        word = np.full(n, many)
        word[-2:] = chosen  # the last key before the final query, and the query itself
        words.append(word if past else word[::-1])
    return np.array(words)


def head_factor(compiled: CompiledModel, index: int, ids: np.ndarray, truth: np.ndarray, dtype: str, device: str,
                steps: int) -> float | None:
    """The largest factor on head ``index``'s temperature (the others at 1) keeping the model exact on ids."""
    def exact(factor: float) -> bool:  # word by word, stopping at the first wrong one
        factors = np.ones(len(compiled.heads))
        factors[index] = factor
        return all((evaluate(compiled, ids[b : b + 1], dtype, device, tau_factor=factors).predictions == truth[b]).all()
                   for b in range(len(ids)))

    return critical_factor(exact, exact(1.0), steps)


def theory_factor(info: HeadInfo, n: int) -> float:
    """The factor at which tau_h(n) reaches its family's law with constant 1 (module docstring)."""
    factor = info.gap / info.tau
    return factor / math.log(n) if LAW[FAMILY[info.operator]] == "gap / ln n" else factor


def run_frontier(language: Language, lengths: list[int], dtypes: list[str], words: int, seed: int, device: str,
                 steps: int, progress=None) -> list[dict]:
    """Rows of frontier.csv: every head x length x dtype x word set (worst-case where it exists, random)."""
    rows = []
    for n in lengths:
        compiled = compile_formula(language.formula, language.alphabet, mode="soft-scaled", length=n)
        random_ids = np.random.default_rng((seed, n)).integers(0, len(language.alphabet), size=(words, n))
        for dtype in dtypes:
            for index, info in enumerate(compiled.heads):
                word_sets = {"worst-case": worst_case_words(info, language.alphabet, n), "random": random_ids}
                for kind, ids in word_sets.items():
                    if ids is None:
                        continue
                    factor = head_factor(compiled, index, ids, language.label(ids), dtype, device, steps)
                    rows.append({
                        "head": f"{info.layer}.{info.head} {info.subformula}", "operator": info.operator,
                        "target_rule": info.target_rule, "length": n, "dtype": dtype, "words": kind,
                        "critical_factor": factor, "gap": info.gap, "theory_factor": theory_factor(info, n),
                        "critical_tau": None if factor is None else factor * info.tau,
                    })
            if progress is not None:
                progress.update()
    return rows


def plot_families(rows: list[dict], out, finish) -> list[str]:
    """One figure per operator family, frontier_<family>.png: critical tau against n on log axes per
    (head, dtype, words), with the two laws drawn through the first point of the family's longest
    series (worst-case words preferred); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for family in dict.fromkeys(FAMILY[row["operator"]] for row in rows):
        mine = [row for row in rows if FAMILY[row["operator"]] == family and row["critical_tau"] is not None]
        if not mine:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        series = {}
        for row in mine:
            series.setdefault((row["head"], row["dtype"], row["words"]), []).append(row)
        for (head, dtype, kind), points in series.items():
            points.sort(key=lambda r: r["length"])
            ax.plot([r["length"] for r in points], [r["critical_tau"] for r in points],
                    "o-" if kind == "worst-case" else "s:", label=f"{head} ({dtype}, {kind})")  # sorted in place
        # the laws go through the first point of the longest series, worst-case words preferred
        anchor = max(series.items(), key=lambda item: (item[0][2] == "worst-case", len(item[1])))[1]
        ns = np.array([r["length"] for r in anchor], float)
        gaps = np.array([r["gap"] for r in anchor])
        base = anchor[0]["critical_tau"] * gaps / gaps[0]
        ax.plot(ns, base, "k--", lw=1, label="law: tau_c ~ gap (tie-breaking)")
        ax.plot(ns, base * math.log(ns[0]) / np.log(ns), "k-.", lw=1, label="law: tau_c ~ gap / ln n (set-valued)")
        name = f"frontier_{family}.png"
        finish(fig, ax, out / name, ylabel="critical temperature of the head",
               title=f"{family} heads: largest exact temperature per head")
        names.append(name)
    return names
