"""Per-position labelling throughput: our vectorised evaluator vs flloat 0.3.0, side by side.

    python benchmarks/bench_labelling.py
    python benchmarks/bench_labelling.py --words 500 --length 64 --repeats 5

For each future-only formula, the SAME random words (over a,b,c, all of --length, like
one length of a dataset) are labelled at EVERY position by both, each from its own input
format prepared outside the timed region:

- flloat: ``formula.truth(trace, i)`` for every i of every word, traces being lists of
  ``{symbol: bool}`` (the strict-operator translation of data/ltl/ltlf.py, pinned by
  tests/test_oracles.py), median of --flloat-repeats passes (flloat is slow);
- ours: ``label_positions`` on the (words, length) array of symbol ids that the samplers
  produce, median of --repeats; and, for information, ``Formula.evaluate_batch`` on the
  words as Python strings (which adds encoding them one symbol at a time).

Throughput is positions labelled per second. Ratios are ours / flloat. Before timing,
the two implementations are checked to agree on every benchmarked position.
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

from flloat.parser.ltlf import LTLfParser  # noqa: E402

from softhard.data.alphabet import Alphabet  # noqa: E402
from softhard.data.ltl import parse  # noqa: E402
from softhard.data.ltl.evaluate import label_positions  # noqa: E402
from softhard.data.ltl.ltlf import to_flloat  # noqa: E402

FORMULAS = [
    "X a",
    "a U b",
    "F (a & X b)",
    "G (a -> F b)",
    "(a | b) U (c & X a)",
    "!(b U (a & G c)) | X X c",
]
SYMBOLS = "abc"


def time_flloat(flloat_formula, traces) -> tuple[float, int, list[list[bool]]]:
    start = time.perf_counter()
    out = [[flloat_formula.truth(trace, i) for i in range(len(trace))] for trace in traces]
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(t) for t in traces), out


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=500)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--flloat-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    alphabet = Alphabet(SYMBOLS)
    ids = np.random.default_rng(args.seed).integers(0, len(SYMBOLS), size=(args.words, args.length))
    words = ["".join(alphabet.decode(row)) for row in ids]
    traces = [[{s: c == s for s in SYMBOLS} for c in w] for w in words]
    flloat_parser = LTLfParser()

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"the same {args.words} words of length {args.length} ({ids.size} positions) for both; "
          f"median of {args.flloat_repeats} passes for flloat, {args.repeats} for ours")
    header = f"{'formula':28s} {'flloat pos/s':>13s} {'ours pos/s':>14s} {'ratio':>9s} {'ours from str':>14s} {'ratio':>8s}"
    print(header)
    print("-" * len(header))
    ratios, string_ratios = [], []
    for text in FORMULAS:
        phi = parse(text)
        flloat_formula = flloat_parser(to_flloat(phi))
        passes = [time_flloat(flloat_formula, traces) for _ in range(args.flloat_repeats)]
        flloat_rate = ids.size / statistics.median(p[0] for p in passes)
        ours_truth = label_positions(phi, ids, alphabet)
        assert ours_truth.tolist() == [[bool(x) for x in row] for row in passes[0][2]], text
        rate = ids.size / median_time(lambda: label_positions(phi, ids, alphabet), args.repeats)
        string_rate = ids.size / median_time(lambda: phi.evaluate_batch(words, alphabet), args.repeats)
        ratios.append(rate / flloat_rate)
        string_ratios.append(string_rate / flloat_rate)
        print(f"{text:28s} {flloat_rate:13,.0f} {rate:14,.0f} {ratios[-1]:8,.0f}x {string_rate:14,.0f} {string_ratios[-1]:7,.0f}x")
    print("-" * len(header))
    print(f"median ratio, ids (the data pipeline): {statistics.median(ratios):,.0f}x")
    print(f"median ratio, from Python strings:     {statistics.median(string_ratios):,.0f}x")


if __name__ == "__main__":
    main()
