"""`softhard grid` (train/grid.py, train/grid_file.py), the wandb sweep (configs/sweep.yaml) and DDP on CPU."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from softhard.train import run_folder
from softhard.train.cli import main as train
from tests.conftest import TINY_CONFIG, TINY_RUN
from tests.fixtures.resolved_configs import flatten, previous_configs
from softhard.train.grid import (
    check_runs,
    dotted_keys,
    evaluate_problem,
    execute,
    finished,
    resolve,
)
from softhard.train.grid_file import GridError, axis_labels, load_grid, package_configs
from softhard.train.grid import main as grid

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
SMOKE = CONFIGS / "grids" / "smoke.yaml"


def write_grid(tmp_path: Path, text: str) -> Path:
    """A grid file outside the repository: registry languages need no config_dir."""
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def stack(*languages: str) -> list[Path]:
    return [CONFIGS / f"{language}.yaml" for language in languages]


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def read_table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def cli_keys(capsys) -> set[str]:
    """Every dotted key `softhard train --print_config` prints."""
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train(["--print_config"])
    return dotted_keys(yaml.safe_load(capsys.readouterr().out)) | {"config"}


# ---------------------------------------------------------------------------- expansion


def test_grid_expands_to_the_cartesian_product(tmp_path):
    path = write_grid(tmp_path, """
languages: [since_ab, majority]
positional: [["sinusoidal"], ["i/n"]]
temperature: [fixed, log_n]
seeds: [0, 1]
overrides: {trainer.max_epochs: 5, data.max_length: 8}
""")
    runs = load_grid(path, tmp_path / "out")
    assert len(runs) == 2 * 2 * 2 * 2
    assert runs[0].name == "since_ab-sinusoidal-fixed-seed0"
    assert runs[-1].name == "majority-i_over_n-log_n-seed1"
    assert len({run.name for run in runs}) == 16
    command = runs[-1].command()
    assert command[1:4] == ["-m", "softhard", "train"]
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "--config"] == [str(c) for c in stack("majority")]
    for name, value in [("--model.transformer.positional", '["i/n"]'), ("--model.transformer.temperature", "log_n"),
                        ("--seed_everything", "1"), ("--run_dir", str(tmp_path / "out" / runs[-1].name)),
                        ("--wandb", "disabled"), ("--trainer.max_epochs", "5"), ("--data.max_length", "8")]:
        assert flag(command, name) == value, name


def test_axes_over_any_train_key_name_tag_and_set_each_run(tmp_path):
    path = write_grid(tmp_path, """
name: sizes
languages: [majority]
model.lr: [1e-3, 3e-4]
model.transformer.d_model: [32, 64]
model.transformer.mask: [none, strict_past]
""")
    runs = load_grid(path, tmp_path / "out")
    names = [run.name for run in runs]
    assert len(runs) == 8 and len(set(names)) == 8
    assert names[0] == "majority-lr=1e-3-d_model=32-mask=none-seed0"
    assert names[-1] == "majority-lr=3e-4-d_model=64-mask=strict_past-seed0"
    # The train CLI's own parser reads every run's command back as the grid point (an independent oracle).
    for run in (runs[0], runs[-1]):
        config = resolve(run.train_args())
        assert config["model"]["lr"] == float(run.axes["model.lr"])
        assert config["model"]["transformer"]["d_model"] == run.axes["model.transformer.d_model"]
        assert config["model"]["transformer"]["mask"] == run.axes["model.transformer.mask"]
        assert config["data"]["language"] == "majority" and config["run_dir"] == str(run.run_dir)
    # wandb: group = the grid's name, tags = the run's axis values; no wandb flags when wandb is off.
    offline = runs[-1].command("offline")
    assert flag(offline, "--wandb_group") == "sizes"
    assert json.loads(flag(offline, "--wandb_tags")) == [
        "language=majority", "lr=3e-4", "d_model=64", "mask=strict_past", "seed=0"]
    assert "--wandb_group" not in runs[-1].command("disabled") and "--wandb_tags" not in runs[-1].command("disabled")
    assert runs[-1].row()["model.transformer.d_model"] == "64"


def test_named_cells_cross_languages_and_seeds_but_not_each_other(tmp_path):
    path = write_grid(tmp_path, """
languages: [since_ab, majority]
cells:
  nope_strict: {positional: [], model.transformer.mask: strict_past}
  in_nlogn: {positional: ["i/n"], temperature: n_log_n, model.transformer.mask: none}
model.lr: [1e-3]
seeds: [0, 1]
""")
    runs = load_grid(path, tmp_path / "out")
    assert [run.name for run in runs] == [
        f"{language}-{cell}-lr=1e-3-seed{seed}" for language in ("since_ab", "majority")
        for cell in ("nope_strict", "in_nlogn") for seed in (0, 1)]
    # The train CLI's own parser reads the cell's settings back (they win over the language's config:
    # majority.yaml sets mask past and no encoding).
    majority = next(run for run in runs if run.name == "majority-in_nlogn-lr=1e-3-seed1")
    transformer = resolve(majority.train_args())["model"]["transformer"]
    assert (transformer["positional"], transformer["temperature"], transformer["mask"]) == (["i/n"], "n_log_n", "none")
    since_ab = resolve(runs[0].train_args())["model"]["transformer"]
    assert (since_ab["positional"], since_ab["mask"], since_ab["temperature"]) == ([], "strict_past", "log_n")
    assert runs[0].tags == ["language=since_ab", "cell=nope_strict", "lr=1e-3", "seed=0"]
    row = majority.row()
    assert (row["cell"], row["positional"], row["temperature"], row["model.transformer.mask"]) == (
        "in_nlogn", "i/n", "n_log_n", "none")
    check_runs(runs, path)


@pytest.mark.parametrize("text, message", [
    ("cells: [a]\n", "'cells' must be a non-empty mapping"),
    ("cells: {}\n", "'cells' must be a non-empty mapping"),
    ("cells: {a b: {model.lr: 0.1}}\n", "cell name 'a b' is not a plain name"),
    ("cells: {a: {}}\n", "cell 'a' must map dotted"),
    ("cells: {a: {seeds: 3}}\n", "cell 'a': key 'seeds' is not a dotted"),
    ("cells: {a: {run_dir: x}}\n", "cell 'a': key 'run_dir' is set by the grid itself"),
    ("cells: {a: {model.lr: 0.1}}\nmodel.lr: [0.1]\n", "cell 'a': key 'model.lr' is also an axis"),
    ("cells: {a: {model.lr: 0.1}}\noverrides: {model.lr: 0.1}\n", "cell 'a': key 'model.lr' is also an override"),
    ("cells: {a: {temperature: n, model.transformer.temperature: n}}\n", "is given twice"),
    ("cells: {a: {positional: [bogus]}}\n", "cell 'a': positional value ['bogus']: unknown encoding"),
    ("cells: {a: {model.transformer.d_mdl: 3}}\n", "unrecognized arguments: --model.transformer.d_mdl"),
])
def test_bad_cells_fail_before_any_run(tmp_path, text, message):
    path = write_grid(tmp_path, "languages: [since_ab]\n" + text)
    with pytest.raises(GridError) as error:
        check_runs(load_grid(path, tmp_path / "out"), path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_axes_are_named_by_their_last_part_unless_two_share_it(tmp_path):
    assert axis_labels(["model.transformer.dropout", "data.dropout", "model.lr"]) == {
        "model.transformer.dropout": "model.transformer.dropout", "data.dropout": "data.dropout", "model.lr": "lr"}
    path = write_grid(tmp_path, "languages: [majority]\nseed_everything: [3]\ntrainer.max_epochs: [1]\n"
                                "eval_every_n_steps: [null]\nmodel.transformer.bias: [false]\n")
    (run,) = load_grid(path, tmp_path / "out")
    assert run.name == "majority-max_epochs=1-eval_every_n_steps=null-bias=false-seed3" and run.seed == 3
    assert run.tags == ["language=majority", "max_epochs=1", "eval_every_n_steps=null", "bias=false", "seed=3"]
    assert resolve(run.train_args())["eval_every_n_steps"] is None


def test_a_grid_anywhere_trains_registry_languages_with_the_package_settings(tmp_path):
    """A grid file in a folder of its own, naming a registry language and nothing else, resolves to the
    language's full config of the previous layout (tests/fixtures/resolved_configs.json) but for the keys
    the grid sets."""
    previous = previous_configs()["dyck_depth3"]
    (run,) = load_grid(write_grid(tmp_path, "languages: [dyck_depth3]\n"), tmp_path / "out")
    assert run.configs == [package_configs() / "dyck_depth3.yaml"]
    resolved = flatten(resolve(run.train_args()))
    grid_sets = {"run_dir": str(run.run_dir), "wandb": "disabled", "trainer.enable_progress_bar": False}
    assert {key: resolved[key] for key in previous} == previous | grid_sets


def test_a_mapping_stacks_your_config_files_on_the_package_ones(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "slow.yaml").write_text("model:\n  lr: 0.0001\n")
    (tmp_path / "mine" / "formula.yaml").write_text("data:\n  formula: a\n  alphabet: a,b\n")
    path = write_grid(tmp_path, "languages: {since_ab: mine/slow.yaml, last_letter: [mine/formula.yaml, mine/slow.yaml]}\n")
    since_ab, custom = load_grid(path, tmp_path / "out")
    assert since_ab.name == "since_ab-seed0" and custom.name == "last_letter-seed0"
    assert since_ab.configs == [*stack("since_ab"), tmp_path / "mine" / "slow.yaml"]
    assert custom.configs == [*stack(), tmp_path / "mine" / "formula.yaml", tmp_path / "mine" / "slow.yaml"]
    assert "--model.transformer.positional" not in since_ab.command()
    config = resolve(since_ab.train_args())
    assert config["model"]["lr"] == 0.0001 and config["model"]["transformer"]["temperature"] == "log_n"
    assert resolve(custom.train_args())["data"]["formula"] == "a"


def test_shipped_grids_expand():
    study = load_grid(CONFIGS / "grids" / "study.yaml", "runs/grids/study")
    spec = yaml.safe_load((CONFIGS / "grids" / "study.yaml").read_text())
    assert len(spec["languages"]) >= 12 and len(spec["seeds"]) >= 3
    assert len(study) == len(spec["languages"]) * len(spec["cells"]) * len(spec["seeds"])
    assert {run.name for run in study} >= {"since_ab-nope_strict-seed2", "majority-in_nlogn-seed0"}
    # Every cell sets what the languages' own configs choose per class, so a cell is the same model everywhere.
    for run in study:
        assert {"model.transformer.positional", "model.transformer.temperature", "model.transformer.mask"} <= set(run.axes)
    smoke = load_grid(SMOKE, "out")
    assert [run.name for run in smoke] == ["since_ab-i_over_n-fixed-seed0", "since_ab-i_over_n-log_n-seed0"]


@pytest.mark.parametrize("text, message", [
    ("languages: [since_ab]\ntemperatures: [fixed]\n", "unrecognized arguments: --temperatures fixed"),
    ("languages: [since_ab]\nmodel.transformer.d_modle: [32]\n", "unrecognized arguments: --model.transformer.d_modle"),
    ("languages: [since_ab]\nmodel.lr: [0.001, fast]\n", "run since_ab-lr=fast-seed0: `softhard train` refuses it"),
    ("languages: [since_ab]\noverrides: {trainer.max_epoch: 3}\n",
     "'trainer.max_epoch' is not a `softhard train` key; did you mean 'trainer.max_epochs'?"),
    ("languages: [since_ab]\nmodel.transformer.d_mod: [32]\n", "'model.transformer.d_mod' is not a `softhard train` key"),
    ("languages: [since_ab]\nmodel.lr: 0.001\n", "'model.lr' must be a list of values (an axis)"),
    ("languages: [since_ab]\nmodel.lr: [0.001]\noverrides: {model.lr: 0.01}\n", "'model.lr' is also an axis"),
    ("languages: [since_ab]\ntemperature: [fixed]\nmodel.transformer.temperature: [log_n]\n",
     "model.transformer.temperature is given twice"),
    ("languages: [since_ab]\nrun_dir: [a, b]\n", "'run_dir' is set by the grid itself"),
    ("config_dir: .\nlanguages: [since_ab]\n", "'config_dir' is gone"),
    ("positional: [[i]]\n", "missing key 'languages'"),
    ("languages: [since_ab, no_such_language]\n", "'no_such_language' is not a registry language"),
    ("languages: {mine: nowhere.yaml}\n", "language 'mine': config"),
    ("languages: [since_ab]\nevaluate: [factor]\n", "'evaluate' must be a mapping"),
    ("languages: [since_ab]\nevaluate: {factor: {a: 1}}\n", "evaluate factor: expected a number"),
    ("languages: [since_ab]\nevaluate_learned: 0.99\n", "'evaluate_learned' needs an 'evaluate'"),
    ("languages: [since_ab]\nevaluate: {factor: 10}\nevaluate_learned: 99\n", "got 99"),
    ("languages: []\n", "'languages' is empty"),
    ("languages: [since_ab]\npositional: []\n", "'positional' is empty"),
    ("languages: [since_ab]\nseeds: []\n", "'seeds' is empty"),
    ("languages: [since_ab]\ntemperature: fixed\n", "'temperature' must be a list"),
    ("languages: [since_ab]\npositional: [i/n]\n", "positional value 'i/n'"),
    ("languages: [since_ab]\npositional: [[i, bogus]]\n", "unknown encoding 'bogus'"),
    ("languages: [since_ab]\ntemperature: [fixed, cold]\n", "unknown temperature 'cold'"),
    ("languages: [since_ab]\nseeds: [0, one]\n", "seeds value 'one'"),
    ("languages: [since_ab]\noverrides: {seed_everything: 3}\n", "overrides key 'seed_everything'"),
    ("languages: [since_ab]\noverrides: [trainer.max_epochs]\n", "'overrides' must be a mapping"),
    ("languages: [since_ab]\npositional: [[i], [i]]\n", "two runs would share the folder since_ab-i-seed0"),
])
def test_bad_grid_files_fail_before_any_run(tmp_path, capsys, text, message):
    path = write_grid(tmp_path, text)
    with pytest.raises(GridError, match=None) as error:
        check_runs(load_grid(path, tmp_path / "out"), path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert grid(["--grid", str(path), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_grid_file_and_bad_options(tmp_path, capsys):
    assert grid(["--grid", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert grid(["--grid", str(SMOKE), "--parallel", "0"]) == 2
    assert "--parallel must be >= 1" in capsys.readouterr().err


def test_dry_run_lists_commands_and_starts_nothing(tmp_path, capsys):
    assert grid(["--grid", str(SMOKE), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "since_ab-i_over_n-log_n-seed0" in out and "--model.transformer.temperature log_n" in out
    assert "2 runs" in out and not (tmp_path / "out").exists()


def test_run_folder_states_decide_skip_resume_or_restart(tmp_path):
    path = write_grid(tmp_path, "languages: [since_ab]\nseeds: [0, 1, 2, 3]\n")
    runs = load_grid(path, tmp_path / "out")
    (runs[0].run_dir / "checkpoints").mkdir(parents=True)
    (runs[0].run_dir / "length_generalization.csv").write_text("step\n")
    (runs[1].run_dir / "checkpoints").mkdir(parents=True)
    (runs[1].run_dir / "checkpoints" / "last.ckpt").write_text("")
    runs[2].run_dir.mkdir(parents=True)
    (runs[2].run_dir / "run_info.json").write_text("{}")
    assert [run_folder.state(run.run_dir) for run in runs] == ["done", "resume", "partial", "new"]
    assert runs[1].command(resume=True)[-2:] == ["--ckpt_path", "last"]


def test_evaluate_key_builds_the_evaluate_command(tmp_path):
    path = write_grid(tmp_path, "languages: [since_ab]\nevaluate: {factor: 100, attention: [as-trained, hardened, gap-rule]}\n")
    (run,) = load_grid(path, tmp_path / "out")
    assert run.evaluate_command() == [sys.executable, "-m", "softhard", "evaluate", str(run.run_dir), "--factor", "100",
                                      "--attention", "as-trained,hardened,gap-rule"]
    (plain,) = load_grid(write_grid(tmp_path, "languages: [since_ab]\n"), tmp_path / "out")
    assert plain.evaluate is None and plain.evaluated
    usage = "usage: softhard evaluate RUN_DIR [--lengths L] [--factor F] [--attention A] [--attention-kinds K]"
    assert evaluate_problem(run.evaluate, usage) is None
    assert "no option --factor" in evaluate_problem(run.evaluate, usage.replace("--factor", "--factors"))
    assert "no option --attention" in evaluate_problem(run.evaluate, usage.replace("--attention A", ""))
    assert "lacks" in evaluate_problem(run.evaluate, None)


def test_a_trained_run_without_its_evaluation_is_evaluated_then_skipped(tmp_path):
    """A done run folder of an evaluating grid runs only the evaluation, appending to its log; a
    stand-in evaluate command writes the evaluation file the real one would."""
    (run,) = load_grid(write_grid(tmp_path, "languages: [since_ab]\nevaluate: {factor: 100}\n"), tmp_path / "out")
    run.run_dir.mkdir(parents=True)
    (run.run_dir / run_folder.LENGTH_TABLE).write_text("step\n")
    run.log.write_text("training log\n")
    assert run_folder.state(run.run_dir) == "done" and not finished(run)
    stand_in = [sys.executable, "-c", f"open({str(run.run_dir / 'evaluation.csv')!r}, 'w').write('attention\\n')"]
    run.evaluate_command = lambda: stand_in
    execute(run, "disabled", dict(os.environ))
    assert (run.status, run.exit_code) == ("ok", 0) and finished(run)
    assert run.log.read_text().startswith("training log\n$ ")
    failing = load_grid(write_grid(tmp_path, "languages: [since_ab]\nevaluate: {factor: 100}\n"), tmp_path / "out2")[0]
    failing.run_dir.mkdir(parents=True)
    (failing.run_dir / run_folder.LENGTH_TABLE).write_text("step\n")
    failing.evaluate_command = lambda: [sys.executable, "-c", "raise SystemExit(3)"]
    execute(failing, "disabled", dict(os.environ))
    assert (failing.status, failing.exit_code) == ("failed", 3)


def test_evaluate_learned_evaluates_only_runs_whose_validation_reaches_it(tmp_path):
    """With evaluate_learned, a trained run below the threshold (by its last validation row) is finished
    without an evaluation; one at the threshold is evaluated; an untrained one is not finished."""
    grid = write_grid(tmp_path, "languages: [since_ab]\nseeds: [0, 1, 2]\nevaluate: {factor: 100}\nevaluate_learned: 0.99\n")
    below, at, untrained = load_grid(grid, tmp_path / "out")
    for run, accuracy in ((below, 0.98), (at, 0.99)):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / run_folder.LENGTH_TABLE).write_text("step\n")
        rows = [{"step": 10, "val/string_accuracy": 1.0}, {"step": 20, "train/loss": 0.1},
                {"step": 20, "val/string_accuracy": accuracy}, {"step": 20, "lengthgen/x": 0.5}]
        (run.run_dir / run_folder.METRICS_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert below.evaluated and finished(below) and not below.learned()
    assert at.learned() and not at.evaluated and not finished(at)
    assert not untrained.learned() and not untrained.evaluated and not finished(untrained)
    at.evaluate_command = lambda: [sys.executable, "-c",
                                   f"open({str(at.run_dir / 'evaluation.csv')!r}, 'w').write('attention\\n')"]
    below.evaluate_command = lambda: [sys.executable, "-c", "raise SystemExit(3)"]  # must not be called
    for run in (below, at):
        execute(run, "disabled", dict(os.environ))
        assert (run.status, run.exit_code) == ("ok", 0) and finished(run)
    assert (at.run_dir / "evaluation.csv").is_file() and not (below.run_dir / "evaluation.csv").exists()


# ---------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_tiny_grid_over_lr_runs_in_parallel_then_skips_on_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the configs' data cache (runs/data) lands in tmp_path
    path = write_grid(tmp_path, yaml.safe_dump({"languages": {"since_ab": str(TINY_CONFIG)}, "temperature": ["log_n"],
                                                "model.lr": [0.001, 0.0003], "overrides": {"trainer.max_steps": 2}}))
    out = tmp_path / "out"
    assert grid(["--grid", str(path), "--parallel", "2", "--out", str(out)]) == 0
    rows = read_table(out / "grid.csv")
    assert [row["status"] for row in rows] == ["ok", "ok"], [Path(row["run_dir"] + ".log").read_text()[-2000:]
                                                            for row in rows]
    assert [row["model.lr"] for row in rows] == ["0.001", "0.0003"] and rows[0]["temperature"] == "log_n"
    for row in rows:
        assert row["exit_code"] == "0" and float(row["seconds"]) > 0
        assert (Path(row["run_dir"]) / "length_generalization.csv").is_file()
        assert Path(row["run_dir"] + ".log").is_file()
        config = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())  # complete: every section
        assert config["model"]["lr"] == float(row["model.lr"]) and config["trainer"]["gradient_clip_val"] == 1.0
        assert config["model"]["transformer"]["positional"] == ["i/n"] and config["data"]["language"] == "since_ab"
    assert str(out / "grid.csv") in capsys.readouterr().out

    assert grid(["--grid", str(path), "--parallel", "2", "--out", str(out)]) == 0
    assert [row["status"] for row in read_table(out / "grid.csv")] == ["skipped", "skipped"]


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_others_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.yaml").write_text("model:\n  objective: nonsense\ndata:\n  language: since_ab\n")
    path = write_grid(tmp_path, f"languages: {{since_ab: '{TINY_CONFIG}', broken: [broken.yaml, '{TINY_CONFIG}']}}\n"
                                "overrides: {trainer.max_steps: 2}\n")
    out = tmp_path / "out"
    assert grid(["--grid", str(path), "--parallel", "2", "--out", str(out)]) == 1
    rows = {row["language"]: row for row in read_table(out / "grid.csv")}
    assert rows["since_ab"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed" and rows["broken"]["exit_code"] == "2"
    assert "objective: unknown value 'nonsense'" in (out / "broken-seed0.log").read_text()
    captured = capsys.readouterr()
    assert "FAILED broken-seed0" in captured.err and "failed: broken-seed0" in captured.out


# ---------------------------------------------------------------------------- the wandb sweep


def test_the_wandb_sweep_file_runs_locally_as_its_grid(tmp_path):
    """configs/sweep.yaml is a grid file too: its values become axes and its value entries overrides, the
    same runs (names and commands) as the grid file of the same cross product."""
    sweep = load_grid(CONFIGS / "sweep.yaml", tmp_path)
    spec = yaml.safe_load((CONFIGS / "sweep.yaml").read_text())["parameters"]
    grid_file = write_grid(tmp_path, yaml.safe_dump(sort_keys=False, data={
        "languages": spec["data.language"]["values"], "positional": spec["model.transformer.positional"]["values"],
        "temperature": spec["model.transformer.temperature"]["values"], "seeds": spec["seed_everything"]["values"],
        "overrides": {key: value["value"] for key, value in spec.items() if "value" in value}}))
    crossed = load_grid(grid_file, tmp_path)
    assert [run.name for run in sweep] == [run.name for run in crossed] and len(sweep) == 216
    assert [run.command() for run in sweep] == [run.command() for run in crossed]
    assert sweep[0].group == "softhard-study" and crossed[0].group == "grid"


@pytest.mark.parametrize("text, message", [
    ("method: random\nparameters: {data.language: {values: [since_ab]}}\n", "method 'random'"),
    ("parameters: {data.language: {values: [since_ab]}, model.lr: [0.1]}\n", "parameter 'model.lr' must be"),
    ("parameters: {data.language: {values: [since_ab]}, model.lr: {value: 0.1}}\noverrides: {model.lr: 0.2}\n",
     "parameter 'model.lr' is given twice"),
])
def test_bad_sweep_files_fail_before_any_run(tmp_path, text, message):
    with pytest.raises(GridError) as error:
        load_grid(write_grid(tmp_path, text), tmp_path / "out")
    assert message in str(error.value)


def test_sweep_is_a_grid_over_cli_keys(capsys):
    sweep = yaml.safe_load((CONFIGS / "sweep.yaml").read_text())
    assert sweep["method"] == "grid" and "${args}" in sweep["command"]
    keys = cli_keys(capsys)
    assert sorted(set(sweep["parameters"]) - keys) == []
    for language in sweep["parameters"]["data.language"]["values"]:
        assert (CONFIGS / f"{language}.yaml").is_file(), language


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("softhard") is None, reason="the sweep command calls the softhard console script")
def test_sweep_command_resolves_like_a_wandb_agent():
    """Expand the command for one grid point the way `wandb agent` does and let the CLI print
    the config it would train: the language's config, then the sweep's values on top."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    sweep = yaml.safe_load((CONFIGS / "sweep.yaml").read_text())
    point = {"data.language": "majority", "model.transformer.positional": ["i/n"],
             "model.transformer.temperature": "log_n", "seed_everything": 2, "trainer.max_epochs": 20,
             "trainer.log_every_n_steps": 5}
    assert set(point) == set(sweep["parameters"])
    args = create_sweep_command_args({"args": {key: {"value": value} for key, value in sorted(point.items())}})
    command = []
    for part in sweep["command"]:
        command += args[part[2:-1]] if part.startswith("${") else [part]
    env = {**os.environ, "WANDB_SWEEP_ID": "sweep1", "WANDB_RUN_ID": "run1", "WANDB_MODE": "disabled"}
    result = subprocess.run([*command, "--print_config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["data"]["language"] == "majority"
    assert config["model"]["transformer"]["mask"] == "past"  # from configs/majority.yaml
    assert config["trainer"]["gradient_clip_val"] == 1.0  # from configs/defaults.yaml
    assert config["model"]["transformer"]["positional"] == ["i/n"]  # from the sweep
    assert config["model"]["transformer"]["temperature"] == "log_n"
    assert config["seed_everything"] == 2 and config["trainer"]["max_epochs"] == 20
    assert config["run_dir"] == "runs/sweeps/sweep1/run1" and config["wandb"] == "online"


# ---------------------------------------------------------------------------- DDP on CPU


def run_ddp(tmp_path: Path, strategy: str, extra_env: dict) -> tuple[subprocess.CompletedProcess, Path]:
    run_dir = tmp_path / strategy
    command = [sys.executable, "-m", "softhard", "train", *(arg for c in stack("since_ab") for arg in ("--config", str(c))),
               *TINY_RUN, "--trainer.max_steps", "2",
               "--data.cache_dir", str(tmp_path / "data"), "--run_dir", str(run_dir),
               "--trainer.accelerator", "cpu", "--trainer.strategy", strategy, "--trainer.devices", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra_env}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    return result, run_dir


@pytest.mark.slow
def test_ddp_spawn_two_cpu_processes(tmp_path):
    # The spawned workers unpickle formula nodes, whose cached hashes must not travel.
    result, run_dir = run_ddp(tmp_path, "ddp_spawn", {})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (run_dir / "length_generalization.csv").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    result, run_dir = run_ddp(tmp_path, "ddp", {})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "length_generalization.csv").is_file()
