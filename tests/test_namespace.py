"""The installed package is `softhard.*`: a user's own `models/` and `data/` packages neither
shadow it nor are shadowed by it (no top-level `data`, `models`, `train`, `analysis` module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, TINY_RUN

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def user_project(folder: Path) -> Path:
    """A research project of a user's own, with `models/` and `data/` packages that would break softhard
    if it imported them."""
    for name in ("models", "data", "train", "analysis"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package')\n")
    return folder


def installed_env() -> dict[str, str]:
    """The environment of a user who installed softhard: no PYTHONPATH pointing into a checkout."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {"WANDB_MODE": "disabled"}


def softhard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = installed_env()
    return subprocess.run([sys.executable, "-m", "softhard", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_no_top_level_layer_module_is_importable_outside_the_checkout(tmp_path):
    code = "import importlib.util as u; print([n for n in ('data', 'models', 'train', 'analysis') if u.find_spec(n)])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=installed_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.slow
def test_train_and_grid_run_in_a_folder_with_its_own_models_and_data(tmp_path):
    project = user_project(tmp_path / "project")
    trained = softhard("train", "--config", str(CONFIGS / "since_ab.yaml"), *TINY_RUN, "--trainer.max_steps", "2",
                       "--data.cache_dir", "cache", "--run_dir", "runs/one", cwd=project)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (project / "runs" / "one" / "checkpoints" / "last.ckpt").is_file()

    (project / "grid.yaml").write_text(
        f"languages: {{since_ab: '{TINY_CONFIG}'}}\nseeds: [0]\noverrides: {{trainer.max_steps: 1}}\n")
    gridded = softhard("grid", "--grid", "grid.yaml", "--out", "runs/grid", "--parallel", "1", "--wandb", "disabled", cwd=project)
    assert gridded.returncode == 0, gridded.stdout[-2000:] + gridded.stderr[-2000:]
    assert len(list((project / "runs" / "grid").rglob("last.ckpt"))) == 1
