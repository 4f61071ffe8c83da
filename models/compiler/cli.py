"""`softhard construct`: compile a formula and measure it against data.ltl, one JSON line per length.

    softhard construct --formula "a S b" --alphabet a,b,c --mode soft-scaled --lengths 16,256,4096 --json

For each length, ``--words`` members and ``--words`` non-members are sampled exactly
(data/), the compiled model runs on the explicit attention path one word at a time, and
the line reports ``length``, ``accuracy`` (per-position agreement with data.ltl),
``string_accuracy`` (last position), ``max_offtarget_mass`` (the largest attention mass any
head puts outside its hard target set, sink included as column 0) and ``temperatures``
(each head's tau). In soft-scaled mode the model is compiled for each length n.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from data.alphabet import Alphabet
from data.errors import EmptyClassError
from data.language import Language
from data.ltl import parse
from models.compiler.compiling import compile_formula

MODES = ("hard", "soft-unbounded", "soft-scaled")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@torch.no_grad()
def measure(language: Language, mode: str, length: int, words: int, dtype: str, device: str, seed: int) -> dict:
    compiled = compile_formula(language.formula, language.alphabet, mode=mode, length=length)
    model = compiled.model.to(device)
    if dtype == "float64":
        model = model.double()
    rng = np.random.default_rng([seed, length])
    samples = []
    for label in ("positive", "negative"):
        try:
            samples.append(language.sample(length, words, label, rng))
        except EmptyClassError:
            continue
    if not samples:
        raise EmptyClassError(f"{language.title} has no word of length {length} in either class")
    ids = np.concatenate(samples)
    truth = language.label(ids)
    right = offtarget = 0.0
    string_right = 0
    for row in range(len(ids)):
        word = torch.as_tensor(ids[row : row + 1], device=device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            output = model(word, return_attention=True)
        predicted = (output.position_logits[0] > 0).cpu().numpy()
        right += float((predicted == truth[row]).mean())
        string_right += int(predicted[-1] == truth[row, -1])
        targets = compiled.hard_targets(ids[row : row + 1])
        for info, target in zip(compiled.heads, targets):
            weights = output.attention[info.layer][0, info.head].float().cpu().numpy()  # (n, n+1)
            outside = np.where(target[0], 0.0, weights).sum(axis=-1).max()
            offtarget = max(offtarget, float(outside))
    return {
        "length": length,
        "mode": mode,
        "dtype": dtype,
        "words": len(ids),
        "accuracy": right / len(ids),
        "string_accuracy": string_right / len(ids),
        "max_offtarget_mass": offtarget,
        "temperatures": [info.tau for info in compiled.heads],
    }


def _lengths(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated lengths such as 16,256, got {text!r}") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"lengths must be >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softhard construct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formula", required=True)
    parser.add_argument("--alphabet", required=True, help="comma-separated symbols, e.g. a,b,c")
    parser.add_argument("--mode", choices=MODES, default="hard")
    parser.add_argument("--lengths", type=_lengths, default=[16, 256])
    parser.add_argument("--words", type=int, default=4, help="words per class and length (default: %(default)s)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="JSON lines (the default output is the same lines)")
    args = parser.parse_args(argv)
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        language = Language(parse(args.formula), Alphabet.from_text(args.alphabet))
        for length in args.lengths:
            print(json.dumps(measure(language, args.mode, length, args.words, args.dtype, args.device, args.seed)),
                  flush=True)
    except (ValueError, NotImplementedError) as error:
        print(f"softhard construct: error: {error}", file=sys.stderr)
        return 2
    return 0
