"""Temperatures of attention logits.

For a softmax head h and query i (models/transformer.py):

    logits[b, h, i, j] = score[b, h, i, j] * factor(n[b, h, i]) / (tau[h] * tau_schedule)

score = q.k / sqrt(d_head) (+ ALiBi bias); n = the keys query i sees under the head's mask,
plus 1 for the sink (models/masks.py: visible_key_count), so n >= 1 and it is the query's
own count, not the padded length T nor the word length. Temperature modes per head:

    fixed     factor 1, tau[h] a constant (a buffer that constructions may set in place)
    learned   factor 1, tau[h] = TAU_MIN + exp(log_tau[h]): positive for any value of the
              parameter, and never below TAU_MIN = 1e-8, so the logit scale stays <= 1e8
    log_n     factor log(n)       (Scalable-Softmax; log(1) = 0 when only the sink is visible)
    n         factor n
    n_log_n   factor n * log(n)

tau_schedule is a global multiplier from a `TemperatureSchedule`, driven by training through
`Transformer.set_training_step(step)`; it is 1 without a schedule.

`HostCopy` keeps the fixed temperatures and the schedule multiplier on the host as well, so
that the fast path can hand SDPA its scale as a Python float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

TEMPERATURES = ("fixed", "learned", "log_n", "n", "n_log_n")
LENGTH_FACTORS = ("log_n", "n", "n_log_n")
SCHEDULES = ("linear", "exponential")
TAU_MIN = 1e-8  # floor of learned temperatures: logit scales up to 1e8 are exact and finite


@dataclass
class TemperatureSchedule:
    """Anneals the global temperature multiplier from tau_start to tau_end over `steps` steps."""

    tau_start: float = 1.0  # multiplier at step 0
    tau_end: float = 0.01  # multiplier from step `steps` on (smaller = harder attention)
    steps: int = 10_000  # training steps the anneal takes
    kind: str = "exponential"  # "linear" in tau, or "exponential" (geometric: linear in log tau)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule kind: unknown value {self.kind!r}; expected one of {SCHEDULES}")
        if not (self.tau_start > 0 and self.tau_end > 0):
            raise ValueError(f"schedule temperatures must be positive, got {self.tau_start!r}, {self.tau_end!r}")
        if self.steps < 1:
            raise ValueError(f"schedule steps must be >= 1, got {self.steps!r}")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0) / self.steps, 1.0)
        if self.kind == "linear":
            return self.tau_start + t * (self.tau_end - self.tau_start)
        return math.exp(math.log(self.tau_start) + t * (math.log(self.tau_end) - math.log(self.tau_start)))


def length_factor(n: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """factor(n) per head: n is (B, H, T) visible key counts (>= 1), modes the H head modes."""
    n = n.float()
    per_head = []
    for h, mode in enumerate(modes):
        nh = n[:, h]  # (B, T)
        if mode == "log_n":
            per_head.append(torch.log(nh))
        elif mode == "n":
            per_head.append(nh)
        elif mode == "n_log_n":
            per_head.append(nh * torch.log(nh))
        else:  # fixed, learned
            per_head.append(torch.ones_like(nh))
    return torch.stack(per_head, dim=1)  # (B, H, T)


class HostCopy:
    """The values of one small tensor as Python numbers, read from the device only after it changed.

    For the fast path's scale: F.scaled_dot_product_attention takes a Python float scale at no
    cost, where a scale tensor costs a multiply of the queries forward and backward; but reading
    a CUDA tensor on the host waits for the device. Temperatures change rarely, and visibly
    without a read: an in-place write (`attn.tau[h] = ...`, load_state_dict, fill_) bumps the
    tensor's version counter, and .to() makes a new tensor. Writes through `tensor.data` do
    neither and go unseen here: write temperatures in place or through the config. Inference
    tensors have no version counter, so they are never copied: read() gives None.
    """

    def __init__(self):
        self._tensor: Optional[torch.Tensor] = None
        self._version: Optional[int] = None
        self._values: Any = None

    def read(self, tensor: torch.Tensor) -> Any:
        """tensor.tolist(), read from the device only if `tensor` changed since the last read; None
        for an inference tensor."""
        if tensor.is_inference():
            return None
        if tensor is not self._tensor or tensor._version != self._version:
            self.record(tensor, tensor.tolist())
        return self._values

    def record(self, tensor: torch.Tensor, values: Any) -> None:
        """Note that `tensor` holds `values` as of now (just written), so the next read needs no device read."""
        self._tensor, self._version, self._values = tensor, tensor._version, values
