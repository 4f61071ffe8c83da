"""Attention of models/transformer.py and its kernel (models/attention.py): hard kinds, softmax
limits, masks, the sink, n, the two paths."""

import math

import pytest
import torch
import torch.nn.functional as F

from softhard.models.attention import attend, hard_attention
from softhard.models.masks import (
    MASK_BOUNDS,
    MASKS,
    band,
    causal_query_padding,
    key_span,
    mask_bounds,
    visibility,
    visible_key_count,
    with_sink,
)
from softhard.models.positional import apply_rope, rope_angles
from softhard.models.temperature import HostCopy, TemperatureSchedule, length_factor
from softhard.models.transformer import SelfAttention, Transformer, TransformerConfig

NEG = float("-inf")


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=3, n_layers=1, n_heads=1, d_model=16, d_ff=32)
    base.update(kw)
    return Transformer(TransformerConfig(**base)).eval()


def zero_queries(model):
    """Queries 0: every score q.k is 0, so every visible key (and the sink) ties."""
    with torch.no_grad():
        for block in model.blocks:
            qkv = block.attn.c_attn
            width = qkv.weight.shape[0] // 3
            qkv.weight[:width] = 0
            if qkv.bias is not None:
                qkv.bias[:width] = 0


# --- hard attention on crafted scores -------------------------------------------------------

SCORES = torch.tensor(
    [
        [0.0, 3.0, 1.0, 3.0, 2.0],  # maxima at columns 1 and 3
        [5.0, 1.0, 5.0, 5.0, 0.0],  # maxima at 0 (the sink), 2 and 3
        [1.0, 9.0, 2.0, 2.0, 0.5],  # the 9 is masked below: maxima at 2, 3
        [4.0, 4.0 - 1e-6, 1.0, 3.0, 4.0],  # near-tie at column 1 is not a maximum
    ]
)
ALLOWED = torch.tensor(
    [
        [True, True, True, True, True],
        [True, True, True, True, True],
        [True, False, True, True, True],
        [True, True, True, True, True],
    ]
)


def test_leftmost_picks_first_exact_maximum():
    w = hard_attention(SCORES, ALLOWED, "leftmost")
    assert w.argmax(-1).tolist() == [1, 0, 2, 0]
    assert torch.equal(w.sum(-1), torch.ones(4)) and set(w.unique().tolist()) == {0.0, 1.0}


def test_rightmost_picks_last_exact_maximum():
    w = hard_attention(SCORES, ALLOWED, "rightmost")
    expected = torch.zeros(4, 5)
    expected[[0, 1, 2, 3], [3, 3, 3, 4]] = 1
    assert torch.equal(w, expected)


def test_average_splits_uniformly_over_all_exact_maxima():
    w = hard_attention(SCORES, ALLOWED, "average")
    expected = torch.tensor(
        [
            [0, 1 / 2, 0, 1 / 2, 0],
            [1 / 3, 0, 1 / 3, 1 / 3, 0],
            [0, 0, 1 / 2, 1 / 2, 0],
            [1 / 2, 0, 0, 0, 1 / 2],
        ]
    )
    assert torch.allclose(w, expected, atol=0, rtol=0) or torch.allclose(w, expected, atol=1e-7)
    assert (w[2, 1] == 0).item()  # the masked 9 gets nothing


def test_hard_attention_batched_and_unknown_kind():
    s = SCORES.expand(2, 3, 4, 5)
    assert hard_attention(s, None, "leftmost").shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="'middle'"):
        hard_attention(SCORES, None, "middle")


def test_softmax_with_growing_factor_converges_to_average_hard():
    # ties: softmax tends to the uniform split over the maxima, i.e. to "average"
    target = hard_attention(SCORES, ALLOWED, "average")
    errors, near_tie = [], []
    for c in [1.0, 10.0, 100.0, 1e3, 1e5, 1e8]:
        w = F.softmax((SCORES * c).masked_fill(~ALLOWED, NEG), dim=-1)
        errors.append((w[:3] - target[:3]).abs().max().item())
        near_tie.append((w[3] - target[3]).abs().max().item())
    assert errors[0] > 0.1 and errors[-1] == 0.0
    assert errors == sorted(errors, reverse=True)
    # row 3 holds a gap of 1e-6: softmax still splits three ways at 1e5, resolves only well above 1e6
    assert near_tie[-2] > 0.3 and near_tie[-1] < 1e-6


def test_model_softmax_converges_to_hard_as_tau_shrinks():
    x = torch.randint(0, 3, (4, 12), generator=torch.Generator().manual_seed(1))
    errors = []
    for tau in [1.0, 1e-1, 1e-2, 1e-4, 1e-8]:
        model = make(seed=3, n_heads=2, d_model=16, tau=tau, mask=["past", "strict_future"])
        soft = model(x, return_attention=True).attention[0]
        model.set_attention_kind("average")
        hard = model(x, return_attention=True).attention[0]
        errors.append((soft - hard).abs().max().item())
    assert errors[0] > 0.01 and errors[-1] < 1e-6
    assert errors == sorted(errors, reverse=True)


# --- the model's hard kinds, with every score tied --------------------------------------------


@pytest.mark.parametrize("mask", MASKS)
def test_model_hard_kinds_on_ties(mask):
    model = make(n_heads=1, mask=mask)
    zero_queries(model)
    T, lengths = 6, torch.tensor([6, 4])
    x = torch.randint(0, 3, (2, T))
    n = visible_key_count(*mask_bounds([mask]), T, lengths)[:, 0]  # (B, T) incl. the sink
    model.set_attention_kind("leftmost")
    left = model(x, lengths, return_attention=True).attention[0][:, 0]  # (B, T, T+1)
    assert (left.argmax(-1) == 0).all() and torch.equal(left.sum(-1), torch.ones(2, T))  # the sink, position -1
    model.set_attention_kind("rightmost")
    right = model(x, lengths, return_attention=True).attention[0][:, 0]
    for b in range(2):
        for i in range(T):
            visible = [j for j in range(lengths[b]) if _visible(mask, i, j)]
            assert right[b, i].argmax().item() == (visible[-1] + 1 if visible else 0)
    model.set_attention_kind("average")
    avg = model(x, lengths, return_attention=True).attention[0][:, 0]
    assert torch.allclose(avg.max(-1).values, 1.0 / n.float())
    assert torch.equal((avg > 0).sum(-1), n)


def _visible(mask, i, j):
    return {"none": True, "past": j <= i, "strict_past": j < i, "future": j >= i, "strict_future": j > i}[mask]


# --- masks never leak, the no-key case --------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("mask", MASKS)
def test_mask_never_leaks_and_visible_keys_matter(mask, fast):
    model = make(seed=2, n_heads=2, mask=mask, fast=fast, positional=["rope", "i/n"])
    captured = []
    model.blocks[0].attn.register_forward_hook(lambda m, inp, out: captured.append(out[0].detach()))
    T = 7
    x = torch.randint(0, 3, (1, T), generator=torch.Generator().manual_seed(0))
    model(x)
    base = captured[-1][0]  # (T, d) the attention sub-layer's output
    for p in range(T):
        y = x.clone()
        y[0, p] = (y[0, p] + 1) % 3
        model(y)
        changed = captured[-1][0]
        for i in range(T):
            if i == p:
                continue  # the query itself changed
            same = torch.equal(changed[i], base[i])
            assert same == (not _visible(mask, i, p)), (mask, i, p)


@pytest.mark.parametrize("fast", [True, False])
def test_causal_model_output_at_i_ignores_later_tokens(fast):
    model = make(seed=4, n_layers=3, n_heads=2, mask="past", fast=fast, positional=["alibi", "i"])
    x = torch.randint(0, 3, (2, 10))
    out = model(x).position_logits
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 3
    out2 = model(y).position_logits
    assert torch.equal(out[:, :6], out2[:, :6])
    assert not torch.allclose(out[:, 6:], out2[:, 6:])


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("kind", ["softmax", "leftmost", "rightmost", "average"])
def test_query_without_keys_is_finite_and_attends_to_sink(kind, fast):
    model = make(n_heads=2, mask=["strict_past", "strict_future"], temperature="log_n", attention_kind=kind, fast=fast)
    x = torch.randint(0, 3, (2, 5))
    lengths = torch.tensor([5, 1])  # a one-letter word: nothing visible anywhere
    out = model(x, lengths, return_attention=True)
    att = out.attention[0]
    assert torch.isfinite(out.position_logits).all() and torch.isfinite(out.string_logits).all()
    assert torch.isfinite(att).all()
    assert torch.equal(att[0, 0, 0], F.one_hot(torch.tensor(0), 6).float())  # strict past at i = 0
    assert torch.equal(att[0, 1, 4], F.one_hot(torch.tensor(0), 6).float())  # strict future at i = n-1
    assert torch.equal(att[1, :, 0], F.one_hot(torch.tensor([0, 0]), 6).float())
    assert torch.isfinite(model(x, lengths).position_logits).all()  # the fast path too


# --- the kernel (models/attention.py) on its own ----------------------------------------------


def kernel_inputs(seed=0, B=2, H=4, T=6, dh=4):
    """Integer queries and keys (so hard heads meet exact ties), a banded mask with the sink, a bias."""
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randint(-2, 3, (B, H, rows, dh), generator=g).float() for rows in (T, T + 1))
    v = torch.randn(B, H, T + 1, dh, generator=g)
    allowed = with_sink(band(1, 3, range(T), range(T)))  # (T, T + 1): keys 1 to 3 steps back, and the sink
    bias = -0.5 * torch.rand(T, T + 1, generator=g)
    return q, k, v, allowed, bias


@pytest.mark.parametrize("kinds", [["softmax", "rightmost", "average", "leftmost"],
                                   ["leftmost", "average", "rightmost", "average"]])
def test_kernel_gives_each_head_its_own_kind(kinds):
    """Every head of a mixed layer as computed alone: softmax of the scaled, masked logits, or
    hard_attention on the unscaled scores q.k / sqrt(dh) + bias."""
    q, k, v, allowed, bias = kernel_inputs()
    scale = 0.7
    out = attend(q, k, v, allowed, kinds, scale, bias)
    scores = q @ k.transpose(-2, -1) / 2.0 + bias  # sqrt(dh) = 2
    for h, kind in enumerate(kinds):
        if kind == "softmax":
            expected = F.softmax((scores[:, h] * scale).masked_fill(~allowed, NEG), dim=-1)
        else:
            expected = hard_attention(scores[:, h], allowed, kind)
        torch.testing.assert_close(out.weights[:, h], expected, rtol=0, atol=1e-6)  # weights of order 1, fp32
        torch.testing.assert_close(out.values[:, h], expected @ v[:, h], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kinds", [["softmax"] * 4, ["leftmost"] * 4, ["rightmost"] * 4])
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_without_weights_gives_the_same_values(kinds, with_bias):
    """need_weights=False (fused SDPA, or a gather for one leftmost/rightmost kind) equals the weights path."""
    q, k, v, allowed, bias = kernel_inputs(seed=1)
    bias = bias if with_bias else None
    scale = torch.rand(1, 4, 6, 1, generator=torch.Generator().manual_seed(2)) + 0.5  # per head and query
    full = attend(q, k, v, allowed, kinds, scale, bias)
    fast = attend(q, k, v, allowed, kinds, scale, bias, need_weights=False)
    assert fast.weights is None and fast.logits is None
    if kinds[0] == "softmax":
        torch.testing.assert_close(fast.values, full.values, rtol=0, atol=1e-5)  # sums of order-1 terms
    else:
        assert torch.equal(fast.values, full.values)  # both pick one stored value


@pytest.mark.parametrize("mask", MASKS)
def test_band_and_key_span_against_the_mask_table(mask):
    """band is lo <= i - j <= hi of MASK_BOUNDS; key_span holds exactly the keys some query of a block sees."""
    lo, hi = MASK_BOUNDS[mask]
    n = 7
    by_loop = torch.tensor([[lo <= i - j <= hi for j in range(n)] for i in range(n)])
    assert torch.equal(band(lo, hi, range(n), range(n)), by_loop)
    for queries in (range(0, 3), range(3, 7), range(6, 7)):
        seen = [j for j in range(n) if by_loop[queries.start:queries.stop, j].any()]
        span = key_span(lo, hi, queries, n)
        assert list(span) == seen  # a band: the keys seen are contiguous
        assert torch.equal(band(lo, hi, queries, span), by_loop[queries.start:queries.stop, span.start:span.stop])


# --- n: the keys a query sees, and the length factors ------------------------------------------


def test_visible_key_count_by_hand():
    lengths, T = torch.tensor([4, 2]), 4
    n = visible_key_count(*mask_bounds(list(MASKS)), T, lengths)  # (B, H, T)
    by_hand = {
        "none": [[5, 5, 5, 5], [3, 3, 3, 3]],
        "past": [[2, 3, 4, 5], [2, 3, 3, 3]],
        "strict_past": [[1, 2, 3, 4], [1, 2, 3, 3]],
        "future": [[5, 4, 3, 2], [3, 2, 1, 1]],
        "strict_future": [[4, 3, 2, 1], [2, 1, 1, 1]],
    }
    for h, mask in enumerate(MASKS):
        assert n[:, h].tolist() == by_hand[mask], mask
    assert visible_key_count(*mask_bounds(["past"]), 3, None).tolist() == [[[2, 3, 4]]]


@pytest.mark.parametrize("mode, f", [("n", lambda n: n), ("log_n", math.log), ("n_log_n", lambda n: n * math.log(n))])
def test_length_factor_uses_each_querys_visible_count(mode, f):
    masks = ["past", "strict_future"]
    fixed = make(seed=5, n_heads=2, mask=masks, temperature="fixed")
    scaled = make(seed=5, n_heads=2, mask=masks, temperature=mode)
    scaled.load_state_dict(fixed.state_dict())
    x, lengths = torch.randint(0, 3, (2, 6)), torch.tensor([6, 3])
    s_fixed = fixed(x, lengths, return_attention=True).attention_logits[0]
    s_scaled = scaled(x, lengths, return_attention=True).attention_logits[0]
    n = visible_key_count(*mask_bounds(masks), 6, lengths)  # (B, H, T)
    expected = torch.tensor([[[f(v) for v in row] for row in head] for head in n.tolist()], dtype=torch.float)
    visible = torch.isfinite(s_fixed)
    assert torch.equal(visible, torch.isfinite(s_scaled))
    want = (s_fixed * expected[..., None])[visible]
    # the scale multiplies q before the dot product: a logit near 0 (a cancellation) carries the
    # rounding of the largest terms, ~1e-7 x factor x |q||k|, not of its own size
    assert torch.allclose(s_scaled[visible], want, rtol=1e-5, atol=1e-6 * float(want.detach().abs().max().clamp(min=1)))
    # the padded length T = 6 would give other values wherever a query sees fewer keys
    assert not torch.allclose(expected, torch.full_like(expected, f(7)))
    assert torch.allclose(length_factor(n, ["fixed", mode])[:, 1], expected[:, 1])


# --- the two paths ---------------------------------------------------------------------------

CONFIGS = [
    dict(),
    dict(positional=["rope", "i/n", "(-1)^i"], mask=["past", "strict_future", "none", "strict_past"], n_heads=4),
    dict(positional=["alibi", "learned"], mask="future", temperature=["log_n", "n"], norm="post"),
    dict(positional=["sinusoidal", "1/i"], temperature="n_log_n", norm="none", mask="strict_past", tau=[0.5, 2.0]),
    dict(positional=["alibi", "rope"], temperature=[["learned", "log_n"], ["fixed", "n"]], mask=[["past", "none"], ["future", "strict_past"]]),
    dict(positional=["i/n"], temperature="log_n", mask="past"),  # the fused causal kernel in both layers
    dict(positional=["rope"], mask="past", tau=0.5),  # the causal kernel, RoPE and the dummy query, a float scale
    dict(mask="past", tau=[0.5, 2.0]),  # the causal kernel with a scale tensor per head
    dict(positional=["alibi"], mask=["past", "none"], tau=0.7),  # ALiBi's bias times the float scale
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_fast_and_explicit_paths_agree(cfg):
    model = make(seed=6, n_layers=2, n_heads=cfg.pop("n_heads", 2), d_model=32, **cfg)
    x = torch.randint(0, 3, (3, 9))
    lengths = torch.tensor([9, 5, 1])
    for lens in (None, lengths):
        fast = model(x, lens, fast=True)
        slow = model(x, lens, return_attention=True)
        assert slow.attention[0] is not None and fast.attention is None
        real = torch.ones(3, 9, dtype=torch.bool) if lens is None else torch.arange(9)[None] < lens[:, None]
        assert torch.allclose(fast.position_logits[real], slow.position_logits[real], atol=1e-5, rtol=0)
        assert torch.allclose(fast.string_logits, slow.string_logits, atol=1e-5, rtol=0)
        for a, b in zip(fast.hidden_states, slow.hidden_states):
            assert torch.allclose(a[real], b[real], atol=1e-5, rtol=0)
    # and their gradients, through a loss on the word positions (padding outputs are meaningless)
    grads = []
    real = torch.arange(9)[None] < lengths[:, None]
    for fast in (True, False):
        model.zero_grad()
        out = model(x, lengths, fast=fast)
        (out.position_logits[real].sum() + out.string_logits.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_one_fixed_temperature_goes_into_sdpa_as_a_float(monkeypatch):
    """Every head fixed at one tau: the fast path builds no scale tensor (logit_scale) at all."""
    model = make(seed=6, n_layers=2, n_heads=2, mask="past", tau=0.5)
    x = torch.randint(0, 3, (2, 7))
    explicit = model(x, return_attention=True).position_logits

    def no_scale_tensor(*args):
        raise AssertionError("the fast path built a scale tensor")

    monkeypatch.setattr(SelfAttention, "logit_scale", no_scale_tensor)
    assert torch.allclose(model(x).position_logits, explicit, atol=1e-5)
    model.blocks[0].attn.tau[1] = 2.0  # two temperatures in a layer: a tensor again
    with pytest.raises(AssertionError, match="scale tensor"):
        model(x)


def test_fast_path_follows_every_change_of_the_temperatures():
    """The float scale is read on the host only after a change, and every change is seen."""
    model = make(seed=6, n_layers=2, n_heads=2, mask="past", tau=1.0,
                 schedule=TemperatureSchedule(tau_start=1.0, tau_end=0.1, steps=10))
    x = torch.randint(0, 3, (2, 7))
    with torch.no_grad():  # queries and keys large enough for the temperature to matter
        for block in model.blocks:
            block.attn.c_attn.weight.normal_()

    def agree():
        fast, explicit = (model(x, return_attention=attention).hidden_states[-1] for attention in (False, True))
        assert torch.allclose(fast, explicit, atol=1e-5)
        return fast

    before = agree()
    with torch.no_grad():
        model.blocks[1].attn.tau.fill_(0.3)  # in place
    changed = agree()
    assert not torch.allclose(changed, before, atol=1e-3)
    model.set_training_step(5)  # the schedule multiplier
    assert not torch.allclose(agree(), changed, atol=1e-3)
    model.load_state_dict(make(seed=7, n_layers=2, n_heads=2, mask="past", tau=2.0).state_dict())
    loaded = agree()
    model.double()  # new tensors
    assert torch.allclose(agree().float(), loaded, atol=1e-5)
    with torch.inference_mode():  # inference tensors carry no version: the scale stays a tensor
        model = make(seed=6, n_layers=2, n_heads=2, mask="past", tau=0.5)
        agree()


def test_host_copy_reads_only_after_a_change():
    t = torch.tensor([1.0, 2.0])
    copy = HostCopy()
    assert copy.read(t) == [1.0, 2.0]
    copy.record(t, [7.0, 7.0])  # what was "just written": trusted, not read back
    assert copy.read(t) == [7.0, 7.0]
    t[0] = 3.0  # an in-place write bumps the version
    assert copy.read(t) == [3.0, 2.0]
    assert copy.read(t.clone()) == [3.0, 2.0] and copy.read(torch.tensor(0.5)) == 0.5  # another tensor
    with torch.inference_mode():
        assert copy.read(torch.ones(2)) is None


@pytest.mark.parametrize("mask", ["past", "strict_past"])
def test_causal_query_padding_gives_the_visibility_mask(mask):
    T, H = 7, 2
    q, k, v = torch.randn(2, H, T, 4), torch.randn(2, H, T + 1, 4), torch.randn(2, H, T + 1, 4)
    dense = visibility(*mask_bounds([mask] * H), T, key_valid=None)  # (1, H, T, T+1)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    before, after = causal_query_padding([mask] * H)
    square = F.scaled_dot_product_attention(F.pad(q, (0, 0, before, after)), k, v, is_causal=True)
    assert square.shape == (2, H, T + 1, 4)
    assert torch.allclose(square[:, :, before : before + T], want, atol=1e-6)


@pytest.mark.parametrize("masks", [["none"], ["future"], ["strict_future"], ["past", "strict_past"], ["past", "none"]])
def test_causal_query_padding_only_when_every_head_is_past_or_every_head_strict_past(masks):
    assert causal_query_padding(masks) is None


def test_attention_rows_sum_to_one_and_sink_column_first():
    model = make(n_heads=2, mask=["past", "future"])
    out = model(torch.randint(0, 3, (2, 5)), torch.tensor([5, 3]), return_attention=True)
    att, scores = out.attention[0], out.attention_logits[0]
    assert att.shape == scores.shape == (2, 2, 5, 6)
    assert torch.allclose(att.sum(-1), torch.ones(2, 2, 5))
    assert torch.isfinite(scores[..., 0]).all()  # the sink is never masked
    assert torch.isinf(scores[0, 0, 0, 2:]).all()  # past at i = 0 sees the sink and position 0 only
    assert (att[1, :, :, 4:] == 0).all()  # padding keys (positions 3, 4) get nothing


@pytest.mark.parametrize("positional", [["none"], ["rope"]])
def test_scores_are_query_key_products_with_the_unrotated_sink_first(positional):
    """The explicit scores by hand from the weights: RoPE turns word queries and keys by their
    position and leaves the sink key as it is; the sink is column 0."""
    model = make(seed=5, n_heads=2, norm="none", positional=positional, tau=0.5)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.sink_k.normal_()
    x = torch.randint(0, 3, (2, 6))
    scores = model(x, return_attention=True).attention_logits[0]  # (B, H, T, T+1)

    q, k, _ = attn.c_attn(model.tok_emb(x)).split(16, dim=-1)  # (B, T, 16) each
    q, k = q.view(2, 6, 2, 8).transpose(1, 2), k.view(2, 6, 2, 8).transpose(1, 2)  # (B, H, T, d_head)
    if positional == ["rope"]:
        q, k = apply_rope(q, *rope_angles(6, 8)), apply_rope(k, *rope_angles(6, 8))
    keys = torch.cat([attn.sink_k[None, :, None, :].expand(2, 2, 1, 8), k], dim=2)  # (B, H, T+1, d_head)
    expected = q @ keys.transpose(-2, -1) / math.sqrt(8) / 0.5
    assert torch.allclose(scores, expected, atol=1e-5)


# --- huge scales, bf16 -----------------------------------------------------------------------


@pytest.mark.parametrize("mask", [["strict_past", "none"], "past", "strict_past"])  # the last two: causal kernel
@pytest.mark.parametrize("temperature", ["fixed", "n_log_n"])
def test_scale_1e8_fp32_is_finite_and_exactly_hard(temperature, mask):
    model = make(seed=7, n_layers=2, n_heads=2, tau=1e-8, temperature=temperature, mask=mask)
    x, lengths = torch.randint(0, 3, (3, 40)), torch.tensor([40, 17, 1])
    out = model(x, lengths, return_attention=True)
    fast = model(x, lengths)
    real = torch.arange(40)[None] < lengths[:, None]
    assert torch.allclose(fast.position_logits[real], out.position_logits[real], atol=1e-5, rtol=0)
    (fast.position_logits.sum() + fast.string_logits.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(fast.position_logits).all() and torch.isfinite(out.position_logits).all()
    model.set_attention_kind("average")
    hard = model(x, lengths, return_attention=True)
    for a, b in zip(out.attention, hard.attention):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn_fp32", [False, True])  # False, the default: q, k, v stay bf16
@pytest.mark.parametrize("fast", [True, False])
def test_bf16_autocast_scale_1e8_is_finite_and_exact(fast, attn_fp32):
    model = make(seed=8, n_layers=2, n_heads=2, d_model=32, tau=1e-8, temperature=["log_n", "fixed"],
                 mask=["strict_past", "future"], positional=["rope", "alibi", "i"], fast=fast, attn_fp32=attn_fp32)
    x, lengths = torch.randint(0, 3, (2, 64)), torch.tensor([64, 30])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lengths)
        soft = model(x, lengths, return_attention=True)
        model.set_attention_kind("average")
        hard = model(x, lengths, return_attention=True)
    assert torch.isfinite(out.position_logits.float()).all() and torch.isfinite(out.string_logits.float()).all()
    assert soft.attention[0].dtype == (torch.float32 if attn_fp32 else torch.bfloat16)
    for a, b in zip(soft.attention, hard.attention):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_learned_temperature_stays_positive_under_aggressive_updates():
    model = make(n_heads=2, temperature=["learned", "fixed"], tau=1.0)
    attn = model.blocks[0].attn
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    x = torch.randint(0, 3, (2, 8))
    for _ in range(50):
        opt.zero_grad()
        attn.temperatures().sum().backward()  # push tau down as hard as possible
        opt.step()
    tau = attn.temperatures()
    assert tau[0] > 0 and tau[0] < 1e-3 and tau[1] == 1.0
    with torch.no_grad():
        attn.log_tau.fill_(-1e4)
    assert (attn.temperatures() > 0).all()
    assert torch.isfinite(model(x).position_logits).all()
    assert torch.isfinite(model(x, return_attention=True).position_logits).all()
