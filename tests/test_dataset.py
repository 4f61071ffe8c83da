"""Datasets: balanced, exactly labelled, length bins to 10x, cached and reproducible."""

from __future__ import annotations

import filecmp
import itertools
import math
from collections import Counter

import numpy as np
import pytest

from softhard.data import dataset as dataset_module
from softhard.data.cli import main as data_main
from softhard.data.dataset import (
    LABEL_NAMES,
    PARTITION_FACTOR,
    DatasetSpec,
    build_dataset,
    dataset_path,
    fingerprint,
    read_manifest,
)
from softhard.data.errors import EmptyClassError
from softhard.data.language import Language
from softhard.data.registry import get

SMALL = DatasetSpec(min_length=1, max_length=8, train_per_length=12, validation_per_length=4, test_per_length=4)


@pytest.fixture(scope="module")
def tomita4(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    language = get("tomita4").language()
    return language, cache, build_dataset(language, SMALL, cache, progress=False)


def test_splits_cover_train_range_and_test_bins_reach_ten_times(tomita4):
    _, _, data = tomita4
    assert [name for name in data if name.startswith("test_")] == ["test_9_16", "test_17_32", "test_33_64", "test_65_80"]
    assert max(data["test_65_80"]["length"]) == 10 * SMALL.max_length
    assert set(data["train"]["length"]) == set(range(3, 9))  # lengths 1, 2 have no non-member (no aaa yet)


@pytest.mark.parametrize("per_bin", [1, 2, 4])
def test_test_lengths_reach_the_target_with_any_number_per_bin(per_bin):
    lengths = DatasetSpec(max_length=6, test_lengths_per_bin=per_bin).lengths()
    bins = [name for name in lengths if name.startswith("test_")]
    assert max(lengths[bins[-1]]) == 60 and all(len(lengths[name]) == per_bin for name in bins[:-1])


def test_every_length_is_balanced_but_for_classes_kept_for_train(tomita4):
    language, cache, data = tomita4
    lacking = {(e["split"], e["length"], e["class"]) for e in read_manifest(dataset_path(language, SMALL, cache))["undivided"]}
    assert lacking == {("validation", 3, "negative")}  # "aaa" is the only non-member of length 3
    for name, split in data.items():
        per_length = Counter(zip(split["length"], split["label"]))
        for length in set(split["length"]):
            for label, cls in ((1, "positive"), (0, "negative")):
                expected = 0 if (name, length, cls) in lacking else SMALL.per_length(name) // 2
                assert per_length[(length, label)] == expected, (name, length, cls)


@pytest.mark.parametrize("split", ["validation", "test_33_64"])
def test_rows_are_exactly_labelled(tomita4, split):
    language, _, data = tomita4
    for row in data[split]:
        word = language.alphabet.decode(row["input_ids"])
        truth = language.formula.evaluate(word, language.alphabet)
        assert row["truth"] == truth.tolist()
        assert row["label"] == bool(truth[-1]) and row["length"] == len(word)


def test_manifest_records_what_was_skipped(tomita4):
    language, cache, _ = tomita4
    manifest = read_manifest(dataset_path(language, SMALL, cache))
    assert manifest["skipped_lengths"]["train"] == [1, 2]
    assert manifest["formula"] == str(language.formula) and manifest["alphabet"] == ["a", "b"]


def test_second_call_reuses_the_cache(tomita4, monkeypatch):
    language, cache, first = tomita4

    def resample(*args, **kwargs):
        raise AssertionError("the cached dataset should have been reused")

    monkeypatch.setattr(dataset_module, "_sample_splits", resample)
    again = build_dataset(language, SMALL, cache, progress=False)
    assert again["train"]["input_ids"] == first["train"]["input_ids"]


def test_same_inputs_give_identical_files(tomita4, tmp_path):
    language, cache, _ = tomita4
    build_dataset(language, SMALL, tmp_path, progress=False)
    comparison = filecmp.dircmp(dataset_path(language, SMALL, cache), dataset_path(language, SMALL, tmp_path))
    assert _identical(comparison)


def _identical(comparison: filecmp.dircmp) -> bool:
    _, mismatch, errors = filecmp.cmpfiles(comparison.left, comparison.right, comparison.common_files, shallow=False)
    if mismatch or errors or comparison.left_only or comparison.right_only:
        return False
    return all(_identical(sub) for sub in comparison.subdirs.values())


def test_seed_changes_fingerprint_and_words(tomita4, tmp_path):
    language, cache, first = tomita4
    other = DatasetSpec(**{**SMALL.__dict__, "seed": 1})
    assert dataset_path(language, other, cache) != dataset_path(language, SMALL, cache)
    assert build_dataset(language, other, tmp_path, progress=False)["train"]["input_ids"] != first["train"]["input_ids"]


def test_counting_language_builds_balanced(tmp_path):
    data = build_dataset(get("dyck1").language(), SMALL, tmp_path, progress=False)
    labels = np.array(data["train"]["label"])
    assert labels.sum() * 2 == len(labels) and len(labels) > 0


def test_failure_leaves_nothing_half_written(tmp_path, monkeypatch):
    import datasets

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", broken)
    with pytest.raises(OSError):
        build_dataset(get("no_aa").language(), SMALL, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_language_with_no_balanced_length_fails_clearly(tmp_path):
    spec = DatasetSpec(min_length=1, max_length=2, train_per_length=2, validation_per_length=2, test_per_length=2)
    with pytest.raises(EmptyClassError, match="'tomita4'.*'train'"):
        build_dataset(get("tomita4").language(), spec, tmp_path, progress=False)


@pytest.mark.parametrize(
    "field, value",
    [("min_length", 0), ("max_length", 0), ("train_per_length", 3), ("test_per_length", 0), ("test_factor", 0),
     ("seed", -1)],
)
def test_bad_specs_name_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        DatasetSpec(**{field: value})


def test_a_build_that_lost_the_race_keeps_the_published_dataset(tomita4, tmp_path):
    """Two processes building one dataset: the later rename finds the first one's folder in place."""
    language, cache, data = tomita4
    path = dataset_path(language, SMALL, cache)
    before = read_manifest(path)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "partial").write_text("the loser's copy")
    dataset_module._publish(staging, path)
    assert not staging.exists() and read_manifest(path) == before
    assert build_dataset(language, SMALL, cache, progress=False)["train"]["input_ids"] == data["train"]["input_ids"]


def test_a_failed_rename_without_a_published_dataset_is_an_error(tmp_path):
    staging, target = tmp_path / "staging", tmp_path / "target"
    staging.mkdir()
    target.mkdir()
    (target / "stray").write_text("not a dataset")  # blocks the rename, and is not a finished build
    with pytest.raises(OSError):
        dataset_module._publish(staging, target)
    assert staging.exists()


def _class_sizes(language: Language, length: int) -> dict[str, int]:
    """Members and non-members of one length, counted by brute force over every word."""
    words = np.array(list(itertools.product(range(len(language.alphabet)), repeat=length)))
    members = int(sum(language.formula.evaluate(language.alphabet.decode(w), language.alphabet)[-1] for w in words))
    return {"positive": members, "negative": len(words) - members}


@pytest.mark.parametrize(
    "name, spec, regime",
    [  # few words per class at every length: each class is partitioned between train and validation
     ("no_aa", DatasetSpec(min_length=3, max_length=6, train_per_length=64, validation_per_length=16,
                           test_per_length=4), "partitioned"),
     # many words per class at every length: validation draws reject the training words
     ("since_ab", DatasetSpec(min_length=5, max_length=7, train_per_length=64, validation_per_length=16,
                              test_per_length=4), "rejected")],
)
def test_no_validation_or_test_word_is_a_training_word(tmp_path, name, spec, regime):
    language = get(name).language()
    data = build_dataset(language, spec, tmp_path, progress=False)
    limit = PARTITION_FACTOR * (spec.train_per_length + spec.validation_per_length) // 2
    for length in range(spec.min_length, spec.max_length + 1):  # the build takes the regime the test names
        sizes = _class_sizes(language, length)
        assert all((0 < size <= limit) == (regime == "partitioned") for size in sizes.values()), (length, sizes)
    train = {tuple(ids) for ids in data["train"]["input_ids"]}
    for split in data:
        if split != "train":
            held_out = [tuple(ids) for ids in data[split]["input_ids"]]
            assert held_out and not train.intersection(held_out), split
    validation = data["validation"]
    assert len(validation) == spec.validation_per_length * (spec.max_length - spec.min_length + 1)


def test_validation_draws_are_uniform_over_the_words_train_left_out():
    """The rejection rule: never an excluded word, every other word about equally often."""
    language = get("parity").language()
    sampler = language.sampler(6, "positive")  # 32 words
    everything = sampler.all_words()
    excluded = everything[::4]
    draws = dataset_module._sample_avoiding(sampler, 4800, np.random.default_rng(0), excluded)
    counts = Counter(map(tuple, draws))
    assert not set(counts) & set(map(tuple, excluded))
    assert set(counts) == set(map(tuple, everything)) - set(map(tuple, excluded))
    expected = len(draws) / len(counts)  # 200 per word: 4 standard deviations is 56
    assert all(abs(c - expected) < 4 * math.sqrt(expected) for c in counts.values())


def test_a_class_with_one_word_is_kept_for_train_and_reported(tmp_path, capsys):
    spec = DatasetSpec(min_length=1, max_length=4, train_per_length=8, validation_per_length=4, test_per_length=2)
    code = data_main(["build", "--language", "tomita1", "--max-length", "4", "--train-per-length", "8",
                      "--validation-per-length", "4", "--test-per-length", "2", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "note: validation: no positive words at lengths 1, 2, 3, 4 (a single word each, kept for train)" in out
    assert "note: validation: no negative words at length 1 (a single word each, kept for train)" in out
    language = get("tomita1").language()
    manifest = read_manifest(dataset_path(language, spec, tmp_path))
    assert {(e["length"], e["class"]) for e in manifest["undivided"]} == \
        {(1, "positive"), (2, "positive"), (3, "positive"), (4, "positive"), (1, "negative")}
    data = build_dataset(language, spec, tmp_path, progress=False)
    assert set(data["validation"]["label"]) == {0} and set(data["validation"]["length"]) == {2, 3, 4}
    assert Counter(data["train"]["label"]) == {0: 16, 1: 16}  # train keeps a* and stays balanced


def test_the_split_rule_is_part_of_the_fingerprint(monkeypatch):
    language = get("tomita4").language()
    before = fingerprint(language, SMALL)
    monkeypatch.setattr(dataset_module, "SPLIT_RULE", "some-other-rule")
    assert fingerprint(language, SMALL) != before


def test_label_and_alphabet_are_class_labels(tomita4):
    language, cache, data = tomita4
    features = data["train"].features
    assert features["label"].names == list(LABEL_NAMES) == ["negative", "positive"]
    assert features["input_ids"].feature.names == list(language.alphabet)
    row = data["validation"][0]
    word = language.alphabet.decode(row["input_ids"])
    assert features["label"].int2str(row["label"]) == ("positive" if language.formula.accepts(word) else "negative")
    assert "{" not in data["train"].info.description.split("labelled")[1]  # prose, not a JSON manifest
