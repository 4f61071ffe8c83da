"""Models: one encoder transformer (models/transformer.py) with per-head masks, attention kinds
and temperatures, and its helpers (positional encodings, masks, temperatures). See docs/models.md."""

from softhard.models.attention import hard_attention
from softhard.models.temperature import TemperatureSchedule
from softhard.models.transformer import Transformer, TransformerConfig, TransformerOutput

__all__ = ["TemperatureSchedule", "Transformer", "TransformerConfig", "TransformerOutput", "hard_attention"]
