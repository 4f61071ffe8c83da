"""`softhard train`: one run from a YAML config, driven by LightningCLI.

    softhard train --config configs/tomita2.yaml --model.lr 3e-4
    softhard train --config configs/tomita2.yaml --ckpt_path last   # resume the run

A run folder (``--run_dir``, default ``runs/<first config's name>-seed<seed>``) holds config.yaml
(the full resolved config), run_info.json (package version, git commit, dataset
fingerprint, seed, command), metrics.jsonl (every logged metric), checkpoints/last.ckpt,
length_generalization.csv, accuracy_by_length.png, attention/ (probe-set attention) and
attention_maps.png, plus wandb/ (offline unless ``--wandb online``; ``wandb sync`` uploads).

Lightning is configured as usual: ``--trainer.logger`` loggers log alongside the run folder's
own (metrics.jsonl, wandb), ``--trainer.callbacks`` run alongside its callbacks,
``--trainer.default_root_dir`` is where the run folder goes (when ``--run_dir`` is not
given), ``--optimizer`` / ``--lr_scheduler`` replace AdamW(model.lr, model.weight_decay).
Trainer settings that would leave the run folder without its checkpoint or its records are
refused at start-up (check_trainer_settings).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from softhard.train import run_folder
from softhard.train.callbacks import (
    AttentionCaptureCallback,
    LengthGeneralizationCallback,
    ResumeCallback,
    TemperatureScheduleCallback,
)
from softhard.train.data import LanguageDataModule
from softhard.train.grid_file import package_configs
from softhard.train.jsonl_logger import JsonlLogger
from softhard.train.module import LanguageModel
from softhard.train.run_folder import LAST_CHECKPOINT, RUN_INFO
from softhard.train.schedules import WarmupCosineLR  # noqa: F401  (--lr_scheduler WarmupCosineLR finds it)
from softhard.train.wandb_run import WANDB_MODES, RunFolderWandbLogger, close_wandb_run, new_run_id


class TrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.max_test_length", "model.max_positions", apply_on="instantiate")
        options = parser.add_argument_group("run options", "the run folder, its wandb run and what it saves "
                                            "(never what is trained: train.run_folder.RUN_OPTIONS)")
        for name, (kind, default, help_text) in run_folder.RUN_OPTIONS.items():
            options.add_argument(f"--{name}", type=kind, default=default, help=help_text)

    def before_instantiate_classes(self) -> None:
        config = self.config
        if config.wandb not in WANDB_MODES:
            raise ValueError(f"--wandb: unknown value {config.wandb!r}; expected one of {WANDB_MODES}")
        if config.eval_every_n_steps is not None and config.eval_every_n_steps < 1:
            raise ValueError(f"--eval_every_n_steps must be >= 1 (or left out), got {config.eval_every_n_steps}")
        if config.probe_words < 0:
            raise ValueError(f"--probe_words must be >= 0, got {config.probe_words}")
        check_trainer_settings(config.trainer)
        if config.get("lr_scheduler") is not None and config.get("optimizer") is None:
            # LightningCLI would drop a scheduler given without an optimizer: schedule the default AdamW
            config.optimizer = self.parser.parse_object({"optimizer": {
                "class_path": "torch.optim.AdamW",
                "init_args": {"lr": config.model.lr, "weight_decay": config.model.weight_decay}}}).optimizer
        self.run_dir = Path(config.run_dir or default_run_dir(config))
        self.ckpt_path = resolve_checkpoint(config.ckpt_path, self.run_dir)
        # Only the first process judges the folder: under DDP the others start after it made it.
        fresh_run = self.ckpt_path is None and rank_zero_only.rank == 0
        if fresh_run and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ValueError(
                f"run folder {self.run_dir} already holds a run: resume it with --ckpt_path last, "
                "or choose another --run_dir"
            )
        # a resumed run continues its wandb run; a fresh one starts a new one
        stored = stored_wandb_run_id(self.run_dir) if self.ckpt_path else None
        self.wandb_run_id = None if config.wandb == "disabled" else stored or new_run_id()

    def instantiate_trainer(self, **kwargs):
        if rank_zero_only.rank == 0:  # a language without words at these lengths fails here, before the run folder
            self.datamodule.prepare_data()
        config = self.config
        run_dir = self.run_dir
        trainer_config = self._get(self.config_init, "trainer")
        loggers = [JsonlLogger(str(run_dir)), *user_loggers(trainer_config.get("logger"))]
        if config.wandb != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            loggers.append(RunFolderWandbLogger(
                project=config.wandb_project, name=run_dir.name, save_dir=str(run_dir), id=self.wandb_run_id,
                offline=config.wandb == "offline", entity=config.wandb_entity, group=config.wandb_group,
                tags=list(config.wandb_tags), job_type=config.wandb_job_type,
                config=yaml.safe_load(self.parser.dump(config, skip_none=False)),  # as config.yaml holds it
            ))
        callbacks = [item for item in _as_list(trainer_config.get("callbacks")) if item is not None]
        callbacks += [
            ResumeCallback(str(run_dir)),
            TemperatureScheduleCallback(),
            # one file, checkpoints/last.ckpt, overwritten every epoch: a killed run resumes from it
            ModelCheckpoint(dirpath=str(run_dir / LAST_CHECKPOINT.parent), filename=LAST_CHECKPOINT.stem,
                            save_top_k=1, every_n_epochs=1, enable_version_counter=False),
            LengthGeneralizationCallback(str(run_dir), config.eval_every_n_steps),
            AttentionCaptureCallback(str(run_dir), config.probe_words),
        ]
        default_root_dir = trainer_config.get("default_root_dir") or str(run_dir)
        try:
            trainer = super().instantiate_trainer(default_root_dir=default_root_dir, logger=loggers,
                                                  callbacks=callbacks, **kwargs)
        except (MisconfigurationException, ImportError) as error:  # settings Lightning refuses: no run folder yet
            raise ValueError(f"--trainer: {str(error).splitlines()[0]}") from error
        return trainer

    @staticmethod
    def configure_optimizers(lightning_module, optimizer, lr_scheduler=None):
        """--optimizer / --lr_scheduler: a scheduler steps after every optimizer step (runs are measured in
        steps), except ReduceLROnPlateau, which LightningCLI steps per epoch on its monitored metric."""
        if lr_scheduler is None or isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return LightningCLI.configure_optimizers(lightning_module, optimizer, lr_scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}


def check_trainer_settings(trainer) -> None:
    """Refuses the trainer settings that would leave the run folder without its checkpoint
    (--ckpt_path last, softhard grid and analysis read it) or its records."""
    refused = {
        "enable_checkpointing": (trainer.enable_checkpointing is False,
                                 "the run folder keeps checkpoints/last.ckpt (--ckpt_path last, softhard grid and "
                                 "analysis read it)"),
        "logger": (trainer.logger is False,
                   "the run folder's metrics.jsonl is always written; --wandb disabled turns wandb off"),
        "fast_dev_run": (bool(trainer.fast_dev_run),
                         "it writes no checkpoint, config or metrics; try --trainer.max_steps 1 for a smoke test"),
        "barebones": (bool(trainer.barebones), "the run folder needs its loggers and callbacks"),
    }
    for key, (bad, why) in refused.items():
        if bad:
            raise ValueError(f"--trainer.{key} {str(getattr(trainer, key)).lower()}: not supported: {why}")


def user_loggers(logger) -> list[Logger]:
    """The --trainer.logger loggers (None or True: none besides the run folder's own); a
    WandbLogger is refused, as the run folder has its own wandb run."""
    loggers = [item for item in _as_list(logger) if isinstance(item, Logger)]
    if any(isinstance(item, WandbLogger) for item in loggers):
        raise ValueError("--trainer.logger WandbLogger: the run folder has its own wandb run; set it with "
                         "--wandb, --wandb_project, --wandb_entity, --wandb_group, --wandb_tags, --wandb_job_type")
    return loggers


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def default_run_dir(config) -> Path:
    """<default_root_dir or runs>/<name>-seed<seed>: the first --config's name (the language's
    file; later ones such as configs/tiny.yaml adjust it), else the language."""
    name = Path(str(config.config[0])).stem if config.get("config") else config.data.language
    return Path(config.trainer.default_root_dir or "runs") / f"{name}-seed{config.seed_everything}"


def stored_wandb_run_id(run_dir: Path) -> Optional[str]:
    """The wandb run id the run folder's first attempt recorded in run_info.json, if any."""
    path = run_dir / RUN_INFO
    return json.loads(path.read_text()).get("wandb_run_id") if path.is_file() else None


def resolve_checkpoint(ckpt_path: Optional[str], run_dir: Path) -> Optional[str]:
    if ckpt_path is None:
        return None
    path = run_dir / LAST_CHECKPOINT if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise ValueError(f"--ckpt_path {ckpt_path}: no checkpoint at {path}")
    return str(path)


def write_run_info(cli: TrainCLI, argv: list[str]) -> None:
    run_folder.write_run_info(cli.run_dir, cli.datamodule.language, cli.datamodule.fingerprint, cli.config.seed_everything,
                              ["softhard", "train", *argv], resumed_from=cli.ckpt_path,
                              wandb_run_id=cli.wandb_run_id,  # a resumed run logs to the same wandb run
                              # CPU results can differ in the last digits with the thread count
                              cpu_threads=torch.get_num_threads())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `softhard train ...` hands its own arguments over; LightningCLI need not warn about sys.argv.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    # Only a resumed run finds its checkpoint folder full (a fresh one refuses a used folder).
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    # --optimizer / --lr_scheduler replace the model's AdamW, as documented.
    warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden by")
    try:
        cli = TrainCLI(
            LanguageModel,
            LanguageDataModule,
            args=argv,
            run=False,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"deterministic": True, "max_epochs": 10, "log_every_n_steps": 10},
            # configs/defaults.yaml is the base every --config stacks on, so a language's own
            # file (which holds only what differs) is a whole config by itself
            parser_kwargs={"prog": "softhard train", "default_config_files": [str(package_configs() / "defaults.yaml")]},
        )
    except (ValueError, OSError) as error:  # bad input, or a --data.cache_dir that cannot be written
        print(f"softhard train: error: {error}", file=sys.stderr)
        return 2
    cli.run_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input found at start-up leaves no folder
    if rank_zero_only.rank == 0:
        write_run_info(cli, argv)
    # The run's own checkpoints also carry Python/numpy random states, which the
    # weights-only loader refuses; they are trusted files this command wrote.
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.ckpt_path, weights_only=False)
    if rank_zero_only.rank == 0:
        close_wandb_run(cli.trainer, offline=cli.config.wandb == "offline")
    print(f"softhard train: run folder {cli.run_dir}")
    return 0
