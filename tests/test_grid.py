"""`softhard grid` (train/grid.py), the wandb sweep (configs/sweep.yaml) and DDP on CPU."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from softhard.train import run_folder
from softhard.train.cli import main as train
from softhard.train.grid import GridError, load_grid
from softhard.train.grid import main as grid

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
SMOKE = CONFIGS / "grids" / "smoke.yaml"
TINY_TRAIN = [
    "--data.max_length", "6", "--data.train_per_length", "8", "--data.validation_per_length", "4",
    "--data.test_per_length", "4", "--data.test_lengths_per_bin", "1", "--trainer.max_steps", "2",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--probe_words", "2", "--wandb", "disabled",
]


def write_grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"config_dir: {CONFIGS}\n" + text)
    return path


def read_table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def cli_keys(capsys) -> set[str]:
    """Every dotted key `softhard train --print_config` prints."""
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train(["--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)

    def walk(tree, prefix=""):
        for key, value in tree.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")

    return set(walk(printed)) | {"config"}


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
    assert command[command.index("--config") + 1] == str(CONFIGS / "majority.yaml")
    for flag, value in [("--model.transformer.positional", '["i/n"]'), ("--model.transformer.temperature", "log_n"),
                        ("--seed_everything", "1"), ("--run_dir", str(tmp_path / "out" / runs[-1].name)),
                        ("--wandb", "disabled"), ("--trainer.max_epochs", "5"), ("--data.max_length", "8")]:
        assert command[command.index(flag) + 1] == value, flag


def test_shipped_grids_expand():
    study = load_grid(CONFIGS / "grids" / "study.yaml", "runs/grids/study")
    assert len(study) == 8 * 3 * 3 * 3
    assert {run.name for run in study} >= {"since_ab-i-learned-seed2", "majority-sinusoidal-log_n-seed0"}
    smoke = load_grid(SMOKE, "out")
    assert [run.name for run in smoke] == ["since_ab-i_over_n-fixed-seed0", "since_ab-i_over_n-log_n-seed0"]


def test_axes_left_out_keep_the_configs_values_and_a_mapping_names_configs(tmp_path):
    path = write_grid(tmp_path, "languages: {mine: since_ab.yaml}\n")
    (run,) = load_grid(path, tmp_path / "out")
    assert run.name == "mine-seed0" and run.config == CONFIGS / "since_ab.yaml"
    assert "--model.transformer.positional" not in run.command()


@pytest.mark.parametrize("text, message", [
    ("languages: [since_ab]\ntemperatures: [fixed]\n", "unknown key 'temperatures'"),
    ("positional: [[i]]\n", "missing key 'languages'"),
    ("languages: [since_ab, no_such_language]\n", "language 'no_such_language' has no config"),
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
        load_grid(path, tmp_path / "out")
    assert message in str(error.value)
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


# ---------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_tiny_grid_runs_in_parallel_then_skips_on_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the configs' data cache (runs/data) lands in tmp_path
    out = tmp_path / "out"
    assert grid(["--grid", str(SMOKE), "--parallel", "2", "--out", str(out)]) == 0
    rows = read_table(out / "grid.csv")
    assert [row["status"] for row in rows] == ["ok", "ok"], [Path(row["run_dir"] + ".log").read_text()[-2000:]
                                                            for row in rows]
    assert [row["temperature"] for row in rows] == ["fixed", "log_n"] and rows[0]["positional"] == "i/n"
    for row in rows:
        assert row["exit_code"] == "0" and float(row["seconds"]) > 0
        assert (Path(row["run_dir"]) / "length_generalization.csv").is_file()
        assert Path(row["run_dir"] + ".log").is_file()
    assert str(out / "grid.csv") in capsys.readouterr().out

    assert grid(["--grid", str(SMOKE), "--parallel", "2", "--out", str(out)]) == 0
    assert [row["status"] for row in read_table(out / "grid.csv")] == ["skipped", "skipped"]


@pytest.mark.slow
def test_a_failing_run_is_reported_and_the_others_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text((CONFIGS / "since_ab.yaml").read_text().replace("objective: both", "objective: nonsense"))
    path = write_grid(tmp_path, f"languages: {{since_ab: since_ab.yaml, broken: {broken}}}\n"
                                f"overrides: {yaml.safe_load(SMOKE.read_text())['overrides']}\n")
    out = tmp_path / "out"
    assert grid(["--grid", str(path), "--parallel", "2", "--out", str(out)]) == 1
    rows = {row["language"]: row for row in read_table(out / "grid.csv")}
    assert rows["since_ab"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed" and rows["broken"]["exit_code"] == "2"
    assert "objective: unknown value 'nonsense'" in (out / "broken-seed0.log").read_text()
    captured = capsys.readouterr()
    assert "FAILED broken-seed0" in captured.err and "failed: broken-seed0" in captured.out


# ---------------------------------------------------------------------------- the wandb sweep


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
    assert config["model"]["transformer"]["positional"] == ["i/n"]  # from the sweep
    assert config["model"]["transformer"]["temperature"] == "log_n"
    assert config["seed_everything"] == 2 and config["trainer"]["max_epochs"] == 20
    assert config["run_dir"] == "runs/sweeps/sweep1/run1" and config["wandb"] == "online"


# ---------------------------------------------------------------------------- DDP on CPU


def run_ddp(tmp_path: Path, strategy: str, extra_env: dict) -> tuple[subprocess.CompletedProcess, Path]:
    run_dir = tmp_path / strategy
    command = [sys.executable, "-m", "softhard", "train", "--config", str(CONFIGS / "since_ab.yaml"), *TINY_TRAIN,
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
