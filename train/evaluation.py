"""Length generalization: one pass over every test length bin, written as its own table.

Under DDP each rank evaluates its own block of every bin (rank_share) and the per-length
counts are summed across ranks (``reduce_sum``, the strategy's all-reduce), so every word is
evaluated once and every rank returns the same table.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from softhard.train.module import LanguageModel, real_positions, right_predictions
from softhard.train.run_folder import LENGTH_COLUMNS


def rank_share(size: int, rank: int, world_size: int) -> range:
    """The contiguous block of a split's ``size`` words that ``rank`` of ``world_size`` evaluates:
    every word on exactly one rank (DistributedSampler would repeat words to even out the shares)."""
    return range(size * rank // world_size, size * (rank + 1) // world_size)


@torch.no_grad()
def length_generalization(module: LanguageModel, loaders: dict[str, DataLoader], step: int, progress: bool = True,
                          rank: int = 0, world_size: int = 1,
                          reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda counts: counts) -> pd.DataFrame:
    """Accuracy per test length: string-level, per-position, and whole-word per-position.

    ``loaders`` hold one loader per split over a datasets.Dataset with a ``length`` column;
    rank ``rank`` of ``world_size`` evaluates its rank_share of each, and ``reduce_sum`` sums
    the (lengths, 4) counts of all ranks (every rank must call it, as with an all-reduce).
    """
    keys = [(split, length) for split, loader in loaders.items() for length in sorted(set(loader.dataset["length"]))]
    index = {key: row for row, key in enumerate(keys)}
    # per (split, length): words, right strings, per-word fractions of right positions, right words
    counts = torch.zeros(len(keys), 4, dtype=torch.float64, device=module.device)
    was_training = module.training
    module.eval()
    for split, loader in loaders.items():
        for batch in tqdm(_share_of(loader, rank, world_size), desc=f"length generalization {split}",
                          disable=not progress, leave=False):
            batch = {key: value.to(module.device) for key, value in batch.items()}
            output = module(batch)
            real = real_positions(batch["lengths"], batch["input_ids"].shape[1])
            position_right, word_right, string_right = right_predictions(output, batch, real)
            rows = torch.tensor([index[split, length] for length in batch["lengths"].tolist()], device=module.device)
            per_word = torch.stack([
                torch.ones_like(rows, dtype=torch.float64),
                string_right.double(),
                position_right.sum(dim=1).double() / batch["lengths"].double(),
                word_right.double(),
            ], dim=1)
            counts.index_add_(0, rows, per_word)
    module.train(was_training)
    counts = reduce_sum(counts).cpu()
    table = [[step, split, length, int(words), string / words, position / words, word / words]
             for (split, length), (words, string, position, word) in zip(keys, counts.tolist())
             if words]  # a length of no words: only where reduce_sum sums nothing (a single rank's share)
    return pd.DataFrame(table, columns=LENGTH_COLUMNS)


def _share_of(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    if world_size == 1:
        return loader
    share = rank_share(len(loader.dataset), rank, world_size)
    return DataLoader(Subset(loader.dataset, share), batch_size=loader.batch_size, collate_fn=loader.collate_fn,
                      num_workers=loader.num_workers)

