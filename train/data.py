"""The LightningDataModule: a language's cached dataset (data/) as padded batches.

Validation runs on the ``validation`` split only; the test bins are read by the
length-generalization loop (train/evaluation.py), one pass over all of them, never as
extra validation dataloaders.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from softhard.data import registry
from softhard.data.dataset import (
    DEFAULT_CACHE,
    DatasetSpec,
    build_dataset,
    dataset_path,
    fingerprint,
    read_manifest,
    undivided_summary,
)
from softhard.data.language import Language


class EpochSeededSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): the data order of every epoch is the
    same whether a run went straight through or resumed from a checkpoint. Lightning calls
    ``set_epoch`` at the start of every epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad a list of dataset rows: input_ids (B, T), truth (B, T), lengths (B,), label (B,)."""
    lengths = torch.tensor([row["length"] for row in rows])
    width = int(lengths.max())
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    truth = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, row in enumerate(rows):
        input_ids[b, : row["length"]] = torch.as_tensor(np.asarray(row["input_ids"]))
        truth[b, : row["length"]] = torch.as_tensor(np.asarray(row["truth"]))
    label = torch.tensor([bool(row["label"]) for row in rows])
    return {"input_ids": input_ids, "truth": truth, "lengths": lengths, "label": label}


class LanguageDataModule(pl.LightningDataModule):
    def __init__(
        self,
        language: str = "tomita2",
        formula: Optional[str] = None,
        alphabet: Optional[str] = None,
        min_length: int = 1,
        max_length: int = 20,
        train_per_length: int = 256,
        validation_per_length: int = 64,
        test_per_length: int = 64,
        test_factor: int = 10,
        test_lengths_per_bin: int = 4,
        data_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        cache_dir: str = str(DEFAULT_CACHE),
    ):
        """
        Args:
            language: a registry name (`softhard data list`); the name of the run's language
                when formula and alphabet are given instead.
            formula: an LTL formula overriding the registry entry (with alphabet).
            alphabet: comma-separated symbols for formula.
            min_length: shortest train/validation word.
            max_length: longest train/validation word; test bins reach test_factor x this.
            train_per_length: train words per length, half members and half non-members.
            validation_per_length: validation words per length.
            test_per_length: test words per test length.
            test_factor: test bins reach at least this many times max_length.
            test_lengths_per_bin: lengths sampled in each doubling test bin.
            data_seed: seed of the dataset sampler (part of the dataset fingerprint).
            batch_size: training batch size.
            eval_batch_size: batch size of validation and length-generalization passes.
            num_workers: DataLoader workers.
            cache_dir: where datasets are cached (data/dataset.py).
        """
        super().__init__()
        self.save_hyperparameters()
        if formula is not None or alphabet is not None:
            if not (formula and alphabet):
                raise ValueError("data.formula and data.alphabet go together: give both or neither")
            self.language = Language.from_text(formula, alphabet, language)
        else:
            self.language = registry.get(language).language()
        self.spec = DatasetSpec(
            min_length=min_length,
            max_length=max_length,
            train_per_length=train_per_length,
            validation_per_length=validation_per_length,
            test_per_length=test_per_length,
            test_factor=test_factor,
            test_lengths_per_bin=test_lengths_per_bin,
            seed=data_seed,
        )
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.cache_dir = Path(cache_dir)
        self.dataset = None

    @property
    def vocab_size(self) -> int:
        return len(self.language.alphabet)

    @property
    def max_test_length(self) -> int:
        return max(max(lengths) for lengths in self.spec.lengths().values())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.language, self.spec)

    def prepare_data(self) -> None:
        """Builds (or reuses) the dataset; warns where validation lacks a class at a length (its
        single word is a training word: data/dataset.py)."""
        build_dataset(self.language, self.spec, self.cache_dir)
        for line in undivided_summary(read_manifest(dataset_path(self.language, self.spec, self.cache_dir))):
            warnings.warn(f"dataset of {self.language.title}: {line}", stacklevel=2)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.dataset is None:
            self.dataset = build_dataset(self.language, self.spec, self.cache_dir, progress=False)

    def _loader(self, split: str, batch_size: int, sampler: Optional[Sampler] = None) -> DataLoader:
        return DataLoader(
            self.dataset[split],
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        split = self.dataset["train"]
        seed = torch.initial_seed() % (2**31)  # seed_everything's seed: one shuffle stream per run seed
        return self._loader("train", self.hparams.batch_size, EpochSeededSampler(len(split), seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", self.hparams.eval_batch_size)

    def test_splits(self) -> dict[str, DataLoader]:
        """One loader per test length bin, in increasing length."""
        self.setup()
        return {name: self._loader(name, self.hparams.eval_batch_size) for name in self.dataset if name.startswith("test_")}
