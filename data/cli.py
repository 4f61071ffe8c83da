"""`softhard data ...`: sample words, build datasets, list and inspect languages."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from softhard.data import registry
from softhard.data.dataset import DEFAULT_CACHE, DatasetSpec, build_dataset, dataset_path, read_manifest, undivided_summary
from softhard.data.language import LABELS, Language


def _language(args) -> Language:
    """The language named by --language, or given by --formula and --alphabet."""
    if args.language:
        if args.formula or args.alphabet:
            raise ValueError("give either --language or --formula with --alphabet, not both")
        return registry.get(args.language).language()
    if not (args.formula and args.alphabet):
        raise ValueError("give --language NAME, or --formula F with --alphabet a,b,c")
    return Language.from_text(args.formula, args.alphabet)


def _add_language_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", help="a registered language (see `softhard data list`)")
    parser.add_argument("--formula", help="an LTL formula, e.g. 'a S b'")
    parser.add_argument("--alphabet", help="comma-separated symbols, e.g. a,b,c")


def _sample(args) -> None:
    language = _language(args)
    rng = np.random.default_rng(args.seed)
    words = language.sample(args.length, args.count, args.label, rng)
    labels = language.label(words)[:, -1] if len(words) else []
    out = sys.stdout
    for ids, label in zip(words, labels):
        out.write(json.dumps({"word": language.alphabet.decode(ids), "label": bool(label)}) + "\n")


def _build(args) -> None:
    language = _language(args)
    spec = DatasetSpec(
        min_length=args.min_length,
        max_length=args.max_length,
        train_per_length=args.train_per_length,
        validation_per_length=args.validation_per_length,
        test_per_length=args.test_per_length,
        test_factor=args.test_factor,
        test_lengths_per_bin=args.test_lengths_per_bin,
        seed=args.seed,
    )
    path = dataset_path(language, spec, args.out)
    cached = path.exists()
    dataset = build_dataset(language, spec, args.out, progress=not args.quiet)
    print(f"{'reused' if cached else 'built'} {path}")
    for split, rows in dataset.items():
        lengths = sorted(set(rows["length"]))
        print(f"  {split:<16} {len(rows):>7} words  lengths {lengths[0]}..{lengths[-1]}  positives {sum(rows['label'])}")
    for line in undivided_summary(read_manifest(path)):
        print(f"  note: {line}")


def _list(args) -> None:
    rows = list(registry.REGISTRY.values())
    if args.kind:
        rows = [row for row in rows if row.kind == args.kind]
    width = max(len(row.name) for row in registry.REGISTRY.values())
    for row in rows:
        print(f"{row.name:<{width}}  {row.kind:<13}  {{{row.alphabet}}}  {row.formula}\n{'':<{width}}  {row.description}")


def _dfa(args) -> None:
    language = _language(args)
    dfa = language.dfa
    print(f"minimal DFA of {language.formula} over {{{language.alphabet}}}: {dfa.num_states} states, start 0")
    print("state  accepting  " + "  ".join(f"{s:>4}" for s in language.alphabet))
    for state in range(dfa.num_states):
        row = "  ".join(f"{int(t):>4}" for t in dfa.transitions[state])
        print(f"{state:>5}  {'yes' if dfa.accepting[state] else 'no':>9}  {row}")


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, else an error naming the flag and the value."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
        return value

    return integer


_positive_int, _seed = _int_at_least(1), _int_at_least(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softhard data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="JSON lines of words drawn uniformly from a class")
    _add_language_options(sample)
    sample.add_argument("--length", type=_positive_int, required=True, help="word length n >= 1")
    sample.add_argument("--count", type=int, required=True, help="number of words")
    sample.add_argument("--label", choices=LABELS, default="any", help="members, non-members, or any word")
    sample.add_argument("--seed", type=_seed, default=0)
    sample.set_defaults(run=_sample)

    build = commands.add_parser("build", help="build (or reuse) the cached Hugging Face dataset of a language")
    _add_language_options(build)
    defaults = DatasetSpec()
    build.add_argument("--min-length", type=_positive_int, default=defaults.min_length)
    build.add_argument("--max-length", type=_positive_int, default=defaults.max_length, help="longest train length")
    build.add_argument("--train-per-length", type=int, default=defaults.train_per_length)
    build.add_argument("--validation-per-length", type=int, default=defaults.validation_per_length)
    build.add_argument("--test-per-length", type=int, default=defaults.test_per_length)
    build.add_argument("--test-factor", type=int, default=defaults.test_factor, help="test bins reach this x max length")
    build.add_argument("--test-lengths-per-bin", type=int, default=defaults.test_lengths_per_bin)
    build.add_argument("--seed", type=_seed, default=defaults.seed)
    build.add_argument("--out", type=Path, default=DEFAULT_CACHE, help="cache folder (default: %(default)s)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(run=_build)

    listing = commands.add_parser("list", help="the registered languages")
    listing.add_argument("--kind", choices=registry.CLASSES)
    listing.set_defaults(run=_list)

    dfa = commands.add_parser("dfa", help="print the minimal DFA of a regular language")
    _add_language_options(dfa)
    dfa.set_defaults(run=_dfa)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:  # bad input, or an --out that cannot be written
        print(f"softhard data {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
