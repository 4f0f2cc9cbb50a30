"""`python -m bench`: its arguments are checked before any timing starts (the timing itself
is only run by hand and, in its smoke mode, by CI)."""

from __future__ import annotations

import pytest

# The least a run does, should a check be missing: a smoke run of one small network.
QUICK = ["--smoke", "--network", "400-25-10", "--drift-epochs", "0", "--no-memory", "--no-startup"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--network", "784-10"], "unknown network '784-10'; the benchmark knows 784-100-10"),
        (["--epochs", "0"], "--epochs takes a whole number of at least 1, not 0"),
        (["--threads", "0"], "--threads takes a whole number of at least 1, not 0"),
        ([*QUICK, "--out", "/"], "cannot write the results file '/': it is a folder"),
        ([*QUICK, "--out", "/dev/null/r.json"], "the results folder '/dev/null' is a"),
    ],
)
def test_the_benchmark_refuses_bad_arguments_before_running_anything(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err
