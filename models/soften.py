"""Hard attention -> softmax at per-head temperatures for words up to length N (`softhard soften`).

Yang et al.: temperature scaling lets softmax simulate average-hard attention transformers with
the uniform-tieless property (at every query the maximal scores tie exactly and every other
visible score lies a gap g below them): softmax at temperature tau puts at most n exp(-g / tau)
off the maxima, so tau = g / ln((N + 1) / eps) keeps every head within eps of average-hard on
its maxima for the N + 1 keys (sink included) of a word of length N. Here, for every hard head
(rightmost, leftmost, average) of a model:

1. the property is checked on words (all words up to a small length, then K words sampled up to
   N, on the hard model): average-hard heads must not have near-ties (a non-maximal score within
   NEAR_TIE_ULPS rounding units of the top: rounding, not a margin); a unique-hard head may tie
   its maxima only where every tied key carries the same value (then averaging them equals
   picking one); otherwise it is a *violation*, reported with the word and query that show it;
2. the minimum gap g over those words and queries, with the word and query where it is smallest;
3. tau at N by the gap lemma; each head's largest L1 distance between softmax at tau and
   average-hard attention on its maxima, on the hard model's inputs (the lemma bounds it by about 2 eps);
4. the softened model (those heads softmax at fixed tau) verified against the hard model: the
   position and string predictions of every word must agree.

The guarantee holds on the words seen: a gap measured on them is only a lower bound over them,
and a word outside them may have a smaller one (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from softhard.models.blocked import blocked_forward, parse_device
from softhard.models.checkpoint import RUN_CHECKPOINT, load_checkpoint, save_checkpoint
from softhard.models.heads import head_name, parse_kinds, with_kinds
from softhard.models.transformer import Transformer

EPS = 1e-3  # the attention error per head the temperatures allow
WORDS = 32  # sampled words up to N
EXHAUSTIVE_WORDS = 4096  # all words up to the longest length whose words, with the shorter ones, fit this
NEAR_TIE_ULPS = 16  # a gap below this many float rounding units of the top score is a near-tie
VALUE_TOLERANCE = 1e-6  # tied keys of a unique-hard head whose values differ by more than this (relative) differ
ADVICE = {
    "tied maxima": "give the scores a tie-breaking feature (e.g. a position term) or use the average-hard kind",
    "near-tie": "make the tie exact or widen the margin (a tie-breaking feature); softmax cannot separate it",
}


@dataclasses.dataclass
class HeadReport:
    head: str  # L<layer>H<head>
    kind: str  # its hard kind
    gap: float = math.inf  # the smallest gap of the maxima over the other visible keys (inf: never a competitor)
    word: list | None = None  # the word (symbol ids) and query where it was smallest
    query: int | None = None
    tau: float | None = None  # the temperature at N
    distance: float | None = None  # largest L1 distance of softmax at tau to average-hard on the maxima
    violation: str | None = None  # "tied maxima" | "near-tie", with violation_word / violation_query
    violation_word: list | None = None
    violation_query: int | None = None

    @property
    def advice(self) -> str | None:
        return ADVICE.get(self.violation)


def hard_heads(model: Transformer) -> list[tuple[int, int]]:
    return [(layer, head) for layer, kinds in enumerate(model.attention_kinds)
            for head, kind in enumerate(kinds) if kind != "softmax"]


def exhaustive_length(vocab: int, length: int, exhaustive_words: int = EXHAUSTIVE_WORDS) -> int:
    """The longest m <= length such that all words of lengths 1..m number at most ``exhaustive_words``."""
    m, total = 0, 0
    while m < length and total + vocab ** (m + 1) <= exhaustive_words:
        m, total = m + 1, total + vocab ** (m + 1)
    return m


def words_up_to(vocab: int, length: int, sampled: int, seed: int) -> list[np.ndarray]:
    """Batches of equal-length words: every word up to ``exhaustive_length``, then ``sampled``
    uniform words at lengths spread geometrically beyond it up to ``length`` (the last at it)."""
    m = exhaustive_length(vocab, length)
    batches = [np.array(list(itertools.product(range(vocab), repeat=n)), dtype=np.int64) for n in range(1, m + 1)]
    if m < length and sampled:
        rng = np.random.default_rng(seed)
        lengths, counts = np.unique(np.geomspace(m + 1, length, sampled).round().astype(int), return_counts=True)
        batches += [rng.integers(0, vocab, size=(int(c), int(n))) for n, c in zip(lengths, counts)]
    return batches


def _head_observer(reports: dict, ids: torch.Tensor, taus: dict | None):
    """An Observer that updates ``reports`` (gap, witnesses, violations; with taus: the L1 distances)."""
    def observe(layer, head, i0, k0, scores, allowed, weights, values):
        report = reports[layer, head]
        scores = scores.double().masked_fill(~allowed, -math.inf)  # (B, blk, 1 + K)
        top = scores.amax(-1, keepdim=True)
        is_max = scores == top
        others = scores.masked_fill(is_max, -math.inf).amax(-1)  # (B, blk)
        gap = top[..., 0] - others  # inf: no competitor
        if taus is not None:  # the gap lemma's distance: softmax at tau against average-hard on the maxima
            soft = torch.softmax((scores - top) / taus[layer, head], dim=-1)
            average = is_max / is_max.sum(-1, keepdim=True)
            report.distance = max(report.distance or 0.0, float((soft - average).abs().sum(-1).max()))
            return
        b, i = np.unravel_index(int(gap.argmin()), tuple(gap.shape))
        if float(gap[b, i]) < report.gap:
            report.gap, report.word, report.query = float(gap[b, i]), ids[b].tolist(), i0 + int(i)
        if report.violation:
            return
        near = gap < NEAR_TIE_ULPS * torch.finfo(torch.float32).eps * top[..., 0].abs().clamp(min=1.0)
        if report.kind != "average":  # ties are harmless where the tied keys' values agree
            problems = [("tied maxima", _values_differ(is_max, values)), ("near-tie", near)]
        else:
            problems = [("near-tie", near)]
        for name, where in problems:
            if bool(where.any()):
                b, i = np.unravel_index(int(where.flatten().nonzero()[0]), tuple(where.shape))
                report.violation, report.violation_word, report.violation_query = name, ids[b].tolist(), i0 + int(i)
                return
    return observe


def _values_differ(tied: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(B, blk): whether the keys tied at the top (tied (B, blk, 1 + K)) carry values that differ
    by more than VALUE_TOLERANCE (relative to max(1, |v|)) in some coordinate; values (B, 1 + K, dh)."""
    differ = torch.zeros(tied.shape[:2], dtype=torch.bool, device=tied.device)
    for d in range(values.shape[-1]):  # one coordinate at a time: no (B, blk, 1 + K, dh) tensor
        v = values[:, None, :, d].double()  # (B, 1, 1 + K)
        high = v.masked_fill(~tied, -math.inf).amax(-1)
        low = v.masked_fill(~tied, math.inf).amin(-1)
        differ |= (high - low) > VALUE_TOLERANCE * torch.maximum(high.abs(), low.abs()).clamp(min=1.0)
    return differ


def measure(model: Transformer, batches: list[np.ndarray], taus: dict | None = None) -> dict:
    """{(layer, head): HeadReport} of the hard heads over the words (module docstring, steps 1-3)."""
    reports = {(l, h): HeadReport(head_name(l, h), model.attention_kinds[l][h]) for l, h in hard_heads(model)}
    device = next(model.parameters()).device
    for ids in batches:
        ids = torch.as_tensor(ids, device=device)
        blocked_forward(model, ids, observe=_head_observer(reports, ids, taus))
    return reports


def temperature(gap: float, length: int, eps: float) -> float:
    """The gap lemma's temperature for words up to ``length``: g / ln((length + 1) / eps) (1 without competitors)."""
    return gap / math.log((length + 1) / eps) if math.isfinite(gap) else 1.0


def soften_model(model: Transformer, taus: dict) -> Transformer:
    """A copy of ``model`` whose heads (layer, head) in ``taus`` are softmax at fixed temperature taus[...]."""
    kinds, modes = model.attention_kinds, model.config.per_head("temperature")  # the kinds as set now
    schedule = float(model.tau_schedule)
    tau = [[float(t) for t in block.attn.temperatures()] for block in model.blocks]  # learned: their value now
    for layer, block in enumerate(model.blocks):
        for head in range(block.attn.n_heads):
            if (layer, head) in taus:
                kinds[layer][head], modes[layer][head] = "softmax", "fixed"
                tau[layer][head] = taus[layer, head] / schedule  # the schedule's multiplier stays in the checkpoint
    config = dataclasses.replace(model.config, attention_kind=kinds, temperature=modes, tau=tau)
    soft = Transformer(config)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("attn.tau")}  # the new taus stay
    missing, unexpected = soft.load_state_dict(state, strict=False)
    # only the taus set above, and the learned temperatures of heads now fixed, may differ
    if not all(k.endswith("attn.tau") for k in missing) or not all(k.endswith("log_tau") for k in unexpected):
        raise RuntimeError(f"softened model does not take the weights: missing {missing}, unexpected {unexpected}")
    return soft.to(next(model.parameters()).device).eval()


def agreement(hard: Transformer, soft: Transformer, batches: list[np.ndarray]) -> tuple[int, int, list | None]:
    """(words, words whose position and string predictions agree, the first word that does not)."""
    total, agree, witness = 0, 0, None
    device = next(hard.parameters()).device
    for ids in batches:
        ids = torch.as_tensor(ids, device=device)
        (hp, hs), (sp, ss) = blocked_forward(hard, ids), blocked_forward(soft, ids)
        same = ((hp > 0) == (sp > 0)).all(-1) & ((hs > 0) == (ss > 0))
        total, agree = total + len(ids), agree + int(same.sum())
        if witness is None and not bool(same.all()):
            witness = ids[int((~same).nonzero()[0])].tolist()
    return total, agree, witness


def soften(model: Transformer, length: int, eps: float = EPS, words: int = WORDS, seed: int = 0) -> dict:
    """Check, measure, soften and verify (module docstring). Returns the JSON-able result with
    "model" (the softened Transformer, None when a head violates the property)."""
    batches = words_up_to(model.config.vocab_size, length, words, seed)
    reports = measure(model, batches)
    violations = [r for r in reports.values() if r.violation]
    softened, counts = None, (0, 0, None)
    if not violations:
        taus = {key: temperature(r.gap, length, eps) for key, r in reports.items()}
        for key, r in measure(model, batches, taus).items():
            reports[key].tau, reports[key].distance = taus[key], r.distance
        softened = soften_model(model, taus)
        counts = agreement(model, softened, batches)
    exhaustive = exhaustive_length(model.config.vocab_size, length)
    return {
        "length": length, "eps": eps, "exhaustive_up_to": exhaustive,
        "sampled_words": sum(len(b) for b in batches if b.shape[1] > exhaustive), "seed": seed,
        "heads": [{**dataclasses.asdict(r), "gap": r.gap if math.isfinite(r.gap) else None, "advice": r.advice}
                  for r in reports.values()],  # gap None: the head never had a competitor
        "words": counts[0], "agreeing_words": counts[1], "disagreeing_word": counts[2],
        "model": softened,
    }


def table(result: dict) -> str:
    """The per-head table as markdown."""
    lines = ["| head | kind | gap | word | query | tau at N | L1 to average-hard | violation |", "|" + " --- |" * 8]
    for h in result["heads"]:
        word, query = (h["violation_word"], h["violation_query"]) if h["violation"] else (h["word"], h["query"])
        shown = "" if word is None else "".join(map(str, word)) if len(word) <= 24 else f"{len(word)} symbols"
        tau = "" if h["tau"] is None else f"{h['tau']:.4g}"
        distance = "" if h["distance"] is None else f"{h['distance']:.2g}"
        gap = "none" if h["gap"] is None else f"{h['gap']:.6g}"
        lines.append(f"| {h['head']} | {h['kind']} | {gap} | {shown} | {query} | {tau} | {distance} | "
                     f"{h['violation'] or ''} |")
    return "\n".join(lines)


def load_model(path: Path, device: str = "cpu") -> Transformer:
    """A run folder (its checkpoints/last.ckpt) or a run-format checkpoint file."""
    file = path / RUN_CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"MODEL: {path} is neither a run folder with {RUN_CHECKPOINT} nor a checkpoint file")
    try:
        return load_checkpoint(file, device)
    except (KeyError, TypeError, RuntimeError, EOFError) as error:
        raise ValueError(f"MODEL: {file} is not a checkpoint of the models/ Transformer ({error})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softhard soften", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL", help="a run folder, a saved construction, or a checkpoint file; "
                                                      "its hard heads (rightmost, leftmost, average) are softened")
    parser.add_argument("--length", type=int, required=True, help="N, the longest word length to simulate")
    parser.add_argument("--kinds", default="", help="hard kinds to set first, L0H0=rightmost,L1H2=average "
                                                    "(a trained softmax model in hard mode)")
    parser.add_argument("--eps", type=float, default=EPS, help="attention error per head (default %(default)s)")
    parser.add_argument("--words", type=int, default=WORDS, help="sampled words up to N (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled words (default %(default)s)")
    parser.add_argument("--out", default=None, help="folder for soften.json and softened.ckpt (default: MODEL's folder "
                                                    "/ softened-N<length>)")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name, value, ok in [("--length", args.length, args.length >= 1), ("--eps", args.eps, 0 < args.eps < 1),
                                ("--words", args.words, args.words >= 0), ("--seed", args.seed, args.seed >= 0)]:
            if not ok:
                raise ValueError(f"{name}: {value} is out of range")
        path = Path(args.model)
        out = Path(args.out) if args.out else (path if path.is_dir() else path.parent) / f"softened-N{args.length}"
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} is a file")
        model = load_model(path, str(parse_device(args.device)))
        model.set_attention_kind(with_kinds(model.attention_kinds, parse_kinds(args.kinds)))
        if not hard_heads(model):
            raise ValueError(f"MODEL: {path} has no hard head to soften (every head is softmax; give --kinds)")
    except ValueError as error:
        print(f"softhard soften: {error}", file=sys.stderr)
        return 2
    result = soften(model, args.length, args.eps, args.words, args.seed)
    softened = result.pop("model")
    out.mkdir(parents=True, exist_ok=True)
    if softened is not None:
        result["checkpoint"] = str(save_checkpoint(softened, out / "softened.ckpt"))
    (out / "soften.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    for h in result["heads"]:
        if h["violation"]:
            print(f"{h['head']} ({h['kind']}) violates the uniform-tieless property: {h['violation']} on word "
                  f"{h['violation_word']} at query {h['violation_query']}; {h['advice']}")
    if softened is None:
        return 1
    print(f"soft agrees with hard on {result['agreeing_words']} of {result['words']} words "
          f"(all up to length {result['exhaustive_up_to']}, {result['sampled_words']} sampled up to {args.length})")
    print(f"wrote {out / 'soften.json'} and {result['checkpoint']}")
    return 0 if result["agreeing_words"] == result["words"] else 1
