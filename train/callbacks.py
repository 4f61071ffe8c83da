"""Callbacks: the temperature schedule, length generalization, and attention capture."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch

from softhard.train import plots
from softhard.train import run_folder
from softhard.train.evaluation import length_generalization
from softhard.train.run_folder import LENGTHGEN_PREFIX, forget_after
from softhard.train.wandb_run import log_media


class TemperatureScheduleCallback(pl.Callback):
    """Drives the model's annealing schedule (models/temperature.py) by the global step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.model.set_training_step(trainer.global_step)


class ResumeCallback(pl.Callback):
    """A resumed run forgets what its killed attempt logged after the checkpoint
    (train.run_folder.forget_after) before it logs those steps again."""

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)

    def on_train_start(self, trainer, pl_module):
        if trainer.ckpt_path and trainer.is_global_zero:
            forget_after(self.run_dir, trainer.global_step)


class LengthGeneralizationCallback(pl.Callback):
    """Accuracy on every test length bin at the end of training (and every ``every_n_steps``).

    One evaluation loop over all bins (split across DDP ranks, then summed) writes
    ``length_generalization.csv`` in the run folder (one row per step and length), logs each
    bin's mean accuracies to every logger, and at the end draws the accuracy-by-length curve.
    """

    def __init__(self, run_dir: str, every_n_steps: Optional[int] = None):
        self.run_dir = Path(run_dir)
        self.every_n_steps = every_n_steps
        self.evaluated_step = None  # the step of the last evaluation, which the end does not repeat

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # with gradient accumulation, several batches end at one step: evaluate once
        if self.every_n_steps and step % self.every_n_steps == 0 and step not in (0, self.evaluated_step):
            self._evaluate(trainer, pl_module, final=False)

    def on_train_end(self, trainer, pl_module):
        if self.evaluated_step != trainer.global_step:
            self._evaluate(trainer, pl_module, final=True)
        if trainer.is_global_zero:
            whole = run_folder.read_length_table(self.run_dir)
            final = whole[whole.step == trainer.global_step]
            path = plots.save(plots.accuracy_by_length(final, title=self.run_dir.name),
                              self.run_dir / run_folder.ACCURACY_FIGURE)
            log_media(trainer, trainer.global_step, {"accuracy_by_length": path}, table=final)

    def _evaluate(self, trainer, pl_module, final: bool):
        # The test loaders draw their base seed from torch's random state: an evaluation must not
        # move the stream that training's dropout and offsets draw from.
        with torch.random.fork_rng(devices=[]):
            table = length_generalization(
                pl_module, trainer.datamodule.test_splits(), trainer.global_step,
                progress=final and trainer.is_global_zero and trainer.progress_bar_callback is not None,
                rank=trainer.global_rank, world_size=trainer.world_size,
                reduce_sum=lambda counts: trainer.strategy.reduce(counts, reduce_op="sum"))
        self.evaluated_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        run_folder.append_length_rows(self.run_dir, table)
        summary = {}
        for split, rows in table.groupby("split", sort=False):
            for column in ("string_accuracy", "position_accuracy"):
                summary[f"{LENGTHGEN_PREFIX}{split}/{column}"] = float(rows[column].mean())
        for logger in trainer.loggers:
            logger.log_metrics(summary, step=trainer.global_step)


class AttentionCaptureCallback(pl.Callback):
    """Saves attention weights and logits on a fixed probe set per length bin at the end.

    The probe set is the first ``probe_words`` words of the validation split and of every
    test bin. Batches are written one file each (train.run_folder.write_attention_batch), so
    memory holds one batch's maps whatever the length.
    """

    def __init__(self, run_dir: str, probe_words: int = 16, batch_size: int = 8):
        self.run_dir = Path(run_dir)
        self.probe_words = probe_words
        self.batch_size = batch_size

    def on_train_end(self, trainer, pl_module):
        if not trainer.is_global_zero or self.probe_words < 1:
            return
        path = capture_attention(pl_module, trainer.datamodule.dataset, self.run_dir, self.probe_words, self.batch_size)
        if path is not None:
            log_media(trainer, trainer.global_step, {"attention_maps": path})


@torch.no_grad()
def capture_attention(module, dataset, run_dir, probe_words: int, batch_size: int = 8) -> Optional[Path]:
    """AttentionCaptureCallback's files for ``module`` (a LanguageModel) on ``dataset`` (a
    DatasetDict of data/): ``attention/<split>/batch_*.pt`` and ``attention_maps.png``, whose
    path it returns (None when no probe word was drawn). Also used for construction run folders
    (train/construction_run.py)."""
    from softhard.train.data import collate

    run_dir = Path(run_dir)
    splits = ["validation"] + [name for name in dataset if name.startswith("test_")]
    was_training = module.training
    module.eval()
    drawn_split = splits[1] if len(splits) > 1 else splits[0]  # the first test bin, else validation
    shown = None
    for split in splits:
        rows = dataset[split].select(range(min(probe_words, len(dataset[split]))))
        for index, start in enumerate(range(0, len(rows), batch_size)):
            batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            device_batch = {key: value.to(module.device) for key, value in batch.items()}
            output = module(device_batch, return_attention=True)
            record = run_folder.write_attention_batch(run_dir, split, index, batch["input_ids"], batch["lengths"],
                                                      batch["truth"], output.attention, output.attention_logits)
            if index == 0 and split == drawn_split:
                shown = record
    module.train(was_training)
    if shown is None:
        return None
    length = int(shown["lengths"][0])
    figure = plots.attention_maps([a[0] for a in shown["attention"]], length)
    return plots.save(figure, run_dir / run_folder.ATTENTION_FIGURE)


