"""A Transformer in the checkpoint format of a training run: config in hyper_parameters, weights under ``model.``.

`softhard train` (Lightning) writes checkpoints/last.ckpt this way; ``save_checkpoint`` writes
the same two keys for a model made elsewhere (a softened or compiled model), so that every
reader of run checkpoints (analysis.runs.RunFolder.load_model) loads it alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from softhard.models.temperature import TemperatureSchedule
from softhard.models.transformer import Transformer, TransformerConfig

PREFIX = "model."


def load_checkpoint(file: str | Path, device: str = "cpu") -> Transformer:
    """The Transformer of a run-format checkpoint, in eval mode (tau_schedule as saved)."""
    # A run's own checkpoint also holds random states, which the weights-only loader refuses.
    checkpoint = torch.load(file, map_location=device, weights_only=False)
    fields = dict(checkpoint["hyper_parameters"]["transformer"])
    if fields.get("schedule") is not None:
        fields["schedule"] = TemperatureSchedule(**fields["schedule"])
    model = Transformer(TransformerConfig(**fields))
    state = {key[len(PREFIX):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(PREFIX)}
    model.load_state_dict(state)
    return model.to(device).eval()


def save_checkpoint(model: Transformer, file: str | Path) -> Path:
    """Write ``model`` as a run-format checkpoint that load_checkpoint reads back."""
    fields = dataclasses.asdict(model.config)  # the schedule, a dataclass too, becomes its fields
    fields["attention_kind"] = model.attention_kinds  # as set now (set_attention_kind leaves the config)
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    state = {PREFIX + key: value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": {"transformer": fields}, "state_dict": state}, file)
    return file
