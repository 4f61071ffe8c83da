"""The run folder's wandb run: one run id per run folder, one config, media at their step.

wandb is imported only when a run logs to it (`--wandb disabled` needs no wandb start-up).
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import Optional

from pytorch_lightning.loggers import WandbLogger

WANDB_MODES = ("offline", "online", "disabled")


def new_run_id() -> str:
    """The id of a fresh run's wandb run (stored in run_info.json, so a resumed run logs to the
    same run): a wandb agent's WANDB_RUN_ID (the sweep's run), else 8 lowercase letters and
    digits as wandb makes them, not from the seeded random streams (two runs of one seed are
    two wandb runs)."""
    return os.environ.get("WANDB_RUN_ID") or "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class RunFolderWandbLogger(WandbLogger):
    """A WandbLogger whose config is the resolved CLI config given at start (as config.yaml
    holds it), nothing else: Lightning would add the model's and data module's flat
    hyperparameters (and LightningCLI's ``_instantiator``) as a second copy."""

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @property
    def experiment(self):
        """The run folder's own wandb run: a run some earlier code left open in this process is
        finished first (Lightning would log into it, under another id)."""
        if self._experiment is None:
            import wandb

            if wandb.run is not None and wandb.run.id != self._wandb_init.get("id"):
                wandb.finish()
        return super().experiment


def log_media(trainer, step: int, images: dict[str, Path], table=None) -> None:
    """Images (and a pandas table) to the trainer's wandb logger at ``step``, the global step
    of the metrics they belong to (wandb's x axis is Lightning's ``trainer/global_step``)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            payload = {key: wandb.Image(str(path)) for key, path in images.items()}
            if table is not None:
                payload["length_generalization"] = wandb.Table(dataframe=table)
            logger.log_metrics(payload, step=step)


def close_wandb_run(trainer, offline: bool) -> Optional[Path]:
    """Closes the trainer's wandb run (so the next run in this process starts afresh); for an
    offline run prints how to upload it, whatever WANDB_SILENT says, and returns its folder."""
    for logger in trainer.loggers:
        if isinstance(logger, RunFolderWandbLogger):
            run = logger.experiment
            folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files
            run.finish()
            if offline:
                print(f"softhard train: wandb run {run.id} saved offline; upload it with: wandb sync {folder}")
                return folder
    return None
