"""Score gaps and temperatures: is a learned head's softmax hard enough, now and at longer lengths?

The gap lemma (Yang et al. 2024): if the maximal keys of a query beat every other visible key
by a *logit* gap G, softmax is within L1 distance 2 n exp(-G) of average-hard attention on those
maxima, n the visible keys. A head's logits are raw scores divided by its *effective
temperature* (models/temperature.py, as SelfAttention.logit_scale computes it)

    tau_eff(n) = tau_h * tau_schedule / factor(n),    factor = 1, log n, n or n log n,

so a raw score gap g gives G = g / tau_eff, and the weight off the maxima stays below eps
when G >= ln(n / eps), i.e. when tau_eff <= g / ln(n / eps) = the *required temperature*.
Throughout, n is the number of keys the query sees under its head's mask, the sink included
(models.masks.visible_key_count): the n of the softmax.

Per query this module measures, from a head's logits (the saved ``scores`` of a run, or a model
run on given words): the top keys (all keys within TIE_RTOL of the maximum logit: the gap
lemma's maxima, several when a construction ties its targets on purpose), the logit gap G to
the best other key, the raw gap g = G * tau_eff, the L1 distance of the attention row to
average-hard attention on the top keys, and the lemma's bound 2 n exp(-G). Queries whose every
visible key ties (only the sink visible, or a head that ignores its input) have no gap and are
left out. ``temperature_table`` aggregates them per (layer, head, word length);
``extrapolate_table`` asks whether each head stays hard at 10x and 100x the train length;
``plot_temperature`` draws both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from softhard.analysis.runs import RUN, SETTINGS, RunFolder, RunSkipped, map_runs, name_runs, run_labels
from softhard.models.masks import mask_bounds, visible_key_count
from softhard.models.temperature import length_factor
from softhard.models.transformer import Transformer

EPS = 1e-3  # the attention error the required temperature allows (as the compiler's EPSILON)
TIE_RTOL = 1e-6  # logits within this (relative to max(1, |top|)) of the top tie with it: a few fp32 ulps
FACTORS = (10, 100)  # multiples of the train length that extrapolate_table looks at

# One row per (layer, head, word length) of temperature_table:
TEMPERATURE_COLUMNS = (
    "layer",  # block index, 0-based
    "head",  # head index in the block
    "kind",  # attention kind of the head (softmax, or a hard kind)
    "temperature_mode",  # fixed | learned | log_n | n | n_log_n
    "mask",  # none | past | strict_past | future | strict_future
    "tau_head",  # tau_h * tau_schedule: the temperature before the length factor
    "length",  # word length
    "words",  # words of this length
    "queries",  # queries with a gap (every visible key tied: left out)
    "n_keys",  # the most visible keys (incl. the sink) of those queries: the n of the theory
    "logit_gap_min", "logit_gap_median",  # G: top logit minus the best other visible logit
    "gap_min", "gap_median",  # g = G * tau_eff: the same gap in raw score units
    "tau_eff",  # effective temperature at n_keys (the smallest over the queries: factors grow with n)
    "tau_required",  # gap_min / ln(n_keys / eps): the theory's temperature for attention error eps
    "hard",  # every query has G >= ln(n_q / eps) (hard_fraction 1): the theory guarantees error <= eps at this
    #         length; with a mask and a length factor the binding query may be a short one, not the one at n_keys
    "hard_fraction",  # fraction of queries with G >= ln(n_q / eps) (each query at its own n and gap)
    "distance_mean", "distance_max",  # L1 distance of the attention row to average-hard on the top keys
    "bound_mean", "bound_max",  # the gap lemma's bound 2 n exp(-G) on that distance
)

# One row per (head, factor) of extrapolate_table:
EXTRAPOLATION_COLUMNS = (
    "layer", "head", "temperature_mode", "mask", "tau_head",
    "measured_length",  # the longest measured length, whose gap is carried over
    "gap",  # the raw gap assumed at every longer length (gap_min at measured_length by default)
    "factor",  # multiple of the train length
    "length",  # factor * train length
    "n_keys",  # the most visible keys (incl. the sink) of a word of that length
    "tau_eff",  # effective temperature there (exact for the head's temperature mode)
    "tau_required",  # gap / ln(n_keys / eps)
    "hard",  # every query q of a word of that length has tau_eff(q) <= gap / ln(n_q / eps) (as in the tables)
)


# ---------------------------------------------------------------------------- temperatures
def effective_temperature(tau: torch.Tensor, modes: Sequence[str], masks: Sequence[str],
                          length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, tau_eff), each (H, length): per head and query of a word of ``length``, the visible keys
    (sink included) and tau / factor(n), exactly as SelfAttention.logit_scale scales the logits.

    tau: (H,) tau_h * tau_schedule; modes: the H temperature modes; masks: the H masks.
    """
    lo, hi = mask_bounds(masks)
    n = visible_key_count(lo, hi, length, None)  # (1, H, length)
    factor = length_factor(n, modes)[0].double()  # (H, length)
    return n[0], tau.double().view(-1, 1) / factor


def head_settings(model: Transformer) -> pd.DataFrame:
    """Per (layer, head): kind, temperature_mode, mask and tau_head = tau_h * tau_schedule."""
    rows = []
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        taus = (attn.temperatures() * model.tau_schedule).detach().double().tolist()
        for head, (kind, mode, mask, tau) in enumerate(zip(attn.kinds, attn.temperature, attn.masks, taus)):
            rows.append({"layer": layer, "head": head, "kind": kind, "temperature_mode": mode, "mask": mask,
                         "tau_head": tau})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- per query
def query_gaps(scores: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, distance), each (B, H, T): the logit gap of the top keys over the rest (inf when every
    visible key ties) and the L1 distance of each attention row to average-hard attention on the
    top keys. scores: (B, H, T, T+1) logits, -inf where masked; attention: their weights."""
    scores, attention = scores.double(), attention.double()
    top = scores.amax(-1, keepdim=True)  # (B, H, T, 1)
    tied = scores >= top - TIE_RTOL * top.abs().clamp(min=1.0)  # (B, H, T, T+1); masked keys never tie
    second = scores.masked_fill(tied, float("-inf")).amax(-1)  # (B, H, T)
    average_hard = tied / tied.sum(-1, keepdim=True)
    return top[..., 0] - second, (attention - average_hard).abs().sum(-1)


def _query_frame(layer: int, heads: pd.DataFrame, scores: torch.Tensor, attention: torch.Tensor,
                 first_word: int, eps: float) -> pd.DataFrame:
    """One row per query with a gap of one layer on a batch of equal-length words."""
    B, H, T, _ = scores.shape
    n, tau_eff = effective_temperature(torch.tensor(heads.tau_head.to_numpy()), list(heads.temperature_mode),
                                       list(heads["mask"]), T)
    G, distance = query_gaps(scores, attention)
    n = n.double().expand(B, H, T)
    tau_eff = tau_eff.expand(B, H, T)
    keep = torch.isfinite(G)
    G, n, tau_eff, distance = G[keep], n[keep], tau_eff[keep], distance[keep]
    b, h, _ = keep.nonzero(as_tuple=True)
    return pd.DataFrame({
        "layer": layer, "head": h.numpy(), "length": T, "word": first_word + b.numpy(), "n": n.numpy(),
        "logit_gap": G.numpy(), "gap": (G * tau_eff).numpy(), "tau_eff": tau_eff.numpy(),
        "distance": distance.numpy(), "bound": (2 * n * torch.exp(-G)).numpy(),
        "hard": (G >= torch.log(n / eps)).numpy(),
    })


def head_temperatures(model: Transformer, batches: Iterable[tuple[list, list]], eps: float = EPS) -> pd.DataFrame:
    """TEMPERATURE_COLUMNS of ``model``'s heads from its logits on some words.

    batches: (scores, attention) pairs, each a per-layer list of (B, H, n, n+1) tensors on B words
    of length n (column 0 the sink, -inf where masked), as the model returns them
    (``return_attention=True``) or a run saved them.
    """
    heads = head_settings(model)
    per_layer = [heads[heads.layer == layer].reset_index(drop=True) for layer in range(len(model.blocks))]
    frames, words = [], 0
    for scores, attention in batches:
        for layer, (s, a) in enumerate(zip(scores, attention)):
            frames.append(_query_frame(layer, per_layer[layer], s, a, words, eps))
        words += scores[0].shape[0]
    if not frames:
        return pd.DataFrame(columns=list(TEMPERATURE_COLUMNS))
    queries = pd.concat(frames, ignore_index=True)
    table = queries.groupby(["layer", "head", "length"], as_index=False).agg(
        words=("word", "nunique"), queries=("n", "size"), n_keys=("n", "max"),
        logit_gap_min=("logit_gap", "min"), logit_gap_median=("logit_gap", "median"),
        gap_min=("gap", "min"), gap_median=("gap", "median"), tau_eff=("tau_eff", "min"),
        hard_fraction=("hard", "mean"), distance_mean=("distance", "mean"), distance_max=("distance", "max"),
        bound_mean=("bound", "mean"), bound_max=("bound", "max"),
    )
    table["n_keys"] = table.n_keys.astype(int)
    table["tau_required"] = table.gap_min / np.log(table.n_keys / eps)
    table["hard"] = table.hard_fraction == 1.0
    return table.merge(heads, on=["layer", "head"])[list(TEMPERATURE_COLUMNS)]


# ---------------------------------------------------------------------------- sources of logits
@torch.no_grad()
def model_batches(model: Transformer, words: Iterable[np.ndarray]) -> Iterator[tuple[list, list]]:
    """(scores, attention) of ``model`` on each (B, n) array of equal-length words."""
    for ids in words:
        output = model(torch.as_tensor(np.asarray(ids), dtype=torch.long), return_attention=True)
        yield [s.float() for s in output.scores], [a.float() for a in output.attention]


def saved_batches(run: RunFolder) -> Iterator[tuple[list, list]]:
    """The run's saved probe words one at a time, as batches of one word (memory: one word)."""
    for word in run.attention_words():
        yield [s[None] for s in word.scores], [a[None] for a in word.attention]


def model_temperature_table(model: Transformer, words: Iterable[np.ndarray], eps: float = EPS) -> pd.DataFrame:
    """temperature_table of any model (a compiled construction, say) on words: (B, n) id arrays."""
    return head_temperatures(model.eval(), model_batches(model, words), eps)


def temperature_table(run: RunFolder, eps: float = EPS) -> pd.DataFrame:
    """TEMPERATURE_COLUMNS of a run's trained heads, from the logits saved on its probe words.

    Raises RunSkipped without saved attention or checkpoint.
    """
    run.attention_splits()  # a run without saved attention is skipped before the model loads
    return head_temperatures(run.load_model(), saved_batches(run), eps)


# ---------------------------------------------------------------------------- extrapolation
def extrapolate_table(table: pd.DataFrame, factors: Sequence[float] = FACTORS, eps: float = EPS,
                      train_length: int | None = None, gap: str = "gap_min") -> pd.DataFrame:
    """Does each head stay hard at ``factor`` x the train length (EXTRAPOLATION_COLUMNS)?

    Model: the raw gap g (column ``gap`` of the table: gap_min or gap_median) stays what it is at
    the longest measured length, an assumption (bounded positional encodings keep raw scores,
    hence gaps, bounded; constructions with i/n features even shrink them as 1/n); tau_eff
    follows the head's temperature mode exactly, at the most visible keys n_keys of a word of
    length N = factor x train length. The head stays hard iff every query q of that word has
    tau_eff(q) <= g / ln(n_q / eps) (with a mask and a length factor the binding query can be a
    short one); n_keys, tau_eff and tau_required are given at the query with the most keys.

    table: from temperature_table, model_temperature_table or temperature_runs (many runs: per
    run, the train length from its train_max_length column unless ``train_length`` is given; a
    run without one is left out, named in ``result.attrs["skipped"]``).
    """
    if gap not in ("gap_min", "gap_median"):
        raise ValueError(f"gap: expected gap_min or gap_median, got {gap!r}")
    settings = [c for c in SETTINGS if c in table.columns]
    table = table.reset_index(drop=True)
    head_keys = ([RUN] if RUN in settings else []) + ["layer", "head"]
    longest = table.loc[table.groupby(head_keys).length.idxmax()] if not table.empty else table
    rows, skipped = [], []
    for _, row in longest.iterrows():  # one iteration per head: small
        base = row.get("train_max_length") if train_length is None else train_length
        if base is None or pd.isna(base):
            if "run_dir" not in settings:
                raise ValueError("extrapolate_table: no train length; pass train_length or a table with train_max_length")
            skipped.append(f"{row['run_dir']}: no train length (config.yaml data.max_length): not extrapolated")
            continue
        for factor in factors:
            N = round(factor * base)
            n, tau_eff = effective_temperature(torch.tensor([row.tau_head]), [row.temperature_mode], [row["mask"]], N)
            hard = bool((tau_eff[0] <= row[gap] / torch.log(n[0].double() / eps)).all())  # every query
            last = int(n[0].argmax())
            n_keys, tau_eff = int(n[0, last]), float(tau_eff[0, last])
            required = row[gap] / math.log(n_keys / eps)
            rows.append({**row[settings].to_dict(), "layer": row["layer"], "head": row["head"],
                         "temperature_mode": row.temperature_mode, "mask": row["mask"], "tau_head": row.tau_head,
                         "measured_length": row["length"], "gap": row[gap], "factor": factor, "length": N,
                         "n_keys": n_keys, "tau_eff": tau_eff, "tau_required": required, "hard": hard})
    result = pd.DataFrame(rows, columns=settings + list(EXTRAPOLATION_COLUMNS))
    result.attrs["skipped"] = list(dict.fromkeys(skipped))
    return result


def extrapolate(run: RunFolder, factors: Sequence[float] = FACTORS, eps: float = EPS,
                gap: str = "gap_min") -> pd.DataFrame:
    """extrapolate_table of one run, from its saved probe words and its train max length."""
    train_length = run.settings["train_max_length"]
    if train_length is None:
        raise RunSkipped(f"{run.path}: no train length (config.yaml data.max_length): not extrapolated")
    return extrapolate_table(temperature_table(run, eps), factors, eps, train_length, gap)


# ---------------------------------------------------------------------------- many runs
def temperature_runs(runs, eps: float = EPS) -> pd.DataFrame:
    """temperature_table of many runs (RunFolders or paths), with their settings; skips as map_runs."""
    return map_runs(lambda run: temperature_table(run, eps), runs, TEMPERATURE_COLUMNS, "temperatures")


# ---------------------------------------------------------------------------- figure and summary
def plot_temperature(table: pd.DataFrame, extrapolation: pd.DataFrame | None = None) -> Figure:
    """Effective (solid) against required (dashed) temperature by length, one panel per head,
    log-log; one colour per run; extrapolated points (o: effective, x: required; filled where the
    head stays hard) at factor x the train length."""
    heads = sorted(set(zip(table.layer, table["head"])))
    n_layers = max((layer for layer, _ in heads), default=0) + 1
    n_heads = max((head for _, head in heads), default=0) + 1
    figure = Figure(figsize=(3.4 * n_heads, 2.8 * n_layers), layout="constrained")
    axes = figure.subplots(n_layers, n_heads, squeeze=False)
    runs = list(dict.fromkeys(table[RUN])) if RUN in table.columns else [None]
    labels = run_labels(table) if RUN in table.columns else {None: None}
    colours = {run: f"C{k % 10}" for k, run in enumerate(runs)}
    for (layer, head), ax in np.ndenumerate(axes):
        ax.set(xscale="log", yscale="log", title=f"layer {layer} head {head}", xlabel="length", ylabel="temperature")
        for run in runs:
            rows = _rows(table, run, layer, head).sort_values("length")
            if rows.empty:
                continue
            ax.plot(rows.length, _positive(rows.tau_eff), "-", color=colours[run], label=labels[run])
            ax.plot(rows.length, _positive(rows.tau_required), "--", color=colours[run])
            if extrapolation is not None:
                points = _rows(extrapolation, run, layer, head)
                hard = points.hard.to_numpy(dtype=bool)
                ax.scatter(points.length[hard], _positive(points.tau_eff[hard]), marker="o", color=colours[run])
                ax.scatter(points.length[~hard], _positive(points.tau_eff[~hard]), marker="o",
                           facecolors="none", edgecolors=colours[run])
                ax.scatter(points.length, _positive(points.tau_required), marker="x", color=colours[run])
    if runs != [None]:
        axes[0, 0].legend(fontsize="x-small")
    figure.suptitle("effective (solid) vs required (dashed) temperature\n"
                    "extrapolated: o effective (filled: stays hard), x required", fontsize="small")
    return figure


def _rows(table: pd.DataFrame, run, layer: int, head: int) -> pd.DataFrame:
    selected = (table.layer == layer) & (table["head"] == head)
    if run is not None:
        selected &= table[RUN] == run
    return table[selected]


def _positive(values: pd.Series) -> np.ndarray:
    """Log axes: zero or negative temperatures (a zero gap) are not drawn."""
    values = values.to_numpy(dtype=float)
    return np.where(values > 0, values, np.nan)


def extrapolation_markdown(extrapolation: pd.DataFrame) -> str:
    """One markdown row per head: does it stay hard at each factor x the train length?"""
    if extrapolation.empty:
        return "(no heads)"
    index = [c for c in (RUN, "layer", "head", "temperature_mode", "gap") if c in extrapolation.columns]
    table = extrapolation.pivot_table(index=index, columns="factor", values="hard", aggfunc="first")
    table.columns = [f"hard at {factor:g}x" for factor in table.columns]
    return name_runs(table.reset_index(), extrapolation).to_markdown(index=False, floatfmt=".3g")


# ---------------------------------------------------------------------------- target-set gaps
def target_set_gap(scores: torch.Tensor, targets: torch.Tensor,
                   visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gap, spread), each (..., n) float64, per query of a head against a construction head's target set.

    scores: (..., n, n+1) raw scores (q.k before the temperature; column 0 the sink); targets: bool,
    the hard target set; visible: bool, the keys the query's mask lets it see. gap = the smallest
    score on a target minus the largest on a visible non-target (the margin the gap lemma needs);
    spread = the largest minus the smallest score on the targets (0 for an exact tie). Both NaN
    where the query has no target or no competitor (no visible non-target).

    Provisional (issue 16): issue 15's version replaces it at merge.
    """
    scores = scores.double()
    on = targets & visible
    off = visible & ~targets
    top_target = scores.masked_fill(~on, -math.inf).amax(-1)
    low_target = scores.masked_fill(~on, math.inf).amin(-1)
    top_other = scores.masked_fill(~off, -math.inf).amax(-1)
    undefined = ~on.any(-1) | ~off.any(-1)
    gap = (low_target - top_other).masked_fill(undefined, math.nan)
    spread = (top_target - low_target).masked_fill(undefined, math.nan)
    return gap, spread
