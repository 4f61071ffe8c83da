"""The LightningModule: a models/ Transformer trained on per-position truth and string labels."""

from __future__ import annotations

import dataclasses
import random
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from softhard.models import Transformer, TransformerConfig, TransformerOutput
from softhard.models.checkpoint import CONFIG_KEY, transformer_config

OBJECTIVES = ("position", "string", "both")


def real_positions(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T) True at real (non-padding) positions of words of ``lengths`` padded to ``width``."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def right_predictions(output: TransformerOutput, batch: dict,
                      real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the model gets right, the one definition of every accuracy in training and evaluation:
    (B, T) each position's truth (False at padding), (B,) every position of the word, (B,) the
    string's membership. A logit > 0 predicts true."""
    position = ((output.position_logits > 0) == batch["truth"]) & real
    return position, (position | ~real).all(dim=1), (output.string_logits > 0) == batch["label"]


class LanguageModel(pl.LightningModule):
    def __init__(
        self,
        transformer: TransformerConfig = TransformerConfig(),
        objective: str = "both",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        vocab_size: Optional[int] = None,
        max_positions: Optional[int] = None,
    ):
        """
        Args:
            transformer: the model's configuration (models/transformer.py, every field commented there);
                its dict form too, as a checkpoint's hyperparameters hold it (load_from_checkpoint).
            objective: the loss: "position" (truth at every position), "string" (membership,
                read at the last position) or "both" (their sum).
            lr: AdamW learning rate.
            weight_decay: AdamW weight decay.
            vocab_size: set from the data (the alphabet size); overrides transformer.vocab_size.
            max_positions: set from the data (the longest test word); raises transformer.max_len
                to it so learned position tables cover every test length.
        """
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"model.objective: unknown value {objective!r}; expected one of {OBJECTIVES}")
        if not lr > 0 or weight_decay < 0:
            raise ValueError(f"model.lr must be > 0 and model.weight_decay >= 0, got {lr} and {weight_decay}")
        if isinstance(transformer, dict):
            transformer = transformer_config(transformer)
        changes = {}
        if vocab_size is not None:
            changes["vocab_size"] = vocab_size
        if max_positions is not None and max_positions > transformer.max_len:
            changes["max_len"] = max_positions
        self.config = dataclasses.replace(transformer, **changes)  # a copy: the default instance stays untouched
        # models.checkpoint's format: the config under CONFIG_KEY (this argument's name, so that
        # load_from_checkpoint passes it back), the Transformer as ``model`` (its PREFIX)
        self.save_hyperparameters({CONFIG_KEY: dataclasses.asdict(self.config), "objective": objective, "lr": lr,
                                   "weight_decay": weight_decay})
        self.model = Transformer(self.config)
        self.objective = objective

    def forward(self, batch: dict, return_attention: bool = False):
        return self.model(batch["input_ids"], batch["lengths"], return_attention=return_attention)

    def _step(self, batch: dict, stage: str, return_attention: bool = False):
        output = self(batch, return_attention)
        real = real_positions(batch["lengths"], batch["input_ids"].shape[1])
        truth, label = batch["truth"].float(), batch["label"].float()
        position_loss = F.binary_cross_entropy_with_logits(output.position_logits[real], truth[real])
        string_loss = F.binary_cross_entropy_with_logits(output.string_logits, label)
        loss = {"position": position_loss, "string": string_loss, "both": position_loss + string_loss}[self.objective]
        position_right, word_right, string_right = right_predictions(output, batch, real)
        # Epoch means weight each batch by what its means are over: positions or words, so that
        # validation figures do not depend on how the split is cut into batches.
        positions, words = int(real.sum()), len(batch["lengths"])
        per_position = {
            f"{stage}/position_loss": position_loss,
            f"{stage}/position_accuracy": position_right[real].float().mean(),
        }
        per_word = {
            f"{stage}/string_loss": string_loss,
            f"{stage}/word_position_accuracy": word_right.float().mean(),
            f"{stage}/string_accuracy": string_right.float().mean(),
        }
        # epoch means are averaged across DDP ranks too (each validates its own share of the split)
        log = dict(on_step=stage == "train", on_epoch=stage != "train", sync_dist=stage != "train")
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=positions if self.objective == "position"
                 else words, **log)  # under "both", a sum of a per-position and a per-word mean: weighted by words
        self.log_dict(per_position, prog_bar=stage == "train", batch_size=positions, **log)
        self.log_dict(per_word, prog_bar=stage == "train", batch_size=words, **log)
        return loss, output, real

    def training_step(self, batch, batch_idx):
        loss, _, _ = self._step(batch, "train")
        self.log_dict(self.temperature_metrics(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        _, output, real = self._step(batch, "val", return_attention=True)
        self.log_dict(attention_statistics(output.attention, real), on_epoch=True, batch_size=int(real.sum()),
                      sync_dist=True)

    def temperature_metrics(self) -> dict[str, torch.Tensor]:
        """Each head's effective temperature tau_h * schedule (before any length factor)."""
        metrics = {}
        for layer, block in enumerate(self.model.blocks):
            taus = block.attn.temperatures().detach() * self.model.tau_schedule
            for head, tau in enumerate(taus):
                metrics[f"temperature/layer{layer}_head{head}"] = tau
        return metrics

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # Python, numpy and torch random states travel with the checkpoint, so a resumed run
    # draws the same dropout masks and offsets as an uninterrupted one. They are kept as
    # tuples, lists and tensors, which torch's weights-only loader accepts (a numpy array
    # is refused), so load_from_checkpoint needs no weights_only=False.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        checkpoint["rng_states"] = {"python": random.getstate(),
                                    "numpy": (kind, keys.tolist(), position, has_gauss, cached_gaussian),
                                    "torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            random.setstate(states["python"])
            kind, keys, *rest = states["numpy"]
            np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
            torch.set_rng_state(states["torch"])


def attention_statistics(attention: list[torch.Tensor], real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean entropy (nats) and mean max weight of each layer's attention rows at real positions."""
    statistics = {}
    for layer, weights in enumerate(attention):  # (B, H, T, T+1)
        rows = weights.permute(0, 2, 1, 3)[real]  # (real positions, H, T+1)
        entropy = -(rows * torch.log(rows.clamp_min(1e-30))).sum(-1)
        statistics[f"attention/layer{layer}_entropy"] = entropy.mean()
        statistics[f"attention/layer{layer}_max_weight"] = rows.max(-1).values.mean()
    return statistics
