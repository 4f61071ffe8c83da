"""The evaluation.csv files of many runs (`softhard evaluate`): as trained, hardened, gap rule.

``collect_evaluations`` stacks every run's evaluation.csv with the run's settings (as
analysis.runs.map_runs does for the other analyses); ``evaluation_curves`` gives, per
configuration, attention setting and length, the mean, std and max over seeds;
``evaluation_reach`` the breakdown length of each curve (the shortest evaluated length below
the threshold; NaN: never below up to the longest length evaluated), per seed and for the mean
curve, as analysis.length_generalization does for the test bins; ``plot_evaluation_curves`` draws
the three settings side by side, one row of panels per configuration.
"""

from __future__ import annotations

import textwrap

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from softhard.analysis import length_generalization
from softhard.analysis.evaluate import ATTENTIONS
from softhard.analysis.runs import RUN, RunSkipped, map_runs
from softhard.train.run_folder import EVALUATION_COLUMNS, EVALUATION_TABLE, read_evaluation_table

EVALUATION_METRIC = "string_accuracy"
COLUMNS = tuple(EVALUATION_COLUMNS[:5])  # attention, length, words and the two accuracies


def evaluation_table(run) -> pd.DataFrame:
    """A run's evaluation.csv (its COLUMNS); RunSkipped when the run has none."""
    try:
        return read_evaluation_table(run.path)[list(COLUMNS)]
    except FileNotFoundError:
        raise RunSkipped(f"{run.path}: no {EVALUATION_TABLE} (run `softhard evaluate {run.path}`)") from None


def collect_evaluations(runs) -> pd.DataFrame:
    """Every run's evaluation.csv with its settings; runs without one are in attrs["skipped"]."""
    return map_runs(evaluation_table, runs, COLUMNS, "evaluations")


def _keys(table: pd.DataFrame) -> list[str]:
    return [*length_generalization.config_columns(table), "attention"]


def evaluation_curves(table: pd.DataFrame, metric: str = EVALUATION_METRIC) -> pd.DataFrame:
    """Per configuration, attention setting and length: n_seeds, mean, std (ddof=1), min, max of ``metric``."""
    return length_generalization.seed_statistics(table, _keys(table), metric).reset_index()


def evaluation_reach(table: pd.DataFrame, threshold: float = length_generalization.DEFAULT_THRESHOLD,
                     metric: str = EVALUATION_METRIC) -> pd.DataFrame:
    """How far each attention setting reaches: the breakdown length per seed and of the mean curve.

    Columns: the configuration, attention, curve ("seed" or "mean"), seed, run_dir (NaN on mean
    rows), breakdown_length (NaN: never below ``threshold`` up to longest_length), longest_length.
    """
    keys = _keys(table)
    reach = length_generalization.breakdown_lengths(table, keys, metric, threshold)
    return reach[[*keys, "curve", "seed", RUN, "breakdown_length", "longest_length"]]


def plot_evaluation_curves(table: pd.DataFrame, metric: str = EVALUATION_METRIC,
                           threshold: float = length_generalization.DEFAULT_THRESHOLD) -> Figure:
    """One row per configuration, one panel per attention setting (as trained, hardened, gap rule):
    the mean over seeds against the length (log axis), shaded min..max, each seed a thin line."""
    curves = evaluation_curves(table, metric)
    configs = length_generalization.config_columns(table)
    settings = [a for a in ATTENTIONS if a in set(table["attention"])]
    groups = list(curves.groupby(configs, dropna=False, sort=True))
    labels = length_generalization.configuration_labels(curves)
    figure = Figure(figsize=(3.6 * len(settings), 3.0 * len(groups)), layout="constrained")
    grid = figure.subplots(len(groups), len(settings), squeeze=False, sharex=True, sharey=True)
    for row, (_, group) in zip(grid, groups):
        label = f"{group['language'].iloc[0]}: {labels[group.index[0]]}"
        for axes, attention in zip(row, settings):
            curve = group[group["attention"] == attention]
            seeds = table[(table["attention"] == attention) & table[RUN].isin(
                table.merge(curve[configs].drop_duplicates(), on=configs)[RUN])]
            for _, seed in seeds.groupby(RUN):
                axes.plot(seed["length"], seed[metric], color="grey", linewidth=0.6, alpha=0.6)
            line, = axes.plot(curve["length"], curve["mean"], marker=".")
            axes.fill_between(curve["length"], curve["min"], curve["max"], color=line.get_color(), alpha=0.2,
                              linewidth=0)
            axes.axhline(threshold, color="black", linestyle=":", linewidth=1)
            axes.set_xscale("log")
            lengths = sorted(set(curve["length"]))
            axes.set_xticks(lengths, [f"{n:g}" for n in lengths])
            axes.xaxis.set_minor_formatter(NullFormatter())
            axes.set_ylim(0, 1.02)
            axes.set_title(attention if axes is not row[0] else f"{textwrap.fill(label, 45)}\n{attention}",
                           fontsize="small")
    figure.supxlabel("word length")
    figure.supylabel(metric.replace("_", " "))
    return figure
