"""Length generalization across runs (analysis/length_generalization.py).

Hand-built tables whose answers are known (exact mean/std/max over 3 seeds, a curve crossing the
threshold at a chosen length, one that never does), and the tiny grid of real runs checked
against pandas computed independently.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from softhard.analysis.length_generalization import (
    METRICS,
    accuracy_by_length,
    breakdown_length,
    config_columns,
    plot_accuracy_curves,
    summary_table,
    validation_accuracy,
    write_summary,
)
from softhard.analysis.runs import collect_runs

LENGTHS = [5, 10, 20, 40, 80]
SPLITS = {5: "test_5_10", 10: "test_5_10", 20: "test_11_40", 40: "test_11_40", 80: "test_41_80"}
# position_accuracy by length (LENGTHS) of three seeds: seed 0 drops below 0.95 at 40 (and recovers at
# 80: the first drop counts), seed 1 never, seed 2 at 10; the mean curve drops at 40.
CROSSING = {0: [1.0, 1.0, 0.97, 0.90, 0.96], 1: [1.0] * 5, 2: [1.0, 0.90, 0.90, 0.80, 0.70]}


def run_rows(accuracies, seed=0, language="lang", temperature="fixed", train=10, step=7, lengths=LENGTHS, **settings):
    """One run's final rows of collect_runs' table, position_accuracy = ``accuracies``."""
    setting = {"run": f"{language}-{temperature}-seed{seed}", "language": language, "formula": "a S b",
               "positional": "i/n", "temperature": temperature, "tau": "1.0", "seed": seed, "n_layers": 2,
               "n_heads": 2, "d_model": 16, "train_max_length": train, **settings}
    setting.setdefault("run_dir", f"/runs/{setting['run']}-{setting['d_model']}")
    accuracies = np.asarray(accuracies, dtype=float)
    return pd.DataFrame({**setting, "step": step, "split": [SPLITS.get(n, f"test_{n}_{n}") for n in lengths],
                         "length": lengths, "words": 4, "string_accuracy": accuracies / 2,
                         "position_accuracy": accuracies, "word_position_accuracy": accuracies ** 2})


def grid_table(*runs: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(runs, ignore_index=True)


def validation_of(table: pd.DataFrame, accuracy) -> pd.DataFrame:
    """A validation_accuracy table: position_accuracy ``accuracy`` per run of ``table``, in its order."""
    runs = list(dict.fromkeys(table["run_dir"]))
    accuracy = np.broadcast_to(np.asarray(accuracy, dtype=float), (len(runs),))
    return pd.DataFrame({"run_dir": runs, "validation_step": 7, "string_accuracy": accuracy / 2,
                         "position_accuracy": accuracy, "word_position_accuracy": accuracy ** 2})


@pytest.fixture
def crossing() -> pd.DataFrame:
    """Three seeds of CROSSING (temperature fixed) and three perfect seeds (temperature log_n)."""
    return grid_table(*[run_rows(acc, seed=s) for s, acc in CROSSING.items()],
                      *[run_rows([1.0] * 5, seed=s, temperature="log_n") for s in range(3)])


@pytest.fixture(scope="module")
def tiny(tiny_grid) -> pd.DataFrame:
    return collect_runs(tiny_grid)


# ---------------------------------------------------------------------------- known answers
def test_statistics_over_three_seeds_are_exact():
    table = grid_table(*[run_rows([1.0, value, 0.5, 0.5, 0.5], seed=s) for s, value in enumerate([0.9, 0.8, 1.0])])
    row = accuracy_by_length(table).set_index("length").loc[10]
    assert row["n_seeds"] == 3 and row["split"] == "test_5_10" and row["metric"] == "position_accuracy"
    assert row["mean"] == pytest.approx(0.9) and row["std"] == pytest.approx(0.1)
    assert (row["min"], row["max"]) == (0.8, 1.0)
    # The other metrics come from their own columns (string = accuracy / 2, whole word = accuracy ** 2).
    every = accuracy_by_length(table, METRICS).set_index(["metric", "length"])
    assert every.loc[("string_accuracy", 10), "mean"] == pytest.approx(0.45)
    assert every.loc[("word_position_accuracy", 10), "max"] == pytest.approx(1.0)
    assert every.loc[("word_position_accuracy", 10), "mean"] == pytest.approx((0.81 + 0.64 + 1.0) / 3)


def test_one_seed_has_no_spread():
    curves = accuracy_by_length(run_rows([1.0, 0.9, 0.8, 0.7, 0.6]))
    assert (curves["n_seeds"] == 1).all() and curves["std"].isna().all()
    assert curves["mean"].tolist() == curves["max"].tolist() == [1.0, 0.9, 0.8, 0.7, 0.6]


def test_breakdown_per_seed_and_of_the_mean_curve(crossing):
    table = breakdown_length(crossing, threshold=0.95).set_index(["temperature", "curve", "seed"])
    fixed = table.loc["fixed"]
    assert fixed.loc[("seed", 0), "breakdown_length"] == 40
    assert np.isnan(fixed.loc[("seed", 1), "breakdown_length"])  # never below
    assert fixed.loc[("seed", 2), "breakdown_length"] == 10
    mean = fixed.xs("mean", level="curve")
    assert mean["breakdown_length"].tolist() == [40] and mean["ratio"].tolist() == [4.0]
    assert fixed.loc[("seed", 0), "ratio"] == 4.0 and (table["longest_length"] == 80).all()
    assert table.loc["log_n", "breakdown_length"].isna().all()  # perfect seeds and their mean never drop
    assert table.attrs["threshold"] == 0.95 and table.attrs["metric"] == "position_accuracy"


def test_breakdown_threshold_is_strict_and_counts_a_dip_that_recovers():
    run = run_rows([1.0, 0.94, 1.0, 1.0, 0.95])
    assert breakdown_length(run, threshold=0.95)["breakdown_length"].tolist() == [10, 10]
    assert breakdown_length(run, threshold=0.94)["breakdown_length"].isna().all()  # 0.94 is not below 0.94


def test_summary_of_known_seeds(crossing):
    validation = validation_of(crossing, [1.0, 0.98, 0.95, 1.0, 1.0, 1.0])  # three fixed seeds, three log_n
    summary = summary_table(crossing, threshold=0.95, validation=validation).set_index("temperature")
    fixed, perfect = summary.loc["fixed"], summary.loc["log_n"]
    per_seed = {"in_distribution": [1.0, 0.98, 0.95],  # the validation split's
                "longest": [0.96, 1.0, 0.70],
                "mean_over_lengths": [np.mean(acc) for acc in CROSSING.values()],
                "breakdown_length": [40, 10]}  # the seeds that do break
    for quantity, values in per_seed.items():
        assert fixed[f"{quantity}_mean"] == pytest.approx(np.mean(values))
        assert fixed[f"{quantity}_std"] == pytest.approx(np.std(values, ddof=1))
        assert fixed[f"{quantity}_max"] == pytest.approx(np.max(values))
    assert (fixed["n_seeds"], fixed["breakdown_never"], fixed["mean_curve_breakdown"]) == (3, 1, 40)
    assert fixed["in_distribution_lengths"] == "validation, <= 10" and fixed["longest_length"] == 80
    assert perfect["breakdown_never"] == 3 and np.isnan(perfect["breakdown_length_mean"])
    assert np.isnan(perfect["mean_curve_breakdown"]) and perfect["in_distribution_mean"] == 1.0


def test_in_distribution_is_never_a_test_bin():
    # Trained up to 3, tested from 5: no test bin stands in for the training lengths; a run
    # without validation figures (no metrics.jsonl under its run_dir) has none
    run = run_rows([0.9, 0.7, 0.1, 0.1, 0.1], train=3)
    assert np.isnan(summary_table(run)["in_distribution_mean"].item())
    assert summary_table(run, validation=validation_of(run, 0.99))["in_distribution_mean"].item() == 0.99


def test_markdown_and_csv(crossing, tmp_path):
    path, markdown = write_summary(crossing, tmp_path / "out", threshold=0.95)
    assert pd.read_csv(path)["in_distribution_mean"].isna().all()  # these runs have no folders
    written = pd.read_csv(path)
    expected = summary_table(crossing, threshold=0.95)
    pd.testing.assert_frame_equal(written[["temperature", "in_distribution_mean", "breakdown_never"]],
                                  expected[["temperature", "in_distribution_mean", "breakdown_never"]],
                                  check_dtype=False)
    lines = markdown.splitlines()
    fixed, perfect = [line for line in lines if "| fixed" in line], [line for line in lines if "| log_n" in line]
    assert "position_accuracy" in lines[0] and len(fixed) == len(perfect) == 1
    assert "25 ± 21 (max 40), 1/3 never" in fixed[0] and "validation, <= 10: –" in fixed[0]
    assert perfect[0].rstrip(" |").endswith("never")


# ---------------------------------------------------------------------------- configurations and steps
def test_only_the_last_step_counts(crossing):
    earlier = crossing.assign(step=crossing["step"] - 1, position_accuracy=0.0)
    pd.testing.assert_frame_equal(accuracy_by_length(grid_table(earlier, crossing)), accuracy_by_length(crossing))


def test_settings_that_differ_split_configurations():
    table = grid_table(run_rows([1.0] * 5, seed=0, d_model=16), run_rows([0.5] * 5, seed=1, d_model=32))
    assert config_columns(table) == ["language", "positional", "temperature", "d_model", "train_max_length"]
    curves = accuracy_by_length(table)
    assert (curves["n_seeds"] == 1).all() and sorted(curves.groupby("d_model")["mean"].first()) == [0.5, 1.0]
    # A setting shared by every run is no column; seeds are never a configuration.
    assert "tau" not in curves and "seed" not in curves


# ---------------------------------------------------------------------------- bad input
def test_empty_table_is_a_clear_error(tmp_path):
    with pytest.warns(UserWarning, match="holds no run folder"):
        empty = collect_runs(tmp_path)
    for analysis in (accuracy_by_length, breakdown_length, summary_table, plot_accuracy_curves):
        with pytest.raises(ValueError, match="no rows"):
            analysis(empty)


def test_missing_metric():
    table = grid_table(run_rows([1.0] * 5, seed=0), run_rows([0.5] * 5, seed=1))
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        summary_table(table, metric="accuracy")
    with pytest.raises(ValueError, match="lacks column"):
        breakdown_length(table.drop(columns="split"))
    with pytest.raises(ValueError, match="no run holds word_position_accuracy"):
        accuracy_by_length(table.assign(word_position_accuracy=np.nan), "word_position_accuracy")
    # A run without the metric (a wandb run has no whole-word accuracy) is skipped, not averaged in.
    mixed = table.assign(word_position_accuracy=table["word_position_accuracy"].where(table["seed"] == 0))
    mixed.attrs["skipped"] = ["/runs/broken: no length_generalization.csv"]
    with pytest.warns(UserWarning, match="seed1-16: no word_position_accuracy"):
        curves = accuracy_by_length(mixed, "word_position_accuracy")
    assert (curves["n_seeds"] == 1).all() and (curves["mean"] == 1.0).all()
    assert curves.attrs["skipped"] == ["/runs/broken: no length_generalization.csv",
                                       "/runs/lang-fixed-seed1-16: no word_position_accuracy"]


# ---------------------------------------------------------------------------- figure
def test_figure_panels_lines_and_bands(crossing):
    other = run_rows([0.2, 0.4, 0.6, 0.8, 1.0], language="other", train=20)
    figure = plot_accuracy_curves(grid_table(crossing, other), threshold=0.9, band="range")
    lang, second = figure.axes
    assert (lang.get_title(), second.get_title()) == ("lang", "other")
    assert lang.get_xscale() == "log" and len(lang.collections) == 2  # one band per configuration
    curves = [line for line in lang.lines if line.get_marker() == "."]
    assert [line.get_label() for line in curves] == ["i/n, fixed", "i/n, log_n"]
    np.testing.assert_allclose(curves[0].get_ydata(), np.mean(list(CROSSING.values()), axis=0))
    assert len(lang.lines) == 4 and len(second.lines) == 3  # curves + train length + threshold
    assert second.lines[-2].get_xdata()[0] == 20 and second.lines[-1].get_ydata()[0] == 0.9
    # The range band spans min..max over seeds at every length.
    vertices = lang.collections[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(0.7) and vertices[:, 1].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="band"):
        plot_accuracy_curves(crossing, band="iqr")


def test_many_languages_wrap_without_empty_panels():
    table = grid_table(*[run_rows([1.0] * 5, language=f"l{i}") for i in range(4)])
    figure = plot_accuracy_curves(table)
    assert [axes.get_title() for axes in figure.axes] == ["l0", "l1", "l2", "l3"]


# ---------------------------------------------------------------------------- the tiny grid of real runs
def test_tiny_grid_matches_pandas(tiny):
    curves = accuracy_by_length(tiny, METRICS)
    # since_ab (fixed, log_n) x 2 seeds and majority (fixed) x 1 seed: 3 configurations.
    assert len(curves) == 3 * len(METRICS) * tiny["length"].nunique()
    for metric in METRICS:
        expected = tiny.groupby(["language", "temperature", "length"])[metric].agg(["count", "mean", "std", "max",
                                                                                    "min"])
        got = curves[curves["metric"] == metric].set_index(["language", "temperature", "length"]).sort_index()
        np.testing.assert_array_equal(got["n_seeds"], expected["count"])
        for statistic in ("mean", "std", "max", "min"):
            np.testing.assert_allclose(got[statistic], expected[statistic], equal_nan=True)
        splits = tiny.drop_duplicates(["language", "temperature", "length"]).set_index(
            ["language", "temperature", "length"])["split"].sort_index()
        assert got["split"].tolist() == splits.tolist()
    assert curves.loc[curves["language"] == "majority", "std"].isna().all()


def test_tiny_grid_breakdown_summary_and_figure(tiny):
    threshold = float(tiny["position_accuracy"].median())  # some runs cross it, at data-driven lengths
    breakdown = breakdown_length(tiny, threshold)
    seeds = breakdown[breakdown["curve"] == "seed"].set_index("run_dir")["breakdown_length"]
    for run_dir, rows in tiny.groupby("run_dir"):
        below = rows.loc[rows["position_accuracy"] < threshold, "length"]
        assert np.isnan(seeds[run_dir]) if below.empty else seeds[run_dir] == below.min()
    summary = summary_table(tiny, threshold)
    assert len(summary) == 3 and summary["n_seeds"].tolist() == [1, 2, 2]
    # In distribution: each run's last val/position_accuracy, read here from metrics.jsonl with json
    validation = {}
    for run_dir in tiny["run_dir"].unique():
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        validation[run_dir] = [r["val/position_accuracy"] for r in records if "val/position_accuracy" in r][-1]
    runs = tiny.drop_duplicates("run_dir").assign(val=lambda t: t["run_dir"].map(validation))
    expected = runs.groupby(["language", "temperature"])["val"].mean()
    np.testing.assert_allclose(summary.set_index(["language", "temperature"])["in_distribution_mean"], expected)
    assert (summary["in_distribution_lengths"] == "validation, <= 5").all()
    # pandas parses the JSON floats to within an ulp or two of json's
    assert validation_accuracy(tiny).set_index("run_dir")["position_accuracy"].to_dict() == pytest.approx(validation,
                                                                                                          rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing warned
        figure = plot_accuracy_curves(tiny, threshold=threshold)
    assert [axes.get_title() for axes in figure.axes] == ["majority", "since_ab"]
    assert [len(axes.lines) for axes in figure.axes] == [1 + 2, 2 + 2]


def test_runs_that_differ_in_any_config_key_are_not_pooled(tiny_grid, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_grid, runs)
    causal = runs / "since_ab-fixed-seed2-past"  # as seed 0 but trained with a causal mask: another configuration
    shutil.copytree(runs / "since_ab-fixed-seed0", causal)
    config = yaml.safe_load((causal / "config.yaml").read_text())
    config["model"]["transformer"]["mask"] = "past"
    config["seed_everything"], config["data"]["cache_dir"] = 2, "elsewhere"  # a seed and a path: no settings
    (causal / "config.yaml").write_text(yaml.safe_dump(config))
    table = collect_runs(runs)
    assert "model.transformer.mask" in table and "data.cache_dir" not in table
    summary = summary_table(table, 0.5).set_index(["language", "temperature", "model.transformer.mask"])
    assert summary.loc[("since_ab", "fixed", "none"), "n_seeds"] == 2
    assert summary.loc[("since_ab", "fixed", "past"), "n_seeds"] == 1

