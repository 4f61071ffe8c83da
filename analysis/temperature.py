"""Score gaps and temperatures: is a learned head's softmax hard enough, now and at longer lengths?

The gap lemma (Yang et al. 2024): if a query's *target set* M beats every other visible key by a
*logit* gap G, softmax puts weight at most m exp(-G) off M, m the visible keys off M (its
*competitors*, the sink included; the lemma states it with m <= n, the visible keys); when every
key of M carries the same value (a set-valued head, or a tie-breaking head with one target) the
output is then within that of hard attention. Counting the competitors matters for heads whose
target set grows with the word: a count head averages every word key, so its only competitor is
the sink at every length and a fixed temperature keeps it hard (ln(n / eps) would not). A head's logits are raw scores divided by its *effective
temperature* (models/temperature.py, as SelfAttention.logit_scale computes it)

    tau_eff(n) = tau_h * tau_schedule / factor(n),    factor = 1, log n, n or n log n,

so a raw score gap g gives G = g / tau_eff, and the weight off M stays below eps when
G >= ln(m / eps), i.e. when tau_eff <= g / ln(m / eps) = the *required temperature*.
Throughout, n is the number of keys the query sees under its head's mask, the sink included
(models.masks.visible_key_count): the n of the length factor; m <= n - 1 of them compete.

Which set M? A learned head with a construction counterpart (its best construction head,
analysis.attention.best_matches, holding at least COUNTERPART_MASS of its attention) is judged
on that head's hard target set: ``target_set_gap`` (gap_used "target_set"), the smallest raw
score on a target minus the largest off the targets, with the ``spread`` inside the target set
as its own column (the targets of a set-valued head need not tie: with positional encodings
they seldom do, and it does not matter). Any other head (no construction for the formula, or
one it does not simulate) keeps the top-versus-second gap (gap_used "top_second"): M = the keys
tied with the top logit within TIE_RTOL. Queries without a competitor (only the sink visible, or
every visible key in M) have no gap: they are left out of every statistic and counted
(``no_competitor``).

Per query this module measures, from a head's logits (the saved ``attention_logits`` of a run, or a model
run on given words): the logit gap G of M over the rest, the raw gap g = G * tau_eff, the
spread of M, the L1 distance of the attention row to that row renormalised onto M (2 x the
weight off M; average-hard attention on M when M ties), and the lemma's bound 2 m exp(-G).
``temperature_table`` aggregates them per (layer, head, word length); ``extrapolate_table`` asks
whether each head stays hard at 10x and 100x the train length; ``plot_temperature`` draws both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from softhard.analysis.attention import best_matches, construction_for
from softhard.analysis.length_generalization import configuration_labels
from softhard.analysis.runs import RUN, SETTINGS, RunFolder, RunSkipped, map_runs, name_runs
from softhard.models.compiler import CompiledModel
from softhard.models.masks import mask_bounds, visible_key_count
from softhard.models.temperature import length_factor
from softhard.models.transformer import Transformer

EPS = 1e-3  # the attention error the required temperature allows (as the compiler's EPSILON)
TIE_RTOL = 1e-6  # logits within this (relative to max(1, |top|)) of the top tie with it: a few fp32 ulps
FACTORS = (10, 100)  # multiples of the train length that extrapolate_table looks at
COUNTERPART_MASS = 0.5  # a learned head simulates its best construction head when this much attention lands on its targets
TARGET_SET, TOP_SECOND = "target_set", "top_second"  # the values of gap_used

# One row per (layer, head, word length) of temperature_table:
TEMPERATURE_COLUMNS = (
    "layer",  # block index, 0-based
    "head",  # head index in the block
    "kind",  # attention kind of the head (softmax, or a hard kind)
    "temperature_mode",  # fixed | learned | log_n | n | n_log_n
    "mask",  # none | past | strict_past | future | strict_future
    "tau_head",  # tau_h * tau_schedule: the temperature before the length factor
    "length",  # word length
    "gap_used",  # target_set (the counterpart's target sets) | top_second (the keys tied at the top)
    "counterpart",  # the construction head (subformula) whose target sets were used; "" for top_second
    "words",  # words of this length
    "queries",  # queries with a gap
    "no_competitor",  # queries left out: only the sink visible, or every visible key in the set
    "n_keys",  # the most visible keys (incl. the sink) of those queries: the n of the length factor
    "competitors",  # the most visible keys off the set (incl. the sink) of those queries: the m of the lemma
    "logit_gap_min", "logit_gap_median",  # G: the set's lowest logit minus the best other visible logit
    "gap_min", "gap_median",  # g = G * tau_eff: the same gap in raw score units
    "spread_max",  # the largest raw score spread inside the set (0 when the set ties)
    "tau_eff",  # effective temperature at n_keys (the smallest over the queries: factors grow with n)
    "tau_required",  # gap_min / ln(competitors / eps): the theory's temperature for attention error eps
    "hard",  # every query has G >= ln(m_q / eps) (hard_fraction 1): the theory guarantees error <= eps at this
    #         length; with a mask and a length factor the binding query may be a short one, not the one at n_keys
    "hard_fraction",  # fraction of queries with G >= ln(m_q / eps) (each query at its own competitors and gap)
    "distance_mean", "distance_max",  # L1 distance of the attention row to itself renormalised onto the set
    "bound_mean", "bound_max",  # the gap lemma's bound 2 m exp(-G) on that distance
)

# One row per (head, factor) of extrapolate_table:
EXTRAPOLATION_COLUMNS = (
    "layer", "head", "temperature_mode", "mask", "tau_head", "gap_used",
    "measured_length",  # the longest measured length, whose gap is carried over
    "gap",  # the raw gap assumed at every longer length (gap_min at measured_length by default)
    "factor",  # multiple of the train length
    "length",  # factor * train length
    "n_keys",  # the most visible keys (incl. the sink) of a word of that length
    "competitors",  # the competitors assumed there: as measured if they did not grow with the length, else n_keys
    "sink_only",  # queries of that word that see only the sink: no competitor, left out
    "tau_eff",  # effective temperature there (exact for the head's temperature mode)
    "tau_required",  # gap / ln(competitors / eps)
    "hard",  # every query q of a word of that length that sees a key has tau_eff(q) <= gap / ln(m_q / eps)
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
def target_set_gap(scores: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gap, spread), each (..., n) float64: per query, the smallest score on a target minus the
    largest score on a visible non-target, and the largest minus the smallest score on a target.

    scores float (..., n, n+1) raw scores (or logits: the gap scales with them), column 0 the
    sink; targets bool (..., n, n+1) the target set; visible bool (..., n, n+1) the keys the
    query's mask lets it see. NaN where the query has no competitor (no visible non-target: only
    the sink visible, or every visible key a target) or no visible target.
    """
    scores = scores.double()
    on, off = targets & visible, visible & ~targets
    lowest = scores.masked_fill(~on, math.inf).amin(-1)
    highest = scores.masked_fill(~on, -math.inf).amax(-1)
    rival = scores.masked_fill(~off, -math.inf).amax(-1)
    defined = on.any(-1) & off.any(-1)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return torch.where(defined, lowest - rival, nan), torch.where(defined, highest - lowest, nan)


def top_keys(scores: torch.Tensor) -> torch.Tensor:
    """bool, the shape of ``scores`` (..., n+1; -inf where masked): the keys tied with the top
    logit within TIE_RTOL (relative to max(1, |top|)), the gap lemma's maxima."""
    scores = scores.double()
    top = scores.amax(-1, keepdim=True)
    return scores >= top - TIE_RTOL * top.abs().clamp(min=1.0)  # masked keys never tie


def query_gaps(scores: torch.Tensor, attention: torch.Tensor,
               targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G, spread, distance, competitors), each (B, H, T): the logit gap of the set M over the rest
    and the spread inside M (target_set_gap; NaN without a competitor), the L1 distance of each
    attention row to the row renormalised onto M (2 x the weight off M), and the number of
    visible keys off M.

    scores: (B, H, T, T+1) logits, -inf where masked; attention: their weights; targets: bool
    like scores, M per query (default: the top keys, top_keys).
    """
    M = top_keys(scores) if targets is None else targets
    visible = torch.isfinite(scores)
    G, spread = target_set_gap(scores, M, visible)
    # summed off M, not 1 - the weight on M: small weights keep their precision, 1 - w would not
    return G, spread, 2 * (attention.double() * ~M).sum(-1), (visible & ~M).sum(-1).double()


def _query_frame(layer: int, heads: pd.DataFrame, scores: torch.Tensor, attention: torch.Tensor,
                 targets: torch.Tensor | None, first_word: int, eps: float) -> pd.DataFrame:
    """One row per query of one layer on a batch of equal-length words (NaN gaps: no competitor).

    targets: bool like scores, used for the heads whose ``heads.gap_used`` is target_set."""
    B, H, T, _ = scores.shape
    n, tau_eff = effective_temperature(torch.tensor(heads.tau_head.to_numpy()), list(heads.temperature_mode),
                                       list(heads["mask"]), T)
    sets = top_keys(scores)
    judged = torch.tensor((heads.gap_used == TARGET_SET).to_numpy())
    if bool(judged.any()):
        sets = torch.where(judged.view(1, H, 1, 1), targets, sets)
    G, spread, distance, m = query_gaps(scores, attention, sets)
    n = n.double().expand(B, H, T)
    tau_eff = tau_eff.expand(B, H, T)
    b, h, _ = torch.meshgrid(torch.arange(B), torch.arange(H), torch.arange(T), indexing="ij")
    hard = (G >= torch.log(m / eps)).double().masked_fill(torch.isnan(G), math.nan)
    return pd.DataFrame({
        "layer": layer, "head": h.flatten().numpy(), "length": T, "word": first_word + b.flatten().numpy(),
        "n": n.flatten().numpy(), "m": m.flatten().numpy(), "logit_gap": G.flatten().numpy(),
        "gap": (G * tau_eff).flatten().numpy(),
        "spread": (spread * tau_eff).flatten().numpy(), "tau_eff": tau_eff.flatten().numpy(),
        "distance": distance.flatten().numpy(), "bound": (2 * m * torch.exp(-G)).flatten().numpy(),
        "hard": hard.flatten().numpy(),
    })


def head_temperatures(model: Transformer, batches: Iterable[tuple], eps: float = EPS,
                      counterparts: dict | None = None) -> pd.DataFrame:
    """TEMPERATURE_COLUMNS of ``model``'s heads from its logits on some words.

    batches: (scores, attention) or (scores, attention, targets) triples, each a per-layer list
    of (B, H, n, n+1) tensors on B words of length n (column 0 the sink, -inf where masked), as
    the model returns them (``return_attention=True``) or a run saved them; targets (bool) the
    target sets of each learned head's counterpart. counterparts: {(layer, head): subformula}
    of the heads judged on their targets (gap_used target_set); the others, and every head of a
    batch without targets, on the top-versus-second gap.
    """
    counterparts = counterparts or {}
    heads = head_settings(model)
    heads["counterpart"] = [counterparts.get((layer, head), "") for layer, head in zip(heads.layer, heads["head"])]
    heads["gap_used"] = np.where(heads.counterpart != "", TARGET_SET, TOP_SECOND)
    per_layer = [heads[heads.layer == layer].reset_index(drop=True) for layer in range(len(model.blocks))]
    frames, words = [], 0
    for scores, attention, *targets in batches:
        for layer, (s, a) in enumerate(zip(scores, attention)):
            if counterparts and not targets:
                raise ValueError("head_temperatures: counterparts given but a batch has no targets")
            frames.append(_query_frame(layer, per_layer[layer], s, a, targets[0][layer] if targets else None,
                                       words, eps))
        words += scores[0].shape[0]
    if not frames:
        return pd.DataFrame(columns=list(TEMPERATURE_COLUMNS))
    queries = pd.concat(frames, ignore_index=True)
    queries["kept"] = queries.logit_gap.notna()
    # NaN for the left-out queries: count and max skip them
    table = queries.assign(n_kept=queries.n.where(queries.kept), m_kept=queries.m.where(queries.kept)).groupby(
        ["layer", "head", "length"], as_index=False).agg(
        words=("word", "nunique"), queries=("kept", "sum"), no_competitor=("kept", lambda k: int((~k).sum())),
        n_keys=("n_kept", "max"), competitors=("m_kept", "max"), logit_gap_min=("logit_gap", "min"), logit_gap_median=("logit_gap", "median"),
        gap_min=("gap", "min"), gap_median=("gap", "median"), spread_max=("spread", "max"),
        tau_eff=("tau_eff", "min"), hard_fraction=("hard", "mean"), distance_mean=("distance", "mean"),
        distance_max=("distance", "max"), bound_mean=("bound", "mean"), bound_max=("bound", "max"),
    )
    table["n_keys"] = table.n_keys.astype("Int64")
    table["competitors"] = table.competitors.astype("Int64")
    table["tau_required"] = table.gap_min / np.log(table.competitors.astype(float) / eps)
    table["hard"] = table.hard_fraction == 1.0
    return table.merge(heads, on=["layer", "head"])[list(TEMPERATURE_COLUMNS)]


# ---------------------------------------------------------------------------- sources of logits
def counterpart_targets(construction: CompiledModel, counterparts: dict, ids: np.ndarray,
                        n_layers: int, n_heads: int) -> list[torch.Tensor]:
    """Per layer of a model with n_layers x n_heads heads, bool (B, H, n, n+1): for each learned
    head in ``counterparts`` ({(layer, head): index into construction.heads}) that construction
    head's target sets on words ids (B, n); all False for the other heads."""
    ids = np.asarray(ids)
    sets = construction.hard_targets(ids)  # per construction head, (B, n, n+1)
    out = [torch.zeros((ids.shape[0], n_heads, ids.shape[1], ids.shape[1] + 1), dtype=torch.bool)
           for _ in range(n_layers)]
    for (layer, head), c in counterparts.items():
        out[layer][:, head] = torch.from_numpy(sets[c])
    return out


@torch.no_grad()
def model_batches(model: Transformer, words: Iterable[np.ndarray], construction: CompiledModel | None = None,
                  counterparts: dict | None = None) -> Iterator[tuple]:
    """(scores, attention) of ``model`` on each (B, n) array of equal-length words, with the
    counterparts' targets (counterpart_targets) as a third element when ``construction`` is given."""
    for ids in words:
        output = model(torch.as_tensor(np.asarray(ids), dtype=torch.long), return_attention=True)
        batch = [s.float() for s in output.attention_logits], [a.float() for a in output.attention]
        if construction is not None:
            H = output.attention[0].shape[1]
            batch += (counterpart_targets(construction, counterparts, ids, len(output.attention), H),)
        yield batch


def saved_batches(run: RunFolder, construction: CompiledModel | None = None,
                  counterparts: dict | None = None) -> Iterator[tuple]:
    """The run's saved probe words one at a time, as batches of one word (memory: one word),
    with the counterparts' targets as in model_batches."""
    for word in run.attention_words():
        batch = [s[None] for s in word.attention_logits], [a[None] for a in word.attention]
        if construction is not None:
            H = word.attention[0].shape[0]
            batch += (counterpart_targets(construction, counterparts, word.ids[None], len(word.attention), H),)
        yield batch


def model_temperature_table(model: Transformer, words: Iterable[np.ndarray], eps: float = EPS,
                            construction: CompiledModel | None = None, counterparts: dict | None = None) -> pd.DataFrame:
    """temperature_table of any model on words: (B, n) id arrays. With ``construction``, the heads
    in ``counterparts`` ({(layer, head): index into construction.heads}, as run_counterparts
    returns; default: each construction head's own slot, for a model that is that construction
    compiled in another mode) are judged on their counterpart's target sets."""
    if construction is not None and counterparts is None:
        counterparts = {(info.layer, info.head): c for c, info in enumerate(construction.heads)}
    names = {slot: construction.heads[c].subformula for slot, c in (counterparts or {}).items()}
    return head_temperatures(model.eval(), model_batches(model, words, construction, counterparts), eps, names)


def run_counterparts(run: RunFolder, min_mass: float = COUNTERPART_MASS) -> tuple[CompiledModel | None, dict]:
    """The hard construction of the run's formula and {(layer, head): construction head index}
    for each learned head whose best match (attention.best_matches) holds at least ``min_mass`` of
    its attention on that head's targets; (None, {}) when the formula has no construction."""
    try:
        construction = construction_for(run)
    except RunSkipped:
        return None, {}
    index = {(info.layer, info.head): c for c, info in enumerate(construction.heads)}
    best = best_matches(run)
    best = best[best.target_mass >= min_mass]
    return construction, {(int(row.layer), int(row.head)): index[(int(row.c_layer), int(row.c_head))]
                          for row in best.itertuples(index=False)}


def temperature_table(run: RunFolder, eps: float = EPS, min_mass: float = COUNTERPART_MASS) -> pd.DataFrame:
    """TEMPERATURE_COLUMNS of a run's trained heads, from the logits saved on its probe words;
    each head with a counterpart (run_counterparts) judged on its target sets.

    Raises RunSkipped without saved attention or checkpoint.
    """
    run.attention_splits()  # a run without saved attention is skipped before the model loads
    model = run.load_model()
    construction, counterparts = run_counterparts(run, min_mass)
    names = {slot: construction.heads[c].subformula for slot, c in counterparts.items()}
    return head_temperatures(model, saved_batches(run, construction, counterparts), eps, names)


# ---------------------------------------------------------------------------- extrapolation
def extrapolate_table(table: pd.DataFrame, factors: Sequence[float] = FACTORS, eps: float = EPS,
                      train_length: int | None = None, gap: str = "gap_min") -> pd.DataFrame:
    """Does each head stay hard at ``factor`` x the train length (EXTRAPOLATION_COLUMNS)?

    Model: the raw gap g (column ``gap`` of the table: gap_min or gap_median) stays what it is at
    the longest measured length, an assumption (bounded positional encodings keep raw scores,
    hence gaps, bounded; constructions with i/n features even shrink them as 1/n); tau_eff
    follows the head's temperature mode exactly, at the most visible keys n_keys of a word of
    length N = factor x train length. Its competitors m (visible keys off the target set) stay what
    they were where they did not grow with the measured lengths (a count head: the sink alone),
    else every visible key is taken to compete (m_q = n_q, the lemma's own form). The head stays
    hard iff every query q of that word that sees a key besides the sink has tau_eff(q) <= g /
    ln(m_q / eps) (with a mask and a length factor the binding query can be a short one); queries
    that see only the sink (strict masks: no competitor,
    and log 1 = 0 would make tau_eff infinite) are left out and counted (sink_only). n_keys,
    tau_eff and tau_required are given at the query with the most keys. Lengths at which a head
    had no query with a competitor (NaN gap; say an unused head whose keys all tie) are not
    extrapolated from.

    table: from temperature_table, model_temperature_table or temperature_runs (many runs: per
    run, the train length from its train_max_length column unless ``train_length`` is given; a
    run without one is left out, named in ``result.attrs["skipped"]``).
    """
    if gap not in ("gap_min", "gap_median"):
        raise ValueError(f"gap: expected gap_min or gap_median, got {gap!r}")
    settings = [c for c in SETTINGS if c in table.columns]
    table = table[table[gap].notna()].reset_index(drop=True)
    head_keys = ([RUN] if RUN in settings else []) + ["layer", "head"]
    longest = table.loc[table.groupby(head_keys).length.idxmax()] if not table.empty else table
    # competitors that did not grow over the measured lengths (two at least) are carried over as they
    # are; a table without the column (measured elsewhere) has every visible key compete
    steady = pd.Series(dtype=bool)
    if "competitors" in table.columns and not table.empty:
        spans = table.groupby(head_keys).agg(lengths=("length", "nunique"), low=("competitors", "min"),
                                             high=("competitors", "max"))
        steady = (spans.lengths > 1) & (spans.low == spans.high)
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
            competing = n[0] > 1  # the queries that see more than the sink
            key = tuple(row[k] for k in head_keys)
            m = torch.full_like(n[0], int(row.competitors)) if steady.get(key, False) else n[0]
            hard = bool((tau_eff[0][competing] <= row[gap] / torch.log(m[competing].double() / eps)).all())
            last = int(n[0].argmax())
            n_keys, competitors, tau_eff = int(n[0, last]), int(m[last]), float(tau_eff[0, last])
            required = row[gap] / math.log(competitors / eps)
            rows.append({**row[settings].to_dict(), "layer": row["layer"], "head": row["head"],
                         "temperature_mode": row.temperature_mode, "mask": row["mask"], "tau_head": row.tau_head,
                         "gap_used": row.get("gap_used", TOP_SECOND), "measured_length": row["length"],
                         "gap": row[gap], "factor": factor, "length": N, "n_keys": n_keys, "competitors": competitors,
                         "sink_only": int((~competing).sum()), "tau_eff": tau_eff, "tau_required": required, "hard": hard})
    result = pd.DataFrame(rows, columns=settings + list(EXTRAPOLATION_COLUMNS))
    result.attrs["skipped"] = list(dict.fromkeys(skipped))
    return result


def extrapolate(run: RunFolder, factors: Sequence[float] = FACTORS, eps: float = EPS,
                gap: str = "gap_min") -> pd.DataFrame:
    """extrapolate_table of one run, from its saved probe words and its train max length."""
    train_length = run.train_length("not extrapolated")
    return extrapolate_table(temperature_table(run, eps), factors, eps, train_length, gap)


# ---------------------------------------------------------------------------- many runs
def temperature_runs(runs, eps: float = EPS) -> pd.DataFrame:
    """temperature_table of many runs (RunFolders or paths), with their settings; skips as map_runs."""
    return map_runs(lambda run: temperature_table(run, eps), runs, TEMPERATURE_COLUMNS, "temperatures")


# ---------------------------------------------------------------------------- figure and summary
def plot_temperature(table: pd.DataFrame, extrapolation: pd.DataFrame | None = None) -> Figure:
    """Effective (solid) against required (dashed) temperature by length, one panel per head,
    log-log; one colour per configuration, the median over its seeds with a band from the lowest
    to the highest seed's required temperature; extrapolated points at factor x the train length
    (o: effective, filled where every seed stays hard; x: required). One legend entry per
    configuration, whatever the number of seeds."""
    heads = sorted(set(zip(table.layer, table["head"])))
    n_layers = max((layer for layer, _ in heads), default=0) + 1
    n_heads = max((head for _, head in heads), default=0) + 1
    figure = Figure(figsize=(3.2 * n_heads + 1.5, 2.6 * n_layers), layout="constrained")
    axes = figure.subplots(n_layers, n_heads, squeeze=False)
    table = table.assign(configuration=configuration_labels(table), tau_eff=_positive(table.tau_eff),
                         tau_required=_positive(table.tau_required))
    colours = {name: f"C{k % 10}" for k, name in enumerate(dict.fromkeys(table.configuration))}
    curves = table.groupby(["configuration", "layer", "head", "length"]).agg(
        tau_eff=("tau_eff", "median"), required=("tau_required", "median"), low=("tau_required", "min"),
        high=("tau_required", "max"))
    for (configuration, layer, head), curve in curves.groupby(level=["configuration", "layer", "head"]):
        ax, colour, length = axes[layer, head], colours[configuration], curve.index.get_level_values("length")
        ax.plot(length, curve.tau_eff, "-", color=colour, label=configuration or "median over seeds")
        ax.plot(length, curve.required, "--", color=colour)
        ax.fill_between(length, curve.low, curve.high, color=colour, alpha=0.15, linewidth=0)
    if extrapolation is not None and not extrapolation.empty:
        extrapolation = extrapolation.assign(configuration=configuration_labels(extrapolation),
                                             tau_eff=_positive(extrapolation.tau_eff),
                                             tau_required=_positive(extrapolation.tau_required))
        points = extrapolation.groupby(["configuration", "layer", "head", "length"]).agg(
            tau_eff=("tau_eff", "median"), required=("tau_required", "median"), hard=("hard", "all")).reset_index()
        for row in points.itertuples(index=False):
            ax, colour = axes[row.layer, row.head], colours.get(row.configuration, "k")
            ax.scatter([row.length], [row.tau_eff], marker="o", color=colour if row.hard else "none", edgecolors=colour)
            ax.scatter([row.length], [row.required], marker="x", color=colour)
    for (layer, head), ax in np.ndenumerate(axes):
        used = table[(table.layer == layer) & (table["head"] == head)].gap_used if "gap_used" in table else pd.Series()
        gap = "" if used.empty else f" ({'/'.join(sorted(used.unique()))} gap)"
        ax.set(xscale="log", yscale="log")
        ax.set_title(f"layer {layer} head {head}{gap}", fontsize="small")
    figure.supxlabel("word length")
    figure.supylabel("temperature")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize="x-small", title="configuration",
                  title_fontsize="x-small")
    figure.suptitle("effective (solid) vs required (dashed) temperature, median over seeds\n"
                    "extrapolated: o effective (filled: every seed stays hard), x required", fontsize="small")
    return figure


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

