"""Run `mlp` in a child process and send it a signal once it has got somewhere; whether a
process has ended."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def signal_when(
    args: Sequence[str],
    ready: Callable[[], bool],
    signum: int,
    *,
    cwd: Path,
    env: Mapping[str, str],
    settle: float = 0.0,
    waiting_for: str = "the command to get going",
    ignored: Sequence[int] = (),
) -> tuple[int, str, str]:
    """Start ``python -m mlp_cli.cli *args``, wait until ``ready()`` (at most 60 s), let it
    run ``settle`` seconds more, send ``signum``; returns the exit code, stdout and stderr.
    The child starts with the signals in ``ignored`` ignored, as ``nohup`` or a shell's
    ``&`` start a command; it never outlives the call."""

    def ignore() -> None:
        for number in ignored:
            signal.signal(number, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "mlp_cli.cli", *args],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore if ignored else None,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"timed out waiting for {waiting_for}"
            time.sleep(0.05)
        time.sleep(settle)
        assert proc.poll() is None, ("ended before the signal", proc.communicate())
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout, stderr


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
