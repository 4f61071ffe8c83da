"""`softhard frontier`: the largest temperature at which a soft-scaled construction stays exact, against n.

(`softhard sweep`, its name before, stays an alias for one release.)

    softhard frontier --formula "(a S b) S (Y (c U a))" --alphabet a,b,c --lengths 16,256,4096,100000 \\
        --dtypes float32,bfloat16 --out runs/sweep --device cuda --words 4 --seed 0

For each length n the formula is compiled in soft-scaled mode for n; its heads' temperatures
tau_h(n) are the theory's (gap / log((n + 1) / eps), operators.py) and tau(n) = min_h tau_h(n).
For each dtype every head's temperature is multiplied by one factor c (logit scale 1/c), and the
largest c at which the model is still exact (right at every position of every sampled word:
``--words`` members and ``--words`` non-members, sampled as `softhard construct` does) is found
in log c: c = 1 (the theory) first, then a bracket by factors of 4 (up while exact, down while
not, inside [C_MIN, C_MAX] = [1/256, 65536]), then ``--steps`` bisection steps. Exactness is taken to be monotone
in c (a lower temperature only moves attention closer to the hard targets); each test stops at
the first wrong word. Every evaluation runs through ``blocked.evaluate``, in memory linear in n.

Writes under ``--out`` (each file to a temporary name first, then renamed):
  sweep.csv                 one row per (length, dtype), columns below
  critical_temperature.png  critical tau vs n, log-log, per dtype; theory tau(n) dashed; an x at
                            tau(n) where a dtype is never exact, a dotted line at n = 1/spacing
  offtarget_mass.png        the largest off-target attention mass at the theory temperature vs n
  frontier.csv              the per-head frontier (``frontier.py``; not with ``--no-per-head``):
                            each head's own largest exact factor, the others at the theory's
  frontier_<family>.png     per operator family (tie-breaking, set-valued, comparison): critical
                            tau per head against n, with the two predicted laws as lines

Columns of sweep.csv:
  length                 n: the words' length and the n the temperatures are compiled for
  dtype                  float32 | bfloat16 | float64 (weights, embeddings, i/n features cast to it)
  words                  words evaluated (members + non-members)
  theory_tau             tau(n) = min over heads of tau_h(n)
  theory_exact           exact at c = 1 (which the theory guarantees in exact arithmetic)
  theory_accuracy        per-position accuracy at c = 1
  theory_offtarget_mass  the largest attention mass outside a head's hard targets at c = 1
  critical_factor        c*: the largest factor found exact; empty when no c in [C_MIN, C_MAX] is
  critical_tau           c* tau(n): the critical temperature of the tightest head; empty likewise
  exact_in_range         some c in [C_MIN, C_MAX] is exact; False: the dtype breaks at this n
  score_gap              the tightest head's score gap: 1/(2n) for the i/n tie-break (Y X S U,
                         comparisons), 1/2 when no head needs positions
  feature_spacing        the dtype's spacing just below 1 (finfo.eps / 2): the resolution of i/n
  resolvable             BETA * feature_spacing <= score_gap, the analytic check: neighbouring i/n
                         values (1/n apart, BETA/n = 1/(2n) in score units) stay apart in the dtype
  evaluations            model evaluations the search used
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from softhard.data.files import write_atomically
from softhard.data.language import Language
from softhard.models.compiler.blocked import DTYPES, evaluate
from softhard.models.compiler.cli import add_word_arguments, at_least, language_of
from softhard.models.compiler.compiled import CompiledModel
from softhard.models.compiler.compiling import compile_formula
from softhard.models.compiler.frontier import COLUMNS as FRONTIER_COLUMNS
from softhard.models.compiler.frontier import critical_factor, plot_families, run_frontier
from softhard.models.compiler.operators import BETA, EPSILON

COLUMNS = ("length", "dtype", "words", "theory_tau", "theory_exact", "theory_accuracy", "theory_offtarget_mass",
           "critical_factor", "critical_tau", "exact_in_range", "score_gap", "feature_spacing", "resolvable",
           "evaluations")


def sweep_point(compiled: CompiledModel, ids: np.ndarray, truth: np.ndarray, dtype: str, device: str,
                steps: int) -> dict:
    """One row of sweep.csv: the theory temperature's accuracy and off-target mass, and c*."""
    evaluations = 0

    def exact(factor: float) -> bool:  # word by word, stopping at the first wrong one
        nonlocal evaluations
        evaluations += 1
        return all((evaluate(compiled, ids[b : b + 1], dtype, device, tau_factor=factor).predictions == truth[b]).all()
                   for b in range(len(ids)))

    theory = evaluate(compiled, ids, dtype, device, offtarget=True)
    right = theory.predictions == truth
    factor = critical_factor(exact, bool(right.all()), steps)
    tau = min(info.tau for info in compiled.heads)
    gap = min(info.gap for info in compiled.heads)
    spacing = torch.finfo(DTYPES[dtype]).eps / 2
    return {
        "length": ids.shape[1], "dtype": dtype, "words": len(ids), "theory_tau": tau,
        "theory_exact": bool(right.all()), "theory_accuracy": float(right.mean()),
        "theory_offtarget_mass": float(theory.offtarget.max()),
        "critical_factor": factor, "critical_tau": None if factor is None else factor * tau,
        "exact_in_range": factor is not None, "score_gap": gap, "feature_spacing": spacing,
        "resolvable": BETA * spacing <= gap, "evaluations": evaluations + 1,
    }


def run_sweep(language: Language, lengths: list[int], dtypes: list[str], words: int, seed: int, device: str,
              steps: int) -> list[dict]:
    models = {n: compile_formula(language.formula, language.alphabet, mode="soft-scaled", length=n) for n in lengths}
    if not models[lengths[0]].heads:  # fail before the progress bar starts
        raise ValueError(f"{language.title} compiles to no attention head: nothing depends on the temperature")
    rows = []
    with tqdm(total=len(lengths) * len(dtypes), desc="sweep", unit="point") as progress:
        for length, compiled in models.items():
            ids = language.sample_both(length, words, seed)
            truth = language.label(ids)
            for dtype in dtypes:
                progress.set_postfix(length=length, dtype=dtype)
                rows.append(sweep_point(compiled, ids, truth, dtype, device, steps))
                progress.update()
    return rows


def write_csv(rows: list[dict], path: Path, columns=COLUMNS) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)

    write_atomically(path, write)


def plot(rows: list[dict], out: Path) -> None:
    """critical_temperature.png and offtarget_mass.png (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(row["dtype"] for row in rows))
    lengths = sorted({row["length"] for row in rows})
    theory = {row["length"]: row["theory_tau"] for row in rows}
    colors = dict(zip(dtypes, plt.rcParams["axes.prop_cycle"].by_key()["color"]))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(lengths, [theory[n] for n in lengths], "k--", label="theory tau(n)")
    for dtype in dtypes:
        mine = [row for row in rows if row["dtype"] == dtype]
        exact = [row for row in mine if row["exact_in_range"]]
        ax.plot([r["length"] for r in exact], [r["critical_tau"] for r in exact], "o-", color=colors[dtype],
                label=f"{dtype}: critical tau")
        broken = [row for row in mine if not row["exact_in_range"]]
        if broken:
            ax.plot([r["length"] for r in broken], [r["theory_tau"] for r in broken], "x", ms=10, mew=2,
                    color=colors[dtype], label=f"{dtype}: never exact")
        limit = 1.0 / mine[0]["feature_spacing"]  # i/n and (i+1)/n merge beyond this n
        if lengths[0] <= limit <= lengths[-1]:
            ax.axvline(limit, ls=":", color=colors[dtype], label=f"{dtype}: 1/n = spacing")
    _finish(fig, ax, out / "critical_temperature.png", ylabel="temperature of the tightest head",
            title="largest exact temperature vs theory")

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for dtype in dtypes:
        shown = [row for row in rows if row["dtype"] == dtype and row["theory_offtarget_mass"] > 0]
        ax.plot([r["length"] for r in shown], [r["theory_offtarget_mass"] for r in shown], "o-",
                color=colors[dtype], label=dtype)
    ax.axhline(EPSILON, ls=":", color="k", label="eps")
    _finish(fig, ax, out / "offtarget_mass.png", ylabel="largest off-target attention mass",
            title="off-target mass at the theory temperature")


def _finish(fig, ax, path: Path, ylabel: str, title: str) -> None:
    """Log-log axes against n, a legend, and the figure written atomically, then closed."""
    import matplotlib.pyplot as plt

    ax.set(xscale="log", yscale="log", xlabel="length n", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def _dtypes(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in DTYPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown dtype {', '.join(unknown)}; expected some of {', '.join(DTYPES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softhard frontier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_word_arguments(parser, lengths=[16, 256, 4096])
    parser.add_argument("--dtypes", type=_dtypes, default=["float32", "bfloat16"], help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--steps", type=at_least(0), default=10, help="bisection steps (default: %(default)s)")
    parser.add_argument("--no-per-head", dest="per_head", action="store_false",
                        help="skip the per-head frontier (frontier.csv, frontier_<family>.png)")
    args = parser.parse_args(argv)
    try:
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} is a file, not a folder")
        language = language_of(args)
        rows = run_sweep(language, args.lengths, args.dtypes, args.words, args.seed, args.device, args.steps)
        heads = []
        if args.per_head:
            with tqdm(total=len(args.lengths) * len(args.dtypes), desc="per-head frontier", unit="point") as progress:
                heads = run_frontier(language, args.lengths, args.dtypes, args.words, args.seed, args.device,
                                     args.steps, progress)
        args.out.mkdir(parents=True, exist_ok=True)
        plot(rows, args.out)
        figures = plot_families(heads, args.out, _finish)
        write_csv(rows, args.out / "sweep.csv")
        if args.per_head:
            write_csv(heads, args.out / "frontier.csv", FRONTIER_COLUMNS)
    except (ValueError, NotImplementedError, OSError) as error:
        print(f"softhard frontier: error: {error}", file=sys.stderr)
        return 2
    written = ["sweep.csv", "critical_temperature.png", "offtarget_mass.png"] + (["frontier.csv"] if args.per_head
                                                                                 else []) + figures
    print(f"wrote {', '.join(written)} under {args.out} ({len(rows)} + {len(heads)} rows)")
    return 0
