"""train.run_folder: what an earlier run left in its folder, and finishing it (fake trainings)."""

from __future__ import annotations

import pytest

from softhard.train import run_folder
from softhard.train.run_folder import LAST_CHECKPOINT, LENGTH_TABLE


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
