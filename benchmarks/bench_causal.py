"""Causal attention with a sink: four ways to run it on SDPA, forward + backward, side by side.

    python benchmarks/bench_causal.py --device cuda --lengths 256,1024,4096,16384
    python benchmarks/bench_causal.py --device cpu --lengths 256,1024,2048 --batch 4

The model's past mask with the sink is "query i sees key columns 0..i+1" of a (T, T+1) score
matrix (sink in column 0). Ways to hand that to F.scaled_dot_product_attention:

    square   one dummy query prepended, is_causal=True on (T+1, T+1), dummy row dropped
             (models.masks.causal_query_padding: what the fast path runs)
    bias     torch.nn.attention.bias.causal_lower_right(T, T+1) on (T, T+1)
    dense    the boolean (T, T+1) mask of models.masks.visibility
    no sink  is_causal=True on (T, T) without the sink: the reference, what
             nn.TransformerEncoder runs for a causal mask

Each is timed as median milliseconds of forward + backward over --steps calls; the ratios
are to `square` (> 1: slower than square).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softhard.models.masks import causal_query_padding, mask_bounds, visibility  # noqa: E402


def attend_square(q, k, v):
    before, after = causal_query_padding(["past"])
    y = F.scaled_dot_product_attention(F.pad(q, (0, 0, before, after)), k, v, is_causal=True)
    return y[:, :, before : before + q.shape[2]]


def attend_bias(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(q.shape[2], k.shape[2]))


def attend_dense(q, k, v):
    allowed = visibility(*mask_bounds(["past"], device=q.device), q.shape[2], key_valid=None)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def attend_no_sink(q, k, v):
    return F.scaled_dot_product_attention(q, k[:, :, 1:], v[:, :, 1:], is_causal=True)


VARIANTS = {"square": attend_square, "bias": attend_bias, "dense": attend_dense, "no sink": attend_no_sink}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(attend, q, k, v, warmup: int, steps: int) -> float:
    def step():
        for t in (q, k, v):
            t.grad = None
        attend(q, k, v).sum().backward()

    for _ in range(warmup):
        step()
    sync(q.device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(q.device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lengths", default="256,1024,4096", help="comma-separated sequence lengths T")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default bf16 on cuda, fp32 on cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# torch {torch.__version__} on {name}; {dtype}; batch {args.batch}, heads {args.heads}, "
          f"d_head {args.d_head}; median ms of {args.steps} forward + backward")
    print(f"{'T':>6} " + " ".join(f"{v + ' ms':>11}" for v in VARIANTS) + " "
          + " ".join(f"{v + '/square':>15}" for v in list(VARIANTS)[1:]))
    g = torch.Generator().manual_seed(0)
    for T in (int(t) for t in args.lengths.split(",")):
        shapes = [(args.batch, args.heads, T, args.d_head)] + [(args.batch, args.heads, T + 1, args.d_head)] * 2
        q, k, v = (torch.randn(s, generator=g).to(device, dtype).requires_grad_() for s in shapes)
        ms = {name: median_ms(attend, q, k, v, args.warmup, args.steps) for name, attend in VARIANTS.items()}
        print(f"{T:>6} " + " ".join(f"{ms[v]:>11.2f}" for v in VARIANTS) + " "
              + " ".join(f"{ms[v] / ms['square']:>15.2f}" for v in list(VARIANTS)[1:]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
