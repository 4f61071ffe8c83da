"""A compiled construction saved as a run folder that every analysis reads like a trained run.

    softhard construct --formula "a S b" --alphabet a,b,c --mode soft-scaled --save-run runs/constructions/since_ab

The folder claims training length L (``--max-length``, default 20) and holds what `softhard
train` writes: config.yaml (data and model sections as a training config; ``construction``
records the mode and the compile length), run_info.json, checkpoints/last.ckpt (a
LanguageModel checkpoint holding the compiled weights), metrics.jsonl (one record: the
validation split's accuracy, the in-distribution figure), length_generalization.csv (the
compiled model on the test bins of the language's dataset, lengths to 10 L, step 0),
accuracy_by_length.png, and attention/ plus attention_maps.png (the probe words of the
validation split and of every test bin, as AttentionCaptureCallback saves them).

A soft-scaled construction is compiled for n = COMPILE_FACTOR x L, the longest length the
analysis extrapolates a head to (analysis.temperature.FACTORS), so its heads are exact at every
length the folder is tested at or extrapolated to. Hard and soft-unbounded constructions do
not depend on n.

This module sits in train/ (models/ never imports train/); `softhard construct` routes here
when ``--save-run`` is given (softhard/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from softhard.data import registry
from softhard.data.alphabet import Alphabet
from softhard.data.dataset import DEFAULT_CACHE
from softhard.data.files import write_atomically
from softhard.data.ltl import parse
from softhard.models.compiler import MODES, CompiledModel, compile_formula
from softhard.train import plots
from softhard.train.callbacks import capture_attention
from softhard.train.data import LanguageDataModule
from softhard.train import run_folder
from softhard.train.evaluation import length_generalization
from softhard.train.jsonl_logger import JsonlLogger
from softhard.train.module import LanguageModel
from softhard.train.run_folder import ACCURACY_FIGURE, CONFIG, LAST_CHECKPOINT, write_run_info

COMPILE_FACTOR = 100  # soft-scaled: compiled for words up to COMPILE_FACTOR x the claimed train length


def compile_length(mode: str, max_length: int) -> int | None:
    """The n a construction is compiled for (soft-scaled only; the other modes take none)."""
    return COMPILE_FACTOR * max_length if mode == "soft-scaled" else None


def language_name(formula: str, alphabet: str) -> str:
    """The registry name of the language (same formula and alphabet), else "construction"."""
    parsed, symbols = parse(formula), Alphabet.from_text(alphabet)
    for entry in registry.REGISTRY.values():
        language = entry.language()
        if language.formula == parsed and language.alphabet == symbols:
            return entry.name
    return "construction"


def save_construction_run(formula: str, alphabet: str, mode: str, run_dir, max_length: int = 20,
                          probe_words: int = 16, seed: int = 0, cache_dir=DEFAULT_CACHE,
                          command: list[str] | None = None) -> Path:
    """Compile ``formula`` over ``alphabet`` in ``mode`` and write it as the run folder ``run_dir``.

    The dataset (data/, the defaults of `softhard train` with max_length and data_seed = seed)
    is built or reused under ``cache_dir``. Raises ValueError (bad input, a folder that already
    holds files) or NotImplementedError (no construction in this mode) before anything is written.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(f"--save-run {run_dir}: the folder already holds files; choose another")
    if probe_words < 0:
        raise ValueError(f"--probe-words must be >= 0, got {probe_words}")
    data = LanguageDataModule(language=language_name(formula, alphabet), formula=formula, alphabet=alphabet,
                              max_length=max_length, data_seed=seed, cache_dir=str(cache_dir))
    construction = {"mode": mode, "compile_length": compile_length(mode, max_length)}
    compiled = compile_formula(data.language.formula, data.language.alphabet, mode, construction["compile_length"])
    data.setup()  # a language without both classes at these lengths fails here, before the folder
    module = as_language_model(compiled)
    config = {"seed_everything": seed, "data": dict(data.hparams), "model": dict(module.hparams),
              "construction": construction}
    command = command or ["softhard", "construct", "--formula", formula, "--alphabet", alphabet, "--mode", mode,
                          "--save-run", str(run_dir), "--max-length", str(max_length)]

    def write(staging: Path) -> None:
        (staging / LAST_CHECKPOINT.parent).mkdir(parents=True)
        _save_checkpoint(module, staging / LAST_CHECKPOINT)
        (staging / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
        write_run_info(staging, data.language, data.fingerprint, seed, command, construction=construction,
                       cpu_threads=torch.get_num_threads())
        JsonlLogger(staging).log_metrics(validation_metrics(module, data), step=0)
        table = length_generalization(module, data.test_splits(), step=0, progress=False)
        run_folder.append_length_rows(staging, table)
        plots.save(plots.accuracy_by_length(table, title=run_dir.name), staging / ACCURACY_FIGURE)
        if probe_words:
            capture_attention(module, data.dataset, staging, probe_words)

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir, write)  # the folder is complete or absent (onto an empty folder too)
    return run_dir


def validation_metrics(module: LanguageModel, data: LanguageDataModule) -> dict[str, float]:
    """The in-distribution figures a training run logs to metrics.jsonl: val/string_accuracy per
    word and val/position_accuracy per position, on the validation split."""
    table = length_generalization(module, {"validation": data.val_dataloader()}, step=0, progress=False)
    positions = table.words * table.length
    return {"val/string_accuracy": float((table.words * table.string_accuracy).sum() / table.words.sum()),
            "val/position_accuracy": float((positions * table.position_accuracy).sum() / positions.sum())}


def as_language_model(compiled: CompiledModel) -> LanguageModel:
    """A LanguageModel (what a training run checkpoints) holding the compiled transformer's weights."""
    module = LanguageModel(transformer=compiled.model.config)
    module.model.load_state_dict(compiled.model.state_dict())
    return module.eval()


def _save_checkpoint(module: LanguageModel, path: Path) -> None:
    """A Lightning checkpoint of ``module`` at step 0, as a training run's last.ckpt (LanguageModel
    .load_from_checkpoint and analysis.runs.RunFolder.load_model read it)."""
    lightning_log = logging.getLogger("pytorch_lightning")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # no "GPU available" lines: this trainer only writes the file
    try:
        trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", devices=1, max_epochs=0)
    finally:
        lightning_log.setLevel(level)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path, weights_only=False)  # as ModelCheckpoint writes it: random states included


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softhard construct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formula", required=True)
    parser.add_argument("--alphabet", required=True, help="comma-separated symbols, e.g. a,b,c")
    parser.add_argument("--mode", choices=MODES, default="hard")
    parser.add_argument("--save-run", type=Path, required=True, metavar="DIR", help="the run folder to write")
    parser.add_argument("--max-length", type=_positive, default=20, metavar="L",
                        help="the train length the folder claims; test bins reach 10 L (default: %(default)s)")
    parser.add_argument("--probe-words", type=int, default=16,
                        help="words per split whose attention is saved (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="dataset cache folder (default: %(default)s)")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        path = save_construction_run(args.formula, args.alphabet, args.mode, args.save_run, args.max_length,
                                     args.probe_words, args.seed, args.cache_dir, ["softhard", "construct", *argv])
    except (ValueError, NotImplementedError, OSError) as error:
        print(f"softhard construct: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"softhard construct: run folder {path}")
    return 0
