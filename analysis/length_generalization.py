"""Length generalization across runs: accuracy by length, breakdown length, a summary table, curves.

Every function takes the tidy table of ``analysis.runs.collect_runs`` (a row per run, step and
test length) and looks only at each run's last step, so a table collected with
``final_only=False`` gives the same answer.

A *configuration* is what a seed does not change: language, positional encoding, temperature
mode and train length always, plus every other setting (formula, tau, model size, and any
config.yaml key such as ``model.transformer.mask``, analysis.runs.other_settings) that takes
more than one value in the table (``config_columns``), so two runs are pooled as seeds
only when nothing but the seed tells them apart. Statistics over seeds are over runs: ``n_seeds``
counts the runs with a value, ``std`` uses ddof=1 and is NaN for a single seed (one run says
nothing about the spread; a 0 would claim that it does).

*In distribution* means the validation split: words of the training lengths (disjoint from the
training words), whose accuracy the run logs to metrics.jsonl as ``val/<metric>``
(``validation_accuracy``). The first test bin lies beyond the training lengths and is a test
length like any other.

The *breakdown length* of a curve is the shortest test length whose accuracy is below the
threshold; NaN means the curve never drops below it up to ``longest_length``, the longest
length tested. It is measured per seed and on the mean-over-seeds curve, which are different
numbers (one bad seed pulls the mean curve down early).

Bad input — an empty table, an unknown metric, no run holding the metric — raises one
``ValueError`` with a one-line message. Runs holding no value of the metric (wandb runs carry no
whole-word accuracy) are dropped with a warning and listed in ``attrs["skipped"]`` of the result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the OO API: no pyplot state, any backend
from matplotlib.ticker import LogFormatter

from softhard.analysis.runs import RUN, SETTINGS, is_other_setting
from softhard.train.run_folder import last_logged

METRICS = ("string_accuracy", "position_accuracy", "word_position_accuracy")
DEFAULT_METRIC = "position_accuracy"
DEFAULT_THRESHOLD = 0.95
# Settings that define a configuration even when every run shares them (the curves are drawn
# per language, and the train length places the dashed line and the ratio).
ALWAYS = ("language", "positional", "temperature", "train_max_length")
# Settings that tell seeds apart rather than configurations.
NOT_CONFIG = ("run", "seed", "run_dir")
REQUIRED = (*ALWAYS, "seed", "run_dir", "split", "length")


# ---------------------------------------------------------------------------- shared helpers
def config_columns(table: pd.DataFrame) -> list[str]:
    """The settings that define a configuration, in SETTINGS order, then the other settings
    (analysis.runs.other_settings) that vary (see the module docstring)."""
    varies = lambda c: table[c].nunique(dropna=False) > 1  # noqa: E731
    return ([c for c in SETTINGS if c not in NOT_CONFIG and c in table.columns and (c in ALWAYS or varies(c))]
            + [c for c in table.columns if is_other_setting(c) and varies(c)])


def configuration_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's configuration in a few words, for legends: the positional encoding and the
    temperature mode, then key=value for every other configuration setting that varies in
    ``table`` (config_columns; the language too when it varies); "" without settings columns."""
    keys = [k for k in config_columns(table)
            if k in ("positional", "temperature") or table[k].nunique(dropna=False) > 1]
    if not keys:
        return pd.Series("", index=table.index, dtype=object)
    parts = [[str(v) if k in ("positional", "temperature") else f"{k}={v}" for v in table[k]] for k in keys]
    return pd.Series([", ".join(row) for row in zip(*parts)], index=table.index, dtype=object)


def final_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The last step of each run that holds ``metric``; raises ValueError when nothing is left.

    The result's attrs["skipped"] extends the table's with one message per run dropped for
    lacking the metric (each also warned).
    """
    if table.empty:
        raise ValueError("length generalization: the table has no rows (no finished run was found)")
    if metric not in METRICS:
        raise ValueError(f"length generalization: unknown metric {metric!r} (one of {', '.join(METRICS)})")
    missing = [c for c in (*REQUIRED, metric) if c not in table.columns]
    if missing:
        raise ValueError(f"length generalization: the table lacks column(s) {', '.join(missing)} "
                         "(expected analysis.runs.collect_runs' table)")
    rows = table
    if "step" in rows.columns:  # wandb rows may carry no step: they are their own last step
        step = rows["step"].astype(float).fillna(-np.inf)
        rows = rows[step == step.groupby(rows[RUN]).transform("max")]
    held = rows[metric].notna().groupby(rows[RUN]).any()
    if not held.any():
        raise ValueError(f"length generalization: no run holds {metric} (try another metric)")
    skipped = [f"{run}: no {metric}" for run in held.index[~held]]
    for message in skipped:
        warnings.warn(f"skipped {message}", stacklevel=3)
    rows = rows[rows[metric].notna()].copy()
    rows.attrs = {"skipped": [*table.attrs.get("skipped", []), *skipped]}
    return rows


def seed_statistics(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Per group of ``keys`` and length: n_seeds, mean, std (ddof=1), min and max of ``metric`` over
    the runs (one row each per length); indexed by the keys and length."""
    return rows.groupby([*keys, "length"], dropna=False, sort=True)[metric].agg(
        n_seeds="count", mean="mean", std="std", min="min", max="max")


def _curves(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Mean, std, min and max over seeds of ``metric`` per configuration and length."""
    curves = seed_statistics(rows, keys, metric)
    # The test bin of each length (runs of one configuration normally agree; if not, both are named).
    curves.insert(0, "split", rows.groupby([*keys, "length"], dropna=False, sort=True)["split"].agg(
        lambda s: "|".join(sorted(set(s)))))
    curves.insert(1, "metric", metric)
    return curves.reset_index()


def _first_below(curves: pd.DataFrame, groups: list[str], value: str, threshold: float) -> pd.DataFrame:
    """Per group: the shortest length whose ``value`` is below ``threshold`` (NaN: none) and the longest length."""
    below = curves["length"].where(curves[value] < threshold)
    return curves.assign(below=below).groupby(groups, dropna=False, sort=True).agg(
        breakdown_length=("below", "min"), longest_length=("length", "max")).reset_index()


def breakdown_lengths(rows: pd.DataFrame, keys: list[str], metric: str, threshold: float) -> pd.DataFrame:
    """Per group of ``keys``: the shortest length whose ``metric`` is below ``threshold`` (NaN: none)
    and the longest length, per seed (curve "seed") and of the mean over seeds (curve "mean")."""
    per_seed = _first_below(rows, [*keys, "seed", RUN], metric, threshold).assign(curve="seed")
    mean = _first_below(seed_statistics(rows, keys, metric).reset_index(), keys, "mean", threshold).assign(curve="mean")
    table = pd.concat([per_seed, mean], ignore_index=True)
    table["seed"] = table["seed"].astype("Int64")
    return table


def _breakdown(rows: pd.DataFrame, keys: list[str], metric: str, threshold: float) -> pd.DataFrame:
    table = breakdown_lengths(rows, keys, metric, threshold)
    table["ratio"] = table["breakdown_length"] / table["train_max_length"].astype(float)
    return table[[*keys, "curve", "seed", RUN, "breakdown_length", "longest_length", "ratio"]]


def _with_attrs(table: pd.DataFrame, rows: pd.DataFrame, **attrs) -> pd.DataFrame:
    table.attrs = {"skipped": rows.attrs["skipped"], **attrs}
    return table


# ---------------------------------------------------------------------------- tables
def accuracy_by_length(table: pd.DataFrame, metric: str | Sequence[str] = DEFAULT_METRIC) -> pd.DataFrame:
    """Accuracy over seeds per configuration and test length, one row per metric asked for.

    ``metric``: one of METRICS, or several (e.g. METRICS) for a long table of all of them.
    Columns: the configuration (config_columns), length, split (its test bin), metric (which
    accuracy), n_seeds (runs with a value), mean, std (ddof=1, NaN for one seed), min, max.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    keys = config_columns(table)
    rows = [final_rows(table, m) for m in metrics]
    curves = pd.concat([_curves(r, keys, m) for r, m in zip(rows, metrics)], ignore_index=True)
    skipped = list(dict.fromkeys(message for r in rows for message in r.attrs["skipped"]))
    curves.attrs = {"skipped": skipped, "metric": metrics[0] if len(metrics) == 1 else metrics}
    return curves


def breakdown_length(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
                     metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Where each curve first drops below ``threshold``: per seed, and for the mean over seeds.

    Columns: the configuration, curve ("seed": one run; "mean": the mean-over-seeds curve),
    seed and run_dir (<NA>/NaN on "mean" rows), breakdown_length (shortest test length with
    accuracy < threshold; NaN: never below, up to longest_length), longest_length (longest
    length tested), ratio (breakdown_length / train_max_length).
    """
    rows = final_rows(table, metric)
    return _with_attrs(_breakdown(rows, config_columns(table), metric, threshold), rows,
                       metric=metric, threshold=threshold)


def validation_accuracy(table: pd.DataFrame) -> pd.DataFrame:
    """In-distribution accuracy per run: the last validation figures its metrics.jsonl holds.

    table: collect_runs' table (its run_dir column names the runs). Columns: run_dir,
    validation_step, then METRICS (from ``val/<metric>``; NaN where the run logged none). Runs
    without a readable metrics.jsonl (wandb rows, a folder that lost it) get NaN throughout.
    """
    rows = []
    for run_dir in dict.fromkeys(table[RUN]):
        row = {RUN: run_dir, "validation_step": np.nan, **{metric: np.nan for metric in METRICS}}
        last = last_logged(run_dir, "val/")
        if last is not None:
            row.update({"validation_step": last["step"],
                        **{metric: last.get(f"val/{metric}", np.nan) for metric in METRICS}})
        rows.append(row)
    return pd.DataFrame(rows, columns=[RUN, "validation_step", *METRICS])


def summary_table(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
                  metric: str = DEFAULT_METRIC, validation: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: accuracy in distribution, at the longest length, on average; where it breaks.

    Each quantity is measured per seed, then summarised over seeds as <quantity>_mean, _std
    (ddof=1) and _max:
      in_distribution: the validation split's accuracy, at the training lengths
        (``validation``: validation_accuracy's table, by default read from the runs' folders;
        NaN for a run without one); in_distribution_lengths says so;
      longest: accuracy at the longest test length (longest_length);
      mean_over_lengths: mean accuracy over all test lengths (each length weighs the same);
      breakdown_length: as in breakdown_length, over the seeds that do drop below the threshold;
        breakdown_never counts the seeds that never do.
    Also n_seeds, mean_curve_breakdown and mean_curve_ratio (the mean-over-seeds curve's breakdown
    length and its ratio to train_max_length).
    """
    rows = final_rows(table, metric)
    keys = config_columns(table)
    validation = validation_accuracy(rows) if validation is None else validation
    breakdown = _breakdown(rows, keys, metric, threshold)
    per_seed = _per_seed(rows, keys, metric, validation).merge(breakdown[breakdown["curve"] == "seed"],
                                                               on=[*keys, "seed", RUN])
    grouped = per_seed.groupby(keys, dropna=False, sort=True)
    quantities = ("in_distribution", "longest", "mean_over_lengths", "breakdown_length")
    summary = pd.concat([
        grouped.agg(n_seeds=(RUN, "count"), in_distribution_lengths=("in_distribution_lengths", "first"),
                    longest_length=("longest_length", "max")),
        grouped[list(quantities)].agg(["mean", "std", "max"]).pipe(_flatten),
        grouped["breakdown_length"].agg(lambda s: int(s.isna().sum())).rename("breakdown_never"),
    ], axis=1).reset_index()
    mean_curve = breakdown[breakdown["curve"] == "mean"]
    summary = summary.merge(mean_curve[[*keys, "breakdown_length", "ratio"]].rename(columns={
        "breakdown_length": "mean_curve_breakdown", "ratio": "mean_curve_ratio"}), on=keys, how="left")
    return _with_attrs(summary, rows, metric=metric, threshold=threshold)


def _per_seed(rows: pd.DataFrame, keys: list[str], metric: str, validation: pd.DataFrame) -> pd.DataFrame:
    """Per run: validation accuracy (in distribution), accuracy at the longest test length, mean over lengths."""
    longest = rows["length"] == rows.groupby(RUN)["length"].transform("max")
    per_seed = rows.assign(at_longest=rows[metric].where(longest)).groupby(
        [*keys, "seed", RUN], dropna=False, sort=True).agg(
        longest=("at_longest", "mean"), mean_over_lengths=(metric, "mean")).reset_index()  # keys hold train_max_length
    inside = validation.set_index(RUN)[metric]
    per_seed["in_distribution"] = per_seed[RUN].map(inside).astype(float)
    per_seed["in_distribution_lengths"] = "validation, <= " + per_seed["train_max_length"].astype(str)
    return per_seed


def _flatten(table: pd.DataFrame) -> pd.DataFrame:
    table.columns = [f"{quantity}_{statistic}" for quantity, statistic in table.columns]
    return table


# ---------------------------------------------------------------------------- markdown and files
def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """summary_table in compact, readable cells: "mean ± std (max m)", "never" for no breakdown."""
    keys = [c for c in summary.columns if c in SETTINGS]
    threshold = summary.attrs.get("threshold", DEFAULT_THRESHOLD)
    shown = summary[keys].copy()
    shown["seeds"] = summary["n_seeds"]
    shown["validation (in distribution)"] = (summary["in_distribution_lengths"].astype(str) + ": "
                                             + _spread(summary, "in_distribution"))
    shown["at longest"] = summary["longest_length"].astype(str) + ": " + _spread(summary, "longest")
    shown["mean over lengths"] = _spread(summary, "mean_over_lengths")
    never = summary["breakdown_never"].astype(str) + "/" + summary["n_seeds"].astype(str) + " never"
    broke = _spread(summary, "breakdown_length", digits=0)
    shown[f"breakdown (< {threshold:g})"] = broke.where(summary["breakdown_never"] == 0, broke + ", " + never) \
        .where(summary["breakdown_never"] < summary["n_seeds"], "never")
    shown["mean curve breakdown"] = summary["mean_curve_breakdown"].map(
        lambda v: "never" if pd.isna(v) else f"{v:.0f}")
    return shown


def summary_markdown(summary: pd.DataFrame) -> str:
    """summary_display as a markdown table under a one-line title."""
    title = f"Length generalization: {summary.attrs.get('metric', DEFAULT_METRIC)}, mean ± std (max) over seeds."
    return title + "\n\n" + summary_display(summary).to_markdown(index=False)


def _spread(summary: pd.DataFrame, quantity: str, digits: int = 3) -> pd.Series:
    """"mean ± std (max m)" per row; the ± part is left out where std is NaN (one seed)."""
    def cell(mean, std, top):
        if pd.isna(mean):
            return "–"
        spread = "" if pd.isna(std) else f" ± {std:.{digits}f}"
        return f"{mean:.{digits}f}{spread} (max {top:.{digits}f})"

    return pd.Series([cell(*values) for values in summary[[f"{quantity}_{s}" for s in ("mean", "std", "max")]]
                      .itertuples(index=False)], index=summary.index, dtype=object)


def write_summary(table: pd.DataFrame, out_dir, threshold: float = DEFAULT_THRESHOLD,
                  metric: str = DEFAULT_METRIC) -> tuple[Path, str]:
    """Write summary_table to <out_dir>/length_summary_<metric>.csv; return its path and the markdown."""
    summary = summary_table(table, threshold=threshold, metric=metric)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"length_summary_{metric}.csv"
    summary.to_csv(path, index=False)
    return path, summary_markdown(summary)


# ---------------------------------------------------------------------------- figure
def plot_accuracy_curves(table: pd.DataFrame, metric: str = DEFAULT_METRIC, threshold: float = DEFAULT_THRESHOLD,
                         band: str = "std") -> Figure:
    """One panel per language, one line per configuration: mean over seeds against length (log axis).

    band: "std" shades mean ± std (nothing for a single seed), "range" shades min..max.
    Dashed vertical line: the train length; dotted horizontal line: the threshold.
    """
    if band not in ("std", "range"):
        raise ValueError(f"plot_accuracy_curves: band must be 'std' or 'range', not {band!r}")
    curves = accuracy_by_length(table, metric)
    keys = config_columns(table)
    languages = list(dict.fromkeys(curves["language"]))
    columns = min(len(languages), 3)
    figure = Figure(figsize=(4.6 * columns, 3.6 * math.ceil(len(languages) / columns)), layout="constrained")
    grid = figure.subplots(math.ceil(len(languages) / columns), columns, squeeze=False, sharey=True)
    for axes in grid.flat[len(languages):]:
        figure.delaxes(axes)
    for axes, language in zip(grid.flat, languages):
        _panel(axes, curves[curves["language"] == language], keys, threshold, band)
        axes.set_title(language)
    figure.supxlabel("word length")
    figure.supylabel(metric.replace("_", " "))
    return figure


def _panel(axes, curves: pd.DataFrame, keys: list[str], threshold: float, band: str) -> None:
    groups = [k for k in keys if k != "language"]
    curves = curves.assign(label=configuration_labels(curves))
    for _, curve in curves.groupby(groups, dropna=False, sort=True):
        label = curve["label"].iloc[0]
        line, = axes.plot(curve["length"], curve["mean"], marker=".", label=label)
        low, high = (curve["mean"] - curve["std"], curve["mean"] + curve["std"]) if band == "std" \
            else (curve["min"], curve["max"])
        axes.fill_between(curve["length"], low.clip(0, 1), high.clip(0, 1), color=line.get_color(), alpha=0.2,
                          linewidth=0)
    for length in curves["train_max_length"].dropna().unique():
        axes.axvline(float(length), color="grey", linestyle="--", linewidth=1, label=f"train length {length}")
    axes.axhline(threshold, color="black", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xscale("log")
    for axis_formatter in (axes.xaxis.set_major_formatter, axes.xaxis.set_minor_formatter):
        axis_formatter(LogFormatter(labelOnlyBase=False))  # lengths as 20, 40, not 2 x 10^1
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize="x-small")
