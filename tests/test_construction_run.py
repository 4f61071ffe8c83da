"""`softhard construct --save-run`: a compiled construction read by analysis/ like a trained run."""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest
import torch

from softhard.analysis import attention
from softhard.analysis.report import main as report
from softhard.analysis.runs import RunFolder, find_runs
from softhard.cli import main as softhard
from softhard.data.ltl import parse
from softhard.models.compiler import compile_formula
from softhard.train.construction_run import COMPILE_FACTOR, save_construction_run
from softhard.train.run_folder import LENGTH_COLUMNS

TRAIN_LENGTH = 4
PROBE_WORDS = 3
FORMULAS = {"since": ("a S b", "a,b,c"), "counting": ("O a & #a > #b", "a,b")}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Soft-scaled constructions of FORMULAS saved as run folders under one parent folder."""
    root = tmp_path_factory.mktemp("constructions")
    for name, (formula, alphabet) in FORMULAS.items():
        save_construction_run(formula, alphabet, "soft-scaled", root / "runs" / name, max_length=TRAIN_LENGTH,
                              probe_words=PROBE_WORDS, cache_dir=root / "data")
    return root


def _compiled(name: str):
    formula, alphabet = FORMULAS[name]
    return compile_formula(parse(formula), alphabet, "soft-scaled", COMPILE_FACTOR * TRAIN_LENGTH)


def test_analysis_finds_the_runs_with_their_settings(saved):
    runs, skipped = find_runs(saved / "runs")
    assert skipped == [] and [run.name for run in runs] == ["counting", "since"]
    since = RunFolder(saved / "runs" / "since")
    assert since.language == "since_ab"  # the registry's name of a S b over a,b,c
    assert since.settings["train_max_length"] == TRAIN_LENGTH and since.settings["positional"] == "i/n"
    assert since.config["construction"] == {"mode": "soft-scaled", "compile_length": COMPILE_FACTOR * TRAIN_LENGTH}


@pytest.mark.parametrize("name", FORMULAS)
def test_saved_model_and_attention_are_the_compiled_ones(saved, name):
    run, compiled = RunFolder(saved / "runs" / name), _compiled(name)
    model = run.load_model()
    words = list(run.attention_words())
    assert [w.split for w in words][::PROBE_WORDS] == run.attention_splits() and len(words) % PROBE_WORDS == 0
    for word in words:
        ids = torch.as_tensor(word.ids[None])
        loaded, original = model(ids, return_attention=True), compiled.model(ids, return_attention=True)
        assert torch.equal(loaded.position_logits, original.position_logits)
        # the oracle: data.ltl's truth, saved with the word, and the compiled model's prediction
        assert ((original.position_logits[0] > 0).numpy() == word.truth).all()
        assert word.truth.tolist() == compiled.formula.evaluate(compiled.alphabet.decode(word.ids),
                                                                compiled.alphabet).tolist()
        for saved_layer, layer in zip(word.attention, original.attention):
            # saved from a padded batch, recomputed on the word alone: fp32 weights of order 1
            torch.testing.assert_close(saved_layer, layer[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", FORMULAS)
def test_length_table_is_exact_to_ten_times_the_train_length(saved, name):
    table = RunFolder(saved / "runs" / name).length_table()
    assert list(table.columns) == LENGTH_COLUMNS
    assert table.length.max() == 10 * TRAIN_LENGTH and table.length.min() == TRAIN_LENGTH + 1
    assert (table[["string_accuracy", "position_accuracy", "word_position_accuracy"]] == 1.0).all().all()


@pytest.mark.parametrize("name", FORMULAS)
def test_every_head_lands_on_its_own_construction_head(saved, name):
    run, compiled = RunFolder(saved / "runs" / name), _compiled(name)
    table = attention.match_heads(run)
    for info in compiled.heads:
        own = table[(table["layer"] == info.layer) & (table["head"] == info.head)
                    & (table["c_layer"] == info.layer) & (table["c_head"] == info.head)]
        assert len(own) == 1 and own.subformula.item() == info.subformula
        assert own.target_mass.item() >= 0.99, info.subformula


@pytest.fixture(scope="module")
def reported(saved, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert report([str(saved / "runs"), "--out", str(out), "--format", "md"]) == 0
    return out


def test_report_reads_the_runs_without_skipping_them(reported):
    text = (reported / "report.md").read_text()
    assert "## Skipped" not in text
    assert "## Formula `a S b`" in text and "## Formula `O a & (#a > #b)`" in text


def test_report_calibrates_on_the_constructions(reported):
    """The instrument's calibration (issue 15): on soft-scaled constructions saved as runs, every
    head is matched to its own construction head (or to one with the same targets: the two count
    heads) with TV <= 0.01 and mass >= 0.99, is hard at 10x and 100x the train length, the probes
    read each subformula exactly from its construction layer on, and in distribution is exact."""
    own = {(name, info.layer, info.head): info.subformula for name in FORMULAS for info in _compiled(name).heads}
    best = pd.concat(map(pd.read_csv, reported.glob("attention_best_*.csv")))
    best = best[[key in own for key in zip(best.run, best.layer, best["head"])]]  # not the model's unused slots
    assert len(best) == len(own)
    assert (best.tv <= 0.01).all() and (best.target_mass >= 0.99).all(), best
    for row in best.itertuples():
        assert row.subformula == own[row.run, row.layer, row.head] or row.operator == "#", row
    future = pd.concat(map(pd.read_csv, reported.glob("extrapolation_*.csv")))
    future = future[[key in own for key in zip(future.run, future.layer, future["head"])]]
    assert set(future.factor) == {10, 100} and future.hard.all(), future[~future.hard]
    probes = pd.concat(map(pd.read_csv, reported.glob("probes_*.csv")))
    constructed = probes[probes.layer >= probes.construction_layer]
    assert len(constructed) and (constructed.accuracy == 1.0).all(), constructed[constructed.accuracy < 1]
    summary = pd.read_csv(reported / "length_summary_string_accuracy.csv")
    assert summary.filter(like="validation").notna().all().all()


def test_the_construct_command_routes_save_run_here(tmp_path, capsys):
    out = tmp_path / "run"
    code = softhard(["construct", "--formula", "Y a", "--alphabet", "a,b", "--mode", "hard", "--save-run", str(out),
                     "--max-length", "3", "--probe-words", "1", "--cache-dir", str(tmp_path / "data")])
    assert code == 0 and capsys.readouterr().out.strip() == f"softhard construct: run folder {out}"
    table = RunFolder(out).length_table()
    assert (table.length.min(), table.length.max()) == (4, 30) and (table.string_accuracy == 1.0).all()
    assert sorted(p.name for p in (out / "attention").iterdir()) == \
        sorted(["validation", "test_4_6", "test_7_12", "test_13_24", "test_25_30"])


@pytest.mark.parametrize(
    "argv, message",
    [(["--formula", "#a % 17 = 0", "--alphabet", "a,b"], "modulus 17"),
     (["--formula", "a S", "--alphabet", "a,b"], "offset 3"),
     (["--formula", "a", "--alphabet", "a,b", "--max-length", "0"], "--max-length"),
     (["--formula", "a", "--alphabet", "a,b", "--probe-words", "-1"], "--probe-words")],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    argparse_error = message == "--max-length"  # refused by the parser: usage line, error line, exit 2
    with pytest.raises(SystemExit, match="2") if argparse_error else contextlib.nullcontext():
        assert softhard(["construct", *argv, "--save-run", str(out), "--cache-dir", str(tmp_path / "data")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage above it
    assert last.startswith("softhard construct: error:") and message in last
    assert not out.exists()


def test_a_folder_holding_files_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = softhard(["construct", "--formula", "a", "--alphabet", "a,b", "--save-run", str(out),
                     "--cache-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"softhard construct: error: --save-run {out}: the folder already holds files; choose another"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]



def test_a_failure_while_writing_leaves_nothing(tmp_path, capsys, monkeypatch):
    from softhard.train import construction_run

    def full_disk(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(construction_run, "capture_attention", full_disk)
    code = softhard(["construct", "--formula", "Y a", "--alphabet", "a,b", "--save-run=" + str(tmp_path / "runs" / "y"),
                     "--max-length", "2", "--cache-dir", str(tmp_path / "data")])
    assert code == 2 and capsys.readouterr().err.strip() == "softhard construct: error: disk full"
    assert list((tmp_path / "runs").iterdir()) == []
