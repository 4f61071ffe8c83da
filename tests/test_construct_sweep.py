"""The blocked evaluator against the explicit path, its O(n) target sets, and `softhard sweep`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.models.compiler import compile_formula
from softhard.models.compiler.blocked import evaluate, head_targets
from softhard.models.compiler.sweep import C_MAX, critical_factor
from softhard.models.compiler.sweep import main as sweep
from softhard.models.masks import MASK_BOUNDS
from softhard.cli import main as softhard

FORMULAS = [  # past and future, counting, every target rule (self: F and G in soft-unbounded)
    ("(a S b) S (Y c)", "a,b,c"),
    ("#a > #b", "a,b"),
    ("(a | b) S (c & H(a -> F b)) | X a U Y b | #a - #b != 2 & #c <= #(a S b)", "a,b,c"),
    ("G(a -> F b) & X X a | O(b & Y a)", "a,b"),
    ("O (X a) | F (X b) & G (F a)", "a,b"),  # heads whose target is itself a future operator
]
MODES = ["hard", "soft-scaled", "soft-unbounded"]


def compiled_case(text, symbols, mode, n):
    phi, alphabet = parse(text), Alphabet.from_text(symbols)
    if mode == "soft-unbounded" and " U " in text:
        pytest.skip("U has no soft-unbounded construction")
    return compile_formula(phi, alphabet, mode=mode, length=n if mode == "soft-scaled" else None)


def explicit(compiled, ids):
    """Predictions and per-head off-target masses from the n-by-n path (return_attention)."""
    with torch.no_grad():
        out = compiled.model(torch.as_tensor(ids), return_attention=True)
    masses = [np.where(target, 0.0, out.attention[info.layer][:, info.head].numpy()).sum(-1).max()
              for info, target in zip(compiled.heads, compiled.hard_targets(ids))]
    return (out.position_logits > 0).numpy(), np.array(masses)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,symbols", FORMULAS)
def test_blocked_equals_explicit_path(text, symbols, mode):
    rng = np.random.default_rng(0)
    for n, block in [(1, None), (9, 4), (40, 7), (64, None)]:
        compiled = compiled_case(text, symbols, mode, n)
        ids = rng.integers(0, len(compiled.alphabet), (5, n))
        predictions, masses = explicit(compiled, ids)
        result = evaluate(compiled, ids, offtarget=True, block=block)
        np.testing.assert_array_equal(result.predictions, predictions)
        np.testing.assert_array_equal(result.predictions, label_positions(compiled.formula, ids, compiled.alphabet))
        np.testing.assert_allclose(result.offtarget, masses, atol=1e-6, rtol=0)
        assert len(result.offtarget) == len(compiled.heads)
        assert (result.offtarget == 0).all() if mode == "hard" else result.offtarget.max() < compiled.epsilon


def test_blocked_follows_switched_attention_kinds():
    compiled = compiled_case(*FORMULAS[2], "soft-scaled", 30)
    kinds = compiled.model.attention_kinds
    for info in compiled.heads:
        kinds[info.layer][info.head] = info.hard_kind
    compiled.model.set_attention_kind(kinds)
    ids = np.random.default_rng(1).integers(0, 3, (4, 30))
    predictions, masses = explicit(compiled, ids)
    result = evaluate(compiled, ids, offtarget=True, block=8)
    np.testing.assert_array_equal(result.predictions, predictions)
    assert (result.offtarget == 0).all() and (masses == 0).all()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("text,symbols", FORMULAS)
def test_block_target_sets_equal_hard_targets(text, symbols, mode):
    n = 13
    compiled = compiled_case(text, symbols, mode, n)
    ids = np.random.default_rng(2).integers(0, len(compiled.alphabet), (6, n))
    rules = set()
    for info, reference in zip(compiled.heads, compiled.hard_targets(ids)):
        targets, (lo, hi) = head_targets(info, ids, compiled.alphabet, "cpu"), MASK_BOUNDS[info.mask]
        for i0, i1, k0, k1 in [(0, n, 0, n), (0, 5, 0, n), (5, 13, 2, 11), (12, 13, 0, 13)]:
            i, j = np.arange(i0, i1)[:, None], np.arange(k0, k1)[None, :]
            band = torch.as_tensor((i - j >= lo) & (i - j <= hi))
            block = targets.block(band, i0, i1, k0, k1).numpy()
            inside = reference[:, i0:i1, 1 + k0 : 1 + k1] & band.numpy()  # the reference restricted to these keys
            np.testing.assert_array_equal(block[..., 1:], inside, err_msg=f"{info.subformula} {info.target_rule}")
            if (k0, k1) == (0, n):
                np.testing.assert_array_equal(block[..., 0], reference[:, i0:i1, 0])
        rules.add(info.target_rule)
    if mode == "soft-unbounded" and text.startswith("G"):
        assert rules == {"first", "any", "last", "self"}


def test_dtypes_cast_features_not_the_model():
    compiled = compiled_case("(a S b) S (Y c)", "a,b,c", "soft-scaled", 512)
    ids = np.random.default_rng(3).integers(0, 3, (2, 512))
    truth = label_positions(compiled.formula, ids, compiled.alphabet)
    assert (evaluate(compiled, ids, "float64").predictions == truth).all()
    assert (evaluate(compiled, ids, "float32").predictions == truth).all()
    assert not (evaluate(compiled, ids, "bfloat16").predictions == truth).all()  # i/n and (i+1)/n coincide in bf16
    assert all(p.dtype == torch.float32 for p in compiled.model.parameters())
    with pytest.raises(ValueError, match="exceed length=512"):
        evaluate(compiled, np.zeros((1, 513), dtype=int))


def test_float64_keeps_unbounded_scores_exact_where_fp32_rounds():
    """Soft-unbounded X scores grow as (i+1)^2: past 2^24 fp32 rounds them by more than the gap 1/2."""
    compiled = compiled_case("X a", "a,b", "soft-unbounded", None)
    ids = np.random.default_rng(0).integers(0, 2, (1, 6000))
    truth = label_positions(compiled.formula, ids, compiled.alphabet)
    assert not (evaluate(compiled, ids, "float32").predictions == truth).all()
    assert (evaluate(compiled, ids, "float64").predictions == truth).all()


def test_construct_dtype_reaches_the_features(capsys):
    argv = ["construct", "--formula", "a S b", "--alphabet", "a,b,c", "--mode", "soft-scaled", "--lengths", "600",
            "--words", "2", "--json", "--dtype"]
    assert softhard([*argv, "bfloat16"]) == 0 and softhard([*argv, "float64"]) == 0
    bf16, fp64 = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert bf16["accuracy"] < 1 and bf16["max_offtarget_mass"] > 0.1
    assert fp64["accuracy"] == 1.0 and fp64["max_offtarget_mass"] < 1e-3 and fp64["dtype"] == "float64"


def test_critical_factor_bisects_in_log_scale():
    calls = []

    def below(limit):
        def exact(c):
            calls.append(c)
            return c <= limit
        return exact

    found = critical_factor(below(7.3), True, steps=12)
    assert 7.3 / 1.001 < found <= 7.3 and len(calls) == 2 + 12
    assert 0.02 / 1.01 < critical_factor(below(0.02), False, steps=10) <= 0.02
    assert critical_factor(below(1e-9), False, steps=10) is None
    assert critical_factor(below(1e9), True, steps=10) == C_MAX


SWEEP = ["--formula", "(a S b) S (Y c)", "--alphabet", "a,b,c", "--lengths", "8,64,512", "--dtypes",
         "float32,bfloat16", "--words", "1", "--steps", "6", "--seed", "0"]


def test_sweep_writes_csv_and_figures_and_bf16_breaks_first(tmp_path):
    assert sweep([*SWEEP, "--out", str(tmp_path / "a")]) == 0
    assert sweep([*SWEEP[:5], "64,8", *SWEEP[6:], "--out", str(tmp_path / "b")]) == 0
    text = (tmp_path / "a" / "sweep.csv").read_text()
    again = (tmp_path / "b" / "sweep.csv").read_text().splitlines()
    assert sorted(again) == sorted(line for line in text.splitlines() if line.split(",")[0] in ("length", "8", "64"))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["critical_temperature.png", "offtarget_mass.png",
                                                                  "sweep.csv"]
    rows = {(int(r["length"]), r["dtype"]): r for r in csv.DictReader(text.splitlines())}
    assert len(rows) == 6
    for (n, dtype), row in rows.items():
        breaks = dtype == "bfloat16" and n > 256  # 1/n below bf16's spacing 2^-8 just below 1
        assert row["resolvable"] == str(not breaks) and row["exact_in_range"] == str(not breaks), (n, dtype)
        assert row["theory_exact"] == str(not breaks)
        if breaks:
            assert row["critical_tau"] == "" and float(row["theory_offtarget_mass"]) > 0.1
        else:  # the theory temperature is sufficient, and conservative: eps = 1e-3 is far below the MLP's 3/8
            assert float(row["critical_tau"]) >= float(row["theory_tau"]) and float(row["critical_factor"]) > 2
            assert float(row["theory_offtarget_mass"]) < 1e-3
    assert float(rows[512, "float32"]["theory_tau"]) < float(rows[64, "float32"]["theory_tau"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--formula", "#a % 2 = 0", "--alphabet", "a,b"], "Modulo"),
        (["--formula", "a & !b", "--alphabet", "a,b"], "no attention head"),
        (["--formula", "a S", "--alphabet", "a,b"], "offset 3"),
        (["--formula", "Y a", "--alphabet", "a,b", "--device", "cuda"], "cuda"),
    ],
)
def test_sweep_errors_are_one_message_and_write_nothing(tmp_path, capsys, argv, message):
    code = sweep([*argv, "--lengths", "4", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    if "cuda" in argv and "error" not in err:
        pytest.skip("a CUDA device is present")
    assert code == 2 and message in err and "Traceback" not in err and err.startswith("softhard sweep: error:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--lengths", "8,0"), ("--lengths", "8,x"), ("--dtypes", "float32,fp8"),
                                         ("--words", "0")])
def test_sweep_rejects_bad_arguments(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        sweep(["--formula", "Y a", "--alphabet", "a,b", flag, value, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and value.split(",")[-1] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
