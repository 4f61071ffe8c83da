"""The model as a whole: config validation, per-head specs, padding, outputs, schedule, determinism."""

import pytest
import torch

from softhard.models.temperature import TemperatureSchedule
from softhard.models.transformer import Transformer, TransformerConfig


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=3, n_layers=2, n_heads=2, d_model=16, d_ff=32)
    base.update(kw)
    return Transformer(TransformerConfig(**base)).eval()


# --- per-head specs and validation -------------------------------------------------------------


def test_per_head_spec_forms():
    cfg = TransformerConfig(n_layers=2, n_heads=3, d_model=12, mask="past")
    assert cfg.per_head("mask") == [["past"] * 3] * 2
    cfg = TransformerConfig(n_layers=2, n_heads=3, d_model=12, mask=["past", "none", "future"])
    assert cfg.per_head("mask") == [["past", "none", "future"]] * 2
    spec = [["past", "none", "future"], ["strict_past", "strict_future", "none"]]
    cfg = TransformerConfig(n_layers=2, n_heads=3, d_model=12, mask=spec)
    assert cfg.per_head("mask") == spec
    model = Transformer(cfg)
    assert [b.attn.masks for b in model.blocks] == spec


@pytest.mark.parametrize(
    "field, value, bad",
    [
        ("mask", "causal", "'causal'"),
        ("mask", ["past", "bogus"], "'bogus'"),
        ("attention_kind", "argmax", "'argmax'"),
        ("attention_kind", [["softmax", "leftmost"], ["softmax", "hardest"]], "'hardest'"),
        ("temperature", "log", "'log'"),
        ("tau", -1.0, "-1.0"),
        ("tau", [1.0, 0.0], "0.0"),
        ("mask", ["past"], "n_heads=2"),  # wrong length
        ("mask", [["past", "none"]], "n_layers=2"),  # one layer given, two needed
        ("norm", "layer", "'layer'"),
        ("positional", ["sinusoid"], "'sinusoid'"),
        ("positional", "rope", "'rope'"),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(field, value, bad):
    with pytest.raises(ValueError) as err:
        TransformerConfig(n_layers=2, n_heads=2, d_model=16, **{field: value})
    assert bad in str(err.value) and field in str(err.value)


def test_validation_lists_every_problem_and_shape_checks():
    with pytest.raises(ValueError) as err:
        TransformerConfig(mask="x", attention_kind="y", norm="z")
    assert all(v in str(err.value) for v in ("'x'", "'y'", "'z'"))
    with pytest.raises(ValueError, match="n_heads=3"):
        TransformerConfig(d_model=16, n_heads=3)
    with pytest.raises(ValueError, match="even"):
        TransformerConfig(d_model=12, n_heads=4, positional=["rope"])
    assert TransformerConfig(d_model=12, n_heads=4, d_head=8).head_dim == 8


def test_set_attention_kind_switches_on_the_same_weights():
    model = make(mask="past")
    x = torch.randint(0, 3, (2, 7))
    before = model(x).position_logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_attention_kind([["rightmost", "average"], ["leftmost", "softmax"]])
    assert model.attention_kinds == [["rightmost", "average"], ["leftmost", "softmax"]]
    hard = model(x).position_logits  # hard heads run on the explicit path even though fast=True
    assert not torch.allclose(before, hard)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    model.set_attention_kind("softmax")
    assert torch.equal(model(x).position_logits, before)
    with pytest.raises(ValueError, match="'max'"):
        model.set_attention_kind("max")
    assert model.attention_kinds == [["softmax"] * 2] * 2  # unchanged after the error


# --- inputs and outputs ----------------------------------------------------------------------

PADDING_CONFIGS = [
    dict(positional=["sinusoidal", "i/n", "1/i"], mask=["past", "future"], temperature=["log_n", "n"]),
    dict(positional=["rope", "alibi", "learned", "(-1)^i"], mask=["strict_past", "none"], norm="post"),
    dict(positional=["i", "i^2"], mask="strict_future", temperature="n_log_n", norm="none"),
]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cfg", PADDING_CONFIGS)
def test_padding_does_not_change_real_positions(cfg, fast):
    model = make(seed=1, fast=fast, **cfg)
    words = [torch.randint(0, 3, (n,)) for n in (6, 3, 1)]
    T = 9
    padded = torch.randint(0, 3, (3, T))  # random garbage after each word
    for b, w in enumerate(words):
        padded[b, : len(w)] = w
    lengths = torch.tensor([len(w) for w in words])
    out = model(padded, lengths)
    for b, w in enumerate(words):
        alone = model(w[None])
        assert torch.allclose(out.position_logits[b, : len(w)], alone.position_logits[0], atol=1e-5)
        assert torch.allclose(out.string_logits[b], alone.string_logits[0], atol=1e-5)
    other = padded.clone()
    other[0, 6:] = (other[0, 6:] + 1) % 3
    assert torch.equal(model(other, lengths).position_logits[:, :6], out.position_logits[:, :6])


def test_string_logits_read_the_last_real_position():
    model = make(mask="none")
    x, lengths = torch.randint(0, 3, (3, 8)), torch.tensor([8, 5, 2])
    out = model(x, lengths)
    final = model.ln_f(out.hidden_states[-1])  # (B, T, d)
    expected = model.string_head(final[torch.arange(3), lengths - 1]).squeeze(-1)
    assert torch.allclose(out.string_logits, expected)
    wrong = model.string_head(final[:, -1]).squeeze(-1)  # the padded last position
    assert not torch.allclose(out.string_logits[1:], wrong[1:])
    no_lengths = model(x)
    assert torch.allclose(no_lengths.string_logits, model.string_head(model.ln_f(no_lengths.hidden_states[-1])[:, -1]).squeeze(-1))


def test_output_shapes():
    model = make(n_layers=3, n_heads=4, d_model=16)
    out = model(torch.randint(0, 3, (2, 5)), return_attention=True)
    assert out.position_logits.shape == (2, 5) and out.string_logits.shape == (2,)
    assert len(out.hidden_states) == 4 and all(h.shape == (2, 5, 16) for h in out.hidden_states)
    assert len(out.attention) == len(out.attention_logits) == 3
    assert all(a.shape == (2, 4, 5, 6) for a in out.attention)
    assert model(torch.randint(0, 3, (2, 5))).attention is None


def test_determinism_given_seed():
    x = torch.randint(0, 3, (4, 10))
    outs = []
    for _ in range(2):
        model = make(seed=11, dropout=0.1, positional=["learned"], random_offset=True, max_len=32).train()
        torch.manual_seed(5)
        outs.append(model(x).position_logits)
    assert torch.equal(outs[0], outs[1])
    model = make(seed=12, dropout=0.1).train()
    torch.manual_seed(6)
    assert not torch.equal(model(x).position_logits, outs[0])


def test_checkpoints_with_the_sink_in_two_parameters_still_load():
    """State dicts from before the sink's key and value became one parameter (sink_k, sink_v)."""
    model = make(seed=13, mask="past")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.sink.normal_()
    old = model.state_dict()
    for layer in range(2):
        sink = old.pop(f"blocks.{layer}.attn.sink")
        old[f"blocks.{layer}.attn.sink_k"], old[f"blocks.{layer}.attn.sink_v"] = sink[0], sink[1]
    loaded = make(seed=14, mask="past")
    loaded.load_state_dict(old)
    x = torch.randint(0, 3, (2, 6))
    assert torch.equal(loaded(x).position_logits, model(x).position_logits)
    assert torch.equal(loaded.blocks[1].attn.sink_v, model.blocks[1].attn.sink_v)


# --- the temperature schedule ---------------------------------------------------------------


def test_schedule_values():
    lin = TemperatureSchedule(tau_start=1.0, tau_end=0.1, steps=10, kind="linear")
    assert [round(lin(s), 6) for s in (0, 5, 10, 20)] == [1.0, 0.55, 0.1, 0.1]
    exp = TemperatureSchedule(tau_start=1.0, tau_end=0.01, steps=10, kind="exponential")
    assert [round(exp(s), 6) for s in (0, 5, 10, 99)] == [1.0, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="'cosine'"):
        TemperatureSchedule(kind="cosine")


def test_set_training_step_drives_the_temperature():
    sched = TemperatureSchedule(tau_start=1.0, tau_end=1e-6, steps=100)
    model = make(seed=3, schedule=sched, mask="past")
    x = torch.randint(0, 3, (2, 9))
    soft = model(x, return_attention=True).attention[0]
    assert model.set_training_step(100) == pytest.approx(1e-6)
    assert model.state_dict()["tau_schedule"].item() == pytest.approx(1e-6)
    hard = model(x, return_attention=True).attention[0]
    assert hard.max(-1).values.min() > 0.99 > soft.max(-1).values.min()
    assert model.set_training_step(0) == 1.0
    assert torch.allclose(model(x, return_attention=True).attention[0], soft)
    assert make().set_training_step(10) == 1.0  # no schedule: a no-op


# --- devices ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    model = make(seed=4, positional=["rope", "i/n"], mask=["past", "strict_future"], temperature="log_n")
    x, lengths = torch.randint(0, 3, (3, 12)), torch.tensor([12, 7, 1])
    cpu = model(x, lengths)
    gpu_model = model.cuda()
    for fast in (True, False):
        gpu = gpu_model(x.cuda(), lengths.cuda(), fast=fast)
        assert torch.allclose(gpu.position_logits.cpu(), cpu.position_logits, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(gpu_model(x.cuda(), lengths.cuda()).position_logits.float()).all()
