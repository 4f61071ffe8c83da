"""What an earlier `softhard train` left in a run folder, and how to bring it to its end.

Standard library only: the grid runner (train/grid.py) uses it without importing Lightning.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Callable

RUN_INFO = "run_info.json"  # how the run was made: versions, seed, command, wandb run id
METRICS_FILE = "metrics.jsonl"  # every logged metric, one JSON object per logging call
LENGTH_TABLE = "length_generalization.csv"  # its last rows are written when training ends: the run is done
LENGTHGEN_PREFIX = "lengthgen/"  # the metrics of a length-generalization evaluation
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


def forget_after(run_dir: Path, step: int) -> None:
    """Drops what an attempt killed after its checkpoint at global step ``step`` logged later
    (metrics.jsonl records, length_generalization.csv rows), which the resumed run logs again.

    Lightning logs a batch's metrics at the step count before its optimizer step (so the batch
    after the checkpoint logs at ``step``), length generalization at the count after it, as in
    the table (an evaluation logged at ``step`` came before the checkpoint).
    """
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        def before_checkpoint(record: dict) -> bool:
            at = record.get("step") or 0
            return at < step or (at == step and any(key.startswith(LENGTHGEN_PREFIX) for key in record))

        lines = metrics.read_text().splitlines(keepends=True)
        metrics.write_text("".join(line for line in lines if before_checkpoint(json.loads(line))))
    table = run_dir / LENGTH_TABLE
    if table.is_file():
        header, *rows = table.read_text().splitlines(keepends=True)
        column = next(csv.reader([header])).index("step")
        table.write_text(header + "".join(row for row in rows if int(next(csv.reader([row]))[column]) <= step))
