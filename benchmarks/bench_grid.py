"""Does the local grid runner keep a machine busy? The same grid at several --parallel levels.

    python benchmarks/bench_grid.py --device cuda --parallel 1,4,8
    python benchmarks/bench_grid.py --device cpu --parallel 1,2 --max-epochs 1

Runs configs/grids/bench.yaml (8 short runs: since_ab and majority x fixed/log_n x 2 seeds)
through `train.grid.run_grid` once per --parallel level, each level into a fresh folder, all
levels sharing one dataset cache built before the first is timed. Prints, per level, the wall
time, runs/hour and its ratio to one run at a time, and on CUDA the GPU utilisation
(nvidia-smi's utilization.gpu, sampled every 0.5 s while the grid runs: mean and median) and
the peak memory in use on the GPU.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from softhard.train.grid import check_runs, prepare_datasets, run_grid, tail  # noqa: E402
from softhard.train.grid_file import load_grid  # noqa: E402

ACCELERATORS = {"cpu": "cpu", "cuda": "gpu"}


class GpuSampler:
    """nvidia-smi's utilization.gpu (%) and memory.used (MiB) every 0.5 s while the block runs."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []

    def __enter__(self):
        if self.enabled:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=subprocess.PIPE, text=True)
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self):
        for line in self.process.stdout:
            fields = [field.strip() for field in line.split(",")]
            try:
                self.samples.append((float(fields[0]), float(fields[1])))
            except (ValueError, IndexError):  # a header or a partial line
                continue

    def __exit__(self, *exc):
        if self.enabled:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=2)

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        util = [u for u, _ in self.samples]
        return (f"mean {statistics.mean(util):.0f}%, median {statistics.median(util):.0f}%, "
                f"peak memory {max(m for _, m in self.samples):,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=sorted(ACCELERATORS), default="cpu")
    parser.add_argument("--parallel", default="1,4,8", help="comma-separated --parallel levels (default: %(default)s)")
    parser.add_argument("--grid", default=str(REPO / "configs" / "grids" / "bench.yaml"))
    parser.add_argument("--max-epochs", type=int, default=None, help="override the grid's trainer.max_epochs")
    args = parser.parse_args()
    levels = [int(level) for level in args.parallel.split(",")]

    print(f"grid {args.grid} on {args.device}; runs/hour against --parallel 1 where it was measured")
    print(f"{'parallel':>8} {'runs':>5} {'ok':>4} {'wall s':>8} {'runs/hour':>10} {'vs 1':>7}  GPU utilisation", flush=True)
    one_at_a_time = None  # runs/hour at --parallel 1
    with tempfile.TemporaryDirectory() as folder:
        for level in levels:
            out = Path(folder) / f"parallel{level}"
            runs = load_grid(args.grid, out)
            for run in runs:
                run.overrides.update({"trainer.accelerator": ACCELERATORS[args.device],
                                      "data.cache_dir": f"{folder}/data"})
                if args.max_epochs is not None:
                    run.overrides["trainer.max_epochs"] = args.max_epochs
            if level == levels[0]:
                check_runs(runs, args.grid)  # as `softhard grid` does before any run; untimed
            prepare_datasets(runs, progress=False)  # cached once; untimed
            with GpuSampler(args.device == "cuda") as sampler:
                start = time.perf_counter()
                run_grid(runs, out, parallel=level, progress=False)
                seconds = time.perf_counter() - start
            for run in runs:
                if run.status != "ok":
                    print(f"run {run.name} at --parallel {level}: {run.status}; log tail:\n{tail(run.log)}")
            rate = len(runs) / seconds * 3600
            if level == 1:
                one_at_a_time = rate
            ratio = f"{rate / one_at_a_time:.2f}x" if one_at_a_time else "-"
            ok = sum(run.status == "ok" for run in runs)
            print(f"{level:>8} {len(runs):>5} {ok:>4} {seconds:>8.1f} {rate:>10.0f} {ratio:>7}  {sampler.summary()}",
                  flush=True)


if __name__ == "__main__":
    main()
