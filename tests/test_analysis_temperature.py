"""analysis.temperature: score gaps, effective and required temperatures, extrapolation."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from softhard.analysis.runs import RunFolder, find_runs
from softhard.analysis.temperature import (
    EXTRAPOLATION_COLUMNS,
    TEMPERATURE_COLUMNS,
    effective_temperature,
    extrapolate,
    extrapolate_table,
    extrapolation_markdown,
    counterpart_targets,
    head_temperatures,
    model_batches,
    model_temperature_table,
    plot_temperature,
    query_gaps,
    run_counterparts,
    target_set_gap,
    temperature_runs,
    temperature_table,
)
from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.models import Transformer, TransformerConfig
from softhard.models.compiler import compile_formula
from tests.conftest import TINY_GRID

LENGTH = 12  # the soft-scaled construction's n
FORMULA = "Y (a S b) & O c | #a > #b"  # since, yesterday, once and a comparison: every head kind


def random_words(lengths, count=24, seed=0, symbols=3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, symbols, size=(count, n)) for n in lengths]


@pytest.fixture(scope="module")
def soft_scaled():
    compiled = compile_formula(parse(FORMULA), Alphabet(("a", "b", "c")), mode="soft-scaled", length=LENGTH)
    return compiled, model_temperature_table(compiled.model, random_words((3, 7, LENGTH)))


def test_the_construction_s_designed_gaps_and_temperatures_are_recovered(soft_scaled):
    compiled, table = soft_scaled
    assert list(table.columns) == list(TEMPERATURE_COLUMNS)
    for info in compiled.heads:
        rows = table[(table.layer == info.layer) & (table["head"] == info.head)]
        assert sorted(rows.length) == [3, 7, LENGTH]
        assert (rows.gap_min >= info.gap * (1 - 1e-4)).all(), info.subformula  # never below the designed gap
        assert np.allclose(rows.tau_eff, info.tau, rtol=1e-6)  # fixed temperature: tau_eff is the head's tau
        assert rows.hard.all() and (rows.hard_fraction == 1).all(), info.subformula  # the theory: hard up to n
        # L1 = 2 x the mass off the top keys, which the construction keeps below epsilon
        assert (rows.distance_max <= rows.bound_max).all() and (rows.distance_max <= 2 * compiled.epsilon).all()
    # Y and S tie-break by j/(2n): at n = LENGTH the next target is exactly the designed 1/(2n) behind
    for subformula in ("Y (a S b)", "a S b"):
        info = compiled.head(subformula)
        row = table[(table.layer == info.layer) & (table["head"] == info.head) & (table.length == LENGTH)].iloc[0]
        assert row.gap_min == pytest.approx(info.gap, rel=1e-4)
        assert row.gap_min == pytest.approx(1 / (2 * LENGTH), rel=1e-4)
    # O c ties all its targets on purpose: the gap is to the best non-target, 1/2, not 0
    once = compiled.head("O c")
    # (logits of order 20 carry fp32 rounding ~2e-6, about 1e-7 once scaled back by tau: an absolute tolerance)
    assert table[(table.layer == once.layer) & (table["head"] == once.head)].gap_min.min() == pytest.approx(0.5, abs=1e-5)


def test_each_construction_head_judged_on_its_own_targets(soft_scaled):
    # the same gaps on the heads' own target sets: the designed gap is the gap to the best non-target
    compiled, top = soft_scaled
    table = model_temperature_table(compiled.model, random_words((3, 7, LENGTH)), construction=compiled)
    for info in compiled.heads:
        rows = table[(table.layer == info.layer) & (table["head"] == info.head)]
        assert (rows.gap_used == "target_set").all() and (rows.counterpart == info.subformula).all()
        assert (rows.gap_min >= info.gap * (1 - 1e-4)).all() and rows.hard.all(), info.subformula
        assert (rows.spread_max.fillna(0) <= 1e-5).all()  # soft-scaled targets tie (their scores are s_j)
    # unused slots keep the top-versus-second gap; their keys all tie: no competitor, no gap
    unused = table[table.gap_used == "top_second"]
    assert len(unused) and (unused.queries == 0).all() and (unused.no_competitor > 0).all() and unused.gap_min.isna().all()


def test_extrapolation_of_the_construction(soft_scaled):
    compiled, table = soft_scaled
    future = extrapolate_table(table, factors=(1, 10, 100), train_length=LENGTH)
    assert list(future.columns) == list(EXTRAPOLATION_COLUMNS)
    assert future[future.factor == 1].hard.all()  # built for n = LENGTH
    since = compiled.head("a S b")
    rows = future[(future.layer == since.layer) & (future["head"] == since.head)].set_index("factor")
    # fixed tau, fixed gap: the required temperature gap / ln(n / eps) falls below tau beyond n
    assert not rows.loc[10, "hard"] and not rows.loc[100, "hard"]
    assert rows.loc[100, "n_keys"] == 100 * LENGTH  # strict past: the last query sees N - 1 keys and the sink
    assert rows.loc[100, "tau_required"] == pytest.approx(since.gap / math.log(100 * LENGTH / 1e-3), rel=1e-4)
    assert "hard at 10x" in extrapolation_markdown(future)


def test_extrapolation_follows_each_temperature_mode_exactly():
    # log_n: hard iff g / tau >= ln(n / eps) / ln(n), which falls with n: 2.50 at n = 101, 2.00 at n = 1001
    measured = pd.DataFrame({
        "layer": 0, "head": [0, 1, 2], "temperature_mode": ["log_n", "fixed", "n"], "mask": "none",
        "tau_head": 1.0, "length": 10, "gap_min": 2.2, "gap_median": 2.2,
    })
    future = extrapolate_table(measured, factors=(10, 100), train_length=10).set_index(["head", "factor"])
    assert future.loc[(0, 10), "n_keys"] == 101 and future.loc[(0, 100), "n_keys"] == 1001  # mask none: N + sink
    assert future.loc[(0, 100), "tau_eff"] == pytest.approx(1 / math.log(1001))
    assert list(future.loc[0, "hard"]) == [False, True]
    assert list(future.loc[1, "hard"]) == [False, False]
    assert list(future.loc[2, "hard"]) == [True, True]
    with pytest.raises(ValueError, match="train length"):
        extrapolate_table(measured)


def test_a_masked_length_scaled_head_is_hard_only_if_its_short_queries_are():
    # log_n needs g / tau >= ln(n / eps) / ln(n): 2.0 at n = 1001 but 11.0 at n = 2, a past mask's first query
    measured = pd.DataFrame({"layer": 0, "head": [0, 1], "temperature_mode": "log_n", "mask": ["none", "past"],
                             "tau_head": 1.0, "length": 10, "gap_min": 5.0, "gap_median": 5.0})
    future = extrapolate_table(measured, factors=(100,), train_length=10).set_index("head")
    assert future.loc[0, "hard"] and not future.loc[1, "hard"]
    assert future.loc[1, "tau_eff"] <= future.loc[1, "tau_required"]  # the query with the most keys alone is hard

    # the same in the measured table: a raw gap of 3 at every query of a past-masked log_n head
    T, g = 40, 3.0
    model = Transformer(TransformerConfig(vocab_size=2, n_layers=1, n_heads=1, d_model=8, d_ff=8, mask="past",
                                          temperature="log_n"))
    _, tau_eff = effective_temperature(torch.tensor([1.0]), ["log_n"], ["past"], T)
    raw = torch.full((1, 1, T, T + 1), float("-inf"))
    for i in range(T):  # the sink and keys 0..i visible, key i on top by g
        raw[0, 0, i, : i + 2] = 0.0
        raw[0, 0, i, i + 1] = g
    logits = raw / tau_eff.view(1, 1, T, 1).float()
    row = head_temperatures(model, [([logits], [torch.softmax(logits, -1)])]).iloc[0]
    assert row.tau_eff <= row.tau_required and 0 < row.hard_fraction < 1 and not row.hard


def test_effective_temperature_per_mode_and_mask():
    T = 6
    i = np.arange(T)
    n, tau_eff = effective_temperature(torch.tensor([0.5, 1.0, 2.0, 4.0]), ["fixed", "log_n", "n", "n_log_n"],
                                       ["none", "past", "strict_past", "future"], T)
    expected_n = np.stack([np.full(T, T + 1), i + 2, i + 1, T - i + 1])  # visible keys plus the sink
    assert (n.numpy() == expected_n).all()
    factors = [np.ones(T), np.log(expected_n[1]), expected_n[2], expected_n[3] * np.log(expected_n[3])]
    assert np.allclose(tau_eff.numpy(), np.array([0.5, 1.0, 2.0, 4.0])[:, None] / np.stack(factors))


def test_query_gaps_ties_masks_and_the_gap_lemma():
    G = 3.0
    scores = torch.tensor([[[[0.0, 0.0, -G, float("-inf")], [1.0, float("-inf"), float("-inf"), float("-inf")]]]])
    attention = torch.softmax(scores, dim=-1)
    gap, spread, distance, competitors = query_gaps(scores, attention)
    assert competitors[0, 0].tolist() == [1, 0]  # the key at -G; the lone key is its own top
    assert gap[0, 0, 0] == pytest.approx(G) and spread[0, 0, 0] == 0  # the two tied maxima are the top keys
    assert math.isnan(gap[0, 0, 1]) and math.isnan(spread[0, 0, 1])  # a lone visible key: no competitor
    # L1 to uniform on the two maxima = 2 (mass off them) = 2 e^-G / (2 + e^-G) <= 2 n e^-G; the weights are
    # fp32 (rounding ~3e-9 on a weight of 0.024): relative 1e-6 of the distance is above it
    assert distance[0, 0, 0] == pytest.approx(2 * math.exp(-G) / (2 + math.exp(-G)), rel=1e-6)
    assert distance[0, 0, 0] <= 2 * 1 * math.exp(-G)  # the lemma's bound with its one competitor
    assert distance[0, 0, 1] == pytest.approx(0.0)


def test_target_set_gap_by_brute_force():
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.normal(size=(5, 6, 7)))
    targets = torch.from_numpy(rng.random((5, 6, 7)) < 0.4)
    visible = torch.from_numpy(rng.random((5, 6, 7)) < 0.7)
    visible[0, 0] = False
    visible[0, 0, 0] = True  # only the sink visible
    targets[0, 1], visible[0, 1] = visible[0, 1], visible[0, 1] | (torch.arange(7) == 0)  # every visible key a target
    gap, spread = target_set_gap(scores, targets, visible)
    assert gap.dtype == spread.dtype == torch.float64 and gap.shape == (5, 6)
    for b, q in np.ndindex(5, 6):
        on = [scores[b, q, j].item() for j in range(7) if targets[b, q, j] and visible[b, q, j]]
        off = [scores[b, q, j].item() for j in range(7) if visible[b, q, j] and not targets[b, q, j]]
        if on and off:
            assert gap[b, q].item() == min(on) - max(off) and spread[b, q].item() == max(on) - min(on)
        else:
            assert math.isnan(gap[b, q]) and math.isnan(spread[b, q])
    assert math.isnan(gap[0, 0]) and math.isnan(gap[0, 1])


def test_a_set_valued_head_whose_targets_do_not_tie_stays_hard():
    # the perturbation: 0.01 j/n on the word keys of the soft-scaled `O a` head's scores leaves
    # its output within eps, so the target-set gap keeps it hard; top-versus-second calls it soft
    n = 64
    compiled = compile_formula(parse("O a"), Alphabet(("a", "b")), mode="soft-scaled", length=n)
    info = compiled.head("O a")
    words = random_words((n,), count=8, symbols=2)[0]
    [(scores, attention)] = list(model_batches(compiled.model, [words]))
    layer = scores[info.layer].clone()
    layer[..., 1:] += 0.01 * torch.arange(n) / n
    scores[info.layer] = layer
    attention[info.layer] = torch.softmax(layer, -1)
    targets = counterpart_targets(compiled, {(info.layer, info.head): 0}, words, len(scores), layer.shape[1])
    judged = head_temperatures(compiled.model, [(scores, attention, targets)], counterparts={(info.layer, info.head): "O a"})
    top = head_temperatures(compiled.model, [(scores, attention)])
    mine, theirs = (t.set_index(["layer", "head"]).loc[(info.layer, info.head)] for t in (judged, top))
    assert mine.gap_used == "target_set" and mine.counterpart == "O a" and theirs.gap_used == "top_second"
    assert mine.hard_fraction == 1.0 and mine.hard
    assert mine.spread_max > 0.005 * info.tau  # the targets no longer tie (raw spread = logit spread x tau)
    assert theirs.hard_fraction < 0.5
    assert mine.no_competitor == 8  # query 0 sees only the sink


def test_a_strict_past_head_with_a_length_factor_is_not_soft_by_its_first_query():
    # query 0 of a strict-past head sees only the sink: no competitor; log 1 = 0 makes its tau_eff
    # infinite and the n factor asks g >= tau ln(1/eps) = 6.9 there, more than any other query needs.
    # The binding queries see one key (n = 2): log_n needs g >= ln(2/eps) / ln 2 = 10.97, n_log_n
    # half that, 5.48, and n ln(2/eps) / 2 = 3.80
    measured = pd.DataFrame({"layer": 0, "head": [0, 1, 2], "temperature_mode": ["log_n", "n_log_n", "n"],
                             "mask": "strict_past", "tau_head": 1.0, "length": 10, "gap_min": [11.0, 5.5, 3.9],
                             "gap_median": 5.0, "gap_used": "target_set"})
    future = extrapolate_table(measured, factors=(10, 100), train_length=10)
    assert future.hard.all() and (future.sink_only == 1).all()
    assert (future.gap_used == "target_set").all()

    # measured: a strict-past log_n head with raw gap 11 at every query that sees a key
    T, g = 20, 11.0
    model = Transformer(TransformerConfig(vocab_size=2, n_layers=1, n_heads=1, d_model=8, d_ff=8, mask="strict_past",
                                          temperature="log_n"))
    _, tau_eff = effective_temperature(torch.tensor([1.0]), ["log_n"], ["strict_past"], T)
    raw = torch.full((1, 1, T, T + 1), float("-inf"))
    for i in range(T):  # the sink and keys 0..i-1 visible, the last one on top by g
        raw[0, 0, i, : i + 1] = 0.0
        raw[0, 0, i, i] = g if i > 0 else 0.0
    logits = raw / tau_eff.view(1, 1, T, 1).float()
    row = head_temperatures(model, [([logits], [torch.softmax(logits, -1)])]).iloc[0]
    assert row.no_competitor == 1 and row.queries == T - 1
    assert row.gap_min == pytest.approx(g, rel=1e-5)
    assert row.hard and row.hard_fraction == 1.0
    assert extrapolate_table(pd.DataFrame([row]), factors=(10, 100), train_length=T).hard.all()


def test_raw_gaps_do_not_depend_on_the_temperature():
    # one layer (a later layer's raw scores depend on the earlier attention, hence on its temperature)
    torch.manual_seed(0)
    fields = {"vocab_size": 3, "n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32, "positional": ["i/n"]}
    base = Transformer(TransformerConfig(**fields))
    with torch.no_grad():
        base.blocks[0].attn.c_attn.weight.mul_(30)  # raw scores of order 1, gaps far above float rounding
    scaled = Transformer(TransformerConfig(**fields, temperature=["log_n", "n"]))
    scaled.load_state_dict(base.state_dict())
    scaled.blocks[0].attn.tau.copy_(torch.tensor([0.3, 2.0]))  # tau is a buffer: set after loading
    words = random_words((4, 9), count=6)
    a, b = model_temperature_table(base, words), model_temperature_table(scaled, words)
    # a gap is a difference of two fp32 scores of order 1 (rounding ~1e-7 each, computed along two
    # paths): compare it to an absolute tolerance above that rounding, not relative to a small gap
    assert np.allclose(a.gap_min, b.gap_min, rtol=0, atol=1e-5) and np.allclose(a.gap_median, b.gap_median, rtol=0, atol=1e-5)
    assert not np.allclose(a.logit_gap_median, b.logit_gap_median, rtol=1e-2)  # the logits did change
    assert np.allclose(b.tau_eff[b["head"] == 1], 2.0 / b.n_keys[b["head"] == 1])


def test_tiny_grid_tables(tiny_grid):
    table = temperature_runs(tiny_grid)
    assert table.attrs["skipped"] == [] and table.run.nunique() == len(TINY_GRID)
    numbers = ["gap_min", "gap_median", "logit_gap_min", "tau_eff", "tau_required", "distance_mean", "bound_mean"]
    assert np.isfinite(table[numbers].to_numpy(dtype=float)).all()
    assert (table.n_keys == table.length + 1).all()  # mask none: every key and the sink
    expected = np.where(table.temperature_mode == "log_n", table.tau_head / np.log(table.length + 1), table.tau_head)
    assert np.allclose(table.tau_eff, expected)
    assert (table.distance_mean <= table.bound_mean + 1e-9).all()
    future = extrapolate_table(table)
    assert len(future) == 2 * len(table.drop_duplicates(["run", "layer", "head"]))
    assert set(future.length) == {50, 500}  # 10x and 100x the train length 5
    figure = plot_temperature(table, future)
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    # three configurations (since_ab fixed and log_n, two seeds each; majority): a solid and a
    # dashed line each per panel, the median over seeds; one legend entry each
    assert all(len(axes.lines) == 3 * 2 for axes in figure.axes)
    assert len(figure.legends[0].get_texts()) == 3
    expected = table[(table.language == "since_ab") & (table.temperature == "log_n") & (table.layer == 0)
                     & (table["head"] == 0)].groupby("length").tau_required.median()
    dashed = [line for line in figure.axes[0].lines if line.get_linestyle() == "--"]
    assert any(len(line.get_ydata()) == len(expected) and np.allclose(line.get_ydata(), expected.to_numpy())
               for line in dashed)  # other configurations' lines may cover other lengths


@pytest.mark.parametrize("name, gap_used", [("since_ab-log_n-seed0", {"top_second"}), ("majority-fixed-seed0", {"target_set"})])
def test_saved_logits_match_the_model_on_the_same_words(tiny_grid, name, gap_used):
    # untrained since_ab heads hold under half their weight on any S target set: no counterpart; the
    # untrained majority heads attend about uniformly, so over half lands on the count heads' targets
    run = RunFolder(tiny_grid / name)
    saved = temperature_table(run)
    assert set(saved.gap_used) == gap_used
    by_length = {}
    for word in run.attention_words():
        by_length.setdefault(len(word.ids), []).append(word.ids)
    construction, counterparts = run_counterparts(run)
    recomputed = model_temperature_table(run.load_model(), [np.stack(w) for w in by_length.values()],
                                         construction=construction, counterparts=counterparts)
    recomputed = recomputed.sort_values(["layer", "head", "length"]).reset_index(drop=True)
    # fp32 logits of order 1 recomputed in another batch: gaps agree to their rounding
    assert np.allclose(saved.gap_median, recomputed.gap_median, rtol=0, atol=1e-5)
    assert (saved.words == recomputed.words).all() and (saved.gap_used == recomputed.gap_used).all()
    assert extrapolate(run).factor.tolist() == [10, 100] * 4


def test_runs_of_one_name_in_two_grid_folders_stay_two_runs(tiny_grid, tmp_path):
    for grid in ("grid_a", "grid_b"):
        shutil.copytree(tiny_grid / "since_ab-fixed-seed0", tmp_path / grid / "since_ab-fixed-seed0")
    runs, _ = find_runs(tmp_path)
    table = temperature_runs(runs)
    future = extrapolate_table(table, factors=(10,))
    assert future.run_dir.nunique() == 2 and len(future) == 2 * len(future.drop_duplicates(["layer", "head"]))
    markdown = extrapolation_markdown(future)
    assert str(tmp_path / "grid_a" / "since_ab-fixed-seed0") in markdown and str(tmp_path / "grid_b") in markdown


def test_runs_without_attention_or_checkpoint_are_skipped(tiny_grid, tmp_path):
    runs, _ = find_runs(tiny_grid)
    source = runs[0].path
    for name, remove in (("no-attention", "attention"), ("no-checkpoint", "checkpoints")):
        shutil.copytree(source, tmp_path / name)
        shutil.rmtree(tmp_path / name / remove)
    with pytest.warns(UserWarning, match="skipped"):
        table = temperature_runs(tmp_path)
    assert table.empty and list(table.columns)[-len(TEMPERATURE_COLUMNS):] == list(TEMPERATURE_COLUMNS)
    assert len(table.attrs["skipped"]) == 2
    assert any("no saved attention" in m for m in table.attrs["skipped"])
    assert any("no checkpoint" in m for m in table.attrs["skipped"])


def test_a_count_head_at_its_fixed_temperature_stays_hard_at_any_length():
    """A count head averages every word key: its one competitor is the sink at every length, so its
    fixed temperature keeps it hard at 100x (ln(n / eps) would declare it soft); the O head next to it,
    whose competitors grow with the word, is judged at ln(n / eps)."""
    formula, alphabet = parse("O a & #a > #b"), Alphabet.from_text("a,b")
    compiled = compile_formula(formula, alphabet, "soft-scaled", 100)
    table = model_temperature_table(compiled.model, random_words((4, 7, 10), count=3, symbols=2), construction=compiled)
    future = extrapolate_table(table, factors=(10, 100), train_length=10)
    by_head = {info.subformula: future[(future.layer == info.layer) & (future["head"] == info.head)]
               for info in compiled.heads}
    assert (by_head["#a"].competitors == 1).all() and by_head["#a"].hard.all()
    assert (by_head["O a"].competitors == by_head["O a"].n_keys).all()
    # the count head's temperature is fixed: at the lemma's ln(n / eps) it would not be hard at 100x
    tau = by_head["#a"].tau_eff.iloc[-1]
    assert tau > by_head["#a"].gap.iloc[-1] / math.log(by_head["#a"].n_keys.iloc[-1] / 1e-3)
