"""The `softhard` console script: one subcommand per layer, imported only when used.

Each subcommand is a module exposing ``main(argv) -> int``; importing lazily keeps
`softhard data ...` free of torch start-up time.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "data": ("softhard.data.cli", "labelled data from LTL formulas: sample words, build datasets, list languages"),
    "train": ("softhard.train.cli", "train a transformer on a language from a YAML config (LightningCLI)"),
    "construct": ("softhard.models.compiler.cli", "compile a formula into hard/soft attention and check it against data.ltl"),
    "frontier": ("softhard.models.compiler.sweep", "largest exact temperature vs length, per dtype and per head, of a "
                 "compiled formula: CSVs, figures"),
    "grid": ("softhard.train.grid", "run a grid of training runs in parallel on one machine (resumable)"),
    "report": ("softhard.analysis.report", "markdown/HTML report of runs: length generalization, attention vs constructions, "
               "temperature, probes"),
    "evaluate": ("softhard.analysis.evaluate", "a run's checkpoint as trained, hardened and by the gap rule at long lengths: "
                 "evaluation.csv"),
    "soften": ("softhard.models.soften", "hard-attention model -> softmax with per-head temperatures for length N, "
               "verified by evaluation"),
    "study": ("softhard.analysis.study", "the reference study's tables and figures (docs/results/) from its grid's runs"),
    "quickstart": ("softhard.quickstart", "a slice of the study: since_ab in a theory cell and a standard one, evaluated and reported"),
}


ALIASES = {"sweep": "frontier"}  # the frontier's old name, kept for one release


def _module(name: str, rest: list[str]) -> str:
    """The module of a subcommand. `construct --save-run DIR` writes a run folder, which train/
    does (models/ never imports train/)."""
    if name == "construct" and any(arg == "--save-run" or arg.startswith("--save-run=") for arg in rest):
        return "softhard.train.construction_run"
    return SUBCOMMANDS[name][0]


def _usage() -> str:
    lines = ["usage: softhard <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "Run `softhard <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = ALIASES.get(argv[0], argv[0]), argv[1:]
    if name not in SUBCOMMANDS:
        print(f"softhard: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(_module(name, rest))
    return module.main(rest)
