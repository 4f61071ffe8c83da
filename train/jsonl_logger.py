"""A logger-independent record of every metric: JSON lines in the run folder.

Lightning sends every ``self.log`` value to each logger; this one appends them to
``metrics.jsonl`` (one object per call: step plus values), so the file survives a
resumed run and is the source of truth for analysis whatever else is logging.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

from softhard.train.run_folder import METRICS_FILE


class JsonlLogger(Logger):
    def __init__(self, run_dir: str):
        super().__init__()
        self.path = Path(run_dir) / METRICS_FILE

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> str:
        return "0"

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @property
    @rank_zero_experiment
    def experiment(self) -> Path:
        return self.path

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """The resolved config is saved as config.yaml by the CLI; nothing to add here."""

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        record = {"step": step, **{key: _number(value) for key, value in metrics.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _number(value):
    return value.item() if hasattr(value, "item") else value

