"""One encoder transformer for the question whether softmax attention simulates hard attention.

Used alike by training (learned weights) and by constructions (weights set by hand). Read top
to bottom, in the order data flows: the config, the per-head options, self-attention (the
fast SDPA path and the explicit path side by side; the explicit one calls the attention kernel
of models/attention.py, which the blocked evaluator shares), the ReLU MLP, the block, the model
with its two output heads.

Conventions (docs/models.md has the full list):
- input_ids (B, T) hold symbol ids 0..vocab_size-1, right-padded; lengths (B,) the true word
  lengths n. Word positions are 0-indexed, i = 0..n-1. Padding keys are never visible to a
  word position, and the outputs at padding positions are meaningless (finite, but to be ignored).
- Every head has a learned sink: one key and one value vector per head (not a position), seen
  by every query, in every softmax, so no row is empty (strict past at i = 0 attends to the
  sink alone). In the (B, H, T, T+1) attention and score tensors the sink is column 0 and
  word position j is column j + 1; hard attention treats the sink as position -1.
- Per head: a mask (models/masks.py), an attention kind and a temperature mode
  (models/temperature.py); positional encodings in models/positional.py.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from softhard.models.attention import attend
from softhard.models.masks import MASKS, causal_query_padding, mask_bounds, visibility, visible_key_count
from softhard.models.positional import (
    POSITIONAL,
    PositionalEncoding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
)
from softhard.models.temperature import (
    LENGTH_FACTORS,
    TAU_MIN,
    TEMPERATURES,
    HostCopy,
    TemperatureSchedule,
    length_factor,
)

KINDS = ("softmax", "leftmost", "rightmost", "average")
NORMS = ("pre", "post", "none")

# A per-head option: one value for every head of every layer, a list of n_heads values
# (the same in every layer), or a list of n_layers such lists.
PerHead = Union[Any, Sequence[Any], Sequence[Sequence[Any]]]


@dataclass
class TransformerConfig:
    vocab_size: int = 2  # input symbols are ids 0..vocab_size-1 (a k-symbol alphabet gives 0..k-1)
    n_layers: int = 2  # number of blocks
    n_heads: int = 2  # heads per block
    d_model: int = 64  # width of the residual stream
    d_head: Optional[int] = None  # width of a head's queries, keys and values; None: d_model // n_heads
    d_ff: int = 256  # hidden width of the ReLU MLP
    norm: str = "pre"  # layer norm: "pre" (GPT-2, plus a final norm), "post" (Vaswani et al.), "none"
    bias: bool = True  # biases in the Linear and LayerNorm layers
    dropout: float = 0.0  # dropout on the embeddings, the attention weights and the residual branches
    positional: list = field(default_factory=lambda: ["sinusoidal"])  # any of models.positional.POSITIONAL; []: none
    max_len: int = 1024  # rows of the learned position table; positions plus offsets stay below it
    random_offset: bool = False  # learned table: random position offset per word in training (Huang et al.)
    rope_base: float = 10000.0  # RoPE frequency base
    mask: PerHead = "none"  # per head: none | past (j<=i) | strict_past (j<i) | future (j>=i) | strict_future (j>i)
    attention_kind: PerHead = "softmax"  # per head: softmax | leftmost | rightmost | average; see set_attention_kind
    temperature: PerHead = "fixed"  # per head: fixed | learned | log_n | n | n_log_n (factor of n on the logits)
    tau: PerHead = 1.0  # per head: the temperature (the initial one for learned heads), > 0
    schedule: Optional[TemperatureSchedule] = None  # global multiplier of every tau, driven by set_training_step
    fast: bool = True  # softmax layers run on F.scaled_dot_product_attention unless weights are requested
    attn_fp32: bool = False  # q, k, v, logits, softmax in fp32 under bf16 autocast too (no bf16 flash kernel)

    def __post_init__(self):
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    def per_head(self, name: str, spec: PerHead = None) -> list[list[Any]]:
        """The option `name` (or `spec`) as n_layers lists of n_heads values, validated."""
        spec = getattr(self, name) if spec is None else spec
        L, H = self.n_layers, self.n_heads
        if isinstance(spec, (str, int, float)):
            table = [[spec] * H for _ in range(L)]
        elif isinstance(spec, (list, tuple)) and len(spec) == H and all(isinstance(v, (str, int, float)) for v in spec):
            table = [list(spec) for _ in range(L)]
        elif isinstance(spec, (list, tuple)) and len(spec) == L and all(
            isinstance(row, (list, tuple)) and len(row) == H for row in spec
        ):
            table = [list(row) for row in spec]
        else:
            raise ValueError(
                f"{name}: {spec!r} is neither one value, a list of n_heads={H} values, "
                f"nor a list of n_layers={L} lists of n_heads={H} values"
            )
        allowed = {"mask": MASKS, "attention_kind": KINDS, "temperature": TEMPERATURES}.get(name)
        for layer, row in enumerate(table):
            for head, value in enumerate(row):
                if allowed is not None and value not in allowed:
                    raise ValueError(
                        f"{name}: unknown value {value!r} (layer {layer}, head {head}); expected one of {allowed}"
                    )
                if name == "tau" and (isinstance(value, str) or not value > 0):
                    raise ValueError(f"tau: {value!r} (layer {layer}, head {head}) is not a positive number")
        return table

    def validate(self) -> None:
        """Fail fast, listing every problem at once."""
        problems = []
        for name, value in [("vocab_size", self.vocab_size), ("n_layers", self.n_layers), ("n_heads", self.n_heads),
                            ("d_model", self.d_model), ("d_ff", self.d_ff), ("max_len", self.max_len)]:
            if not (isinstance(value, int) and value >= 1):
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.d_head is None and self.n_heads >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; set d_head")
        if self.norm not in NORMS:
            problems.append(f"norm: unknown value {self.norm!r}; expected one of {NORMS}")
        if isinstance(self.positional, str):
            problems.append(f"positional must be a list of names, got the string {self.positional!r}")
        else:
            for name in self.positional:
                if name not in POSITIONAL and name != "none":
                    problems.append(f"positional: unknown value {name!r}; expected some of {POSITIONAL}")
            if "rope" in self.positional and self.head_dim % 2:
                problems.append(f"rope needs an even head width, got d_head={self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.schedule is not None and not isinstance(self.schedule, TemperatureSchedule):
            problems.append(f"schedule must be a TemperatureSchedule or None, got {self.schedule!r}")
        for name in ("mask", "attention_kind", "temperature", "tau"):
            try:
                self.per_head(name)
            except ValueError as err:
                problems.append(str(err))
        if problems:
            raise ValueError("invalid TransformerConfig:\n  " + "\n  ".join(problems))


@dataclass
class _Context:
    """What every layer needs to know about the batch, computed once per forward."""

    lengths: Optional[torch.Tensor]  # (B,) word lengths, or None: every word fills T
    key_valid: Optional[torch.Tensor]  # (B, T) False at padding, or None
    rope: Optional[tuple]  # (cos, sin), each (T+1, d_head/2): row 0 the sink's (angle 0), then 0..T-1; or None
    alibi: Optional[torch.Tensor]  # (1, H, T, T+1) ALiBi bias (sink column 0), or None
    tau_schedule: torch.Tensor  # () global temperature multiplier
    host_schedule: Optional[float]  # the same on the host, or None (an inference tensor)


class SelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        H, dh = config.n_heads, config.head_dim
        self.n_heads, self.d_head = H, dh
        self.c_attn = nn.Linear(config.d_model, 3 * H * dh, bias=config.bias)  # queries, keys, values
        self.c_proj = nn.Linear(H * dh, config.d_model, bias=config.bias)
        self.sink = nn.Parameter(torch.zeros(2, H, dh))  # the sink's key (sink_k) and value (sink_v), per head
        self.attn_dropout, self.resid_dropout = config.dropout, nn.Dropout(config.dropout)
        self.fast, self.attn_fp32 = config.fast, config.attn_fp32

        self.masks = config.per_head("mask")[layer]
        lo, hi = mask_bounds(self.masks)
        self.register_buffer("mask_lo", lo, persistent=False)  # (H,)
        self.register_buffer("mask_hi", hi, persistent=False)  # (H,)

        self.temperature = config.per_head("temperature")[layer]
        taus = torch.tensor([float(t) for t in config.per_head("tau")[layer]])
        self.register_buffer("tau", taus)  # (H,) fixed temperatures
        self.host_tau = HostCopy()  # tau on the host, for the fast path's float scale
        self.fixed_only = all(m == "fixed" for m in self.temperature)
        learned = torch.tensor([m == "learned" for m in self.temperature])
        self.register_buffer("learned", learned, persistent=False)  # (H,)
        # learned tau = TAU_MIN + exp(log_tau): positive for every parameter value, logit scale <= 1 / TAU_MIN
        self.log_tau = nn.Parameter((taus - TAU_MIN).clamp(min=TAU_MIN).log()) if bool(learned.any()) else None
        self.kinds = config.per_head("attention_kind")[layer]

    @property
    def sink_k(self) -> torch.Tensor:
        """The sink's key per head, (H, dh): a view of `sink`, writable in place."""
        return self.sink[0]

    @property
    def sink_v(self) -> torch.Tensor:
        """The sink's value per head, (H, dh): a view of `sink`, writable in place."""
        return self.sink[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        keys = prefix + "sink_k", prefix + "sink_v"
        if all(key in state_dict for key in keys):  # a checkpoint from before the sink was one parameter
            state_dict[prefix + "sink"] = torch.stack([state_dict.pop(key) for key in keys])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def temperatures(self) -> torch.Tensor:
        """Each head's tau before the schedule, (H,); TAU_MIN + exp(log_tau) for learned heads."""
        if self.log_tau is None:
            return self.tau
        return torch.where(self.learned, TAU_MIN + self.log_tau.exp(), self.tau)

    def logit_scale(self, T: int, ctx: _Context) -> torch.Tensor:
        """factor(n) / (tau * tau_schedule) per head and query: (B|1, H, T|1, 1)."""
        tau = (self.temperatures() * ctx.tau_schedule).view(1, -1, 1, 1)  # (1, H, 1, 1)
        if not any(m in LENGTH_FACTORS for m in self.temperature):
            return tau.reciprocal()
        n = visible_key_count(self.mask_lo, self.mask_hi, T, ctx.lengths)  # (B|1, H, T) incl. the sink
        return length_factor(n, self.temperature)[..., None] / tau  # (B|1, H, T, 1)

    def host_logit_scale(self, ctx: _Context) -> Optional[float]:
        """1 / (tau * tau_schedule) as a Python float when every head is fixed at the same tau
        and the host knows both without waiting for the device (models.temperature.HostCopy);
        else None, and the scale is a tensor."""
        if not self.fixed_only or ctx.host_schedule is None:
            return None
        taus = self.host_tau.read(self.tau)
        if taus is None or min(taus) != max(taus):
            return None
        return 1.0 / (taus[0] * ctx.host_schedule)

    def split_heads(self, qkv: torch.Tensor, ctx: _Context, dummy_query: bool = False):
        """Queries (B, H, T, dh) and keys and values (B, H, T+1, dh), the sink's key and value in row 0.

        dummy_query: the queries get T+1 rows too, a zero dummy query in row 0, built in the same
        single copy that puts the sink on top of the keys and values (see fast_attention).
        """
        B, T, _ = qkv.shape
        H, dh = self.n_heads, self.d_head
        if dummy_query:
            row = F.pad(self.sink.view(2 * H * dh), (H * dh, 0)).to(qkv.dtype)  # (3*H*dh,): 0, sink key, value
            qkv = torch.cat([row.expand(B, 1, 3 * H * dh), qkv], dim=1)  # (B, T+1, 3*H*dh)
            q, k, v = qkv.view(B, T + 1, 3, H, dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T+1, dh) each
        else:
            q, kv = qkv.split([H * dh, 2 * H * dh], dim=2)  # (B, T, H*dh), (B, T, 2*H*dh)
            sink = self.sink.view(1, 1, 2 * H * dh).to(kv.dtype)  # the sink's key and value
            kv = torch.cat([sink.expand(B, 1, 2 * H * dh), kv], dim=1)  # (B, T+1, 2*H*dh)
            q = q.view(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
            k, v = kv.view(B, T + 1, 2, H, dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T+1, dh) each
        if ctx.rope is not None:  # row 0 (the sink, the dummy query) has angle 0: the sink key is not rotated
            cos, sin = ctx.rope
            q = apply_rope(q, cos, sin) if dummy_query else apply_rope(q, cos[1:], sin[1:])
            k = apply_rope(k, cos, sin)
        return q, k, v

    def fast_attention(self, qkv: torch.Tensor, ctx: _Context) -> torch.Tensor:
        """Softmax attention on F.scaled_dot_product_attention: the weighted values, (B, H, T, dh).

        The logits are (q.k / sqrt(dh) + bias) * scale: a scale the host knows goes into SDPA's
        float scale, any other is multiplied into q. A layer whose heads are all (strict) past
        runs SDPA's square causal kernel with a dummy query (models.masks.causal_query_padding).
        """
        T = qkv.shape[1]
        padding = causal_query_padding(self.masks) if ctx.alibi is None else None
        before, after = padding if padding is not None else (0, 0)
        q, k, v = self.split_heads(qkv, ctx, dummy_query=before == 1)  # q has T + before rows
        scale = self.host_logit_scale(ctx)
        sdpa = dict(dropout_p=self.attn_dropout if self.training else 0.0, scale=1.0 / math.sqrt(self.d_head))
        if scale is None:
            scale = self.logit_scale(T, ctx).to(q.dtype)  # (B|1, H, T|1, 1)
            if before and scale.shape[-2] > 1:
                scale = F.pad(scale, (0, 0, before, 0))  # the dummy query is 0 at any scale
            q = q * scale
        else:
            sdpa["scale"] *= scale
        if padding is not None:
            if after:
                q = F.pad(q, (0, 0, 0, after))  # (B, H, T+1, dh)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, **sdpa)
            return y[:, :, before : before + T]  # (B, H, T, dh) without the dummy query
        banded = any(m != "none" for m in self.masks)
        mask = allowed = visibility(self.mask_lo, self.mask_hi, T, ctx.key_valid, banded)  # or None
        if ctx.alibi is not None:
            mask = ctx.alibi.to(q.dtype) * scale  # (B|1, H, T, T+1)
            if allowed is not None:
                mask = mask.masked_fill(~allowed, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **sdpa)  # (B, H, T, dh)

    def explicit_attention(self, qkv: torch.Tensor, ctx: _Context):
        """Scores, temperature, mask, then softmax or hard attention per head (models.attention.attend):
        the weighted values (B, H, T, dh), the weights and the logits (B, H, T, T+1)."""
        T = qkv.shape[1]
        q, k, v = self.split_heads(qkv, ctx)
        scale = self.logit_scale(T, ctx).to(q.dtype)  # (B|1, H, T|1, 1) factor(n) / tau
        banded = any(m != "none" for m in self.masks)
        allowed = visibility(self.mask_lo, self.mask_hi, T, ctx.key_valid, banded)  # bool, (B|1, H|1, T|1, T+1)
        out = attend(q, k, v, allowed, self.kinds, scale, ctx.alibi,
                     dropout=self.attn_dropout if self.training else 0.0)
        return out.values, out.weights, out.logits  # (B, H, T, dh), (B, H, T, T+1) x 2

    def forward(self, x: torch.Tensor, ctx: _Context, need_weights: bool, fast: Optional[bool] = None):
        B, T, _ = x.shape
        qkv = self.c_attn(x)  # (B, T, 3*H*dh): queries, keys, values
        out_dtype = qkv.dtype  # what c_proj takes: the autocast dtype under autocast
        softmax_only = all(kind == "softmax" for kind in self.kinds)
        # fp32 from here to the weighted values (unless attn_fp32 is off), even under autocast
        with torch.autocast(device_type=x.device.type, enabled=False) if self.attn_fp32 else contextlib.nullcontext():
            if self.attn_fp32:  # at least fp32: a float64 model keeps float64
                qkv = qkv.to(torch.promote_types(qkv.dtype, torch.float32))
            if (self.fast if fast is None else fast) and softmax_only and not need_weights:
                y, att, logits = self.fast_attention(qkv, ctx), None, None
            else:
                y, att, logits = self.explicit_attention(qkv, ctx)
        y = y.to(out_dtype).transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)  # (B, T, H*dh)
        return self.resid_dropout(self.c_proj(y)), att, logits


class MLP(nn.Module):
    """Linear -> ReLU -> Linear: exact ReLU arithmetic for the constructions."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.c_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.relu(self.c_fc(x))))  # (B, T, d_model)


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        self.norm = config.norm
        def make_norm():
            return nn.Identity() if config.norm == "none" else nn.LayerNorm(config.d_model, bias=config.bias)

        self.ln_1, self.attn = make_norm(), SelfAttention(config, layer)
        self.ln_2, self.mlp = make_norm(), MLP(config)

    def forward(self, x, ctx: _Context, need_weights: bool, fast: Optional[bool] = None):
        if self.norm == "post":  # x -> LN(x + f(x))
            a, att, logits = self.attn(x, ctx, need_weights, fast)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        else:  # "pre": x -> x + f(LN(x)); "none": the norms are identities
            a, att, logits = self.attn(self.ln_1(x), ctx, need_weights, fast)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        return x, att, logits  # (B, T, d_model), (B, H, T, T+1) or None, same


@dataclass
class TransformerOutput:
    position_logits: torch.Tensor  # (B, T) one logit per position (meaningless at padding)
    string_logits: torch.Tensor  # (B,) one logit per word, read at its last real position lengths - 1
    hidden_states: list  # n_layers + 1 residual streams (B, T, d_model): embeddings, then after each block
    attention: Optional[list] = None  # return_attention: per layer (B, H, T, T+1) weights, column 0 = sink
    # return_attention: per layer (B, H, T, T+1) softmax logits, the raw scores q.k / sqrt(d_head) (+ ALiBi)
    # times the temperature factor, -inf = masked
    attention_logits: Optional[list] = None


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        config.validate()
        self.config = config
        names = [p for p in config.positional if p != "none"]
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = PositionalEncoding(names, config.d_model, config.max_len, config.random_offset)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, layer) for layer in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model, bias=config.bias) if config.norm == "pre" else nn.Identity()
        self.position_head = nn.Linear(config.d_model, 1, bias=config.bias)
        self.string_head = nn.Linear(config.d_model, 1, bias=config.bias)
        self.rope, self.alibi = "rope" in names, "alibi" in names
        self.register_buffer("alibi_slopes", alibi_slopes(config.n_heads), persistent=False)  # (H,)
        self.register_buffer("tau_schedule", torch.tensor(1.0 if config.schedule is None else config.schedule(0)))
        self.host_schedule = HostCopy()  # tau_schedule on the host, for the fast path's float scale
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2: scale the residual projections by 1/sqrt(2 n_layers)
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))
            nn.init.normal_(block.attn.sink_k, std=0.02)  # sink values start at 0: attending to the sink adds nothing

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def set_attention_kind(self, spec: PerHead) -> None:
        """Switch every head's attention kind on the same weights (one value, per head, or per layer and head)."""
        table = self.config.per_head("attention_kind", spec)
        for block, kinds in zip(self.blocks, table):
            block.attn.kinds = kinds

    @property
    def attention_kinds(self) -> list[list[str]]:
        return [list(block.attn.kinds) for block in self.blocks]

    def set_training_step(self, step: int) -> float:
        """Set the schedule's temperature multiplier for training step `step`; returns it (1 without schedule)."""
        value = 1.0 if self.config.schedule is None else self.config.schedule(step)
        self.tau_schedule.fill_(value)
        # as stored (fp32), so that the fast path needs no device read to know it
        self.host_schedule.record(self.tau_schedule, torch.tensor(value, dtype=self.tau_schedule.dtype).item())
        return value

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def context(self, T: int, lengths: Optional[torch.Tensor], device, alibi_matrix: bool = True) -> _Context:
        """What every layer needs to know about a batch of width T (lengths: long (B,) or None).

        alibi_matrix=False leaves out the (1, H, T, T+1) ALiBi bias (models.blocked builds it per block)."""
        key_valid = None if lengths is None else torch.arange(T, device=device)[None, :] < lengths[:, None]  # (B, T)
        rope = None
        if self.rope:  # a row for the sink first: cos 1, sin 0 leave its key unrotated
            cos, sin = rope_angles(T, self.config.head_dim, self.config.rope_base, device)  # (T, d_head/2) each
            rope = (F.pad(cos, (0, 0, 1, 0), value=1.0), F.pad(sin, (0, 0, 1, 0)))  # (T+1, d_head/2) each
        return _Context(
            lengths=lengths,
            key_valid=key_valid,
            rope=rope,
            alibi=alibi_bias(T, self.alibi_slopes)[None] if self.alibi and alibi_matrix else None,  # (1, H, T, T+1)
            tau_schedule=self.tau_schedule,
            host_schedule=self.host_schedule.read(self.tau_schedule),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        return_attention: bool = False,
        fast: Optional[bool] = None,
    ) -> TransformerOutput:
        """input_ids (B, T) right-padded symbol ids; lengths (B,) word lengths (None: all T).

        return_attention runs every layer on the explicit path and returns its weights and
        logits; fast overrides config.fast (hard heads always run on the explicit path).
        """
        B, T = input_ids.shape
        device = input_ids.device
        if lengths is not None:
            lengths = lengths.to(device=device, dtype=torch.long)
        ctx = self.context(T, lengths, device)

        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(B, T, lengths, device))  # (B, T, d_model)
        hidden_states, attention, attention_logits = [x], [], []
        for block in self.blocks:
            x, att, logits = block(x, ctx, return_attention, fast)
            hidden_states.append(x)
            attention.append(att)
            attention_logits.append(logits)

        x = self.ln_f(x)  # (B, T, d_model)
        position_logits = self.position_head(x).squeeze(-1)  # (B, T)
        if lengths is None:
            x_last = x[:, -1]  # (B, d_model)
        else:  # gather, not advanced indexing: its backward is one scatter, not a sort on CUDA
            last = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, x.shape[-1])
            x_last = x.gather(1, last).squeeze(1)  # (B, d_model)
        string_logits = self.string_head(x_last).squeeze(-1)  # (B,)
        return TransformerOutput(
            position_logits=position_logits,
            string_logits=string_logits,
            hidden_states=hidden_states,
            attention=attention if return_attention else None,
            attention_logits=attention_logits if return_attention else None,
        )
