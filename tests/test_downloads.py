"""Hostile mirrors and killed downloads: a mirror that trickles, one that sends more than
any MNIST file holds, redirects to another host, SIGTERM and SIGHUP in the middle of a
download, leftovers of killed processes, bad `MLP_MNIST_MIRROR` values, and a damaged
cache file being reported.

Every server listens on 127.0.0.1 only and is stopped by the `serve_folder` fixture; public
mirrors are disabled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import LoopbackServer, ServeFolder
from signals import signal_when
from test_data import STEMS, Synthetic, cache_listing, idx_bytes, synthetic  # noqa: F401
from typer.testing import CliRunner

from mlp_cli import cli, data
from mlp_cli.errors import DataError

pytestmark = pytest.mark.usefixtures("no_public_mirrors")


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Trickle(_Quiet):
    """Announces a megabyte, then sends one byte every `pause` seconds (for a bounded time,
    so the server can always be stopped)."""

    pause = 0.2

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(2**20))
        self.end_headers()
        for _ in range(int(30 / self.pause)):
            try:
                self.wfile.write(b"\x1f")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(self.pause)


class TrickledHeaders(_Quiet):
    """Sends even the status line and headers one byte at a time."""

    def do_GET(self) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"z" * 200 + b"\r\n\r\n"
        for byte in head:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)


class Flood(_Quiet):
    """Sends far more bytes than asked for, without announcing a length."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        block = bytes(2**16)
        try:
            for _ in range(64):  # 4 MiB at most
                self.wfile.write(block)
        except OSError:
            return


class Announces(_Quiet):
    """Announces a length no MNIST file can have."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()


class AnnouncesDigits(_Quiet):
    """Announces a length of 5,000 digits, more than int() reads, after leading zeros."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0" * 10 + "9" * 5000)
        self.end_headers()


def redirecting(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(_Quiet):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + self.path.lstrip("/"))
            self.end_headers()

    return Redirect


class NotFound(_Quiet):
    def do_GET(self) -> None:
        self.send_error(404)


@pytest.mark.parametrize("handler", [Trickle, TrickledHeaders], ids=["body", "headers"])
def test_a_trickling_mirror_is_given_up_at_the_deadline(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    monkeypatch: pytest.MonkeyPatch,
    handler: type[BaseHTTPRequestHandler],
) -> None:
    monkeypatch.setattr(data, "_DEADLINE_S", 1.5)
    slow = serve_folder(synthetic.folder, handler=handler)
    started = time.monotonic()

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=slow.url)

    assert time.monotonic() - started < 15
    assert f"{slow.url}: did not deliver {STEMS[0]}.gz within 1.5 s" in str(info.value)
    assert cache_listing() == []


@pytest.mark.parametrize(
    "handler", [Flood, Announces, AnnouncesDigits], ids=["sends", "announces", "5000 digits"]
)
def test_a_mirror_sending_more_than_the_file_can_hold_is_refused(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    monkeypatch: pytest.MonkeyPatch,
    handler: type[BaseHTTPRequestHandler],
) -> None:
    monkeypatch.setattr(data, "_IDX_BYTES", dict.fromkeys(STEMS, 1000))
    limit = data._download_limit(STEMS[0])
    server = serve_folder(synthetic.folder, handler=handler)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    assert f"{limit:,}" in str(info.value)
    assert "more than" in str(info.value)
    assert cache_listing() == []


class NotANumber(_Quiet):
    """Announces a length that str.isdigit accepts but int() does not (superscript two, a
    valid Latin-1 header byte), then sends a few bytes that are no MNIST file."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "\u00b2")
        self.end_headers()
        self.wfile.write(b"not a gzip file")


def test_a_length_that_is_no_decimal_number_is_taken_as_unknown(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    server = serve_folder(synthetic.folder, handler=NotANumber)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    assert server.url in str(info.value)
    assert cache_listing() == []


def test_a_download_limit_fits_every_real_mnist_file() -> None:
    for stem in data.MNIST_FILES:
        assert data._download_limit(stem) >= data._IDX_BYTES[stem]
    assert data._IDX_BYTES["train-images-idx3-ubyte"] == 47_040_016


def test_a_redirect_to_another_host_is_named_in_the_error(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    closed_port_url: str,
) -> None:
    missing = serve_folder(synthetic.folder, handler=NotFound)
    first = serve_folder(synthetic.folder, handler=redirecting(missing.url))
    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=first.url)
    message = str(info.value)
    target = missing.url.removeprefix("http://").rstrip("/")
    assert f"{first.url}: redirected to {missing.url}{STEMS[0]}.gz (host {target})" in message
    assert "answered HTTP 404" in message

    dead = serve_folder(synthetic.folder, handler=redirecting(closed_port_url))
    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=dead.url)
    assert f"{dead.url}: redirected to {closed_port_url}" in str(info.value)
    assert "connection failed" in str(info.value)
    assert cache_listing() == []


def test_a_redirect_to_a_good_mirror_is_followed(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    good = serve_folder(synthetic.folder)
    first = serve_folder(synthetic.folder, handler=redirecting(good.url))

    paths = data.fetch_mnist(mirror=first.url)

    assert {stem: path.read_bytes() for stem, path in paths.items()} == synthetic.raw


class RedirectWithBody(_Quiet):
    """Redirects to itself with a 64 MiB body, and records how much of each body it sent
    before the client hung up."""

    size = 64 * 2**20
    sent: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/again")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        block, sent = bytes(2**16), 0
        try:
            while sent < self.size:
                self.wfile.write(block)
                sent += len(block)
        except OSError:
            pass
        self.sent.append(sent)


def test_a_redirects_body_is_left_unread(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    server = serve_folder(synthetic.folder, handler=RedirectWithBody)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    assert "redirected more than 5 times" in str(info.value)
    assert RedirectWithBody.sent  # an endless body is never read into memory
    assert max(RedirectWithBody.sent) < RedirectWithBody.size
    assert cache_listing() == []


def test_a_redirect_to_no_valid_url_is_a_clear_error(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    server = serve_folder(synthetic.folder, handler=redirecting("http://[::1/"))

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    assert f"{server.url}: redirected to 'http://[::1/{STEMS[0]}.gz', which is not a valid URL" in (
        str(info.value)
    )
    assert cache_listing() == []


@pytest.mark.parametrize("host", ["a..b", "a" * 64], ids=["empty label", "label over 63"])
def test_a_host_no_name_can_be_is_that_mirrors_failure(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    host: str,
) -> None:
    bad = f"http://{host}/"
    server = serve_folder(synthetic.folder, handler=redirecting(bad))
    for mirror in (bad, server.url):
        with pytest.raises(DataError) as info:
            data.fetch_mnist(mirror=mirror)
        assert f"{mirror}: " in str(info.value)
        assert f"'{host}', label empty or too long" in str(info.value)
    assert cache_listing() == []


class LongReason(_Quiet):
    """Answers 404 with a reason phrase of 60,000 characters."""

    def do_GET(self) -> None:
        self.send_response(404, "x" * 60_000)
        self.end_headers()


@pytest.mark.parametrize("how", ["reason", "ftp redirect", "http redirect"])
def test_a_servers_long_words_are_cut_short_in_the_error(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    how: str,
) -> None:
    missing = serve_folder(synthetic.folder, handler=NotFound)
    handler = {
        "reason": LongReason,
        "ftp redirect": redirecting("ftp://host/" + "y" * 60_000 + "/"),
        "http redirect": redirecting(missing.url + "y" * 60_000 + "/"),
    }[how]
    server = serve_folder(synthetic.folder, handler=handler)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    assert f"{server.url}: " in str(info.value)
    assert len(str(info.value)) < 2000, len(str(info.value))
    assert cache_listing() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_download_killed_by_a_signal_leaves_nothing_behind(
    serve_folder: ServeFolder, tmp_path: Path, signum: int
) -> None:
    slow = serve_folder(tmp_path, handler=Trickle)
    cache = tmp_path / "cache"
    env = {**os.environ, data.DATA_DIR_ENV: str(cache), data.MIRROR_ENV: slow.url}
    env.pop("MLP_DEBUG", None)
    code, stdout, stderr = signal_when(
        ["data", "fetch"],
        lambda: any(p.is_file() for p in cache.glob(".download-*/*")),
        signum,
        cwd=tmp_path,
        env=env,
        waiting_for="the download to start",
    )

    assert code == 128 + signum, stderr
    assert "Traceback" not in stdout + stderr
    assert sorted(os.listdir(cache)) == []


def _finished_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_processes_are_removed_at_the_next_start(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    cache = data.data_dir()
    cache.mkdir(parents=True)
    dead = _finished_pid()
    stale_folder = cache / f".download-{dead}-k2j3h4ab"
    stale_folder.mkdir()
    (stale_folder / f"{STEMS[0]}.gz").write_bytes(b"partial")
    stale_file = cache / f".{STEMS[1]}.{dead}-x8w_q2mz.tmp"
    stale_file.write_bytes(b"partial")
    ancient = cache / ".download-1-abc123xy"  # owner still running: removed once a day old
    ancient.mkdir()
    os.utime(ancient, (time.time() - 2 * 86400,) * 2)
    live = cache / f".download-{os.getpid()}-live1234"  # this process's own: kept
    live.mkdir()
    user_file = cache / "notes.txt"  # not ours: never touched
    user_file.write_text("mine")

    data.fetch_mnist(mirror=serve_folder(synthetic.folder).url)

    assert sorted(os.listdir(cache)) == sorted([*STEMS, live.name, user_file.name])


def test_data_info_removes_leftovers_of_killed_processes_too() -> None:
    cache = data.data_dir()
    cache.mkdir(parents=True)
    stale_folder = cache / f".download-{_finished_pid()}-k2j3h4ab"
    stale_folder.mkdir()
    (stale_folder / f"{STEMS[0]}.gz").write_bytes(b"partial")
    user_file = cache / "notes.txt"
    user_file.write_text("mine")

    result = CliRunner().invoke(cli.app, ["data", "info"])

    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(cache)) == [user_file.name]


def test_only_names_of_mlps_own_shape_count_as_leftovers() -> None:
    cache = data.data_dir()
    cache.mkdir(parents=True)
    dead = _finished_pid()
    users_folder = cache / ".download-manager"
    (users_folder / "stuff").mkdir(parents=True)
    (users_folder / "stuff" / "f.txt").write_text("precious")
    users_file = cache / ".download-list"
    users_file.write_text("keep")
    file_named_like_a_folder = cache / f".download-{dead}-abcd1234"  # mlp stages in folders
    file_named_like_a_folder.write_text("mine")
    folder_named_like_a_file = cache / f".{STEMS[0]}.{dead}-abcd1234.tmp"
    (folder_named_like_a_file / "inner").mkdir(parents=True)
    longer = cache / f".download-{dead}-abcd12345"  # one character more than tempfile's
    longer.mkdir()
    other_stem = cache / f".notes-ubyte.{dead}-abcd1234.tmp"
    other_stem.write_text("mine")
    stale = cache / f".download-{dead}-zz9_yy8x"  # mlp's own shape: removed
    (stale / "inner").mkdir(parents=True)
    for entry in cache.iterdir():
        os.utime(entry, (time.time() - 2 * 86400,) * 2)

    result = CliRunner().invoke(cli.app, ["data", "info"])

    assert result.exit_code == 0, result.output
    kept = [
        users_folder,
        users_file,
        file_named_like_a_folder,
        folder_named_like_a_file,
        longer,
        other_stem,
    ]
    assert sorted(os.listdir(cache)) == sorted(p.name for p in kept)
    assert (users_folder / "stuff" / "f.txt").read_text() == "precious"
    assert users_file.read_text() == "keep"


class ShortBody(_Quiet):
    """Announces a file's length, sends 1,000 bytes of it and closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "9630634")
        self.end_headers()
        self.wfile.write(b"\x1f" * 1000)
        self.wfile.flush()
        self.close_connection = True


class LongHeader(_Quiet):
    """Answers with a header line longer than any HTTP client reads."""

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"z" * 70_000 + b"\r\n\r\n")


class HangUp(_Quiet):
    """Reads the request and closes the connection without a word."""

    def do_GET(self) -> None:
        self.close_connection = True


@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (ShortBody, "the connection closed after 1,000 of 9,630,634 bytes"),
        (LongHeader, "the server sent a header line longer than 65,536 bytes"),
        (HangUp, "the server closed the connection without answering"),
    ],
    ids=["short-body", "long-header", "hang-up"],
)
def test_a_broken_connection_is_described_in_words_not_exception_names(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
    handler: type[BaseHTTPRequestHandler],
    words: str,
) -> None:
    server = serve_folder(synthetic.folder, handler=handler)

    with pytest.raises(DataError) as info:
        data.fetch_mnist(mirror=server.url)

    message = str(info.value)
    assert f"{server.url}: " in message
    assert words in message, message
    for name in ("IncompleteRead", "LineTooLong", "RemoteDisconnected", "ProtocolError", "(b'"):
        assert name not in message, message
    assert cache_listing() == []


BAD_MIRRORS = ["http://[::1", "http://host:99999/", "ftp://host/mnist/", "no url", "http://a b/"]


@pytest.mark.parametrize("bad", BAD_MIRRORS)
def test_a_bad_mirror_variable_is_a_clear_error(
    bad: str,
    monkeypatch: pytest.MonkeyPatch,
    synthetic: Synthetic,  # noqa: F811
) -> None:
    monkeypatch.setenv(data.MIRROR_ENV, bad)
    result = CliRunner().invoke(cli.app, ["data", "fetch"])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, message  # a usage error, as a bad MLP_DATA_DIR is
    assert data.MIRROR_ENV in message
    assert repr(bad) in message
    assert "Traceback" not in message
    assert cache_listing() == []


class RecordingNotices:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def write(self, text: str) -> None:
        self.notes.append(text)

    def __bool__(self) -> bool:
        return False


def test_a_damaged_cache_file_is_reported_when_it_is_moved_aside(
    synthetic: Synthetic,  # noqa: F811
    serve_folder: ServeFolder,
) -> None:
    server: LoopbackServer = serve_folder(synthetic.folder)
    paths = data.fetch_mnist(mirror=server.url)
    damaged = paths["train-labels-idx1-ubyte"]
    other = idx_bytes(np.zeros(6, dtype=np.uint8))
    damaged.write_bytes(other)
    notices = RecordingNotices()

    data.load_mnist("train", mirror=server.url, progressbar=notices)

    aside = damaged.with_name(damaged.name + ".mismatch")
    assert len(notices.notes) == 1
    assert str(damaged) in notices.notes[0]
    assert "damaged" in notices.notes[0]
    assert f"moved to {aside}" in notices.notes[0]
    assert aside.read_bytes() == other

    damaged.write_bytes(b"broken")
    result = CliRunner().invoke(cli.app, ["data", "fetch", "--mirror", server.url])
    assert result.exit_code == 0, result.stderr
    assert str(damaged) in result.stderr
    assert damaged.read_bytes() == synthetic.raw["train-labels-idx1-ubyte"]
    # The first file moved aside is kept; the second gets the next free name.
    assert aside.read_bytes() == other
    second = damaged.with_name(damaged.name + ".mismatch-2")
    assert second.read_bytes() == b"broken"
    assert "moved to" in result.stderr
    assert second.name in result.stderr
