"""Fixtures shared by the whole test suite: an isolated data cache, loopback mirrors, and a
probe of what a piece of code imports.

Every test runs with `MLP_DATA_DIR` pointing into its own tmp_path and without
`MLP_MNIST_MIRROR`, so no test writes the user's cache. Servers listen on 127.0.0.1 only;
`mnist_mirror` serves the real MNIST found on this machine (`real_mnist_dir`) so end-to-end
tests never need the internet, and no test ever downloads MNIST.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlp_cli import data

# Where the real MNIST is looked for, in this order: MLP_TEST_MNIST_DIR (or the copy beside
# the checkout, ../shared/data/mnist), then mlp's own cache as `mlp data fetch` fills it
# (MLP_DATA_DIR or the OS cache folder), read here before `isolated_data_dir` repoints
# MLP_DATA_DIR for each test.
MNIST_LOCAL_COPY = Path(
    os.environ.get("MLP_TEST_MNIST_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
)
MNIST_USER_CACHE = data.data_dir()
MNIST_SKIP_REASON = (
    f"real MNIST is not on this machine (looked in {MNIST_LOCAL_COPY} and in the mlp cache"
    f" {MNIST_USER_CACHE}); run `mlp data fetch` or set MLP_TEST_MNIST_DIR to a folder holding"
    " the four MNIST files (.gz or raw) to run this test"
)


def _dropped(signum: int, frame: object) -> None:
    """A stop signal the suite was started with ignored: it still does nothing to the suite."""


def pytest_configure(config: pytest.Config) -> None:
    """The tests send stop signals to mlp's processes and check how they are handled; a suite
    started with them ignored (a shell's `&` without job control, nohup) would pass that on
    to every child, which keeps them ignored as mlp does. Caught and dropped instead, they
    leave the suite running as its starter chose, and each child, whose exec sets a caught
    signal back to its default, gets them as a terminal gives them. Tests that want one
    ignored say so. (Here, not at import: the children that import this module must keep
    what they are given.)"""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) is signal.SIG_IGN:
            signal.signal(number, _dropped)


def _mnist_file(folder: Path, stem: str) -> Path | None:
    """`folder`'s copy of one MNIST file (.gz or raw IDX) when its content is verified."""
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            if hashlib.sha256(raw).hexdigest() == data.MNIST_FILES[stem]:
                return path
    return None


@functools.cache
def real_mnist_files() -> dict[str, Path] | None:
    """Stem -> a verified copy of each real MNIST file on this machine, or None.

    The first folder that holds all four wins; nothing is downloaded.
    """
    for folder in (MNIST_LOCAL_COPY, MNIST_USER_CACHE):
        found = {stem: _mnist_file(folder, stem) for stem in data.MNIST_FILES}
        if all(found.values()):
            return {stem: path for stem, path in found.items() if path is not None}
    return None


def require_real_mnist() -> dict[str, Path]:
    """`real_mnist_files()`, or skip the test saying how to make MNIST available."""
    files = real_mnist_files()
    if files is None:
        pytest.skip(MNIST_SKIP_REASON)
    return files


def real_mnist_bytes(stem: str) -> bytes:
    """The decompressed IDX bytes of one real MNIST file (skips the test when absent)."""
    raw = require_real_mnist()[stem].read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


class _QuietFolderHandler(SimpleHTTPRequestHandler):
    """Serves a folder; records request paths on the server instead of logging to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        requested: list[str] = getattr(self.server, "requested", [])
        requested.append(self.path)


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 running in a thread; `url` ends in "/"."""

    url: str
    requested: list[str] = field(default_factory=list)  # request paths, in order
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def stop(self) -> None:
        """Shut the server down and free its port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


ServeFolder = Callable[..., LoopbackServer]


@pytest.fixture
def serve_folder() -> Iterator[ServeFolder]:
    """Factory: `serve_folder(folder, handler=None)` starts a loopback server.

    `handler` is a BaseHTTPRequestHandler subclass to use instead of plain file serving
    (it is constructed with `directory=folder` when it accepts that keyword, as
    SimpleHTTPRequestHandler subclasses do). All servers stop when the test ends.
    """
    servers: list[LoopbackServer] = []

    def start(folder: Path, handler: type[BaseHTTPRequestHandler] | None = None) -> LoopbackServer:
        handler_class = handler or _QuietFolderHandler
        factory: Callable[..., BaseHTTPRequestHandler] = (
            functools.partial(handler_class, directory=str(folder))
            if issubclass(handler_class, SimpleHTTPRequestHandler)
            else handler_class
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), factory)
        server.daemon_threads = True
        loopback = LoopbackServer(url=f"http://127.0.0.1:{server.server_address[1]}/")
        server.requested = loopback.requested  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        loopback._server, loopback._thread = server, thread
        servers.append(loopback)
        return loopback

    yield start
    for loopback in servers:
        loopback.stop()


@pytest.fixture
def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MLP_DATA_DIR into this test's tmp_path and clear MLP_MNIST_MIRROR.

    Autouse, so no test anywhere in the suite touches the user's dataset cache. The
    folder is not created: code under test must create it when it writes.
    """
    cache = tmp_path / "mlp-data"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(cache))
    monkeypatch.delenv(data.MIRROR_ENV, raising=False)
    return cache


@pytest.fixture
def no_public_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty DEFAULT_MIRRORS, so a failing loopback mirror never falls back to the internet."""
    monkeypatch.setattr(data, "DEFAULT_MIRRORS", ())


@pytest.fixture
def mnist_mirror(
    serve_folder: ServeFolder,
    monkeypatch: pytest.MonkeyPatch,
    no_public_mirrors: None,
    tmp_path: Path,
) -> LoopbackServer:
    """Serve the real MNIST found on this machine on 127.0.0.1 and set MLP_MNIST_MIRROR to it.

    Public mirrors are disabled for the test, so nothing leaves the machine. Skips when
    no real MNIST is found.
    """
    folder = tmp_path / "mirror"
    folder.mkdir()
    for stem, path in require_real_mnist().items():
        # Served as <stem>.gz whether compressed or not: downloads accept raw IDX bytes too.
        (folder / f"{stem}.gz").symlink_to(path.resolve())
    server = serve_folder(folder)
    monkeypatch.setenv(data.MIRROR_ENV, server.url)
    return server


@pytest.fixture
def imports_of() -> Callable[[str], set[str]]:
    """``imports_of(code)``: the top-level modules loaded after running ``code`` in a fresh
    interpreter (what a command costs to start)."""

    def probe(code: str) -> set[str]:
        report = "\nimport sys\nprint(*sorted({m.split('.')[0] for m in sys.modules}))"
        out = subprocess.run(
            [sys.executable, "-c", code + report], capture_output=True, text=True, check=True
        ).stdout
        return set(out.strip().splitlines()[-1].split())

    return probe
