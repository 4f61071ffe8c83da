"""`softhard construct`: one JSON line per length with the fields external checks read."""

from __future__ import annotations

import json

import pytest

from softhard.cli import main


@pytest.mark.parametrize("mode", ["hard", "soft-unbounded", "soft-scaled"])
def test_one_exact_json_line_per_length(capsys, mode):
    code = main(["construct", "--formula", "a S b", "--alphabet", "a,b,c", "--mode", mode, "--lengths", "8,64"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [line["length"] for line in lines] == [8, 64]
    for line in lines:
        assert line["accuracy"] == 1.0 and line["string_accuracy"] == 1.0
        assert 0.0 <= line["max_offtarget_mass"] < 1e-2 and len(line["temperatures"]) == 1
        assert (line["max_offtarget_mass"] == 0.0) == (mode == "hard")


def test_soft_scaled_temperature_shrinks_with_length(capsys):
    main(["construct", "--formula", "#a > #b", "--alphabet", "a,b", "--mode", "soft-scaled", "--lengths", "16,128"])
    short, long = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert min(long["temperatures"]) < min(short["temperatures"]) and long["accuracy"] == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--formula", "#a % 2 = 0", "--alphabet", "a,b", "--mode", "soft-unbounded"], "`#a % 2 = 0` has no construction"),
        (["--formula", "#a % 17 = 0", "--alphabet", "a,b"], "modulus 17"),
        (["--formula", "a S", "--alphabet", "a,b"], "offset 3"),
        (["--formula", "a", "--alphabet", "a,b", "--device", "cuda"], "cuda"),
        (["--formula", "Y " * 10_000 + "a", "--alphabet", "a,b"], "10002 residual dimensions"),  # nested 10,000 deep
    ],
    ids=["mode", "modulus", "syntax", "device", "deep"],
)
def test_errors_are_one_message(capsys, argv, message):
    code = main(["construct", *argv])
    err = capsys.readouterr().err
    if "cuda" in argv and "error" not in err:
        pytest.skip("a CUDA device is present")
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
