"""The attention kernel: scores -> masked logits -> softmax or hard attention -> weighted values.

One function, ``attend``, for every path that needs more than SDPA's fused softmax:
Transformer's explicit path (models/transformer.py: every query and key of a batch, all heads
of a layer) and the blocked evaluator (models/blocked.py: one head, a block of queries and the
band of keys its mask lets them see, so memory stays linear in the word length). Masks come
from models/masks.py; the caller lays out the keys with the sink in column 0.

Softmax heads take the logits ``q.k / sqrt(dh) * scale (+ bias * scale)``, scale = factor(n) / tau;
hard heads (leftmost, rightmost, average) compare the unscaled scores ``q.k / sqrt(dh) + bias``
(a positive factor moves no maximum, and the constructions' exact ties stay exact).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F


class Attended(NamedTuple):
    values: torch.Tensor  # (..., H, T, dh) the attention-weighted values
    weights: Optional[torch.Tensor]  # (..., H, T, K), or None when not asked for
    logits: Optional[torch.Tensor]  # (..., H, T, K) softmax logits after the scale, -inf where masked; or None
    scores: Optional[torch.Tensor]  # (..., H, T, K) the unscaled scores hard heads compare (unmasked); or None


def hard_attention(scores: torch.Tensor, allowed: Optional[torch.Tensor], kind: str) -> torch.Tensor:
    """Exact hard attention weights from scores (..., T, K) and a visibility mask (bool, True = visible).

    leftmost / rightmost: weight 1 on the first / last column among the exact maxima of the
    visible scores; average: weight 1/m on each of the m exact maxima. Columns are in position
    order (in the model column 0 is the sink, position -1). Every row needs a visible column.
    """
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    is_max = scores == scores.amax(dim=-1, keepdim=True)  # (..., T, K) the exact maxima
    if kind == "average":
        w = is_max.to(scores.dtype)
        return w / w.sum(dim=-1, keepdim=True)
    K = scores.shape[-1]
    col = torch.arange(K, device=scores.device)
    if kind == "leftmost":
        pick = torch.where(is_max, col, K).amin(dim=-1)  # (..., T)
    elif kind == "rightmost":
        pick = torch.where(is_max, col, -1).amax(dim=-1)
    else:
        raise ValueError(f"hard_attention: unknown kind {kind!r}; expected leftmost, rightmost or average")
    return F.one_hot(pick, K).to(scores.dtype)  # (..., T, K)


def raw_scores(q: torch.Tensor, k: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q.k / sqrt(dh) (+ bias): (..., T, K) from q (..., T, dh) and k (..., K, dh)."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    return scores if bias is None else scores + bias.to(scores.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: Optional[torch.Tensor], kinds: Sequence[str],
           scale, bias: Optional[torch.Tensor] = None, dropout: float = 0.0, need_weights: bool = True) -> Attended:
    """Attention of queries q (..., H, T, dh) over keys k and values v (..., H, K, dh).

    allowed: bool, broadcastable to (..., H, T, K), True = visible, or None (all visible).
    kinds: the attention kind of each of the H heads (transformer.KINDS).
    scale: the softmax logit scale, a number or broadcastable to (..., H, T, 1).
    bias: an additive score bias broadcastable to (..., H, T, K) (ALiBi), or None.
    dropout: the probability of dropping attention weights (0 outside training).
    need_weights: False lets a layer of softmax heads run fused (SDPA) and a layer of one
        leftmost or rightmost kind pick its values by index; weights, logits and scores are then None.
    """
    dh = q.shape[-1]
    if not need_weights and dropout == 0.0:
        if all(kind == "softmax" for kind in kinds):
            mask = allowed
            if bias is not None:
                mask = bias.to(q.dtype) * scale
                if allowed is not None:
                    mask = mask.masked_fill(~allowed, float("-inf"))
            y = F.scaled_dot_product_attention(q * (scale / math.sqrt(dh)), k, v, attn_mask=mask, scale=1.0)
            return Attended(y, None, None, None)
        if len(set(kinds)) == 1 and kinds[0] in ("leftmost", "rightmost"):
            scores = raw_scores(q, k, bias)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            # argmax returns the first of tied maxima: the leftmost, or the rightmost of the reversed row
            pick = scores.argmax(-1) if kinds[0] == "leftmost" else scores.shape[-1] - 1 - scores.flip(-1).argmax(-1)
            return Attended(v.gather(-2, pick[..., None].expand(*pick.shape, dh)), None, None, None)

    if bias is None:  # the same logits with the scale applied to the smaller q
        logits = (q * (scale / math.sqrt(dh))) @ k.transpose(-2, -1)  # (..., H, T, K)
    else:
        logits = raw_scores(q, k, bias) * scale
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    att = F.softmax(logits, dim=-1) if "softmax" in kinds else None  # the sink keeps every row finite
    hard_kinds = sorted(set(kinds) - {"softmax"})
    scores = raw_scores(q, k, bias) if hard_kinds else None
    for kind in hard_kinds:  # no softmax heads: the first kind's weights stand in until each kind writes its own
        weights = hard_attention(scores, allowed, kind)
        heads = torch.tensor([kh == kind for kh in kinds], device=q.device).view(-1, 1, 1)  # (H, 1, 1)
        att = weights if att is None else torch.where(heads, weights, att)
    if dropout > 0:
        att = F.dropout(att, dropout)
    return Attended(att @ v, att, logits, scores)
