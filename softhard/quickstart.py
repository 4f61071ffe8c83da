"""`softhard quickstart`: a small slice of the reference study on a CPU in a few minutes.

Trains since_ab (a S b: star-free, rightmost attention) in two cells of the study
(configs/grids/study.yaml): ``nope_strict``, no positional encoding with strict-past masks (a
theory cell: such transformers recognize exactly LTL[past], Li and Cotterell 2025), and
``sinusoidal``, the standard baseline, on the same data and budget (both learn since_ab in
distribution at this budget: validation 1.000 and 0.994 at seed 0, where the i/n theory cell
``in_nlogn`` reached 0.974, docs/results.md); evaluates each up to 10x the train length (the test bins), then as trained and with its
heads hardened to their matched construction heads' hard kinds at 10x and 100x
(`softhard evaluate`); and writes the `softhard report` of the two runs (report.md and
report.html: validation accuracy beside the length curves, the as-trained and hardened curves
side by side, attention against the construction, temperatures, probes) into one folder.
Finished runs are reused and interrupted ones resumed from their last epoch, so an
interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from softhard.analysis.evaluate import evaluate_run
from softhard.analysis.report import build_report
from softhard.analysis.runs import RunFolder
from softhard.train import cli as train_cli
from softhard.train import run_folder
from softhard.train.grid_file import load_grid, package_configs

LANGUAGE = "since_ab"
CELLS = ("nope_strict", "sinusoidal")  # a theory cell, then the standard one (configs/grids/study.yaml)
FACTORS = (10, 100)  # evaluation lengths as multiples of the train length
EVALUATION_WORDS = 16
SMALL_RUN = [
    "--data.max_length", "12",
    "--data.train_per_length", "128",
    "--data.validation_per_length", "32",
    "--data.test_per_length", "32",
    "--data.test_lengths_per_bin", "3",
    "--model.transformer.n_layers", "2",
    "--model.transformer.n_heads", "2",
    "--model.transformer.d_model", "64",
    "--model.transformer.d_ff", "128",
    "--trainer.log_every_n_steps", "5",
    "--trainer.enable_model_summary", "false",
    "--probe_words", "4",
]


def study_cells(out: Path) -> dict:
    """CELLS' `softhard train` flags for LANGUAGE, as the study grid file defines them."""
    runs = load_grid(package_configs() / "grids" / "study.yaml", out)
    return {run.cell: run.axis_args() for run in runs if run.language == LANGUAGE and run.cell in CELLS
            and run.seed == 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softhard quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder (default: %(default)s)")
    parser.add_argument("--wandb", choices=train_cli.WANDB_MODES, default="disabled",
                        help="log the runs to wandb too (offline needs no account)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per run")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"argument --epochs: expected an integer >= 1, got {args.epochs}")
    started = time.perf_counter()
    run_dirs = []
    for cell, cell_args in study_cells(args.out).items():
        run_dir = args.out / f"{LANGUAGE}-{cell}"
        run_dirs.append(run_dir)
        if run_folder.state(run_dir) == "done":
            print(f"quickstart: reusing {run_dir}")
        else:
            print(f"quickstart: training {LANGUAGE} in the study's cell {cell}")
            command = [*SMALL_RUN, *cell_args, "--trainer.max_epochs", str(args.epochs), "--data.language", LANGUAGE,
                       "--data.cache_dir", str(args.out / "data"), "--run_dir", str(run_dir), "--wandb", args.wandb,
                       "--wandb_group", "quickstart", "--wandb_tags", f"[{LANGUAGE}, {cell}]"]
            code = run_folder.finish(run_dir, lambda resume: train_cli.main(command + ["--ckpt_path", "last"] * resume))
            if code:
                return code
        if not (run_dir / run_folder.EVALUATION_TABLE).is_file():
            run = RunFolder(run_dir)
            print(f"quickstart: evaluating {run_dir} as trained and hardened at {', '.join(map(str, FACTORS))}x")
            evaluate_run(run, lengths=[factor * run.train_length("not evaluated") for factor in FACTORS],
                         attentions=("as-trained", "hardened"), words=EVALUATION_WORDS, progress=False)
    report, _ = build_report(run_dirs, args.out, title="softhard quickstart")
    print(f"quickstart: done in {time.perf_counter() - started:.0f} s; report at {report} (and report.html)")
    return 0
