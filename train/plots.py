"""Figures of a run: accuracy by length, attention maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def accuracy_by_length(table: pd.DataFrame, title: str = "", label: str | None = None, axes=None):
    """String and per-position accuracy against word length (one length-generalization table)."""
    if axes is None:
        figure, axes = plt.subplots(figsize=(6, 3.5))
    ordered = table.sort_values("length")
    prefix = f"{label}: " if label else ""
    axes.plot(ordered["length"], ordered["string_accuracy"], marker="o", label=f"{prefix}string")
    axes.plot(ordered["length"], ordered["position_accuracy"], marker=".", linestyle="--", label=f"{prefix}per position")
    axes.set_xscale("log")
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("word length")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return axes.figure


def attention_maps(attention: list, length: int):
    """One panel per layer and head: query position (rows) by key (columns, sink first)."""
    layers, heads = len(attention), attention[0].shape[0]
    figure, grid = plt.subplots(layers, heads, figsize=(2.6 * heads, 2.4 * layers), squeeze=False)
    for layer, weights in enumerate(attention):  # (H, T, T+1)
        for head in range(heads):
            axes = grid[layer][head]
            axes.imshow(weights[head, :length, : length + 1].numpy(), vmin=0, vmax=1, cmap="viridis")
            axes.set_title(f"layer {layer} head {head}", fontsize="small")
            axes.set_xlabel("key (0 = sink)", fontsize="x-small")
            axes.set_ylabel("query", fontsize="x-small")
    figure.tight_layout()
    return figure


def save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
