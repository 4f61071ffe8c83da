"""analysis.study (`softhard study`): the reference study's summary, tables and figures, on the tiny study grid."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from softhard.models.temperature import TAU_MIN

from softhard.analysis.study import (
    EVALUATED,
    language_markdown,
    language_table,
    learned_table,
    generalization_table,
    main as study,
    markdown,
    mechanism_table,
    run_summary,
    write_results,
)
from tests.conftest import TINY_STUDY, TINY_STUDY_CELLS

pytestmark = pytest.mark.slow  # the tiny grid trains five runs


def last_validation(run_dir: Path) -> float:
    """The last val/string_accuracy of metrics.jsonl, read with json alone."""
    values = [json.loads(line).get("val/string_accuracy") for line in (run_dir / "metrics.jsonl").open()]
    return [v for v in values if v is not None][-1]


def evaluation_row(run_dir: Path, attention: str, length: int) -> dict:
    with open(run_dir / "evaluation.csv", newline="") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["attention"] == attention and int(r["length"]) == length]
    return row


def evaluation_at(run_dir: Path, attention: str, length: int) -> float:
    return float(evaluation_row(run_dir, attention, length)["string_accuracy"])


def bin_accuracy(run_dir: Path, split: str) -> float:
    with open(run_dir / "length_generalization.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    last = max(int(r["step"]) for r in rows)
    return float(np.mean([float(r["string_accuracy"]) for r in rows if int(r["step"]) == last and r["split"] == split]))


def test_one_row_per_run_traced_to_the_run_files(tiny_study):
    summary, heads, skipped = run_summary(tiny_study, learned=0.0)
    assert len(summary) == len(TINY_STUDY) and not skipped
    # classes in question 4's order, cells in the grid's order (grid.csv), not alphabetical
    assert summary["class"].tolist() == ["tie-breaking"] * 5 + ["counting"]
    assert summary["cell"].tolist()[:5] == ["in_fixed", "in_fixed", "in_logn", "in_logn", "in_learned"]
    for language, temperature, seed in TINY_STUDY:
        run_dir = tiny_study / f"{language}-{temperature}-seed{seed}"
        row = summary[summary["run"] == run_dir.name].iloc[0]
        assert (row["cell"], row["language"], row["seed"]) == (TINY_STUDY_CELLS[temperature], language, seed)
        assert row["class"] == {"since_ab": "tie-breaking", "majority": "counting"}[language]
        assert row["in_distribution"] == pytest.approx(last_validation(run_dir), abs=1e-12)
        for attention in ("as-trained", "hardened", "gap-rule"):
            key = attention.replace("-", "_")
            assert row[f"{key}_10x"] == evaluation_at(run_dir, attention, 50)
            assert row[f"{key}_100x"] == evaluation_at(run_dir, attention, 500)
        # head counts: kinds name every head; hardened rows switch some to a hard kind; gap-rule rows give
        # matched heads with a positive gap a temperature (a non-empty tau_ cell)
        hardened = evaluation_row(run_dir, "hardened", 50)
        assert row["heads"] == len(hardened["kinds"].split()) == 4
        assert row["hardened_heads"] == sum(not kind.endswith("=softmax") for kind in hardened["kinds"].split())
        for factor, length in ((10, 50), (100, 500)):
            gap = evaluation_row(run_dir, "gap-rule", length)
            assert row[f"gap_rule_heads_{factor}x"] == sum(bool(v) for k, v in gap.items() if k.startswith("tau_"))
        bins = [c for c in summary.columns if c.startswith("acc_")]
        assert bins and all(row[b] == pytest.approx(bin_accuracy(run_dir, b.removeprefix("acc_")), abs=1e-12)
                            for b in bins)
        # mean_tv: the mean of the run's matched heads' TV (every run "learned" at learned=0)
        tv = heads.loc[heads["run"] == run_dir.name, "tv"]
        assert len(tv) == 4 and row["mean_tv"] == pytest.approx(tv.mean()) and 0 <= row["mean_tv"] <= 1
        assert row["min_tv"] == tv.min()
        final = [v for line in (run_dir / "metrics.jsonl").open() for k, v in json.loads(line).items()
                 if k.startswith("temperature/")][-4:]  # the last logging call's four heads
        assert (row["tau_min"], row["tau_max"]) == pytest.approx((min(final), max(final)), abs=1e-12)


def test_learned_follows_the_threshold_and_the_tables_count_runs(tiny_study):
    summary, _, _ = run_summary(tiny_study, mechanism=False)  # the study's 0.99
    assert summary["learned"].tolist() == (summary["in_distribution"] >= 0.99).tolist()
    assert summary["mean_tv"].isna().all()
    everyone = summary.assign(learned=True)
    table = learned_table(everyone)
    assert table["runs"].sum() == len(TINY_STUDY) and (table["fraction"] == 1.0).all()
    nobody = learned_table(summary.assign(learned=False))
    assert (nobody["fraction"] == 0.0).all()
    general = generalization_table(everyone)
    both = general[general["runs"] == "all"].set_index(["cell", "class"])
    for (cell, name), group in everyone.groupby(["cell", "class"]):
        assert both.loc[(cell, name), "as_trained_10x_mean"] == pytest.approx(group["as_trained_10x"].mean())
        assert both.loc[(cell, name), "as_trained_10x_n"] == len(group)
        expected = group["as_trained_10x"].std() if len(group) > 1 else np.nan
        assert both.loc[(cell, name), "as_trained_10x_std"] == pytest.approx(expected, nan_ok=True)
    # Over the runs that learned: none learned, so no learned rows, and mechanism is empty.
    assert (generalization_table(summary.assign(learned=False))["runs"] == "all").all()
    assert mechanism_table(summary.assign(learned=False)).empty
    mechanism = mechanism_table(everyone)
    assert set(mechanism.columns) >= {f"{q}_mean" for q in ["mean_tv", *EVALUATED]}


def test_language_table_counts_and_averages_per_language_and_cell(tiny_study):
    summary, _, _ = run_summary(tiny_study, mechanism=False)
    summary["learned"] = summary["seed"] == 0  # one learned run per cell with seeds
    table = language_table(summary)
    longest = [c for c in summary.columns if c.startswith("acc_")][-1]
    assert table["runs"].sum() == len(summary) and table["learned"].sum() == summary["learned"].sum()
    for _, row in table.iterrows():
        group = summary[(summary["language"] == row["language"]) & (summary["cell"] == row["cell"])]
        assert row[longest] == pytest.approx(group[longest].mean())
        assert row[f"{longest}_learned"] == pytest.approx(group.loc[group["learned"], longest].mean(), nan_ok=True)
        assert row["hardened_100x"] == pytest.approx(group["hardened_100x"].mean(), nan_ok=True)
    text = language_markdown(table)
    first = table.iloc[0]
    assert f"{first['learned']}/{first['runs']} · {first[longest]:.2f}" in text and longest.removeprefix("acc_") in text


def test_a_missing_evaluation_is_reported_only_for_a_run_that_learned(tiny_study, tmp_path):
    """The study's grid evaluates only the runs that learned: a run that did not learn lacks evaluation.csv
    on purpose and is not reported; one that learned and lacks it is."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_study, runs)
    first = sorted(path for path in runs.iterdir() if (path / "evaluation.csv").is_file())[0]
    (first / "evaluation.csv").unlink()
    missing = [reason for reason in run_summary(runs, mechanism=False, learned=1.01)[2] if "evaluation.csv" in reason]
    assert missing == []
    summary, _, skipped = run_summary(runs, mechanism=False, learned=0.0)
    assert [reason for reason in skipped if "evaluation.csv" in reason] == [f"{first}: no evaluation.csv (run "
                                                                          f"`softhard evaluate {first}`)"]
    assert summary.loc[summary["run"] == first.name, "as_trained_10x"].isna().all()


def test_markdown_cells_spell_mean_std_max_and_count():
    table = pd.DataFrame({"cell": ["a", "b"], "x_mean": [0.5, np.nan], "x_std": [0.1, np.nan], "x_max": [0.6, np.nan],
                          "x_n": [3, 0]})
    text = markdown(table)
    assert "0.500 ± 0.100 (max 0.600, n 3)" in text and "– (n 0)" in text


def test_write_results_and_the_command(tiny_study, tmp_path, capsys):
    out = tmp_path / "results"
    assert study([str(tiny_study), "--out", str(out), "--learned", "0"]) == 0
    names = {path.name for path in out.iterdir()}
    assert {"summary.csv", "learned.csv", "learned.md", "generalization.csv", "generalization.md", "mechanism.csv",
            "mechanism.md", "mechanism_heads.csv", "languages.csv", "languages.md", "learned.png", "generalization.png", "mechanism.png"} <= names
    assert len(pd.read_csv(out / "summary.csv")) == len(TINY_STUDY)
    assert "in_logn" in (out / "learned.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--threshold", "0"], "--threshold 0.0 is not in (0, 1]"),
    (["--learned", "1.5"], "--learned 1.5 is not in [0, 1]"),
])
def test_bad_input_one_line_exit_2_nothing_written(tiny_study, tmp_path, capsys, args, message):
    out = tmp_path / "results"
    assert study([str(tiny_study), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_missing_runs_dir_and_an_out_that_is_a_file(tmp_path, capsys):
    assert study([str(tmp_path / "nowhere")]) == 2
    assert "RUNS_DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        write_results(tmp_path, tmp_path / "file")


def test_learned_temperatures_are_read_from_the_learned_runs(tiny_study, tmp_path):
    """temperature.csv: the runs with a learned temperature that learned (all, at --learned 0), each head's tau
    the checkpoint's TAU_MIN + exp(log_tau)."""
    out = tmp_path / "results"
    write_results(tiny_study, out, learned=0.0, mechanism=False)
    taus = pd.read_csv(out / "temperature.csv")
    assert set(taus["run"]) == {"since_ab-learned-seed0"} and (out / "temperature.png").is_file()
    state = torch.load(tiny_study / "since_ab-learned-seed0" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False)["state_dict"]
    for (layer, head), rows in taus.groupby(["layer", "head"]):
        (key,) = [k for k in state if k.endswith("log_tau") and f".{layer}." in k]
        expected = TAU_MIN + state[key][head].exp().item()
        assert rows["tau_head"].to_numpy() == pytest.approx(expected, rel=1e-6)
    write_results(tiny_study, tmp_path / "none", mechanism=False)  # at the study's 0.99
    summary = pd.read_csv(tmp_path / "none" / "summary.csv")
    learned = summary.loc[summary["temperature"] == "learned", "learned"].any()
    assert (tmp_path / "none" / "temperature.csv").exists() == learned
