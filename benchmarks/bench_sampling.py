"""Exact uniform sampling speed: 10,000 words of length 1,000 per registry language.

    python benchmarks/bench_sampling.py
    python benchmarks/bench_sampling.py --count 10000 --length 1000 --repeats 5 --label positive

For each language, every repeat starts from a fresh ``Language`` (no cached sampler) and
times separately:

- build: the path-count table (``Language.sampler``: DFA, or the count-aware automaton
  for counting languages, then ``log_path_counts`` over length + 1 layers);
- draw: ``PathSampler.sample(count)``, the (count, length) ids.

The table gives the median over repeats of each, their sum, and words per second of the
total. After timing, every drawn word of the last repeat is checked with the evaluator.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softhard.data.registry import REGISTRY  # noqa: E402

LANGUAGES = [
    "since_ab",
    "tomita7",
    "dyck_depth2",
    "request_response",
    "parity",
    "majority",
    "majority_abc",
    "dyck1",
    "dyck_depth3",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="positive", choices=["positive", "negative"])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    args = parser.parse_args()

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"{args.count} {args.label} words of length {args.length}, median of {args.repeats} repeats")
    header = f"{'language':18s} {'kind':14s} {'states':>7s} {'build s':>8s} {'draw s':>8s} {'total s':>8s} {'words/s':>9s}"
    print(header)
    print("-" * len(header))
    for name in args.languages.split(","):
        spec = REGISTRY[name]
        builds, draws = [], []
        for repeat in range(args.repeats):
            language = spec.language()
            start = time.perf_counter()
            sampler = language.sampler(args.length, args.label)
            built = time.perf_counter()
            ids = sampler.sample(args.count, np.random.default_rng(repeat))
            done = time.perf_counter()
            builds.append(built - start)
            draws.append(done - built)
        truth = language.label(ids)[:, -1]
        assert ids.shape == (args.count, args.length)
        assert truth.all() if args.label == "positive" else not truth.any(), name
        build, draw = statistics.median(builds), statistics.median(draws)
        print(
            f"{name:18s} {spec.kind:14s} {len(sampler.transitions):7d} {build:8.3f} {draw:8.3f} "
            f"{build + draw:8.3f} {args.count / (build + draw):9,.0f}"
        )


if __name__ == "__main__":
    main()
