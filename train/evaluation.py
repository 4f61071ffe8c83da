"""Length generalization: one pass over every test length bin, written as its own table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from softhard.train.module import LanguageModel, masked_position_mask

COLUMNS = ["step", "split", "length", "words", "string_accuracy", "position_accuracy", "word_position_accuracy"]


@torch.no_grad()
def length_generalization(module: LanguageModel, loaders: dict, step: int, progress: bool = True) -> pd.DataFrame:
    """Accuracy per test length: string-level, per-position, and whole-word per-position."""
    was_training = module.training
    module.eval()
    rows = []
    for split, loader in loaders.items():
        sums: dict[int, np.ndarray] = {}
        for batch in tqdm(loader, desc=f"length generalization {split}", disable=not progress, leave=False):
            batch = {key: value.to(module.device) for key, value in batch.items()}
            output = module(batch)
            real = masked_position_mask(batch["lengths"], batch["input_ids"].shape[1])
            position_right = ((output.position_logits > 0) == batch["truth"]) & real
            string_right = (output.string_logits > 0) == batch["label"]
            word_right = (position_right | ~real).all(dim=1)
            for b, length in enumerate(batch["lengths"].tolist()):
                counts = sums.setdefault(length, np.zeros(4))
                counts += [1, float(string_right[b]), float(position_right[b].sum()) / length, float(word_right[b])]
        for length, (words, string, position, word) in sorted(sums.items()):
            rows.append([step, split, length, int(words), string / words, position / words, word / words])
    module.train(was_training)
    return pd.DataFrame(rows, columns=COLUMNS)


def append_table(table: pd.DataFrame, path: Path) -> None:
    """Append rows to a CSV table (created with its header)."""
    path = Path(path)
    table.to_csv(path, mode="a", header=not path.exists(), index=False)
