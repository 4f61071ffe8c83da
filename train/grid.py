"""`softhard grid`: a grid of `softhard train` runs on one machine, N at a time (the grid file's
format and its runs: train/grid_file.py).

    softhard grid --grid configs/grids/study.yaml --parallel 4
    softhard grid --grid configs/grids/study.yaml --dry-run          # list the runs, start none
    softhard grid --grid configs/grids/study.yaml --gpus 0,1 --parallel 8   # 4 runs per GPU

A grid file (YAML) names languages and axes; the runs are their cartesian product (and, with
`cells:`, a list of named configurations crossed with the languages, axes and seeds):

    languages: [since_ab, majority]        # registry names, or a mapping {name: config file(s)}
    model.lr: [1e-3, 3e-4]                 # an axis: any dotted `softhard train` key, a list of values
    model.transformer.mask: [none, strict_past]
    positional: [["sinusoidal"], ["i/n"]]  # short for model.transformer.positional
    temperature: [fixed, log_n]            # short for model.transformer.temperature
    seeds: [0, 1]                          # short for seed_everything
    overrides: {trainer.max_epochs: 5}     # dotted `softhard train` keys given to every run
    evaluate: {factor: 100, attention: [as-trained, hardened]}   # `softhard evaluate` after each run
    evaluate_learned: 0.99                 # ... only after runs whose validation string accuracy reaches it
    name: study                            # wandb group of the runs (default: the file's name)
    cells: {nope_strict: {positional: [], model.transformer.mask: strict_past}}   # named cells

A wandb sweep file (configs/sweep.yaml) is a grid file too: its `parameters` become axes
({values: [...]}) and overrides ({value: v}); wandb's own keys (method: grid, metric, command, ...)
are left to wandb.

Every run is a subprocess

    python -m softhard train --config <package>/configs/<language>.yaml
        [--config <the mapping's files>] --model.transformer.positional <P> --model.lr <LR> ...
        --seed_everything <S> --run_dir <out>/<language>-<pos>-<temp>-lr=<LR>-seed<S> --wandb disabled

with its output in <run_dir>.log: the package's defaults and language settings apply to a
registry language from a grid file anywhere on disk; a config file is needed only to change
them. Keys and values are checked by `softhard train`'s own parser before any run starts.
Each distinct dataset is built once first (parallel runs of one language would race to cache
it), then the runs start. A run whose folder already holds length_generalization.csv is
skipped, one with a checkpoint but no table is resumed (--ckpt_path last; from scratch if that
does not finish it), so re-running the same command finishes an interrupted grid. <out>/grid.csv
gets one row per run (name, language, positional, temperature, seed, one column per other axis
named by its dotted key, run_dir, status, exit_code, seconds); a failed run is reported and
does not stop the others. No wandb account is needed: runs log with --wandb disabled (or
offline with group = the grid's name and tags = its axis values; `wandb sync` later).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import io
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import yaml
from tqdm import tqdm

from softhard.data.files import write_atomically
from softhard.train import run_folder
from softhard.train.grid_file import GridError, Run, load_grid

CSV_COLUMNS = ("name", "language", "positional", "temperature", "seed", "run_dir", "status", "exit_code", "seconds")
LOG_TAIL_LINES = 15


# ---------------------------------------------------------------------------- asking `softhard train`


def resolve(args: list[str]) -> dict:
    """The config `softhard train ARGS` would train with (what --print_config prints), from the train
    CLI's own parser; GridError with its message (one line) when it refuses the arguments."""
    from softhard.train.cli import main as train

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = train([*args, "--print_config"])
        except SystemExit as exit:
            code = exit.code
    if code not in (0, None):
        message = err.getvalue().rsplit("error:", 1)[-1]
        raise GridError(" ".join(message.split()) or f"exit code {code}")
    return yaml.safe_load(out.getvalue())


def check_runs(runs: list[Run], path: str | Path, wandb: str = "disabled") -> None:
    """Every language's configs, cell, axis value and override, parsed by `softhard train` before any run
    starts: unknown keys and values of the wrong type fail here. One run per language, per cell and per
    axis value is asked, not every combination, each with the wandb options it will run with."""
    asked: dict[str, int] = {}  # language or axis value -> index of the first run with it
    for index, run in enumerate(runs):
        for point in [("language", run.language), ("cell", run.cell), *run.axes.items()]:
            asked.setdefault(json.dumps(point, default=str), index)
    for run in [runs[index] for index in sorted(set(asked.values()))]:
        try:
            config = resolve(run.train_args(wandb))
        except GridError as error:
            raise GridError(f"grid file {path}: run {run.name}: `softhard train` refuses it: {error}") from None
        # The parser also takes a key's abbreviation (trainer.max_epoch for trainer.max_epochs); a grid names keys whole.
        known = dotted_keys(config)
        for key in [*run.axes, *run.overrides]:
            if key not in known:
                guess = difflib.get_close_matches(key, sorted(known), n=1)
                raise GridError(f"grid file {path}: {key!r} is not a `softhard train` key"
                                + (f"; did you mean {guess[0]!r}?" if guess else ""))


def dotted_keys(config: dict, prefix: str = "") -> set[str]:
    """Every key of a nested config, sections included, dotted: {"a": {"b": 1}} -> {"a", "a.b"}."""
    keys = set()
    for key, value in config.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{key}.")
    return keys


def check_evaluate(runs: list[Run]) -> None:
    """The grid's evaluate options against `softhard evaluate --help` (one process, only for grids with
    an 'evaluate' key)."""
    options = next((run.evaluate for run in runs if run.evaluate is not None), None)
    if options is None:
        return
    result = subprocess.run([sys.executable, "-m", "softhard", "evaluate", "--help"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    problem = evaluate_problem(options, result.stdout if result.returncode == 0 else None)
    if problem:
        raise GridError(problem)


def evaluate_problem(options: list[str], help_text: Optional[str]) -> Optional[str]:
    """Why `softhard evaluate` (whose --help printed ``help_text``; None: no such command) cannot take
    ``options``; None when it can."""
    if help_text is None:
        return "the grid's 'evaluate' needs the `softhard evaluate` command, which this installation lacks"
    for flag in options[::2]:
        if not re.search(rf"{re.escape(flag)}\b(?!-)", help_text):
            return f"evaluate: `softhard evaluate` has no option {flag} (see softhard evaluate --help)"
    return None


# ---------------------------------------------------------------------------- running


def execute(run: Run, wandb: str, env: dict) -> Run:
    """Runs ``run`` to its end (train.run_folder.finish: resumed if it has a checkpoint), then its
    evaluation if the grid asks for one; the output in run.log (appended to for an evaluation alone)."""
    run.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    trained = run_folder.state(run.run_dir) == "done"
    with open(run.log, "a" if trained else "w") as log:

        def train(resume: bool) -> int:
            if log.tell() > 0:  # a second attempt
                log.write("\nsofthard grid: resuming did not finish the run; starting it again from scratch\n\n")
            return _launch(run.command(wandb, resume=resume), log, env)

        code = run_folder.finish(run.run_dir, train)  # 0 at once for a trained run
        if code == 0 and run_folder.state(run.run_dir) == "done" and not run.evaluated:
            code = _launch(run.evaluate_command(), log, env)
    run.seconds = time.monotonic() - start
    run.exit_code = code
    run.status = "ok" if code == 0 and run_folder.state(run.run_dir) == "done" and run.evaluated else "failed"
    return run


def _launch(command: list[str], log, env: dict) -> int:
    log.write("$ " + shlex.join(command) + "\n\n")
    log.flush()
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode


def finished(run: Run) -> bool:
    """Trained and, where the grid asks for it, evaluated."""
    return run_folder.state(run.run_dir) == "done" and run.evaluated


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def write_table(runs: list[Run], path: Path) -> None:
    """<out>/grid.csv: CSV_COLUMNS, with a column per axis beyond language/positional/temperature/seed
    (named by its dotted key) after seed."""
    rows = [run.row() for run in runs]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(file: Path) -> None:
        with open(file, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns or CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


def dataset_args(run: Run) -> dict:
    """The LanguageDataModule arguments of ``run``: the data section of the config it trains with."""
    return resolve(run.train_args())["data"]


def prepare_datasets(runs: list[Run], progress: bool = True) -> None:
    """Builds every distinct dataset of the unfinished runs once, before any run starts.

    Runs of one language share one cached dataset (data.cache_dir); started together, each
    would sample it and they would race to move it into the cache. A dataset that cannot be
    built is left to its runs, which then fail with the error in their logs.
    """
    candidates: dict[str, Run] = {}  # one run per config stack and data.* settings: what a dataset depends on
    for run in runs:
        if run_folder.state(run.run_dir) != "done":
            data = {key: value for key, value in (run.axes | run.overrides).items() if key.split(".")[0] == "data"}
            candidates.setdefault(json.dumps([[str(c) for c in run.configs], data], sort_keys=True, default=str), run)
    if not candidates:
        return
    from softhard.train.data import LanguageDataModule

    datasets: dict[str, tuple[Run, dict]] = {}
    for run in candidates.values():
        try:
            args = dataset_args(run)
        except GridError as error:  # reported by the run itself
            tqdm.write(f"softhard grid: {run.name}: {error}", file=sys.stderr)
            continue
        datasets.setdefault(json.dumps(args, sort_keys=True, default=str), (run, args))
    for run, args in tqdm(list(datasets.values()), desc="datasets", unit="dataset", disable=not progress):
        try:
            LanguageDataModule(**args).prepare_data()
        except Exception as error:  # reported by the runs themselves
            tqdm.write(f"softhard grid: could not build the dataset of {run.name} ({type(error).__name__}: {error}); "
                       "its runs will fail with the same error", file=sys.stderr)


def run_grid(runs: list[Run], out: Path, parallel: int = 1, wandb: str = "disabled",
             gpus: Optional[list[str]] = None, progress: bool = True) -> list[Run]:
    """Runs every pending run, ``parallel`` at a time; writes <out>/grid.csv after each one."""
    table = out / "grid.csv"
    pending = []
    for run in runs:
        if finished(run):
            run.status = "skipped"
        else:
            pending.append(run)
    write_table(runs, table)
    prepare_datasets(pending, progress)
    # One thread per slot; a slot keeps its GPU (CUDA_VISIBLE_DEVICES) for all its runs, and
    # CPU threads are shared out so N runs do not each start one thread per core.
    slots: queue.Queue = queue.Queue()
    for slot in range(parallel):
        slots.put(slot)
    base_env = dict(os.environ)
    if "OMP_NUM_THREADS" not in base_env:
        base_env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))

    def job(run: Run) -> Run:
        slot = slots.get()
        try:
            env = dict(base_env)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
            return execute(run, wandb, env)
        except Exception as error:  # the runner's own trouble (a folder it cannot write, ...)
            run.status, run.exit_code = "failed", None
            with open(run.log, "a") as log:
                log.write(f"\nsofthard grid: {type(error).__name__}: {error}\n")
            return run
        finally:
            slots.put(slot)

    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), unit="run", desc="grid", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        futures = [pool.submit(job, run) for run in pending]
        for future in as_completed(futures):
            run = future.result()
            if run.status == "failed":
                bar.write(f"FAILED {run.name} (exit code {run.exit_code}, {run.seconds:.0f} s); "
                          f"log {run.log}:\n{tail(run.log)}\n", file=sys.stderr)
            bar.set_postfix_str(f"last: {run.name} {run.status}")
            bar.update(1)
            write_table(runs, table)
    finally:  # on Ctrl-C start nothing new; the running ones got the signal too
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        write_table(runs, table)
    return runs


# ---------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softhard grid",
        description="Run a grid of `softhard train` runs (languages x any dotted train keys x seeds) "
                    "as parallel processes on this machine; resumable, no wandb account needed.",
    )
    parser.add_argument("--grid", required=True, help="grid file, e.g. configs/grids/study.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: runs/grids/<grid file name>)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (default: 1)")
    parser.add_argument("--wandb", choices=("disabled", "offline"), default="disabled",
                        help="wandb mode of every run (default: disabled; offline writes <run_dir>/wandb for `wandb sync`)")
    parser.add_argument("--gpus", default=None,
                        help="comma-separated GPU ids, e.g. 0,1: run slot k sees only GPU k mod len (CUDA_VISIBLE_DEVICES); "
                             "several slots may share one GPU")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their commands, start none")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    out = Path(args.out) if args.out else Path("runs") / "grids" / Path(args.grid).stem
    try:
        if args.parallel < 1:
            raise GridError(f"--parallel must be >= 1, got {args.parallel}")
        gpus = [gpu.strip() for gpu in args.gpus.split(",") if gpu.strip()] if args.gpus else None
        if args.gpus is not None and not gpus:
            raise GridError(f"--gpus {args.gpus!r} names no GPU")
        runs = load_grid(args.grid, out)
        check_runs(runs, args.grid, args.wandb)
        check_evaluate(runs)
    except GridError as error:
        print(f"softhard grid: error: {error}", file=sys.stderr)
        return 2

    if args.dry_run:
        labels = {"done": "skip", "resume": "resume", "partial": "restart", "new": "run"}
        for run in runs:
            current = run_folder.state(run.run_dir)
            print(f"[{'evaluate' if current == 'done' and not run.evaluated else labels[current]}] {run.name}")
            if current != "done":
                print("    " + shlex.join(run.command(args.wandb, resume=current == "resume")))
            if not run.evaluated:
                print("    " + shlex.join(run.evaluate_command()))
        print(f"softhard grid: {len(runs)} runs (dry run: none started); outputs would go to {out}")
        return 0

    print(f"softhard grid: {len(runs)} runs, {args.parallel} at a time, into {out}", file=sys.stderr)
    run_grid(runs, out, args.parallel, args.wandb, gpus)
    counts = {status: sum(run.status == status for run in runs) for status in ("ok", "skipped", "failed")}
    print(f"softhard grid: {counts['ok']} ok, {counts['skipped']} skipped (already done), {counts['failed']} failed")
    print(f"softhard grid: table {out / 'grid.csv'}; run folders and logs (<run>.log) in {out}")
    for run in runs:
        if run.status == "failed":
            print(f"  failed: {run.name}: see {run.log}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
