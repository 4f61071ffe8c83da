"""Linear probes: which layer of a trained model's residual stream holds each subformula's truth?

For fresh words of the run's language (both labels, lengths spread across the training lengths
and across the bin beyond them, exact samplers of data.language), every residual stream
``hidden_states[l]`` (l = 0: the embedding, l >= 1: after block l - 1) is read at every
position, and a logistic-regression probe (standardised features, scikit-learn, liblinear)
per layer and subformula predicts the subformula's truth there (data.ltl truth tables). The
words are split k-fold (GroupKFold, grouped by word: a probe never sees a test word), and the
accuracy is the mean over the folds with their standard deviation as its spread. Next to each
accuracy: the majority-class baseline and the *construction layer*, the first residual stream
in which the compiled hard construction (models.compiler) holds the subformula as an exact 0/1
coordinate: 0 for local subformulas (token embedding), l + 1 for a subformula computed by the
heads or the MLP of block l.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from softhard.analysis.length_generalization import configuration_labels
from softhard.analysis.runs import RUN, RunFolder, RunSkipped, map_runs, name_runs
from softhard.data.alphabet import Alphabet, as_alphabet
from softhard.data.language import Language
from softhard.data.ltl.evaluate import truth_tables
from softhard.data.ltl.syntax import Formula
from softhard.models.compiler.layout import plan
from softhard.models.compiler.validation import validate
from softhard.models.transformer import Transformer

WORDS_PER_LENGTH = 16  # words per label (positive, negative) and length
LENGTHS_PER_BIN = 4  # default_lengths: lengths spread evenly over each bin
FOLDS = 5  # k of the grouped k-fold split of the words
MAX_ITER = 2000  # logistic regression iterations (liblinear)
THRESHOLD = 0.99  # probe_markdown: accuracy that counts as "decoded"
PANELS_PER_ROW = 3  # plot_probes: runs side by side

# One row per (layer, subformula) of probe_model / probe_table:
PROBE_COLUMNS = (
    "layer",  # residual stream index: 0 = embedding, l = after block l - 1
    "subformula",  # its text, as str(node) and the compiler's residual_layout
    "depth",  # temporal nesting depth (data.ltl Formula.depth; counts and comparisons add none)
    "accuracy",  # probe accuracy on the positions of the test words, mean over the folds (NaN: not probed, see note)
    "accuracy_std",  # its standard deviation over the folds (ddof 1): the spread
    "folds",  # folds probed (a fold whose training words hold one class is left out)
    "baseline",  # accuracy of always answering the training words' majority class, mean over the folds
    "construction_layer",  # first residual stream holding it in the hard construction (NaN: none)
    "n_train", "n_test",  # positions in the train and test words, mean over the folds
    "note",  # why a value is missing ("" when nothing is)
)


# ---------------------------------------------------------------------------- inputs
def sample_words(language: Language, lengths: Sequence[int], per_label: int, seed: int) -> list[np.ndarray]:
    """Distinct words per length, up to ``per_label`` members and as many non-members
    (Language.sample_both): one (B, n) array per length."""
    return [np.unique(language.sample_both(length, per_label, seed), axis=0) for length in lengths]


def construction_layers(formula: Formula, alphabet) -> tuple[dict[str, int], str]:
    """({subformula text: construction layer}, note): the residual stream index from which the
    hard construction holds each subformula (models.compiler.layout.plan: local nodes in the
    embedding, nodes of block l after it); ({}, reason) when the compiler has no construction."""
    try:
        validate(formula, as_alphabet(alphabet), "hard", None)
    except NotImplementedError as error:
        return {}, "no construction: " + " ".join(str(error).split())
    layout = plan(formula, "hard")
    layers = {str(node): 0 for node in layout.local}
    for block, (attention, boolean) in enumerate(zip(layout.attention, layout.boolean)):
        layers.update({str(node): block + 1 for node in attention + boolean})
    return layers, ""


@torch.no_grad()
def residual_streams(model: Transformer, words: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """(features, word): per residual stream a (positions, d_model) array over every position of
    every word, and each position's word index (the groups of the train/test split)."""
    model.eval()
    per_layer, groups, first = [[] for _ in range(len(model.blocks) + 1)], [], 0
    for ids in words:
        B, n = ids.shape
        hidden = model(torch.as_tensor(ids, dtype=torch.long)).hidden_states  # n_layers + 1 of (B, n, d)
        for layer, h in enumerate(hidden):
            per_layer[layer].append(h.reshape(B * n, -1).float().numpy())
        groups.append(np.repeat(first + np.arange(B), n))
        first += B
    return [np.concatenate(f) for f in per_layer], np.concatenate(groups)


def subformula_truth(formula: Formula, alphabet: Alphabet, words: Sequence[np.ndarray]) -> dict[Formula, np.ndarray]:
    """Every subformula's truth at every position of the words, flattened as residual_streams."""
    tables = [truth_tables(formula, ids, alphabet) for ids in words]
    return {node: np.concatenate([t[node].reshape(-1) for t in tables]) for node in formula.subformulas()}


# ---------------------------------------------------------------------------- probes
def word_folds(groups: np.ndarray, folds: int = FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) position indices of a grouped k-fold split: whole words on each side (no
    word's positions leak), every word in one test fold; k = min(folds, distinct words)."""
    words = len(np.unique(groups))
    if words < 2:
        raise ValueError("probes need at least 2 distinct words to split into train and test")
    return list(GroupKFold(n_splits=min(folds, words)).split(groups, groups=groups))


def fit_probe(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> float:
    """Test accuracy of a standardised logistic-regression probe trained on rows ``train``."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear", max_iter=MAX_ITER, random_state=seed))
    probe.fit(X[train], y[train])
    return float(probe.score(X[test], y[test]))


def probe_model(model: Transformer, formula: Formula, alphabet, words: Sequence[np.ndarray], seed: int = 0,
                folds: int = FOLDS) -> pd.DataFrame:
    """PROBE_COLUMNS of any model (a trained or a compiled one) on words: (B, n) id arrays.

    Subformulas constant on the words, or on the training words of every fold, are not probed
    (accuracy NaN, note says so); a formula without construction gets construction_layer NaN.
    """
    alphabet = as_alphabet(alphabet)
    features, groups = residual_streams(model, words)
    splits = word_folds(groups, folds)
    layers, construction_note = construction_layers(formula, alphabet)
    rows = []
    for node, y in subformula_truth(formula, alphabet, words).items():
        usable = [(train, test) for train, test in splits if y[train].min() != y[train].max()]
        note = ("constant on the sampled words: not probed" if y.min() == y.max() else
                "one class in the training words of every fold: not probed" if not usable else "")
        baseline = np.mean([(y[test] == (y[train].mean() >= 0.5)).mean() for train, test in usable or splits])
        for layer, X in enumerate(features):
            accuracy = np.array([fit_probe(X, y, train, test, seed) for train, test in usable] if not note else [np.nan])
            rows.append({
                "layer": layer, "subformula": str(node), "depth": node.depth,
                "accuracy": accuracy.mean(), "accuracy_std": accuracy.std(ddof=1) if len(accuracy) > 1 else np.nan,
                "folds": 0 if note else len(usable), "baseline": float(baseline),
                "construction_layer": layers.get(str(node), np.nan),
                "n_train": np.mean([len(train) for train, _ in splits]),
                "n_test": np.mean([len(test) for _, test in splits]),
                "note": "; ".join(filter(None, [note, construction_note])),
            })
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS))


def default_lengths(train_length: int, per_bin: int = LENGTHS_PER_BIN) -> list[int]:
    """Lengths spread evenly over two bins: the training lengths 1..L and the bin beyond them,
    L+1..2L (L = train_length), ``per_bin`` each (fewer where a bin is shorter)."""
    bins = ((1, train_length), (train_length + 1, 2 * train_length))
    return sorted({int(n) for lo, hi in bins for n in np.linspace(lo, hi, per_bin).round()})


def probe_table(run: RunFolder, words_per_length: int = WORDS_PER_LENGTH, lengths: Sequence[int] | None = None,
                seed: int = 0) -> pd.DataFrame:
    """PROBE_COLUMNS of a run's trained model on fresh words of its language.

    lengths: word lengths to sample (default: default_lengths of the train max length);
    words_per_length: per label and length. Raises RunSkipped without checkpoint, train length or words.
    """
    if lengths is None:
        lengths = default_lengths(run.train_length("not probed; pass lengths"))
    model = run.load_model()
    words = sample_words(Language(run.formula, run.alphabet, run.language), lengths, words_per_length, seed)
    if sum(len(ids) for ids in words) < 2:
        raise RunSkipped(f"{run.path}: the language of `{run.formula}` has fewer than 2 words of lengths {list(lengths)}")
    return probe_model(model, run.formula, run.alphabet, words, seed)


def probe_runs(runs, words_per_length: int = WORDS_PER_LENGTH, lengths: Sequence[int] | None = None,
               seed: int = 0) -> pd.DataFrame:
    """probe_table of many runs (RunFolders or paths), with their settings; unusable runs are
    skipped with a warning (``attrs["skipped"]``)."""
    return map_runs(lambda run: probe_table(run, words_per_length, lengths, seed), runs, PROBE_COLUMNS, "probes")


# ---------------------------------------------------------------------------- figure and summary
def plot_probes(table: pd.DataFrame) -> Figure:
    """Probe accuracy by layer, one panel per configuration, one colour per subformula: the mean
    over the seeds probed with a band from the lowest to the highest (dotted: the majority
    baseline), a star at its construction layer. The legend names each subformula once."""
    table = table.assign(configuration=configuration_labels(table))
    configurations = list(dict.fromkeys(table.configuration))
    subformulas = list(dict.fromkeys(table.subformula))
    colours = {subformula: f"C{k % 10}" for k, subformula in enumerate(subformulas)}
    columns = min(PANELS_PER_ROW, len(configurations))
    rows_of_panels = -(-len(configurations) // columns)
    figure = Figure(figsize=(4.2 * columns + 1.8, 3.2 * rows_of_panels), layout="constrained")
    axes = figure.subplots(rows_of_panels, columns, squeeze=False, sharey=True).ravel()
    for ax in axes[len(configurations):]:
        ax.set_axis_off()
    for ax, configuration in zip(axes, configurations):
        rows = table[table.configuration == configuration]
        curves = rows.groupby(["subformula", "layer"], sort=False).agg(
            mean=("accuracy", "mean"), low=("accuracy", "min"), high=("accuracy", "max"),
            baseline=("baseline", "mean"), construction_layer=("construction_layer", "first"))
        for subformula, curve in curves.groupby(level="subformula", sort=False):
            curve, colour = curve.droplevel("subformula").sort_index(), colours[subformula]
            ax.plot(curve.index, curve["mean"], "-o", color=colour, markersize=3, label=subformula)
            ax.fill_between(curve.index, curve.low, curve.high, color=colour, alpha=0.15, linewidth=0)
            ax.plot(curve.index, curve.baseline, ":", color=colour, alpha=0.5)
            built = curve[curve.index == curve.construction_layer]
            ax.plot(built.index, built["mean"], "*", color=colour, markersize=12)
        seeds = rows[RUN].nunique() if RUN in rows.columns else 1
        ax.set_title(f"{configuration or 'probes'} ({seeds} {'run' if seeds == 1 else 'runs'})", fontsize="small")
        ax.set(ylim=(0, 1.05))
        ax.set_xticks(sorted(rows.layer.unique()))
    figure.supxlabel("residual stream (0 = embedding)")
    figure.supylabel("probe accuracy (dotted: majority baseline)")
    handles = [ax.get_legend_handles_labels() for ax in axes[:len(configurations)]]
    labels = dict(pair for hs, ls in handles for pair in zip(ls, hs))  # one handle per subformula
    figure.legend(list(labels.values()), list(labels), loc="outside right upper", fontsize="x-small",
                  title="subformula (star: construction layer)", title_fontsize="x-small")
    return figure


def probe_markdown(table: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """One markdown row per (run,) subformula: construction layer, first layer whose probe reaches
    ``threshold``, accuracy at the construction layer and at the last layer, baseline."""
    if table.empty:
        return "(no probes)"
    keys = [c for c in (RUN,) if c in table.columns] + ["subformula"]
    rows = []
    for key, lines in table.groupby(keys, sort=False):
        lines = lines.sort_values("layer")
        reached = lines[lines.accuracy >= threshold]
        at_construction = lines[lines.layer == lines.construction_layer]
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "construction_layer": lines.construction_layer.iloc[0],
                     f"first layer >= {threshold:g}": reached.layer.min() if not reached.empty else np.nan,
                     "accuracy at construction": at_construction.accuracy.iloc[0] if not at_construction.empty else np.nan,
                     "accuracy at last layer": lines.accuracy.iloc[-1], "baseline": lines.baseline.iloc[0],
                     "note": lines.note.iloc[0]})
    return name_runs(pd.DataFrame(rows), table).to_markdown(index=False, floatfmt=".3g")
