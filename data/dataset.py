"""Labelled Hugging Face datasets for a language, cached on disk under a fingerprint.

Splits: ``train`` and ``validation`` over a range of lengths, and ``test_<lo>_<hi>``
splits in doubling length bins from just above the longest train length to at least
``test_factor`` times it. At every length half the words are members and half are
non-members, each drawn exactly and uniformly (with replacement) by data.sampling;
a length at which one class is empty is skipped and listed in the manifest.

Each row: ``input_ids`` (symbol ids, alphabet order), ``length``, ``label`` (membership:
truth at the last position) and ``truth`` (the formula's truth at every position).

Every (split, length, class) draws from its own random stream, seeded by
(seed, split, length, class), so the same inputs give byte-identical files. The
dataset is built in a temporary folder and renamed into place, so a cache entry is
either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from softhard.data.errors import EmptyClassError
from softhard.data.language import Language

FORMAT_VERSION = 1
DEFAULT_CACHE = Path(os.environ.get("SOFTHARD_DATA", "runs/data"))
MANIFEST = "softhard.json"
_SPLIT_IDS = {"train": 0, "validation": 1}


@dataclass(frozen=True)
class DatasetSpec:
    """What to sample; every field enters the cache fingerprint."""

    min_length: int = 1
    max_length: int = 20
    train_per_length: int = 256  # words per train length, half per class
    validation_per_length: int = 64
    test_per_length: int = 64
    test_factor: int = 10  # test bins reach at least test_factor * max_length
    test_lengths_per_bin: int = 4  # evenly spaced lengths sampled in each test bin
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {self.min_length}..{self.max_length}")
        for name in ("train_per_length", "validation_per_length", "test_per_length"):
            value = getattr(self, name)
            if value < 2 or value % 2:
                raise ValueError(f"{name} must be an even number >= 2 (half per class), got {value}")
        if self.test_factor < 1 or self.test_lengths_per_bin < 1:
            raise ValueError(
                f"test_factor and test_lengths_per_bin must be >= 1, got {self.test_factor}, {self.test_lengths_per_bin}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def test_bins(self) -> list[tuple[int, int]]:
        """Doubling bins (lo, hi] above max_length until hi >= test_factor * max_length."""
        bins, low, target = [], self.max_length, self.test_factor * self.max_length
        while low < target:
            high = min(2 * low, target)
            bins.append((low + 1, high))
            low = high
        return bins

    def lengths(self) -> dict[str, list[int]]:
        splits = {
            "train": list(range(self.min_length, self.max_length + 1)),
            "validation": list(range(self.min_length, self.max_length + 1)),
        }
        for low, high in self.test_bins():
            # from the top down: a single length per bin is the bin's longest, so the last bin reaches the target
            points = np.linspace(high, low, min(self.test_lengths_per_bin, high - low + 1))
            splits[f"test_{low}_{high}"] = sorted({int(round(x)) for x in points})
        return splits

    def per_length(self, split: str) -> int:
        return {"train": self.train_per_length, "validation": self.validation_per_length}.get(split, self.test_per_length)


def fingerprint(language: Language, spec: DatasetSpec) -> str:
    key = {"formula": str(language.formula), "alphabet": list(language.alphabet), "spec": asdict(spec),
           "lengths": spec.lengths(), "version": FORMAT_VERSION}  # lengths: a change of their rule is a new dataset
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def dataset_path(language: Language, spec: DatasetSpec, cache_dir: Path | str = DEFAULT_CACHE) -> Path:
    prefix = language.name or "formula"
    return Path(cache_dir) / f"{prefix}-{fingerprint(language, spec)}"


def build_dataset(language: Language, spec: DatasetSpec = DatasetSpec(), cache_dir: Path | str = DEFAULT_CACHE, progress: bool = True):
    """The DatasetDict for ``language``: loaded from the cache, or built, saved and returned."""
    import datasets

    path = dataset_path(language, spec, cache_dir)
    if (path / MANIFEST).exists():
        return datasets.load_from_disk(str(path))
    splits, skipped = _sample_splits(language, spec, progress)
    features = datasets.Features(
        {
            "input_ids": datasets.List(datasets.Value("int64")),
            "length": datasets.Value("int64"),
            "label": datasets.Value("bool"),
            "truth": datasets.List(datasets.Value("bool")),
        }
    )
    manifest = {
        "name": language.name,
        "formula": str(language.formula),
        "alphabet": list(language.alphabet),
        "spec": asdict(spec),
        "fingerprint": fingerprint(language, spec),
        "splits": {name: sorted(set(rows["length"])) for name, rows in splits.items()},
        "skipped_lengths": skipped,
        "format_version": FORMAT_VERSION,
    }
    info = datasets.DatasetInfo(description=json.dumps(manifest, sort_keys=True), features=features)
    result = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(rows, features=features, info=info) for name, rows in splits.items()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    if not progress:
        datasets.disable_progress_bars()
    try:
        result.save_to_disk(str(staging))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _publish(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        datasets.enable_progress_bars()
    return datasets.load_from_disk(str(path))


def _publish(staging: Path, path: Path) -> None:
    """Rename the finished build into place; if another process published the same
    fingerprint first, keep theirs (the contents are identical) and drop ours."""
    try:
        os.replace(staging, path)
    except OSError:
        if not (path / MANIFEST).exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def read_manifest(path: Path | str) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def _sample_splits(language: Language, spec: DatasetSpec, progress: bool):
    from tqdm.auto import tqdm

    plan = [(split, length) for split, lengths in spec.lengths().items() for length in lengths]
    splits: dict[str, dict[str, list]] = {}
    skipped: dict[str, list[int]] = {}
    for split, length in tqdm(plan, desc=f"sampling {language.name or language.formula}", disable=not progress):
        rows = splits.setdefault(split, {"input_ids": [], "length": [], "label": [], "truth": []})
        try:
            words = _balanced_words(language, spec, split, length)
        except EmptyClassError:
            skipped.setdefault(split, []).append(length)
            continue
        truth = language.label(words)
        rows["input_ids"] += words.tolist()
        rows["length"] += [length] * len(words)
        rows["label"] += truth[:, -1].tolist()
        rows["truth"] += truth.tolist()
    empty = [name for name, rows in splits.items() if not rows["length"]]
    if empty:
        lengths = spec.lengths()[empty[0]]
        raise EmptyClassError(
            f"{language.title}: no length of split {empty[0]!r} ({lengths[0]}..{lengths[-1]}) "
            "has both members and non-members"
        )
    return splits, skipped


def _balanced_words(language: Language, spec: DatasetSpec, split: str, length: int) -> np.ndarray:
    half = spec.per_length(split) // 2
    split_id = _SPLIT_IDS.get(split, 2)
    classes = []
    for class_id, label in enumerate(("positive", "negative")):
        rng = np.random.default_rng([spec.seed, split_id, length, class_id])
        classes.append(language.sample(length, half, label, rng))
    return np.concatenate(classes)
