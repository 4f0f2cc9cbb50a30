"""Tests for `mlp_cli.threads`: the BLAS thread count the optimizer follows, and the idle-spin
setting the command line makes before NumPy loads OpenBLAS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_limits

from mlp_cli.threads import BLAS_SPIN_LOG2_CYCLES, blas_threads, let_blas_workers_sleep


def test_blas_threads_follows_a_threadpoolctl_limit() -> None:
    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads() == 1
    assert blas_threads() >= 1


def test_the_spin_setting_is_made_unless_the_user_made_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    let_blas_workers_sleep()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == str(BLAS_SPIN_LOG2_CYCLES)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "28")
    let_blas_workers_sleep()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "28"


def test_the_command_line_makes_the_setting_before_numpy_loads() -> None:
    code = (
        "import os, sys\n"
        "from mlp_cli import cli\n"
        "sys.argv = ['mlp', '--version']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.splitlines()[-1] == f"{BLAS_SPIN_LOG2_CYCLES} False"
