"""Memory-linear evaluation of a compiled model: blocks of queries, never an n-by-n tensor.

``Transformer.forward`` builds a (1, H, n, n + 1) visibility mask even on its SDPA path, so a
word of 100,000 symbols would need 10^10 bytes per head. ``evaluate`` runs the same weights,
read from the modules of a ``CompiledModel`` (norm "none", theory features, fixed temperatures,
dropout 0), layer by layer, and every compiled head over blocks of ``block`` queries. A block
[i0, i1) only looks at the keys its head's mask band lets some query see (strict past:
j < i1 - 1; strict future: j > i0), so the largest tensor is (B, block, n + 1) and memory grows
linearly with n for a fixed block. Heads that compute nothing (zero weights, no ``HeadInfo``)
output exactly 0 and are skipped.

Off-target mass (optional, per head): the attention weight outside the head's hard target set,
sink included as column 0, the quantity ``HeadInfo.hard_targets`` (the n-by-n reference)
defines. The targets are derived in O(n) per head from the indicator s_j and the target rule,
as ``Targets``: query i's targets are the keys j in its mask band with ``key_ok[j]``,
``query_ok[i]`` and, for single-target rules, j = ``pick[i]``; the sink when there is none.

    rule    key_ok  query_ok  pick
    any     s_j     1         -            (O H F G: every visible j with s_j)
    all     1       1         -            (counts: every visible word key)
    query   1       s_i       -            (sign heads: every visible key if s holds at i)
    self    1       s_i       i            (position-times heads)
    lookup  1       1         #p - 1 = sum_{j <= i} s_j - 1   (residue heads; -1: the sink)
    last    1       1         max{j <= i - lo : s_j}, a prefix scan (cummax)   (Y S)
    first   1       1         min{j >= i - hi : s_j}, a suffix scan (cummin)   (X U)

A pick outside the band (or none: -1 / n) leaves the sink as the only target.

Precision: ``dtype`` casts every weight, the token embeddings and the positional features (so
i/n itself is rounded: bfloat16 keeps 8 significant bits, so neighbouring i/n coincide once
n > 256). Attention logits and softmax run in fp32 under bfloat16 when the model's
``attn_fp32`` is set, as in ``Transformer.forward``; float64 runs everything in float64. The
features are computed in fp32 (float64 for float64) and then rounded to ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from softhard.data.ltl.evaluate import label_positions
from softhard.models.blocked import BLOCK_ELEMENTS, attend_blocks
from softhard.models.compiler.compiled import CompiledModel, HeadInfo
from softhard.models.masks import MASK_BOUNDS
from softhard.models.positional import theory_features

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass
class Evaluation:
    predictions: np.ndarray  # (B, n) bool: position logit > 0
    offtarget: np.ndarray | None  # (len(heads),) per HeadInfo: the largest off-target mass over words and queries


@dataclass
class Targets:
    """A head's hard target sets in O(n) (module docstring): (B, n) tensors, pick None or long."""

    key_ok: torch.Tensor
    query_ok: torch.Tensor
    pick: torch.Tensor | None

    def block(self, band: torch.Tensor, i0: int, i1: int, k0: int, k1: int) -> torch.Tensor:
        """The target sets of queries [i0, i1) over keys [k0, k1): bool (B, i1 - i0, 1 + k1 - k0), column 0 the sink."""
        cand = band[None] & self.key_ok[:, None, k0:k1] & self.query_ok[:, i0:i1, None]  # (B, blk, K)
        if self.pick is not None:
            keys = torch.arange(k0, k1, device=band.device)
            cand = cand & (keys[None, None, :] == self.pick[:, i0:i1, None])
        return torch.cat([~cand.any(-1, keepdim=True), cand], dim=-1)


def head_targets(info: HeadInfo, ids: np.ndarray, alphabet, device) -> Targets:
    """The hard target sets of one head on words ids (B, n), without an n-by-n tensor."""
    B, n = ids.shape
    s = np.ones((B, n), bool) if info.score_formula is None else label_positions(info.score_formula, ids, alphabet)
    s = torch.as_tensor(s, device=device)
    ones = torch.ones_like(s)
    rule = info.target_rule
    if rule in ("any", "all", "query"):
        return Targets(key_ok=s if rule == "any" else ones, query_ok=s if rule == "query" else ones, pick=None)
    i = torch.arange(n, device=device).expand(B, n)
    if rule == "self":
        return Targets(key_ok=ones, query_ok=s, pick=i)
    if rule == "lookup":
        return Targets(key_ok=ones, query_ok=ones, pick=s.long().cumsum(dim=1) - 1)
    lo, hi = MASK_BOUNDS[info.mask]
    j = torch.arange(n, device=device).expand(B, n)
    if rule == "last":  # last[m + 1] = max{j <= m : s_j}, -1 if none; read at m = i - lo
        last = torch.where(s, j, -1).cummax(dim=1).values
        last = torch.cat([torch.full((B, 1), -1, device=device), last], dim=1)  # (B, n + 1)
        return Targets(ones, ones, last.gather(1, (i - lo).clamp(-1, n - 1) + 1))
    if rule == "first":  # first[m] = min{j >= m : s_j}, n if none; read at m = i - hi
        first = torch.where(s, j, n).flip(1).cummin(dim=1).values.flip(1)
        first = torch.cat([first, torch.full((B, 1), n, device=device)], dim=1)  # (B, n + 1)
        return Targets(ones, ones, first.gather(1, (i - hi).clamp(0, n)))
    raise ValueError(f"unknown target rule {rule!r}")


def _linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """module(x) with the weights cast to x's dtype and device (the model itself is left as it is)."""
    bias = None if module.bias is None else module.bias.to(x)
    return F.linear(x, module.weight.to(x), bias)


@torch.no_grad()
def evaluate(compiled: CompiledModel, ids, dtype: str = "float32", device="cpu", tau_factor=1.0,
             offtarget: bool = False, block: int | None = None) -> Evaluation:
    """Run a compiled model on equal-length words in memory linear in their length.

    Args:
        compiled: from ``compile_formula``.
        ids: (B, n) symbol ids.
        dtype: a key of ``DTYPES``: the precision of weights, embeddings, features and MLPs.
        device: where to run ("cpu", "cuda").
        tau_factor: multiplies every head's temperature (1: the compiled temperatures); or one factor
            per ``compiled.heads`` (the per-head frontier varies one head at a time).
        offtarget: also measure each head's largest off-target attention mass.
        block: queries per block; default: ``BLOCK_ELEMENTS`` logits per head and block.

    Returns:
        an Evaluation: predictions (B, n) and, if asked, the off-target mass per ``compiled.heads``.

    Raises:
        ValueError: ids not (B, n >= 1); soft-scaled words longer than the compiled length.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"expected (batch, length) symbol ids with length >= 1, got shape {ids.shape}")
    B, n = ids.shape
    if compiled.mode == "soft-scaled" and n > compiled.length:
        raise ValueError(f"words of length {n} exceed length={compiled.length}, the n the soft-scaled temperatures "
                         "were set for")
    device = torch.device(device)
    model, dt = compiled.model, DTYPES[dtype]
    adt = torch.float32 if dt == torch.bfloat16 and model.config.attn_fp32 else dt  # attention precision
    block = block or max(1, min(n, BLOCK_ELEMENTS[device.type] // (B * (n + 1))))

    x = F.embedding(torch.as_tensor(ids, device=device), model.tok_emb.weight.to(device, dt))  # (B, n, D)
    if model.pos_emb.feature_proj is not None:
        precise = torch.float64 if dt == torch.float64 else torch.float32  # bfloat16: computed in fp32, then rounded
        features = theory_features(model.pos_emb.features, n, None, device, precise).to(dt)  # (1, n, F)
        x = x + _linear(model.pos_emb.feature_proj, features)
    masses = np.zeros(len(compiled.heads))
    factors = np.broadcast_to(np.asarray(tau_factor, dtype=float), (len(compiled.heads),))
    for layer, layer_block in enumerate(model.blocks):
        attn = layer_block.attn
        H, dh = attn.n_heads, attn.d_head
        q, k, v = _linear(attn.c_attn, x).to(adt).split(H * dh, dim=2)
        scale = (1.0 / (attn.temperatures() * model.tau_schedule)).to(device, adt)  # (H,)
        y = torch.zeros(B, n, H, dh, dtype=adt, device=device)
        for index, info in enumerate(compiled.heads):
            if info.layer != layer:
                continue
            h, part = info.head, slice(info.head * dh, (info.head + 1) * dh)
            targets = head_targets(info, ids, compiled.alphabet, device) if offtarget else None
            sink_k, sink_v = attn.sink_k[h].to(device, adt), attn.sink_v[h].to(device, adt)
            y[:, :, h], masses[index] = attend_blocks(q[..., part], k[..., part], v[..., part], sink_k, sink_v,
                                                      attn.kinds[h], scale[h] / float(factors[index]), attn.masks[h], block,
                                                      targets)
        x = x + _linear(attn.c_proj, y.to(dt).view(B, n, H * dh))
        x = x + _linear(layer_block.mlp.c_proj, F.relu(_linear(layer_block.mlp.c_fc, x)))
    logits = _linear(model.position_head, x).squeeze(-1)  # (B, n)
    return Evaluation(predictions=(logits > 0).cpu().numpy(), offtarget=masses if offtarget else None)
