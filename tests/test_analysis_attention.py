"""analysis.attention: learned heads against the compiled constructions of the same formula.

The oracle: a fake run folder whose saved attention IS a compiled model's attention (written in
the AttentionCaptureCallback format, padded batches of mixed lengths). Every learned head must
then find its own construction head, with target mass 1 and TV 0 (hard) or mass >= 1 - eps
(soft-scaled).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from softhard.analysis import attention as att
from softhard.analysis.runs import RunFolder, RunSkipped
from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.models.compiler import compile_formula

# Four heads, two per layer, every slot used, pairwise different target sets: S (last), F (any),
# then Y (i - 1) and X (i + 1) on top.
ORACLE = "Y(a S b) & X(F c)"
ALPHABET = "a,b,c"
# validation: lengths 1..6, two words each; one test bin of longer words; 8 words per batch file.
SPLITS = {"validation": [n for n in range(1, 7) for _ in range(2)], "test_7_12": list(range(7, 13))}


def write_fake_run(folder: Path, formula: str, alphabet: str, mode: str = "hard", seed: int = 0,
                   attention: bool = True) -> RunFolder:
    """A run folder whose probe attention is the compiled model's own (train/callbacks.py format)."""
    folder.mkdir(parents=True)
    symbols = alphabet.split(",")
    (folder / "run_info.json").write_text(json.dumps(
        {"language": f"fake-{mode}", "formula": formula, "alphabet": symbols, "seed": seed}))
    if not attention:
        return RunFolder(folder)
    longest = max(max(lengths) for lengths in SPLITS.values())
    model = compile_formula(parse(formula), alphabet, mode, longest).model
    rng = np.random.default_rng(seed)
    for split, lengths in SPLITS.items():
        for index, start in enumerate(range(0, len(lengths), 8)):
            batch = lengths[start:start + 8]
            T = max(batch)
            ids = np.zeros((len(batch), T), dtype=np.int64)
            truth = np.zeros((len(batch), T), dtype=bool)
            for row, n in enumerate(batch):
                ids[row, :n] = rng.integers(len(symbols), size=n)
                truth[row, :n] = label_positions(parse(formula), ids[row:row + 1, :n], Alphabet(symbols))[0]
            input_ids, lengths_t = torch.from_numpy(ids), torch.tensor(batch)
            with torch.no_grad():
                output = model(input_ids, lengths_t, return_attention=True)
            (folder / "attention" / split).mkdir(parents=True, exist_ok=True)
            torch.save({"input_ids": input_ids, "lengths": lengths_t, "truth": torch.from_numpy(truth),
                        "attention": [a.float() for a in output.attention],
                        "scores": [s.float() for s in output.scores]},
                       folder / "attention" / split / f"batch_{index:03d}.pt")
    return RunFolder(folder)


def own(table: pd.DataFrame) -> pd.Series:
    """Rows pairing a learned head with the construction head of the same slot."""
    return (table["layer"] == table["c_layer"]) & (table["head"] == table["c_head"])


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fake_runs")
    return {
        "hard": write_fake_run(out / "oracle-hard", ORACLE, ALPHABET, "hard"),
        "soft": write_fake_run(out / "oracle-soft", ORACLE, ALPHABET, "soft-scaled", seed=1),
        "majority": write_fake_run(out / "majority-hard", "#a > #b", "a,b", "hard", seed=2),
        "parity": write_fake_run(out / "parity", "#a % 2 = 0", "a,b", attention=False),
        "no_attention": write_fake_run(out / "since-no-attention", ORACLE, ALPHABET, attention=False),
    }


def test_pair_statistics_by_hand():
    # one word of length 2, one learned head, one construction head (strict past, target = last key)
    attention = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]])  # (K=1, n=2, 3)
    targets = torch.tensor([[[True, False, False], [False, True, False]]])
    pattern = targets.double()
    stats = att.pair_statistics(attention, targets, pattern)
    assert stats["target_mass"][0, 0] == pytest.approx((1.0 + 0.5) / 2)
    assert stats["tv"][0, 0] == pytest.approx((0.0 + 0.5) / 2)
    assert stats["entropy"][0] == pytest.approx((0.0 + math.log(2)) / 2)
    assert stats["max_weight"][0] == pytest.approx(0.75)


def test_hard_oracle_finds_every_head(fake_runs):
    run = fake_runs["hard"]
    compiled = att.construction_for(run)
    assert [(h.layer, h.head) for h in compiled.heads] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    best = att.best_matches(run)
    assert len(best) == 4
    assert (best[["layer", "head"]].to_numpy() == best[["c_layer", "c_head"]].to_numpy()).all()
    np.testing.assert_allclose(best.target_mass, 1.0, atol=1e-6)
    np.testing.assert_allclose(best.tv, 0.0, atol=1e-6)
    np.testing.assert_allclose(best.max_weight, 1.0, atol=1e-6)  # one-hot rows
    np.testing.assert_allclose(best.entropy, 0.0, atol=1e-6)
    assert (best.margin > 0.05).all()  # the heads are told apart, not tied
    assert (best.words == sum(len(v) for v in SPLITS.values())).all()

    heads = att.match_heads(run)
    assert len(heads) == 4 * 4
    others = heads[~own(heads)]
    assert (others.tv > 0.05).all()


def test_soft_scaled_oracle_mass(fake_runs):
    run = fake_runs["soft"]
    best = att.best_matches(run)
    assert (best[["layer", "head"]].to_numpy() == best[["c_layer", "c_head"]].to_numpy()).all()
    eps = att.construction_for(run, "soft-scaled", length=12).epsilon
    assert (best.target_mass >= 1 - eps).all()
    by_length = att.attention_by_length(run)
    mine = by_length[own(by_length)]
    assert sorted(mine.length.unique()) == list(range(1, 13))
    assert (mine.target_mass >= 1 - eps).all()
    # softmax spreads F's weight over all its targets: far from the one-hot hard pattern, not on Y
    tv = mine.groupby("subformula").tv.max()
    assert tv["F c"] > 0.1 and tv["Y (a S b)"] < 2 * eps


def test_counting_oracle(fake_runs):
    run = fake_runs["majority"]
    heads = att.match_heads(run)
    operators = set(heads.operator)
    assert operators == {"#", "compare"}
    mine = heads[own(heads)]
    assert len(mine) == 3  # #a, #b, the sign head; slot (1, 1) is unused by the construction
    np.testing.assert_allclose(mine.target_mass, 1.0, atol=1e-6)
    np.testing.assert_allclose(mine.tv, 0.0, atol=1e-6)
    best = att.best_matches(run).set_index(["layer", "head"])
    # the two count heads attend alike (uniform over the past): a tie, reported as margin 0
    assert best.loc[(0, 1), "target_mass"] == pytest.approx(1.0) and best.loc[(0, 1), "margin"] == pytest.approx(0)


@pytest.mark.slow
def test_tiny_grid_majority_and_side_by_side(tiny_grid):
    run = RunFolder(tiny_grid / "majority-fixed-seed0")
    best = att.best_matches(run)
    assert len(best) == 4 and set(best.operator) <= {"#", "compare"}
    assert np.isfinite(best[list(att.STATISTICS)].to_numpy()).all()
    assert best.target_mass.between(0, 1).all()
    figure = att.plot_side_by_side(run, word=1, split="test_6_10", matches=best)
    assert isinstance(figure, Figure) and len(figure.axes) == 3 * len(best)
    assert figure.axes[0].get_xticklabels()[0].get_text() == "sink"
    with pytest.raises(ValueError, match="out of range"):
        att.plot_side_by_side(run, word=99, matches=best)


@pytest.mark.slow
def test_tiny_grid_by_length_refuses_mixed_formulas(tiny_grid):
    with pytest.warns(UserWarning, match="differs from `a S b`"):
        table = att.compare_runs(tiny_grid, table="length")  # the formula of most runs: a S b
    assert set(table.formula) == {"a S b"} and table.run.nunique() == 4
    assert set(table.temperature) == {"fixed", "log_n"}
    [message] = table.attrs["skipped"]
    assert "`#a > #b`" in message and "`a S b`" in message and "\n" not in message

    assert table.length.max() > 5  # beyond the training lengths
    assert np.isfinite(table[list(att.STATISTICS)].to_numpy()).all()
    assert table.target_mass.between(0, 1).all() and table.tv.between(0, 1).all()
    assert (table.entropy >= 0).all() and table.max_weight.between(0, 1).all()
    assert len(table.groupby(["run", "layer", "head", "c_layer", "c_head"])) == 4 * 4  # 2 x 2 heads vs one S head
    figure = att.plot_match_by_length(table)
    assert isinstance(figure, Figure) and len(figure.axes[0].lines) == 4 * 4

    asked = att.compare_runs(tiny_grid, table="best", formula="#a > #b")
    assert set(asked.run) == {"majority-fixed-seed0"} and len(asked.attrs["skipped"]) == 4


def test_unsupported_and_missing_attention_are_skipped(fake_runs):
    with pytest.raises(RunSkipped, match=r"#a % 2 = 0.*Modulo") as error:
        att.construction_for(fake_runs["parity"])
    assert "\n" not in str(error.value)
    with pytest.raises(RunSkipped, match="no saved attention"):
        att.match_heads(fake_runs["no_attention"])
    runs = [fake_runs["parity"], fake_runs["hard"], fake_runs["no_attention"]]
    with pytest.warns(UserWarning, match="skipped"):
        table = att.compare_runs(runs)
    assert set(table.run) == {"oracle-hard"} and len(table.attrs["skipped"]) == 2
    assert isinstance(att.summary_markdown(table), str)


def test_construction_cache_and_soft_map(fake_runs):
    run = fake_runs["hard"]
    assert att.construction_for(run) is att.construction_for(run)
    soft = att.construction_for(run, "soft-scaled", length=5)
    ids = np.array([0, 1, 2, 0, 1])
    weights = att.compiled_attention(soft, ids)
    targets = att.target_sets(soft, ids)
    assert weights.shape == (4, 5, 6)
    assert ((weights * targets).sum(-1) >= 1 - soft.epsilon).all()
    hard = att.construction_for(run)
    with pytest.raises(RuntimeError, match="outside its declared target set"):
        att.hard_pattern(hard, ids, ~att.target_sets(hard, ids))
    pd.testing.assert_frame_equal(att.match_heads(run), att.aggregate(att.word_table(run)))
