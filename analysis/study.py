"""The reference study's results (docs/results.md) from the run folders of its grid.

    python -m softhard.analysis.study runs/grids/study --out docs/results
    softhard study runs/grids/study --out docs/results                   # the same

Reads every run folder under RUNS_DIR (the output folder of `softhard grid --grid
configs/grids/study.yaml`) and writes into --out:

* ``summary.csv``: one row per run (SUMMARY_COLUMNS, then ``acc_<test bin>`` per test bin):
  cell (the grid's named cell, from RUNS_DIR/grid.csv; else the run's configuration label:
  positional encoding, temperature and the other settings that vary), language, class (STUDY_CLASSES), seed, in-distribution string accuracy on the
  validation split, learned (>= LEARNED), breakdown length over the test bins, string
  accuracy as trained, hardened and by the gap rule at 10x and 100x the train length (from
  evaluation.csv) with HEAD_COUNTS (how many heads the hardened model switched and the gap rule
  re-tempered: a hardened curve equal to the as-trained one often means no head was matched), and
  the mean and smallest TV of the run's heads to their matched construction heads, and the
  smallest and largest of the heads' final temperatures (tau_min, tau_max: where a learned or
  annealed temperature ended);
* ``learned.{csv,md}`` and ``learned.png``: the fraction of runs that learned, per cell and class;
* ``generalization.{csv,md}`` and ``generalization.png``: per cell and class, over the runs that
  learned and over all, mean, std, max and count over runs of each accuracy beyond training;
* ``languages.{csv,md}``: per language and cell, runs that learned and mean accuracy in the
  longest test bin (the markdown a cell x language grid);
* ``mechanism.{csv,md}``, ``mechanism_heads.csv`` and ``mechanism.png``: over the runs that
  learned, the heads' TV to their construction heads and the three evaluations at 10x/100x;
* ``temperature.csv`` and ``temperature.png``: learned temperatures against the gap lemma's
  (runs with a learned temperature that learned), when there are any.

Accuracies are string (membership) accuracies throughout. Everything is computed by the
analysis/ functions (length_generalization, attention, temperature, evaluations); this module
only selects, joins and summarises.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from softhard.analysis import attention, length_generalization, temperature
from softhard.analysis.evaluate import ATTENTIONS
from softhard.analysis.evaluations import collect_evaluations
from softhard.analysis.runs import RUN, RunFolder, collect_runs, find_runs, map_runs
from softhard.data.registry import REGISTRY
from softhard.train.run_folder import last_logged, read_evaluation_table

METRIC = "string_accuracy"
LEARNED = 0.99  # in-distribution string accuracy at which a run counts as learned
FACTORS = (10, 100)  # evaluation lengths as multiples of the train length
# Question 4's classes; a language outside the study gets its registry class.
STUDY_CLASSES = {
    "last_a": "local", "ends_ab": "local",
    "since_ab": "tie-breaking", "since_nested": "tie-breaking", "tomita4": "tie-breaking",
    "first_a": "set-valued", "a_star_b_star": "set-valued", "tomita7": "set-valued", "request_response": "set-valued",
    "majority": "counting", "dyck1": "counting", "equal_count": "counting",
    "parity": "non-star-free", "even_length": "non-star-free",
}
CLASS_ORDER = ("local", "tie-breaking", "set-valued", "star-free", "counting", "non-star-free")
EVALUATED = [f"{a.replace('-', '_')}_{f}x" for f in FACTORS for a in ATTENTIONS]  # as_trained_10x, ...
# Of an evaluated run: its heads, the heads the hardened model switched to a hard kind (matched to a
# construction head), and the heads the gap rule gave a temperature (matched, with a positive gap) at each factor.
HEAD_COUNTS = ["heads", "hardened_heads", *[f"gap_rule_heads_{f}x" for f in FACTORS]]
SUMMARY_COLUMNS = ("run", "cell", "language", "class", "seed", "positional", "temperature", "mask",
                   "train_max_length", "in_distribution", "learned", "longest_length", "breakdown_length",
                   "breakdown_ratio", *EVALUATED, *HEAD_COUNTS, "mean_tv", "min_tv", "tau_min", "tau_max",
                   "run_dir")


def language_class(language: str) -> str:
    known = REGISTRY.get(language)
    return STUDY_CLASSES.get(language, known.kind if known else "?")


def grid_cells(runs_dir: Path) -> dict[str, str]:
    """run_dir (resolved) -> cell, from the grid's table RUNS_DIR/grid.csv ({} without one or without cells)."""
    table = runs_dir / "grid.csv"
    if not table.is_file():
        return {}
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {str(Path(row["run_dir"]).resolve()): row["cell"] for row in rows if row.get("cell")}


# ---------------------------------------------------------------------------- one row per run
def run_summary(runs_dir, threshold: float = length_generalization.DEFAULT_THRESHOLD,
                mechanism: bool = True, learned: float = LEARNED) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """summary.csv's table, the matched heads of the runs that learned, and the skipped runs' reasons."""
    runs_dir = Path(runs_dir)
    runs, skipped = find_runs(runs_dir)
    if not runs:
        raise ValueError(f"no run folder under {runs_dir}: " + "; ".join(skipped or ["empty"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = collect_runs(runs)
        skipped += table.attrs["skipped"]
        rows = length_generalization.final_rows(table, METRIC)
        breakdown = length_generalization.breakdown_length(table, threshold, METRIC)
    cells = grid_cells(runs_dir)
    summary = _per_run(rows, breakdown[breakdown["curve"] == "seed"], cells, learned)
    bins = rows.groupby([RUN, "split"])[METRIC].mean().unstack("split")
    bins = bins[sorted(bins.columns, key=lambda split: rows.loc[rows["split"] == split, "length"].min())]
    summary = summary.join(bins.add_prefix("acc_"), on=RUN)
    summary = summary.join(_evaluated(runs, summary, skipped), on=RUN)
    heads = _matched_heads([RunFolder(Path(r)) for r in summary.loc[summary["learned"], RUN]], skipped) \
        if mechanism else pd.DataFrame(columns=[RUN, "tv"])
    summary["mean_tv"] = summary[RUN].map(heads.groupby(RUN)["tv"].mean() if len(heads) else {})
    summary["min_tv"] = summary[RUN].map(heads.groupby(RUN)["tv"].min() if len(heads) else {})
    ordered = [*SUMMARY_COLUMNS, *[c for c in summary.columns if c.startswith("acc_")]]
    order = {"class": CLASS_ORDER, "cell": list(dict.fromkeys(cells.values()))}  # the grid file's cell order
    return summary[ordered].sort_values(["class", "language", "cell", "seed"], key=lambda c: _in_order(c, order)) \
        .reset_index(drop=True), heads, skipped


def _per_run(rows: pd.DataFrame, breakdown: pd.DataFrame, cells: dict, learned: float) -> pd.DataFrame:
    first = rows.drop_duplicates(RUN).set_index(RUN)
    validation = length_generalization.validation_accuracy(rows).set_index(RUN)[METRIC]
    mask = first["model.transformer.mask"] if "model.transformer.mask" in first.columns else pd.Series(
        _masks(first.index), index=first.index)
    summary = pd.DataFrame({
        "run": first["run"],
        "cell": [cells.get(str(Path(r).resolve()), label) for r, label in
                 zip(first.index, length_generalization.configuration_labels(first))],
        "language": first["language"], "class": first["language"].map(language_class), "seed": first["seed"],
        "positional": first["positional"], "temperature": first["temperature"], "mask": mask,
        "train_max_length": first["train_max_length"],
        "in_distribution": validation.reindex(first.index),
    }, index=first.index)
    summary["learned"] = summary["in_distribution"] >= learned
    taus = pd.DataFrame([_final_temperatures(run_dir) for run_dir in summary.index], index=summary.index)
    summary["tau_min"], summary["tau_max"] = taus[0], taus[1]
    broke = breakdown.set_index(RUN)
    summary["longest_length"] = broke["longest_length"]
    summary["breakdown_length"] = broke["breakdown_length"]
    summary["breakdown_ratio"] = broke["ratio"]
    return summary.rename_axis(RUN).reset_index()


def _final_temperatures(run_dir) -> tuple[float, float]:
    """The smallest and largest of the heads' last logged temperatures (tau_h times any schedule, before
    a length factor; metrics.jsonl's temperature/*): where a learned temperature ended up."""
    last = last_logged(run_dir, "temperature/")
    taus = last.drop("step").astype(float) if last is not None else pd.Series(dtype=float)
    return (taus.min(), taus.max()) if len(taus.dropna()) else (np.nan, np.nan)


def _masks(run_dirs) -> list[str]:
    """Every run's mask (config.yaml) when no column carries it (all runs share it)."""
    return [str(RunFolder(Path(r)).config.get("model", {}).get("transformer", {}).get("mask", "none"))
            for r in run_dirs]


def _evaluated(runs: list[RunFolder], summary: pd.DataFrame, skipped: list[str]) -> pd.DataFrame:
    """Per run: string accuracy of each attention setting at FACTORS x its train length and HEAD_COUNTS (NaN
    where not evaluated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        evaluations = collect_evaluations(runs)
    # A run that did not learn lacks evaluation.csv on purpose (the study's grid evaluates the runs that learned).
    learned = [str(run_dir) for run_dir in summary.loc[summary["learned"], RUN]]
    skipped += [reason for reason in evaluations.attrs["skipped"] if reason.startswith(tuple(f"{r}:" for r in learned))]
    result = pd.DataFrame(index=pd.Index(summary[RUN], name=RUN), columns=[*EVALUATED, *HEAD_COUNTS], dtype=float)
    if evaluations.empty:
        return result
    train = summary.set_index(RUN)["train_max_length"]
    for factor in FACTORS:
        at = evaluations[evaluations["length"] == factor * evaluations[RUN].map(train)]
        table = at.pivot_table(index=RUN, columns="attention", values=METRIC, aggfunc="mean")
        for setting in table.columns:
            result.loc[table.index, f"{setting.replace('-', '_')}_{factor}x"] = table[setting]
    for run_dir in evaluations[RUN].unique():
        result.loc[run_dir, HEAD_COUNTS] = _head_counts(read_evaluation_table(run_dir), train[run_dir])
    return result


def _head_counts(evaluation: pd.DataFrame, train_length: int) -> list[float]:
    """HEAD_COUNTS of one evaluation.csv: heads (from its kinds), heads hard in its hardened rows, and heads
    with a gap-rule temperature (a finite tau_L<l>H<h>) at each factor (NaN where that row is missing)."""
    def row(attention: str, length: int):
        rows = evaluation[(evaluation["attention"] == attention) & (evaluation["length"] == length)]
        return rows.iloc[0] if len(rows) else None

    any_row = evaluation.iloc[0]
    heads = len(str(any_row["kinds"]).split())
    hardened = next((r for r in (row("hardened", f * train_length) for f in FACTORS) if r is not None), None)
    counts = [heads, np.nan if hardened is None else
              sum(not kind.endswith("=softmax") for kind in str(hardened["kinds"]).split())]
    taus = [c for c in evaluation.columns if c.startswith("tau_")]
    for factor in FACTORS:
        gap = row("gap-rule", factor * train_length)
        counts.append(np.nan if gap is None else float(gap[taus].notna().sum()))
    return counts


def _matched_heads(runs: list[RunFolder], skipped: list[str]) -> pd.DataFrame:
    """analysis.attention.best_matches of every run (its heads' TV to their matched construction heads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        heads = map_runs(attention.best_matches, runs, ("layer", "head", "tv"), "mechanism")
    skipped += heads.attrs["skipped"]
    return heads


def _in_order(column: pd.Series, order: dict) -> pd.Series:
    """A sort key: the position in order[column's name] where it names one (unknown values last, by name)."""
    known = order.get(column.name)
    if not known:
        return column
    rank = {value: i for i, value in enumerate(known)}
    return pd.Series([(rank.get(v, len(rank)), str(v)) for v in column], index=column.index)


# ---------------------------------------------------------------------------- tables per question
def spread(frame: pd.DataFrame, keys: list[str], quantities: list[str]) -> pd.DataFrame:
    """Per group of ``keys``: <quantity>_mean, _std (ddof=1), _max and _n (runs with a value)."""
    grouped = frame.groupby(keys, dropna=False, sort=False)[quantities]
    table = grouped.agg(["mean", "std", "max", "count"])
    table.columns = [f"{q}_{'n' if s == 'count' else s}" for q, s in table.columns]
    return table.reset_index()


def learned_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per cell and class: runs, runs that learned, the fraction."""
    table = summary.groupby(["cell", "class"], sort=False).agg(runs=("learned", "size"),
                                                               learned=("learned", "sum")).reset_index()
    table["fraction"] = table["learned"] / table["runs"]
    return table


def generalization_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per cell, class and subset (learned: the runs that learned; all: every run): spread of the accuracy
    per test bin, the breakdown ratio and the evaluations at 10x and 100x."""
    quantities = [c for c in summary.columns if c.startswith("acc_")] + ["breakdown_ratio", *EVALUATED]
    parts = [spread(summary[summary["learned"]], ["cell", "class"], quantities).assign(runs="learned"),
             spread(summary, ["cell", "class"], quantities).assign(runs="all")]
    table = pd.concat(parts, ignore_index=True)
    return table[["cell", "class", "runs", *[c for c in table.columns if c not in ("cell", "class", "runs")]]]


def mechanism_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Over the runs that learned, per cell and class: the mean and smallest TV of the heads to their
    construction heads, as trained / hardened / gap rule at 10x and 100x, and the heads hardened and
    re-tempered (HEAD_COUNTS)."""
    return spread(summary[summary["learned"]], ["cell", "class"], ["mean_tv", "min_tv", *EVALUATED, *HEAD_COUNTS[1:]])


def language_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per language and cell (the literature's comparisons are per language): runs, runs that learned,
    mean in-distribution accuracy, mean accuracy in the longest test bin over all runs and over the runs
    that learned, and the mean evaluations at 100x (evaluated runs)."""
    longest = [c for c in summary.columns if c.startswith("acc_")][-1]
    grouped = summary.assign(longest_learned=summary[longest].where(summary["learned"])) \
        .groupby(["language", "class", "cell"], sort=False)
    table = grouped.agg(runs=("learned", "size"), learned=("learned", "sum"),
                        in_distribution=("in_distribution", "mean"), longest_bin=(longest, "mean"),
                        longest_bin_learned=("longest_learned", "mean"),
                        **{column: (column, "mean") for column in EVALUATED if column.endswith("_100x")})
    return table.reset_index().rename(columns={"longest_bin": longest, "longest_bin_learned": f"{longest}_learned"})


def language_markdown(table: pd.DataFrame) -> str:
    """language_table as a cell x language grid: "learned/runs · mean accuracy in the longest test bin"."""
    longest = next(c for c in table.columns if c.startswith("acc_") and not c.endswith("_learned"))
    text = table["learned"].astype(int).astype(str) + "/" + table["runs"].astype(str) + " · " + \
        table[longest].map(lambda value: "–" if pd.isna(value) else f"{value:.2f}")
    grid = table.assign(text=text).pivot(index="cell", columns="language", values="text")
    grid = grid.reindex(index=list(dict.fromkeys(table["cell"])), columns=list(dict.fromkeys(table["language"])))
    return (f"Runs that learned / runs · mean string accuracy in the longest test bin ({longest.removeprefix('acc_')}) "
            f"over all runs.\n\n" + grid.reset_index().to_markdown(index=False) + "\n")


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A table as markdown, floats rounded; "mean ± std (max m, n k)" cells for spread's columns."""
    shown = table.copy()
    for quantity in [c[:-5] for c in table.columns if c.endswith("_mean")]:
        columns = [f"{quantity}_{s}" for s in ("mean", "std", "max", "n")]
        shown[quantity] = [_cell(*values, digits) for values in table[columns].itertuples(index=False)]
        shown = shown.drop(columns=columns)
    return shown.to_markdown(index=False, floatfmt=f".{digits}f")


def _cell(mean, std, top, count, digits: int) -> str:
    if pd.isna(mean):
        return f"– (n {count:.0f})"
    std = "" if pd.isna(std) else f" ± {std:.{digits}f}"
    return f"{mean:.{digits}f}{std} (max {top:.{digits}f}, n {count:.0f})"


# ---------------------------------------------------------------------------- figures
def plot_learned(table: pd.DataFrame) -> Figure:
    """The fraction of runs that learned: cells (rows) by classes (columns)."""
    grid = table.pivot(index="cell", columns="class", values="fraction").reindex(list(dict.fromkeys(table["cell"])))
    grid = grid[[c for c in CLASS_ORDER if c in grid.columns] + [c for c in grid.columns if c not in CLASS_ORDER]]
    longest = max((len(str(cell)) for cell in grid.index), default=0)
    figure = Figure(figsize=(1.4 * grid.shape[1] + 0.08 * longest + 2.5, 0.4 * grid.shape[0] + 1.5),
                    layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    axes.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black",
                      fontsize="small")
    figure.colorbar(image, ax=axes, label="fraction learned")
    return figure


def cell_colours(cells: pd.Series) -> dict:
    """cell -> a colour of tab20, in the cells' order of appearance (distinct for up to 20 cells)."""
    palette = colormaps["tab20"]
    return {cell: palette(k % palette.N) for k, cell in enumerate(dict.fromkeys(cells))}


def plot_generalization(summary: pd.DataFrame, runs: str = "learned") -> Figure:
    """One panel per class: mean string accuracy per test bin, one line per cell (``runs``: learned or all)."""
    chosen = summary[summary["learned"]] if runs == "learned" else summary
    bins = [c for c in summary.columns if c.startswith("acc_")]
    classes = [c for c in CLASS_ORDER if c in set(summary["class"])] + sorted(set(summary["class"]) - set(CLASS_ORDER))
    figure = Figure(figsize=(4.2 * len(classes) + 3, 3.8), layout="constrained")
    *panels, key = figure.subplots(1, len(classes) + 1, squeeze=False, sharey=True,
                                   width_ratios=[1] * len(classes) + [0.7])[0]
    key.axis("off")  # the legend's column
    colours = cell_colours(summary["cell"])  # one colour per cell in every panel (13 cells: beyond C0-C9)
    for axes, name in zip(panels, classes):
        means = chosen[chosen["class"] == name].groupby("cell", sort=False)[bins].mean()
        for cell, row in means.iterrows():
            axes.plot(range(len(bins)), row.to_numpy(dtype=float), marker=".", label=cell, color=colours[cell])
        axes.set_xticks(range(len(bins)), [b.removeprefix("acc_test_").replace("_", "-") for b in bins], rotation=45,
                        fontsize="x-small")
        axes.set_title(f"{name} ({runs} runs)")
        axes.set_ylim(0, 1.02)
    panels[0].set_ylabel("string accuracy (mean over runs)")
    figure.supxlabel("test bin (word lengths)")
    handles = {label: handle for axes in panels for handle, label in zip(*axes.get_legend_handles_labels())}
    if handles:
        key.legend(list(handles.values()), list(handles), loc="center left", fontsize="x-small")
    return figure


def plot_mechanism(summary: pd.DataFrame) -> Figure:
    """Over the runs that learned, per cell (a row of bars): mean string accuracy as trained, hardened and by
    the gap rule, at 10x and 100x the train length (a panel each)."""
    learned = summary[summary["learned"]]
    cells = list(dict.fromkeys(learned["cell"]))
    figure = Figure(figsize=(11, 1.2 + 0.45 * max(len(cells), 1)), layout="constrained")
    panels = figure.subplots(1, len(FACTORS), squeeze=False, sharey=True)[0]
    for axes, factor in zip(panels, FACTORS):
        columns = [f"{a.replace('-', '_')}_{factor}x" for a in ATTENTIONS]
        means = learned.groupby("cell", sort=False)[columns].mean().reindex(cells)
        positions = np.arange(len(cells))
        for k, (setting, column) in enumerate(zip(ATTENTIONS, columns)):
            axes.barh(positions + (k - 1) * 0.27, means[column].to_numpy(dtype=float), height=0.27, label=setting)
        axes.set_yticks(positions, cells, fontsize="small")
        axes.set_title(f"{factor}x the train length (learned runs)", fontsize="medium")
        axes.set_xlim(0, 1.02)
        axes.set_xlabel("string accuracy")
    panels[0].invert_yaxis()  # the first cell on top (shared by both panels)
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(ATTENTIONS),
                  fontsize="small")
    return figure


# ---------------------------------------------------------------------------- the command
def write_results(runs_dir, out, threshold: float = length_generalization.DEFAULT_THRESHOLD,
                  mechanism: bool = True, learned: float = LEARNED) -> list[Path]:
    """Every file of docs/results/ (see the module docstring) from the runs under ``runs_dir``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file")
    summary, heads, skipped = run_summary(runs_dir, threshold, mechanism, learned)
    out.mkdir(parents=True, exist_ok=True)
    written = [_csv(summary, out / "summary.csv")]
    if len(heads):
        written.append(_csv(heads, out / "mechanism_heads.csv"))
    for name, table in (("learned", learned_table(summary)), ("generalization", generalization_table(summary)),
                        ("mechanism", mechanism_table(summary))):
        written += [_csv(table, out / f"{name}.csv"), _text(markdown(table), out / f"{name}.md")]
    languages = language_table(summary)
    written += [_csv(languages, out / "languages.csv"), _text(language_markdown(languages), out / "languages.md")]
    figures = {"learned": plot_learned(learned_table(summary)), "generalization": plot_generalization(summary),
               "generalization_all": plot_generalization(summary, "all"), "mechanism": plot_mechanism(summary)}
    learned_tau = [RunFolder(Path(r)) for r in summary.loc[summary["learned"] & (summary["temperature"] == "learned"),
                                                         RUN]]
    if learned_tau:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            taus = temperature.temperature_runs(learned_tau)
        skipped += taus.attrs["skipped"]
        if len(taus):
            written.append(_csv(taus, out / "temperature.csv"))
            figures["temperature"] = temperature.plot_temperature(taus)
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=110)
        written.append(out / f"{name}.png")
    if skipped:
        written.append(_text("\n".join(dict.fromkeys(skipped)) + "\n", out / "skipped.txt"))
    return written


def _csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def _text(text: str, path: Path) -> Path:
    path.write_text(text)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softhard study", description="The reference study's tables and figures "
                                     "(docs/results/) from its grid's run folders.")
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="the grid's output folder, e.g. runs/grids/study")
    parser.add_argument("--out", default="docs/results", help="output folder (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=length_generalization.DEFAULT_THRESHOLD,
                        help="accuracy below which a curve has broken down (default: %(default)s)")
    parser.add_argument("--learned", type=float, default=LEARNED,
                        help="in-distribution string accuracy at which a run counts as learned (default: %(default)s)")
    parser.add_argument("--no-mechanism", action="store_true",
                        help="skip matching heads to constructions (the slowest part)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.threshold <= 1:
            raise ValueError(f"--threshold {args.threshold} is not in (0, 1]")
        if not 0 <= args.learned <= 1:
            raise ValueError(f"--learned {args.learned} is not in [0, 1]")
        if not Path(args.runs_dir).is_dir():
            raise ValueError(f"RUNS_DIR {args.runs_dir} is not a folder")
        written = write_results(args.runs_dir, args.out, args.threshold, not args.no_mechanism, args.learned)
    except ValueError as error:
        print(f"softhard study: {error}", file=sys.stderr)
        return 2
    print(f"softhard study: wrote {len(written)} files into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
