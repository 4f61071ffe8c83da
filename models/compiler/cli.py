"""`softhard construct`: compile a formula and measure it against data.ltl, one JSON line per length.

    softhard construct --formula "a S b" --alphabet a,b,c --mode soft-scaled --lengths 16,256,4096

For each length, ``--words`` members and ``--words`` non-members are sampled exactly
(data/), the compiled model runs through ``blocked.evaluate`` (blocks of queries, memory linear
in the length; ``--dtype`` casts weights and positional features), and the line reports
``length``, ``accuracy`` (per-position agreement with data.ltl), ``string_accuracy`` (last
position), ``max_offtarget_mass`` (the largest attention mass any head puts outside its hard
target set, sink included as column 0) and ``temperatures`` (each head's tau). In soft-scaled
mode the model is compiled for each length n.

``softhard construct --formula F --alphabet A --mode MODE --save-run DIR [--max-length L]``
writes the construction as a run folder instead (softhard.train.construction_run;
``softhard construct --save-run DIR --help`` lists its options).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from softhard.data.alphabet import Alphabet
from softhard.data.language import Language
from softhard.data.ltl import parse
from softhard.models.compiler.blocked import DTYPES, evaluate
from softhard.models.compiler.compiling import compile_formula
from softhard.models.compiler.validation import MODES


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")


def measure(language: Language, mode: str, length: int, words: int, dtype: str, device: str, seed: int) -> dict:
    compiled = compile_formula(language.formula, language.alphabet, mode=mode, length=length)
    ids = language.sample_both(length, words, seed)
    result = evaluate(compiled, ids, dtype=dtype, device=device, offtarget=True)
    right = result.predictions == language.label(ids)  # (2 * words, length)
    return {
        "length": length,
        "mode": mode,
        "dtype": dtype,
        "words": len(ids),
        "accuracy": float(right.mean()),
        "string_accuracy": float(right[:, -1].mean()),
        "max_offtarget_mass": float(result.offtarget.max(initial=0.0)),
        "temperatures": [info.tau for info in compiled.heads],
    }


def parse_lengths(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths such as 16,256, got {text!r}") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"lengths must be >= 1, got {text!r}")
    return values


def at_least(low: int):
    """An argparse type: an integer >= low."""
    def parse_int(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse_int


def add_word_arguments(parser: argparse.ArgumentParser, lengths: list[int]) -> None:
    """The options `softhard construct` and `softhard frontier` share: formula, words and device."""
    parser.add_argument("--formula", required=True)
    parser.add_argument("--alphabet", required=True, help="comma-separated symbols, e.g. a,b,c")
    parser.add_argument("--lengths", type=parse_lengths, default=lengths)
    parser.add_argument("--words", type=at_least(1), default=4, help="words per class and length (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def language_of(args: argparse.Namespace) -> Language:
    """The parsed --formula over --alphabet, after checking --device (ValueError names the bad value)."""
    check_device(args.device)
    return Language(parse(args.formula), Alphabet.from_text(args.alphabet))


def build_parser() -> argparse.ArgumentParser:
    """The `softhard construct` parser, for callers that add options of their own before parsing."""
    parser = argparse.ArgumentParser(prog="softhard construct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_word_arguments(parser, lengths=[16, 256])
    parser.add_argument("--mode", choices=MODES, default="hard")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        language = language_of(args)
        for length in args.lengths:
            print(json.dumps(measure(language, args.mode, length, args.words, args.dtype, args.device, args.seed)),
                  flush=True)
    except (ValueError, NotImplementedError) as error:
        print(f"softhard construct: error: {error}", file=sys.stderr)
        return 2
    return 0
