"""analysis.runs: finding run folders, the tidy table, loading models and saved attention."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from softhard.analysis.runs import RunFolder, RunSkipped, collect_runs, find_runs, other_settings, wandb_runs
from softhard.models.temperature import TemperatureSchedule
from softhard.train.run_folder import setting_label
from tests.conftest import TINY_GRID


def test_collect_runs_is_tidy_over_every_run_and_length(tiny_grid):
    table = collect_runs(tiny_grid)
    assert table.attrs["skipped"] == []
    assert table.run.nunique() == len(TINY_GRID)
    for run_dir, rows in table.groupby("run_dir"):
        csv = pd.read_csv(f"{run_dir}/length_generalization.csv")
        final = csv[csv.step == csv.step.max()]
        assert sorted(rows.length) == sorted(final.length)  # one row per test length, the final step only
        assert np.allclose(rows.sort_values("length").position_accuracy, final.sort_values("length").position_accuracy)
    settings = table.drop_duplicates("run").set_index("run")
    assert settings.loc["since_ab-log_n-seed1", "temperature"] == "log_n"
    assert settings.loc["since_ab-log_n-seed1", "seed"] == 1
    assert settings.loc["since_ab-log_n-seed1", "positional"] == "i/n"
    assert settings.loc["majority-fixed-seed0", "formula"] == "#a > #b"
    assert set(settings.train_max_length) == {5}


def test_bad_folders_are_skipped_with_a_message(tiny_grid, tmp_path):
    good = tmp_path / "good"
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", good)
    (tmp_path / "empty").mkdir()
    partial = tmp_path / "partial"
    shutil.copytree(good, partial)
    (partial / "length_generalization.csv").unlink()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run_info.json").write_text("{not json")
    with pytest.warns(UserWarning, match="training has not finished"):
        table = collect_runs([tmp_path, tmp_path / "missing"])
    assert set(table.run) == {"good"}
    skipped = "\n".join(table.attrs["skipped"])
    assert "partial: no length_generalization.csv" in skipped
    assert "run_info.json: not valid JSON" in skipped
    assert "missing: no such file or folder" in skipped


def test_a_folder_without_runs_gives_an_empty_table(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = collect_runs(tmp_path)
    assert table.empty and "holds no run folder" in str(caught[0].message)


def test_the_loaded_model_reproduces_the_saved_attention(tiny_grid):
    run = RunFolder(tiny_grid / "since_ab-log_n-seed0")
    model = run.load_model()
    assert not model.training
    word = next(w for w in run.attention_words() if w.split.startswith("test_"))
    output = model(torch.as_tensor(word.ids)[None], return_attention=True)
    for saved, fresh in zip(word.attention, output.attention):
        assert torch.allclose(saved, fresh[0], atol=1e-6)
    assert word.truth.dtype == bool and len(word.truth) == len(word.ids)


def test_the_loaded_model_keeps_the_schedule_multiplier_it_was_evaluated_with(tiny_grid, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", copy)
    file = copy / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(file, weights_only=False)
    schedule = {"tau_start": 1.0, "tau_end": 0.01, "steps": 40, "kind": "exponential"}
    checkpoint["hyper_parameters"]["transformer"]["schedule"] = schedule
    # the callback sets the multiplier before each step: the last step and the final evaluation used step N - 1
    last_used = TemperatureSchedule(**schedule)(checkpoint["global_step"] - 1)
    checkpoint["state_dict"]["model.tau_schedule"] = torch.tensor(last_used)
    torch.save(checkpoint, file)
    assert RunFolder(copy).load_model().tau_schedule.item() == pytest.approx(last_used)


def test_missing_attention_and_checkpoint_raise_run_skipped(tiny_grid, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_grid / "since_ab-fixed-seed0", copy)
    shutil.rmtree(copy / "attention")
    shutil.rmtree(copy / "checkpoints")
    run = RunFolder(copy)
    assert not run.has_attention
    with pytest.raises(RunSkipped, match="no saved attention"):
        list(run.attention_words())
    with pytest.raises(RunSkipped, match="no checkpoint"):
        run.load_model()


def test_run_info_without_the_formula_is_skipped(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_info.json").write_text(json.dumps({"language": "x"}))
    runs, skipped = find_runs(tmp_path)
    assert runs == [] and "lacks formula, alphabet" in skipped[0]


def test_bookkeeping_keys_do_not_tell_configurations_apart(tmp_path):
    """Runs of one configuration in two grids (other wandb groups and tags, seeds, folders) are not split;
    a setting beyond SETTINGS that differs (the mask) becomes a column."""
    def fake_run(name: str, mask: str, group: str, seed: int) -> RunFolder:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "run_info.json").write_text(json.dumps({"language": "since_ab", "formula": "a S b",
                                                          "alphabet": ["a", "b", "c"], "seed": seed}))
        config = {"seed_everything": seed, "run_dir": str(folder), "wandb_group": group, "wandb_tags": [group],
                  "data": {"language": "since_ab", "data_seed": seed}, "model": {"transformer": {"mask": mask}},
                  "trainer": {"devices": seed + 1}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        return RunFolder(folder)

    same = [fake_run("a", "past", "grid-a", 0), fake_run("b", "past", "grid-b", 1)]
    assert other_settings(same) == []
    assert other_settings([*same, fake_run("c", "future", "grid-c", 2)]) == ["model.transformer.mask"]


@pytest.mark.parametrize("value, label", [(["i/n"], "i/n"), (["i", "sinusoidal"], "i+sinusoidal"), ([], "none"),
                                          ("log_n", "log_n"), ([["fixed", "log_n"], ["n", "fixed"]], "fixed+log_n|n+fixed")])
def test_setting_label(value, label):
    assert setting_label(value) == label


def test_wandb_runs_reads_config_and_per_bin_summaries():
    class FakeRun:
        name, id = "r1", "abc"
        config = {"data": {"language": "since_ab", "max_length": 12}, "seed_everything": 3,
                  "model": {"transformer": {"positional": ["i"], "temperature": "fixed", "tau": 1.0}}}
        summary = {"lengthgen/test_13_24/position_accuracy": 0.5, "lengthgen/test_13_24/string_accuracy": 0.75,
                   "lengthgen/test_25_48/position_accuracy": 0.25, "lengthgen/test_25_48/string_accuracy": 0.5,
                   "trainer/global_step": 40}

    class FakeApi:
        def runs(self, path):
            assert path == "me/softhard"
            return [FakeRun()]

    table = wandb_runs("me/softhard", api=FakeApi())
    assert list(table.length) == [13, 25]
    assert list(table.position_accuracy) == [0.5, 0.25]
    assert set(table.positional) == {"i"} and set(table.seed) == {3} and set(table.step) == {40}
