"""Positional encodings. Positions are 0-indexed word positions i = 0..T-1; n is a word's length.

Input side (added to the token embeddings, see `PositionalEncoding`):
    sinusoidal  PE[i, 2k] = sin(i / 10000^(2k/d)), PE[i, 2k+1] = cos(i / 10000^(2k/d))
    learned     a table W[p] for p in 0..max_len-1, read at p = i + offset; offset = 0 in
                evaluation, uniform in 0..max_len-T per word in training when random_offset
                is set (Huang et al.: every row of the table gets trained)
    features    the theory features below, concatenated in the order listed in the config
                into a (B, T, F) tensor, then projected by a bias-free Linear(F, d_model)
                and added. Raw values, not normalised (constructions need them exact):
                    "i"       i
                    "i/n"     i / n                       (0 at i = 0; < 1 on the word)
                    "1/i"     1 / (i + 1)                 (1/i of the 1-indexed position)
                    "i^2"     i * i
                    "(-1)^i"  +1 at even i, -1 at odd i   (+1 at i = 0)
                    "cos(2pi i/m)", "sin(2pi i/m)"   period m, 3 <= m <= MAX_PERIOD
                              (m = 2 is "(-1)^i"; modular counting by lookup)
Attention side (inside every layer, see models/transformer.py):
    rope        rotary embedding of queries and keys, half-split convention: with
                theta_k = base^(-2k/d_head), k < d_head/2, the pair (x[k], x[k + d_head/2])
                at position i is rotated by the angle i * theta_k. The sink key is not rotated.
    alibi       a bias -m_h * |i - j| added to the scores, slopes m_h = 2^(-8 (h+1) / H);
                symmetric in i - j so that it also serves future masks. The sink gets 0.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn

INPUT_ENCODINGS = ("sinusoidal", "learned")
ATTENTION_ENCODINGS = ("rope", "alibi")
MAX_PERIOD = 16
PERIODIC = {f"{f}(2pi i/{m})": (f, m) for m in range(3, MAX_PERIOD + 1) for f in ("cos", "sin")}
FEATURES = ("i", "i/n", "1/i", "i^2", "(-1)^i") + tuple(PERIODIC)
POSITIONAL = INPUT_ENCODINGS + ATTENTION_ENCODINGS + FEATURES


def sinusoidal(T: int, d: int, device=None) -> torch.Tensor:
    """The sinusoidal table of Vaswani et al., (T, d)."""
    i = torch.arange(T, dtype=torch.float32, device=device)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(i * freq)
    pe[:, 1::2] = torch.cos(i * freq)[:, : d // 2]
    return pe


def theory_features(names: Sequence[str], T: int, lengths: Optional[torch.Tensor], device=None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The features `names` at positions 0..T-1, of shape (B, T, F), or (1, T, F) without lengths.

    Computed in ``dtype``: fp32 keeps i^2 exact up to i = 4096 and i/n to 2^-24; float64 goes far
    beyond (the constructions' unbounded scores need it for long words).
    """
    i = torch.arange(T, dtype=dtype, device=device)[None, :]  # (1, T)
    n = (torch.full((1, 1), float(T), dtype=dtype, device=device) if lengths is None
         else lengths.to(device=device, dtype=dtype)[:, None])
    values = {
        "i": lambda: i,
        "i/n": lambda: i / n.clamp(min=1),
        "1/i": lambda: 1.0 / (i + 1.0),
        "i^2": lambda: i * i,
        "(-1)^i": lambda: 1.0 - 2.0 * (i % 2),
    }
    cols = [values[name]() if name in values else periodic(*PERIODIC[name], i) for name in names]
    B = max(c.shape[0] for c in cols)
    return torch.stack([c.expand(B, T) for c in cols], dim=-1)  # (B, T, F)


def periodic(function: str, m: int, i: torch.Tensor) -> torch.Tensor:
    """cos or sin of 2 pi i / m, from i mod m (exact period whatever i's size)."""
    angle = (i % m) * (2 * math.pi / m)
    return angle.cos() if function == "cos" else angle.sin()


def rope_angles(T: int, d_head: int, base: float = 10000.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles i * theta_k, each (T, d_head // 2)."""
    theta = base ** (-torch.arange(0, d_head // 2, dtype=torch.float32, device=device) * 2.0 / d_head)
    angle = torch.arange(T, dtype=torch.float32, device=device)[:, None] * theta[None, :]  # (T, d_head/2)
    return angle.cos(), angle.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, d_head) by position; the halves x[..., :d/2] and x[..., d/2:] form the pairs."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., T, d_head/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(n_heads: int, device=None) -> torch.Tensor:
    """m_h = 2^(-8 (h+1) / H) for h = 0..H-1, (H,)."""
    h = torch.arange(1, n_heads + 1, dtype=torch.float32, device=device)
    return 2.0 ** (-8.0 * h / n_heads)


def alibi_bias(T: int, slopes: torch.Tensor) -> torch.Tensor:
    """-m_h * |i - j| for word keys, 0 for the sink (column 0): (H, T, T+1)."""
    i = torch.arange(T, dtype=torch.float32, device=slopes.device)
    dist = (i[:, None] - i[None, :]).abs()  # (T, T)
    bias = -slopes[:, None, None] * dist[None]  # (H, T, T)
    return torch.cat([torch.zeros_like(bias[:, :, :1]), bias], dim=-1)  # (H, T, T+1)


class PositionalEncoding(nn.Module):
    """The input-side encodings of `names`, summed into one (B or 1, T, d_model) tensor."""

    def __init__(self, names: Sequence[str], d_model: int, max_len: int, random_offset: bool):
        super().__init__()
        self.sinusoidal = "sinusoidal" in names
        self.learned = nn.Embedding(max_len, d_model) if "learned" in names else None
        self.random_offset = random_offset
        self.features = [name for name in names if name in FEATURES]
        self.feature_proj = nn.Linear(len(self.features), d_model, bias=False) if self.features else None
        self.d_model, self.max_len = d_model, max_len

    def positions(self, B: int, T: int, device) -> torch.Tensor:
        """Rows of the learned table read at each word position, (B, T) or (1, T)."""
        i = torch.arange(T, device=device)[None, :]
        if self.training and self.random_offset:
            offset = torch.randint(0, self.max_len - T + 1, (B, 1), device=device)
            return i + offset
        return i

    def forward(self, B: int, T: int, lengths: Optional[torch.Tensor], device) -> torch.Tensor:
        parts = []
        if self.sinusoidal:
            parts.append(sinusoidal(T, self.d_model, device)[None])  # (1, T, d)
        if self.learned is not None:
            if T > self.max_len:
                raise ValueError(f"length {T} exceeds max_len={self.max_len} of the learned position table")
            parts.append(self.learned(self.positions(B, T, device)))  # (B|1, T, d)
        if self.feature_proj is not None:
            weight = self.feature_proj.weight
            precise = torch.float64 if weight.dtype == torch.float64 else torch.float32  # never below fp32
            feats = theory_features(self.features, T, lengths, device, precise).to(weight.dtype)  # (B|1, T, F)
            with torch.autocast(device_type=torch.device(device).type, enabled=False):
                parts.append(self.feature_proj(feats))  # at least fp32 even under autocast: i^2 exact up to 2^24
        if not parts:
            return torch.zeros(1, T, self.d_model, device=device)
        return functools.reduce(torch.add, parts)  # (B|1, T, d), summed in the order listed above
