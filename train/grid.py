"""`softhard grid`: a grid of `softhard train` runs on one machine, N at a time.

    softhard grid --grid configs/grids/study.yaml --parallel 4
    softhard grid --grid configs/grids/study.yaml --dry-run          # list the runs, start none
    softhard grid --grid configs/grids/study.yaml --gpus 0,1 --parallel 8   # 4 runs per GPU

A grid file (YAML) names languages and axes; the runs are their cartesian product:

    languages: [since_ab, majority]        # registry names, or a mapping {name: config file(s)}
    model.lr: [1e-3, 3e-4]                 # an axis: any dotted `softhard train` key, a list of values
    model.transformer.mask: [none, strict_past]
    positional: [["sinusoidal"], ["i/n"]]  # short for model.transformer.positional
    temperature: [fixed, log_n]            # short for model.transformer.temperature
    seeds: [0, 1]                          # short for seed_everything
    overrides: {trainer.max_epochs: 5}     # dotted `softhard train` keys given to every run
    evaluate: {factor: 100, attention: [as-trained, hardened]}   # `softhard evaluate` after each run
    name: study                            # wandb group of the runs (default: the file's name)

A wandb sweep file (configs/sweep.yaml) is a grid file too: its `parameters` become axes
({values: [...]}) and overrides ({value: v}); wandb's own keys (method: grid, metric, command, ...)
are left to wandb.

Every run is a subprocess

    python -m softhard train --config <package>/configs/defaults.yaml --config <package>/configs/<language>.yaml
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
import importlib
import io
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

# Keys of a grid file that are not axes; every other key is one.
NOT_AXES = ("name", "overrides", "evaluate")
# A wandb sweep file (configs/sweep.yaml) is a grid file too: its `parameters` become axes (values)
# and overrides (value); these keys of wandb's own are left to wandb.
SWEEP_ONLY = ("method", "metric", "project", "entity", "command", "program", "description", "early_terminate",
              "run_cap")
# Short axis names and the `softhard train` keys they stand for.
SHORTHANDS = {
    "languages": "data.language",
    "positional": "model.transformer.positional",
    "temperature": "model.transformer.temperature",
    "seeds": "seed_everything",
}
# Keys the grid sets itself, so neither axes nor overrides may.
RESERVED = {
    "config": "the language's config files (a mapping under 'languages' adds your own)",
    "run_dir": "<out>/<run name>",
    "wandb": "the --wandb option of softhard grid",
    "wandb_group": "the grid's name",
    "wandb_tags": "the grid's axis values",
    "ckpt_path": "resumption",
}
CSV_COLUMNS = ("name", "language", "positional", "temperature", "seed", "run_dir", "status", "exit_code", "seconds")
EVALUATION = "evaluation.csv"  # what `softhard evaluate RUN_DIR` writes into the run folder
LOG_TAIL_LINES = 15
DOTTED_KEY = re.compile(r"[A-Za-z_][\w.]*")
# Theory-feature names that are not valid in file names.
_SLUGS = {"i/n": "i_over_n", "1/i": "1_over_i", "i^2": "i_sq", "(-1)^i": "alt_sign"}


class GridError(ValueError):
    """A bad grid file or option: reported before any run starts."""


def package_configs() -> Path:
    """The configs/ folder shipped with softhard: defaults.yaml and one file per registry language.

    Installed, it is the package data softhard/configs; in a source checkout, the checkout's configs/.
    """
    return Path(next(iter(importlib.import_module("softhard.configs").__path__)))


@dataclass
class Run:
    name: str
    language: str
    configs: list[Path]  # stacked with --config, later files win
    seed: int
    run_dir: Path
    axes: dict = field(default_factory=dict)  # dotted key -> this run's value, for the grid's axes but language and seed
    overrides: dict = field(default_factory=dict)
    group: str = ""  # wandb group: the grid's name
    tags: list = field(default_factory=list)  # wandb tags: "<axis>=<value>" for every axis
    evaluate: Optional[list[str]] = None  # `softhard evaluate` options after the run; None: no evaluation
    status: str = "pending"
    exit_code: Optional[int] = None
    seconds: float = 0.0

    @property
    def log(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")

    @property
    def evaluated(self) -> bool:
        return self.evaluate is None or (self.run_dir / EVALUATION).is_file()

    def train_args(self, wandb: str = "disabled", resume: bool = False) -> list[str]:
        """The arguments of `softhard train` for this run."""
        args = [arg for config in self.configs for arg in ("--config", str(config))]
        # Headless: tqdm over finished runs is the progress; the user's overrides come later and win.
        args += ["--trainer.enable_progress_bar", "false"]
        for key, value in self.axes.items():
            args += [f"--{key}", _cli_value(value)]
        args += ["--seed_everything", str(self.seed), "--run_dir", str(self.run_dir), "--wandb", wandb]
        if wandb != "disabled":
            args += ["--wandb_group", self.group, "--wandb_tags", json.dumps(self.tags)]
        for key, value in self.overrides.items():
            args += [f"--{key}", _cli_value(value)]
        if resume:
            args += ["--ckpt_path", "last"]
        return args

    def command(self, wandb: str = "disabled", resume: bool = False) -> list[str]:
        return [sys.executable, "-m", "softhard", "train", *self.train_args(wandb, resume)]

    def evaluate_command(self) -> list[str]:
        return [sys.executable, "-m", "softhard", "evaluate", str(self.run_dir), *(self.evaluate or [])]

    def row(self) -> dict:
        return {
            "name": self.name,
            "language": self.language,
            "positional": _describe(self.axes.get(SHORTHANDS["positional"])),
            "temperature": _describe(self.axes.get(SHORTHANDS["temperature"])),
            "seed": self.seed,
            **{key: _value_text(value) for key, value in self.axes.items() if key not in SHORTHANDS.values()},
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
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else _cli_value(value)


def _value_text(value: Any) -> str:
    """An axis value in tags and table columns: as _describe, with null for None."""
    return "null" if value is None else _describe(value)


def _slug(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_slug(v) for v in value) if value else "none"
    text = _SLUGS.get(str(value), _value_text(value))
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


# ---------------------------------------------------------------------------- the grid file


def load_grid(path: str | Path, out: str | Path) -> list[Run]:
    """The runs of the grid file ``path`` with run folders under ``out``; GridError on any problem.

    Only the file's own shape is checked here; check_runs asks `softhard train` about the keys."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"grid file {path} is not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise GridError(f"grid file {path}: expected a mapping of {', '.join(NOT_AXES)}, languages and axes "
                        f"(dotted `softhard train` keys), got {spec!r}")

    def fail(message: str) -> GridError:
        return GridError(f"grid file {path}: {message}")

    if "config_dir" in spec:
        raise fail("'config_dir' is gone: registry languages need no config file, and your own config files "
                   "are named in a mapping under 'languages' ({name: file}, relative to the grid file)")
    spec = _from_sweep(spec, fail)
    name = spec.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise fail(f"'name' must be a non-empty string (the wandb group of the runs), got {name!r}")
    axes = _axes(spec, fail)
    if SHORTHANDS["languages"] not in axes:
        raise fail("missing key 'languages' (a list of registry names or a mapping name: config file)")
    languages = _languages(axes.pop(SHORTHANDS["languages"]), path, fail)
    seeds = axes.pop(SHORTHANDS["seeds"], [0])
    overrides = _overrides(spec.get("overrides"), axes, fail)
    evaluate = _evaluate_options(spec["evaluate"], fail) if "evaluate" in spec else None

    labels = axis_labels(list(axes))
    out = Path(out)
    runs, names = [], {}
    for (language, configs), *values, seed in itertools.product(languages.items(), *axes.values(), seeds):
        point = dict(zip(axes, values))
        parts = [language]
        parts += [_slug(value) if key in SHORTHANDS.values() else f"{labels[key]}={_slug(value)}"
                  for key, value in point.items()]
        run_name = "-".join(parts + [f"seed{seed}"])
        if run_name in names:
            raise fail(f"two runs would share the folder {run_name} ({names[run_name]} and {point | {'seed': seed}}); "
                       "remove the duplicate value")
        names[run_name] = point | {"seed": seed}
        tags = [f"language={language}"] + [f"{labels[key]}={_value_text(value)}" for key, value in point.items()]
        runs.append(Run(run_name, language, configs, seed, out / run_name, point, dict(overrides), name,
                        tags + [f"seed={seed}"], evaluate))
    return runs


def _from_sweep(spec: dict, fail) -> dict:
    """A wandb sweep's ``parameters`` as the grid's axes ({values: [...]}) and overrides ({value: v})."""
    if "parameters" not in spec:
        return spec
    if spec.get("method", "grid") != "grid":
        raise fail(f"method {spec['method']!r}: softhard grid runs grid sweeps only (method: grid)")
    parameters = spec["parameters"]
    if not isinstance(parameters, dict):
        raise fail(f"'parameters' must map dotted `softhard train` keys to {{values: [...]}} or {{value: v}}, "
                   f"got {parameters!r}")
    grid = {key: value for key, value in spec.items() if key not in SWEEP_ONLY and key != "parameters"}
    overrides = dict(grid.get("overrides") or {})
    for key, parameter in parameters.items():
        if not isinstance(parameter, dict) or len(parameter) != 1 or not {"values", "value"} & set(parameter):
            raise fail(f"parameter {key!r} must be {{values: [...]}} or {{value: v}}, got {parameter!r}")
        target = grid if "values" in parameter else overrides
        if key in target:
            raise fail(f"parameter {key!r} is given twice")
        target[key] = parameter.get("values", parameter.get("value"))
    return grid | ({"overrides": overrides} if overrides else {})


def _axes(spec: dict, fail) -> dict[str, list]:
    """Every key of the grid file but name, overrides and evaluate: dotted key -> its values, in the file's
    order except that positional and temperature come first (run names as before any-key axes)."""
    axes: dict[str, list] = {}
    for key, values in spec.items():
        if key in NOT_AXES:
            continue
        if not isinstance(key, str) or not DOTTED_KEY.fullmatch(key):
            raise fail(f"axis {key!r} is not a dotted `softhard train` key such as model.lr")
        dotted = SHORTHANDS.get(key, key)
        if dotted in axes:
            raise fail(f"{dotted} is given twice (once as {key!r}); keep one")
        if dotted in RESERVED:
            raise fail(f"{key!r} is set by the grid itself ({RESERVED[dotted]})")
        if key != "languages" and not isinstance(values, list):
            raise fail(f"'{key}' must be a list of values (an axis), got {values!r}; "
                       "a value for every run goes under 'overrides'")
        if values == [] or values == {}:
            raise fail(f"'{key}' is empty; give at least one value or leave the key out")
        check = _VALUE_CHECKS.get(dotted)
        for value in values if check else ():
            problem = check(value)
            if problem:
                raise fail(f"{key} value {value!r}: {problem}")
        axes[dotted] = values
    first = [SHORTHANDS["positional"], SHORTHANDS["temperature"]]
    return {key: axes[key] for key in first if key in axes} | {key: v for key, v in axes.items() if key not in first}


def axis_labels(keys: list[str]) -> dict[str, str]:
    """Axis key -> its name in run names, grid tags: the last part of the dotted key, the whole key where
    two axes share the last part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: short if last.count(short) == 1 else key for key, short in zip(keys, last)}


def _languages(value: Any, path: Path, fail) -> dict[str, list[Path]]:
    """Language -> its config files: the package's defaults and (registry languages) the language's
    settings, then the mapping's own files, relative to the grid file."""
    from softhard.data.registry import REGISTRY

    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        if not all(isinstance(name, str) for name in value):
            raise fail(f"'languages' must hold names, got {value!r}")
        unknown = [name for name in value if name not in REGISTRY]
        if unknown:
            raise fail(f"language {unknown[0]!r} is not a registry language (`softhard data list`); "
                       f"train your own from a config with a mapping {{{unknown[0]}: my_config.yaml}}")
        pairs = [(name, []) for name in value]
    elif isinstance(value, dict):
        pairs = [(name, files if isinstance(files, list) else [files]) for name, files in value.items()]
    else:
        raise fail(f"'languages' must be a list of names or a mapping name: config file, got {value!r}")
    configs: dict[str, list[Path]] = {}
    shipped = package_configs()
    for name, files in pairs:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
            raise fail(f"language {name!r} is not a plain name (letters, digits, _ and .)")
        if name in configs:
            raise fail(f"language {name!r} is listed twice")
        stack = [shipped / "defaults.yaml"] + ([shipped / f"{name}.yaml"] if name in REGISTRY else [])
        for file in files:
            if not isinstance(file, (str, Path)) or not (path.parent / file).is_file():
                raise fail(f"language {name!r}: config {os.path.normpath(path.parent / str(file))} does not exist")
            stack.append((path.parent / file).resolve())
        configs[name] = stack
    return configs


def _overrides(value: Any, axes: dict, fail) -> dict:
    overrides = value or {}
    if not isinstance(overrides, dict):
        raise fail(f"'overrides' must be a mapping of dotted `softhard train` keys to values, got {overrides!r}")
    for key in overrides:
        if not isinstance(key, str) or not DOTTED_KEY.fullmatch(key):
            raise fail(f"overrides key {key!r} is not a dotted `softhard train` key such as trainer.max_epochs")
        if key in RESERVED or key in SHORTHANDS.values():
            what = RESERVED.get(key) or f"the {next(k for k, v in SHORTHANDS.items() if v == key)} axis"
            raise fail(f"overrides key {key!r} is set by the grid itself ({what})")
        if key in axes:
            raise fail(f"overrides key {key!r} is also an axis; keep one")
    return dict(overrides)


def _evaluate_options(value: Any, fail) -> list[str]:
    """The grid's `evaluate` mapping as `softhard evaluate` options: {factor: 100, attention: [a, b]} ->
    --factor 100 --attention a,b."""
    if not isinstance(value, dict):
        raise fail(f"'evaluate' must be a mapping of `softhard evaluate` options, e.g. "
                   f"{{factor: 100, attention: [as-trained, hardened, gap-rule]}}, got {value!r}")
    options = []
    for flag, setting in value.items():
        if not isinstance(flag, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", flag):
            raise fail(f"evaluate key {flag!r} is not a `softhard evaluate` option name such as factor")
        items = setting if isinstance(setting, list) else [setting]
        if not items or not all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in items):
            raise fail(f"evaluate {flag}: expected a number, a word or a list of them, got {setting!r}")
        options += [f"--{flag}", ",".join(str(item) for item in items)]
    return options


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


# Values `softhard train` would accept at parse time but a run would refuse only once started.
_VALUE_CHECKS = {
    SHORTHANDS["positional"]: _check_positional,
    SHORTHANDS["temperature"]: _check_temperature,
    SHORTHANDS["seeds"]: _check_seed,
}


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


def check_runs(runs: list[Run], path: str | Path) -> None:
    """Every language's configs, axis value and override, parsed by `softhard train` before any run
    starts: unknown keys and values of the wrong type fail here. One run per language and per axis
    value is asked, not every combination."""
    asked: dict[str, int] = {}  # language or axis value -> index of the first run with it
    for index, run in enumerate(runs):
        for point in [("language", run.language), *run.axes.items()]:
            asked.setdefault(json.dumps(point, default=str), index)
    for run in [runs[index] for index in sorted(set(asked.values()))]:
        try:
            config = resolve(run.train_args())
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
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


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
        check_runs(runs, args.grid)
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
