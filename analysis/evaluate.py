"""A trained model under other attention, at lengths far beyond training (`softhard evaluate`).

Three evaluations of the same weights on exactly sampled words (members and non-members,
balanced, per length), each a row of ``evaluation.csv`` per length:

* ``as-trained``  the model as it is;
* ``hardened``    every head matched to a construction head (analysis.attention.best_matches,
  with at least COUNTERPART_MASS of its attention on that head's targets, the counterparts of
  analysis.temperature) switched to that head's hard kind (``HARD_KIND``: rightmost for the last-target
  rule of Y / S, leftmost for the first-target rule of X / U, average-hard for set-valued and
  counting heads); explicit ``kinds`` override the matching; the other heads stay softmax and
  the row names them (``softmax_heads``). If this generalizes where as-trained does not, the
  model found the right targets and only its sharpness fails with the length;
* ``gap-rule``    softmax with each matched head's temperature set, at every length n, from its
  target-set gap g measured on the words of that length (the smallest over words and queries of
  the lowest target score minus the highest other visible score, analysis.temperature
  .target_set_gap, in the gap-rule model itself, layer by layer): tau(n) = g / ln((n + 1) / eps),
  the paper's prescription with n + 1 keys (the sink included). A head whose gap is not
  positive (its targets do not beat the rest) or that has no match keeps its own temperature
  (``tau_L<l>H<h>`` NaN).

Everything runs through models.blocked.blocked_forward: memory linear in the length.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from softhard.analysis.attention import best_matches, construction_for
from softhard.analysis.runs import RunFolder, RunSkipped
from softhard.analysis.temperature import COUNTERPART_MASS, EPS, target_set_gap
from softhard.data.language import Language
from softhard.models.blocked import blocked_forward, parse_device
from softhard.models.compiler import CompiledModel
from softhard.models.compiler.blocked import head_targets
from softhard.models.heads import head_name, parse_kinds, with_kinds
from softhard.models.masks import MASK_BOUNDS, band
from softhard.models.soften import temperature as gap_lemma_temperature
from softhard.models.transformer import Transformer
from softhard.train.run_folder import EVALUATION_COLUMNS, write_evaluation_table

ATTENTIONS = ("as-trained", "hardened", "gap-rule")
HARD_KIND = {"last": "rightmost", "first": "leftmost"}  # every other target rule is set-valued: average
FACTORS = (20, 50, 100)  # default lengths beyond the run's test lengths, as multiples of the train length
WORDS = 32  # words per length, half members and half non-members
CHUNK_TOKENS = 2**16  # words per forward pass: about this many positions (as-trained and hardened)


def hard_kind(target_rule: str) -> str:
    """The hard attention kind that simulates a construction head with this target rule."""
    return HARD_KIND.get(target_rule, "average")


def parse_lengths(text: str, name: str = "--lengths") -> list[int]:
    """``40,400`` -> [40, 400]; ValueError names a value that is not a positive integer."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    bad = [v for v in values if not v.isdigit() or int(v) < 1]
    if bad or not values:
        raise ValueError(f"{name}: {bad[0] if bad else text!r} is not a positive integer")
    return [int(v) for v in values]


def matched_heads(matches: pd.DataFrame | None, construction: CompiledModel | None) -> dict:
    """{(layer, head): the HeadInfo of its best construction head} from a pick_best table."""
    if matches is None or construction is None:
        return {}
    infos = {(info.layer, info.head): info for info in construction.heads}
    return {(int(row.layer), int(row.head)): infos[int(row.c_layer), int(row.c_head)]
            for row in matches.itertuples()}


def hardened_kinds(model: Transformer, matched: dict, explicit: dict) -> list[list[str]]:
    """Per layer and head: the hard kind of its match, an explicit kind, else softmax (or its own hard kind)."""
    kinds = model.attention_kinds
    for (layer, head), info in matched.items():
        kinds[layer][head] = hard_kind(info.target_rule)
    return with_kinds(kinds, explicit)


def gap_rule_scales(matched: dict, ids: np.ndarray, alphabet, n_heads: int, eps: float, taus: dict,
                    gaps: dict | None = None):
    """The ``layer_scales`` of blocked_forward for the gap rule; records each matched head's tau(n)
    in ``taus`` (NaN: it keeps its own temperature) and its target-set gap in ``gaps``."""
    gaps = {} if gaps is None else gaps
    n = ids.shape[1]

    def scales(layer: int, scan) -> torch.Tensor:
        out = torch.full((n_heads,), math.nan, dtype=torch.float64)
        for (l, h), info in matched.items():
            if l != layer:
                continue
            targets, smallest = None, [math.inf]

            def measure(i0, k0, scores, allowed, _weights, _values):
                nonlocal targets
                if targets is None:
                    targets = head_targets(info, ids, alphabet, scores.device)
                queries, keys = range(i0, i0 + allowed.shape[0]), range(k0, k0 + allowed.shape[1] - 1)
                # the construction head's band, inside the learned head's
                visible = allowed[:, 1:] & band(*MASK_BOUNDS[info.mask], queries, keys, scores.device)
                sets = targets.block(visible, queries.start, queries.stop, keys.start, keys.stop)
                gap, _ = target_set_gap(scores, sets, allowed.expand_as(sets))
                smallest[0] = min(smallest[0], float(torch.where(gap.isnan(), math.inf, gap).min()))

            scan(h, measure)
            g = gaps[head_name(l, h)] = smallest[0]
            taus[head_name(l, h)] = gap_lemma_temperature(g, n, eps) if 0 < g < math.inf else math.nan
            out[h] = 1.0 / taus[head_name(l, h)]  # NaN: the head keeps its own temperature
        return out

    return scales


@torch.no_grad()
def evaluate_model(model: Transformer, language: Language, lengths: Sequence[int],
                   attentions: Sequence[str] = ATTENTIONS, construction: CompiledModel | None = None,
                   matches: pd.DataFrame | None = None, kinds: dict | None = None, eps: float = EPS,
                   words: int = WORDS, seed: int = 0, device: str = "cpu", progress: bool = True,
                   block: int | None = None) -> pd.DataFrame:
    """The evaluation table (module docstring) of ``model`` on ``language`` at ``lengths``.

    construction and matches (a pick_best table: layer, head, c_layer, c_head, target_rule)
    say which construction head each learned head simulates; kinds ({(layer, head): kind})
    override the hardened kinds. block: queries per block of blocked_forward (default: its own).
    Columns: EVALUATION_COLUMNS, then tau_L<l>H<h> per head (gap-rule rows).
    """
    model = model.to(device).eval()
    matched = matched_heads(matches, construction)
    hardened = hardened_kinds(model, matched, kinds or {})
    heads = [head_name(layer, head) for layer, row in enumerate(model.attention_kinds) for head in range(len(row))]
    rows = []
    steps = tqdm([(a, n) for n in lengths for a in attentions], desc="evaluate", disable=not progress)
    sampled = {}
    for attention, n in steps:
        steps.set_postfix(attention=attention, length=n)
        if n not in sampled:
            sampled[n] = language.sample_both(n, words // 2, seed)
        ids = sampled[n]
        truth = torch.as_tensor(language.label(ids))
        taus = {}
        scales = (gap_rule_scales(matched, ids, language.alphabet, model.config.n_heads, eps, taus)
                  if attention == "gap-rule" else None)
        # chunks of words bound the residual streams; the gap rule takes one gap over all words: one chunk
        step = len(ids) if attention == "gap-rule" else max(1, CHUNK_TOKENS // n)
        outputs = [blocked_forward(model, torch.as_tensor(ids[start:start + step], device=device),
                                   kinds=hardened if attention == "hardened" else None, layer_scales=scales,
                                   block=block) for start in range(0, len(ids), step)]
        position = torch.cat([p for p, _ in outputs]).cpu() > 0
        string = torch.cat([s for _, s in outputs]).cpu() > 0
        kinds_used = hardened if attention == "hardened" else model.attention_kinds
        flat = [kind for row in kinds_used for kind in row]
        rows.append({
            "attention": attention, "length": n, "words": len(ids),
            "string_accuracy": float((string == truth[:, -1]).double().mean()),
            "position_accuracy": float((position == truth).double().mean()),
            "softmax_heads": " ".join(name for name, kind in zip(heads, flat) if kind == "softmax"),
            "kinds": " ".join(f"{name}={kind}" for name, kind in zip(heads, flat)),
            **{f"tau_{name}": taus.get(name, math.nan) for name in heads},
        })
    return pd.DataFrame(rows, columns=[*EVALUATION_COLUMNS, *(f"tau_{name}" for name in heads)])


def default_lengths(run: RunFolder) -> list[int]:
    """The run's test lengths plus FACTORS times its train length."""
    try:
        tested = run.length_table()["length"].unique().tolist()
    except RunSkipped:
        tested = []
    return sorted({int(n) for n in tested} | {f * run.train_length("not evaluated") for f in FACTORS})


def evaluate_run(run: RunFolder, lengths: Sequence[int] | None = None, attentions: Sequence[str] = ATTENTIONS,
                 kinds: dict | None = None, eps: float = EPS, words: int = WORDS, seed: int = 0,
                 device: str = "cpu", progress: bool = True) -> Path:
    """Evaluate a finished run (evaluate_model) and write its ``evaluation.csv``; returns the file.

    Raises RunSkipped when the run lacks what the evaluation needs (a checkpoint; saved
    attention and a construction to match its heads, for hardened without kinds and gap-rule).
    """
    run.check()
    model = run.load_model(device)
    lengths = default_lengths(run) if lengths is None else lengths
    construction = matches = None
    if "gap-rule" in attentions or ("hardened" in attentions and not kinds):
        construction = construction_for(run, "hard")
        matches = best_matches(run)
        # a head simulates its match only with COUNTERPART_MASS of its attention on the targets (as
        # the temperature table judges counterparts); the others stay softmax
        matches = matches[matches.target_mass >= COUNTERPART_MASS]
    kinds = dict(kinds or {})
    table = evaluate_model(model, Language(run.formula, run.alphabet, run.language), lengths, attentions,
                           construction, matches, kinds, eps, words, seed, device, progress)
    return write_evaluation_table(run.path, table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softhard evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (checkpoints/last.ckpt)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--lengths", help="comma-separated word lengths (default: the run's test lengths "
                                         "and 20x, 50x, 100x its train length)")
    where.add_argument("--factor", help="comma-separated multiples of the train length, e.g. 100")
    parser.add_argument("--attention", default=",".join(ATTENTIONS),
                        help=f"comma-separated, of {', '.join(ATTENTIONS)}")
    parser.add_argument("--kinds", default="", help="hardened: explicit kinds per head, L0H0=rightmost,L1H2=average")
    parser.add_argument("--eps", type=float, default=EPS,
                        help="gap rule: the attention error allowed (default %(default)s)")
    parser.add_argument("--words", type=int, default=WORDS, help="words per length, half members (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the word samples (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    return parser


def _arguments(parser: argparse.ArgumentParser, argv) -> dict:
    """The parsed options as evaluate_run's arguments; ValueError names the first bad value."""
    args = parser.parse_args(argv)
    attentions = [a.strip() for a in args.attention.split(",") if a.strip()]
    bad = [a for a in attentions if a not in ATTENTIONS] or ([] if attentions else [args.attention])
    if bad:
        raise ValueError(f"--attention: {bad[0]!r} is not one of {', '.join(ATTENTIONS)}")
    if not (args.eps > 0 and args.eps < 1):
        raise ValueError(f"--eps: {args.eps} is not in (0, 1)")
    if args.words < 2:
        raise ValueError(f"--words: {args.words} is below 2 (one member and one non-member)")
    if args.seed < 0:
        raise ValueError(f"--seed: {args.seed} is negative")
    run = RunFolder(Path(args.run_dir))
    if not run.path.is_dir():
        raise ValueError(f"RUN_DIR: {args.run_dir} is not a folder")
    lengths = None
    if args.lengths:
        lengths = parse_lengths(args.lengths)
    elif args.factor:
        run.check()
        lengths = sorted({f * run.train_length("not evaluated") for f in parse_lengths(args.factor, "--factor")})
    parse_device(args.device)
    return dict(run=run, lengths=lengths, attentions=attentions, kinds=parse_kinds(args.kinds), eps=args.eps,
                words=args.words, seed=args.seed, device=args.device)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        arguments = _arguments(parser, argv)
        file = evaluate_run(**arguments)
    except (ValueError, RunSkipped) as error:
        print(f"softhard evaluate: {error}", file=sys.stderr)
        return 2
    print(f"wrote {file}")
    return 0
