"""configs/<language>.yaml: one per registry language, each accepted by `softhard train` as is,
every key commented, and one of them trained for a few steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from softhard.data.registry import REGISTRY
from softhard.train.cli import main as train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
KEY_LINE = re.compile(r"^\s*[\w.\-]+:(\s|$)")  # a YAML mapping key such as `  max_epochs: 20`
NOT_LANGUAGES = {"sweep"}  # configs/sweep.yaml is the wandb sweep, not a run config


def language_configs() -> dict[str, Path]:
    return {path.stem: path for path in sorted(CONFIGS.glob("*.yaml")) if path.stem not in NOT_LANGUAGES}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def printed_config(capsys, *args: str) -> dict:
    """The resolved config `softhard train ... --print_config` prints, parsed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_every_registry_language_has_a_config():
    assert sorted(set(REGISTRY) - set(language_configs())) == []


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_config_parses_through_the_cli_and_names_its_language(capsys, name):
    path = CONFIGS / f"{name}.yaml"
    written = flatten(yaml.safe_load(path.read_text()))
    printed = flatten(printed_config(capsys, "--config", str(path)))
    assert written["data.language"] == name and printed["data.language"] == name
    # Every key of the file is a CLI key and arrives with the value written (nothing dropped).
    assert sorted(set(written) - set(printed)) == []
    assert {key: printed[key] for key in written} == written


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_header_names_the_language_and_the_command(name):
    spec = REGISTRY[name]
    header = "\n".join(line for line in (CONFIGS / f"{name}.yaml").read_text().splitlines() if line.startswith("#"))
    for text in (spec.formula, spec.alphabet, spec.kind, spec.description, f"softhard train --config configs/{name}.yaml"):
        assert text in header, text


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("grids/*.yaml")),
                         ids=lambda path: path.name)
def test_every_key_carries_a_comment(path):
    lines = path.read_text().splitlines()
    missing = []
    for number, line in enumerate(lines):
        if not KEY_LINE.match(line):  # blank, comment, list item or block-scalar text
            continue
        commented_above = number > 0 and lines[number - 1].strip().startswith("#")
        if " #" not in line and not commented_above:
            missing.append(f"{path.name}:{number + 1}: {line}")
    assert missing == []


@pytest.mark.slow
def test_a_config_trains_a_few_steps(tmp_path):
    run_dir = tmp_path / "run"
    code = train([
        "--config", str(CONFIGS / "majority.yaml"),  # counting: no positional encoding, past mask
        "--data.max_length", "6", "--data.train_per_length", "8", "--data.validation_per_length", "4",
        "--data.test_per_length", "4", "--data.test_lengths_per_bin", "1", "--data.cache_dir", str(tmp_path / "data"),
        "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--probe_words", "2", "--wandb", "disabled", "--run_dir", str(run_dir),
    ])
    assert code == 0
    assert (run_dir / "length_generalization.csv").is_file()
    assert "language: majority" in (run_dir / "config.yaml").read_text()
