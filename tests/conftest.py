"""Shared fixtures: a tiny grid of finished training runs for the analysis tests and notebooks; the
rule that marks every test using a training fixture `slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from softhard.train.grid_file import package_configs

# The tiny run (configs/tiny.yaml: tiny data and model, 2 epochs): a few seconds on a CPU, enough
# to exercise every analysis, not to learn the language. Later flags override it.
TINY_CONFIG = package_configs() / "tiny.yaml"
TINY_RUN = ["--config", str(TINY_CONFIG)]

# (language, temperature mode, seed): two modes x two seeds of one formula, plus one other formula.
TINY_GRID = [
    ("since_ab", "fixed", 0),
    ("since_ab", "fixed", 1),
    ("since_ab", "log_n", 0),
    ("since_ab", "log_n", 1),
    ("majority", "fixed", 0),
]


# Fixtures that train runs (here; tests/test_evaluate.py; tests/test_train.py): every test that uses
# one, directly or through another fixture, is `slow`. Tests that train, launch processes or run
# notebooks in their own body carry @pytest.mark.slow.
TRAINING_FIXTURES = {"tiny_grid", "tiny_run", "finished"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def train_tiny_run(out: Path, language: str, temperature: str, seed: int) -> Path:
    from softhard.train.cli import main as train

    run_dir = out / f"{language}-{temperature}-seed{seed}"
    code = train([*TINY_RUN, "--model.transformer.positional", '["i/n"]',
                  "--data.language", language, "--data.cache_dir", str(out / "data"),
                  "--model.transformer.temperature", temperature, "--seed_everything", str(seed),
                  "--run_dir", str(run_dir)])
    assert code == 0, f"tiny run {run_dir.name} failed"
    return run_dir


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory) -> Path:
    """A folder of five finished runs (TINY_GRID) with checkpoints and saved attention."""
    out = tmp_path_factory.mktemp("tiny_grid")
    for language, temperature, seed in TINY_GRID:
        train_tiny_run(out / "runs", language, temperature, seed)
    return out / "runs"


# The tiny grid as a study grid, plus a run with learned temperatures: each run a named cell, evaluated at
# 10x and 100x its train length.
TINY_STUDY = [*TINY_GRID, ("since_ab", "learned", 0)]
TINY_STUDY_CELLS = {"fixed": "in_fixed", "log_n": "in_logn", "learned": "in_learned"}
TINY_STUDY_WORDS = 4


@pytest.fixture(scope="session")
def tiny_study(tiny_grid, tmp_path_factory) -> Path:
    """A copy of tiny_grid and one more run (TINY_STUDY) as `softhard grid` would leave a study: a grid.csv
    naming each run's cell (from its temperature mode) and an evaluation.csv per run (as trained, hardened,
    gap rule at 50 and 500, 10x and 100x the train length 5)."""
    import csv
    import shutil

    from softhard.analysis.evaluate import evaluate_run
    from softhard.analysis.runs import RunFolder

    out = tmp_path_factory.mktemp("tiny_study") / "runs"
    shutil.copytree(tiny_grid, out, ignore=shutil.ignore_patterns("data"))
    train_tiny_run(out, *TINY_STUDY[-1])
    rows = []
    for language, temperature, seed in TINY_STUDY:
        run_dir = out / f"{language}-{temperature}-seed{seed}"
        evaluate_run(RunFolder(run_dir), lengths=[50, 500], words=TINY_STUDY_WORDS, progress=False)
        rows.append({"name": run_dir.name, "language": language, "seed": seed,
                     "cell": TINY_STUDY_CELLS[temperature], "run_dir": str(run_dir), "status": "ok"})
    with open(out / "grid.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out
