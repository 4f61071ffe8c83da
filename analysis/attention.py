"""Learned attention against the analytic constructions of the same formula.

The compiler (models.compiler) turns a run's formula into a transformer whose heads carry
metadata: for every word, each construction head's *hard target set* M (HeadInfo.hard_targets,
bool (n, n+1), column 0 the sink). Each construction head's *reference pattern* R follows its
target rule (HeadInfo.target_rule): tie-breaking heads (rules last / first / self: Y, X, S, U,
the position-times head) have one target per query and R is one-hot on it; set-valued heads
(rules any / all / query: O, H, F, G, the count heads #p and the comparison sign heads) have R
uniform over their targets (average-hard attention), which is what a faithful softmax
simulation converges to when the targets tie (the gap lemma on a tied maximal set). For every
saved probe word of a run (analysis.runs.ProbeWord) and every pair (learned head with weights A,
construction head) this module measures, averaged over the query positions of the word:

* ``target_mass``  sum of A over M: how much of the head's attention lands where the
  construction's attention may land (1 for a head that simulates it);
* ``tv``           total-variation distance 0.5 |A - R|_1 to the reference pattern (0: identical);
* ``tv_hard``      the same to the compiled hard model's own attention, which picks one target
  (rightmost / leftmost) for O, H, F, G and the comparisons (0 for a hard construction);
* ``entropy``      entropy of A in nats, and ``max_weight`` its largest weight (properties of
  the learned head alone, repeated for every construction head so each row is complete).

``word_table`` holds one row per word and pair; ``aggregate`` averages it over words (all of
them: ``match_heads``; per split and length: ``attention_by_length``); ``pick_best`` keeps each
learned head's best construction head (lowest TV, with the runner-up's margin). Target mass
alone cannot rank: a count head's targets (every key j <= i) contain every past head's targets.
``compare_runs`` stacks the tables of many runs of one formula with their settings;
``plot_match_by_length`` and ``plot_side_by_side`` draw them.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from softhard.analysis.length_generalization import configuration_labels
from softhard.analysis.runs import RUN, SETTINGS, ProbeWord, RunFolder, RunSkipped, as_runs, map_runs, name_runs
from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.syntax import Formula
from softhard.models.compiler import CompiledModel, compile_formula

STATISTICS = ("target_mass", "tv", "tv_hard", "entropy", "max_weight")
LEARNED = ("layer", "head")  # the learned head
CONSTRUCTION = ("c_layer", "c_head", "operator", "subformula", "target_rule")  # the construction head
PAIR = LEARNED + CONSTRUCTION
WORD = ("split", "word", "length")
MAX_TICKS = 8  # labelled positions per axis of an attention map
TABLES = ("best", "heads", "length", "words")  # what compare_runs can stack


# ---------------------------------------------------------------------------- constructions
def construction_for(run: RunFolder, mode: str = "hard", length: int | None = None) -> CompiledModel:
    """The run's formula compiled in ``mode`` (cached): the analytic heads to compare against.

    Raises RunSkipped (one line naming the formula and the reason) when the compiler has no
    construction, e.g. for modular counting ``%``.
    """
    try:
        return _compile(run.formula, run.alphabet, mode, length)
    except (NotImplementedError, ValueError) as error:
        reason = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise RunSkipped(f"{run.path}: formula `{run.formula}` has no {mode} construction ({reason})") from None


@lru_cache(maxsize=64)
def _compile(formula: Formula, alphabet: Alphabet, mode: str, length: int | None) -> CompiledModel:
    return compile_formula(formula, alphabet, mode, length)


@torch.no_grad()
def compiled_attention(compiled: CompiledModel, ids: np.ndarray) -> torch.Tensor:
    """Each construction head's attention on one word ids (n,): (C, n, n+1), in ``heads`` order."""
    n = len(ids)
    output = compiled.model(torch.as_tensor(np.asarray(ids)[None], dtype=torch.long), return_attention=True)
    heads = [output.attention[info.layer][0, info.head].double() for info in compiled.heads]
    return torch.stack(heads) if heads else torch.zeros((0, n, n + 1), dtype=torch.float64)  # a local formula: no head


def target_sets(compiled: CompiledModel, ids: np.ndarray) -> torch.Tensor:
    """Each construction head's hard target set on one word ids (n,): bool (C, n, n+1)."""
    n = len(ids)
    sets = [targets[0] for targets in compiled.hard_targets(np.asarray(ids)[None])]
    return torch.from_numpy(np.stack(sets)) if sets else torch.zeros((0, n, n + 1), dtype=torch.bool)


def hard_pattern(compiled: CompiledModel, ids: np.ndarray, targets: torch.Tensor) -> torch.Tensor:
    """The compiled hard model's own attention (C, n, n+1), checked to lie inside its target sets.

    The model's attention is the ground truth the metadata describes; a row outside the set
    would mean the metadata and the construction disagree, and every statistic would be wrong.
    """
    pattern = compiled_attention(compiled, ids)
    outside = (pattern * ~targets).sum(-1).amax(-1)  # (C,)
    if bool((outside > 1e-9).any()):
        head = compiled.heads[int(outside.argmax())]
        raise RuntimeError(f"compiled hard head `{head.subformula}` of `{compiled.formula}` attends outside its "
                           f"declared target set on word {np.asarray(ids).tolist()}")
    return pattern


def reference_pattern(targets: torch.Tensor) -> torch.Tensor:
    """The reference attention of construction heads with target sets ``targets`` (..., n, n+1):
    uniform over each query's targets, float64.

    One-hot for the tie-breaking rules (last / first / self), whose target set is one key;
    average-hard for the set-valued rules (any / all / query).
    """
    targets = targets.double()
    return targets / targets.sum(-1, keepdim=True)


@lru_cache(maxsize=4096)
def _hard_reference(formula: Formula, alphabet: Alphabet, ids: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target sets, reference patterns and hard patterns of the hard construction on one word,
    computed once per word: the seeds of one configuration share their probe words."""
    compiled = _compile(formula, alphabet, "hard", None)
    targets = target_sets(compiled, np.array(ids))
    return targets, reference_pattern(targets), hard_pattern(compiled, np.array(ids), targets)


# ---------------------------------------------------------------------------- statistics
def pair_statistics(attention: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
                    hard: torch.Tensor | None = None) -> dict:
    """Query-averaged statistics of every (learned head, construction head) pair on one word.

    attention (K, n, n+1) learned weights; targets (C, n, n+1) bool; reference (C, n, n+1) the
    reference rows (reference_pattern); hard (C, n, n+1) the compiled hard rows (default: the
    reference). Returns target_mass, tv and tv_hard as (K, C) arrays, entropy and max_weight as
    (K,) arrays.
    """
    A = attention.double()
    hard = reference if hard is None else hard
    mass = torch.einsum("kqj,cqj->kcq", A, targets.double()).mean(-1)  # (K, C)
    tv = 0.5 * (A[:, None] - reference[None]).abs().sum(-1).mean(-1)  # (K, C)
    tv_hard = 0.5 * (A[:, None] - hard[None]).abs().sum(-1).mean(-1)  # (K, C)
    entropy = torch.special.entr(A).sum(-1).mean(-1)  # (K,), 0 log 0 = 0
    max_weight = A.amax(-1).mean(-1)  # (K,)
    return {"target_mass": mass.numpy(), "tv": tv.numpy(), "tv_hard": tv_hard.numpy(),
            "entropy": entropy.numpy(), "max_weight": max_weight.numpy()}


def _word_rows(compiled: CompiledModel, word: ProbeWord) -> dict:
    """Columns (PAIR + STATISTICS) of one word's K x C rows, learned head major."""
    attention = torch.cat([layer.double() for layer in word.attention])  # (L*H, n, n+1)
    stats = pair_statistics(attention, *_hard_reference(compiled.formula, compiled.alphabet, tuple(word.ids.tolist())))
    K, C = stats["target_mass"].shape
    heads = word.attention[0].shape[0]
    learned = {"layer": np.arange(K) // heads, "head": np.arange(K) % heads}
    construction = {name: np.array([getattr(info, name.removeprefix("c_")) for info in compiled.heads])
                    for name in CONSTRUCTION}
    return {
        **{name: np.repeat(values, C) for name, values in learned.items()},
        **{name: np.tile(values, K) for name, values in construction.items()},
        "target_mass": stats["target_mass"].ravel(), "tv": stats["tv"].ravel(), "tv_hard": stats["tv_hard"].ravel(),
        "entropy": np.repeat(stats["entropy"], C), "max_weight": np.repeat(stats["max_weight"], C),
    }


def word_table(run: RunFolder) -> pd.DataFrame:
    """One row per probe word, learned head and construction head of ``run``.

    Columns: split, word (index among the run's probe words, validation first), length,
    layer, head (learned), c_layer, c_head, operator, subformula, target_rule (construction
    head), target_mass, tv, tv_hard, entropy, max_weight (query means on that word; see the module
    docstring). Raises RunSkipped for a run without saved attention or with a formula the
    compiler does not support.
    """
    compiled = construction_for(run)
    columns = []
    for index, word in enumerate(run.attention_words()):
        rows = _word_rows(compiled, word)
        count = len(rows["layer"])
        columns.append({"split": np.repeat(word.split, count), "word": np.repeat(index, count),
                        "length": np.repeat(len(word.ids), count), **rows})
    if not columns:
        raise RunSkipped(f"{run.path}: saved attention holds no probe word")
    return pd.DataFrame({name: np.concatenate([c[name] for c in columns]) for name in columns[0]})


def aggregate(table: pd.DataFrame, by=()) -> pd.DataFrame:
    """Mean statistics per (``by`` keys, learned head, construction head) over the words of ``table``.

    Keeps the run settings (SETTINGS columns) when the table has them; adds ``words``, the
    number of probe words averaged.
    """
    keys = [c for c in SETTINGS if c in table.columns] + list(by) + list(PAIR)
    grouped = table.groupby(keys, sort=False, dropna=False)
    means = grouped[list(STATISTICS)].mean()
    return means.assign(words=grouped["word"].nunique()).reset_index()


def match_heads(run: RunFolder) -> pd.DataFrame:
    """Statistics of every (learned head, construction head) pair, averaged over all probe words.

    Columns: layer, head, c_layer, c_head, operator, subformula, target_rule, target_mass,
    tv, tv_hard, entropy, max_weight, words.
    """
    return aggregate(word_table(run))


def attention_by_length(run: RunFolder) -> pd.DataFrame:
    """As match_heads, one row per pair, split and word length (columns split, length first)."""
    return aggregate(word_table(run), by=("split", "length"))


def pick_best(table: pd.DataFrame) -> pd.DataFrame:
    """Each learned head's best construction head: the lowest TV to its reference pattern, ties
    by the highest target mass.

    ``table`` is an aggregate (match_heads, or compare_runs(..., table="heads")); the result
    has its columns plus ``margin``, the runner-up's TV minus the best's (0: two construction
    heads fit equally well, e.g. the count heads of #a and #b; NaN: only one).
    """
    keys = [c for c in SETTINGS if c in table.columns] + list(LEARNED)
    # TVs equal up to rounding (identical references summed in another order) count as ties
    ordered = table.assign(_tv=table["tv"].round(9), _mass=table["target_mass"].round(9)).sort_values(
        ["_tv", "_mass", "c_layer", "c_head"], ascending=[True, False, True, True], kind="stable")
    grouped = ordered.groupby(keys, sort=False, dropna=False)
    ordered = ordered.assign(margin=grouped["tv"].shift(-1) - ordered["tv"])
    return ordered[grouped.cumcount() == 0].drop(columns=["_tv", "_mass"]).sort_index().reset_index(drop=True)


def best_matches(run: RunFolder) -> pd.DataFrame:
    """For each learned head of ``run`` its best construction head with its statistics (pick_best)."""
    return pick_best(match_heads(run))


# ---------------------------------------------------------------------------- many runs
def compare_runs(runs, table: str = "best", formula: str | None = None) -> pd.DataFrame:
    """One table of many runs of one formula, with each run's settings (SETTINGS) as columns.

    runs: RunFolders, or a path or paths for analysis.runs.find_runs. table: "best" (pick_best per run),
    "heads" (match_heads), "length" (attention_by_length) or "words" (word_table, to aggregate in
    several ways without measuring twice). formula: the formula to compare
    (text); by default the formula of most runs that have a construction. Runs without saved
    attention, with an unsupported formula, or of another formula are skipped with a warning;
    the messages are in ``result.attrs["skipped"]``.
    """
    if table not in TABLES:
        raise ValueError(f"table: unknown value {table!r}; expected one of {TABLES}")
    runs, skipped = as_runs(runs)
    reference = _common_formula(runs) if formula is None else parse(formula)

    def analyse(run: RunFolder) -> pd.DataFrame:
        compiled = construction_for(run)  # an unreadable or unsupported formula is skipped here
        if compiled.formula != reference:
            raise RunSkipped(f"{run.path}: formula `{compiled.formula}` differs from `{reference}`, the formula "
                             "of this comparison; compare one formula at a time (formula=...)")
        return _stack(word_table(run), table)

    for message in skipped:
        warnings.warn(f"skipped {message}", stacklevel=2)
    result = map_runs(analyse, runs, PAIR, "attention vs constructions")
    result.attrs["skipped"] = skipped + result.attrs["skipped"]
    return result


def _common_formula(runs: list) -> Formula | None:
    """The formula of most runs that the compiler supports (the first such run's on a tie)."""
    counts = {}
    for run in runs:
        try:
            construction_for(run)
        except RunSkipped:
            continue
        counts[run.formula] = counts.get(run.formula, 0) + 1
    return max(counts, key=counts.get) if counts else None


def _stack(words: pd.DataFrame, table: str) -> pd.DataFrame:
    if table == "words":
        return words
    if table == "length":
        return aggregate(words, by=("split", "length"))
    heads = aggregate(words)
    return pick_best(heads) if table == "best" else heads


# ---------------------------------------------------------------------------- figures
def plot_match_by_length(table: pd.DataFrame) -> Figure:
    """Small multiples, one panel per learned head (rows: layers, columns: heads): the TV (solid)
    to each run's best-matching construction head, and the attention mass on its targets
    (dashed), against word length; one colour per configuration, the mean over its seeds with a
    band from the lowest to the highest seed. Readable at any number of seeds: the legend has
    one entry per configuration.

    ``table``: attention_by_length, or compare_runs(..., table="length"). Each run's best match
    per learned head is chosen on its word-weighted means over all lengths; the panel title
    names the construction head most runs match.
    """
    runs = [RUN] if RUN in table.columns else []  # one run per folder, whatever its name
    keys = runs + list(PAIR)
    totals = table.assign(target_mass=table.target_mass * table.words, tv=table.tv * table.words) \
        .groupby(keys, sort=False)[["target_mass", "tv", "words"]].sum()
    overall = totals[["target_mass", "tv"]].div(totals["words"], axis=0).reset_index()
    best = table.merge(pick_best(overall)[keys], on=keys)
    best = best.assign(configuration=configuration_labels(best))
    curves = best.groupby(["configuration", *LEARNED, "length"], sort=True)[["tv", "target_mass"]] \
        .agg(["mean", "min", "max"])
    n_layers, n_heads = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
    figure = Figure(figsize=(3.2 * n_heads + 1.5, 2.6 * n_layers), layout="constrained")
    grid = figure.subplots(n_layers, n_heads, squeeze=False, sharex=True, sharey=True)
    colours = {name: f"C{k % 10}" for k, name in enumerate(dict.fromkeys(best["configuration"]))}
    for (configuration, layer, head), curve in curves.groupby(level=["configuration", *LEARNED]):
        axes, colour, length = grid[layer, head], colours[configuration], curve.index.get_level_values("length")
        for statistic, style in (("tv", "-"), ("target_mass", "--")):
            axes.plot(length, curve[(statistic, "mean")], style, color=colour, marker=".",
                      label=(configuration or "mean over seeds") if statistic == "tv" else None)
            axes.fill_between(length, curve[(statistic, "min")], curve[(statistic, "max")], color=colour, alpha=0.15,
                              linewidth=0)
    for (layer, head), axes in np.ndenumerate(grid):
        matched = best[(best["layer"] == layer) & (best["head"] == head)].drop_duplicates(runs + ["c_layer", "c_head"])
        title = f"L{layer}H{head}"
        if not matched.empty:
            top = matched[["operator", "subformula"]].value_counts()
            title += f" ~ {top.index[0][0]} `{top.index[0][1]}` ({top.iloc[0]}/{len(matched)} runs)"
        axes.set_title(title, fontsize="small")
        axes.set_ylim(-0.02, 1.02)
    figure.supxlabel("word length")
    figure.supylabel("TV to the reference (solid), mass on the targets (dashed)", fontsize="small")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize="x-small", title="configuration",
                  title_fontsize="x-small")
    return figure


def plot_side_by_side(run: RunFolder, word: int = 0, split: str | None = None,
                      matches: pd.DataFrame | None = None) -> Figure:
    """Attention maps of one probe word: a row per learned head, columns learned / soft / hard.

    word: index among the probe words of ``split`` (all splits, validation first, when None).
    Each row shows the learned head, then its best construction head (``matches``, by
    default best_matches(run)) compiled soft-scaled for this word's length n and compiled
    hard. Rows are queries, columns keys with the sink first.
    """
    words = list(run.attention_words(split))
    if not 0 <= word < len(words):
        raise ValueError(f"{run.path}: word {word} out of range: {len(words)} probe words in {split or 'all splits'}")
    probe = words[word]
    n = len(probe.ids)
    matches = best_matches(run) if matches is None else matches
    hard = construction_for(run, "hard")
    soft = construction_for(run, "soft-scaled", length=n)
    maps = {"hard": compiled_attention(hard, probe.ids), "soft": compiled_attention(soft, probe.ids)}
    index = {(info.layer, info.head): c for c, info in enumerate(hard.heads)}

    figure = Figure(figsize=(9, 2.9 * len(matches)), layout="constrained")
    grid = figure.subplots(len(matches), 3, squeeze=False)
    symbols = [run.alphabet.symbols[i] for i in probe.ids]
    for row, match in zip(grid, matches.itertuples(index=False)):
        c = index[(match.c_layer, match.c_head)]
        panels = [(probe.attention[match.layer][match.head], f"learned L{match.layer}H{match.head}"),
                  (maps["soft"][c], f"compiled soft-scaled (n={n})"),
                  (maps["hard"][c], "compiled hard")]
        for axes, (weights, title) in zip(row, panels):
            axes.imshow(np.asarray(weights, dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            axes.set_title(title, fontsize="small")
            _label_keys(axes, symbols)
        row[0].set_ylabel(f"{match.operator} `{match.subformula}`\nmass {match.target_mass:.2f}, "
                          f"TV {match.tv:.2f}\nquery", fontsize="x-small")
    figure.suptitle(f"{run.name}: probe word {word} of {probe.split} (n={n})", fontsize="small")
    return figure


def _label_keys(axes, symbols: list) -> None:
    """Key axis ticks: 'sink' at column 0, then the word's symbols (every k-th for long words:
    tick labels are most of the drawing time)."""
    step = max(1, -(-len(symbols) // MAX_TICKS))
    positions = list(range(0, len(symbols), step))
    axes.set_xticks([0] + [p + 1 for p in positions],
                    ["sink"] + [f"{symbols[p]}{p}" if step > 1 else symbols[p] for p in positions],
                    fontsize="xx-small", rotation=90)
    axes.set_yticks(positions, [symbols[p] for p in positions], fontsize="xx-small")


# ---------------------------------------------------------------------------- summary
def summary_markdown(best: pd.DataFrame) -> str:
    """The best-match table (pick_best / best_matches / compare_runs "best") as markdown."""
    columns = [c for c in (RUN,) if c in best.columns] + ["layer", "head", "operator", "subformula",
                                                         *STATISTICS, "margin", "words"]
    return name_runs(best[columns], best).to_markdown(index=False, floatfmt=".3f")
