"""A folder's lock held as another mlp process holds it, for tests of what waits or refuses.

`held(lock_file)` locks the file through a file description of its own (flock locks belong
to a file description, so mlp's own attempt in this process is refused as another
process's would be), writes the pid mlp reports, and closes it afterwards; the file stays,
as a process that ended leaves it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PID = 4242  # the pid the messages name


@contextmanager
def held(lock_file: Path) -> Iterator[None]:
    fcntl = pytest.importorskip("fcntl")  # where folders can be locked
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"%d\n" % PID)
        yield
    finally:
        os.close(fd)
