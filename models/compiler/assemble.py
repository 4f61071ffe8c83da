"""Stage 4: write the weights of a models.transformer.Transformer from the layout and heads.

Everything starts at zero (norm "none", no dropout); then:
- token embedding: row a = <one> = 1 plus the value of every local node on the symbol a;
- pos_emb.feature_proj: copies each positional feature to its coordinate;
- heads (operators.py): q, k, v rows of c_attn, the sink key (value 0), and c_proj writing
  ``out_coef * y + out_bias`` to the node's dimension; unused heads have zero q/k/v/output;
- MLP of each block (exact ReLU arithmetic, robust to small attention errors):
  * ``step(v) = ReLU(M(v - 1/2) + 1/2) - ReLU(M(v - 1/2) - 1/2)`` (M = 4) is exactly 0 for
    v <= 3/8 and exactly 1 for v >= 5/8;
  * snap: each head's dimension x gets ``step(x) - x`` added (-x = ReLU(-x) - ReLU(x)), so after
    the block it holds exact 0/1 whenever the attention error is below 3/8;
  * truth tables: a Boolean node f over k leaves x gets, for each assignment a in the smaller
    of f^-1(1) and f^-1(0), ``step(v_a)`` with v_a = sum_{a_t=1} x_t - sum_{a_t=0} x_t
    + #zeros(a) - (k - 1), which is 1 at x = a and <= 0 at any other 0/1 point: exact 0/1
    output when each leaf is within 3/(8k) of 0/1 (the leaves of this block may be raw
    attention outputs). 2 ReLUs per assignment, at most 2^k of them (k <= MAX_LEAVES: the
    layout gives a node with more leaves a layer of its own, layout.py).
- position_head and string_head: logit = SCALE * (2 root - 1), so sigmoid > 1/2 exactly where
  the root holds.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from softhard.data.alphabet import Alphabet
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.syntax import Formula
from softhard.models.compiler.layout import MAX_LEAVES, Layout, boolean_value, leaves
from softhard.models.compiler.operators import D_HEAD, ONE, HeadSpec, is_numeric
from softhard.models.transformer import Transformer, TransformerConfig

M_STEP = 4.0
SCALE = 10.0


class MLPBuilder:
    """Collects ReLU units: (input weights {dim: w}, bias, output weights {dim: w}); plus output biases."""

    def __init__(self):
        self.units: list[tuple[dict, float, dict]] = []
        self.out_bias: dict = {}

    def step(self, v: dict, v_const: float, out: dict) -> None:
        """Add out * step(v), v = sum v[d] x_d + v_const."""
        for shift, sign in ((0.5, 1.0), (-0.5, -1.0)):
            w = {d: M_STEP * c for d, c in v.items()}
            self.units.append((w, M_STEP * (v_const - 0.5) + shift, {d: sign * c for d, c in out.items()}))

    def snap(self, dim: int) -> None:
        self.step({dim: 1.0}, 0.0, {dim: 1.0})
        self.units.append(({dim: 1.0}, 0.0, {dim: -1.0}))  # -ReLU(x)
        self.units.append(({dim: -1.0}, 0.0, {dim: 1.0}))  # +ReLU(-x)

    def truth_table(self, node: Formula, layout: Layout) -> int:
        index = layout.index
        xs = leaves(node, layout)
        k = len(xs)
        assert k <= MAX_LEAVES, f"the layout left {k} leaves under `{node}`"  # layout.layer_depth splits them
        table = {a: boolean_value(node, dict(zip(xs, map(bool, a)))) for a in itertools.product((0, 1), repeat=k)}
        ones = [a for a, f in table.items() if f]
        zeros = [a for a, f in table.items() if not f]
        use, sign = (ones, 1.0) if len(ones) <= len(zeros) else (zeros, -1.0)
        dim = index[node]
        if sign < 0:
            self.out_bias[dim] = self.out_bias.get(dim, 0.0) + 1.0
        for a in use:
            v = {}
            for x, bit in zip(xs, a):
                v[index[x]] = v.get(index[x], 0.0) + (1.0 if bit else -1.0)
            self.step(v, float(a.count(0)) - (k - 1), {dim: sign})
        return len(use)


def _row(d: dict, index: dict, width: int) -> torch.Tensor:
    """A form {coordinate: coefficient} as a weight row (width,); constants go through ``<one>``."""
    row = torch.zeros(width, dtype=torch.float64)
    for key, c in d.items():
        row[index[key]] += c
    return row


def build_model(layout: Layout, heads_per_block: list[list[HeadSpec]], alphabet: Alphabet, root: Formula,
                mode: str) -> tuple[Transformer, list[int]]:
    D, L = len(layout.coordinates), layout.n_layers
    H = max(1, max(len(hs) for hs in heads_per_block))
    mlps = []
    for block in range(L):
        mlp = MLPBuilder()
        for node in layout.attention[block]:
            if not is_numeric(node):  # counts #p/(i+1), z_k = k p_k and N ~ n stay as they are
                mlp.snap(layout.index[node])
        for node in layout.boolean[block]:
            mlp.truth_table(node, layout)
        mlps.append(mlp)
    d_ff = max(1, max(len(m.units) for m in mlps))

    default_kind = "softmax" if mode != "hard" else "rightmost"  # unused heads
    masks = [[s.mask for s in hs] + ["none"] * (H - len(hs)) for hs in heads_per_block]
    kinds = [[s.kind for s in hs] + [default_kind] * (H - len(hs)) for hs in heads_per_block]
    taus = [[s.tau for s in hs] + [1.0] * (H - len(hs)) for hs in heads_per_block]
    config = TransformerConfig(
        vocab_size=len(alphabet), n_layers=L, n_heads=H, d_model=D, d_head=D_HEAD, d_ff=d_ff, norm="none",
        bias=True, dropout=0.0, positional=[name for name, _ in layout.features], mask=masks,
        attention_kind=kinds, temperature="fixed", tau=taus,
        attn_fp32=True,  # bfloat16 evaluation keeps the attention in fp32 (the sweep's bfloat16 frontier assumes it)
    )
    model = Transformer(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        _embedding(model, layout, alphabet)
        for block, (hs, mlp) in enumerate(zip(heads_per_block, mlps)):
            _attention(model.blocks[block].attn, hs, layout, H)
            _mlp(model.blocks[block].mlp, mlp)
        for head in (model.position_head, model.string_head):
            head.weight[0, layout.index[root]] = 2 * SCALE
            head.bias[0] = -SCALE
    model.eval()
    return model, [len(m.units) for m in mlps]


def _embedding(model: Transformer, layout: Layout, alphabet: Alphabet) -> None:
    W = model.tok_emb.weight  # (vocab, D)
    ids = np.arange(len(alphabet))[:, None]  # each symbol as a one-letter word
    W[:, layout.index[ONE]] = 1.0
    for node in layout.local:
        W[:, layout.index[node]] = torch.tensor(label_positions(node, ids, alphabet)[:, 0], dtype=W.dtype)
    if layout.features:
        P = model.pos_emb.feature_proj.weight  # (D, F)
        for f, (_, coordinate) in enumerate(layout.features):
            P[layout.index[coordinate], f] = 1.0


def _attention(attn, specs: list[HeadSpec], layout: Layout, H: int) -> None:
    W = attn.c_attn.weight  # (3 H dh, D); the bias stays 0
    D = W.shape[1]
    for h, spec in enumerate(specs):
        for part, forms in enumerate((spec.q, spec.k, [spec.v] + [{}] * (D_HEAD - 1))):
            for c, form in enumerate(forms):
                W[part * H * D_HEAD + h * D_HEAD + c] = _row(form, layout.index, D).to(W.dtype)
        attn.sink_k[h] = torch.tensor(spec.sink_k, dtype=attn.sink_k.dtype)
        attn.sink_v[h] = torch.tensor((spec.sink_v, 0.0), dtype=attn.sink_v.dtype)
        dim = layout.index[spec.node]
        attn.c_proj.weight[dim, h * D_HEAD] = spec.out_coef
        attn.c_proj.bias[dim] += spec.out_bias
        attn.tau[h] = spec.tau


def _mlp(module, mlp: MLPBuilder) -> None:
    W1, b1, W2, b2 = module.c_fc.weight, module.c_fc.bias, module.c_proj.weight, module.c_proj.bias
    for u, (w_in, bias, w_out) in enumerate(mlp.units):
        for d, c in w_in.items():
            W1[u, d] += c
        b1[u] = bias
        for d, c in w_out.items():
            W2[d, u] += c
    for d, c in mlp.out_bias.items():
        b2[d] += c
