"""analysis.attention: learned heads against the compiled constructions of the same formula.

The oracle: a fake run folder whose saved attention IS a compiled model's attention (written in
the AttentionCaptureCallback format, padded batches of mixed lengths). Every learned head must
then find its own construction head: target mass 1 and TV 0 to the compiled hard attention (hard),
mass >= 1 - eps and TV <= 0.01 to the head's reference pattern (soft-scaled).
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

from hypothesis import HealthCheck, given, settings

from softhard.analysis import attention as att
from softhard.analysis.runs import RunFolder, RunSkipped
from softhard.data.alphabet import Alphabet
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import label_positions
from softhard.data.registry import REGISTRY
from softhard.models.compiler import compile_formula
from softhard.train.run_folder import write_attention_batch
from tests.formula_strategies import formulas

# Four heads, two per layer, every slot used, pairwise different target sets: S (last), F (any),
# then Y (i - 1) and X (i + 1) on top.
ORACLE = "Y(a S b) & X(F c)"
ALPHABET = "a,b,c"
# validation: lengths 1..6, two words each; one test bin of longer words; 8 words per batch file.
SPLITS = {"validation": [n for n in range(1, 7) for _ in range(2)], "test_7_12": list(range(7, 13))}
NUMPY_STATISTICS = ("target_mass", "tv", "entropy", "max_weight")  # recomputed on the tiny grid


def write_fake_run(folder: Path, formula: str, alphabet: str, mode: str = "hard", seed: int = 0,
                   attention: bool = True) -> RunFolder:
    """A run folder whose probe attention is the compiled model's own (train.run_folder's records)."""
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
            write_attention_batch(folder, split, index, input_ids, lengths_t, torch.from_numpy(truth),
                                  output.attention, output.attention_logits)
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
        "parity": write_fake_run(out / "parity", "#a % 17 = 0", "a,b", attention=False),  # modulus 17: no construction
        "no_attention": write_fake_run(out / "since-no-attention", ORACLE, ALPHABET, attention=False),
    }


def test_pair_statistics_by_hand():
    # one word of length 2, one learned head, two construction heads (strict past): a tie-breaking
    # head (target = last key) and a set-valued head (targets = both word keys at query 1)
    attention = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]])  # (K=1, n=2, 3)
    targets = torch.tensor([[[True, False, False], [False, True, False]],
                            [[True, False, False], [False, True, True]]])
    reference = att.reference_pattern(targets)
    assert reference[1, 1].tolist() == [0.0, 0.5, 0.5]  # uniform over the targets
    stats = att.pair_statistics(attention, targets, reference)
    assert stats["target_mass"][0, 0] == pytest.approx((1.0 + 0.5) / 2)
    assert stats["tv"][0, 0] == pytest.approx((0.0 + 0.5) / 2)
    assert stats["target_mass"][0, 1] == pytest.approx((1.0 + 0.5) / 2)
    assert stats["tv"][0, 1] == pytest.approx((0.0 + 0.5) / 2)  # 0.5 |(0.5, 0.5, 0) - (0, 0.5, 0.5)|
    assert (stats["tv_hard"] == stats["tv"]).all()  # no hard rows given: the reference
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
    np.testing.assert_allclose(best.tv_hard, 0.0, atol=1e-6)
    # tie-breaking heads are their one-hot reference; the hard F head picks the leftmost of its
    # targets, away from its average-hard reference
    tv = best.set_index("subformula").tv
    np.testing.assert_allclose(tv.drop("F c"), 0.0, atol=1e-6)
    assert tv["F c"] > 0.05
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
    # softmax spreads F's weight evenly over its targets: its average-hard reference, far from the
    # hard model's leftmost pick; Y's weight on its one target
    worst = mine.groupby("subformula")[["tv", "tv_hard"]].max()
    assert (worst.tv <= 0.01).all()
    assert worst.tv_hard["F c"] > 0.1 and worst.tv_hard["Y (a S b)"] < 2 * eps


def test_counting_oracle(fake_runs):
    run = fake_runs["majority"]
    heads = att.match_heads(run)
    operators = set(heads.operator)
    assert operators == {"#", "compare"}
    mine = heads[own(heads)]
    assert len(mine) == 3  # #a, #b, the sign head; slot (1, 1) is unused by the construction
    np.testing.assert_allclose(mine.target_mass, 1.0, atol=1e-6)
    np.testing.assert_allclose(mine.tv_hard, 0.0, atol=1e-6)
    best = att.best_matches(run).set_index(["layer", "head"])
    # the two count heads attend alike (uniform over the past): a tie, reported as margin 0
    assert best.loc[(0, 1), "target_mass"] == pytest.approx(1.0) and best.loc[(0, 1), "margin"] == pytest.approx(0)


def assert_matches_itself(run: RunFolder) -> None:
    """Every construction head of ``run`` (whose attention is a soft-scaled construction's) is
    within TV 0.01 of its own reference with mass >= 0.99, and its best match: itself, or a
    construction head with the very same reference on every probe word (a tie, margin 0)."""
    compiled = att.construction_for(run)
    heads = att.match_heads(run)
    mine = heads[own(heads)].set_index(["layer", "head"])
    assert len(mine) == len(compiled.heads)
    assert (mine.tv <= 0.01).all() and (mine.target_mass >= 0.99).all(), mine[["subformula", "tv", "target_mass"]]
    best = att.best_matches(run).set_index(["layer", "head"])
    references = {}
    for word in run.attention_words():
        _, reference, _ = att._hard_reference(compiled.formula, compiled.alphabet, tuple(word.ids.tolist()))
        for c, info in enumerate(compiled.heads):
            references.setdefault((info.layer, info.head), []).append(reference[c])
    for info in compiled.heads:
        match, slot = best.loc[(info.layer, info.head)], (info.layer, info.head)
        assert match.tv == pytest.approx(mine.loc[slot, "tv"], abs=1e-9), info.subformula
        other = (int(match.c_layer), int(match.c_head))
        if other != slot:  # a tie is only allowed between identical references
            assert all(torch.equal(a, b) for a, b in zip(references[slot], references[other])), info.subformula


@pytest.mark.parametrize("formula, alphabet", [("Y a & O b & #a > #b", "a,b"), ("H b | a S b", "a,b")])
def test_a_soft_scaled_construction_matches_itself(tmp_path, formula, alphabet):
    # the soft-scaled construction as the "learned" attention: every construction head (O, H, Y, S,
    # counts, the comparison's sign head) is within TV 0.01 of its own reference and is matched to
    # itself, or to a head with the same reference (the count heads #a and #b: margin 0)
    run = write_fake_run(tmp_path / "run", formula, alphabet, "soft-scaled")
    assert_matches_itself(run)
    best = att.best_matches(run)
    ties = best[best.margin == 0]
    assert set(ties.operator) <= {"#"}  # only the count heads tie


@pytest.mark.parametrize("name", [name for name, spec in REGISTRY.items() if "%" not in spec.formula])
def test_every_registry_construction_matches_itself(tmp_path, name):
    spec = REGISTRY[name]
    assert_matches_itself(write_fake_run(tmp_path / name, spec.formula, spec.alphabet, "soft-scaled"))


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(formula=formulas(max_leaves=6).filter(lambda f: "%" not in str(f)))
def test_random_constructions_match_themselves(tmp_path, formula):
    folder = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    assert_matches_itself(write_fake_run(folder, str(formula), "a,b,c", "soft-scaled"))


def recomputed_statistics(run: RunFolder, pairs: pd.DataFrame) -> pd.DataFrame:
    """The oracle for a real run: per probe word and (learned, construction) pair of ``pairs``,
    target_mass, tv, entropy and max_weight (query means) recomputed with numpy from the run's
    saved attention and the hard construction's target sets."""
    compiled = att.construction_for(run)
    slot = {(info.layer, info.head): index for index, info in enumerate(compiled.heads)}
    rows = []
    for number, word in enumerate(run.attention_words()):
        targets = att.target_sets(compiled, word.ids).numpy()  # (C, n, n+1)
        for pair in pairs.drop_duplicates(["layer", "head", "c_layer", "c_head"]).itertuples():
            A = np.asarray(word.attention[pair.layer][pair.head], dtype=np.float64)  # (n, n+1), rows sum to 1
            T = targets[slot[pair.c_layer, pair.c_head]]
            reference = T / T.sum(-1, keepdims=True)
            rows.append({"word": number, "split": word.split, "length": len(word.ids), "layer": pair.layer,
                         "head": pair.head, "c_layer": pair.c_layer, "c_head": pair.c_head,
                         "target_mass": (A * T).sum(-1).mean(), "tv": 0.5 * np.abs(A - reference).sum(-1).mean(),
                         "entropy": -(A * np.log(np.where(A > 0, A, 1.0))).sum(-1).mean(),
                         "max_weight": A.max(-1).mean()})
    return pd.DataFrame(rows)


def assert_recomputed(table: pd.DataFrame, recomputed: pd.DataFrame, by: list[str]) -> None:
    """``table``'s statistics are the means of ``recomputed`` over the words of each ``by`` group."""
    keys = [*by, "layer", "head", "c_layer", "c_head"]
    means = recomputed.groupby(keys).agg(**{name: (name, "mean") for name in NUMPY_STATISTICS},
                                         words=("word", "nunique")).reset_index()
    merged = table.merge(means, on=keys, suffixes=("", "_numpy"), validate="one_to_one")
    assert len(merged) == len(table) == len(means)
    # float64 sums of the same fp32 weights in another order
    for name in NUMPY_STATISTICS:
        np.testing.assert_allclose(merged[name], merged[f"{name}_numpy"], rtol=0, atol=1e-12, err_msg=name)
    assert (merged.words == merged.words_numpy).all()


def test_tiny_grid_majority_and_side_by_side(tiny_grid):
    run = RunFolder(tiny_grid / "majority-fixed-seed0")
    best = att.best_matches(run)
    assert len(best) == 4 and set(best.operator) <= {"#", "compare"}
    assert_recomputed(best, recomputed_statistics(run, best), by=[])
    figure = att.plot_side_by_side(run, word=1, split="test_6_10", matches=best)
    assert isinstance(figure, Figure) and len(figure.axes) == 3 * len(best)
    assert figure.axes[0].get_xticklabels()[0].get_text() == "sink"
    with pytest.raises(ValueError, match="out of range"):
        att.plot_side_by_side(run, word=99, matches=best)


def test_tiny_grid_by_length_refuses_mixed_formulas(tiny_grid):
    with pytest.warns(UserWarning, match="differs from `a S b`"):
        table = att.compare_runs(tiny_grid, table="length")  # the formula of most runs: a S b
    assert set(table.formula) == {"a S b"} and table.run.nunique() == 4
    assert set(table.temperature) == {"fixed", "log_n"}
    [message] = table.attrs["skipped"]
    assert "`#a > #b`" in message and "`a S b`" in message and "\n" not in message

    assert table.length.max() > 5  # beyond the training lengths
    for name, rows in table.groupby("run"):
        assert_recomputed(rows, recomputed_statistics(RunFolder(tiny_grid / name), rows), by=["split", "length"])
    assert len(table.groupby(["run", "layer", "head", "c_layer", "c_head"])) == 4 * 4  # 2 x 2 heads vs one S head
    figure = att.plot_match_by_length(table)
    # one panel per learned head (2 x 2); in each, two configurations (fixed, log_n) x (TV, mass):
    # the two seeds of a configuration are one mean line with a band, and the legend names configurations
    assert isinstance(figure, Figure) and len(figure.axes) == 4
    assert all(len(axes.lines) == 2 * 2 for axes in figure.axes)
    assert sorted(text.get_text() for text in figure.legends[0].get_texts()) == ["i/n, fixed", "i/n, log_n"]
    tv = figure.axes[0].lines[0].get_ydata()  # configuration "fixed", learned head L0H0
    with pytest.warns(UserWarning, match="differs"):
        best = att.compare_runs(tiny_grid, table="best")  # per run, on the means over all probe words
    expected = table.merge(best[["run_dir", *att.PAIR]]).query("temperature == 'fixed' and layer == 0 and head == 0") \
        .groupby("length").tv.mean()
    np.testing.assert_allclose(tv, expected.to_numpy())

    asked = att.compare_runs(tiny_grid, table="best", formula="#a > #b")
    assert set(asked.run) == {"majority-fixed-seed0"} and len(asked.attrs["skipped"]) == 4


def test_unsupported_and_missing_attention_are_skipped(fake_runs):
    with pytest.raises(RunSkipped, match=r"#a % 17 = 0.*modulus 17") as error:
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
