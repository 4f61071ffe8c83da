"""Training-step throughput of models.transformer: fast (SDPA) path, explicit path, and
PyTorch's nn.TransformerEncoder at the same size, side by side in one run.

    python benchmarks/bench_models.py --device cuda --lengths 64,256,1024,4096
    python benchmarks/bench_models.py --device cpu --lengths 64,256 --d-model 64 --tokens 4096

A step is forward + backward + AdamW update on random words with random per-position and
per-word labels (BCE). Each configuration is timed over --steps rounds after --warmup steps;
the steps of the three models alternate (one step of each per round), and the table gives
median milliseconds per step, tokens per second of the fast path, and the ratios of the other
two to the fast path, each the median over rounds of the two step times of the same round
(> 1: slower than the fast path). On CPU the script also times one forward + backward at
batch 32, length 256, 4 layers, width 64.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softhard.models.positional import sinusoidal  # noqa: E402
from softhard.models.transformer import Transformer, TransformerConfig  # noqa: E402


class TorchEncoder(nn.Module):
    """nn.TransformerEncoder with the same embedding, positions and output heads as Transformer."""

    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, norm_first: bool):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.position_head, self.string_head = nn.Linear(d_model, 1), nn.Linear(d_model, 1)

    def forward(self, x, causal: bool):
        T = x.shape[1]
        h = self.tok_emb(x) + sinusoidal(T, self.tok_emb.embedding_dim, x.device)[None]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device) if causal else None
        h = self.ln_f(self.encoder(h, mask=mask, is_causal=causal))
        return self.position_head(h).squeeze(-1), self.string_head(h[:, -1]).squeeze(-1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_rounds(steps: dict, device, warmup: int, rounds: int) -> dict:
    """Seconds per call of each of `steps` (name -> callable), after `warmup` calls of each.

    Timed in rounds: every round times one call of each in turn, starting one further along
    each round, so that the machine's drift (other tenants, clocks) hits them all alike.
    Returns name -> the list of per-round times.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def ratio(times: dict, name: str, base: str) -> float:
    """Median over rounds of name's step time over base's in the same round (> 1: name is slower)."""
    if name not in times or base not in times:
        return math.nan
    return statistics.median(a / b for a, b in zip(times[name], times[base]))


def training_step(model, forward, x, y_pos, y_str, autocast):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)  # what CUDA uses by default, on CPU too

    def step():
        with autocast():
            pos, string = forward(x)
            loss = F.binary_cross_entropy_with_logits(pos.float(), y_pos) + F.binary_cross_entropy_with_logits(
                string.float(), y_str
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run_length(args, device, T: int) -> dict:
    B = max(1, args.tokens // T)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (B, T), generator=g).to(device)
    y_pos = torch.randint(0, 2, (B, T), generator=g).float().to(device)
    y_str = torch.randint(0, 2, (B,), generator=g).float().to(device)
    if args.dtype == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    row = {"T": T, "B": B}
    cfg = dict(
        vocab_size=args.vocab, n_layers=args.layers, n_heads=args.heads, d_model=args.d_model, d_ff=args.d_ff,
        norm="pre" if args.norm_first else "post", positional=["sinusoidal"], mask=args.mask,
        attn_fp32=not args.no_attn_fp32,
    )
    candidates = {
        "fast": lambda: Transformer(TransformerConfig(fast=True, **cfg)),
        "explicit": lambda: Transformer(TransformerConfig(fast=False, **cfg)),
        "torch": lambda: TorchEncoder(args.vocab, args.d_model, args.heads, args.layers, args.d_ff, args.norm_first),
    }
    steps = {}
    for name, build in candidates.items():
        torch.manual_seed(0)
        model = build().to(device).train()
        if name == "torch":
            forward = lambda inp, m=model: m(inp, causal=args.mask == "past")  # noqa: E731
        else:
            forward = lambda inp, m=model: (lambda o: (o.position_logits, o.string_logits))(m(inp))  # noqa: E731
        step = training_step(model, forward, x, y_pos, y_str, autocast)
        try:
            step()  # a model that does not fit is left out of the rounds
            steps[name] = step
        except torch.OutOfMemoryError:
            del model, forward, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
    times = time_rounds(steps, device, args.warmup, args.steps)
    for name in candidates:
        row[name] = statistics.median(times[name]) if name in times else math.nan
    row["explicit/fast"], row["torch/fast"] = ratio(times, "explicit", "fast"), ratio(times, "torch", "fast")
    return row


def cpu_check(rounds: int) -> dict:
    """Forward + backward at batch 32, length 256, 4 layers, width 64 (4 heads, d_ff 256) on CPU."""
    x = torch.randint(0, 2, (32, 256))
    steps = {}
    for fast in (True, False):
        torch.manual_seed(0)
        model = Transformer(TransformerConfig(vocab_size=2, n_layers=4, n_heads=4, d_model=64, d_ff=256, fast=fast))

        def step(model=model):
            o = model(x)
            (o.position_logits.sum() + o.string_logits.sum()).backward()

        steps["fast" if fast else "explicit"] = step
    times = time_rounds(steps, torch.device("cpu"), 2, rounds)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lengths", default="64,256,1024,4096", help="comma-separated sequence lengths")
    p.add_argument("--tokens", type=int, default=32768, help="tokens per batch; batch = max(1, tokens // length)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-ff", type=int, default=None, help="default 4 * d_model")
    p.add_argument("--vocab", type=int, default=4)
    p.add_argument("--mask", choices=["none", "past"], default="none", help="past: causal masks in all three")
    p.add_argument("--norm-first", action=argparse.BooleanOptionalAction, default=True, help="pre-norm (default) or post-norm")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="bf16 autocast; default bf16 on cuda, fp32 on cpu")
    p.add_argument("--no-attn-fp32", action="store_true", help="let the attention run in the autocast dtype")
    p.add_argument("--steps", type=int, default=10, help="timed rounds, one training step of each model per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-cpu-check", action="store_true", help="skip the batch-32/length-256 CPU timing")
    args = p.parse_args(argv)
    args.d_ff = args.d_ff or 4 * args.d_model
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    device = torch.device(args.device)
    lengths = [int(v) for v in args.lengths.split(",")]

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# torch {torch.__version__} on {name}; {args.dtype}; layers {args.layers}, heads {args.heads}, "
          f"d_model {args.d_model}, d_ff {args.d_ff}, mask {args.mask}, {'pre' if args.norm_first else 'post'}-norm, "
          f"attn_fp32 {not args.no_attn_fp32}; median of {args.steps} rounds of one training step "
          "(fwd+bwd+AdamW) of each model")
    print(f"{'T':>6} {'B':>5} {'fast ms':>9} {'explicit ms':>12} {'torch ms':>9} {'fast tok/s':>11} "
          f"{'explicit/fast':>14} {'torch/fast':>11}")
    for T in lengths:
        r = run_length(args, device, T)
        print(f"{r['T']:>6} {r['B']:>5} {1e3 * r['fast']:>9.2f} {1e3 * r['explicit']:>12.2f} {1e3 * r['torch']:>9.2f} "
              f"{r['B'] * r['T'] / r['fast']:>11.0f} {r['explicit/fast']:>14.2f} {r['torch/fast']:>11.2f}",
              flush=True)
    if device.type == "cpu" and not args.no_cpu_check:
        c = cpu_check(args.steps)
        print(f"# CPU forward+backward, batch 32, length 256, 4 layers, width 64: "
              f"fast {1e3 * c['fast']:.0f} ms, explicit {1e3 * c['explicit']:.0f} ms (median of {args.steps})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
