"""softhard soften: hard-attention models to softmax at per-head temperatures, verified by evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from softhard.data.ltl import parse
from softhard.models.checkpoint import load_checkpoint, save_checkpoint
from softhard.models.compiler import compile_formula
from softhard.models.soften import agreement, main, soften, soften_model, words_up_to
from softhard.models.transformer import Transformer, TransformerConfig

N = 2000


@pytest.fixture(scope="module")
def softened():
    """`O a & #a > #b` in hard mode: rightmost heads (O a, the sign head) and average heads (the counts)."""
    compiled = compile_formula(parse("O a & #a > #b"), "a,b,c", "hard")
    kinds = {kind for row in compiled.model.attention_kinds for kind in row}
    assert {"rightmost", "average"} <= kinds
    return compiled, soften(compiled.model, N, words=4, seed=0)


def test_a_softened_compiled_model_agrees_with_hard_up_to_n(softened):
    compiled, result = softened
    assert result["exhaustive_up_to"] >= 5 and result["sampled_words"] == 4
    assert result["words"] == result["agreeing_words"] > 0 and result["disagreeing_word"] is None
    heads = {h["head"]: h for h in result["heads"]}
    for info in compiled.heads:
        head = heads[f"L{info.layer}H{info.head}"]
        assert head["violation"] is None
        # the measured gap is never below the compiler's own lower bound (1/(2N) for the sign head)
        assert head["gap"] >= (0.5 / N if info.operator == "compare" else info.gap) - 1e-7
        assert head["distance"] <= 2.5 * result["eps"]  # the gap lemma: about 2 n exp(-g / tau) = 2 eps
    # soft really is softmax, and Transformer.forward (not the blocked pass the check used) agrees on the longest words
    model = result["model"]
    assert all(kind == "softmax" for row in model.attention_kinds for kind in row)
    longest = words_up_to(3, N, 4, seed=0)[-1]
    assert longest.shape[1] == N
    assert (compiled.predict(longest) == (model(torch.as_tensor(longest)).position_logits > 0).numpy()).all()


def test_four_times_the_temperature_does_not_agree(softened):
    compiled, result = softened
    taus = {(int(h["head"][1]), int(h["head"][3])): 4 * h["tau"] for h in result["heads"]}
    batches = words_up_to(3, N, 4, seed=0)
    total, agree, witness = agreement(compiled.model, soften_model(compiled.model, taus), batches)
    assert agree < total and witness is not None


def near_tie_model() -> Transformer:
    """One average-hard head scoring key j at 1e-6 j / n: distinct, but closer than fp32 rounding of 1."""
    config = TransformerConfig(vocab_size=2, n_layers=1, n_heads=1, d_model=2, d_head=1, d_ff=1, norm="none",
                               positional=["i/n"], attention_kind="average", mask="past")
    model = Transformer(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.tok_emb.weight[:, 0] = 1.0  # coordinate 0: the constant 1
        model.pos_emb.feature_proj.weight[1, 0] = 1.0  # coordinate 1: i/n
        model.blocks[0].attn.c_attn.weight[:] = torch.tensor([[1.0, 0.0], [0.0, 1e-6], [0.0, 1.0]])  # q, k, v
    return model


def test_a_near_tie_average_head_is_reported_with_its_witness(tmp_path, capsys):
    result = soften(near_tie_model(), 50, words=2)
    (head,) = result["heads"]
    assert head["violation"] == "near-tie" and "tie-breaking" in head["advice"]
    assert result["model"] is None
    word, query = head["violation_word"], head["violation_query"]
    assert 0 < query < len(word)  # a query that sees at least two word keys

    checkpoint = save_checkpoint(near_tie_model(), tmp_path / "hard.ckpt")
    assert main([str(checkpoint), "--length", "50", "--words", "2"]) == 1
    out = capsys.readouterr().out
    assert "L0H0 (average) violates the uniform-tieless property: near-tie" in out
    written = json.loads((tmp_path / "softened-N50" / "soften.json").read_text())
    assert written["heads"][0]["violation"] == "near-tie"
    assert not (tmp_path / "softened-N50" / "softened.ckpt").exists()  # nothing silently averaged


def test_cli_writes_a_softened_checkpoint_that_loads(tmp_path, capsys):
    compiled = compile_formula(parse("#a < #b"), "a,b", "hard")
    checkpoint = save_checkpoint(compiled.model, tmp_path / "hard.ckpt")
    assert main([str(checkpoint), "--length", "200", "--words", "2", "--out", str(tmp_path / "soft")]) == 0
    model = load_checkpoint(tmp_path / "soft" / "softened.ckpt")
    for words in words_up_to(2, 200, 2, seed=0):  # the words the check saw (a gap is a bound only over them)
        assert (compiled.predict(words) == (model(torch.as_tensor(words)).position_logits > 0).numpy()).all()
    assert "| L0H0 | average |" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--length", "0"], "--length: 0"),
    (["--length", "9", "--eps", "1.5"], "--eps: 1.5"),
    (["--length", "9", "--device", "tpu9"], "--device: 'tpu9'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    checkpoint = save_checkpoint(near_tie_model(), tmp_path / "hard.ckpt")
    assert main([str(checkpoint), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "softened-N0").exists() and not (tmp_path / "softened-N9").exists()


def test_kinds_put_a_softmax_model_in_hard_mode(tmp_path, capsys):
    model = near_tie_model()
    model.set_attention_kind("softmax")
    checkpoint = save_checkpoint(model, tmp_path / "soft.ckpt")
    assert main([str(checkpoint), "--length", "9"]) == 2
    assert "every head is softmax; give --kinds" in capsys.readouterr().err
    assert main([str(checkpoint), "--length", "50", "--words", "2", "--kinds", "L0H0=average"]) == 1
    assert "L0H0 (average) violates the uniform-tieless property: near-tie" in capsys.readouterr().out


def test_a_missing_model_is_named(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), "--length", "9"]) == 2
    assert "nothing is neither a run folder" in capsys.readouterr().err
