"""What an earlier `softhard train` left in a run folder, and how to bring it to its end.

Standard library only: the grid runner (train/grid.py) uses it without importing Lightning.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

LENGTH_TABLE = "length_generalization.csv"  # written when training ends: the run is done
LAST_CHECKPOINT = Path("checkpoints", "last.ckpt")  # rewritten after every epoch


def state(run_dir: Path) -> str:
    """done (the length-generalization table is written), resume (a checkpoint but no table),
    partial (a folder with neither, e.g. killed before its first epoch) or new."""
    if (run_dir / LENGTH_TABLE).is_file():
        return "done"
    if (run_dir / LAST_CHECKPOINT).is_file():
        return "resume"
    if run_dir.exists() and any(run_dir.iterdir()):
        return "partial"
    return "new"


def finish(run_dir: Path, train: Callable[[bool], int]) -> int:
    """Trains the run in ``run_dir`` to its end whatever an earlier attempt left there; returns
    the exit code of the last ``train(resume)`` call (0 when the run was done already).

    A run with a checkpoint is resumed (``train(True)``); if that does not finish it, it is
    trained again from scratch (``train(False)``) in a cleared folder: a checkpoint taken after
    the last epoch resumes into nothing, and one cut short by a kill does not load. A folder
    without a checkpoint is cleared (`softhard train` refuses a used folder) and trained afresh.
    """
    current = state(run_dir)
    if current == "done":
        return 0
    if current == "resume":
        code = train(True)
        if code == 0 and state(run_dir) == "done":
            return 0
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return train(False)
