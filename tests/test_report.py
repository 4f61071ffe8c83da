"""`softhard report` and the quickstart built on it: every section, skipped runs, bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from softhard.analysis.attention import PAIR, STATISTICS, best_matches
from softhard.analysis.report import build_report
from softhard.analysis.report import main as report
from softhard.analysis.runs import RunFolder
from softhard.data.ltl import parse
from softhard.models.compiler import compile_formula
from softhard.quickstart import main as quickstart
from softhard.train import run_folder
from softhard.train.run_folder import LENGTH_TABLE


def images_and_files(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + re.findall(r"`([\w.-]+\.csv)`", text)


@pytest.fixture(scope="module")
def built(tiny_grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    files = build_report(tiny_grid, out, title="tiny")
    return out, files


def test_report_has_every_section_for_every_formula(built):
    out, files = built
    assert [f.name for f in files] == ["report.md", "report.html"]
    text = (out / "report.md").read_text()
    for heading in ("## Runs", "## Length generalization", "### position accuracy", "## Formula `a S b`",
                    "## Formula `#a > #b`", "### Learned attention against the construction",
                    "### Effective temperature against the gap lemma", "### Probes of the residual stream"):
        assert heading in text
    assert text.count("### Probes of the residual stream") == 2
    assert "## Skipped" not in text  # every tiny run is complete
    for name in images_and_files(text):
        assert (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    assert html.count("<img") == text.count("![") and "<table" in html


def test_the_html_report_is_self_contained(built):
    # every figure inlined as a data URI holding the very PNG the markdown links
    out, _ = built
    html = (out / "report.html").read_text()
    sources = re.findall(r"<img src='([^']*)'", html)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", (out / "report.md").read_text())
    assert len(sources) == len(linked) > 0
    for source, name in zip(sources, linked):
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.removeprefix("data:image/png;base64,")) == (out / name).read_bytes()
    assert not re.search(r"(src|href)='(?!data:)", html)


def test_in_distribution_is_the_validation_split(built, tiny_grid):
    out, _ = built
    summary = pd.read_csv(out / "length_summary_position_accuracy.csv").set_index(["language", "temperature"])
    assert (summary.in_distribution_lengths == "validation, <= 5").all()
    last = {}
    for run in (folder for folder in tiny_grid.iterdir() if (folder / "metrics.jsonl").is_file()):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        last[run.name] = [r["val/position_accuracy"] for r in records if "val/position_accuracy" in r][-1]
    expected = (last["since_ab-log_n-seed0"] + last["since_ab-log_n-seed1"]) / 2
    assert summary.loc[("since_ab", "log_n"), "in_distribution_mean"] == pytest.approx(expected, rel=1e-12)
    text = (out / "report.md").read_text()
    assert "validation (in distribution)" in text and "test_6_10:" not in text


def test_report_tables_are_written_as_csv(built):
    out, _ = built
    best = pd.read_csv(out / "attention_best_since_ab.csv")
    assert {"layer", "head", "subformula", "operator", "target_rule", "target_mass", "tv", "margin"} <= set(best.columns)
    assert set(best.run) == {"since_ab-fixed-seed0", "since_ab-fixed-seed1", "since_ab-log_n-seed0",
                             "since_ab-log_n-seed1"}
    # the report's table is each run's own best_matches, stacked
    for run_dir, written in best.groupby("run_dir"):
        alone = best_matches(RunFolder(Path(run_dir)))
        columns = [*PAIR, *STATISTICS, "margin", "words"]
        pd.testing.assert_frame_equal(written[columns].reset_index(drop=True), alone[columns], check_dtype=False,
                                      rtol=1e-12)
    probes = pd.read_csv(out / "probes_majority.csv")
    # the stream after the block of each compiled head (0, the embedding, for local subformulas), as
    # the compiled construction's head metadata gives it; three streams: the embedding and two blocks
    compiled = compile_formula(parse("#a > #b"), "a,b", "hard")
    after = {info.subformula: info.layer + 1 for info in compiled.heads}
    subformulas = [str(node) for node in parse("#a > #b").subformulas()]
    assert sorted(probes.subformula) == sorted(subformulas * 3)
    assert probes.set_index("subformula").construction_layer.to_dict() == {s: after.get(s, 0) for s in subformulas}
    summary = pd.read_csv(out / "length_summary_position_accuracy.csv")
    assert len(summary) == 3  # majority/fixed, since_ab/fixed, since_ab/log_n
    temperatures = pd.read_csv(out / "temperature_majority.csv")
    assert {"gap_used", "counterpart", "no_competitor", "spread_max"} <= set(temperatures.columns)
    assert "sink_only" in pd.read_csv(out / "extrapolation_since_ab.csv").columns
    assert {"accuracy_std", "folds"} <= set(probes.columns)


def test_unusable_runs_are_listed_and_the_rest_reported(tiny_grid, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", runs / "complete")
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", runs / "no-attention")
    shutil.rmtree(runs / "no-attention" / "attention")
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", runs / "unfinished")
    (runs / "unfinished" / "length_generalization.csv").unlink()
    (runs / "unfinished" / "checkpoints" / "last.ckpt").unlink()
    modular = runs / "modular"
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", modular)
    info = json.loads((modular / "run_info.json").read_text())
    (modular / "run_info.json").write_text(json.dumps({**info, "formula": "#a % 17 = 0"}))
    shutil.copytree(tiny_grid / "since_ab-fixed-seed1", runs / "no-config")
    (runs / "no-config" / "config.yaml").unlink()
    (runs / "empty").mkdir()
    assert report([str(runs), "--out", str(tmp_path / "out"), "--format", "md"]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    skipped = text[text.index("## Skipped"):]
    assert "no-attention: no saved attention" in skipped
    assert "unfinished: no length_generalization.csv" in skipped and "unfinished: no checkpoint" in skipped
    assert "has no hard construction" in skipped and "modulus 17" in skipped
    assert "no-config: no train length (config.yaml data.max_length): not extrapolated" in skipped
    assert "no-config: no train length (config.yaml data.max_length): not probed" in skipped
    assert "## Formula `#a % 17 = 0`" in text  # its temperatures and probes are still reported
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize("option, value", [("--eps", "0"), ("--threshold", "1.5"), ("--probe-seeds", "x")])
def test_bad_options_name_the_value(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        report([str(tmp_path), option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {option}:" in err and repr(value) in err
    assert not (tmp_path / "report").exists()


def test_nothing_to_report_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softhard report: error: no run to report on") and "holds no run folder" in err
    assert not (tmp_path / "empty" / "report").exists()


def test_an_output_path_that_is_a_file_is_one_clear_error(tiny_grid, tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert report([str(tiny_grid), "--out", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err == f"softhard report: error: output folder {tmp_path / 'taken'} is a file\n"


def test_quickstart_refuses_epochs_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        quickstart(["--out", str(tmp_path / "qs"), "--epochs", "0"])
    assert exit_.value.code == 2 and "argument --epochs: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "qs").exists()


@pytest.mark.slow
def test_quickstart_writes_the_report(tmp_path, capsys):
    assert quickstart(["--out", str(tmp_path / "qs"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    report_file = tmp_path / "qs" / "report.md"
    assert str(report_file) in out
    text = report_file.read_text()
    assert "# softhard quickstart" in text and "## Formula `a S b`" in text and "## As trained, hardened, gap rule" in text
    assert "since_ab-nope_strict" in text and "since_ab-sinusoidal" in text and (tmp_path / "qs" / "report.html").exists()
    # the study's cells: the theory's NoPE with strict-past masks against sinusoidal, as the study grid file defines them
    configs = {run: (tmp_path / "qs" / run / "config.yaml").read_text() for run in ("since_ab-nope_strict", "since_ab-sinusoidal")}
    assert "mask: strict_past" in configs["since_ab-nope_strict"] and "positional: []" in configs["since_ab-nope_strict"]
    assert "- sinusoidal" in configs["since_ab-sinusoidal"] and "temperature: fixed" in configs["since_ab-sinusoidal"]
    evaluated = pd.read_csv(tmp_path / "qs" / "since_ab-sinusoidal" / "evaluation.csv")
    assert set(evaluated["attention"]) == {"as-trained", "hardened"} and sorted(set(evaluated["length"])) == [120, 1200]

    # interrupted: one run killed after its checkpoint (no table, no evaluation yet), the other trained but not
    # evaluated
    (tmp_path / "qs" / "since_ab-nope_strict" / LENGTH_TABLE).unlink()
    for run in ("since_ab-nope_strict", "since_ab-sinusoidal"):
        (tmp_path / "qs" / run / "evaluation.csv").unlink()
    assert quickstart(["--out", str(tmp_path / "qs"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("quickstart: reusing") == 1 and out.count("quickstart: training") == 1
    assert out.count("quickstart: evaluating") == 2
    assert all(run_folder.state(run) == "done" for run in (tmp_path / "qs").glob("*-*"))


def test_evaluated_runs_get_the_three_curves_and_how_far_each_reaches(built, tiny_study, tmp_path):
    """Runs with evaluation.csv (softhard evaluate at 50 and 500): as trained, hardened and gap rule side by
    side, and a breakdown length per configuration and setting checked against the files themselves."""
    assert "## As trained, hardened, gap rule" not in (built[0] / "report.md").read_text()  # no evaluation.csv
    out = tmp_path / "report"
    build_report(tiny_study, out, fmt="md", probe_seeds=0, threshold=0.95)
    text = (out / "report.md").read_text()
    assert "## As trained, hardened, gap rule" in text and "(evaluation_curves.png)" in text
    reach = pd.read_csv(out / "evaluation_reach.csv")
    assert set(reach["attention"]) == {"as-trained", "hardened", "gap-rule"}
    for run_dir in sorted(tiny_study.glob("*-seed*")):
        evaluated = pd.read_csv(run_dir / "evaluation.csv")
        for attention, rows in evaluated.groupby("attention"):
            below = rows.loc[rows["string_accuracy"] < 0.95, "length"]
            row = reach[(reach["run_dir"] == str(run_dir)) & (reach["attention"] == attention)].iloc[0]
            assert (pd.isna(row["breakdown_length"]) and below.empty) or row["breakdown_length"] == below.min()
    curves = pd.read_csv(out / "evaluation_curves.csv")
    since_ab = curves[(curves["language"] == "since_ab") & (curves["temperature"] == "log_n")
                      & (curves["attention"] == "hardened") & (curves["length"] == 500)].iloc[0]
    seeds = [pd.read_csv(tiny_study / f"since_ab-log_n-seed{seed}" / "evaluation.csv").query(
        "attention == 'hardened' and length == 500")["string_accuracy"].iloc[0] for seed in (0, 1)]
    assert since_ab["n_seeds"] == 2 and since_ab["mean"] == pytest.approx(sum(seeds) / 2)
    assert since_ab["max"] == max(seeds)
