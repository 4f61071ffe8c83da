"""Seconds and peak memory of the blocked evaluator (models/compiler/blocked.py) at growing n.

    python benchmarks/bench_construct.py                                      # CPU, n = 1000 .. 8000
    python benchmarks/bench_construct.py --device cuda --lengths 12500,25000,50000,100000

For each length: compile a depth-3 formula in soft-scaled mode for n, sample ``--words``
members and non-members (as `softhard construct`), then time ``evaluate`` with off-target
masses (the costliest call the sweep makes), best of ``--repeat``. Each length runs in a fresh
process so that no allocator cache of a smaller one hides memory. Peak memory is what one
evaluation adds: on GPU ``torch.cuda.max_memory_allocated`` (all of it lives there); on CPU
(Linux, glibc) the rise of the resident set's high-water mark (reset through
/proc/self/clear_refs) over the resident set just before the call, in a first call during which
every large block is mapped on allocation and unmapped on free (mallopt), so that the resident
set follows the live tensors. With a fixed ``--block`` the largest tensors are (B, block, n + 1),
so memory(2n) / memory(n) should be about 2 (linear in n, never n-by-n); time grows about 4-fold
per doubling (every query still meets every key).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks.peak_memory import peak_bytes, per_length  # noqa: E402 (after the path)


def measure(formula: str, alphabet: str, length: int, words: int, dtype: str, device: str, block: int,
            repeat: int, threads: int | None) -> tuple:
    """(best seconds of `repeat` evaluations, peak bytes one evaluation adds, exact everywhere), in this process."""
    import torch

    from softhard.data.language import Language
    from softhard.models.compiler.blocked import evaluate
    from softhard.models.compiler.compiling import compile_formula

    if threads:
        torch.set_num_threads(threads)
    language = Language.from_text(formula, alphabet)
    compiled = compile_formula(language.formula, language.alphabet, mode="soft-scaled", length=length)
    ids = language.sample_both(length, words, seed=0)
    run = functools.partial(evaluate, compiled, ids, dtype, device, offtarget=True, block=block)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    evaluate(compiled, ids[:, :8], dtype, device, offtarget=True)  # lazy start-up outside the measurements
    peak = peak_bytes(run, device)  # before the timing: the heap holds no large free block yet
    seconds = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        result = run()
        sync()
        seconds.append(time.perf_counter() - start)
    return min(seconds), peak, bool((result.predictions == language.label(ids)).all())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formula", default="(a S b) S (Y (c U a))", help="default: a depth-3 formula")
    parser.add_argument("--alphabet", default="a,b,c")
    parser.add_argument("--lengths", default="1000,2000,4000,8000")
    parser.add_argument("--words", type=int, default=1, help="words per class (default: %(default)s)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--block", type=int, default=256, help="queries per block (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per length, the best kept (default: 3)")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"{args.formula!r} over {args.alphabet}, soft-scaled, {args.dtype} on {args.device}, "
          f"{2 * args.words} words, block {args.block}, {args.threads or 'default'} threads")
    print(f"{'n':>8} {'seconds':>9} {'peak MiB':>9} {'memory / previous':>18} {'time / previous':>16} {'exact':>6}")
    rows = per_length(measure, lengths, lambda n: (args.formula, args.alphabet, n, args.words, args.dtype,
                                                   args.device, args.block, args.repeat, args.threads))
    for n, (seconds, peak, exact), memory_ratio, time_ratio in rows:
        print(f"{n:>8} {seconds:>9.3f} {peak / 2**20:>9.1f} {memory_ratio:>18} {time_ratio:>16} {exact!s:>6}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
