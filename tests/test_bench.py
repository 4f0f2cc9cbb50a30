"""`python -m bench`: its arguments are checked before any timing starts (the timing itself
is only run by hand and, in its smoke mode, by CI)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--network", "784-10"], "unknown network '784-10'; the benchmark knows 784-100-10"),
        (["--epochs", "0"], "--epochs takes a whole number of at least 1, not 0"),
        (["--threads", "0"], "--threads takes a whole number of at least 1, not 0"),
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
