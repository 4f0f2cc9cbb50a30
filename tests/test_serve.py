"""`mlp serve` through a real HTTP client against a server on 127.0.0.1: the page, the JSON
API, every kind of bad request (and that the server keeps serving after each), concurrent
and slow clients, and the command itself started and stopped with Ctrl-C."""

from __future__ import annotations

import base64
import errno
import http.client
import io
import itertools
import json
import math
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from signals import alive

from mlp_cli import checkpoint, serve
from mlp_cli.errors import UsageError
from mlp_cli.predict import predict_batches
from mlp_cli.serve import Models, RequestError, Server, can_fork, is_loopback


def save_model(path: Path, layers: list[int], seed: int, activation: str = "relu") -> Path:
    """A valid model file with random weights: enough to exercise the server."""
    rng = np.random.default_rng(seed)
    weights = [
        rng.normal(0, 0.1, (n_out, n_in)).astype(np.float32)
        for n_in, n_out in itertools.pairwise(layers)
    ]
    biases = [np.zeros(n, np.float32) for n in layers[1:]]
    side = math.isqrt(layers[0])
    meta = {
        "hidden_activation": activation,
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": side, "normalize": {"mean": 0.13, "std": 0.3}},
        "class_names": [str(d) for d in range(10)],
        "training": {"best_val_accuracy": 0.5, "epochs_run": 1, "best_epoch": 1},
        "created": "2026-01-02T03:04:05+00:00",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return checkpoint.save(path, weights, biases, meta)


def seven_png(size: int = 280) -> bytes:
    """A black "7" drawn on a white canvas, as the page sends it."""
    image = Image.new("L", (size, size), 255)
    s = size / 280
    ImageDraw.Draw(image).line(
        [(80 * s, 60 * s), (200 * s, 60 * s), (120 * s, 240 * s)], fill=0, width=int(18 * s)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Running:
    server: Server
    runs: Path
    host: str
    port: int

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: bytes | None = None, kind: str = "") -> Any:
        headers = {"Content-Type": kind} if kind else {}
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)


@contextmanager
def start(tmp_path: Path, **options: Any) -> Iterator[Running]:
    runs = tmp_path / "runs"
    save_model(runs / "small" / "model.npz", [784, 16, 10], seed=0)
    save_model(runs / "deep" / "model.npz", [400, 12, 8, 10], seed=1, activation="tanh")
    server = Server(Models(runs / "small", runs), "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Running(server, runs, "127.0.0.1", int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    with start(tmp_path, read_timeout=1.0, max_body=2**20) as server:
        yield server


def raw_reply(running: Running, request: bytes) -> bytes:
    """Send ``request`` as raw bytes; everything the server sends until it closes."""
    reply = b""
    with socket.create_connection((running.host, running.port), timeout=5) as client:
        client.sendall(request)
        while chunk := client.recv(65536):
            reply += chunk
    return reply


def assert_still_serving(running: Running) -> None:
    status, facts = running.json("GET", "/api/model")
    assert status == 200
    assert facts["layers"] == [784, 16, 10]


# -- good requests -------------------------------------------------------------------------


def test_page_and_assets_are_served_from_the_package(running: Running) -> None:
    status, headers, body = running.request("GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'<canvas id="pad"' in body
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = running.request("GET", f"/static/{asset}")
        assert status == 200
        assert headers["Content-Type"].startswith(kind)
        assert body == (Path(__file__).parents[1] / "mlp_cli" / "web" / asset).read_bytes()
    # Nothing is fetched from elsewhere: the page names no other origin.
    assert b"http" not in running.request("GET", "/")[2].replace(b"http-equiv", b"")


def test_model_facts_and_runs(running: Running) -> None:
    status, facts = running.json("GET", "/api/model")
    assert status == 200
    assert facts["name"] == "small"
    assert facts["layers"] == [784, 16, 10]
    assert facts["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
    assert facts["val_accuracy"] == 0.5
    assert facts["created"] == "2026-01-02T03:04:05+00:00"
    assert facts["units"] == {"count": 16, "side": 28, "columns": 4, "output": False}
    status, runs = running.json("GET", "/api/runs")
    assert status == 200
    assert sorted(runs["runs"]) == ["deep", "small"]
    assert runs["current"] == "small"
    status, deep = running.json("GET", "/api/model?run=deep")
    assert status == 200
    assert deep["layers"] == [400, 12, 8, 10]
    assert deep["units"] == {"count": 12, "side": 20, "columns": 4, "output": False}


def _three_epochs_best_first(running: Running, run: str, **training: Any) -> Any:
    """A run's model that trained 3 epochs, the best the first, with ``training`` added to
    its summary: its path, the model as saved, and its metadata to edit and save again."""
    path = save_model(running.runs / run / "model.npz", [784, 16, 10], seed=2)
    saved = checkpoint.load(path)
    meta = saved.meta.model_dump()
    meta["training"].update(epochs_run=3, best_epoch=1, **training)
    return path, saved, meta


def test_a_model_holding_another_epoch_than_the_best_is_not_given_the_best_accuracy(
    running: Running,
) -> None:
    # restore_best off: the file holds the last epoch, its summary the best epoch's score
    path, saved, meta = _three_epochs_best_first(running, "last", weights_from_epoch=3)
    checkpoint.save(path, saved.weights, saved.biases, meta)
    status, facts = running.json("GET", "/api/model?run=last")
    assert status == 200
    assert facts["best_epoch"] == 1
    assert facts["val_accuracy"] is None


def test_an_older_model_without_restore_best_is_not_given_the_best_accuracy(
    running: Running,
) -> None:
    # Written before weights_from_epoch was recorded for restore_best off: its config says
    # the file holds the last epoch, its summary the best epoch's score.
    path, saved, meta = _three_epochs_best_first(running, "older")
    meta["config"] = {"training": {"early_stopping": {"restore_best": False}}}
    checkpoint.save(path, saved.weights, saved.biases, meta)
    status, facts = running.json("GET", "/api/model?run=older")
    assert status == 200
    assert facts["best_epoch"] == 1
    assert facts["val_accuracy"] is None
    meta["config"]["training"]["early_stopping"]["restore_best"] = True  # the best epoch's
    checkpoint.save(path, saved.weights, saved.biases, meta)
    status, facts = running.json("GET", "/api/model?run=older")
    assert status == 200
    assert facts["val_accuracy"] == 0.5


def test_a_model_without_a_hidden_layer_has_no_hidden_activation(running: Running) -> None:
    save_model(running.runs / "linear" / "model.npz", [784, 10], seed=2)
    status, facts = running.json("GET", "/api/model?run=linear")
    assert status == 200
    assert facts["hidden_activation"] is None  # as mlp inspect and the ONNX metadata say
    assert facts["output_activation"] == "softmax"
    assert facts["units"] == {"count": 10, "side": 28, "columns": 4, "output": True}


def test_unit_pictures_are_the_first_layer_weights_in_a_grid(running: Running) -> None:
    status, headers, body = running.request("GET", "/api/units.png?run=deep")
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    sheet = np.asarray(Image.open(io.BytesIO(body)))
    assert sheet.shape == (3 * 20, 4 * 20, 3)  # 12 units of 20x20, 4 to a row
    W1 = np.load(running.runs / "deep" / "model.npz")["W1"]
    # Unit 5 sits in row 1, column 1, coloured as `mlp show hidden` colours it: red where
    # its weight is positive, blue where negative.
    from mlp_cli.viz import unit_colours

    tile = sheet[20:40, 20:40].reshape(400, 3)
    assert np.array_equal(tile, unit_colours(W1[5:6].astype(np.float64))[0])
    red, blue = tile[:, 0].astype(int), tile[:, 2].astype(int)
    assert np.all((red > blue)[W1[5] > 0.01])
    assert np.all((red < blue)[W1[5] < -0.01])


def test_predict_answers_what_mlp_predict_answers_for_the_same_png(
    running: Running, tmp_path: Path
) -> None:
    png = seven_png()
    status, answer = running.json("POST", "/api/predict", png, "image/png")
    assert status == 200
    (tmp_path / "upload").write_bytes(png)
    saved = checkpoint.load(running.runs / "small" / "model.npz")
    [([expected], failures)] = predict_batches(saved, [tmp_path / "upload"])
    assert failures == []
    want = expected.to_json([str(d) for d in range(10)])
    want["file"] = "upload"
    assert {k: answer[k] for k in want} == want
    assert answer["model"] == "small"
    assert np.allclose(answer["input"], expected.image, atol=5e-4)
    assert [len(layer) for layer in answer["hidden"]] == [16]
    # The hidden layer is ReLU(W1 x + b1) of the network's input.
    f = np.load(running.runs / "small" / "model.npz")
    x = (expected.image.ravel() - 0.13) / 0.3
    assert np.allclose(answer["hidden"][0], np.maximum(f["W1"] @ x + f["b1"], 0), atol=1e-3)


def test_hidden_activations_are_sent_to_four_decimals(running: Running, tmp_path: Path) -> None:
    png = seven_png()
    _, answer = running.json("POST", "/api/predict", png, "image/png")
    (tmp_path / "upload").write_bytes(png)
    saved = checkpoint.load(running.runs / "small" / "model.npz")
    [([expected], _)] = predict_batches(saved, [tmp_path / "upload"])
    f = np.load(running.runs / "small" / "model.npz")
    x = (expected.image.ravel() - 0.13) / 0.3
    exact = np.maximum(f["W1"] @ x + f["b1"], 0)  # (16,)
    # rounded to 4 decimals, each is within half of 0.0001 of the exact activation
    assert np.abs(np.array(answer["hidden"][0]) - exact).max() <= 5e-5 + 1e-6
    hidden = np.array(answer["hidden"][0], np.float32)  # float32 values, as the model's
    assert np.array_equal(hidden, np.round(hidden, 4))


def test_the_answer_is_written_as_json_dumps_writes_it(running: Running, tmp_path: Path) -> None:
    png = seven_png()
    status, _, body = running.request("POST", "/api/predict", png, {"Content-Type": "image/png"})
    assert status == 200
    answer = json.loads(body)
    assert body == json.dumps(answer).encode()  # key order, spacing and every float's text
    (tmp_path / "upload").write_bytes(png)
    saved = checkpoint.load(running.runs / "small" / "model.npz")
    [([expected], _)] = predict_batches(saved, [tmp_path / "upload"])
    assert answer["input"] == np.round(expected.image, 3).tolist()  # float32 values, exactly


@pytest.mark.parametrize("max_texts", [4096, 3])
def test_float32_matrices_are_written_as_json_dumps_writes_them(
    monkeypatch: pytest.MonkeyPatch, max_texts: int
) -> None:
    monkeypatch.setattr(serve, "MAX_TEXTS", max_texts)  # 3: the texts are forgotten often
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -3.4e38, 0.1, 1.0]
    matrices = [
        np.round(rng.random((28, 28), dtype=np.float32), 3),
        np.array(special * 4, dtype=np.float32).reshape(4, 9),
        rng.normal(0, 100, (3, 5)).astype(np.float32),
        np.zeros((1, 1), dtype=np.float32),
        np.zeros((0, 4), dtype=np.float32),
        np.array([[0.5, -0.0]]),  # float64: written by json.dumps itself
    ]
    for values in matrices + matrices:  # the second time from the texts kept
        assert serve.float32_matrix_json(values) == json.dumps(values.tolist())
    assert serve.float32_matrix_json(matrices[0][:, ::2]) == json.dumps(
        matrices[0][:, ::2].tolist()
    )


def test_json_canvas_forms_give_the_same_answer(running: Running) -> None:
    png = seven_png()
    _, by_png = running.json("POST", "/api/predict?run=deep", png, "image/png")
    data_url = b"data:image/png;base64," + base64.b64encode(png)
    body = json.dumps({"image": data_url.decode()}).encode()
    status, by_url = running.json("POST", "/api/predict?run=deep", body, "application/json")
    assert status == 200
    grey = np.asarray(Image.open(io.BytesIO(png)))
    pixels = {"width": 280, "height": 280, "pixels": grey.ravel().tolist()}
    status, by_pixels = running.json(
        "POST",
        "/api/predict?run=deep",
        json.dumps(pixels).encode(),
        "application/json; charset=utf-8",
    )
    assert status == 200
    assert by_png == by_url == by_pixels
    assert by_png["model"] == "deep"
    assert [len(layer) for layer in by_png["hidden"]] == [12, 8]
    assert len(by_png["input"]) == 28
    assert {len(row) for row in by_png["input"]} == {28}


def test_a_json_canvas_is_read_as_its_pixels_say(running: Running) -> None:
    png = seven_png()
    # bare base64, without the data URL's "data:image/png;base64," before it
    bare = json.dumps({"image": base64.b64encode(png).decode()}).encode()
    assert np.array_equal(
        np.asarray(serve.image_from_json(bare)), np.asarray(Image.open(io.BytesIO(png)))
    )
    # grey levels are rounded to the nearest whole level, row by row
    pixels = json.dumps({"width": 3, "height": 2, "pixels": [0, 127.6, 255, 0.4, 1.5, 254.5]})
    grey = np.asarray(serve.image_from_json(pixels.encode()))
    assert grey.tolist() == [[0, 128, 255], [0, 2, 254]]  # halves to even, as np.rint


@pytest.mark.parametrize(
    ("canvas", "words"),
    [
        (
            {"width": 2, "height": 2, "pixels": [0] * 5},
            '"pixels" holds 5 values, but width x height is 4',
        ),
        ({"width": 1, "height": 1, "pixels": [256]}, '"pixels" must be numbers 0-255'),
        ({"width": 1, "height": 1, "pixels": [-0.5]}, '"pixels" must be numbers 0-255'),
        # 4096 x 4096 is the most a canvas may have: its pixels are counted next
        (
            {"width": 4096, "height": 4096, "pixels": []},
            "holds 0 values, but width x height is 16777216",
        ),
        (
            {"width": 4097, "height": 4096, "pixels": []},
            "at most 16777216 pixels in all, got 4097x4096",
        ),
    ],
)
def test_a_json_canvas_whose_pixels_do_not_fit_is_a_400(
    running: Running, canvas: dict[str, Any], words: str
) -> None:
    status, answer = running.json(
        "POST", "/api/predict", json.dumps(canvas).encode(), "application/json"
    )
    assert status == 400
    assert words in answer["error"]


def test_the_page_may_be_cached_for_a_minute_and_the_api_never(running: Running) -> None:
    for path, cache in [("/", "max-age=60"), ("/api/model", "no-store"), ("/api/runs", "no-store")]:
        status, headers, _ = running.request("GET", path)
        assert status == 200
        assert headers["Cache-Control"] == cache, path


def test_the_page_says_the_bars_add_up_to_100_percent_only_for_softmax_outputs(
    tmp_path: Path,
) -> None:
    # A sigmoid output layer (nielsen-784-30-10's) scores each digit on its own.
    path = save_model(tmp_path / "runs" / "nielsen" / "model.npz", [784, 16, 10], seed=2)
    saved = checkpoint.load(path)
    meta = saved.meta.model_dump() | {"output_activation": "sigmoid", "loss": "mse"}
    checkpoint.save(path, saved.weights, saved.biases, meta)
    server = Server(Models(path.parent, path.parent.parent), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        running = Running(server, path.parent.parent, "127.0.0.1", int(server.server_address[1]))
        status, answer = running.json("POST", "/api/predict", seven_png(), "image/png")
        *_, page = running.request("GET", "/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert status == 200
    assert abs(sum(answer["probabilities"].values()) - 1.0) > 0.01
    legend = re.search(r"<dt>Probability bars</dt>\s*<dd>(.*?)</dd>", page.decode(), re.S)
    assert legend is not None
    claim = legend.group(1)
    # The sum of 100% is said of softmax outputs, and sigmoid outputs are said to differ.
    assert "softmax" in claim, claim
    assert "sigmoid" in claim, claim


def test_a_head_request_gets_the_headers_alone(running: Running) -> None:
    *_, page = running.request("GET", "/")
    reply = raw_reply(running, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {len(page)}".encode() in head  # as the GET's
    assert body == b""


def test_the_last_run_a_query_names_is_the_one_served(running: Running) -> None:
    status, facts = running.json("GET", "/api/model?run=small&run=deep")
    assert status == 200
    assert facts["name"] == "deep"


def test_a_content_type_is_read_in_any_case(running: Running) -> None:
    status, answer = running.json("POST", "/api/predict", seven_png(), "Image/PNG")
    assert status == 200, answer
    status, answer = running.json("POST", "/api/predict", b"", "Application/JSON")
    assert status == 400
    assert answer["error"] == "the request body is empty; send an image"


def test_no_cors_headers_for_other_origins(running: Running) -> None:
    for method, path, body in (("GET", "/api/model", None), ("POST", "/api/predict", seven_png())):
        headers = {"Origin": "http://evil.example", "Content-Type": "image/png"}
        status, got, _ = running.request(method, path, body, headers)
        assert status == 200
        assert not [h for h in got if h.lower().startswith("access-control-")]
    status, got, _ = running.request(
        "OPTIONS", "/api/predict", None, {"Origin": "http://x.example"}
    )
    assert status == 405
    assert not [h for h in got if h.lower().startswith("access-control-")]


# -- bad requests --------------------------------------------------------------------------


def _bomb() -> bytes:
    image = Image.new("1", (12_000, 12_000))  # 144 Mpixels, over twice Pillow's limit
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _blank() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (280, 280), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff_strip_offset(kind: int, value: bytes) -> bytes:
    """A 1x1 grey TIFF whose strip offset is `value`, of TIFF field type `kind` (held in
    its entry when 4 bytes fit, else after the entries), then its one pixel."""
    count = 9
    after = 8 + 2 + 12 * count + 4  # where the bytes after the entries start
    inline = value if len(value) <= 4 else struct.pack("<I", after)
    short = 3  # the TIFF field type of an unsigned 16-bit value
    # Width, height, bits per sample (8), no compression, black is 0, one sample per pixel,
    # one row per strip, one byte per strip: each 1 but the bits; 273 is the strip offset.
    fields = [
        (tag, short, struct.pack("<HH", 8 if tag == 258 else 1, 0))
        for tag in (256, 257, 258, 259, 262, 277, 278, 279)
    ]
    fields.append((273, kind, inline.ljust(4, b"\0")))
    entries = b"".join(
        struct.pack("<HHI", tag, field_type, 1) + data for tag, field_type, data in sorted(fields)
    )
    rest = value if len(value) > 4 else b""
    return b"II*\0" + struct.pack("<IH", 8, count) + entries + b"\0" * 4 + rest + b"\x80"


BAD: dict[str, tuple[str, str, bytes | None, str, int, str]] = {
    # name: method, path, body, content type, status, words in the error
    "not an image": ("POST", "/api/predict", b"hello there", "image/png", 400, "not an image"),
    "truncated png": ("POST", "/api/predict", seven_png()[:200], "image/png", 400, "truncated"),
    "empty body": ("POST", "/api/predict", b"", "image/png", 400, "empty"),
    "blank canvas": ("POST", "/api/predict", _blank(), "image/png", 400, "ink"),
    "tiff offset of a float": (
        "POST",
        "/api/predict",
        _tiff_strip_offset(11, struct.pack("<f", 130.0)),  # FLOAT
        "image/tiff",
        400,
        "corrupt",
    ),
    "tiff offset beyond 63 bits": (
        "POST",
        "/api/predict",
        _tiff_strip_offset(16, struct.pack("<Q", 2**64 - 1)),  # LONG8
        "image/tiff",
        400,
        "corrupt",
    ),
    "text": ("POST", "/api/predict", b"7", "text/plain", 415, "Content-Type"),
    "no content type": ("POST", "/api/predict", seven_png(), "", 415, "Content-Type"),
    "form": ("POST", "/api/predict", b"a=1", "application/x-www-form-urlencoded", 415, "image"),
    "malformed json": ("POST", "/api/predict", b'{"image": ', "application/json", 400, "JSON"),
    "json list": ("POST", "/api/predict", b"[1, 2]", "application/json", 400, "JSON object"),
    "bad data url": (
        "POST",
        "/api/predict",
        b'{"image": "data:image/png;base64,@@@"}',
        "application/json",
        400,
        "base64",
    ),
    "pixel count": (
        "POST",
        "/api/predict",
        b'{"width": 2, "height": 2, "pixels": [0, 0, 0]}',
        "application/json",
        400,
        "3 values",
    ),
    "pixel range": (
        "POST",
        "/api/predict",
        b'{"width": 1, "height": 2, "pixels": [0, 300]}',
        "application/json",
        400,
        "0-255",
    ),
    "huge canvas": (
        "POST",
        "/api/predict",
        b'{"width": 100000, "height": 100000, "pixels": []}',
        "application/json",
        400,
        "at most",
    ),
    "integer too long to read": (
        "POST",
        "/api/predict",
        b'{"width": ' + b"9" * 5000 + b', "height": 1, "pixels": []}',
        "application/json",
        400,
        "an integer of more than",
    ),
    "json nested too deeply": (
        "POST",
        "/api/predict",
        b"[" * 100_000,
        "application/json",
        400,
        "nested too deeply",
    ),
    "pixel beyond float": (
        "POST",
        "/api/predict",
        b'{"width": 1, "height": 1, "pixels": [' + b"9" * 400 + b"]}",
        "application/json",
        400,
        "0-255",
    ),
    "boolean width": (
        "POST",
        "/api/predict",
        b'{"width": true, "height": 1, "pixels": [255]}',
        "application/json",
        400,
        'integer "width"',
    ),
    "too large": ("POST", "/api/predict", b"\0" * (2**20 + 1), "image/png", 413, "limit"),
    "unknown path": ("GET", "/nothing/here", None, "", 404, "nothing at"),
    "unknown api": ("GET", "/api/nothing", None, "", 404, "nothing at"),
    "traversal": ("GET", "/static/../../../../etc/passwd", None, "", 404, "nothing at"),
    "encoded traversal": ("GET", "/static/..%2f..%2fetc%2fpasswd", None, "", 404, "nothing at"),
    "python source": ("GET", "/static/serve.py", None, "", 404, "nothing at"),
    "get predict": ("GET", "/api/predict", None, "", 405, "POST"),
    "post elsewhere": ("POST", "/", b"x", "image/png", 404, "/api/predict"),
    "post unknown api": ("POST", "/api/nothing", b"x", "image/png", 404, "/api/predict"),
    "post model": ("POST", "/api/model", b"x", "image/png", 405, "/api/predict"),
    "delete": ("DELETE", "/api/model", None, "", 405, "not supported"),
    "unknown run": ("GET", "/api/model?run=nope", None, "", 404, "no run named"),
    "run traversal": ("GET", "/api/model?run=../runs/small", None, "", 404, "no run named"),
    "run latest": ("GET", "/api/units.png?run=..", None, "", 404, "no run named"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_requests_get_a_4xx_with_a_json_error_and_the_server_keeps_serving(
    running: Running, name: str
) -> None:
    method, path, body, kind, status, words = BAD[name]
    headers = {"Content-Type": kind} if kind else {}
    got, response_headers, data = running.request(method, path, body, headers)
    assert got == status, data
    assert response_headers["Content-Type"] == "application/json"
    error = json.loads(data)["error"]
    assert words in error
    assert "Traceback" not in error
    assert_still_serving(running)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/predict", "POST"),
        ("PUT", "/api/predict", "POST"),
        ("POST", "/api/model", "GET, HEAD"),
        ("DELETE", "/api/runs", "GET, HEAD"),
        ("OPTIONS", "/", "GET, HEAD"),
    ],
)
def test_a_method_refused_with_405_is_answered_with_the_methods_the_path_takes(
    running: Running, method: str, path: str, allow: str
) -> None:
    # RFC 9110 15.5.6: a 405 answer carries an Allow header
    status, headers, _ = running.request(method, path, b"x" if method != "GET" else None, {})
    assert status == 405
    assert headers["Allow"] == allow


def test_a_client_that_waits_for_100_continue_gets_it_before_sending_its_body(
    running: Running,
) -> None:
    """curl asks `Expect: 100-continue` for large uploads and holds the body back until the
    interim answer comes (or a second has passed)."""
    png = seven_png()
    head = (
        "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(png)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((running.host, running.port), timeout=5) as client:
        client.sendall(head.encode())
        client.settimeout(0.5)
        assert client.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n")
        client.settimeout(5)
        client.sendall(png)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK"
    _, plain = running.json("POST", "/api/predict", png, "image/png")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == plain


def test_refusals_leave_a_keep_alive_connection_usable(running: Running) -> None:
    connection = http.client.HTTPConnection(running.host, running.port, timeout=10)
    try:
        png = seven_png()
        for path, kind, status in (
            ("/api/predict?run=nope", "image/png", 404),
            ("/api/predict", "text/plain", 415),
            ("/api/model", "image/png", 405),
            ("/api/predict", "image/png", 200),
        ):
            connection.request("POST", path, png, {"Content-Type": kind})
            response = connection.getresponse()
            response.read()
            assert response.status == status, path
    finally:
        connection.close()


def test_a_body_sent_with_a_get_is_not_read_as_the_next_request(running: Running) -> None:
    second = b"GET /api/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for method in (b"GET", b"HEAD"):
        first = method + b" /api/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        reply = raw_reply(running, first + second)
        assert reply.count(b"HTTP/1.1 200 OK\r\n") == 2, reply
    assert_still_serving(running)


def test_a_decompression_bomb_is_refused(running: Running) -> None:
    status, answer = running.json("POST", "/api/predict", _bomb(), "image/png")
    assert status == 400
    assert "too large to open safely" in answer["error"]
    assert_still_serving(running)


def test_a_picture_of_more_pixels_than_a_canvas_may_have_is_refused(running: Running) -> None:
    """Under Pillow's limit, but over the page's: refused from the header, not decoded."""
    buffer = io.BytesIO()
    Image.new("1", (4097, 4096)).save(buffer, format="PNG")
    status, answer = running.json("POST", "/api/predict", buffer.getvalue(), "image/png")
    assert status == 400
    assert "4097x4096 pixels" in answer["error"]
    assert answer["error"].startswith(
        "Image in the request body has 4097x4096 pixels, more than the 16.8 million mlp reads"
    )
    assert_still_serving(running)


def test_errors_about_a_sent_picture_read_as_sentences(running: Running) -> None:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    status, answer = running.json("POST", "/api/predict", buffer.getvalue(), "image/png")
    assert status == 400, answer
    assert answer["error"].startswith("Image in the request holds no ink"), answer["error"]
    empty = json.dumps({"image": "data:image/png;base64,"}).encode()
    status, answer = running.json("POST", "/api/predict", empty, "application/json")
    assert status == 400
    assert answer["error"].startswith("Image in the JSON body is empty (0 bytes)")
    status, answer = running.json("POST", "/api/predict", b"hello there", "image/png")
    assert status == 400
    assert answer["error"].startswith("Image in the request body is not an image"), answer["error"]
    text = json.dumps({"image": "data:image/png;base64,aGVsbG8gdGhlcmU="}).encode()
    status, answer = running.json("POST", "/api/predict", text, "application/json")
    assert status == 400
    assert answer["error"].startswith("Image in the JSON body is not an image"), answer["error"]


def test_a_client_sending_a_body_a_few_times_over_the_limit_gets_its_413(
    running: Running,
) -> None:
    # Read and dropped after the answer: cut off unread, a body larger than the socket's
    # buffers would end in a reset connection for a client still sending it.
    body = b"\0" * (3 * running.server.max_body)
    status, _, data = running.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
    assert status == 413
    assert "limit" in json.loads(data)["error"]


def test_a_body_over_the_limit_is_refused_unread(running: Running) -> None:
    """A client announcing a huge body gets its 413 at once, without sending it."""
    reply = raw_reply(
        running,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 999999999999\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in reply
    assert_still_serving(running)


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(
    ("length", "status", "words"),
    [
        ("\u00b2".encode("latin-1"), 400, b"bad Content-Length"),  # str.isdigit takes it
        (b"1\xb3", 400, b"bad Content-Length"),  # "1³"
        (b"+2", 400, b"bad Content-Length"),
        (b"9" * 5000, 413, b"over the limit"),  # more digits than int() converts
    ],
    ids=["superscript two", "superscript three", "plus sign", "5000 digits"],
)
def test_a_content_length_not_in_ascii_digits_or_too_long_is_refused(
    tmp_path: Path, method: str, length: bytes, status: int, words: bytes
) -> None:
    errors: list[str] = []
    with start(tmp_path, read_timeout=1.0, max_body=2**20, log=errors.append) as running:
        reply = raw_reply(
            running,
            method.encode() + b" /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: " + length + b"\r\n\r\nab",
        )
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), reply[:200]
        assert b"Connection: close" in head
        assert words in json.loads(body)["error"].encode()
        assert_still_serving(running)
    assert errors == []


def test_a_content_length_with_leading_zeros_is_its_number(running: Running) -> None:
    png = seven_png()
    reply = raw_reply(
        running,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Connection: close\r\nContent-Length: "
        + b"0" * 5000
        + str(len(png)).encode()
        + b"\r\n\r\n"
        + png,
    )
    assert reply.startswith(b"HTTP/1.1 200 ")
    _, plain = running.json("POST", "/api/predict", png, "image/png")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == plain


def test_a_content_length_between_spaces_and_tabs_is_its_number(running: Running) -> None:
    png = seven_png()
    reply = raw_reply(
        running,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Connection: close\r\nContent-Length:\t " + str(len(png)).encode() + b" \t \r\n\r\n" + png,
    )
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    _, plain = running.json("POST", "/api/predict", png, "image/png")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == plain


def test_chunked_bodies_are_refused(running: Running) -> None:
    reply = raw_reply(
        running,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 411")
    assert_still_serving(running)


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Content-Length: 5\r\nContent-Length: 62\r\n", 400),
        (b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", 411),
        (b"Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", 411),
    ],
    ids=["two lengths", "chunked on a second line", "another encoding"],
)
def test_a_body_whose_end_is_ambiguous_is_refused_and_its_rest_never_answered(
    running: Running, framing: bytes, status: int
) -> None:
    rest = b"GET /api/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_reply(
        running,
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        + framing
        + b"\r\nhello"
        + rest,
    )
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1, reply
    assert b"Connection: close" in reply
    assert_still_serving(running)


def test_a_malformed_request_line_is_a_json_400(running: Running) -> None:
    reply = raw_reply(running, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"error": ' in reply
    assert_still_serving(running)


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_requests_all_get_the_same_answer(running: Running) -> None:
    png = seven_png()
    answers: list[Any] = []

    def client(run: str) -> None:
        answers.append(running.json("POST", f"/api/predict?run={run}", png, "image/png"))

    threads = [
        threading.Thread(target=client, args=("small" if i % 2 else "deep",)) for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 16
    assert {status for status, _ in answers} == {200}
    by_model = {a["model"]: json.dumps(a, sort_keys=True) for _, a in answers}
    for _, answer in answers:
        assert json.dumps(answer, sort_keys=True) == by_model[answer["model"]]


def test_a_connection_beyond_the_limit_gets_a_503_at_once_and_the_rest_are_served(
    tmp_path: Path,
) -> None:
    """Each open connection may hold a body of up to the limit, so their number is bounded."""
    with start(tmp_path, read_timeout=5.0, max_connections=2) as running:
        held = [http.client.HTTPConnection(running.host, running.port, timeout=10) for _ in "ab"]
        for connection in held:
            connection.request("GET", "/api/runs")  # keep-alive: the connection stays open
            assert connection.getresponse().read()
        status, headers, body = running.request("POST", "/api/predict", seven_png())
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert headers["Connection"] == "close"
        assert "2 connections" in json.loads(body)["error"]
        held.pop().close()
        deadline = time.monotonic() + 10
        while status == 503 and time.monotonic() < deadline:  # until the server sees it closed
            status, _ = running.json("POST", "/api/predict", seven_png(), "image/png")
        assert status == 200
        held[0].request("GET", "/api/runs")  # the connections it holds are still served
        assert held[0].getresponse().status == 200
        held[0].close()


@pytest.mark.parametrize(
    "partial",
    [
        b"POST /api/pre",
        b"POST /api/predict HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n0123",
    ],
    ids=["headers", "body"],
)
def test_a_slow_client_neither_blocks_others_nor_holds_its_thread_forever(
    tmp_path: Path, partial: bytes
) -> None:
    with start(tmp_path, read_timeout=2.0) as running:
        check_slow_client(running, partial)


def check_slow_client(running: Running, partial: bytes) -> None:
    with socket.create_connection((running.host, running.port), timeout=5) as slow:
        slow.sendall(partial)
        started = time.monotonic()
        status, _ = running.json("POST", "/api/predict", seven_png(), "image/png")
        assert status == 200
        assert time.monotonic() - started < 1.8  # answered before the slow one timed out
        # After the server's read timeout (2 s here) the slow connection is closed.
        slow.settimeout(5)
        rest = b""
        while chunk := slow.recv(65536):
            rest += chunk
        assert time.monotonic() - started < 8
    assert b"200 OK" not in rest
    assert_still_serving(running)


@pytest.mark.parametrize(
    ("sent", "trickled"),
    [
        (b"", b"POST /api/predict HTTP/1.1\r\n"),
        (b"POST /api/predict HTTP/1.1\r\n", b"Content-Type: image/png\r\n"),
        (
            b"POST /api/predict HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 99\r\n\r\n",
            b"\x89" * 98,
        ),
    ],
    ids=["request line", "headers", "body"],
)
def test_a_request_trickled_in_a_byte_at_a_time_is_cut_off_with_a_408(
    tmp_path: Path, sent: bytes, trickled: bytes
) -> None:
    """Each byte comes well within the read timeout, but the whole request does not come
    within the request's time."""
    with start(tmp_path, read_timeout=3.0, request_time=1.0) as running:
        with socket.create_connection((running.host, running.port), timeout=5) as slow:
            slow.sendall(sent)
            reply = b""
            for byte in trickled:
                slow.sendall(bytes([byte]))
                if select.select([slow], [], [], 0.2)[0]:
                    while chunk := slow.recv(65536):
                        reply += chunk
                    break
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), reply[:200]
        assert b"Connection: close" in head
        assert json.loads(body)["error"] == "the request did not arrive whole within 1 s"
        assert_still_serving(running)


def test_a_keep_alive_connection_has_the_request_time_for_each_request(tmp_path: Path) -> None:
    """The time runs from a request's first byte, not from the connection's start."""
    with start(tmp_path, read_timeout=3.0, request_time=1.0) as running:
        connection = http.client.HTTPConnection(running.host, running.port, timeout=10)
        try:
            for _ in range(2):
                connection.request("GET", "/api/runs")
                assert connection.getresponse().read()
                time.sleep(1.2)  # idle between requests: within the read timeout
            connection.request("POST", "/api/predict", seven_png(), {"Content-Type": "image/png"})
            assert connection.getresponse().status == 200
        finally:
            connection.close()


# -- the command ---------------------------------------------------------------------------


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.com"]))


def test_mlp_serve_prints_its_url_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    model = save_model(tmp_path / "runs" / "only" / "model.npz", [784, 16, 10], seed=0)
    mlp = Path(sys.executable).parent / "mlp"
    process = subprocess.Popen(
        [
            str(mlp),
            "serve",
            "--model",
            str(model.parent),
            "--port",
            "0",
            "--runs",
            str(tmp_path / "runs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    with _ended(process):
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving only at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/api/runs")
        assert json.loads(connection.getresponse().read()) == {"runs": ["only"], "current": "only"}
        connection.close()
        out, err = _ctrl_c(process)
    assert "stopped" in out
    assert "Traceback" not in err


@contextmanager
def _ended(process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``process`` on the way out if a failed check left it running."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ctrl_c(process: subprocess.Popen[str], *, group: bool = False) -> tuple[str, str]:
    """Ctrl-C to `mlp serve` (to its whole process group, as a terminal sends it); its
    output, once it has ended with exit code 0."""
    (os.killpg if group else os.kill)(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    return out, err


def _wait_for_workers(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(workers := _workers_of(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == count
    return workers


def _workers_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _start_serving(
    tmp_path: Path, workers: int, *, own_group: bool = False, ignored: tuple[int, ...] = ()
) -> tuple[subprocess.Popen[str], str, int]:
    """`mlp serve` with `workers` processes, started with the signals in `ignored` ignored."""

    def ignore() -> None:
        for number in ignored:
            signal.signal(number, signal.SIG_IGN)

    model = save_model(tmp_path / "runs" / "only" / "model.npz", [784, 16, 10], seed=0)
    mlp = Path(sys.executable).parent / "mlp"
    process = subprocess.Popen(
        [str(mlp), "serve", "--model", str(model.parent), "--port", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=own_group,
        preexec_fn=ignore if ignored else None,
    )
    assert process.stdout is not None
    url = process.stdout.readline().split(" at ")[1].split()[0]
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    return process, host, int(port)


@pytest.mark.skipif(not can_fork(), reason="worker processes are forked on Linux only")
def test_worker_processes_share_the_requests_and_stop_with_the_server(tmp_path: Path) -> None:
    process, host, port = _start_serving(tmp_path, workers=3)
    with _ended(process):
        workers = _wait_for_workers(process.pid, 2)  # the parent is the third
        body = seven_png()
        answers = []
        for _ in range(12):  # a connection each: every process may take some
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
            response = connection.getresponse()
            assert response.status == 200
            answers.append(json.loads(response.read())["probabilities"])
            connection.close()
        assert all(answer == answers[0] for answer in answers)
        os.kill(workers[0], signal.SIGKILL)  # a worker dies: the others serve on
        # Until the server has collected it (and reported it): a Ctrl-C that arrives while
        # the report is written would cut it short.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(4):
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("GET", "/api/runs")
            assert connection.getresponse().status == 200
            connection.close()
        out, err = _ctrl_c(process)
    assert out.count("stopped") == 1
    assert f"worker process {workers[0]} was killed by signal 9" in err
    assert "Traceback" not in err
    assert not any(map(alive, workers))


@pytest.mark.skipif(not can_fork(), reason="worker processes are forked on Linux only")
def test_ctrl_c_in_a_terminal_stops_every_process_quietly(tmp_path: Path) -> None:
    process, _, _ = _start_serving(tmp_path, workers=3, own_group=True)
    with _ended(process):
        workers = _wait_for_workers(process.pid, 2)
        out, err = _ctrl_c(process, group=True)
    assert out.count("stopped") == 1
    assert err == ""
    assert not any(map(alive, workers))


@pytest.mark.skipif(not can_fork(), reason="worker processes are forked on Linux only")
def test_a_hangup_ignored_by_nohup_stays_ignored_in_every_process(tmp_path: Path) -> None:
    process, host, port = _start_serving(
        tmp_path, workers=3, own_group=True, ignored=(signal.SIGHUP,)
    )
    with _ended(process):
        workers = _wait_for_workers(process.pid, 2)
        os.killpg(process.pid, signal.SIGHUP)  # the terminal closes
        time.sleep(0.5)
        assert process.poll() is None
        assert all(map(alive, workers))
        for _ in range(6):
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("GET", "/api/runs")
            assert connection.getresponse().status == 200
            connection.close()
        out, err = _ctrl_c(process, group=True)
    assert out.count("stopped") == 1
    assert err == ""


@pytest.mark.skipif(not can_fork(), reason="worker processes are forked on Linux only")
def test_a_server_started_with_sigterm_ignored_still_ends_its_workers_as_it_stops(
    tmp_path: Path,
) -> None:
    # SIGTERM stays ignored in every process, as whoever started the server chose: the
    # server must not wait for workers that will not end on it.
    process, _, _ = _start_serving(tmp_path, workers=3, ignored=(signal.SIGTERM,))
    with _ended(process):
        workers = _wait_for_workers(process.pid, 2)
        out, err = _ctrl_c(process)  # to the server alone, as `kill -INT PID` sends it
    assert out.count("stopped") == 1
    assert "Traceback" not in err
    assert not any(map(alive, workers))


@pytest.mark.skipif(not can_fork(), reason="worker processes are forked on Linux only")
def test_workers_stop_when_the_server_is_killed_outright(tmp_path: Path) -> None:
    process, _, _ = _start_serving(tmp_path, workers=2)
    try:
        workers = _wait_for_workers(process.pid, 1)
    finally:
        process.kill()
        process.communicate()
    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, workers))


def _shared_loads(*counts: int) -> memoryview:
    """Open connections per process, as `serve_forever` shares them between its processes."""
    loads = memoryview(bytearray(8 * len(counts))).cast("q")
    for slot, count in enumerate(counts):
        loads[slot] = count
    return loads


def test_a_busier_process_leaves_a_new_connection_to_a_less_busy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "HANDOFF_WAIT", 30.0)  # the other process surely comes first
    runs = tmp_path / "runs"
    save_model(runs / "small" / "model.npz", [784, 16, 10], seed=0)
    with Server(Models(runs / "small", runs), "127.0.0.1", 0) as server:
        server.socket.setblocking(False)
        server.loads = _shared_loads(1, 0)  # this process (slot 0) holds one more
        taken: list[socket.socket] = []

        def other_process() -> None:  # accepts from the same socket, as a worker does
            select.select([server.socket], [], [], 10)
            taken.append(server.socket.accept()[0])

        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10):
            other = threading.Thread(target=other_process)
            other.start()
            with pytest.raises(BlockingIOError):  # as when another process wins the race
                server.get_request()
            other.join(timeout=10)
        assert len(taken) == 1
        taken[0].close()


def test_the_least_busy_process_accepts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_waiting(seconds: float) -> None:
        raise AssertionError("the least busy process waited before accepting")

    runs = tmp_path / "runs"
    save_model(runs / "small" / "model.npz", [784, 16, 10], seed=0)
    with Server(Models(runs / "small", runs), "127.0.0.1", 0) as server:
        server.socket.setblocking(False)
        server.loads = _shared_loads(2, 3, 2)  # this process (slot 0) is among the least busy
        monkeypatch.setattr(time, "sleep", no_waiting)
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10):
            request, _ = server.get_request()
            request.close()


def test_each_process_publishes_how_many_connections_it_holds(running: Running) -> None:
    running.server.loads = loads = _shared_loads(0, 0)

    def until(count: int) -> None:
        deadline = time.monotonic() + 10
        while loads[0] != count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loads[0] == count

    connections = [http.client.HTTPConnection(running.host, running.port, timeout=10)]
    connections.append(http.client.HTTPConnection(running.host, running.port, timeout=10))
    for held, connection in enumerate(connections, start=1):
        connection.request("GET", "/api/runs")  # keep-alive: the connection stays open
        assert connection.getresponse().read()
        until(held)
    assert loads[1] == 0  # the other process's count is its own
    for held, connection in reversed(list(enumerate(connections))):
        connection.close()
        until(held)


def test_ctrl_c_just_after_the_address_is_printed_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address line says Ctrl-C stops: from that line on it does, serving or not yet."""
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    def interrupted(host: str) -> bool:  # Ctrl-C arrives as the next line's check begins
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "is_loopback", interrupted)
    model = save_model(tmp_path / "runs" / "only" / "model.npz", [784, 16, 10], seed=0)
    result = CliRunner().invoke(app, ["serve", "--model", str(model), "--port", "0"])
    assert result.exit_code == 0, result.stderr
    assert " (Ctrl-C stops)" in result.stdout
    assert result.stdout.endswith("stopped\n")


def test_mlp_serve_without_a_model_says_how_to_get_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    result = CliRunner().invoke(app, ["serve", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "no trained model found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "words"), [("0", r"\b1\b"), ("65", r"\b64\b"), ("two", "valid integer")]
)
def test_a_bad_number_of_workers_is_a_usage_error(tmp_path: Path, value: str, words: str) -> None:
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    model = save_model(tmp_path / "runs" / "only" / "model.npz", [784, 16, 10], seed=0)
    result = CliRunner().invoke(app, ["serve", "--model", str(model), "--workers", value])
    assert result.exit_code == 2
    assert "Invalid value for '--workers'" in result.stderr
    # The rest is worded by Typer (by click before Typer 0.29): the bound passed, in any words.
    assert re.search(words, result.stderr)
    assert "Traceback" not in result.stderr


def test_a_port_this_user_may_not_take_is_a_clean_error_naming_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socketserver

    def refused(self: Any) -> None:  # as binding a port below 1024 fails for most users
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socketserver.TCPServer, "server_bind", refused)
    model = save_model(tmp_path / "runs" / "m" / "model.npz", [784, 16, 10], seed=0)
    with pytest.raises(UsageError) as refused_port:
        Server(Models(model, tmp_path / "runs"), "127.0.0.1", 80)
    assert str(refused_port.value) == (
        "cannot listen on 127.0.0.1 port 80: Permission denied. Choose another --port (0 picks"
        " a free one) or stop what is using it."
    )


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_servers_address_is_written_in_brackets(tmp_path: Path) -> None:
    model = save_model(tmp_path / "runs" / "m" / "model.npz", [784, 16, 10], seed=0)
    try:
        server = Server(Models(model, tmp_path / "runs"), "::1", 0)
    except UsageError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url == f"http://[::1]:{server.server_address[1]}/"
    finally:
        server.server_close()


def test_a_request_target_without_its_leading_slash_is_not_a_file(running: Running) -> None:
    reply = raw_reply(running, b"GET app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (3, 3), (4, 4), (16, 4)])
def test_the_default_is_a_worker_per_core_and_at_most_four(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    monkeypatch.setattr(serve, "usable_cores", lambda: cores)
    assert serve.default_workers() == workers


def test_the_latest_run_is_served_under_its_own_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    save_model(runs / "r7" / "model.npz", [784, 16, 10], seed=0)
    (runs / "latest").symlink_to("r7")
    assert Models(runs / "latest", runs).default.name == "r7"


def test_a_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    model = save_model(tmp_path / "m.npz", [784, 16, 10], seed=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--model", str(model), "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr


def test_help_and_predict_do_not_load_the_server() -> None:
    probe = "\nimport sys\nprint('mlp_cli.serve' in sys.modules, 'http.server' in sys.modules)"
    for code in (
        "from mlp_cli.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass",
        "from mlp_cli.cli import app\ntry:\n"
        "    app(['predict', 'nothing.png', '--model', 'none'])\nexcept SystemExit:\n    pass",
    ):
        out = subprocess.run(
            [sys.executable, "-c", code + probe], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip().splitlines()[-1] == "False False", code


def test_a_host_beyond_loopback_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning's path, with the socket still on loopback (tests never listen wider)."""
    from typer.testing import CliRunner

    import mlp_cli.serve
    from mlp_cli.cli import app

    def interrupted(self: Server, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mlp_cli.serve, "is_loopback", lambda host: False)
    monkeypatch.setattr(Server, "serve_forever", interrupted)
    model = save_model(tmp_path / "m.npz", [784, 16, 10], seed=0)
    result = CliRunner().invoke(app, ["serve", "--model", str(model), "--port", "0"])
    assert result.exit_code == 0, result.stderr
    assert "reachable from the network" in result.stderr
    assert "stopped" in result.stdout


def test_an_empty_host_is_a_usage_error_not_every_interface(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket library reads '' as every interface; binding here only records what was
    asked and listens on loopback, so the test never listens wider."""
    from typer.testing import CliRunner

    from mlp_cli.cli import app

    asked: list[Any] = []
    server_bind = Server.server_bind

    def on_loopback(self: Server) -> None:
        asked.append(self.server_address)
        self.server_address = ("127.0.0.1", 0)
        server_bind(self)

    def interrupted(self: Server, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Server, "server_bind", on_loopback)
    monkeypatch.setattr(Server, "serve_forever", interrupted)
    model = save_model(tmp_path / "m.npz", [784, 16, 10], seed=0)
    for host in ("", "  "):
        result = CliRunner().invoke(app, ["serve", "--model", str(model), "--host", host])
        assert result.exit_code == 2, result.output
        assert "--host is empty" in result.stderr
        assert "127.0.0.1" in result.stderr
        assert "Traceback" not in result.stderr
    assert asked == []
    with pytest.raises(UsageError, match="--host is empty"):
        Server(Models(model, tmp_path / "runs"), "", 0)
    assert asked == []


def test_the_run_menu_lists_only_runs_a_request_can_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A folder whose name is not UTF-8 could be listed but never asked for again (the page
    # cannot encode it); a folder that cannot be looked into is left out, not an error.
    runs = tmp_path / "runs"
    save_model(runs / "small" / "model.npz", [784, 16, 10], seed=0)
    save_model(runs / "deep" / "model.npz", [400, 12, 8, 10], seed=1, activation="tanh")
    for name in (b"bad\xff\xfename", b"locked"):
        os.makedirs(os.fsencode(runs) + b"/" + name)
        (runs / os.fsdecode(name) / "model.npz").write_bytes(
            (runs / "small" / "model.npz").read_bytes()
        )
    is_file = Path.is_file

    def refused(path: Path) -> bool:
        if path.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", refused)
    models = Models(runs / "small", runs)
    assert sorted(models.run_names()) == ["deep", "small"]


def test_the_run_menu_lists_the_newest_first_and_not_the_latest_link(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for age, name in enumerate(["new", "middle", "old"]):
        model = save_model(runs / name / "model.npz", [784, 16, 10], seed=age)
        os.utime(model, (1_000_000 - age * 1000, 1_000_000 - age * 1000))
    (runs / "latest").symlink_to("new")  # a pointer to a run, not a run
    models = Models(runs / "old", runs)
    assert models.run_names() == ["new", "middle", "old"]
    with pytest.raises(RequestError) as refused:
        models.get("latest")
    assert refused.value.status == HTTPStatus.NOT_FOUND


def test_an_address_not_of_this_machine_is_named_as_the_problem(tmp_path: Path) -> None:
    save_model(tmp_path / "runs" / "small" / "model.npz", [784, 16, 10], seed=0)
    models = Models(tmp_path / "runs" / "small", tmp_path / "runs")
    with pytest.raises(UsageError, match=r"192\.0\.2\.1 .*Give --host an address of this"):
        Server(models, "192.0.2.1", 0)  # TEST-NET-1: no machine has it


def test_a_named_run_is_looked_up_alone_not_by_listing_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runs folder of thousands of runs would otherwise be listed for every request."""
    runs = tmp_path / "runs"
    save_model(runs / "small" / "model.npz", [784, 16, 10], seed=0)
    save_model(runs / "other" / "model.npz", [784, 8, 10], seed=1)
    (runs / "empty").mkdir()
    models = Models(runs / "small", runs)

    def listed(self: Path) -> Any:
        raise AssertionError(f"{self} was listed")

    monkeypatch.setattr(Path, "iterdir", listed)
    assert models.get("other").saved.layers == [784, 8, 10]
    for missing in ("empty", "nothing", "..", "latest", "a/b"):
        with pytest.raises(RequestError) as refused:
            models.get(missing)
        assert refused.value.status == HTTPStatus.NOT_FOUND


def test_hidden_activations_beyond_float32_are_sent_as_json(running: Running) -> None:
    """A hidden unit can overflow to infinity while the logits stay finite (the next ReLU
    layer turns -inf into 0): the answer is still JSON the page can read."""
    saved = checkpoint.load(running.runs / "small" / "model.npz")
    meta = saved.meta.model_dump(mode="json", exclude_unset=True)
    weights = [
        np.full((4, 784), -3e38, np.float32),  # background pixels are negative once standardised
        np.full((4, 4), -1.0, np.float32),
        np.ones((10, 4), np.float32),
    ]
    biases = [np.zeros(4, np.float32), np.zeros(4, np.float32), np.arange(10, dtype=np.float32)]
    checkpoint.save(running.runs / "huge" / "model.npz", weights, biases, meta)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    status, _, body = running.request(
        "POST", "/api/predict?run=huge", seven_png(), {"Content-Type": "image/png"}
    )
    assert status == 200
    answer = json.loads(body, parse_constant=refuse)
    big = float(np.finfo(np.float32).max)
    assert answer["hidden"] == [[big] * 4, [0.0] * 4]
    assert answer["class_name"] == "9"


def test_a_run_trained_again_into_its_folder_is_served_anew(running: Running) -> None:
    status, deep = running.json("GET", "/api/model?run=deep")
    assert (status, deep["layers"]) == (200, [400, 12, 8, 10])
    save_model(running.runs / "deep" / "model.npz", [784, 30, 10], seed=5)
    status, deep = running.json("GET", "/api/model?run=deep")
    assert (status, deep["layers"]) == (200, [784, 30, 10])
    status, answer = running.json("POST", "/api/predict?run=deep", seven_png(), "image/png")
    assert status == 200
    assert [len(layer) for layer in answer["hidden"]] == [30]


def test_the_default_model_trained_again_is_served_anew(running: Running) -> None:
    """As a named run is: the page's first model, asked for by no name, and by its name."""
    save_model(running.runs / "small" / "model.npz", [784, 30, 10], seed=5)
    for query in ("", "?run=small"):
        status, small = running.json("GET", "/api/model" + query)
        assert (status, small["name"], small["layers"]) == (200, "small", [784, 30, 10])
    status, answer = running.json("POST", "/api/predict", seven_png(), "image/png")
    assert status == 200
    assert [len(layer) for layer in answer["hidden"]] == [30]
    (running.runs / "small" / "model.npz").unlink()  # the last model loaded is kept
    status, small = running.json("GET", "/api/model")
    assert (status, small["layers"]) == (200, [784, 30, 10])


def test_a_model_naming_two_classes_alike_is_refused(running: Running) -> None:
    """One name for two outputs would leave one of them out of the answer's probabilities,
    and the page's bars would show one probability twice."""
    model = save_model(running.runs / "twins" / "model.npz", [784, 16, 10], seed=2)
    saved = checkpoint.load(model)
    f = np.load(model)
    meta = saved.meta.model_dump(mode="json", exclude_unset=True)
    meta["class_names"] = ["one", "one", *map(str, range(2, 10))]
    checkpoint.save(model, [f["W1"], f["W2"]], [f["b1"], f["b2"]], meta)
    status, answer = running.json("GET", "/api/model?run=twins")
    assert status == 422
    assert "class_names" in answer["error"]
    assert "'one' twice" in answer["error"]
