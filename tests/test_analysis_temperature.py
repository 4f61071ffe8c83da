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
    head_temperatures,
    model_temperature_table,
    plot_temperature,
    query_gaps,
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
    assert table[(table.layer == once.layer) & (table["head"] == once.head)].gap_min.min() == pytest.approx(0.5)


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
    gap, distance = query_gaps(scores, attention)
    assert gap[0, 0, 0] == pytest.approx(G)  # the two tied maxima are the top keys
    assert math.isinf(gap[0, 0, 1])  # a lone visible key: no gap
    # L1 to uniform on the two maxima = 2 (mass off them) = 2 e^-G / (2 + e^-G) <= 2 n e^-G
    assert distance[0, 0, 0] == pytest.approx(2 * math.exp(-G) / (2 + math.exp(-G)), rel=1e-6)
    assert distance[0, 0, 0] <= 2 * 3 * math.exp(-G)
    assert distance[0, 0, 1] == pytest.approx(0.0)


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_saved_logits_match_the_model_on_the_same_words(tiny_grid):
    run = RunFolder(tiny_grid / "since_ab-log_n-seed0")
    saved = temperature_table(run)
    by_length = {}
    for word in run.attention_words():
        by_length.setdefault(len(word.ids), []).append(word.ids)
    recomputed = model_temperature_table(run.load_model(), [np.stack(w) for w in by_length.values()])
    recomputed = recomputed.sort_values(["layer", "head", "length"]).reset_index(drop=True)
    assert np.allclose(saved.gap_median, recomputed.gap_median, rtol=1e-3)
    assert (saved.words == recomputed.words).all()
    assert extrapolate(run).factor.tolist() == [10, 100] * 4


@pytest.mark.slow
def test_runs_of_one_name_in_two_grid_folders_stay_two_runs(tiny_grid, tmp_path):
    for grid in ("grid_a", "grid_b"):
        shutil.copytree(tiny_grid / "since_ab-fixed-seed0", tmp_path / grid / "since_ab-fixed-seed0")
    runs, _ = find_runs(tmp_path)
    table = temperature_runs(runs)
    future = extrapolate_table(table, factors=(10,))
    assert future.run_dir.nunique() == 2 and len(future) == 2 * len(future.drop_duplicates(["layer", "head"]))
    markdown = extrapolation_markdown(future)
    assert str(tmp_path / "grid_a" / "since_ab-fixed-seed0") in markdown and str(tmp_path / "grid_b") in markdown


@pytest.mark.slow
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
