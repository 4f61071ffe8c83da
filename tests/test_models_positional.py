"""Each positional encoding gives the values models/positional.py documents."""

import math

import pytest
import torch

from softhard.models.positional import alibi_bias, alibi_slopes, apply_rope, rope_angles, sinusoidal, theory_features
from softhard.models.transformer import Transformer, TransformerConfig


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=3, n_layers=1, n_heads=2, d_model=8, d_ff=16)
    base.update(kw)
    return Transformer(TransformerConfig(**base)).eval()


def positional_part(model, x, lengths=None):
    """What the encodings add to the token embeddings (dropout is 0)."""
    return model(x, lengths).hidden_states[0] - model.tok_emb(x)


def test_sinusoidal_values():
    pe = sinusoidal(5, 6)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    for i in range(5):
        for k in range(3):
            w = 1.0 / 10000 ** (2 * k / 6)
            assert pe[i, 2 * k].item() == pytest.approx(math.sin(i * w), abs=1e-6)
            assert pe[i, 2 * k + 1].item() == pytest.approx(math.cos(i * w), abs=1e-6)
    model = make(positional=["sinusoidal"])
    x = torch.randint(0, 3, (2, 5))
    assert torch.allclose(positional_part(model, x), sinusoidal(5, 8).expand(2, 5, 8), atol=1e-6)


def test_no_positional_encoding_adds_nothing():
    for names in ([], ["none"], ["rope"], ["alibi"]):
        model = make(positional=names)
        x = torch.randint(0, 3, (2, 5))
        assert torch.equal(positional_part(model, x), torch.zeros(2, 5, 8))


def test_theory_feature_values():
    names = ["i", "i/n", "1/i", "i^2", "(-1)^i"]
    f = theory_features(names, 5, torch.tensor([3, 5]))  # (B, T, F)
    assert f.shape == (2, 5, 5)
    i = torch.arange(5.0)
    for b, n in enumerate([3, 5]):
        assert torch.equal(f[b, :, 0], i)
        assert torch.allclose(f[b, :, 1], i / n)  # each word's own length, not T
        assert torch.allclose(f[b, :, 2], torch.tensor([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]))
        assert torch.equal(f[b, :, 3], torch.tensor([0.0, 1, 4, 9, 16]))
        assert torch.equal(f[b, :, 4], torch.tensor([1.0, -1, 1, -1, 1]))
    assert torch.allclose(theory_features(["i/n"], 4, None)[0, :, 0], torch.tensor([0, 0.25, 0.5, 0.75]))
    # order follows the config
    assert torch.equal(theory_features(["(-1)^i", "i"], 3, None)[0], torch.tensor([[1.0, 0], [-1, 1], [1, 2]]))


def test_theory_features_in_float64_stay_exact_beyond_fp32():
    T = 5000  # i^2 passes 2^24 at i = 4097: fp32 rounds it, float64 does not
    wide = theory_features(["i^2", "i/n"], T, None, dtype=torch.float64)
    narrow = theory_features(["i^2", "i/n"], T, None)
    assert wide.dtype == torch.float64 and narrow.dtype == torch.float32
    i = torch.arange(T, dtype=torch.float64)
    assert torch.equal(wide[0, :, 0], i * i)
    assert not torch.equal(narrow[0, :, 0].double(), i * i)
    assert torch.equal(wide[0, :, 1], i / T)


def test_a_float64_model_computes_in_float64():
    config = TransformerConfig(vocab_size=2, n_layers=1, n_heads=1, d_model=8, positional=["i", "i^2"])
    model = Transformer(config).double()
    output = model(torch.tensor([[0, 1, 1, 0]]), return_attention=True)
    assert output.position_logits.dtype == torch.float64 and output.attention[0].dtype == torch.float64
    assert torch.allclose(output.position_logits, model(torch.tensor([[0, 1, 1, 0]])).position_logits)


def test_features_are_projected_and_added():
    model = make(positional=["i^2", "i/n"])
    x, lengths = torch.randint(0, 3, (2, 6)), torch.tensor([6, 4])
    feats = theory_features(["i^2", "i/n"], 6, lengths)
    expected = feats @ model.pos_emb.feature_proj.weight.T  # (B, T, d)
    assert torch.allclose(positional_part(model, x, lengths), expected, atol=1e-6)
    # large i^2 stays exact under bf16 autocast: the projection runs in fp32
    with torch.no_grad():
        model.pos_emb.feature_proj.weight.zero_()
        model.pos_emb.feature_proj.weight[0, 0] = 1.0
    x = torch.zeros(1, 4000, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = model.pos_emb(1, 4000, None, "cpu")
    assert emb[0, 3999, 0].item() == 3999.0**2


def test_learned_positions_read_the_table():
    model = make(positional=["learned"], max_len=16)
    x = torch.randint(0, 3, (2, 5))
    assert torch.allclose(positional_part(model, x), model.pos_emb.learned.weight[:5].expand(2, 5, 8))
    with pytest.raises(ValueError, match="max_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_learned_random_offsets_shift_each_word_and_reach_every_row():
    torch.manual_seed(0)
    model = make(positional=["learned"], max_len=12, random_offset=True).train()
    table = model.pos_emb.learned.weight
    used = torch.zeros(12, dtype=torch.bool)
    offsets = set()
    x = torch.randint(0, 3, (4, 5))
    for _ in range(30):
        part = positional_part(model, x)  # (4, 5, d)
        for b in range(4):
            # the word reads rows o..o+4 for one offset o in 0..12-5
            matches = [o for o in range(8) if torch.allclose(part[b], table[o:o + 5])]
            assert len(matches) == 1
            offsets.add(matches[0])
            used[matches[0]:matches[0] + 5] = True
    assert used.all() and offsets == set(range(8))
    model.eval()  # no offset in evaluation
    assert torch.allclose(positional_part(model, x), table[:5].expand(4, 5, 8))


def test_rope_values_and_relative_positions():
    cos, sin = rope_angles(6, 4, base=10000.0)
    theta = torch.tensor([1.0, 10000 ** -0.5])
    assert torch.allclose(cos, torch.cos(torch.arange(6.0)[:, None] * theta))
    x = torch.zeros(6, 4)
    x[:, 0] = 1.0  # the unit vector e_0 pairs with e_2
    r = apply_rope(x, cos, sin)
    assert torch.allclose(r[:, 0], torch.cos(torch.arange(6.0)))
    assert torch.allclose(r[:, 2], torch.sin(torch.arange(6.0)))
    assert torch.allclose(r[0], x[0])  # position 0 is not rotated
    torch.manual_seed(0)
    q, k = torch.randn(1, 4).expand(6, 4), torch.randn(1, 4).expand(6, 4)
    s = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).T  # (T, T): depends on i - j only
    for d in range(-5, 6):
        diag = torch.diagonal(s, offset=d)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-5)


def test_alibi_values_and_sink_column():
    slopes = alibi_slopes(4)
    assert torch.equal(slopes, torch.tensor([2**-2, 2**-4, 2**-6, 2**-8]))
    bias = alibi_bias(5, slopes)  # (H, T, T+1)
    assert bias.shape == (4, 5, 6)
    assert torch.equal(bias[..., 0], torch.zeros(4, 5))
    for h in range(4):
        for i in range(5):
            for j in range(5):
                assert bias[h, i, j + 1].item() == -slopes[h].item() * abs(i - j)


def test_alibi_in_model_scores():
    model = make(positional=["alibi"], n_heads=2, mask="past")
    with torch.no_grad():  # queries 0: the scores are the bias alone
        model.blocks[0].attn.c_attn.weight[:8] = 0
        model.blocks[0].attn.c_attn.bias[:8] = 0
    scores = model(torch.randint(0, 3, (1, 4)), return_attention=True).attention_logits[0][0]  # (H, T, T+1)
    expected = alibi_bias(4, alibi_slopes(2)).masked_fill(~torch.ones(4, 5, dtype=torch.bool).tril(1), float("-inf"))
    assert torch.equal(scores, expected)
