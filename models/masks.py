"""Attention masks per head, the always-visible sink, and the number of keys a query sees.

Word positions are 0-indexed, i (query) and j (key) in 0..n-1, n the word's own length.
Every mask is a band of the offset d = i - j, lo <= d <= hi:

    mask           keys visible to query i     lo     hi
    none           every j                     -inf   +inf
    past           j <= i                      0      +inf
    strict_past    j <  i                      1      +inf
    future         j >= i                      -inf   0
    strict_future  j >  i                      -inf   -1

Padding keys (j >= n) are never visible to a word position (i < n). The sink (a learned key
and value per head, not a word position) is visible to every query, so no row of attention is
ever empty. In the (T, T+1) attention matrices the sink is column 0 and word position j is
column j + 1, so column order is position order with the sink at position -1.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

MASKS = ("none", "past", "strict_past", "future", "strict_future")

_INF = 1 << 40  # stands in for an unbounded offset; far beyond any sequence length
MASK_BOUNDS = {  # mask -> (lo, hi): key j is visible to query i iff lo <= i - j <= hi
    "none": (-_INF, _INF),
    "past": (0, _INF),
    "strict_past": (1, _INF),
    "future": (-_INF, 0),
    "strict_future": (-_INF, -1),
}


def mask_bounds(masks: Sequence[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (lo, hi) offset bounds of each head's mask, two LongTensors of shape (H,)."""
    lo = torch.tensor([MASK_BOUNDS[m][0] for m in masks], dtype=torch.long, device=device)
    hi = torch.tensor([MASK_BOUNDS[m][1] for m in masks], dtype=torch.long, device=device)
    return lo, hi


def band(lo, hi, queries: range, keys: range, device=None) -> torch.Tensor:
    """Which keys ``keys`` each query of ``queries`` sees, lo <= i - j <= hi: bool (len(queries), len(keys)),
    or (H, len(queries), len(keys)) for (H,) tensors lo and hi."""
    i = torch.arange(queries.start, queries.stop, device=device)[:, None]
    j = torch.arange(keys.start, keys.stop, device=device)[None, :]
    lo, hi = (torch.as_tensor(bound, device=device)[..., None, None] for bound in (lo, hi))
    return (i - j >= lo) & (i - j <= hi)


def key_span(lo: int, hi: int, queries: range, n: int) -> range:
    """The keys of a word of length n that some query of ``queries`` sees under the band lo <= i - j <= hi."""
    first = max(0, queries.start - hi)
    return range(first, max(first, min(n, queries.stop - lo)))


def with_sink(visible: torch.Tensor) -> torch.Tensor:
    """``visible`` (..., T, K) with the sink's column 0 in front: visible to every query."""
    return torch.cat([visible.new_ones(*visible.shape[:-1], 1), visible], dim=-1)


def visibility(
    lo: torch.Tensor,
    hi: torch.Tensor,
    T: int,
    key_valid: Optional[torch.Tensor],
    banded: bool = True,
) -> Optional[torch.Tensor]:
    """Which keys each query may see, including the sink column 0.

    lo, hi: (H,) mask bounds; key_valid: (B, T) bool, False at padding, or None (no padding);
    banded: False when every head's mask is "none" (known on the host, so no device sync).
    Returns a bool tensor broadcastable to (B, H, T, T+1), True = visible, in the smallest
    shape that holds it: (1, H, T, T+1) for head masks alone, (B, 1, 1, T+1) for padding
    alone, (B, H, T, T+1) for both, or None when every key is visible to every query.
    """
    device = lo.device
    allowed = None
    if banded:  # some head masks by position
        allowed = with_sink(band(lo, hi, range(T), range(T), device))[None]  # (1, H, T, T+1)
    if key_valid is not None:
        keys = with_sink(key_valid.to(device))[:, None, None, :]  # (B, 1, 1, T+1)
        allowed = keys if allowed is None else allowed & keys  # (B, H, T, T+1)
    return allowed


def causal_query_padding(masks: Sequence[str]) -> Optional[tuple[int, int]]:
    """(before, after): the dummy query rows that turn the mask into SDPA's square causal one
    (``is_causal=True``) when every head is past or every head is strict past, else None.

    With the sink as key column 0, past lets query i see columns 0..i+1 of the (T, T+1) matrix
    and strict past columns 0..i. One dummy query before the words (past) or after them (strict
    past) makes the queries T + 1 rows too, and each query row r then sees exactly columns
    0..r: the causal mask of a square matrix, which SDPA's fused kernels (flash included, the
    kernel nn.TransformerEncoder gets) apply without reading a mask; torch sends no non-square
    causal mask to flash. The dummy row's output is dropped. Padding is not masked, and need
    not be: padding keys come after every key a word position sees, so only padding queries,
    whose outputs are meaningless, can see them.
    """
    if len(set(masks)) != 1 or masks[0] not in ("past", "strict_past"):
        return None
    return (1, 0) if masks[0] == "past" else (0, 1)


def visible_key_count(
    lo: torch.Tensor, hi: torch.Tensor, T: int, lengths: Optional[torch.Tensor]
) -> torch.Tensor:
    """n[b, h, i]: the keys query i of word b sees under head h's mask, plus 1 for the sink.

    Counted in closed form: the visible word keys are j in [max(0, i - hi), min(n_b - 1, i - lo)],
    n_b the word's length (T when lengths is None). Always >= 1. Shape (B, H, T), or
    (1, H, T) when lengths is None.
    """
    i = torch.arange(T, device=lo.device)[None, None, :]  # (1, 1, T)
    n = torch.full((1, 1, 1), T, device=lo.device) if lengths is None else lengths.view(-1, 1, 1)
    first = torch.clamp(i - hi[None, :, None], min=0)  # (1, H, T)
    last = torch.minimum(n - 1, i - lo[None, :, None])  # (B, H, T)
    return torch.clamp(last - first + 1, min=0) + 1  # (B, H, T), + 1 for the sink
