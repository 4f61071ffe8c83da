"""Peak memory and seconds of `softhard evaluate` (analysis.evaluate.evaluate_model) at growing lengths.

    python benchmarks/bench_evaluate.py                          # CPU, n = 500 .. 4000, the three attentions
    python benchmarks/bench_evaluate.py --lengths 1000,2000,4000,8000 --attention hardened --device cuda

The model has the reference training shape (4 layers x 4 heads, d_model 64, d_ff 256, i/n, log_n
temperature, 3 symbols) with seeded random weights: memory and time do not depend on what the
weights learned. The language is since_ab (`a S b`); for the gap rule, learned head L0H0 is
matched to the hard construction's `a S b` head (a stand-in for analysis.attention's matching,
which needs a trained run's saved attention). Each length runs in a fresh process, and peak
memory is benchmarks/peak_memory.py's (CPU: the rise of the resident set's high-water mark over
one call, glibc mapping every large block; GPU: max_memory_allocated). With a fixed
``--block`` the largest tensors are (B, block, n + 1) and the residual streams (B, n, d_model),
so memory(2n) / memory(n) should be about 2 (linear in n, never n-by-n); time grows about
4-fold per doubling (every query still meets every key).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peak_memory import peak_bytes, per_length  # noqa: E402 (after the path)


def measure(length: int, words: int, attentions: list, device: str, block: int, threads: int | None) -> tuple:
    """(seconds, peak bytes) of one evaluate_model call at ``length``, in this process."""
    import pandas as pd
    import torch

    from softhard.analysis.evaluate import evaluate_model
    from softhard.data.language import Language
    from softhard.models.compiler import compile_formula
    from softhard.models.transformer import Transformer, TransformerConfig

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=3, n_layers=4, n_heads=4, d_model=64, d_ff=256,
                                          positional=["i/n"], temperature="log_n")).eval()
    language = Language.from_text("a S b", "a,b,c")
    construction = compile_formula(language.formula, language.alphabet, "hard")
    matches = pd.DataFrame([dict(layer=0, head=0, c_layer=0, c_head=0, target_rule="last")])

    def run():
        return evaluate_model(model, language, [length], attentions, construction, matches, words=words,
                              device=device, progress=False, block=block)

    evaluate_model(model, language, [8], attentions, construction, matches, words=2, device=device, progress=False)
    language.sample_both(length, words // 2, 0)  # the sampler's tables are built outside the measurement
    start = time.perf_counter()
    peak = peak_bytes(run, device)
    return time.perf_counter() - start, peak


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="500,1000,2000,4000")
    parser.add_argument("--words", type=int, default=8, help="words per length, half members (default: %(default)s)")
    parser.add_argument("--attention", default="as-trained,hardened,gap-rule")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--block", type=int, default=256, help="queries per block (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.lengths.split(",")]
    attentions = args.attention.split(",")
    print(f"since_ab, 4 layers x 4 heads, d_model 64, {args.words} words, {'+'.join(attentions)}, "
          f"block {args.block}, {args.device}, {args.threads or 'default'} threads")
    print(f"{'n':>8} {'seconds':>9} {'peak MiB':>9} {'memory / previous':>18} {'time / previous':>16}")
    rows = per_length(measure, lengths, lambda n: (n, args.words, attentions, args.device, args.block, args.threads))
    for n, (seconds, peak), memory_ratio, time_ratio in rows:
        print(f"{n:>8} {seconds:>9.2f} {peak / 2**20:>9.1f} {memory_ratio:>18} {time_ratio:>16}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
