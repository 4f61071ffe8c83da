"""The grid file of `softhard grid` (train/grid.py): its format and the runs it expands to.

A grid file names languages and axes (any dotted `softhard train` key, a list of values); its
runs are their cartesian product, each a Run: the config files to stack, the axis values, the
seed, a run folder named after its point, and the wandb group and tags. A wandb sweep file
(configs/sweep.yaml) reads as a grid file too. Only the file's own shape is checked here;
train/grid.py asks `softhard train`'s parser about the keys and runs the grid.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from softhard.train import run_folder
from softhard.train.run_folder import EVALUATION_TABLE, setting_label

# Keys of a grid file that are not axes; every other key is one.
NOT_AXES = ("name", "overrides", "evaluate", "evaluate_learned", "cells")
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
    # Evaluate only when the run's last validation string accuracy reaches this; None: always.
    evaluate_learned: Optional[float] = None
    cell: Optional[str] = None  # the grid's named cell this run belongs to (its settings are in axes); None: no cells
    status: str = "pending"
    exit_code: Optional[int] = None
    seconds: float = 0.0

    @property
    def log(self) -> Path:
        return self.run_dir.with_name(self.run_dir.name + ".log")

    @property
    def evaluated(self) -> bool:
        """Nothing left to evaluate: no evaluation asked for, evaluation.csv written, or (with
        evaluate_learned) a trained run whose validation string accuracy stayed below it."""
        if self.evaluate is None or (self.run_dir / EVALUATION_TABLE).is_file():
            return True
        trained = run_folder.state(self.run_dir) == "done"
        return self.evaluate_learned is not None and trained and not self.learned()

    def learned(self) -> bool:
        """The run is trained and its last validation string accuracy is at least evaluate_learned (or
        there is no such threshold)."""
        if run_folder.state(self.run_dir) != "done":
            return False
        if self.evaluate_learned is None:
            return True
        last = run_folder.last_logged(self.run_dir, "val/")
        return last is not None and last.get("val/string_accuracy", float("nan")) >= self.evaluate_learned

    def train_args(self, wandb: str = "disabled", resume: bool = False) -> list[str]:
        """The arguments of `softhard train` for this run."""
        args = [arg for config in self.configs for arg in ("--config", str(config))]
        # Headless: tqdm over finished runs is the progress; the user's overrides come later and win.
        args += ["--trainer.enable_progress_bar", "false"]
        args += self.axis_args()
        args += ["--seed_everything", str(self.seed), "--run_dir", str(self.run_dir), "--wandb", wandb]
        if wandb != "disabled":
            args += ["--wandb_group", self.group, "--wandb_tags", json.dumps(self.tags)]
        for key, value in self.overrides.items():
            args += [f"--{key}", _cli_value(value)]
        if resume:
            args += ["--ckpt_path", "last"]
        return args

    def axis_args(self) -> list[str]:
        """This run's point of the grid (its cell's settings and axis values) as `softhard train` flags."""
        return [arg for key, value in self.axes.items() for arg in (f"--{key}", _cli_value(value))]

    def command(self, wandb: str = "disabled", resume: bool = False) -> list[str]:
        return [sys.executable, "-m", "softhard", "train", *self.train_args(wandb, resume)]

    def evaluate_command(self) -> list[str]:
        return [sys.executable, "-m", "softhard", "evaluate", str(self.run_dir), *(self.evaluate or [])]

    def row(self) -> dict:
        return {
            "name": self.name,
            "language": self.language,
            "positional": setting_label(self.axes.get(SHORTHANDS["positional"])),
            "temperature": setting_label(self.axes.get(SHORTHANDS["temperature"])),
            "seed": self.seed,
            **({"cell": self.cell} if self.cell is not None else {}),
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


def _value_text(value: Any) -> str:
    """An axis value in tags and table columns: its setting_label, with null for None."""
    return "null" if value is None else setting_label(value)


def _slug(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_slug(v) for v in value) if value else "none"
    text = _SLUGS.get(str(value), _value_text(value))
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


# ---------------------------------------------------------------------------- the grid file


def load_grid(path: str | Path, out: str | Path) -> list[Run]:
    """The runs of the grid file ``path`` with run folders under ``out``; GridError on any problem.

    Only the file's own shape is checked here; train.grid.check_runs asks `softhard train` about the keys."""
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
    evaluate_learned = _evaluate_learned(spec.get("evaluate_learned"), evaluate, fail)
    cells = _cells(spec["cells"], axes, overrides, fail) if "cells" in spec else {None: {}}

    labels = axis_labels(list(axes))
    out = Path(out)
    runs, names = [], {}
    for (language, configs), (cell, settings), *values, seed in itertools.product(
            languages.items(), cells.items(), *axes.values(), seeds):
        point = dict(zip(axes, values))
        parts = [language] + ([cell] if cell is not None else [])
        parts += [_slug(value) if key in SHORTHANDS.values() else f"{labels[key]}={_slug(value)}"
                  for key, value in point.items()]
        run_name = "-".join(parts + [f"seed{seed}"])
        if run_name in names:
            raise fail(f"two runs would share the folder {run_name} ({names[run_name]} and {point | {'seed': seed}}); "
                       "remove the duplicate value")
        names[run_name] = point | {"seed": seed}
        tags = [f"language={language}"] + ([f"cell={cell}"] if cell is not None else [])
        tags += [f"{labels[key]}={_value_text(value)}" for key, value in point.items()]
        runs.append(Run(run_name, language, configs, seed, out / run_name, settings | point, dict(overrides), name,
                        tags + [f"seed={seed}"], evaluate, evaluate_learned, cell))
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
    """Language -> its config files: (registry languages) the package's settings of the language, then
    the mapping's own files, relative to the grid file; `softhard train` reads the package's
    defaults.yaml under them all."""
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
        stack = [shipped / f"{name}.yaml"] if name in REGISTRY else []
        for file in files:
            if not isinstance(file, (str, Path)) or not (path.parent / file).is_file():
                raise fail(f"language {name!r}: config {os.path.normpath(path.parent / str(file))} does not exist")
            stack.append((path.parent / file).resolve())
        configs[name] = stack
    return configs


def _cells(value: Any, axes: dict, overrides: dict, fail) -> dict[str, dict]:
    """The grid's named cells: name -> {dotted `softhard train` key: value} (shorthands positional and
    temperature allowed), each a configuration of its own; crossed with languages, the other axes and
    seeds, unlike axes, which cross with each other."""
    if not isinstance(value, dict) or not value:
        raise fail(f"'cells' must be a non-empty mapping of cell names to mappings of dotted `softhard train` keys "
                   f"to values, e.g. {{nope_strict: {{positional: [], model.transformer.mask: strict_past}}}}, "
                   f"got {value!r}")
    cells = {}
    for cell, settings in value.items():
        if not isinstance(cell, str) or not re.fullmatch(r"[A-Za-z0-9_.+=]+", cell):
            raise fail(f"cell name {cell!r} is not a plain name (letters, digits and _ . + =)")
        if not isinstance(settings, dict) or not settings:
            raise fail(f"cell {cell!r} must map dotted `softhard train` keys to values, got {settings!r}")
        resolved = {}
        for key, setting in settings.items():
            dotted = SHORTHANDS.get(key, key) if key in ("positional", "temperature") else key
            if not isinstance(key, str) or not DOTTED_KEY.fullmatch(key) or key in ("languages", "seeds"):
                raise fail(f"cell {cell!r}: key {key!r} is not a dotted `softhard train` key such as model.lr")
            if dotted in RESERVED or dotted in (SHORTHANDS["languages"], SHORTHANDS["seeds"]):
                raise fail(f"cell {cell!r}: key {key!r} is set by the grid itself")
            if dotted in axes or dotted in overrides:
                raise fail(f"cell {cell!r}: key {key!r} is also an {'axis' if dotted in axes else 'override'}; keep one")
            if dotted in resolved:
                raise fail(f"cell {cell!r}: {dotted} is given twice (once as {key!r}); keep one")
            check = _VALUE_CHECKS.get(dotted)
            problem = check(setting) if check else None
            if problem:
                raise fail(f"cell {cell!r}: {key} value {setting!r}: {problem}")
            resolved[dotted] = setting
        cells[cell] = resolved
    return cells


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


def _evaluate_learned(value: Any, evaluate: Optional[list[str]], fail) -> Optional[float]:
    """The grid's `evaluate_learned` threshold (a validation string accuracy in [0, 1]; None: not set)."""
    if value is None:
        return None
    if evaluate is None:
        raise fail("'evaluate_learned' needs an 'evaluate' mapping (it says which runs to evaluate)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise fail(f"'evaluate_learned' must be a validation string accuracy between 0 and 1, got {value!r}")
    return float(value)


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
