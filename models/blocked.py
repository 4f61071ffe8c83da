"""Memory-linear forward pass of any Transformer on equal-length words: blocks of queries.

``Transformer.forward`` holds (B, H, T, T+1) scores on its explicit path (hard heads, attention
capture) and a (1, H, T, T+1) mask or ALiBi bias on its SDPA path, so a word of 10,000 symbols
needs gigabytes per layer. Here every head runs over blocks of queries (``attend_blocks``): a
block [i0, i1) only looks at the keys its mask band lets some query see, so the largest tensor
is (B, block, n + 1) and memory grows linearly with n for a fixed block. Each block goes through
the attention kernel of the explicit path (models.attention.attend).

``blocked_forward`` walks a Transformer's own modules (embeddings, positional encodings, norms,
MLPs, output heads: all linear in n) and replaces only the attention; it gives the position
and string logits of ``Transformer.forward`` on unpadded words. Two overrides serve the
evaluations of analysis.evaluate and models.soften on the same weights: other attention kinds
per head (``kinds``) and, for softmax heads, a logit scale per head replacing factor(n) / tau
(``logit_scales``). ``models.compiler.blocked`` evaluates compiled models with ``attend_blocks``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from softhard.models.attention import attend
from softhard.models.masks import MASK_BOUNDS, band, key_span, with_sink
from softhard.models.transformer import Transformer

# default block: at most this many logits (B * block * (n + 1)) per head and block, ~10 bytes each in flight;
# on CPU small enough (16 MiB of fp32) that glibc reuses the blocks rather than mapping fresh pages each time
BLOCK_ELEMENTS = {"cpu": 2**22, "cuda": 2**27}

# observe(layer, head, i0, k0, scores, allowed, weights, values): a hard head's raw scores (B, blk, 1 + K)
# of queries i0.. over the sink and keys k0.., their visibility (blk, 1 + K), the hard weights (B, blk, 1 + K)
# and the values (B, 1 + K, dh) of the sink and those keys
Observer = Callable[..., None]
# scan(head, fn): runs fn(i0, k0, scores, allowed, weights, values) over the raw score blocks of one head of
# the current layer; layer_scales(layer, scan) returns that layer's (H,) logit scales (see blocked_forward)
Scan = Callable[[int, Callable], None]


def parse_device(text: str, option: str = "--device") -> torch.device:
    """A device to run on, from its name; ValueError naming it when torch cannot use it."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"{option}: {text!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option}: {text!r}, but torch sees no CUDA device")
    return device


def default_block(B: int, n: int, device: torch.device) -> int:
    """Queries per block so that a block holds about BLOCK_ELEMENTS logits."""
    return max(1, min(n, BLOCK_ELEMENTS.get(device.type, BLOCK_ELEMENTS["cpu"]) // (B * (n + 1))))


def attend_blocks(q, k, v, sink_k, sink_v, kind: str, scale, mask: str, block: int, targets=None,
                  slope: Optional[float] = None, observe: Optional[Callable] = None):
    """One head over query blocks: q, k, v (B, n, dh) -> y (B, n, dh), largest off-target mass (0 without targets).

    Each block [i0, i1) goes through the attention kernel (models.attention.attend) with the keys
    its mask band lets some query see (models.masks.key_span). scale: the logit scale of softmax
    heads, a number or (B|1, n, 1) per query; hard kinds compare the unscaled scores. targets: an
    object whose ``block(band, i0, i1, k0, k1)`` gives the target sets of a block
    (models.compiler.blocked.Targets). slope: the head's ALiBi slope (bias -slope |i - j| on word
    keys), or None. observe(i0, k0, scores, allowed, att, values) is called for hard heads with
    each block's raw scores (B, blk, 1 + K), visibility (blk, 1 + K), weights and values (B, 1 + K, dh).
    """
    B, n, dh = q.shape
    lo, hi = MASK_BOUNDS[mask]
    per_query = torch.is_tensor(scale) and scale.dim() == 3
    need_weights = targets is not None or (observe is not None and kind != "softmax")
    y = torch.empty_like(q)
    worst = torch.zeros((), dtype=q.dtype, device=q.device)
    open_mask = MASK_BOUNDS[mask] == MASK_BOUNDS["none"]
    if kind == "softmax" and not need_weights and slope is None and open_mask:
        block = n  # every key visible: one fused call without a mask, linear in n whatever the block
    all_keys = torch.cat([sink_k.expand(B, 1, dh), k], dim=1)  # (B, 1 + n, dh)
    all_values = torch.cat([sink_v.expand(B, 1, dh), v], dim=1)
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        keys = key_span(lo, hi, range(i0, i1), n)
        k0, k1 = keys.start, keys.stop
        if k0 == 0:  # a view of the sink and the first keys: no copy per block
            key_rows, values = all_keys[:, : 1 + k1], all_values[:, : 1 + k1]  # (B, 1 + K, dh)
        else:
            key_rows = torch.cat([sink_k.expand(B, 1, dh), k[:, k0:k1]], dim=1)  # (B, 1 + K, dh)
            values = torch.cat([sink_v.expand(B, 1, dh), v[:, k0:k1]], dim=1)  # (B, 1 + K, dh)
        visible = band(lo, hi, range(i0, i1), keys, q.device)  # (blk, K)
        allowed = with_sink(visible)  # (blk, 1 + K)
        bias = None
        if slope is not None:  # as models.positional.alibi_bias: 0 for the sink
            offsets = torch.arange(i0, i1, device=q.device)[:, None] - torch.arange(k0, k1, device=q.device)
            bias = F.pad(-slope * offsets.abs().to(q.dtype), (1, 0))  # (blk, 1 + K)
        s = scale[:, None, i0:i1] if per_query else scale  # (B|1, 1, blk, 1): a head dimension of 1
        out = attend(q[:, None, i0:i1], key_rows[:, None], values[:, None], None if open_mask else allowed, [kind],
                     s, bias, need_weights=need_weights)
        y[:, i0:i1] = out.values[:, 0]
        if out.weights is None:
            continue
        att = out.weights[:, 0]  # (B, blk, 1 + K)
        if observe is not None and kind != "softmax":
            observe(i0, k0, out.scores[:, 0], allowed, att, values)
        if targets is not None:
            outside = att.masked_fill(targets.block(visible, i0, i1, k0, k1), 0.0).sum(-1)  # (B, blk)
            worst = torch.maximum(worst, outside.max())
    return y, float(worst)


@torch.no_grad()
def blocked_forward(model: Transformer, ids: torch.Tensor, kinds: Optional[Sequence[Sequence[str]]] = None,
                    layer_scales: Optional[Callable[[int, Scan], Optional[torch.Tensor]]] = None,
                    block: Optional[int] = None,
                    observe: Optional[Observer] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Position logits (B, n) and string logits (B,) of ``model`` on equal-length words ids (B, n).

    kinds: per layer, the attention kind of each head (default: the model's own).
    layer_scales: called once per layer, before its attention, with the layer index and a
        ``Scan`` of its raw scores (on this very model's residual stream, overrides of the
        layers below included); returns None (the model's factor(n) / tau) or an (H,) tensor:
        the logit scale of each softmax head at every query, NaN for a head that keeps its own
        (the gap rule's 1 / tau(n), measured on the words themselves).
    block: queries per block (default: ``default_block``).
    observe: see ``Observer``; called for every hard head and block.
    """
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"expected (batch, length) symbol ids with length >= 1, got shape {tuple(ids.shape)}")
    B, n = ids.shape
    device = ids.device
    kinds = model.attention_kinds if kinds is None else kinds
    block = block or default_block(B, n, device)
    ctx = model.context(n, None, device, alibi_matrix=False)
    x = model.drop(model.tok_emb(ids) + model.pos_emb(B, n, None, device))  # (B, n, d_model)
    for layer, blk in enumerate(model.blocks):
        def attention(h_in: torch.Tensor) -> torch.Tensor:
            return _attention(model, layer, h_in, ctx, kinds[layer], layer_scales, block, observe)

        if blk.norm == "post":
            x = blk.ln_1(x + attention(x))
            x = blk.ln_2(x + blk.mlp(x))
        else:
            x = x + attention(blk.ln_1(x))
            x = x + blk.mlp(blk.ln_2(x))
    x = model.ln_f(x)
    return model.position_head(x).squeeze(-1), model.string_head(x[:, -1]).squeeze(-1)


def _attention(model: Transformer, layer: int, x: torch.Tensor, ctx, kinds: Sequence[str], layer_scales,
               block: int, observe: Optional[Observer]) -> torch.Tensor:
    """One SelfAttention module's output (B, n, d_model), every head over query blocks."""
    attn = model.blocks[layer].attn
    B, n, _ = x.shape
    H, dh = attn.n_heads, attn.d_head
    q, k, v = attn.split_heads(attn.c_attn(x), ctx)  # (B, H, n, dh), (B, H, n + 1, dh) x 2, the sink in row 0

    def head(h: int, kind: str, scale, seen=None):
        slope = float(model.alibi_slopes[h]) if model.alibi else None
        return attend_blocks(q[:, h], k[:, h, 1:], v[:, h, 1:], k[:, h, :1], v[:, h, :1], kind, scale,
                             attn.masks[h], block, slope=slope, observe=seen)[0]

    scale = attn.logit_scale(n, ctx).to(q.dtype).expand(-1, -1, n, -1)  # (B|1, H, n, 1): factor(n) / tau
    override = None if layer_scales is None else layer_scales(layer, lambda h, fn: head(h, "average", 1.0, fn))
    if override is not None:
        override = override.to(q.device, q.dtype).view(1, H, 1, 1)
        scale = torch.where(override.isnan(), scale, override)
    y = torch.empty_like(q)
    for h in range(H):
        seen = None if observe is None else (lambda *block_view, h=h: observe(layer, h, *block_view))
        y[:, h] = head(h, kinds[h], scale[:, h], seen)
    return attn.c_proj(y.transpose(1, 2).reshape(B, n, H * dh))
