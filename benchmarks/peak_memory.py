"""What one call adds to peak memory, on a GPU or a Linux CPU: the benchmarks' shared measurement.

On GPU: ``torch.cuda.max_memory_allocated`` over the memory allocated before the call (all of it
lives there). On CPU (Linux, glibc): the rise of the resident set's high-water mark (reset
through /proc/self/clear_refs) over the resident set just before the call, during which every
block of 64 KiB or more is mapped on allocation and unmapped on free (mallopt), so that the
resident set follows the live tensors. Measure in a fresh process (a larger allocator cache of an
earlier call would hide memory) and before any timing (the mmap threshold is restored after).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


def _rss_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_bytes(run: Callable[[], object], device: str) -> int:
    """Bytes that ``run()`` adds at its peak on ``device`` ("cpu" or "cuda")."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt(M_MMAP_THRESHOLD, 1 << 16)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # high-water mark := current resident set
        base = _rss_kb("VmRSS")
        run()
        return (_rss_kb("VmHWM") - base) * 1024
    finally:
        mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's own ceiling for the threshold: reuse, as by default


def per_length(measure: Callable[..., tuple], lengths: list[int], args: Callable[[int], tuple]) -> Iterator[tuple]:
    """``measure(*args(n))`` for each n in ``lengths``, each in a fresh spawned process (see above);
    yields (n, its result, memory ratio, time ratio), the ratios to the previous length as text ("" for
    the first). ``measure`` returns (seconds, peak bytes, ...)."""
    context = multiprocessing.get_context("spawn")
    previous = None
    for n in lengths:
        with context.Pool(1) as pool:
            result = pool.apply(measure, args(n))
        seconds, peak = result[:2]
        ratios = ("", "") if previous is None else (f"{peak / previous[1]:.2f}", f"{seconds / previous[0]:.2f}")
        yield n, result, *ratios
        previous = (seconds, peak)
