"""`softhard report RUN_OR_GRID_DIR`: every analysis of a set of runs in one markdown/HTML report.

    softhard report runs/grids/study                      # report.md, report.html, figures, CSVs
    softhard report runs/a runs/b --out reports/ab --format md --probe-seeds 0

Sections: the runs; length generalization (summary over seeds, curves, breakdown lengths);
as trained, hardened and gap rule side by side where runs have evaluation.csv; then per formula: learned attention against the compiled constructions, effective
temperature against the gap lemma, and residual-stream probes. Every table behind the report
is also written as CSV next to it. Runs that one analysis cannot use (an unfinished run, no
saved attention, a formula without construction) are listed under "Skipped" with the reason;
the rest of the report is built regardless.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from softhard.analysis import attention, evaluations, length_generalization, probes, temperature
from softhard.analysis.document import FORMATS, Document
from softhard.analysis.runs import RUN, RunFolder, collect_runs, find_runs, other_settings

def build_report(paths, out_dir, fmt: str = "both", threshold: float = length_generalization.DEFAULT_THRESHOLD,
                 eps: float = temperature.EPS, probe_seeds: int | None = 1, title: str | None = None) -> list[Path]:
    """Analyse every run under ``paths`` and write the report into ``out_dir``; returns the report files.

    probe_seeds: probe the first k seeds of each configuration (probes are the slowest part and
    vary least between seeds); None: every run, 0: no probes.

    Raises ValueError when ``paths`` hold no readable run at all (naming why) or ``out_dir`` is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # found before the analysis, not after it
        raise ValueError(f"output folder {out_dir} is a file")
    with warnings.catch_warnings():  # skipped runs are reported in the document, not on stderr
        warnings.simplefilter("ignore", UserWarning)
        runs, skipped = find_runs(paths)
        if not runs:
            raise ValueError("no run to report on: " + "; ".join(skipped or [f"{paths}: empty"]))
        doc = Document(title or f"softhard report: {', '.join(str(p) for p in _as_list(paths))}", out_dir)
        table = collect_runs(runs)
        skipped += table.attrs["skipped"]
        _runs_section(doc, runs)
        if not table.empty:
            _length_section(doc, table, threshold)
        _evaluation_section(doc, runs, threshold)
        for formula, group in _by_formula(runs).items():
            doc.heading(f"Formula `{formula}`", 2)
            skipped += _attention_section(doc, group)
            skipped += _temperature_section(doc, group, eps)
            if probe_seeds != 0:
                skipped += _probe_section(doc, _first_seeds(group, probe_seeds))
    _skipped_section(doc, skipped)
    return doc.write(fmt)


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _by_formula(runs: list[RunFolder]) -> dict[str, list[RunFolder]]:
    groups: dict[str, list[RunFolder]] = {}
    for run in runs:
        groups.setdefault(run.info["formula"], []).append(run)
    return groups


def _runs_section(doc: Document, runs: list[RunFolder]) -> None:
    doc.heading("Runs")
    others = other_settings(runs)
    settings = pd.DataFrame([run.settings_with(others) for run in runs])
    settings = settings.drop(columns=["run_dir", "formula"])
    doc.text(f"{len(runs)} runs.")
    doc.table(settings)


def _length_section(doc: Document, table: pd.DataFrame, threshold: float) -> None:
    doc.heading("Length generalization")
    for metric in ("position_accuracy", "string_accuracy"):
        path, _ = length_generalization.write_summary(table, doc.out_dir, threshold=threshold, metric=metric)
        summary = length_generalization.summary_table(table, threshold=threshold, metric=metric)
        doc.heading(metric.replace("_", " "), 3)
        doc.text(f"Mean ± std (max) over seeds. In distribution: the validation split, words of the training "
                 f"lengths (its last val/{metric} in metrics.jsonl); then the test bins beyond them: accuracy at the "
                 f"longest test length, the mean over test lengths, and the breakdown length, the first test length "
                 f"below {threshold:g}. CSV: `{path.name}`.")
        doc.table(length_generalization.summary_display(summary))
        figure = length_generalization.plot_accuracy_curves(table, metric=metric, threshold=threshold)
        doc.figure(figure, f"accuracy_by_length_{metric}", f"{metric} by test length")
    length_generalization.accuracy_by_length(table, list(length_generalization.METRICS)) \
        .to_csv(doc.out_dir / "accuracy_by_length.csv", index=False)


def _evaluation_section(doc: Document, runs: list[RunFolder], threshold: float) -> None:
    """As trained, hardened and gap rule side by side, for the runs that have evaluation.csv (none: no section)."""
    table = evaluations.collect_evaluations(runs)
    if table.empty:
        return
    doc.heading("As trained, hardened, gap rule (`softhard evaluate`)")
    reach = evaluations.evaluation_reach(table, threshold)
    evaluations.evaluation_curves(table).to_csv(doc.out_dir / "evaluation_curves.csv", index=False)
    reach.to_csv(doc.out_dir / "evaluation_reach.csv", index=False)
    doc.text(f"String accuracy of the same weights as trained, with every matched head hardened to its construction "
             f"head's hard kind, and with the gap rule's temperature per head and length, on exactly sampled words "
             f"(evaluation.csv of {table[RUN].nunique()} runs). How far each reaches: the breakdown length, the first "
             f"evaluated length below {threshold:g} (never: not up to the longest), of the mean-over-seeds curve and "
             f"per seed. CSV: `evaluation_curves.csv`, `evaluation_reach.csv`.")
    keys = [c for c in length_generalization.config_columns(table) if c not in ("formula", "train_max_length")]
    shown = lambda values: ", ".join("never" if pd.isna(v) else f"{v:.0f}" for v in values)  # noqa: E731
    seeds = reach[reach["curve"] == "seed"].groupby([*keys, "attention"], dropna=False, sort=False)[
        "breakdown_length"].agg(shown).rename("per seed")
    mean = reach[reach["curve"] == "mean"].set_index([*keys, "attention"])
    summary = mean[["longest_length"]].assign(**{"mean curve": mean["breakdown_length"].map(lambda v: shown([v]))})
    doc.table(summary.join(seeds).reset_index())
    doc.figure(evaluations.plot_evaluation_curves(table, threshold=threshold), "evaluation_curves",
               "as trained, hardened and gap rule per configuration: mean over seeds (line), range (band), seeds (grey)")


def _attention_section(doc: Document, runs: list[RunFolder]) -> list[str]:
    doc.heading("Learned attention against the construction", 3)
    words = attention.compare_runs(runs, table="words", formula=runs[0].info["formula"])
    if words.empty:
        doc.text("No run of this formula has saved attention and a construction (see Skipped).")
        return words.attrs["skipped"]
    by_length = attention.aggregate(words, by=("split", "length"))
    best = attention.pick_best(attention.aggregate(words))
    best.to_csv(doc.out_dir / f"attention_best_{_tag(runs)}.csv", index=False)
    by_length.to_csv(doc.out_dir / f"attention_by_length_{_tag(runs)}.csv", index=False)
    doc.text("For each learned head, the construction head nearest to it: total-variation distance (TV) to that "
             "head's reference pattern (one-hot on the target of Y, X, S, U; uniform over the targets of O, H, F, G, "
             "counts and comparisons), the attention mass on its targets, the TV to the compiled hard model's own "
             "attention (tv_hard), entropy and max weight, averaged over probe words and seeds (TV 0 and mass 1: the "
             "head is the construction); margin: the runner-up construction head's TV minus the best's (0: a tie).")
    keys = _configuration(best)
    summary = best.groupby(keys + ["layer", "head"], sort=True, dropna=False).agg(
        best_match=("subformula", _most_common), seeds=(RUN, "nunique"), tv=("tv", "mean"),
        target_mass=("target_mass", "mean"), margin=("margin", "mean"), tv_hard=("tv_hard", "mean"),
        entropy=("entropy", "mean"), max_weight=("max_weight", "mean")).reset_index()
    doc.table(summary)
    doc.figure(attention.plot_match_by_length(by_length), f"attention_by_length_{_tag(runs)}",
               f"best match by length, mean and range over seeds per configuration ({by_length[RUN].nunique()} runs)")
    example = next(run for run in runs if str(run.path) in set(best.run_dir))
    longest = max((w for w in example.attention_words()), key=lambda w: len(w.ids))
    index = [len(w.ids) for w in example.attention_words(longest.split)].index(len(longest.ids))
    matches = best[best.run_dir == str(example.path)]
    doc.figure(attention.plot_side_by_side(example, word=index, split=longest.split, matches=matches),
               f"attention_maps_{_tag(runs)}", f"{example.name}: learned, compiled soft-scaled and compiled hard")
    return words.attrs["skipped"]


def _temperature_section(doc: Document, runs: list[RunFolder], eps: float) -> list[str]:
    doc.heading("Effective temperature against the gap lemma", 3)
    table = temperature.temperature_runs(runs, eps=eps)
    if table.empty:
        doc.text("No run of this formula has saved attention and a checkpoint (see Skipped).")
        return table.attrs["skipped"]
    extrapolation = temperature.extrapolate_table(table, eps=eps)
    table.to_csv(doc.out_dir / f"temperature_{_tag(runs)}.csv", index=False)
    extrapolation.to_csv(doc.out_dir / f"extrapolation_{_tag(runs)}.csv", index=False)
    doc.text(f"Per head: the raw score gap g (smallest over the queries of the longest probe words), the effective "
             f"temperature there, and the fraction of seeds whose head would stay hard (effective temperature <= "
             f"g / ln(n / eps), eps = {eps:g}) at 10x and 100x the train length, if g stays as measured. A head "
             f"that simulates a construction head (half its attention or more on that head's targets) is judged on "
             f"the target-set gap: its lowest score on the targets minus its highest elsewhere (gap_used "
             f"target_set); any other head on its top key against the second (top_second). Queries with no "
             f"competitor (only the sink, or every key a target) are left out. Per run and length, with the spread "
             f"inside the target set and the queries left out: `temperature_{_tag(runs)}.csv`.")
    if not extrapolation.empty:
        doc.table(_hard_fractions(extrapolation))
    doc.figure(temperature.plot_temperature(table, extrapolation), f"temperature_{_tag(runs)}",
               f"median and range over seeds per configuration ({table[RUN].nunique()} runs)")
    return table.attrs["skipped"] + extrapolation.attrs["skipped"]


def _hard_fractions(extrapolation: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and head: seeds, median gap, and the fraction of seeds hard at each factor."""
    keys = _configuration(extrapolation) + ["layer", "head", "temperature_mode", "gap_used"]
    hard = extrapolation.pivot_table(index=keys + [RUN], columns="factor", values="hard", aggfunc="first")
    hard.columns = [f"hard at {factor:g}x" for factor in hard.columns]
    longest = extrapolation.drop_duplicates(keys + [RUN])
    measured = longest.groupby(keys, dropna=False).agg(seeds=(RUN, "nunique"), gap=("gap", "median"),
                                                       measured_length=("measured_length", "max"))
    return measured.join(hard.groupby(level=keys, dropna=False).mean()).reset_index()


def _probe_section(doc: Document, runs: list[RunFolder]) -> list[str]:
    doc.heading("Probes of the residual stream", 3)
    table = probes.probe_runs(runs)
    if table.empty:
        doc.text("No run of this formula has a checkpoint (see Skipped).")
        return table.attrs["skipped"]
    table.to_csv(doc.out_dir / f"probes_{_tag(runs)}.csv", index=False)
    doc.text("Test accuracy of a logistic-regression probe for each subformula's truth on each residual stream "
             "(0 = embedding), on words spread over the training lengths and the bin beyond them, grouped k-fold by "
             "word: the mean over folds and seeds probed, next to the stream at which the construction has computed "
             f"it. Per run, with the spread over folds (accuracy_std): `probes_{_tag(runs)}.csv`.")
    keys = _configuration(table) + ["subformula", "construction_layer"]
    accuracy = table.groupby(keys + ["layer"], dropna=False).accuracy.mean().unstack("layer")
    accuracy.columns = [f"stream {layer}" for layer in accuracy.columns]
    baseline = table.groupby(keys, dropna=False).baseline.mean()
    doc.table(accuracy.join(baseline).reset_index())
    doc.figure(probes.plot_probes(table), f"probes_{_tag(runs)}",
               f"probe accuracy by stream (star: construction layer), mean and range over {table[RUN].nunique()} runs")
    return table.attrs["skipped"]


def _first_seeds(runs: list[RunFolder], k: int | None) -> list[RunFolder]:
    """The runs of the k smallest seeds of each configuration (all runs when k is None)."""
    if k is None:
        return runs
    kept: dict[tuple, list[RunFolder]] = {}
    others = other_settings(runs)
    for run in sorted(runs, key=lambda run: (run.settings["seed"] is None, run.settings["seed"] or 0, run.name)):
        configuration = tuple(str(value) for key, value in run.settings_with(others).items()
                              if key not in ("run", "seed", "run_dir"))
        kept.setdefault(configuration, [])
        if len(kept[configuration]) < k:
            kept[configuration].append(run)
    return [run for group in kept.values() for run in group]


def _skipped_section(doc: Document, skipped: list[str]) -> None:
    unique = list(dict.fromkeys(skipped))
    if unique:
        doc.heading("Skipped")
        doc.text("\n".join(f"- {message}" for message in unique))


def _configuration(table: pd.DataFrame) -> list[str]:
    """The columns that tell configurations of one formula apart (length_generalization.config_columns)."""
    return [c for c in length_generalization.config_columns(table) if c not in ("language", "formula")]


def _tag(runs: list[RunFolder]) -> str:
    return runs[0].language


def _most_common(values: pd.Series) -> str:
    return values.mode().iloc[0]


def _fraction(closed: bool):
    """An argparse type: a number in (0, 1] (closed) or (0, 1)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 < value < 1 or (closed and value == 1)):
            raise argparse.ArgumentTypeError(f"must be in (0, 1{']' if closed else ')'}, got {text!r}")
        return value

    return parse


def parse_probe_seeds(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of seeds or 'all', got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softhard report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, grid folders, or folders holding them")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <first path>/report)")
    parser.add_argument("--format", choices=FORMATS, default="both", help="report.md, report.html or both")
    parser.add_argument("--threshold", type=_fraction(closed=True),
                        default=length_generalization.DEFAULT_THRESHOLD,
                        help="accuracy below which a run has broken down (default: %(default)s)")
    parser.add_argument("--eps", type=_fraction(closed=False), default=temperature.EPS,
                        help="the gap lemma's tolerance in the required temperature g / ln(n/eps) (default: %(default)s)")
    parser.add_argument("--probe-seeds", type=parse_probe_seeds, default=1,
                        help="probe the first k seeds of each configuration: an integer, 0 for no probes, or 'all' "
                             "(default: %(default)s; probes are the slowest part)")
    args = parser.parse_args(argv)
    out = args.out or args.paths[0] / "report"
    try:
        files = build_report(args.paths, out, fmt=args.format, threshold=args.threshold, eps=args.eps,
                             probe_seeds=args.probe_seeds)
    except (ValueError, OSError) as error:  # bad input, or an output folder that cannot be written
        print(f"softhard report: error: {error}", file=sys.stderr)
        return 2
    for file in files:
        print(f"softhard report: wrote {file}")
    return 0
