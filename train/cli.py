"""`softhard train`: one run from a YAML config, driven by LightningCLI.

    softhard train --config configs/defaults.yaml --config configs/tomita2.yaml --model.lr 3e-4
    softhard train --config configs/defaults.yaml --config configs/tomita2.yaml --ckpt_path last   # resume the run

A run folder (``--run_dir``, default ``runs/<last config's name>-seed<seed>``) holds config.yaml
(the full resolved config), run_info.json (package version, git commit, dataset
fingerprint, seed, command), metrics.jsonl (every logged metric), checkpoints/last.ckpt,
length_generalization.csv, accuracy_by_length.png, attention/ (probe-set attention) and
attention_maps.png, plus wandb/ (offline unless ``--wandb online``; ``wandb sync`` uploads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from softhard.train.callbacks import (
    AttentionCaptureCallback,
    LengthGeneralizationCallback,
    ResumeCallback,
    TemperatureScheduleCallback,
)
from softhard.train.data import LanguageDataModule
from softhard.train.metrics import JsonlLogger
from softhard.train.module import LanguageModel
from softhard.train.run_folder import LAST_CHECKPOINT

WANDB_MODES = ("offline", "online", "disabled")


class TrainCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.max_test_length", "model.max_positions", apply_on="instantiate")
        parser.add_argument("--run_dir", type=Optional[str], default=None,
                            help="run folder (default: runs/<config name>-seed<seed>)")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="resume from this checkpoint; 'last' resumes the run folder's last checkpoint")
        parser.add_argument("--wandb", type=str, default="offline",
                            help="offline (default: no network, `wandb sync` later), online, or disabled")
        parser.add_argument("--wandb_project", type=str, default="softhard", help="wandb project name")
        parser.add_argument("--eval_every_n_steps", type=Optional[int], default=None,
                            help="also evaluate length generalization every k steps (default: only at the end)")
        parser.add_argument("--probe_words", type=int, default=16,
                            help="words per length bin whose attention is saved at the end (0: none)")

    def before_instantiate_classes(self) -> None:
        config = self.config
        if config.wandb not in WANDB_MODES:
            raise ValueError(f"--wandb: unknown value {config.wandb!r}; expected one of {WANDB_MODES}")
        if config.eval_every_n_steps is not None and config.eval_every_n_steps < 1:
            raise ValueError(f"--eval_every_n_steps must be >= 1 (or left out), got {config.eval_every_n_steps}")
        if config.probe_words < 0:
            raise ValueError(f"--probe_words must be >= 0, got {config.probe_words}")
        for key in ("optimizer", "lr_scheduler"):  # LightningCLI would replace AdamW and ignore model.lr
            if config.get(key) is not None:
                raise ValueError(f"--{key} is not supported: the model trains with AdamW; set model.lr and "
                                 "model.weight_decay")
        self.run_dir = Path(config.run_dir or default_run_dir(config))
        self.ckpt_path = resolve_checkpoint(config.ckpt_path, self.run_dir)
        # Only the first process judges the folder: under DDP the others start after it made it.
        fresh_run = self.ckpt_path is None and rank_zero_only.rank == 0
        if fresh_run and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ValueError(
                f"run folder {self.run_dir} already holds a run: resume it with --ckpt_path last, "
                "or choose another --run_dir"
            )

    def instantiate_trainer(self, **kwargs):
        if rank_zero_only.rank == 0:  # a language without words at these lengths fails here, before the run folder
            self.datamodule.prepare_data()
        config = self.config
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        loggers = [JsonlLogger(str(run_dir))]
        if config.wandb != "disabled":
            from pytorch_lightning.loggers import WandbLogger

            os.environ.setdefault("WANDB_SILENT", "true")
            loggers.append(
                WandbLogger(project=config.wandb_project, name=run_dir.name, save_dir=str(run_dir),
                            offline=config.wandb == "offline", config=self.config.as_dict())
            )
        callbacks = list(self._get(self.config_init, "trainer").get("callbacks") or [])
        callbacks += [
            ResumeCallback(str(run_dir)),
            TemperatureScheduleCallback(),
            # one file, checkpoints/last.ckpt, overwritten every epoch: a killed run resumes from it
            ModelCheckpoint(dirpath=str(run_dir / LAST_CHECKPOINT.parent), filename=LAST_CHECKPOINT.stem,
                            save_top_k=1, every_n_epochs=1, enable_version_counter=False),
            LengthGeneralizationCallback(str(run_dir), config.eval_every_n_steps),
            AttentionCaptureCallback(str(run_dir), config.probe_words),
        ]
        return super().instantiate_trainer(default_root_dir=str(run_dir), logger=loggers, callbacks=callbacks, **kwargs)


def default_run_dir(config) -> Path:
    """runs/<name>-seed<seed>: the last --config's name (the language's file after configs/defaults.yaml),
    else the language."""
    name = Path(str(config.config[-1])).stem if config.get("config") else config.data.language
    return Path("runs") / f"{name}-seed{config.seed_everything}"


def resolve_checkpoint(ckpt_path: Optional[str], run_dir: Path) -> Optional[str]:
    if ckpt_path is None:
        return None
    path = run_dir / LAST_CHECKPOINT if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        raise ValueError(f"--ckpt_path {ckpt_path}: no checkpoint at {path}")
    return str(path)


def write_run_info(cli: TrainCLI, argv: list[str]) -> None:
    info = {
        "package": "softhard",
        "version": metadata.version("softhard"),
        "git_commit": _git_commit(),
        "seed": cli.config.seed_everything,
        "language": cli.datamodule.language.name,
        "formula": str(cli.datamodule.language.formula),
        "alphabet": list(cli.datamodule.language.alphabet),
        "dataset_fingerprint": cli.datamodule.fingerprint,
        "resumed_from": cli.ckpt_path,
        "cpu_threads": torch.get_num_threads(),  # CPU results can differ in the last digits with the thread count
        "command": ["softhard", "train", *argv],
    }
    (cli.run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def _git_commit() -> Optional[str]:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `softhard train ...` hands its own arguments over; LightningCLI need not warn about sys.argv.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    # Only a resumed run finds its checkpoint folder full (a fresh one refuses a used folder).
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    try:
        cli = TrainCLI(
            LanguageModel,
            LanguageDataModule,
            args=argv,
            run=False,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"deterministic": True, "max_epochs": 10, "log_every_n_steps": 10},
            parser_kwargs={"prog": "softhard train"},
        )
    except (ValueError, OSError) as error:  # bad input, or a --data.cache_dir that cannot be written
        print(f"softhard train: error: {error}", file=sys.stderr)
        return 2
    if rank_zero_only.rank == 0:
        write_run_info(cli, argv)
    # The run's own checkpoints also carry Python/numpy random states, which the
    # weights-only loader refuses; they are trusted files this command wrote.
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.ckpt_path, weights_only=False)
    if cli.config.wandb != "disabled":  # close the run, so the next one in this process starts afresh
        import wandb

        wandb.finish()
    print(f"softhard train: run folder {cli.run_dir}")
    return 0
