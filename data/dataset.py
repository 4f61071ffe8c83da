"""Labelled Hugging Face datasets for a language, cached on disk under a fingerprint.

Splits: ``train`` and ``validation`` over a range of lengths, and ``test_<lo>_<hi>``
splits in doubling length bins from just above the longest train length to at least
``test_factor`` times it. At every length half the words are members and half are
non-members, each drawn exactly and uniformly (with replacement) by data.sampling;
a length at which one class is empty is skipped and listed in the manifest.

Held-out words are never training words (SPLIT_RULE). Test lengths lie above the train
lengths, so only validation shares lengths with train. There, per length and class: a class
of at most PARTITION_FACTOR x (train + validation words of the class) words is enumerated
and partitioned at random, in proportion to the two splits' sizes, and each split draws
from its own part; a larger class gives train its draws and validation draws that reject
the training words. A class with a single word at a length keeps it for train, and
validation holds no word of that class there (listed under ``undivided`` in the manifest).

Each row: ``input_ids`` (symbol ids; the feature is a ClassLabel whose names are the
alphabet), ``length``, ``label`` (ClassLabel LABEL_NAMES: 0 negative = non-member,
1 positive = member: truth at the last position) and ``truth`` (the formula's truth at
every position).

Every (split, length, class) draws from its own random stream, seeded by
(seed, split, length, class), so the same inputs give byte-identical files. The
dataset is built in a temporary folder and renamed into place, so a cache entry is
either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from softhard.data.errors import EmptyClassError
from softhard.data.language import Language

FORMAT_VERSION = 2  # 2: ClassLabel label and input_ids, held-out splits disjoint from train
SPLIT_RULE = "disjoint-v1"  # how held-out words are kept apart from training words (module docstring)
PARTITION_FACTOR = 2  # classes of at most this x (train + validation words per class) words are partitioned
DEFAULT_CACHE = Path(os.environ.get("SOFTHARD_DATA", "runs/data"))
MANIFEST = "softhard.json"
LABEL_NAMES = ("negative", "positive")  # label 0 = non-member, 1 = member (data.language's class names)
CLASSES = ("positive", "negative")  # the order of the classes within each length
_SPLIT_IDS = {"train": 0, "validation": 1}
_PARTITION_STREAM = 3  # the random stream that partitions a small class (after the split ids 0, 1, 2)


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
           "lengths": spec.lengths(), "version": FORMAT_VERSION,
           "split_rule": SPLIT_RULE}  # lengths, split rule: a change of either rule is a new dataset
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
    splits, skipped, undivided = _sample_splits(language, spec, progress)
    features = datasets.Features(
        {
            "input_ids": datasets.List(datasets.ClassLabel(names=list(language.alphabet))),
            "length": datasets.Value("int64"),
            "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
            "truth": datasets.List(datasets.Value("bool")),
        }
    )
    manifest = {
        "name": language.name,
        "formula": str(language.formula),
        "alphabet": list(language.alphabet),
        "label_names": list(LABEL_NAMES),
        "spec": asdict(spec),
        "fingerprint": fingerprint(language, spec),
        "splits": {name: sorted(set(rows["length"])) for name, rows in splits.items()},
        "skipped_lengths": skipped,
        "split_rule": SPLIT_RULE,
        "undivided": undivided,
        "format_version": FORMAT_VERSION,
    }
    title = language.name or str(language.formula)
    info = datasets.DatasetInfo(
        description=f"{title}: words over {{{language.alphabet}}} labelled by {language.formula} (softhard; "
                    f"the manifest is {MANIFEST} in the dataset folder)",
        features=features,
    )
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


def undivided_summary(manifest: dict) -> list[str]:
    """One line per split and class of the manifest's ``undivided`` entries, e.g.
    ``validation: no positive words at lengths 2, 4 (a single word each, kept for train)``."""
    grouped: dict[tuple[str, str], list[int]] = {}
    for entry in manifest.get("undivided", []):
        grouped.setdefault((entry["split"], entry["class"]), []).append(entry["length"])
    return [f"{split}: no {label} words at length{'s' if len(lengths) > 1 else ''} "
            f"{', '.join(map(str, lengths))} (a single word each, kept for train)"
            for (split, label), lengths in grouped.items()]


class _NoHeldOutWord(Exception):
    """A class has a single word at a train length: train keeps it, a held-out split gets none."""


def _sample_splits(language: Language, spec: DatasetSpec, progress: bool):
    from tqdm.auto import tqdm

    plan = [(split, length) for split, lengths in spec.lengths().items() for length in lengths]  # train first
    splits: dict[str, dict[str, list]] = {}
    skipped: dict[str, list[int]] = {}
    undivided: list[dict] = []
    train_words: dict[tuple[int, str], np.ndarray] = {}  # (length, class) -> train draws, for validation to avoid
    for split, length in tqdm(plan, desc=f"sampling {language.name or language.formula}", disable=not progress):
        rows = splits.setdefault(split, {"input_ids": [], "length": [], "label": [], "truth": []})
        classes, lacking = [], []
        try:
            for label in CLASSES:
                try:
                    classes.append(_class_words(language, spec, split, length, label, train_words))
                except _NoHeldOutWord:
                    lacking.append({"split": split, "length": length, "class": label})
        except EmptyClassError:
            skipped.setdefault(split, []).append(length)
            continue
        undivided += lacking
        if not classes:
            continue
        words = np.concatenate(classes)
        truth = language.label(words)
        rows["input_ids"] += words.tolist()
        rows["length"] += [length] * len(words)
        rows["label"] += truth[:, -1].astype(int).tolist()
        rows["truth"] += truth.tolist()
    empty = [name for name, rows in splits.items() if not rows["length"]]
    if empty:
        lengths = spec.lengths()[empty[0]]
        raise EmptyClassError(
            f"{language.title}: no length of split {empty[0]!r} ({lengths[0]}..{lengths[-1]}) "
            "has both members and non-members" + (" that are not training words" if empty[0] != "train" else "")
        )
    return splits, skipped, undivided


def _class_words(language: Language, spec: DatasetSpec, split: str, length: int, label: str,
                 train_words: dict) -> np.ndarray:
    """The words of one class of one (split, length), disjoint from train's (module docstring).

    Raises EmptyClassError (no word of the class at this length) or _NoHeldOutWord.
    """
    sampler = language.sampler(length, label)
    class_id = CLASSES.index(label)
    rng = np.random.default_rng([spec.seed, _SPLIT_IDS.get(split, 2), length, class_id])
    count = spec.per_length(split) // 2
    if not spec.min_length <= length <= spec.max_length:  # a test length: no training word has it
        return sampler.sample(count, rng)
    split_words = (spec.train_per_length + spec.validation_per_length) // 2
    if sampler.log_size <= math.log(PARTITION_FACTOR * split_words):
        train_part, held_part = _partition(sampler.all_words(), spec, length, class_id)
        pool = train_part if split == "train" else held_part
        if not len(pool):
            raise _NoHeldOutWord
        return pool[rng.integers(len(pool), size=count)]
    if split == "train":
        train_words[length, label] = sampler.sample(count, rng)
        return train_words[length, label]
    return _sample_avoiding(sampler, count, rng, train_words[length, label])


def _partition(words: np.ndarray, spec: DatasetSpec, length: int, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A random split of a small class into (train part, held-out part), sized as the two splits;
    each part keeps at least one word when the class has two or more."""
    rng = np.random.default_rng([spec.seed, _PARTITION_STREAM, length, class_id])
    order = rng.permutation(len(words))
    share = spec.validation_per_length / (spec.train_per_length + spec.validation_per_length)
    held = min(max(round(len(words) * share), 1), len(words) - 1)  # 0 for a single word
    return words[order[held:]], words[order[:held]]


def _sample_avoiding(sampler, count: int, rng: np.random.Generator, excluded: np.ndarray) -> np.ndarray:
    """``count`` words drawn uniformly from the sampler's class without the ``excluded`` words.

    Draws that hit an excluded word are dropped, so every kept draw is uniform over the rest;
    the class holds more than PARTITION_FACTOR times as many words as can be excluded, so at
    least half of the draws are kept on average.
    """
    seen = {row.tobytes() for row in excluded}
    kept: list[np.ndarray] = []
    while len(kept) < count:
        kept += [row for row in sampler.sample(count, rng) if row.tobytes() not in seen]
    return np.stack(kept[:count])
