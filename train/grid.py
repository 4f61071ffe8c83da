"""`softhard grid`: a grid of `softhard train` runs on one machine, N at a time.

    softhard grid --grid configs/grids/study.yaml --parallel 4
    softhard grid --grid configs/grids/study.yaml --dry-run          # list the runs, start none
    softhard grid --grid configs/grids/study.yaml --gpus 0,1 --parallel 8   # 4 runs per GPU

A grid file (YAML) names languages (each trained from its config, configs/<language>.yaml
by default) and axes; the runs are their cartesian product:

    languages: [since_ab, majority]        # or a mapping {language: config file}
    positional: [["sinusoidal"], ["i/n"]]  # model.transformer.positional values (lists)
    temperature: [fixed, log_n]            # model.transformer.temperature values
    seeds: [0, 1]                          # seed_everything values
    overrides: {trainer.max_epochs: 5}     # dotted CLI keys given to every run

Every run is a subprocess

    python -m softhard train --config <config> --model.transformer.positional <P>
        --model.transformer.temperature <T> --seed_everything <S>
        --run_dir <out>/<language>-<pos>-<temp>-seed<S> --wandb disabled [--key value ...]

with its output in <run_dir>.log. Each distinct dataset is built once first (parallel runs
of one language would race to cache it), then the runs start. A run whose folder already
holds length_generalization.csv is skipped, one with a checkpoint but no table is resumed
(--ckpt_path last; from scratch if that does not finish it), so re-running the same command
finishes an interrupted grid. <out>/grid.csv gets one row per run (name, language,
positional, temperature, seed, run_dir, status, exit_code, seconds); a failed run is
reported and does not stop the others. Bad grid files fail before any run starts.
No wandb account is needed: runs log with --wandb disabled (or offline, `wandb sync` later).
Standard library, PyYAML and tqdm only.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from tqdm import tqdm

from softhard.train import run_folder

GRID_KEYS = ("languages", "config_dir", "positional", "temperature", "seeds", "overrides")
CSV_COLUMNS = ("name", "language", "positional", "temperature", "seed", "run_dir", "status", "exit_code", "seconds")
LOG_TAIL_LINES = 15
# Theory-feature names that are not valid in file names.
_SLUGS = {"i/n": "i_over_n", "1/i": "1_over_i", "i^2": "i_sq", "(-1)^i": "alt_sign"}


class GridError(ValueError):
    """A bad grid file or option: reported before any run starts."""


@dataclass
class Run:
    name: str
    language: str
    config: Path
    positional: Optional[list]  # None: the config's own
    temperature: Any  # None: the config's own
    seed: int
    run_dir: Path
    overrides: dict = field(default_factory=dict)
    status: str = "pending"
    exit_code: Optional[int] = None
    seconds: float = 0.0

    @property
    def log(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")

    def command(self, wandb: str = "disabled", resume: bool = False) -> list[str]:
        args = [sys.executable, "-m", "softhard", "train", "--config", str(self.config)]
        # Headless: tqdm over finished runs is the progress; the user's overrides come later and win.
        args += ["--trainer.enable_progress_bar", "false"]
        if self.positional is not None:
            args += ["--model.transformer.positional", json.dumps(self.positional)]
        if self.temperature is not None:
            args += ["--model.transformer.temperature", _cli_value(self.temperature)]
        args += ["--seed_everything", str(self.seed), "--run_dir", str(self.run_dir), "--wandb", wandb]
        for key, value in self.overrides.items():
            args += [f"--{key}", _cli_value(value)]
        if resume:
            args += ["--ckpt_path", "last"]
        return args

    def row(self) -> dict:
        return {
            "name": self.name,
            "language": self.language,
            "positional": _describe(self.positional),
            "temperature": _describe(self.temperature),
            "seed": self.seed,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "exit_code": "" if self.exit_code is None else self.exit_code,
            "seconds": f"{self.seconds:.1f}",
        }


def _cli_value(value: Any) -> str:
    """A YAML value as one command-line token that jsonargparse reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_describe(v) for v in value) if value else "none"
    return "" if value is None else str(value)


def _slug(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_slug(v) for v in value) if value else "none"
    text = _SLUGS.get(str(value), str(value))
    return re.sub(r"[^A-Za-z0-9_.+=]", "_", text)


# ---------------------------------------------------------------------------- the grid file

# Keys the grid sets itself, so overrides may not.
RESERVED = {
    "config": "the language's config",
    "seed_everything": "the seeds axis",
    "run_dir": "<out>/<run name>",
    "wandb": "the --wandb option of softhard grid",
    "ckpt_path": "resumption",
    "model.transformer.positional": "the positional axis (leave the axis out to set it here)",
    "model.transformer.temperature": "the temperature axis (leave the axis out to set it here)",
}


def load_grid(path: str | Path, out: str | Path) -> list[Run]:
    """The runs of the grid file ``path`` with run folders under ``out``; GridError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"grid file {path} is not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise GridError(f"grid file {path}: expected a mapping with keys {', '.join(GRID_KEYS)}, got {spec!r}")
    unknown = [key for key in spec if key not in GRID_KEYS]
    if unknown:
        raise GridError(f"grid file {path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(GRID_KEYS)}")
    if "languages" not in spec:
        raise GridError(f"grid file {path}: missing key 'languages' (a list of names or a mapping name: config)")

    # Config files resolve against config_dir, itself relative to the grid file's folder;
    # by default the folder above it (configs/grids/x.yaml -> configs/).
    config_dir = path.parent / spec.get("config_dir", "..")
    configs = _languages(spec["languages"], config_dir, path)
    positionals = _axis(spec, "positional", path, _check_positional)
    temperatures = _axis(spec, "temperature", path, _check_temperature)
    seeds = _axis(spec, "seeds", path, _check_seed) or [0]
    overrides = spec.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise GridError(f"grid file {path}: 'overrides' must be a mapping of dotted CLI keys to values, got {overrides!r}")
    for key in overrides:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
            raise GridError(f"grid file {path}: overrides key {key!r} is not a dotted CLI key such as trainer.max_epochs")
        axis = {"model.transformer.positional": "positional", "model.transformer.temperature": "temperature"}.get(key)
        if key in RESERVED and (axis is None or axis in spec):
            raise GridError(f"grid file {path}: overrides key {key!r} is set by the grid itself ({RESERVED[key]})")

    out = Path(out)
    runs, names = [], {}
    for (language, config), positional, temperature, seed in itertools.product(
        configs.items(), positionals or [None], temperatures or [None], seeds
    ):
        parts = [language]
        if positional is not None:
            parts.append(_slug(positional))
        if temperature is not None:
            parts.append(_slug(temperature))
        name = "-".join(parts + [f"seed{seed}"])
        if name in names:
            raise GridError(f"grid file {path}: two runs would share the folder {name} "
                            f"({names[name]} and {(positional, temperature, seed)}); remove the duplicate value")
        names[name] = (positional, temperature, seed)
        runs.append(Run(name, language, config, positional, temperature, seed, out / name, dict(overrides)))
    return runs


def _languages(value: Any, config_dir: Path, path: Path) -> dict[str, Path]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not all(isinstance(name, str) for name in value):
            raise GridError(f"grid file {path}: 'languages' must hold names, got {value!r}")
        pairs = [(name, f"{name}.yaml") for name in value]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise GridError(f"grid file {path}: 'languages' must be a list of names or a mapping name: config, got {value!r}")
    if not pairs:
        raise GridError(f"grid file {path}: 'languages' is empty")
    configs = {}
    for name, config in pairs:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise GridError(f"grid file {path}: language {name!r} is not a plain name (letters, digits, _ and .)")
        if name in configs:
            raise GridError(f"grid file {path}: language {name!r} is listed twice")
        file = config_dir / str(config)
        if not file.is_file():
            raise GridError(f"grid file {path}: language {name!r} has no config: {os.path.normpath(file)} does not exist")
        configs[name] = file.resolve()
    return configs


def _axis(spec: dict, key: str, path: Path, check) -> Optional[list]:
    """The values of axis ``key``; None when the grid leaves it to the configs."""
    if key not in spec:
        return None
    values = spec[key]
    if not isinstance(values, list):
        raise GridError(f"grid file {path}: '{key}' must be a list of values, got {values!r}")
    if not values:
        raise GridError(f"grid file {path}: '{key}' is empty; give at least one value or leave the key out")
    for value in values:
        problem = check(value)
        if problem:
            raise GridError(f"grid file {path}: {key} value {value!r}: {problem}")
    return values


def _check_positional(value: Any) -> Optional[str]:
    from softhard.models.positional import POSITIONAL

    if not isinstance(value, list):
        return 'each positional value is a list of encodings, e.g. ["i/n"] or [] for none'
    unknown = [name for name in value if name not in POSITIONAL]
    if unknown:
        return f"unknown encoding {unknown[0]!r}; expected some of {', '.join(POSITIONAL)}"
    return None


def _check_temperature(value: Any) -> Optional[str]:
    from softhard.models.temperature import TEMPERATURES

    def flat(v):  # one mode, n_heads modes, or n_layers lists of them
        return [m for item in v for m in flat(item)] if isinstance(v, list) else [v]

    modes = flat(value)
    unknown = [mode for mode in modes if mode not in TEMPERATURES]
    if not modes or unknown:
        return f"unknown temperature {unknown[0] if unknown else value!r}; expected one of {', '.join(TEMPERATURES)}"
    return None


def _check_seed(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "seeds are non-negative integers"
    return None


# ---------------------------------------------------------------------------- running


def execute(run: Run, wandb: str, env: dict) -> Run:
    """Runs ``run`` to its end (train.run_folder.finish: resumed if it has a checkpoint), its
    output in run.log."""
    run.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(run.log, "w") as log:

        def train(resume: bool) -> int:
            if log.tell() > 0:  # a second attempt
                log.write("\nsofthard grid: resuming did not finish the run; starting it again from scratch\n\n")
            return _train(run.command(wandb, resume=resume), log, env)

        code = run_folder.finish(run.run_dir, train)
    run.seconds = time.monotonic() - start
    run.exit_code = code
    run.status = "ok" if code == 0 and run_folder.state(run.run_dir) == "done" else "failed"
    return run


def _train(command: list[str], log, env: dict) -> int:
    log.write("$ " + shlex.join(command) + "\n\n")
    log.flush()
    return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def write_table(runs: list[Run], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(run.row() for run in runs)
    temporary.replace(path)


def dataset_args(run: Run) -> dict:
    """The LanguageDataModule arguments of ``run``: its config's data section plus data.* overrides."""
    config = yaml.safe_load(run.config.read_text()) or {}
    args = dict(config.get("data") or {})
    for key, value in run.overrides.items():
        if key.startswith("data."):
            args[key[len("data."):]] = value
        elif key == "data" and isinstance(value, dict):
            args.update(value)
    return args


def prepare_datasets(runs: list[Run], progress: bool = True) -> None:
    """Builds every distinct dataset of the pending runs once, before any run starts.

    Runs of one language share one cached dataset (data.cache_dir); started together, each
    would sample it and they would race to move it into the cache. A dataset that cannot be
    built is left to its runs, which then fail with the error in their logs.
    """
    groups: dict[str, tuple[Run, dict]] = {}
    for run in runs:
        if run_folder.state(run.run_dir) != "done":
            args = dataset_args(run)
            groups.setdefault(json.dumps(args, sort_keys=True, default=str), (run, args))
    if not groups:
        return
    from softhard.train.data import LanguageDataModule

    for run, args in tqdm(list(groups.values()), desc="datasets", unit="dataset", disable=not progress):
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
        if run_folder.state(run.run_dir) == "done":
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
        description="Run a grid of `softhard train` runs (languages x positional x temperature x seeds) "
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
    except GridError as error:
        print(f"softhard grid: error: {error}", file=sys.stderr)
        return 2

    if args.dry_run:
        labels = {"done": "skip", "resume": "resume", "partial": "restart", "new": "run"}
        for run in runs:
            current = run_folder.state(run.run_dir)
            print(f"[{labels[current]}] {run.name}")
            print("    " + shlex.join(run.command(args.wandb, resume=current == "resume")))
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
