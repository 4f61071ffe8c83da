"""The compiled artefact: the Transformer plus what each piece computes (tracr-style metadata)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from softhard.data.alphabet import Alphabet
from softhard.data.ltl.evaluate import label_positions
from softhard.data.ltl.syntax import Formula
from softhard.models.masks import MASK_BOUNDS, band
from softhard.models.transformer import Transformer


@dataclass
class HeadInfo:
    """One compiled head: where it sits, what it computes, and whom hard attention selects."""

    layer: int
    head: int
    operator: str  # Y X O H F G S U, "#" (a count) or "compare" (a sign head of a comparison)
    subformula: str  # text of the subformula it computes (str(node), as in residual_layout)
    node: Formula
    mask: str  # strict_past | strict_future (temporal), past (counting)
    kind: str  # its attention kind in the model: rightmost / leftmost / average (hard) or softmax
    hard_kind: str  # the hard attention it simulates: rightmost | leftmost | average
    target_rule: str  # last | first | any | all | query | self: which visible keys are the targets
    score: str  # s_j, the target indicator ("true" for Y and X)
    gap: float  # least score margin of the targets over the other keys (operators.py)
    tau: float  # its fixed temperature (attn.tau); 1 in hard mode
    notes: str = ""
    score_formula: Formula | None = field(default=None, repr=False)

    def hard_targets(self, ids: np.ndarray, alphabet: Alphabet) -> np.ndarray:
        """Target keys per query on words ``ids`` (B, n): bool (B, n, n + 1), column 0 the sink.

        Query i's targets are the keys j inside the mask with s_j = 1: all of them (rule "any":
        each gives the same value) or only the last / first one (rules "last" / "first"); the
        sink alone when there is none. Hard attention puts all its weight on one target (the
        rightmost / leftmost maximum), softmax in the soft modes all but eps of it on the set.
        Counting heads: rule "all" (every visible word key, the uniform average) and rule
        "query" (every visible word key when s holds at the query i, else the sink); the
        position-times head: rule "self" (key i when s holds at i, else the sink); residue heads
        of modular counting: rule "lookup" (key j with j + 1 = #p at i, the sink when #p = 0).
        """
        ids = np.asarray(ids)
        B, n = ids.shape
        if self.score_formula is None:
            s = np.ones((B, n), dtype=bool)
        else:
            s = label_positions(self.score_formula, ids, alphabet)
        i = np.arange(n)[:, None]
        j = np.arange(n)[None, :]
        visible = band(*MASK_BOUNDS[self.mask], range(n), range(n)).numpy()  # (n, n)
        if self.target_rule == "all":
            cand = np.broadcast_to(visible[None], (B, n, n))
        elif self.target_rule == "self":  # the query's own key if s holds there, else the sink
            cand = s[:, :, None] & (j == i)[None]
        elif self.target_rule == "lookup":  # the key j with j + 1 = #p at the query (the sink when #p = 0)
            cand = (j[None] == s.cumsum(-1)[:, :, None] - 1) & visible[None]
        elif self.target_rule == "query":
            cand = s[:, :, None] & visible[None]
        else:
            cand = s[:, None, :] & visible[None]  # (B, n, n)
        if self.target_rule in ("last", "first"):
            pos = np.where(cand, j[None], -1 if self.target_rule == "last" else n)
            pick = pos.max(-1) if self.target_rule == "last" else pos.min(-1)  # (B, n)
            cand = (j[None] == pick[..., None]) & cand
        out = np.zeros((B, n, n + 1), dtype=bool)
        out[..., 1:] = cand
        out[..., 0] = ~cand.any(-1)
        return out


@dataclass
class CompiledModel:
    model: Transformer
    formula: Formula
    alphabet: Alphabet
    mode: str
    length: int | None
    heads: list  # HeadInfo, in (layer, head) order
    residual_layout: dict  # coordinate text ("<one>", "<i/n>", a subformula) -> residual dimension
    auxiliary: list  # residual coordinates that are target indicators, not subformulas of the root
    mlp_units: list  # ReLU units used per block
    epsilon: float | None = None  # soft modes: the attention error each head is built to stay below

    def head(self, subformula: str) -> HeadInfo:
        """The head computing a subformula, by its text."""
        for info in self.heads:
            if info.subformula == subformula:
                return info
        raise KeyError(f"no head computes `{subformula}`; heads: {[h.subformula for h in self.heads]}")

    @torch.no_grad()
    def logits(self, ids) -> torch.Tensor:
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"expected (batch, length) symbol ids with length >= 1, got shape {tuple(ids.shape)}")
        if self.mode == "soft-scaled" and ids.shape[1] > self.length:
            raise ValueError(f"words of length {ids.shape[1]} exceed length={self.length}, the n the soft-scaled "
                             "temperatures were set for; compile with a larger length")
        device = next(self.model.parameters()).device
        return self.model(ids.to(device)).position_logits.cpu()

    def predict(self, ids) -> np.ndarray:
        """Truth of the formula at every position of equal-length words ids (B, n): bool (B, n)."""
        return (self.logits(ids) > 0).numpy()

    def hard_targets(self, ids) -> list:
        """Per head (same order as ``heads``): the (B, n, n + 1) target sets on words ids."""
        return [info.hard_targets(np.asarray(ids), self.alphabet) for info in self.heads]
