"""The run folder: what `softhard train` (and `softhard construct --save-run`, `softhard evaluate`)
write, and the one place train/ writes it through and analysis/ reads it through.

    config.yaml                  the resolved `softhard train` config (LightningCLI writes it)
    run_info.json                what the run is: package version, git commit, language, dataset, seed, command
    metrics.jsonl                every logged metric, one JSON object per logging call (train.jsonl_logger)
    checkpoints/last.ckpt        the LanguageModel, rewritten after every epoch (models.checkpoint's format)
    length_generalization.csv    LENGTH_COLUMNS per step and test length; its last rows end a run
    evaluation.csv               EVALUATION_COLUMNS: `softhard evaluate` at long lengths
    attention/<split>/batch_000.pt  probe-set attention (write_attention_batch / read_attention_batches)
    accuracy_by_length.png, attention_maps.png   figures

Also here: how an earlier attempt's folder is finished (state, finish, forget_after), and which
config keys are bookkeeping rather than settings (BOOKKEEPING_KEYS), and how a setting is labelled
in tables (setting_label). No Lightning (torch for the attention records and the model, pandas for
the tables): the grid runner (train/grid.py) uses this module.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import torch

from softhard.data.files import write_atomically
from softhard.models.checkpoint import RUN_CHECKPOINT, load_checkpoint
from softhard.models.transformer import Transformer

CONFIG = "config.yaml"
RUN_INFO = "run_info.json"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = RUN_CHECKPOINT  # declared in models/ (models.checkpoint says why)
LENGTH_TABLE = "length_generalization.csv"
LENGTH_COLUMNS = ["step", "split", "length", "words", "string_accuracy", "position_accuracy", "word_position_accuracy"]
LENGTHGEN_PREFIX = "lengthgen/"  # the metrics.jsonl keys of a length-generalization evaluation
EVALUATION_TABLE = "evaluation.csv"
# evaluation.csv's first columns, then tau_L<l>H<h> per head (the gap rule's temperatures)
EVALUATION_COLUMNS = ["attention", "length", "words", "string_accuracy", "position_accuracy", "softmax_heads", "kinds"]
ATTENTION = "attention"
ACCURACY_FIGURE = "accuracy_by_length.png"
ATTENTION_FIGURE = "attention_maps.png"

# `softhard train`'s own options (train/cli.py adds exactly these): where the run folder goes, what
# it saves besides the model, and its wandb run. Name: (type, default, help).
RUN_OPTIONS = {
    "run_dir": (Optional[str], None, "run folder (default: runs/<config name>-seed<seed>)"),
    "ckpt_path": (Optional[str], None,
                  "resume from this checkpoint; 'last' resumes the run folder's last checkpoint"),
    "wandb": (str, "offline", "offline (default: no network, `wandb sync` later), online, or disabled"),
    "wandb_project": (str, "softhard", "wandb project name"),
    "wandb_entity": (Optional[str], None, "wandb entity (user or team; default: your wandb default)"),
    "wandb_group": (Optional[str], None, "wandb group (softhard grid sets the grid's name)"),
    "wandb_tags": (list[str], [], "wandb tags, e.g. '[since, log_n]' (softhard grid sets the grid's axis values)"),
    "wandb_job_type": (Optional[str], None, "wandb job type"),
    "eval_every_n_steps": (Optional[int], None,
                           "also evaluate length generalization every k steps (default: only at the end)"),
    "probe_words": (int, 16, "words per length bin whose attention is saved at the end (0: none)"),
}
# Config keys of the classes `softhard train` configures that say how a run is carried out, recorded
# or shown, never what is trained (tests/test_run_folder.py checks each is a key of the train config).
NOT_TRAINED = {
    "seeds (replicates of one configuration)": ("seed_everything", "data.data_seed"),
    "files": ("data.cache_dir", "trainer.default_root_dir", "trainer.enable_checkpointing"),
    "logging and progress": ("trainer.logger", "trainer.callbacks", "trainer.log_every_n_steps",
                             "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.profiler",
                             "trainer.enable_autolog_hparams", "trainer.model_registry",
                             "trainer.num_sanity_val_steps"),
    "evaluation only": ("data.eval_batch_size",),
    "hardware": ("data.num_workers", "model.transformer.fast", "trainer.accelerator", "trainer.devices",
                 "trainer.strategy", "trainer.num_nodes"),
}
# config.yaml keys (dotted) that never tell configurations apart: the run options, then NOT_TRAINED
BOOKKEEPING_KEYS = frozenset(RUN_OPTIONS) | frozenset(key for keys in NOT_TRAINED.values() for key in keys)


def setting_label(value) -> str:
    """A setting's value as one short label in tables and wandb tags: ["i/n"] -> "i/n",
    ["i", "sinusoidal"] -> "i+sinusoidal", [] -> "none", per layer [["fixed", "log_n"], ["n",
    "fixed"]] -> "fixed+log_n|n+fixed"; None -> "", booleans as YAML writes them, mappings as JSON."""
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        nested = any(isinstance(v, (list, tuple)) for v in value)
        return ("|" if nested else "+").join(setting_label(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


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


def load_model(run_dir: str | Path, device: str = "cpu") -> Transformer:
    """The run's Transformer (checkpoints/last.ckpt), in eval mode, with the schedule's multiplier
    of the last step, as evaluated at the end."""
    return load_checkpoint(Path(run_dir) / LAST_CHECKPOINT, device)


def append_length_rows(run_dir: str | Path, table: pd.DataFrame) -> Path:
    """Appends rows (LENGTH_COLUMNS) to length_generalization.csv, created with its header."""
    path = Path(run_dir) / LENGTH_TABLE
    table[LENGTH_COLUMNS].to_csv(path, mode="a", header=not path.exists(), index=False)
    return path


def read_length_table(run_dir: str | Path) -> pd.DataFrame:
    """length_generalization.csv, every step's rows (FileNotFoundError when there is none)."""
    return pd.read_csv(Path(run_dir) / LENGTH_TABLE)


def write_evaluation_table(run_dir: str | Path, table: pd.DataFrame) -> Path:
    """evaluation.csv (EVALUATION_COLUMNS, then one column per gap-rule temperature), written whole."""
    return write_atomically(Path(run_dir) / EVALUATION_TABLE, lambda file: table.to_csv(file, index=False))


def read_evaluation_table(run_dir: str | Path) -> pd.DataFrame:
    """evaluation.csv (FileNotFoundError when the run was never evaluated)."""
    return pd.read_csv(Path(run_dir) / EVALUATION_TABLE)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """metrics.jsonl as a pandas DataFrame (one row per logging call)."""
    return pd.read_json(Path(run_dir) / METRICS_FILE, lines=True)


def last_logged(run_dir: str | Path, prefix: str) -> Optional[pd.Series]:
    """The last metrics.jsonl row holding a metric named ``<prefix>...`` (``val/``: the last validation,
    ``temperature/``: the heads' last temperatures), as its step and those metrics; None without
    metrics.jsonl or without such a row."""
    if not (Path(run_dir) / METRICS_FILE).is_file():
        return None
    metrics = read_metrics(run_dir)
    logged = [column for column in metrics.columns if column.startswith(prefix)]
    rows = metrics.dropna(subset=logged, how="all") if logged else metrics.iloc[:0]
    return None if rows.empty else rows.iloc[-1][["step", *logged]]


def write_attention_batch(run_dir: str | Path, split: str, index: int, input_ids: torch.Tensor,
                          lengths: torch.Tensor, truth: torch.Tensor, attention: list[torch.Tensor],
                          attention_logits: list[torch.Tensor]) -> dict:
    """attention/<split>/batch_<index>.pt: a dict of input_ids (B, T), lengths (B,), truth (B, T)
    and per layer attention and attention_logits (B, H, T, T+1, float32 on the CPU; column 0 the
    sink, logits -inf where masked). Returns the record."""
    record = {"input_ids": input_ids.cpu(), "lengths": lengths.cpu(), "truth": truth.cpu(),
              "attention": [a.float().cpu() for a in attention],
              "attention_logits": [s.float().cpu() for s in attention_logits]}
    folder = Path(run_dir) / ATTENTION / split
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(record, folder / f"batch_{index:03d}.pt")
    return record


def attention_splits(run_dir: str | Path) -> list[str]:
    """The splits (folder names under attention/) with at least one saved batch, sorted by name."""
    folder = Path(run_dir) / ATTENTION
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("batch_*.pt")))


def read_attention_batches(run_dir: str | Path, split: str) -> Iterator[dict]:
    """The records write_attention_batch saved for ``split``, in batch order. Folders written
    before the field was renamed hold the logits under "scores": read as attention_logits."""
    for file in sorted((Path(run_dir) / ATTENTION / split).glob("batch_*.pt")):
        record = torch.load(file, weights_only=True)
        if "scores" in record:
            record["attention_logits"] = record.pop("scores")
        yield record


def write_run_info(run_dir: Path, language, dataset_fingerprint: str, seed: int, command: list[str], **extra) -> None:
    """run_info.json: package version, git commit, seed, the language (a data.language.Language:
    name, formula, alphabet), the dataset fingerprint, ``extra`` fields, and the command."""
    info = {
        "package": "softhard",
        "version": metadata.version("softhard"),
        "git_commit": _git_commit(),
        "seed": seed,
        "language": language.name,
        "formula": str(language.formula),
        "alphabet": list(language.alphabet),
        "dataset_fingerprint": dataset_fingerprint,
        **extra,
        "command": command,
    }
    (Path(run_dir) / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")


def _git_commit() -> Optional[str]:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
