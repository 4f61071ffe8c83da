"""Training throughput (tokens/s) of a reference config through the real Lightning loop.

    python benchmarks/bench_training.py --device cpu
    python benchmarks/bench_training.py --device cuda --precision bf16-mixed

Runs the Lightning fit loop of `softhard train` (LanguageDataModule, LanguageModel) on the
reference language without loggers or evaluation, times every training batch with a
callback, and prints the median tokens/s (real, non-padding positions) after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softhard.models import TransformerConfig  # noqa: E402
from softhard.train.data import LanguageDataModule  # noqa: E402
from softhard.train.module import LanguageModel  # noqa: E402


class BatchTimer(pl.Callback):
    def __init__(self):
        self.samples = []  # (seconds, tokens)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.started = time.perf_counter()
        self.tokens = int(batch["lengths"].sum())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples.append((time.perf_counter() - self.started, self.tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--language", default="since_ab")
    parser.add_argument("--max-length", type=int, default=40)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    pl.seed_everything(0, verbose=False)
    timer = BatchTimer()
    with tempfile.TemporaryDirectory() as folder:
        data = LanguageDataModule(args.language, max_length=args.max_length, train_per_length=256, test_factor=1,
                                  batch_size=64, cache_dir=f"{folder}/data")
        config = TransformerConfig(n_layers=4, n_heads=4, d_model=64, d_ff=256)
        model = LanguageModel(config, vocab_size=data.vocab_size)
        trainer = pl.Trainer(max_steps=args.steps, limit_val_batches=0, accelerator=args.device,
                             precision=args.precision, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                             default_root_dir=folder)
        trainer.fit(model, datamodule=data)
    measured = timer.samples[args.warmup:]
    rates = [tokens / seconds for seconds, tokens in measured]
    print(f"reference config: {args.language}, lengths 1..{args.max_length}, batch 64, 4 layers x 4 heads, d_model 64")
    print(f"device {args.device}, precision {args.precision}: median {statistics.median(rates):,.0f} tokens/s "
          f"over {len(rates)} steps (after {args.warmup} warm-up), median step {statistics.median(s for s, _ in measured) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
