"""`softhard report` on a grid of 100 runs: wall time on a CPU (the bar: under a minute).

    python benchmarks/bench_report.py              # 100 runs, probes included
    python benchmarks/bench_report.py --runs 20 --repeats 3

Trains a grid of eight tiny runs (configs/tiny.yaml stacked on since_ab and majority, fixed and
log_n temperature, two seeds) with the grid runner, copies them into a grid of ``--runs`` run
folders (each copy a different seed), and times build_report over the whole grid, ``--repeats``
times; prints the median seconds, per run and in all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softhard.analysis.report import build_report, parse_probe_seeds  # noqa: E402
from softhard.train.grid import run_grid  # noqa: E402
from softhard.train.grid_file import load_grid, package_configs  # noqa: E402

TINY = json.dumps(str(package_configs() / "tiny.yaml"))  # a YAML string, whatever the path holds
TINY_GRID = f"""
languages: {{since_ab: {TINY}, majority: {TINY}}}
temperature: [fixed, log_n]
seeds: [0, 1]
"""


def train_tiny_grid(out: Path) -> list[Path]:
    """The eight tiny runs, two at a time; the finished run folders."""
    (out / "tiny.yaml").write_text(TINY_GRID)
    runs = load_grid(out / "tiny.yaml", out / "trained")
    for run in runs:
        run.overrides["data.cache_dir"] = str(out / "data")
    run_grid(runs, out / "trained", parallel=2, progress=False)
    failed = [run.name for run in runs if run.status != "ok"]
    if failed:
        raise SystemExit(f"tiny runs failed: {failed}; logs in {out / 'trained'}")
    return [run.run_dir for run in runs]


def make_grid(out: Path, runs: int) -> Path:
    trained = train_tiny_grid(out)
    grid = out / "grid"
    for index in range(runs):
        source = trained[index % len(trained)]
        copy = grid / f"{source.name}-copy{index}"
        shutil.copytree(source, copy)
        info = json.loads((copy / "run_info.json").read_text())
        info["seed"] = 100 + index  # seeds of one configuration, as a real grid has
        (copy / "run_info.json").write_text(json.dumps(info))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--probe-seeds", default="1", help="as softhard report: a number, 0 or all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        grid = make_grid(Path(folder), args.runs)
        seconds = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            build_report(grid, Path(folder) / f"report{repeat}", probe_seeds=parse_probe_seeds(args.probe_seeds))
            seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    print(f"report over {args.runs} runs (probe seeds per configuration: {args.probe_seeds}): "
          f"median {median:.1f} s of {args.repeats}, {median / args.runs * 1000:.0f} ms per run")


if __name__ == "__main__":
    main()
