"""Training: run folders, reproducibility, resumption, bad input, wandb offline."""

from __future__ import annotations

import dataclasses
import json
import re
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from softhard.models.temperature import TemperatureSchedule
from softhard.models.transformer import TransformerConfig
from tests.conftest import TINY_RUN
from softhard.train.cli import main as train
from softhard.train.evaluation import length_generalization, rank_share
from softhard.train.module import LanguageModel, transformer_config
from softhard.train.run_folder import read_metrics
from softhard.train.schedules import WarmupCosineLR

TINY = ["--data.language", "since_ab", *TINY_RUN]


def run(tmp_path, name, *extra, cache=None):
    run_dir = tmp_path / name
    code = train([*TINY, "--data.cache_dir", str(cache or tmp_path / "data"), "--run_dir", str(run_dir), *extra])
    return code, run_dir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("runs")
    code, run_dir = run(tmp_path, "a", "--trainer.max_epochs", "2", "--model.transformer.temperature", "learned")
    assert code == 0
    return run_dir


def test_run_folder_holds_everything(finished):
    names = {path.name for path in finished.iterdir()}
    assert {"config.yaml", "run_info.json", "metrics.jsonl", "checkpoints", "length_generalization.csv",
            "accuracy_by_length.png", "attention", "attention_maps.png"} <= names
    info = json.loads((finished / "run_info.json").read_text())
    assert info["language"] == "since_ab" and info["version"] == "0.1.0" and len(info["dataset_fingerprint"]) == 16
    assert info["cpu_threads"] == torch.get_num_threads()
    assert "since_ab" in (finished / "config.yaml").read_text()


def test_length_generalization_reaches_ten_times_the_train_length(finished):
    table = pd.read_csv(finished / "length_generalization.csv")
    assert table.length.max() >= 10 * 5 and table.split.str.startswith("test_").all()
    assert table[["string_accuracy", "position_accuracy"]].apply(lambda c: c.between(0, 1)).all().all()


def test_metrics_file_records_losses_temperatures_and_attention(finished):
    metrics = read_metrics(finished)
    for column in ["train/loss", "val/string_accuracy", "temperature/layer1_head0", "attention/layer0_entropy",
                   "attention/layer1_max_weight", "lengthgen/test_6_10/string_accuracy"]:
        assert metrics[column].notna().any(), column
    assert (metrics["temperature/layer0_head0"].dropna() > 0).all()


def test_attention_capture_streams_batches_with_the_sink_column(finished):
    record = torch.load(finished / "attention" / "test_41_50" / "batch_000.pt")
    batch, width = record["input_ids"].shape
    assert len(record["attention"]) == 2 and record["attention"][0].shape == (batch, 2, width, width + 1)
    torch.testing.assert_close(record["attention"][1].sum(-1), torch.ones(batch, 2, width))


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(tmp_path):
    first = run(tmp_path, "first", "--trainer.max_epochs", "2")[1]
    second = run(tmp_path, "second", "--trainer.max_epochs", "2")[1]
    assert (first / "length_generalization.csv").read_text() == (second / "length_generalization.csv").read_text()
    assert (first / "metrics.jsonl").read_text() == (second / "metrics.jsonl").read_text()
    third = run(tmp_path, "third", "--trainer.max_epochs", "2", "--seed_everything", "1")[1]
    assert (third / "metrics.jsonl").read_text() != (first / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    common = ["--model.transformer.dropout", "0.1"]  # dropout: the random state must travel too
    straight = run(tmp_path, "straight", "--trainer.max_epochs", "4", *common)[1]
    code, resumed = run(tmp_path, "resumed", "--trainer.max_epochs", "2", *common)
    assert code == 0
    assert run(tmp_path, "resumed", "--trainer.max_epochs", "4", "--ckpt_path", "last", *common)[0] == 0
    final = lambda path: pd.read_csv(path / "length_generalization.csv").query("step == step.max()")  # noqa: E731
    pd.testing.assert_frame_equal(final(straight).reset_index(drop=True), final(resumed).reset_index(drop=True))


@pytest.mark.slow
def test_last_step_is_evaluated_once_when_it_is_also_a_periodic_step(tmp_path):
    run_dir = run(tmp_path, "periodic", "--trainer.max_epochs", "3", "--eval_every_n_steps", "4")[1]  # steps 4, 8, 12
    table = pd.read_csv(run_dir / "length_generalization.csv")
    assert sorted(table.step.unique()) == [4, 8, 12] and not table.duplicated(["step", "length"]).any()
    lengthgen = read_metrics(run_dir).filter(like="lengthgen/").notna().any(axis=1)
    assert sorted(read_metrics(run_dir).step[lengthgen]) == [4, 8, 12]
    assert (run_dir / "accuracy_by_length.png").stat().st_size > 0


@pytest.mark.slow
def test_validation_figures_do_not_depend_on_the_eval_batch_size(tmp_path):
    import pytorch_lightning as pl

    from softhard.train.data import LanguageDataModule

    module = None
    results = []
    for eval_batch_size in (3, 7, 1000):  # batches of one length, of mixed lengths, the whole split
        data = LanguageDataModule("since_ab", max_length=6, validation_per_length=8, eval_batch_size=eval_batch_size,
                                  cache_dir=str(tmp_path))
        if module is None:
            torch.manual_seed(0)
            module = LanguageModel(TransformerConfig(n_layers=1, d_model=16, d_ff=16), vocab_size=data.vocab_size)
        trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        results.append(trainer.validate(module, datamodule=data, verbose=False)[0])
    for key in set(results[0]) - {"val/loss"}:  # objective "both": a per-position plus a per-word mean
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-5) == results[2][key], key


@pytest.mark.slow
def test_periodic_evaluations_leave_training_as_it_was(tmp_path):
    common = ["--trainer.max_epochs", "2", "--model.transformer.dropout", "0.1"]
    plain = run(tmp_path, "plain", *common)[1]
    evaluated = run(tmp_path, "evaluated", *common, "--eval_every_n_steps", "3")[1]
    losses = lambda path: read_metrics(path)["train/loss"].dropna().tolist()  # noqa: E731
    assert losses(plain) == losses(evaluated)
    final = lambda path: pd.read_csv(path / "length_generalization.csv").query("step == step.max()")  # noqa: E731
    pd.testing.assert_frame_equal(final(plain).reset_index(drop=True), final(evaluated).reset_index(drop=True))


@pytest.mark.slow
def test_gradient_accumulation_evaluates_each_step_once(tmp_path):
    run_dir = run(tmp_path, "accumulated", "--trainer.max_epochs", "2", "--trainer.accumulate_grad_batches", "2",
                  "--data.batch_size", "8", "--eval_every_n_steps", "2")[1]
    table = pd.read_csv(run_dir / "length_generalization.csv")
    assert 0 not in set(table.step) and not table.duplicated(["step", "length"]).any()


class Killed(Exception):
    """Stands in for a kill: training stops at once, nothing is written after it."""


@pytest.mark.slow
def test_run_killed_mid_training_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    # 4 steps an epoch, evaluations every 3: the kill in step 12 leaves records of steps 9-11 and rows of 9 behind
    common = ["--trainer.max_epochs", "4", "--model.transformer.dropout", "0.1", "--eval_every_n_steps", "3"]
    straight = run(tmp_path, "straight", *common)[1]
    training_step = LanguageModel.training_step

    def killed_in_epoch_three(self, batch, batch_idx):
        if self.current_epoch == 2 and batch_idx == 3:
            raise Killed
        return training_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(LanguageModel, "training_step", killed_in_epoch_three)
        with pytest.raises(Killed):
            run(tmp_path, "killed", *common)
    killed = tmp_path / "killed"
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    assert read_metrics(killed).step.max() > 8 and pd.read_csv(killed / "length_generalization.csv").step.max() == 9
    assert run(tmp_path, "killed", *common, "--ckpt_path", "last")[0] == 0
    # what the killed attempt logged after its checkpoint is forgotten, so the files equal an uninterrupted run's
    assert (killed / "length_generalization.csv").read_text() == (straight / "length_generalization.csv").read_text()
    assert (killed / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data.language", "nope"], "unknown language 'nope'"),
        (["--data.min_length", "9"], "min_length <= max_length"),
        (["--model.objective", "loudest"], "loudest"),
        (["--ckpt_path", "last"], "no checkpoint at"),
        (["--wandb", "sometimes"], "sometimes"),
        (["--data.language", "even_length", "--data.max_length", "1"], "no length of split 'train' (1..1)"),
        (["--data.cache_dir", "/dev/null/cache"], "/dev/null/cache"),
        (["--model.lr", "-1"], "model.lr must be > 0"),
        (["--probe_words", "-1"], "--probe_words must be >= 0, got -1"),
        (["--eval_every_n_steps", "0"], "--eval_every_n_steps must be >= 1 (or left out), got 0"),
        (["--trainer.enable_checkpointing", "false"], "--trainer.enable_checkpointing false: not supported"),
        (["--trainer.logger", "false"], "--trainer.logger false: not supported"),
        (["--trainer.fast_dev_run", "true"], "--trainer.fast_dev_run true: not supported"),
        (["--trainer.barebones", "true"], "--trainer.barebones true: not supported"),
        (["--trainer.logger", "WandbLogger"], "set it with --wandb, --wandb_project"),
        (["--trainer.accelerator", "tpu"], "--trainer: "),  # Lightning's own refusal, in one line
        (["--lr_scheduler", "WarmupCosineLR", "--lr_scheduler.warmup_steps", "5", "--lr_scheduler.total_steps", "2"],
         "warmup_steps=5, total_steps=2"),
    ],
)
def test_bad_input_fails_at_start_up_without_a_run_folder(tmp_path, capsys, extra, message):
    code, run_dir = run(tmp_path, "bad", *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not run_dir.exists()


def test_unknown_config_key_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, "bad", "--model.transformer.colour", "red")
    assert exit_info.value.code == 2 and "colour" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys, finished):
    code = train([*TINY, "--run_dir", str(finished), "--data.cache_dir", str(tmp_path)])
    assert code == 2 and "--ckpt_path last" in capsys.readouterr().err


@pytest.mark.slow
def test_schedule_callback_anneals_the_temperature(tmp_path):
    schedule = '{"tau_start": 1.0, "tau_end": 0.01, "steps": 8, "kind": "exponential"}'
    run_dir = run(tmp_path, "anneal", "--trainer.max_epochs", "2", "--model.transformer.schedule", schedule)[1]
    taus = read_metrics(run_dir)["temperature/layer0_head0"].dropna().tolist()
    assert taus[0] == pytest.approx(1.0) and taus[-1] < 0.05 and taus == sorted(taus, reverse=True)


def test_load_from_checkpoint_gives_the_model_that_ended_training(finished):
    # the attention capture ran the end-of-training model on the probe words: the loaded one must agree
    checkpoint = finished / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint)["hyper_parameters"]["lr"] == 1e-3  # the weights-only loader reads the file
    loaded = LanguageModel.load_from_checkpoint(checkpoint).eval()
    assert loaded.config.temperature == "learned" and loaded.config.vocab_size == 3
    record = torch.load(finished / "attention" / "test_41_50" / "batch_000.pt")
    with torch.no_grad():
        output = loaded({"input_ids": record["input_ids"], "lengths": record["lengths"]}, return_attention=True)
    for mine, saved in zip(output.attention + output.attention_logits, record["attention"] + record["attention_logits"]):
        torch.testing.assert_close(mine, saved, rtol=0, atol=0)  # same weights, same inputs, same CPU kernels


def test_transformer_config_round_trips_its_dict_form():
    config = TransformerConfig(n_layers=1, temperature=["log_n", "learned"], positional=["i/n"],
                               schedule=TemperatureSchedule(tau_start=2.0, steps=7, kind="linear"))
    assert transformer_config(dataclasses.asdict(config)) == config
    model = LanguageModel(dataclasses.asdict(config), vocab_size=4)
    assert model.config == dataclasses.replace(config, vocab_size=4)


def test_default_optimizer_is_adamw_with_model_lr(finished):
    group = torch.load(finished / "checkpoints" / "last.ckpt")["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.999)


@pytest.mark.slow
def test_user_logger_callbacks_and_root_dir_are_honoured(tmp_path):
    csv_dir = tmp_path / "csv"
    code = train([*TINY, "--data.cache_dir", str(tmp_path / "data"), "--trainer.max_epochs", "1",
                  "--trainer.default_root_dir", str(tmp_path / "root"),
                  "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(csv_dir),
                  "--trainer.callbacks", "LearningRateMonitor"])
    assert code == 0
    run_dir = tmp_path / "root" / "tiny-seed0"  # under default_root_dir, named by the first --config (tiny.yaml)
    assert {"config.yaml", "run_info.json", "metrics.jsonl", "length_generalization.csv"} <= {
        path.name for path in run_dir.iterdir()}
    logged = pd.read_csv(csv_dir / "lightning_logs" / "version_0" / "metrics.csv")
    jsonl = read_metrics(run_dir)
    assert logged["train/loss"].dropna().tolist() == pytest.approx(jsonl["train/loss"].dropna().tolist(), rel=1e-6)
    assert set(jsonl["lr-AdamW"].dropna()) == {1e-3}  # LearningRateMonitor's record
    assert "CSVLogger" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_lr_scheduler_warmup_cosine_steps_every_optimizer_step(tmp_path):
    run_dir = run(tmp_path, "cosine", "--trainer.max_epochs", "2", "--trainer.callbacks", "LearningRateMonitor",
                  "--model.lr", "0.01", "--lr_scheduler", "WarmupCosineLR", "--lr_scheduler.warmup_steps", "2",
                  "--lr_scheduler.total_steps", "6", "--lr_scheduler.min_lr_ratio", "0.1")[1]
    lrs = read_metrics(run_dir)["lr-AdamW"].dropna().tolist()  # the lr of steps 0..7 (4 steps an epoch)
    # warmup 0, 1/2, then the half cosine from 1 to 0.1 over steps 2..6 (its midpoint 0.55 at step 4), then held
    quarter = math.cos(math.pi / 4)
    expected = [0.0, 0.5, 1.0, 0.1 + 0.9 * (1 + quarter) / 2, 0.55, 0.1 + 0.9 * (1 - quarter) / 2, 0.1, 0.1]
    assert lrs == pytest.approx([0.01 * factor for factor in expected], rel=1e-12, abs=1e-15)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["optimizer"]["class_path"] == "torch.optim.AdamW" and config["optimizer"]["init_args"]["lr"] == 0.01


@pytest.mark.slow
def test_optimizer_replaces_adamw(tmp_path):
    run_dir = run(tmp_path, "sgd", "--trainer.max_epochs", "1", "--optimizer", "SGD", "--optimizer.lr", "0.1",
                  "--optimizer.momentum", "0.9")[1]
    group = torch.load(run_dir / "checkpoints" / "last.ckpt")["optimizer_states"][0]["param_groups"][0]
    assert group["lr"] == 0.1 and group["momentum"] == 0.9 and "betas" not in group


def test_warmup_cosine_refuses_a_floor_outside_zero_one():
    with pytest.raises(ValueError, match="min_lr_ratio must be in \\[0, 1\\], got 1.5"):
        WarmupCosineLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 1, 2, min_lr_ratio=1.5)


class FakeWandbRun:
    """Stands in for wandb.init's run: records the init arguments and every log call."""

    def __init__(self, **init):
        self.init, self.logged, self.id, self.name, self.dir = init, [], init["id"], init["name"], init["dir"]

    def log(self, payload):
        self.logged.append(payload)

    def finish(self):
        self.finished = True


@pytest.mark.slow
def test_wandb_gets_its_settings_one_config_and_media_at_their_step(tmp_path, monkeypatch):
    import wandb

    runs = []
    monkeypatch.setattr(wandb, "init", lambda **init: runs.append(FakeWandbRun(**init)) or runs[-1])
    monkeypatch.setenv("WANDB_MODE", "offline")  # the WandbLogger sets it; monkeypatch restores it
    code, run_dir = run(tmp_path, "faked", "--trainer.max_epochs", "2", "--wandb", "offline",
                        "--wandb_entity", "lab", "--wandb_group", "grid1", "--wandb_tags", "[since_ab, fixed]",
                        "--wandb_job_type", "train")
    assert code == 0 and len(runs) == 1 and runs[0].finished
    init = runs[0].init
    assert (init["entity"], init["group"], init["tags"], init["job_type"]) == ("lab", "grid1", ["since_ab", "fixed"],
                                                                               "train")
    assert init["id"] == json.loads((run_dir / "run_info.json").read_text())["wandb_run_id"]
    assert init["config"] == yaml.safe_load((run_dir / "config.yaml").read_text())  # the one config, as saved
    logged = runs[0].logged
    assert not any("_instantiator" in str(payload) for payload in logged)
    final_step = max(p["trainer/global_step"] for p in logged if "lengthgen/test_6_10/string_accuracy" in p)
    media = [p for p in logged if {"accuracy_by_length", "attention_maps"} & set(p)]
    assert len(media) == 2 and all(p["trainer/global_step"] == final_step == 8 for p in media)


@pytest.mark.slow
def test_resumed_wandb_offline_run_keeps_its_run_id(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    code, run_dir = run(tmp_path, "logged", "--trainer.max_epochs", "1", "--wandb", "offline")
    assert code == 0
    assert run(tmp_path, "logged", "--trainer.max_epochs", "2", "--wandb", "offline", "--ckpt_path", "last")[0] == 0
    run_id = json.loads((run_dir / "run_info.json").read_text())["wandb_run_id"]
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>, with "-1" appended by wandb when both attempts start within one second
    ids = [re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", folder.name).group(1) for folder in attempts]
    assert ids == [run_id, run_id], attempts
    out = capsys.readouterr().out
    assert all(f"wandb sync {folder}" in out for folder in attempts), out  # the hint, even with WANDB_SILENT
    content = next(attempts[0].glob("run-*.wandb")).read_bytes()
    assert b'"language":"since_ab"' in content and b'"n_layers":2' in content  # the resolved config


def test_data_module_warns_where_validation_lacks_a_class(tmp_path):
    from softhard.train.data import LanguageDataModule, collate

    data = LanguageDataModule(language="tomita1", max_length=3, train_per_length=4, validation_per_length=2,
                              test_per_length=2, cache_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="'tomita1': validation: no positive words at lengths 1, 2, 3"):
        data.prepare_data()
    data.setup()
    batch = collate([data.dataset["validation"][i] for i in range(len(data.dataset["validation"]))])
    assert batch["label"].dtype == torch.bool and not batch["label"].any()  # ClassLabel 0: non-members only
    assert batch["lengths"].tolist() == [2, 3]  # length 1: both classes single words, kept for train


@pytest.mark.parametrize("size", [0, 1, 5, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_rank_shares_partition_a_split(size, world_size):
    shares = [rank_share(size, rank, world_size) for rank in range(world_size)]
    assert [i for share in shares for i in share] == list(range(size))  # each word once, in order
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_length_generalization_split_across_ranks_sums_to_the_whole(tmp_path):
    from softhard.train.data import LanguageDataModule

    data = LanguageDataModule("since_ab", max_length=4, test_per_length=6, test_lengths_per_bin=3, eval_batch_size=4,
                              cache_dir=str(tmp_path))
    torch.manual_seed(0)
    module = LanguageModel(TransformerConfig(n_layers=1, d_model=16, d_ff=16), vocab_size=data.vocab_size)
    loaders = data.test_splits()
    whole = length_generalization(module, loaders, step=5, progress=False)
    world_size, partials = 4, []
    for rank in range(world_size):  # each rank's own counts, as it hands them to the all-reduce
        length_generalization(module, loaders, 5, False, rank, world_size, reduce_sum=lambda c: partials.append(c) or c)
    assert all(0 < partial[:, 0].sum() < whole.words.sum() for partial in partials)
    gathered = length_generalization(module, loaders, 5, False, 0, world_size, reduce_sum=lambda c: sum(partials))
    pd.testing.assert_frame_equal(gathered, whole, check_exact=False, rtol=1e-12)
    # an independent count of the whole table: words per (split, length) as the dataset holds them
    sizes = {(name, length): count for name in loaders for length, count in
             pd.Series(data.dataset[name]["length"]).value_counts().items()}
    assert dict(zip(zip(whole.split, whole.length), whole.words)) == sizes


@pytest.mark.slow
def test_ddp_run_evaluates_every_test_word_once(tmp_path):
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "softhard", "train", *TINY, "--trainer.max_epochs", "1",
               "--data.cache_dir", str(tmp_path / "data"), "--run_dir", str(run_dir),
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    table = pd.read_csv(run_dir / "length_generalization.csv")
    assert (table.words == 4).all() and len(table) == 8  # --data.test_per_length 4, two lengths in each of 4 bins


@pytest.mark.slow
def test_a_wandb_run_left_open_in_the_process_is_not_logged_into(tmp_path, monkeypatch):
    """Lightning's WandbLogger logs into any wandb run already open in the process; softhard's
    run folder gets its own (the id run_info.json records)."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    stale = wandb.init(project="elsewhere", dir=str(tmp_path), id="stale123")
    try:
        code, run_dir = run(tmp_path, "fresh", "--trainer.max_steps", "1", "--wandb", "offline")
    finally:
        wandb.finish()
    assert code == 0
    run_id = json.loads((run_dir / "run_info.json").read_text())["wandb_run_id"]
    assert run_id != stale.id and [folder.name[-len(run_id):] for folder in (run_dir / "wandb").glob("offline-run-*")] == [run_id]
