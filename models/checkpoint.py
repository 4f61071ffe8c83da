"""A Transformer in the checkpoint format of a training run: config in hyper_parameters, weights under ``model.``.

`softhard train` (Lightning) writes checkpoints/last.ckpt this way: train.module.LanguageModel
keeps its config as the hyperparameter CONFIG_KEY (the name of its ``transformer`` argument)
and the Transformer as its attribute ``model`` (hence PREFIX). ``save_checkpoint`` writes the
same two keys for a model made elsewhere (a softened or compiled model), so that every reader
of run checkpoints (train.run_folder.load_model, `softhard soften`) loads it alike.

RUN_CHECKPOINT, where a run folder keeps its checkpoint, is declared here rather than in
train.run_folder (which re-exports it) because `softhard soften` reads run folders and models/
never imports train/.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from softhard.models.temperature import TemperatureSchedule
from softhard.models.transformer import Transformer, TransformerConfig

RUN_CHECKPOINT = Path("checkpoints", "last.ckpt")  # in a run folder; rewritten after every epoch
CONFIG_KEY = "transformer"  # hyper_parameters[CONFIG_KEY]: the TransformerConfig as a dict
PREFIX = "model."  # the Transformer's weights in state_dict


def transformer_config(fields: dict) -> TransformerConfig:
    """The TransformerConfig of its ``dataclasses.asdict`` form (a checkpoint's hyperparameters)."""
    fields = dict(fields)
    if isinstance(fields.get("schedule"), dict):
        fields["schedule"] = TemperatureSchedule(**fields["schedule"])
    return TransformerConfig(**fields)


def load_checkpoint(file: str | Path, device: str = "cpu") -> Transformer:
    """The Transformer of a run-format checkpoint, in eval mode (tau_schedule as saved)."""
    # A run's own checkpoint also holds random states, which the weights-only loader refuses.
    checkpoint = torch.load(file, map_location=device, weights_only=False)
    model = Transformer(transformer_config(checkpoint["hyper_parameters"][CONFIG_KEY]))
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
    torch.save({"hyper_parameters": {CONFIG_KEY: fields}, "state_dict": state}, file)
    return file
