"""train.run_folder: the run-folder format (attention records, tables, the model, bookkeeping keys),
what an earlier run left in its folder, and finishing it (fake trainings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from softhard.data.files import write_atomically
from softhard.models.checkpoint import save_checkpoint
from softhard.models.transformer import Transformer, TransformerConfig
from softhard.train import run_folder
from softhard.train.run_folder import (
    BOOKKEEPING_KEYS,
    LAST_CHECKPOINT,
    LENGTH_COLUMNS,
    LENGTH_TABLE,
    RUN_OPTIONS,
    read_attention_batches,
    write_attention_batch,
)
from tests.fixtures.resolved_configs import resolved

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def make_folder(run_dir, *files):
    for name in files:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("")
    return run_dir


class FakeTraining:
    """Records its calls; writes the table (finishes the run) when `finishes(resume)` says so."""

    def __init__(self, run_dir, finishes):
        self.run_dir, self.finishes, self.calls = run_dir, finishes, []

    def __call__(self, resume: bool) -> int:
        self.calls.append((resume, sorted(p.name for p in self.run_dir.rglob("*")) if self.run_dir.exists() else None))
        if self.finishes(resume):
            make_folder(self.run_dir, LENGTH_TABLE)
            return 0
        return 1


@pytest.mark.parametrize(
    "files, expected",
    [((LENGTH_TABLE, LAST_CHECKPOINT), "done"), ((LAST_CHECKPOINT, "run_info.json"), "resume"),
     (("run_info.json",), "partial"), ((), "new")],
)
def test_state(tmp_path, files, expected):
    assert run_folder.state(make_folder(tmp_path / "run", *files) if files else tmp_path / "run") == expected


def test_a_done_run_is_not_trained(tmp_path):
    train = FakeTraining(make_folder(tmp_path, LENGTH_TABLE), lambda resume: True)
    assert run_folder.finish(tmp_path, train) == 0 and train.calls == []


def test_a_run_with_a_checkpoint_is_resumed(tmp_path):
    train = FakeTraining(make_folder(tmp_path / "run", LAST_CHECKPOINT), lambda resume: True)
    assert run_folder.finish(tmp_path / "run", train) == 0
    assert train.calls == [(True, ["checkpoints", "last.ckpt"])]


@pytest.mark.parametrize("retrained", [True, False])
def test_a_resume_that_does_not_finish_trains_again_in_a_cleared_folder(tmp_path, retrained):
    train = FakeTraining(make_folder(tmp_path / "run", LAST_CHECKPOINT, "metrics.jsonl"),
                         lambda resume: not resume and retrained)
    assert run_folder.finish(tmp_path / "run", train) == (0 if retrained else 1)
    assert train.calls == [(True, ["checkpoints", "last.ckpt", "metrics.jsonl"]), (False, None)]


def test_a_partial_folder_is_cleared_then_trained(tmp_path):
    train = FakeTraining(make_folder(tmp_path / "run", "run_info.json"), lambda resume: True)
    assert run_folder.finish(tmp_path / "run", train) == 0 and train.calls == [(False, None)]


# ---------------------------------------------------------------------------- the format
def random_batch(generator: torch.Generator, words: int = 2, width: int = 5, layers: int = 2, heads: int = 3) -> dict:
    logits = [torch.randn(words, heads, width, width + 1, generator=generator, dtype=torch.float64)
              for _ in range(layers)]
    for layer in logits:
        layer[..., -1] = float("-inf")  # a masked key
    return {"input_ids": torch.randint(0, 3, (words, width), generator=generator),
            "lengths": torch.tensor([width, width - 2]), "truth": torch.rand(words, width, generator=generator) > 0.5,
            "attention": [torch.softmax(s, dim=-1) for s in logits], "attention_logits": logits}


def test_attention_batches_read_back_as_written_in_float32(tmp_path):
    generator = torch.Generator().manual_seed(0)
    written = {("validation", 0): random_batch(generator), ("validation", 1): random_batch(generator),
               ("test_41_50", 0): random_batch(generator)}
    for (split, index), batch in written.items():
        write_attention_batch(tmp_path, split, index, **batch)
    (tmp_path / "attention" / "test_51_60").mkdir()  # a split without a batch is not listed
    assert run_folder.attention_splits(tmp_path) == ["test_41_50", "validation"]
    for split in ("validation", "test_41_50"):
        read = list(read_attention_batches(tmp_path, split))
        expected = [batch for (name, _), batch in written.items() if name == split]
        assert len(read) == len(expected)
        for record, batch in zip(read, expected):
            assert set(record) == set(batch)
            for key in ("input_ids", "lengths", "truth"):
                assert torch.equal(record[key], batch[key])
            for key in ("attention", "attention_logits"):
                assert all(r.dtype == torch.float32 for r in record[key])
                assert all(torch.equal(r, b.float()) for r, b in zip(record[key], batch[key]))


def test_attention_saved_before_the_rename_reads_its_scores_as_attention_logits(tmp_path):
    batch = random_batch(torch.Generator().manual_seed(1))
    old = {**batch, "scores": batch.pop("attention_logits")}  # the layout written before attention_logits
    (tmp_path / "attention" / "validation").mkdir(parents=True)
    torch.save(old, tmp_path / "attention" / "validation" / "batch_000.pt")
    (record,) = read_attention_batches(tmp_path, "validation")
    assert "scores" not in record
    assert all(torch.equal(r, s) for r, s in zip(record["attention_logits"], old["scores"]))


def test_length_rows_append_under_one_header(tmp_path):
    rows = lambda step: pd.DataFrame([[step, "test_41_50", 41, 8, 0.5, 0.75, 0.25]], columns=LENGTH_COLUMNS)  # noqa: E731
    run_folder.append_length_rows(tmp_path, rows(4))
    run_folder.append_length_rows(tmp_path, rows(8)[list(reversed(LENGTH_COLUMNS))])  # columns in any order
    table = run_folder.read_length_table(tmp_path)
    assert list(table.columns) == LENGTH_COLUMNS and table.step.tolist() == [4, 8]
    assert table.position_accuracy.tolist() == [0.75, 0.75]


def test_load_model_reads_the_checkpoint_of_the_run_folder(tmp_path):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=3, d_model=8, n_heads=2, n_layers=1, d_ff=16,
                                          temperature="log_n")).eval()
    save_checkpoint(model, tmp_path / LAST_CHECKPOINT)
    loaded = run_folder.load_model(tmp_path)
    ids = torch.randint(0, 3, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids).position_logits, model(ids).position_logits)
    assert loaded.attention_kinds == model.attention_kinds  # saved per head
    assert dataclasses.replace(loaded.config, attention_kind=model.config.attention_kind) == model.config


def test_the_train_cli_adds_exactly_the_run_options_and_knows_every_bookkeeping_key():
    config = resolved("--config", str(CONFIGS / "since_ab.yaml"))
    own = {key for key in config if "." not in key} - {"seed_everything", "optimizer", "lr_scheduler"}
    assert own == set(RUN_OPTIONS)
    assert sorted(BOOKKEEPING_KEYS - set(config)) == []  # no stale key
    assert {"model.transformer.mask", "data.max_length", "trainer.max_steps"}.isdisjoint(BOOKKEEPING_KEYS)


def test_write_atomically_replaces_the_file_whole_or_leaves_it(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")

    def fails(file: Path) -> None:
        file.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fails)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    assert write_atomically(target, lambda file: file.write_text("new")) == target
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_write_atomically_publishes_a_folder_onto_an_empty_one_or_nothing(tmp_path):
    target = tmp_path / "run"
    target.mkdir()

    def half(folder: Path) -> None:
        folder.mkdir()
        (folder / "a.txt").write_text("a")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, half)
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and list(target.iterdir()) == []

    def whole(folder: Path) -> None:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "b.txt").write_text("b")

    write_atomically(target, whole)
    assert (target / "sub" / "b.txt").read_text() == "b" and [p.name for p in tmp_path.iterdir()] == ["run"]
