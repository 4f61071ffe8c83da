"""analysis.probes: linear probes of the residual stream against the construction's layers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.dummy import DummyClassifier

from softhard.analysis.probes import (
    PROBE_COLUMNS,
    construction_layers,
    default_lengths,
    fit_probe,
    plot_probes,
    probe_markdown,
    probe_model,
    probe_runs,
    residual_streams,
    sample_words,
    subformula_truth,
    word_folds,
)
from softhard.analysis.runs import RunFolder
from softhard.data.alphabet import Alphabet
from softhard.data.language import Language
from softhard.data.ltl import parse
from softhard.data.ltl.evaluate import truth_tables
from softhard.models import Transformer, TransformerConfig
from softhard.models.compiler import compile_formula

FORMULA = "Y (a S b) & O c | #a > #b"  # local, temporal (two levels), counting and Boolean subformulas
ALPHABET = Alphabet(("a", "b", "c"))


@pytest.fixture(scope="module")
def hard():
    formula = parse(FORMULA)
    compiled = compile_formula(formula, ALPHABET, mode="hard")
    words = sample_words(Language(formula, ALPHABET), [3, 8, 14], per_label=25, seed=0)
    return compiled, words


def test_construction_layers_match_the_compiled_residual_stream(hard):
    compiled, words = hard
    layers, note = construction_layers(compiled.formula, ALPHABET)
    assert note == ""
    assert layers["a"] == 0 and layers["a S b"] == 1 and layers["O c"] == 1
    assert layers["Y (a S b)"] == 2 and layers["#a > #b"] == 2 and layers[str(compiled.formula)] == 2
    for info in compiled.heads:  # a head of block l writes its subformula into hidden_states[l + 1]
        assert layers[info.subformula] == info.layer + 1
    # the independent oracle: from its construction layer on, each subformula is an exact 0/1 coordinate
    for ids in words:
        hidden = compiled.model(torch.as_tensor(ids)).hidden_states
        for node, truth in truth_tables(compiled.formula, ids, ALPHABET).items():
            column = compiled.residual_layout[str(node)]
            for layer in range(layers[str(node)], len(hidden)):
                assert torch.equal(hidden[layer][..., column], torch.as_tensor(truth, dtype=torch.float32)), node


def test_probes_read_every_subformula_exactly_from_its_construction_layer_on(hard):
    compiled, words = hard
    table = probe_model(compiled.model, compiled.formula, ALPHABET, words, seed=0)
    assert list(table.columns) == list(PROBE_COLUMNS)
    assert set(table.subformula) == {str(node) for node in compiled.formula.subformulas()}
    assert (table.note == "").all()
    built = table[table.layer >= table.construction_layer]
    assert (built.accuracy == 1.0).all(), built[built.accuracy < 1]
    # before it, `a S b` is no function of the current symbol: the embedding cannot hold it
    assert table[(table.subformula == "a S b") & (table.layer == 0)].accuracy.iloc[0] < 1.0
    assert table.n_train.iloc[0] + table.n_test.iloc[0] == sum(ids.size for ids in words)
    assert (table.folds == 5).all() and (built.accuracy_std == 0).all()
    assert table.depth[table.subformula == "Y (a S b)"].iloc[0] == 2


def test_words_are_split_whole_into_folds():
    groups = np.repeat(np.arange(10), 4)
    folds = word_folds(groups, 5)
    assert len(folds) == 5
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test]) and len(train) + len(test) == len(groups)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(groups)))  # each once
    assert len(word_folds(np.repeat([0, 1, 2], 2), 5)) == 3  # no more folds than words
    with pytest.raises(ValueError, match="2 distinct words"):
        word_folds(np.zeros(5))


def test_probe_lengths_spread_over_the_training_lengths_and_beyond():
    assert default_lengths(20) == [1, 7, 14, 20, 21, 27, 34, 40]  # np.linspace(1, 20, 4), (21, 40, 4), rounded
    assert default_lengths(2) == [1, 2, 3, 4]


def test_the_spread_is_the_standard_deviation_over_folds():
    # a random untrained model: probe accuracies differ between folds; recompute one by hand
    formula = parse("a S b")
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=3, n_layers=1, n_heads=2, d_model=8, d_ff=16))
    words = sample_words(Language(formula, ALPHABET), [4, 6], per_label=10, seed=1)
    table = probe_model(model, formula, ALPHABET, words, folds=3)
    row = table[(table.subformula == "a S b") & (table.layer == 1)].iloc[0]
    features, groups = residual_streams(model, words)
    y = subformula_truth(formula, ALPHABET, words)[formula]
    accuracies = [fit_probe(features[1], y, train, test, 0) for train, test in word_folds(groups, 3)]
    assert row.folds == 3 and row.accuracy == pytest.approx(np.mean(accuracies))
    assert row.accuracy_std == pytest.approx(np.std(accuracies, ddof=1)) and row.accuracy_std > 0


def test_unsupported_and_constant_subformulas_are_noted():
    formula = parse("(#a % 17 = 0) | (a & true)")  # modulus 17: no construction; `true` is constant
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=2, n_layers=1, n_heads=2, d_model=8, d_ff=16))
    words = sample_words(Language(formula, Alphabet(("a", "b"))), [4, 6], per_label=10, seed=1)
    table = probe_model(model, formula, "a,b", words)
    assert table.construction_layer.isna().all()
    assert table.note.str.contains("no construction").all() and table.note.str.contains("modulus 17").all()
    constant = table[table.subformula == "true"]
    assert constant.accuracy.isna().all() and constant.note.str.contains("constant").all()
    probed = table[table.subformula != "true"].accuracy
    assert probed.between(0, 1).all() and len(probed) == 2 * 4  # the embedding and one block, 4 subformulas


def test_tiny_grid_probes(tiny_grid, tmp_path):
    runs = [RunFolder(tiny_grid / name) for name in ("since_ab-fixed-seed0", "majority-fixed-seed0")]
    shutil.copytree(runs[0].path, tmp_path / "broken")
    shutil.rmtree(tmp_path / "broken" / "checkpoints")
    runs.append(RunFolder(tmp_path / "broken"))
    with pytest.warns(UserWarning, match="no checkpoint"):
        table = probe_runs(runs, words_per_length=6)
    assert len(table.attrs["skipped"]) == 1 and table.run.nunique() == 2
    # one row, recomputed from the checkpoint on the words probe_runs samples (train length 5):
    # the probe of the formula on the last stream, and sklearn's majority-class baseline
    run = runs[0]
    words = sample_words(Language(run.formula, run.alphabet), default_lengths(5), per_label=6, seed=0)
    features, groups = residual_streams(run.load_model(), words)
    y = subformula_truth(run.formula, run.alphabet, words)[run.formula]
    folds = word_folds(groups)
    [row] = table[(table.run == run.name) & (table.subformula == str(run.formula)) & (table.layer == 2)].itertuples()
    assert row.accuracy == pytest.approx(np.mean([fit_probe(features[2], y, train, test, 0) for train, test in folds]))
    majority = [DummyClassifier(strategy="most_frequent").fit(features[0][train], y[train]).score(features[0][test], y[test])
                for train, test in folds]
    assert row.baseline == pytest.approx(np.mean(majority)) and row.folds == len(folds)
    layers = table.drop_duplicates("subformula").set_index("subformula").construction_layer
    assert layers["a S b"] == 1 and layers["#a > #b"] == 2 and layers["a"] == 0
    assert set(table.layer) == {0, 1, 2}  # the embedding and two blocks
    figure = plot_probes(table)  # one panel per configuration, a legend entry per subformula
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert len(figure.legends[0].get_texts()) == table.subformula.nunique()
    assert "a S b" in probe_markdown(table)
