"""softhard evaluate: the memory-linear forward pass, target-set gaps, and the three evaluations."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch

from softhard.analysis.evaluate import evaluate_model, gap_rule_scales, main
from softhard.analysis.runs import RunFolder
from softhard.analysis.temperature import target_set_gap
from softhard.data.language import Language
from softhard.data.ltl import parse
from softhard.models.blocked import blocked_forward
from softhard.models.compiler import compile_formula
from softhard.models.heads import parse_kinds
from softhard.models.transformer import Transformer, TransformerConfig
from softhard.train.run_folder import EVALUATION_COLUMNS
from tests.conftest import train_tiny_run


@pytest.mark.parametrize("positional,norm,temperature", [
    (["sinusoidal"], "pre", "fixed"), (["rope"], "post", "log_n"), (["alibi"], "none", "n"),
    (["i/n", "learned"], "pre", "learned"),
])
def test_blocked_forward_equals_the_explicit_forward(positional, norm, temperature):
    torch.manual_seed(0)
    for kind in ("softmax", "average", "rightmost", "leftmost"):
        config = TransformerConfig(vocab_size=3, n_layers=2, n_heads=4, d_model=16, d_ff=32, norm=norm,
                                   positional=positional, mask=["none", "past", "strict_past", "strict_future"],
                                   temperature=temperature, tau=0.7, attention_kind=kind)
        model = Transformer(config).eval()
        ids = torch.randint(0, 3, (3, 11))
        expected = model(ids, fast=False)
        position, string = blocked_forward(model, ids, block=4)  # 3 blocks, the last one short
        # fp32 logits of order 1, summed in another order: a few ulps
        torch.testing.assert_close(position, expected.position_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(string, expected.string_logits, rtol=0, atol=1e-5)


def test_target_set_gap_against_a_loop():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randint(-3, 4, (2, 5, 6), generator=generator).float()  # integer scores: ties happen
    targets = torch.rand(2, 5, 6, generator=generator) < 0.4
    visible = torch.rand(2, 5, 6, generator=generator) < 0.8
    targets[0, 0, :2], visible[0, 0] = True, targets[0, 0]  # targets but no competitor
    targets[1, 1] = False  # no target
    gap, spread = target_set_gap(scores, targets, visible)
    for b, i in itertools.product(range(2), range(5)):
        on = [float(s) for s, t, v in zip(scores[b, i], targets[b, i], visible[b, i]) if t and v]
        off = [float(s) for s, t, v in zip(scores[b, i], targets[b, i], visible[b, i]) if v and not t]
        assert gap.dtype == spread.dtype == torch.float64
        if on and off:
            assert gap[b, i] == min(on) - max(off) and spread[b, i] == max(on) - min(on)
        else:
            assert math.isnan(gap[b, i]) and math.isnan(spread[b, i])


def test_parse_kinds_names_a_bad_item():
    assert parse_kinds("L0H1=rightmost, l1h0=average") == {(0, 1): "rightmost", (1, 0): "average"}
    with pytest.raises(ValueError, match="'L0H1=hardest'"):
        parse_kinds("L0H1=hardest")


def identity_matches(compiled) -> pd.DataFrame:
    """Each construction head matched to itself (what the saved-run matching gives a construction)."""
    return pd.DataFrame([dict(layer=h.layer, head=h.head, c_layer=h.layer, c_head=h.head,
                              target_rule=h.target_rule) for h in compiled.heads])


@pytest.mark.parametrize("formula,alphabet", [("(a S b) & O c", "a,b,c"), ("Y a & #a > #b", "a,b")])
def test_a_soft_scaled_construction_is_exact_at_100x_under_every_attention(formula, alphabet):
    train = 5
    compiled = compile_formula(parse(formula), alphabet, "soft-scaled", 100 * train)
    table = evaluate_model(compiled.model, Language(parse(formula), compiled.alphabet), [train, 100 * train],
                           construction=compiled, matches=identity_matches(compiled), words=8, progress=False)
    assert table["attention"].tolist() == ["as-trained", "hardened", "gap-rule"] * 2
    assert (table["string_accuracy"] == 1.0).all() and (table["position_accuracy"] == 1.0).all()
    config = compiled.model.config
    unused = [f"L{layer}H{head}" for layer in range(config.n_layers) for head in range(config.n_heads)
              if not any((h.layer, h.head) == (layer, head) for h in compiled.heads)]
    hardened = table[table.attention == "hardened"].iloc[0]
    assert hardened["softmax_heads"] == " ".join(unused)  # only the heads without a match (computing nothing)
    taus = table[table.attention == "gap-rule"].filter(like="tau_")
    used = [f"tau_L{h.layer}H{h.head}" for h in compiled.heads]
    assert (taus[used] > 0).all().all()
    # the gap rule's tau(n) = g / ln((n + 1) / eps) falls with n (g shrinks or stays, the log grows)
    assert (taus[used].iloc[1] < taus[used].iloc[0]).all()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("evaluate") / "runs", "since_ab", "fixed", 0)


def test_evaluate_writes_the_table_and_hardened_really_switches(tiny_run):
    kinds = "L0H0=leftmost,L0H1=leftmost,L1H0=average"  # not since_ab's construction (rightmost S heads)
    assert main([str(tiny_run), "--lengths", "5,12", "--words", "8", "--kinds", kinds,
                 "--attention", "as-trained,hardened"]) == 0
    table = pd.read_csv(tiny_run / "evaluation.csv", keep_default_na=False)
    assert list(table.columns[: len(EVALUATION_COLUMNS)]) == EVALUATION_COLUMNS
    assert [c for c in table.columns[len(EVALUATION_COLUMNS):]] == ["tau_L0H0", "tau_L0H1", "tau_L1H0", "tau_L1H1"]
    assert table[["attention", "length", "words"]].values.tolist() == [
        ["as-trained", 5, 8], ["hardened", 5, 8], ["as-trained", 12, 8], ["hardened", 12, 8]]
    assert set(table[table.attention == "hardened"]["softmax_heads"]) == {"L1H1"}

    # an independent check on the explicit path: the same words, the kinds set on the model itself
    run = RunFolder(tiny_run)
    model = run.load_model()
    language = Language(run.formula, run.alphabet)
    ids = torch.as_tensor(language.sample_both(12, 4, 0))
    truth = torch.as_tensor(language.label(ids.numpy()))
    soft = model(ids, fast=False).position_logits
    model.set_attention_kind([["leftmost", "leftmost"], ["average", "softmax"]])
    hard = model(ids, fast=False).position_logits
    assert (soft - hard).abs().max() > 1e-3  # the switch changes the outputs
    row = table[(table.attention == "hardened") & (table.length == 12)].iloc[0]
    assert row["position_accuracy"] == pytest.approx(float(((hard > 0) == truth).double().mean()), abs=1e-12)


@pytest.mark.parametrize("argv,message", [
    (["--attention", "soft"], "--attention: 'soft'"),
    (["--kinds", "L7H0=rightmost"], "no head L7H0"),
    (["--lengths", "0,12"], "--lengths: '0'"),
    (["--eps", "2"], "--eps: 2.0"),
    (["--device", "tpu9"], "--device: 'tpu9'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_run, capsys, argv, message):
    (tiny_run / "evaluation.csv").unlink(missing_ok=True)
    assert main([str(tiny_run), "--words", "4", "--lengths", "5", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tiny_run / "evaluation.csv").exists()


def test_word_chunks_do_not_change_the_table(monkeypatch):
    compiled = compile_formula(parse("a S b"), "a,b,c", "soft-scaled", 40)
    arguments = dict(model=compiled.model, language=Language(parse("a S b"), compiled.alphabet), lengths=[7, 40],
                     attentions=["as-trained", "hardened"], construction=compiled,
                     matches=identity_matches(compiled), words=6, progress=False)
    whole = evaluate_model(**arguments)
    monkeypatch.setattr("softhard.analysis.evaluate.CHUNK_TOKENS", 1)  # one word per forward pass
    pd.testing.assert_frame_equal(evaluate_model(**arguments), whole)


def test_gap_rule_measures_the_target_set_gap_of_the_matched_construction_head():
    """Learned heads without a mask, matched to strict-past construction heads: the blocked
    measurement equals target_set_gap on the explicit scores and n-by-n target sets."""
    torch.manual_seed(3)
    model = Transformer(TransformerConfig(vocab_size=3, n_layers=1, n_heads=2, d_model=16, d_ff=32))
    model.eval()
    construction = compile_formula(parse("O a & (a S b)"), "a,b,c", "hard")
    heads = {h.operator: h for h in construction.heads}
    matched = {(0, 0): heads["O"], (0, 1): heads["S"]}  # rules any and last
    ids = Language(parse("a S b"), construction.alphabet).sample_both(9, 3, 0)
    taus, gaps = {}, {}
    scales = gap_rule_scales(matched, ids, construction.alphabet, 2, 1e-3, taus, gaps)
    blocked_forward(model, torch.as_tensor(ids), layer_scales=scales, block=4)

    logits = model(torch.as_tensor(ids), return_attention=True).attention_logits[0]  # tau 1: raw scores, -inf masked
    for (layer, head), info in matched.items():
        targets = torch.as_tensor(info.hard_targets(ids, construction.alphabet))
        gap, _ = target_set_gap(logits[:, head], targets, logits[:, head].isfinite())
        expected = float(gap[~gap.isnan()].min())
        assert gaps[f"L0H{head}"] == pytest.approx(expected, abs=1e-5)  # fp32 scores of order 1
        tau = taus[f"L0H{head}"]
        assert tau == pytest.approx(expected / math.log(10 / 1e-3)) if expected > 0 else math.isnan(tau)


def test_matching_gives_every_counterpart_head_its_hard_kind(tiny_run):
    """Heads whose best construction head holds COUNTERPART_MASS of their attention take its hard
    kind; the others stay softmax, and the row names them."""
    from softhard.analysis.attention import match_heads, pick_best
    from softhard.analysis.temperature import COUNTERPART_MASS

    assert main([str(tiny_run), "--factor", "2", "--words", "4"]) == 0  # train length 5: n = 10
    table = pd.read_csv(tiny_run / "evaluation.csv", keep_default_na=False)
    assert table[["attention", "length"]].values.tolist() == [["as-trained", 10], ["hardened", 10], ["gap-rule", 10]]
    best = pick_best(match_heads(RunFolder(tiny_run)))
    rules = {"last": "rightmost", "first": "leftmost"}
    matched = best.target_mass >= COUNTERPART_MASS
    expected = " ".join(f"L{r.layer}H{r.head}=" + (rules.get(r.target_rule, "average") if m else "softmax")
                        for r, m in zip(best.itertuples(), matched))
    hardened = table[table.attention == "hardened"].iloc[0]
    assert hardened["kinds"] == expected
    assert hardened["softmax_heads"] == " ".join(f"L{r.layer}H{r.head}" for r, m in zip(best.itertuples(), matched) if not m)


def test_a_saved_soft_scaled_construction_is_exact_at_100x(tmp_path):
    """The same as a run folder (`softhard construct --save-run`, issue 15)."""
    from softhard.train import construction_run

    run_dir = construction_run.save_construction_run("a S b", "a,b,c", "soft-scaled", tmp_path / "run", max_length=5,
                                                      probe_words=4, cache_dir=tmp_path / "data")
    assert main([str(run_dir), "--factor", "1,100", "--words", "8"]) == 0
    table = pd.read_csv(run_dir / "evaluation.csv")
    assert table[["attention", "length"]].values.tolist() == [
        [attention, n] for n in (5, 500) for attention in ("as-trained", "hardened", "gap-rule")]
    assert (table["string_accuracy"] == 1.0).all() and (table["position_accuracy"] == 1.0).all()
