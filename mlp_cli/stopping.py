"""The signals that stop `mlp`, and the one way its processes take them over.

Ctrl-C (SIGINT), SIGTERM and SIGHUP end every command the way Ctrl-C does. A signal that
`mlp` was started with ignored stays ignored, in the command and in the processes it
starts: `nohup` ignores SIGHUP so that a run outlives its terminal, and a shell without
job control ignores SIGINT (and the Ctrl-C of its terminal) for a command started with
``&``. Whoever started `mlp` chose that; a handler installed over it would undo the choice.

Left out: what each command does once asked to stop (`cli`, `serve`, `sweep`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def take_over(signum: int, handler: Handler) -> Handler:
    """Install `handler` for `signum` unless the signal is ignored; returns the handler
    in place before, to put back."""
    previous = signal.getsignal(signum)
    if previous is not signal.SIG_IGN:
        signal.signal(signum, handler)
    return previous
