"""`mlp serve`: a local web page where one draws a digit and watches a trained network answer.

The server is the standard library's `ThreadingHTTPServer`: one thread per connection, so a
slow client only holds its own thread, every read has a timeout and every request a
deadline (`RequestReader`); a process holds at most `MAX_CONNECTIONS` connections and
answers one more with a 503.  A prediction is
Python and NumPy work that holds the interpreter's lock, so on Linux the server forks into
several processes that accept connections from one listening socket (as pre-forking servers
do) and the cores share the load; elsewhere it is one process.  A keep-alive connection
stays with the process that accepted it, so a process holding more connections than
another leaves a new one to the other.  The page and its script are package data
(`mlp_cli/web`), read once at start-up and served from memory by name, so no request path
ever reaches the file system.

The JSON API:

- ``GET /api/model[?run=NAME]``: the model's facts (layers, activations, training summary)
  and how its first-layer unit pictures are laid out in ``/api/units.png``.
- ``GET /api/runs``: the runs under the runs folder that hold a ``model.npz``.
- ``GET /api/units.png[?run=NAME]``: every first-layer unit's incoming weights as a tile
  (red positive, blue negative, as `mlp show hidden` draws them), tiles in a grid.
- ``POST /api/predict[?run=NAME]``: an image (PNG, JPEG, GIF, BMP, WebP, TIFF bytes) or JSON
  ``{"image": "data:image/png;base64,..."}`` or ``{"width": W, "height": H, "pixels": [...]}``
  (grey levels 0-255, row by row).  The answer holds the fields of `mlp predict --json`, the
  28x28 input the network was shown and every hidden layer's activations.  The picture
  goes through `mlp_cli.predict`'s own input transform, so it agrees with `mlp predict`.

Bad requests get a 4xx and ``{"error": "..."}``.  Left out on purpose: TLS, authentication,
CORS (the page is served from the same origin) and anything that writes files.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import ctypes
import errno
import functools
import io
import ipaddress
import json
import mmap
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
from PIL import Image

from mlp_cli import checkpoint
from mlp_cli.checkpoint import SavedModel, TrainingSummary
from mlp_cli.errors import ImageError, MLPError, UsageError
from mlp_cli.limits import shorten
from mlp_cli.model import MLP
from mlp_cli.plain import json_text
from mlp_cli.predict import check_logits, network_inputs, predictions_from
from mlp_cli.preprocess import image_from_bytes, mnist_style
from mlp_cli.stopping import STOP_SIGNALS, take_over
from mlp_cli.threads import usable_cores
from mlp_cli.viz import grid_cols, tile_sheet, unit_patterns

MAX_BODY = 10 * 2**20  # bytes; a phone photo fits, a canvas PNG is a few KiB
MAX_PIXELS = 4096 * 4096  # width * height of an uploaded picture or a JSON "pixels" canvas
DRAIN_FACTOR = 4  # a body this many times over the limit is still read (and dropped)
READ_TIMEOUT = 10.0  # seconds a client may take to send a request line, headers or body
# Seconds from a request's first byte to its last (request line, headers and body): a
# client sending a byte every few seconds never trips READ_TIMEOUT, and is cut off here.
REQUEST_TIME = 60.0
MAX_LOADED = 3  # models kept in memory when switching runs
# Open connections per process: each may hold a body of up to MAX_BODY while it waits for
# `picture_work`; a browser opens at most 6, the benchmark 8.
MAX_CONNECTIONS = 32
LINGER = 1.0  # seconds a refused connection stays open, for its client to read the 503
MAX_WORKERS = 4  # processes by default at most: each holds its own copy of the models
# glibc malloc: blocks up to this size come from (and return to) the process's own heap:
# a canvas's arrays fit, a large photo's are mapped and unmapped as glibc's default does...
KEEP_BLOCKS = 2 * 2**20  # bytes
# ... and free memory at a heap's top is handed back to the system only beyond this.
KEEP_FREE = 8 * 2**20  # bytes
MAX_TEXTS = 4096  # float32 values whose JSON text is kept (inputs take about a thousand)
# A process holding more open connections than another waits up to this long before it
# accepts a new one, so that the other takes it; it looks again this often.
HANDOFF_WAIT = 0.005  # seconds: Python's default thread switch interval
HANDOFF_POLL = 0.0005  # seconds
ASSETS = "mlp_cli.web"  # the page's package
ASSET_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
}
ASSET_NAME = re.compile(rf"[A-Za-z0-9_-]+\.(?:{'|'.join(ASSET_TYPES)})")
IMAGE_TYPES = {
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/webp",
    "image/tiff",
    "application/octet-stream",
}
CONTENT_LENGTH = re.compile(r"[0-9]+")  # RFC 9110: 1*DIGIT, ASCII only
# A Content-Length of more digits is beyond any body limit (and int() refuses 4301 digits).
MAX_LENGTH_DIGITS = 18
RUN_NAME = re.compile(r"[^/\\\x00]{1,255}")
# The API's paths that answer GET alone: a POST there is the wrong method (405), while a POST
# to any other path finds nothing (404), as a GET there does.
GET_API = ("/api/model", "/api/runs", "/api/units.png")
# The page loads only its own script, style, pictures and API answers, and the blobs of
# its uploads; nothing else (data: URLs, media, fonts, frames, forms, <base>) at all.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


class RequestError(Exception):
    """A request the server refuses: a message for the client and an HTTP status (400, Bad
    Request, unless told)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


class RequestTimeoutError(Exception):
    """A request that has not arrived whole within `Server.request_time` of its first byte
    (not a `TimeoutError`, which the base handler drops without an answer)."""


class RequestReader(io.RawIOBase):
    """A connection's reads, under `Handler.rfile`'s buffer: each waits at most
    ``read_timeout``, and those of one request end ``request_time`` after its first byte
    (`deadline`, which the handler clears between requests), as `data`'s downloads do."""

    def __init__(self, connection: socket.socket, read_timeout: float, request_time: float):
        self.connection = connection
        self.read_timeout, self.request_time = read_timeout, request_time
        self.deadline: float | None = None  # None: the next request has not begun

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:  # waiting for a request: only the read timeout applies
            count = self.connection.recv_into(buffer)
            if count:
                self.deadline = time.monotonic() + self.request_time
            return count
        left = self.deadline - time.monotonic()
        if left > 0:
            self.connection.settimeout(min(left, self.read_timeout))
            try:
                return self.connection.recv_into(buffer)
            except TimeoutError:
                if time.monotonic() < self.deadline:
                    raise
            finally:
                self.connection.settimeout(self.read_timeout)  # answers are written with it
        raise RequestTimeoutError(
            f"the request did not arrive whole within {self.request_time:g} s"
        )


def check_host(host: str) -> None:
    """Refuse an empty address, which the socket library takes for every interface."""
    if not host.strip():
        raise UsageError(
            f"--host is empty ({host!r}): give the address to listen on, such as 127.0.0.1 "
            "(this machine only, the default) or 0.0.0.0 (every interface, so the page is "
            "reachable from the network)."
        )


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (then the page is not on the network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Served:
    """One loaded model: the network, a lock around its work buffers, its pictures."""

    name: str
    saved: SavedModel
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.model = MLP.from_saved(self.saved)

    @property
    def side(self) -> int:
        return self.saved.meta.preprocessing.input_size

    def facts(self) -> dict[str, Any]:
        """What the page shows about the model (all of it from the model file)."""
        meta = self.saved.meta
        layers = self.saved.layers
        training = meta.training or TrainingSummary()  # a file need not have one
        n_units = layers[1]
        return {
            "name": self.name,
            "path": str(self.saved.path),
            "layers": layers,
            # no hidden layer, no hidden activation: the file's value was never used
            "hidden_activation": meta.hidden_activation if len(layers) > 2 else None,
            "output_activation": meta.output_activation,
            "parameters": int(self.model.params.size),
            "input_size": self.side,
            "standardised": meta.preprocessing.normalize is not None,
            "class_names": meta.class_names,
            "created": meta.created,
            "package_version": meta.package_version,
            # The file records the best epoch's accuracy only: a file holding another epoch's
            # weights (restore_best off) would be credited with a score it did not reach.
            "val_accuracy": training.best_val_accuracy
            if meta.weights_epoch() in (None, training.best_epoch)
            else None,
            "epochs": training.epochs_run,
            "best_epoch": training.best_epoch,
            "units": {
                "count": n_units,
                "side": self.side,
                "columns": grid_cols(n_units),
                "output": len(layers) == 2,  # no hidden layer: the tiles are class templates
            },
        }

    @functools.cached_property
    def units_png(self) -> bytes:
        """The first weight layer's units as tiles, `columns` to a row, as a PNG."""
        patterns, _ = unit_patterns(self.saved.weights, 1)  # (units, side*side)
        sheet = tile_sheet(patterns, self.side, grid_cols(len(patterns)))
        buffer = io.BytesIO()
        Image.fromarray(sheet).save(buffer, format="PNG")
        return buffer.getvalue()

    def predict(self, image: Any, source: str) -> bytes:
        """The JSON answer for one picture: `mlp predict --json`'s fields, then the 28x28
        input the network was shown (``input``) and each hidden layer's activations
        (``hidden``), as json.dumps writes them."""
        digit = mnist_style(image, source="in the request")  # "Image in the request ..."
        X = network_inputs(self.saved, [digit])
        with self.lock, np.errstate(over="ignore", invalid="ignore"):
            # The forward pass writes into the model's shared work buffers.
            outputs = self.model.layer_outputs(X)
            check_logits(self.saved, self.model.logits(1))  # no NaN is ever sent as a prediction
        prediction = predictions_from([source], [digit], outputs[-1])[0]
        answer = prediction.to_json(self.saved.meta.class_names)
        answer["model"] = self.name
        # JSON has no infinity: a unit beyond float32 (finite logits can follow, through a
        # ReLU) is sent as float32's largest value, of its sign.
        hidden = [np.nan_to_num(np.round(a[0], 4)).tolist() for a in outputs[:-1]]
        # json.dumps(answer | {"input": ..., "hidden": hidden}), the input written from texts
        head, inputs = json_text(answer)[:-1], float32_matrix_json(np.round(digit, 3))
        return f'{head}, "input": {inputs}, "hidden": {json.dumps(hidden)}}}'.encode()


class Float32Texts(dict[int, str]):
    """json.dumps' text of float32 values, by their bits (so 0.0 and -0.0 keep their own).

    json.dumps formats every float anew, while a digit's 784 inputs, rounded to 3 decimals,
    are mostly 0.0 and take about a thousand distinct values in all: looking their texts up
    is cheaper.  Holds at most `MAX_TEXTS` texts, forgetting them all when full.
    """

    def __missing__(self, bits: int) -> str:
        if len(self) >= MAX_TEXTS:
            self.clear()
        value = float(np.array(bits, dtype=np.uint32).view(np.float32))
        text = self[bits] = json.dumps(value)
        return text


_TEXTS = Float32Texts()


def float32_matrix_json(values: npt.NDArray[np.float32]) -> str:
    """``json.dumps(values.tolist())`` for a float32 matrix (rows, columns)."""
    columns = values.shape[1]
    if values.dtype != np.float32 or values.size == 0:
        return json.dumps(values.tolist())
    bits = np.ascontiguousarray(values).view(np.uint32).ravel().tolist()  # (rows * columns,)
    words = list(map(_TEXTS.__getitem__, bits))
    lines = (", ".join(words[start : start + columns]) for start in range(0, len(words), columns))
    return "[" + ", ".join(f"[{line}]" for line in lines) + "]"


class Models:
    """The model given on the command line and, on request, the runs beside it."""

    def __init__(self, model: Path | None, runs: Path) -> None:
        self.runs = runs
        path = checkpoint.find_model(model, runs=runs)
        # A run's folder name, or a loose model file's stem.
        name = path.resolve().parent.name if path.name == checkpoint.MODEL_FILE else path.stem
        self.default = Served(name, checkpoint.load(path))
        # Resolved: `runs/latest` moving to a newer run does not change the default.
        self._default_path = path.resolve()
        self._default_version = _version(self._default_path)
        # The runs asked for last, each loaded once; one load at a time (`get`).
        self._loaded = functools.lru_cache(maxsize=MAX_LOADED)(self._load)
        self._lock = threading.Lock()

    def _run_model(self, name: str) -> Path | None:
        """The model of the run called `name` under the runs folder, if it is one a request
        can name (``latest`` is a pointer, not a run)."""
        if name in (".", "..", checkpoint.LATEST) or not RUN_NAME.fullmatch(name):
            return None
        if not name.isprintable():
            return None  # not UTF-8 (the page could not send it back), or unprintable
        model = self.runs / name / checkpoint.MODEL_FILE
        try:  # an unreadable folder is left out, not an error for every request
            return model if model.is_file() else None
        except OSError:
            return None

    def run_names(self) -> list[str]:
        """Sub-folders of the runs folder holding a model, newest first."""
        try:
            names = [p.name for p in self.runs.iterdir()]
        except OSError:
            return []
        found = []
        for name in names:
            with contextlib.suppress(OSError):  # gone or unreadable since: left out
                if (model := self._run_model(name)) is not None:
                    found.append((model.stat().st_mtime, name))
        return [name for _, name in sorted(found, reverse=True)]

    def get(self, run: str | None) -> Served:
        """The default model (``run`` None or its name) or the run called ``run``."""
        path: Path | None = self._default_path
        if run is None or run == self.default.name:
            run = self.default.name
        else:
            path = self._run_model(run)  # this one folder: no scan of the runs folder
        # The file's identity: a model trained again into its file is loaded again.
        version = None if path is None else _version(path)
        if path == self._default_path and version in (None, self._default_version):
            return self.default  # as loaded last, also once its file is gone
        if path is None or version is None:
            raise RequestError(
                f"no run named {run!r} under {self.runs}; GET /api/runs lists them",
                HTTPStatus.NOT_FOUND,
            )
        with self._lock:
            served = self._loaded(run, path, version)
        if path == self._default_path:
            self.default, self._default_version = served, version
        return served

    @staticmethod
    def _load(run: str, path: Path, version: tuple[int, int, int]) -> Served:
        """The run's model (`version`, the file's inode, mtime and size, keys the cache)."""
        try:
            return Served(run, checkpoint.load(path))
        except MLPError as exc:  # not kept: the next request reads the file again
            raise RequestError(str(exc), HTTPStatus.UNPROCESSABLE_ENTITY) from None


def _version(path: Path) -> tuple[int, int, int] | None:
    """A file's inode, time and size, which change when it is written again; None if it
    cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def image_from_json(body: bytes) -> Any:
    """The picture in a JSON request: a data URL (``image``) or grey ``pixels``."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    except ValueError:  # json.loads refuses to convert an integer this long
        raise RequestError(
            f"the body's JSON holds an integer of more than {sys.get_int_max_str_digits()} "
            "digits; width, height and pixels are small numbers"
        ) from None
    except RecursionError:
        raise RequestError(
            "the body's JSON is nested too deeply to read; expected a JSON object"
        ) from None
    if not isinstance(request, dict):
        raise RequestError(
            'expected a JSON object: {"image": "data:image/png;base64,..."} or '
            '{"width": W, "height": H, "pixels": [W*H grey levels 0-255]}'
        )
    if "image" in request:
        text = request["image"]
        if not isinstance(text, str):
            raise RequestError('"image" must be a data URL string')
        _, comma, data = text.partition(",")
        try:
            raw = base64.b64decode(data if comma else text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(
                '"image" is not base64 data (expected data:image/png;base64,...)'
            ) from None
        return image_from_bytes(raw, "in the JSON body", MAX_PIXELS)
    width, height, pixels = (request.get(k) for k in ("width", "height", "pixels"))
    # type(...) is int: JSON's true and false are bools, which are ints to isinstance
    if not (type(width) is int and type(height) is int and isinstance(pixels, list)):
        raise RequestError(
            'expected "image" (a data URL) or integer "width" and "height" and a "pixels" list'
        )
    if not (width > 0 and height > 0 and width * height <= MAX_PIXELS):
        raise RequestError(
            f"width and height must be positive with at most {MAX_PIXELS} pixels in all, "
            f"got {width}x{height}"
        )
    if len(pixels) != width * height:
        raise RequestError(
            f'"pixels" holds {len(pixels)} values, but width x height is {width * height}'
        )
    try:
        grey = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float
        raise RequestError('"pixels" must be numbers 0-255') from None
    if grey.ndim != 1 or not np.all(np.isfinite(grey)) or grey.min() < 0 or grey.max() > 255:
        raise RequestError('"pixels" must be numbers 0-255')
    return Image.fromarray(np.rint(grey).astype(np.uint8).reshape(height, width))


class Handler(BaseHTTPRequestHandler):
    """Answers the page, its assets and the JSON API; every failure is a JSON error."""

    protocol_version = "HTTP/1.1"  # keep-alive, so a page's requests share one connection
    # Headers and body are buffered so that they leave in one write (`_send` flushes); a
    # response larger than the buffer leaves in several, and with Nagle's algorithm the
    # last would wait for the client's delayed ACK (tens of milliseconds on Linux).
    wbufsize = 2**16  # bytes
    disable_nagle_algorithm = True
    server_version = "mlp-serve"
    sys_version = ""
    server: Server

    def handle_expect_100(self) -> bool:
        """Send "100 Continue" now: the client holds the body back until it sees it, and
        the buffered writer would keep it until the final answer."""
        answered = super().handle_expect_100()
        self.wfile.flush()
        return answered

    def setup(self) -> None:
        super().setup()
        # Every read (request line, headers, body) waits at most this long.
        self.connection.settimeout(self.server.read_timeout)
        self.rfile.close()  # the socket's own reader, which knows no deadline
        self.reader = RequestReader(
            self.connection, self.server.read_timeout, self.server.request_time
        )
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request, its line, headers and body read within `Server.request_time`."""
        self.reader.deadline = None  # from the request's first byte
        self.requestline = self.request_version = self.command = ""  # none read yet
        try:
            super().handle_one_request()
        except RequestTimeoutError as exc:  # in the request line or headers
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, str(exc))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not logged; failures reach `Server.log`

    # -- responses ----------------------------------------------------------------------

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, cache: bool = False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60" if cache else "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:  # RFC 9110 15.5.6: the methods it takes
            predict = urlsplit(self.path).path == "/api/predict"
            self.send_header("Allow", "POST" if predict else "GET, HEAD")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()  # now: a refused body is drained after its answer has left

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json_text(value).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own refusals (bad request line, headers too long) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # the request line was unreadable
            self.request_version = "HTTP/1.0"
        status = HTTPStatus(code)  # the base class refuses only with codes HTTPStatus has
        self._error(status, message or status.phrase)

    # -- dispatch -----------------------------------------------------------------------

    def _dispatch(self, action: Callable[[str, dict[str, list[str]]], None]) -> None:
        url = urlsplit(self.path)
        try:
            action(url.path, parse_qs(url.query))
        except RequestError as exc:
            self._error(exc.status, str(exc))
            self._drain_refused_body()
        except ImageError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except RequestTimeoutError as exc:  # in the body
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, str(exc))
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except Exception as exc:  # a request never takes the server down
            self.server.log(f"error answering {self.command} {self.path!r}: {exc!r}")
            self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {exc}")

    def do_GET(self) -> None:
        self._dispatch(self._get)

    do_HEAD = do_GET  # noqa: N815  (`_send` leaves the body out of a HEAD answer)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _not_allowed(self) -> None:
        self._dispatch(self._refuse_method)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def _refuse_method(self, path: str, query: dict[str, list[str]]) -> None:
        self._discard_body()
        raise RequestError(
            f"{self.command} is not supported: use GET for the page and /api/model, "
            "/api/runs, /api/units.png, POST for /api/predict",
            HTTPStatus.METHOD_NOT_ALLOWED,
        )

    @staticmethod
    def _run(query: dict[str, list[str]]) -> str | None:
        values = query.get("run")
        return values[-1] if values else None

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        self._discard_body()  # a body is never the start of the connection's next request
        models = self.server.models
        if path == "/api/model":
            self._json(HTTPStatus.OK, models.get(self._run(query)).facts())
        elif path == "/api/runs":
            self._json(
                HTTPStatus.OK,
                {"runs": models.run_names(), "current": models.default.name},
            )
        elif path == "/api/units.png":
            self._send(HTTPStatus.OK, models.get(self._run(query)).units_png, "image/png")
        elif path == "/api/predict":
            raise RequestError(
                "POST an image to /api/predict (GET is not supported)",
                HTTPStatus.METHOD_NOT_ALLOWED,
            )
        else:
            name = "index.html" if path == "/" else path.removeprefix("/static/")
            body = self.server.assets.get(name) if name != path else None  # "/" or "/static/..."
            if body is None:
                raise RequestError(f"nothing at {path!r}", HTTPStatus.NOT_FOUND)
            self._send(HTTPStatus.OK, body, ASSET_TYPES[name.rsplit(".", 1)[1]], cache=True)

    def _post(self, path: str, query: dict[str, list[str]]) -> None:
        if path != "/api/predict":
            self._discard_body()
            status = HTTPStatus.METHOD_NOT_ALLOWED if path in GET_API else HTTPStatus.NOT_FOUND
            raise RequestError(f"nothing to POST to at {path!r}; use /api/predict", status)
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self._read_body()  # first, so that a refusal leaves the connection usable
        served = self.server.models.get(self._run(query))
        if kind not in IMAGE_TYPES and kind != "application/json":
            raise RequestError(
                f"unsupported Content-Type {kind or '(none)'!r}: send image bytes (image/png, "
                "image/jpeg, ...) or application/json",
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            )
        if not body:
            raise RequestError("the request body is empty; send an image")
        with self.server.picture_work:
            if kind == "application/json":
                image = image_from_json(body)
            else:
                image = image_from_bytes(body, "in the request body", MAX_PIXELS)
            answer = served.predict(image, "upload")
            del image  # before the next request may decode another
        self._send(HTTPStatus.OK, answer, "application/json")

    # -- bodies -------------------------------------------------------------------------

    def _content_length(self) -> int:
        # Every line of these headers counts: read from the first line alone, a body's end
        # would be a guess, and the rest of it read as the next request (RFC 9112 6.3).
        if encodings := ", ".join(self.headers.get_all("Transfer-Encoding") or []):
            self.close_connection = True
            raise RequestError(
                "send a Content-Length, not chunks or another Transfer-Encoding "
                f"({shorten(encodings, 40)!r})",
                HTTPStatus.LENGTH_REQUIRED,
            )
        # A field's value excludes the spaces and tabs around it (RFC 9110 5.5).
        lengths = {text.strip(" \t") for text in self.headers.get_all("Content-Length") or []}
        if len(lengths) > 1:
            self.close_connection = True
            raise RequestError(
                f"the request has {len(lengths)} different Content-Lengths; send one"
            )
        if not lengths:
            return 0
        text = lengths.pop()
        if not CONTENT_LENGTH.fullmatch(text):  # str.isdigit would also take "²" or "٣"
            self.close_connection = True
            raise RequestError(
                f"bad Content-Length {shorten(text, 40)!r}: expected the body's size in bytes, "
                "in the digits 0-9"
            )
        digits = text.lstrip("0") or "0"
        if len(digits) > MAX_LENGTH_DIGITS:
            self.close_connection = True
            raise RequestError(
                f"the Content-Length {shorten(text, 40)} is over the limit of "
                f"{self.server.max_body} bytes",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        return int(digits)

    def _read_body(self) -> bytes:
        """The request body, refused unread beyond `MAX_BODY` (the connection then closes)."""
        length = self._content_length()
        if length > self.server.max_body:
            self.close_connection = True
            self._refused = length
            raise RequestError(
                f"the body is {length} bytes; the limit is {self.server.max_body} bytes "
                "(scale the picture down: a digit needs a few hundred pixels per side)",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        body = self.rfile.read(length)
        if len(body) < length:  # the client gave up
            self.close_connection = True
            raise ConnectionError("short body")
        return body

    _refused = 0  # length of a body refused as too large, not yet read

    def _drain_refused_body(self) -> None:
        """Read and drop a refused body of at most `DRAIN_FACTOR` times the limit, so that
        a client still sending it (most do, before they read the answer) gets the 413
        rather than a broken pipe.  Larger bodies are cut off unread."""
        left, self._refused = self._refused, 0
        if not left or left > DRAIN_FACTOR * self.server.max_body:
            return
        with contextlib.suppress(OSError, RequestTimeoutError):
            while left > 0 and (chunk := self.rfile.read(min(left, 2**16))):
                left -= len(chunk)

    def _discard_body(self) -> None:
        length = self._content_length()
        if length > self.server.max_body:
            self.close_connection = True
        elif length:
            self.rfile.read(length)


class Server(ThreadingHTTPServer):
    """`ThreadingHTTPServer` serving one `Models`; threads die with the process."""

    daemon_threads = True
    block_on_close = False
    # Connections waiting to be accepted: the default 5 resets a burst of a page's requests.
    request_queue_size = 128

    def __init__(
        self,
        models: Models,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        read_timeout: float = READ_TIMEOUT,
        request_time: float = REQUEST_TIME,
        max_body: int = MAX_BODY,
        max_connections: int = MAX_CONNECTIONS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.models = models
        # Forked worker processes (`serve_forever`), each with its place in `loads`.
        self.workers: dict[int, int] = {}
        self._open: set[int] = set()  # this process's open connections
        self._open_lock = threading.Lock()
        self._refused: collections.deque[tuple[float, socket.socket]] = collections.deque()
        # One picture decoded and read at a time in each process: a large upload takes a
        # hundred MB or more while it is worked on.
        self.picture_work = threading.Lock()
        self.assets = {
            item.name: item.read_bytes()
            for item in resources.files(ASSETS).iterdir()
            if item.is_file() and ASSET_NAME.fullmatch(item.name)
        }
        self.read_timeout = read_timeout
        self.request_time = request_time
        self.max_body = max_body
        self.max_connections = max_connections
        self.log: Callable[[str], None] = log or (lambda message: None)
        check_host(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            fix = (
                "Choose another --port (0 picks a free one) or stop what is using it."
                if exc.errno in (errno.EADDRINUSE, errno.EACCES)
                else "Give --host an address of this machine, such as 127.0.0.1."
            )
            raise UsageError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}. {fix}"
            ) from None

    # Set by `serve_forever` when it forks: each process's number of open connections, in
    # memory the processes share, and this process's place in it.
    loads: memoryview | None = None
    slot = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if len(self._open) >= self.max_connections:
            self._refuse_busy(request)
            return
        self._track(request, opened=True)
        super().process_request(request, client_address)

    def _refuse_busy(self, request: socket.socket) -> None:
        """Answer a connection beyond `max_connections` with a 503 and close it at once, so
        that neither a thread nor a body is held for it."""
        message = json_text(
            {"error": f"the server holds {self.max_connections} connections; try again shortly"}
        ).encode()
        with contextlib.suppress(OSError):
            request.setblocking(False)  # the answer fits a new socket's buffer: no waiting
            request.send(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
                % (len(message), message)
            )
            request.shutdown(socket.SHUT_WR)
        # Closed later (`service_actions`): closed now, with the client's request unread, the
        # connection would be reset, and the answer lost with it.
        self._refused.append((time.monotonic() + LINGER, request))
        self._close_refused()

    def _close_refused(self) -> None:
        """Close the refused connections whose `LINGER` is over, and the oldest beyond
        `max_connections` of them."""
        refused = self._refused
        while refused and (refused[0][0] < time.monotonic() or len(refused) > self.max_connections):
            refused.popleft()[1].close()

    def server_close(self) -> None:
        super().server_close()
        while self._refused:
            self._refused.popleft()[1].close()

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self._track(request, opened=False)

    def _track(self, request: Any, *, opened: bool) -> None:
        """Count this process's open connections, where the other processes can read it."""
        with self._open_lock:
            if opened:
                self._open.add(id(request))
            else:
                self._open.discard(id(request))
            if self.loads is not None:
                self.loads[self.slot] = len(self._open)

    def get_request(self) -> tuple[Any, Any]:
        """Accept a connection, after leaving it for a while to a process with fewer.

        A connection stays with the process that accepted it (keep-alive), and which of the
        processes waiting on the socket accepts is a race: a few busy clients could all
        land on one process while another idles.  If the connection is taken meanwhile,
        accept fails as it does when another process wins the race.
        """
        if self.loads is not None:
            deadline = time.monotonic() + HANDOFF_WAIT
            while self.loads[self.slot] > min(self.loads) and time.monotonic() < deadline:
                time.sleep(HANDOFF_POLL)
                if not select.select([self.socket], [], [], 0)[0]:
                    break  # another process has taken it
        return super().get_request()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request (reset, timed out) is dropped quietly;
        anything else is one line in the log, never a traceback on the terminal."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            self.log(f"error on the connection from {client_address[0]}: {error!r}")

    def service_actions(self) -> None:
        # A forked worker whose parent is gone (killed outright) stops instead of serving on.
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise SystemExit(0)
        self.reap_workers()
        self._close_refused()

    def reap_workers(self) -> None:
        """Report each forked worker that has died since the last look; the rest serve on."""
        for pid in list(self.workers):
            ended, status = os.waitpid(pid, os.WNOHANG)
            if ended:
                slot = self.workers.pop(pid)
                if self.loads is not None:  # never again the least busy process
                    self.loads[slot] = sys.maxsize
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) in STOP_SIGNALS:
                    continue  # stopped as asked, like the server (Ctrl-C reaches them all)
                how = (
                    f"was killed by signal {os.WTERMSIG(status)}"
                    if os.WIFSIGNALED(status)
                    else f"exited with code {os.waitstatus_to_exitcode(status)}"
                )
                self.log(f"worker process {pid} {how}; the other processes serve on")

    parent_pid: int | None = None  # set in forked workers: the process that started them

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def default_workers() -> int:
    """Worker processes when none are asked for: one per core this process may use."""
    return max(1, min(MAX_WORKERS, usable_cores()))


def can_fork() -> bool:
    """Whether `serve_forever` can run several processes (Linux: fork is safe after NumPy)."""
    return sys.platform.startswith("linux")


def keep_freed_memory() -> None:
    """Have glibc's malloc keep the memory a request frees for the next request.

    A prediction allocates and frees a few dozen arrays of a few hundred KB.  By default
    glibc hands blocks that size back to the system (as separate mappings, or by trimming
    the heap) and the next request faults the same pages in again, which costs more CPU
    than the arithmetic on them.  Fixed thresholds keep such blocks in the heap; blocks
    above `KEEP_BLOCKS` (a large photo's) still go back to the system when freed, so what a
    heap keeps is what a picture of a canvas's size needs.  Does nothing off Linux or where
    the C library has no ``mallopt`` (not glibc).
    """
    if not sys.platform.startswith("linux"):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    mallopt(m_mmap_threshold, KEEP_BLOCKS)
    mallopt(m_trim_threshold, KEEP_FREE)


def serve_forever(server: Server, workers: int = 1) -> None:
    """Serve until KeyboardInterrupt, from ``workers`` processes where `can_fork`.

    Workers are forked after the socket is bound, so they all accept from it; the listening
    socket is non-blocking, so a worker that loses the race for a connection goes back to
    waiting instead of blocking in accept.  The processes share their counts of open
    connections (`Server.loads`), so that the connections spread evenly.  The parent serves
    too, reports a worker that died, and stops the workers however it ends.
    """
    keep_freed_memory()  # before forking, so that every worker inherits it
    try:
        if workers > 1 and can_fork():
            server.socket.setblocking(False)
            server.loads = memoryview(mmap.mmap(-1, 8 * workers)).cast("q")  # shared, zeros
            parent = os.getpid()
            # A stop signal waits until a new worker has its own handling of it.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                for slot in range(1, workers):
                    pid = os.fork()
                    if pid == 0:
                        server.slot = slot
                        _worker(server, parent, mask)
                    server.workers[pid] = slot
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        server.serve_forever(poll_interval=0.5)
    finally:
        server.reap_workers()  # a death since the last look is still reported
        # SIGKILL: a worker ends at once on SIGTERM too (nothing of its own to clean up),
        # except where the server was started with SIGTERM ignored, which it keeps ignored.
        for pid in server.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in server.workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _worker(server: Server, parent: int, mask: set[int | signal.Signals]) -> None:
    """A forked worker's whole life: serve until a signal or the parent's end, then leave
    without running the parent's clean-up (its stack is the parent's copy)."""
    code = 0
    try:
        for number in STOP_SIGNALS:
            take_over(number, signal.SIG_DFL)  # the parent reports the stop, once
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        server.parent_pid, server.workers = parent, {}
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    except BaseException as error:
        code = 1
        with contextlib.suppress(BaseException):
            server.log(f"worker process {os.getpid()} stopped: {error!r}")
    finally:
        os._exit(code)
