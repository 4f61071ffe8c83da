"""Run folders (of `softhard train`, alone or under a grid folder) as analysis inputs.

``find_runs`` walks the given paths for run folders (a folder holding run_info.json) and
returns one ``RunFolder`` each, plus a one-line reason for every folder it had to skip;
``collect_runs`` turns them into one tidy pandas table: a row per run, step, test bin and
length, with the run's settings (language, positional encoding, temperature mode, seed, ...)
as columns. ``RunFolder`` also loads what the deeper analyses need: the trained model and the
saved probe-set attention.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.syntax import Formula
from softhard.models import Transformer
from softhard.train import run_folder
from softhard.train.run_folder import (
    ATTENTION,
    BOOKKEEPING_KEYS,
    CONFIG,
    LAST_CHECKPOINT,
    LENGTH_COLUMNS,
    LENGTH_TABLE,
    LENGTHGEN_PREFIX,
    RUN_INFO,
    setting_label,
)

RUN = "run_dir"  # a run's identity in every table: folder names ("run") repeat across grid folders
# The settings every table carries, in this order (see RunFolder.settings).
SETTINGS = ("run", "language", "formula", "positional", "temperature", "tau", "seed", "n_layers", "n_heads",
            "d_model", "train_max_length", "run_dir")

# config.yaml keys behind SETTINGS columns
SHOWN = frozenset({
    "data.language", "data.max_length", "model.transformer.positional", "model.transformer.temperature",
    "model.transformer.tau", "model.transformer.n_layers", "model.transformer.n_heads", "model.transformer.d_model",
})


def other_settings(runs: Sequence[RunFolder]) -> list[str]:
    """The config keys (dotted, e.g. ``model.transformer.mask``) beyond SETTINGS whose values
    differ between ``runs``: they tell configurations apart too, and become columns of that name.
    Bookkeeping keys (train.run_folder.BOOKKEEPING_KEYS: seeds, files, logging, hardware) never do."""
    configs = [run.flat_config for run in runs]
    keys = sorted(set().union(*configs) - BOOKKEEPING_KEYS - SHOWN)
    return [key for key in keys if len({json.dumps(c.get(key), sort_keys=True, default=str) for c in configs}) > 1]


def is_other_setting(column: str) -> bool:
    """Whether a table column is one of other_settings (named by its dotted config key)."""
    return "." in column


def run_labels(table: pd.DataFrame) -> dict:
    """RUN -> how to name the run in a figure or a table: its folder name, or its whole path
    where two runs share a name."""
    pairs = table[[RUN, "run"]].drop_duplicates(RUN)
    shared = pairs["run"].duplicated(keep=False)
    return dict(zip(pairs[RUN], pairs[RUN].where(shared, pairs["run"])))


def name_runs(table: pd.DataFrame, source: pd.DataFrame | None = None) -> pd.DataFrame:
    """``table`` to show: its RUN column becomes a column "run" of run_labels (of ``source``,
    default ``table``), in RUN's place."""
    if RUN not in table.columns:
        return table
    labels = run_labels(table if source is None else source)
    named = table.drop(columns=["run"], errors="ignore").rename(columns={RUN: "run"})
    named["run"] = named["run"].map(labels)
    return named


# libyaml's loader when PyYAML was built with it: ten times faster on a grid's config files
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RunSkipped(ValueError):
    """A run folder that one analysis cannot use (the message says which file is missing or bad)."""


@dataclass(frozen=True)
class RunFolder:
    path: Path

    # ------------------------------------------------------------------ what the run is
    @cached_property
    def info(self) -> dict:
        return _read_json(self.path / RUN_INFO)

    @cached_property
    def config(self) -> dict:
        """The resolved `softhard train` config (config.yaml), or {} when it is missing."""
        file = self.path / CONFIG
        if not file.is_file():
            return {}
        try:
            return yaml.load(file.read_text(), Loader=_YAML_LOADER) or {}
        except yaml.YAMLError as error:
            raise RunSkipped(f"{file}: not valid YAML ({error})") from None

    @cached_property
    def flat_config(self) -> dict:
        """config.yaml as dotted keys (``model.transformer.mask``) and values; lists and mappings
        as JSON text, so that every value can be compared and grouped."""
        def flatten(node: dict, prefix: str):
            for key, value in node.items():
                if isinstance(value, dict) and value:
                    yield from flatten(value, f"{prefix}{key}.")
                else:
                    yield f"{prefix}{key}", json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value

        return dict(flatten(self.config, ""))

    def settings_with(self, others: Sequence[str]) -> dict:
        """settings, then the values of the config keys ``others`` (other_settings)."""
        return {**self.settings, **{key: self.flat_config.get(key) for key in others}}

    def check(self) -> None:
        """Raise RunSkipped unless run_info.json and config.yaml can be read and name the language."""
        missing = [key for key in ("language", "formula", "alphabet") if key not in self.info]
        if missing:
            raise RunSkipped(f"{self.path / RUN_INFO}: lacks {', '.join(missing)}")
        self.config  # noqa: B018 - parsed now, so a bad file is reported here

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def language(self) -> str:
        return self.info["language"]

    @cached_property
    def formula(self) -> Formula:
        return parse(self.info["formula"])

    @cached_property
    def alphabet(self) -> Alphabet:
        return Alphabet(tuple(self.info["alphabet"]))

    @cached_property
    def settings(self) -> dict:
        """The columns that describe this run in every table (SETTINGS)."""
        transformer = self.config.get("model", {}).get("transformer", {})
        return {
            "run": self.name,
            "language": self.language,
            "formula": self.info["formula"],
            "positional": setting_label(transformer.get("positional", "?")),
            "temperature": setting_label(transformer.get("temperature", "?")),
            "tau": setting_label(transformer.get("tau", "?")),
            "seed": self.info.get("seed"),
            "n_layers": transformer.get("n_layers"),
            "n_heads": transformer.get("n_heads"),
            "d_model": transformer.get("d_model"),
            "train_max_length": self.config.get("data", {}).get("max_length"),
            "run_dir": str(self.path),
        }

    def train_length(self, skipped: str) -> int:
        """The longest training word length (config.yaml data.max_length); RunSkipped without one,
        ending with ``skipped`` (what is not done)."""
        length = self.settings["train_max_length"]
        if length is None:
            raise RunSkipped(f"{self.path}: no train length (config.yaml data.max_length): {skipped}")
        return int(length)

    # ------------------------------------------------------------------ what it produced
    def length_table(self, final_only: bool = True) -> pd.DataFrame:
        """length_generalization.csv (the last step's rows unless ``final_only`` is False)."""
        file = self.path / LENGTH_TABLE
        if not file.is_file():
            raise RunSkipped(f"{self.path}: no {LENGTH_TABLE} (training has not finished)")
        table = run_folder.read_length_table(self.path)
        if table.empty:
            raise RunSkipped(f"{file}: empty")
        return table[table.step == table.step.max()] if final_only else table

    @property
    def has_attention(self) -> bool:
        return bool(run_folder.attention_splits(self.path))

    def attention_splits(self) -> list[str]:
        """The splits with saved attention: validation first, then the test bins by length."""
        splits = run_folder.attention_splits(self.path)
        if not splits:
            raise RunSkipped(f"{self.path}: no saved attention ({ATTENTION}/); train with --probe_words > 0")
        return sorted(splits, key=_split_order)

    def attention_records(self, split: str | None = None) -> Iterator[dict]:
        """The saved probe batches (train.run_folder.write_attention_batch): dicts with input_ids (B, T),
        lengths (B,), truth (B, T), and per layer attention / attention_logits (B, H, T, T+1), column 0
        the sink; and the split."""
        for name in [split] if split else self.attention_splits():
            for record in run_folder.read_attention_batches(self.path, name):
                record["split"] = name
                yield record

    def attention_words(self, split: str | None = None) -> Iterator[ProbeWord]:
        """The saved probe words one at a time, padding cut off (see ProbeWord)."""
        for record in self.attention_records(split):
            for b, n in enumerate(record["lengths"].tolist()):
                yield ProbeWord(
                    split=record["split"],
                    ids=record["input_ids"][b, :n].numpy(),
                    truth=record["truth"][b, :n].numpy().astype(bool),
                    attention=[a[b, :, :n, : n + 1] for a in record["attention"]],
                    attention_logits=[s[b, :, :n, : n + 1] for s in record["attention_logits"]],
                )

    def load_model(self, device: str = "cpu") -> Transformer:
        """The trained Transformer from checkpoints/last.ckpt, in eval mode (train.run_folder.load_model)."""
        if not (self.path / LAST_CHECKPOINT).is_file():
            raise RunSkipped(f"{self.path}: no checkpoint {LAST_CHECKPOINT}")
        return run_folder.load_model(self.path, device)


@dataclass
class ProbeWord:
    """One saved probe word of a run: its symbols and every layer's attention on it."""

    split: str  # validation or test_<lo>_<hi>
    ids: np.ndarray  # (n,) symbol ids
    truth: np.ndarray  # (n,) bool, the formula at each position
    attention: list  # per layer (H, n, n + 1) weights, column 0 the sink
    attention_logits: list  # per layer (H, n, n + 1) logits (temperature included), -inf where masked


def find_runs(paths) -> tuple[list[RunFolder], list[str]]:
    """Every run folder at or under ``paths`` (a run folder, a grid folder, or a folder of them).

    Returns the runs (sorted by path) and a message for each folder that looks like a run but
    cannot be read, and for each given path that holds no run at all.
    """
    runs, skipped = [], []
    for root in [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]:
        if not root.exists():
            skipped.append(f"{root}: no such file or folder")
            continue
        found = sorted({file.parent for file in root.rglob(RUN_INFO)} | ({root} if (root / RUN_INFO).is_file() else set()))
        if not found:
            skipped.append(f"{root}: holds no run folder (no {RUN_INFO} at or below it)")
        for folder in found:
            run = RunFolder(folder)
            try:
                run.check()
            except RunSkipped as error:
                skipped.append(str(error))
                continue
            runs.append(run)
    return runs, skipped


def as_runs(runs) -> tuple[list[RunFolder], list[str]]:
    """RunFolders as given, or those find_runs finds under a path or paths (with its skip messages)."""
    if isinstance(runs, RunFolder):
        return [runs], []
    if not isinstance(runs, (str, Path)):
        runs = list(runs)
        if all(isinstance(run, RunFolder) for run in runs):
            return runs, []
    return find_runs(runs)


def map_runs(analysis: Callable[[RunFolder], pd.DataFrame], runs, columns: Sequence[str],
             description: str) -> pd.DataFrame:
    """``analysis`` of every run, stacked, with each run's SETTINGS and other_settings as the first columns.

    runs: RunFolders, or paths for find_runs. A run the analysis cannot use (RunSkipped) is
    skipped with a warning; the messages are in ``result.attrs["skipped"]``. ``columns``: the
    analysis' own columns, for the empty table when no run is left.
    """
    runs, skipped = as_runs(runs)
    others = other_settings(runs)
    frames = []
    for run in tqdm(runs, desc=description, disable=len(runs) < 2):
        try:
            table = analysis(run)
        except RunSkipped as error:
            skipped.append(str(error))
            continue
        settings = run.settings_with(others)
        frames.append(table.assign(**settings)[list(settings) + [c for c in table.columns if c not in settings]])
    for message in skipped:
        warnings.warn(f"skipped {message}", stacklevel=3)
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SETTINGS) + list(columns))
    result.attrs["skipped"] = skipped
    return result


def collect_runs(paths, wandb_path: str | None = None, final_only: bool = True) -> pd.DataFrame:
    """One tidy table of every run's length generalization under ``paths`` (and a wandb project).

    Columns: SETTINGS, other_settings (config keys that differ between the runs), then step, split,
    length, words, string_accuracy, position_accuracy,
    word_position_accuracy (one row per run, step and test length; the final step only unless
    ``final_only`` is False). Runs that cannot be read are skipped with a warning; their
    messages are in ``table.attrs["skipped"]``.

    wandb_path: "entity/project" to add the runs of a wandb project (through its API; needs the
    network) — one row per run and test bin, the bin's mean accuracies, ``length`` its shortest
    length (wandb holds per-bin means, not per-length rows).
    """
    runs, skipped = as_runs(paths) if paths else ([], [])
    others = other_settings(runs)
    frames = []
    for run in runs:
        try:
            table = run.length_table(final_only)
        except RunSkipped as error:
            skipped.append(str(error))
            continue
        frames.append(table.assign(**run.settings_with(others)))
    if wandb_path:
        frames.append(wandb_runs(wandb_path))
    for message in skipped:
        warnings.warn(f"skipped {message}", stacklevel=2)
    columns = list(SETTINGS) + others + LENGTH_COLUMNS
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    table.attrs["skipped"] = skipped
    return table


def wandb_runs(path: str, api=None) -> pd.DataFrame:
    """The finished runs of wandb project ``path`` as rows of collect_runs' table (see there)."""
    if api is None:
        import wandb

        api = wandb.Api()
    rows = []
    for run in api.runs(path):
        config = dict(run.config)
        model = config.get("model", {}).get("transformer", {})
        settings = {
            "run": run.name, "language": config.get("data", {}).get("language"), "formula": None,
            "positional": setting_label(model.get("positional", "?")), "temperature": setting_label(model.get("temperature", "?")),
            "tau": setting_label(model.get("tau", "?")), "seed": config.get("seed_everything"),
            "n_layers": model.get("n_layers"), "n_heads": model.get("n_heads"), "d_model": model.get("d_model"),
            "train_max_length": config.get("data", {}).get("max_length"), "run_dir": f"wandb:{path}/{run.id}",
        }
        summary = dict(run.summary)
        splits = sorted({key.split("/")[1] for key in summary if key.startswith(LENGTHGEN_PREFIX)}, key=_split_order)
        for split in splits:
            rows.append({**settings, "step": summary.get("trainer/global_step", summary.get("_step")), "split": split,
                         "length": _split_order(split)[1], "words": None,
                         "string_accuracy": summary.get(f"{LENGTHGEN_PREFIX}{split}/string_accuracy"),
                         "position_accuracy": summary.get(f"{LENGTHGEN_PREFIX}{split}/position_accuracy"),
                         "word_position_accuracy": None})
    return pd.DataFrame(rows)


def _split_order(split: str) -> tuple[int, int]:
    """validation first, then test bins test_<lo>_<hi> by their shortest length."""
    if split.startswith("test_"):
        try:
            return 1, int(split.split("_")[1])
        except (IndexError, ValueError):
            pass
    return 0, 0


def _read_json(file: Path) -> dict:
    if not file.is_file():
        raise RunSkipped(f"{file.parent}: no {file.name}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise RunSkipped(f"{file}: not valid JSON ({error})") from None
