"""`softhard quickstart`: the end-to-end tour on a CPU in a few minutes.

Builds data for a star-free language that needs since (``since_ab``) and a counting one
(``majority``), trains a fixed-temperature and a length-scaled-temperature (log n) model
on each, evaluates length generalization up to 10x the train length, and writes the
`softhard report` of the four runs (report.md and report.html: length generalization,
attention against the compiled constructions, temperatures, probes) into one folder.
Finished runs are reused and interrupted ones resumed from their last epoch, so an
interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from softhard.analysis.report import build_report
from softhard.train import cli as train_cli
from softhard.train import run_folder

LANGUAGES = ("since_ab", "majority")
TEMPERATURES = ("fixed", "log_n")
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
    "--model.transformer.positional", '["i/n"]',
    "--trainer.log_every_n_steps", "5",
    "--trainer.enable_model_summary", "false",
    "--probe_words", "4",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softhard quickstart", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder (default: %(default)s)")
    parser.add_argument("--wandb", choices=train_cli.WANDB_MODES, default="disabled",
                        help="log the runs to wandb too (offline needs no account)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per run")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"argument --epochs: expected an integer >= 1, got {args.epochs}")
    started = time.perf_counter()
    run_dirs = []
    for language in LANGUAGES:
        for temperature in TEMPERATURES:
            run_dir = args.out / f"{language}-{temperature}"
            run_dirs.append(run_dir)
            if run_folder.state(run_dir) == "done":
                print(f"quickstart: reusing {run_dir}")
                continue
            print(f"quickstart: training {language} with temperature {temperature}")
            command = [*SMALL_RUN, "--trainer.max_epochs", str(args.epochs), "--data.language", language,
                       "--data.cache_dir", str(args.out / "data"), "--model.transformer.temperature", temperature,
                       "--run_dir", str(run_dir), "--wandb", args.wandb, "--wandb_group", "quickstart",
                       "--wandb_tags", f"[{language}, {temperature}]"]
            code = run_folder.finish(run_dir, lambda resume: train_cli.main(command + ["--ckpt_path", "last"] * resume))
            if code:
                return code
    report, _ = build_report(run_dirs, args.out, title="softhard quickstart")
    print(f"quickstart: done in {time.perf_counter() - started:.0f} s; report at {report} (and report.html)")
    return 0
