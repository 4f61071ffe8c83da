"""The `softhard` console script and its `data` subcommands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from softhard.data.ltl import parse
from softhard.cli import main

SAMPLE = ["data", "sample", "--formula", "a S b", "--alphabet", "a,b,c", "--length", "7", "--count", "25"]


def run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("label", ["positive", "negative", "any"])
def test_sample_writes_labelled_json_lines(capsys, label):
    code, out, _ = run(capsys, SAMPLE + ["--label", label, "--seed", "3"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 25
    phi = parse("a S b")
    for row in rows:
        assert list(row) == ["word", "label"] and len(row["word"]) == 7
        assert row["label"] == phi.accepts(row["word"])
        if label != "any":
            assert row["label"] == (label == "positive")


def test_sample_is_byte_for_byte_reproducible(capsys):
    first = run(capsys, SAMPLE + ["--label", "positive", "--seed", "5"])[1]
    second = run(capsys, SAMPLE + ["--label", "positive", "--seed", "5"])[1]
    other = run(capsys, SAMPLE + ["--label", "positive", "--seed", "6"])[1]
    assert first == second and first != other
    assert first.splitlines()[0].startswith('{"word": ["')


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--formula", "a S (b", "--alphabet", "a,b"], "unexpected end of formula at offset 6"),
        (["--formula", "a S d", "--alphabet", "a,b"], "'d'"),
        (["--formula", "a", "--alphabet", "a,A"], "'A'"),
        (["--language", "nope"], "unknown language 'nope'"),
        (["--language", "tomita2", "--label", "positive"], "no members of 'tomita2' of length 7"),
        (["--formula", "a"], "--alphabet"),
        (["--formula", "#a > 99999999999999999999", "--alphabet", "a,b"], "'99999999999999999999' at offset 5"),
    ],
)
def test_bad_input_gets_one_clear_message(capsys, argv, message):
    code, out, err = run(capsys, ["data", "sample", "--length", "7", "--count", "2"] + argv)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_negative_seed_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as info:
        main(SAMPLE + ["--seed", "-1"])
    assert info.value.code == 2 and "argument --seed: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_unwritable_build_folder_gets_one_clear_message(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["data", "build", "--language", "last_a", "--max-length", "3", "--out", str(blocker / "x"), "--quiet"]
    code, out, err = run(capsys, argv)
    assert code == 2 and out == "" and str(blocker / "x") in err and "Traceback" not in err


def test_unknown_command(capsys):
    code, _, err = run(capsys, ["dance"])
    assert code == 2 and "unknown command 'dance'" in err


def test_list_and_dfa(capsys):
    code, out, _ = run(capsys, ["data", "list", "--kind", "non-star-free"])
    assert code == 0 and "parity" in out and "majority" not in out
    code, out, _ = run(capsys, ["data", "dfa", "--language", "tomita2"])
    assert code == 0 and "4 states" in out
    code, _, err = run(capsys, ["data", "dfa", "--language", "majority"])
    assert code == 2 and "not regular" in err


def test_build_reports_splits_then_reuses(capsys, tmp_path):
    argv = ["data", "build", "--language", "since_ab", "--max-length", "6", "--train-per-length", "4",
            "--validation-per-length", "2", "--test-per-length", "2", "--out", str(tmp_path), "--quiet"]
    code, out, _ = run(capsys, argv)
    assert code == 0 and out.startswith("built ") and "test_49_60" in out
    code, out, _ = run(capsys, argv)
    assert code == 0 and out.startswith("reused ")


@pytest.mark.slow
def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "softhard", "data", "sample", "--language", "majority", "--length", "5", "--count", "2", "--label", "positive"],
        capture_output=True, text=True, check=True,
    )
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == [True, True]
