"""`mlp serve` in a real headless Chromium: draw a digit with pointer events, and the page
shows what `mlp predict` says of the canvas' own PNG, the 28x28 input and the hidden layers;
Clear and Undo empty them.

Chromium is Debian's (`apt-get install chromium`, which `.ci/run` does), driven by Playwright
through `executable_path`; Playwright's own browser download is not used.  Without a Chromium
the tests skip and say so.
"""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import real_mnist_files
from PIL import Image

from mlp_cli import checkpoint

CHROMIUM = next(
    (
        path
        for path in (
            os.environ.get("MLP_TEST_CHROMIUM", ""),
            shutil.which("chromium") or "",
            shutil.which("chromium-browser") or "",
            "/usr/bin/chromium",
        )
        if path and Path(path).is_file()
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on this machine: install Debian's chromium (apt-get install chromium, "
    "as .ci/run does) or set MLP_TEST_CHROMIUM to a Chromium binary",
)
MLP = Path(sys.executable).parent / "mlp"
PAD = 280  # the page's drawing pad, in canvas pixels
HIDDEN = 48  # units of the test model's hidden layer


def _idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    files = real_mnist_files()
    if files is None:
        return None
    return (
        _idx(files["train-images-idx3-ubyte"])[:6000],
        _idx(files["train-labels-idx1-ubyte"])[:6000],
        _idx(files["t10k-images-idx3-ubyte"])[:50],
        _idx(files["t10k-labels-idx1-ubyte"])[:50],
    )


def _tiny_model(path: Path, mnist: Any) -> Path:
    """A 784-48-10 model: random ReLU features, output layer fitted by ridge regression on
    6,000 MNIST digits (about a second); random weights where MNIST is not on the machine."""
    rng = np.random.default_rng(0)
    W1 = rng.normal(0, 1 / 28, (HIDDEN, 784)).astype(np.float32)
    b1 = rng.normal(0, 0.5, HIDDEN).astype(np.float32)
    mean, std = 0.1307, 0.3081
    W2 = rng.normal(0, 0.1, (10, HIDDEN))
    b2 = np.zeros(10)
    if mnist is not None:
        images, labels = mnist[0], mnist[1]
        X = (images.reshape(len(images), -1) / 255.0 - mean) / std
        H = np.maximum(X @ W1.T + b1, 0)
        H1 = np.hstack([H, np.ones((len(H), 1))])
        Y = np.eye(10)[labels] * 10 - 5  # softmax of these targets is near one-hot
        solution = np.linalg.solve(H1.T @ H1 + 1.0 * np.eye(HIDDEN + 1), H1.T @ Y)
        W2, b2 = solution[:-1].T, solution[-1]
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 28, "normalize": {"mean": mean, "std": std}},
        "class_names": [str(d) for d in range(10)],
        "created": "2026-01-02T03:04:05+00:00",
    }
    weights = [W1, W2.astype(np.float32)]
    biases = [b1, b2.astype(np.float32)]
    return checkpoint.save(path, weights, biases, meta)


def _random_weights(layers: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(1)
    weights = [
        rng.normal(0, 0.1, (n_out, n_in)).astype(np.float32)
        for n_in, n_out in itertools.pairwise(layers)
    ]
    return weights, [np.zeros(n, np.float32) for n in layers[1:]]


def strokes_of(digit: np.ndarray) -> list[list[tuple[float, float]]]:
    """Pen strokes tracing a 28x28 digit on the pad: one along each run of inked pixels in
    each row, so that the strokes, drawn with the page's pen, cover the digit."""
    scale = PAD / 28
    strokes = []
    for y, row in enumerate(digit > 100):
        x = 0
        while x < 28:
            if row[x]:
                start = x
                while x < 28 and row[x]:
                    x += 1
                centre = (y + 0.5) * scale
                strokes.append([((start + 0.5) * scale, centre), ((x - 0.5) * scale, centre)])
            x += 1
    return strokes


SEVEN = [[(70.0, 60.0), (210.0, 60.0), (120.0, 240.0)]]  # where MNIST is not available


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("browser")
    mnist = _mnist()
    model = _tiny_model(folder / "runs" / "tiny" / "model.npz", mnist)
    other = folder / "runs" / "other" / "model.npz"
    meta = checkpoint.load(model).meta.model_dump(mode="json", exclude_unset=True)
    meta["preprocessing"] = {**meta["preprocessing"], "input_size": 20}
    checkpoint.save(other, *_random_weights([400, 12, 10]), meta)
    process = subprocess.Popen(
        [str(MLP), "serve", "--model", str(model), "--port", "0", "--runs", str(folder / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + (
            process.stderr.read() if process.stderr else ""
        )
        yield {
            "url": line.split(" at ")[1].split()[0],
            "model": model,
            "mnist": mnist,
        }
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the Python driver for Chromium (pip install playwright)"
    )
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser: Any, served: dict[str, Any]) -> Any:
    """A desktop-sized page of the server, once it shows its model's answer bars."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(served["url"])
    page.wait_for_selector("#bars li")
    return page


def choose_run(page: Any, run: str, layers: str) -> None:
    """Pick `run` in the page's menu and wait until its facts (`layers`) are shown."""
    page.select_option("#run", run)
    page.wait_for_selector(f"#facts:has-text('{run}: {layers}')")


def draw(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw on the pad with the mouse (the page listens to pointer events)."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / PAD
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
        page.mouse.up()
    page.wait_for_selector("body[data-busy='0']", state="attached", timeout=15_000)


def pad_png(page: Any, path: Path) -> Path:
    url = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
    path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    return path


def canvas_grey(page: Any, selector: str) -> np.ndarray:
    """A canvas' pixels as (h, w) grey levels (the red channel; transparent is 0)."""
    url = page.evaluate(
        "(selector) => document.querySelector(selector).toDataURL('image/png')", selector
    )
    rgba = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA")
    return np.asarray(rgba)[..., 0]


def mlp_predict(png: Path, model: Path, folder: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            str(MLP),
            "predict",
            str(png),
            "--model",
            str(model),
            "--json",
            "--save-input",
            str(folder),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [answer] = json.loads(out)["predictions"]
    return dict(answer)


def shown(page: Any) -> tuple[str, dict[str, float | None]]:
    """The digit the page shows and the probability behind each bar (None: no bar)."""
    bars = page.eval_on_selector_all(
        "#bars li", "(lis) => lis.map((li) => [li.dataset.name, li.dataset.p])"
    )
    return page.inner_text("#digit"), {name: float(p) if p else None for name, p in bars}


def test_drawn_digits_get_mlp_predicts_answer_and_clear_empties_the_page(
    served: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    mnist = served["mnist"]
    digits = [(mnist[2][i], int(mnist[3][i])) for i in range(2)] if mnist else [(None, 7)]
    errors: list[str] = []

    def record_error(error: Any) -> None:
        errors.append(str(error))

    for viewport in ({"width": 1280, "height": 800}, {"width": 390, "height": 844}):
        if viewport["width"] < 1280:
            digits = digits[-1:]  # the phone's layout, once
        page = browser.new_page(viewport=viewport)
        page.on("pageerror", record_error)
        page.goto(served["url"])
        page.wait_for_selector("#bars li")
        assert "tiny: 784-48-10" in page.inner_text("#facts")
        for n, (digit, label) in enumerate(digits):
            page.click("#clear")
            draw(page, SEVEN if digit is None else strokes_of(digit))
            png = pad_png(page, tmp_path / f"canvas-{viewport['width']}-{n}-{label}.png")
            want = mlp_predict(png, served["model"], tmp_path / f"inputs-{viewport['width']}-{n}")
            digit_shown, probabilities = shown(page)
            assert digit_shown == want["class_name"]
            assert probabilities == want["probabilities"]  # the very same floats
            # The 28x28 preview is the input `mlp predict --save-input` wrote, enlarged.
            preview = canvas_grey(page, "#preview")
            cell = preview.shape[0] // 28
            centres = preview[cell // 2 :: cell, cell // 2 :: cell][:28, :28].astype(int)
            saved_input = next((tmp_path / f"inputs-{viewport['width']}-{n}").iterdir())
            expected = np.asarray(Image.open(saved_input), dtype=int)
            assert np.abs(centres - expected).max() <= 1
            assert centres.max() > 200  # ink is there
            # One block per hidden layer, and the unit pictures with the most active framed.
            assert page.locator("#hidden canvas").count() == 1
            assert page.locator("#top canvas").count() >= 1
            assert canvas_grey(page, "#units").size > 0
            page.screenshot(
                path=str(tmp_path / f"page-{viewport['width']}x{viewport['height']}-{n}.png"),
                full_page=True,
            )
        page.click("#clear")
        page.wait_for_selector("#preview:not([data-drawn='1'])", state="attached")
        assert shown(page) == ("–", dict.fromkeys(map(str, range(10))))
        assert page.locator("#hidden canvas").count() == 0
        assert canvas_grey(page, "#pad").min() == 255  # the pad is white again
        assert canvas_grey(page, "#preview").max() == 0
        assert errors == []
        page.close()
    print(f"screenshots in {tmp_path}")


def test_undo_removes_the_last_stroke_and_uploads_are_predicted(
    served: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = open_page(browser, served)
    draw(page, SEVEN)
    one = pad_png(page, tmp_path / "one.png").read_bytes()
    answer = shown(page)
    draw(page, [[(40.0, 150.0), (240.0, 150.0)]])  # a bar across: another drawing
    assert pad_png(page, tmp_path / "two.png").read_bytes() != one
    page.click("#undo")
    page.wait_for_selector("body[data-busy='0']", state="attached")
    assert pad_png(page, tmp_path / "undone.png").read_bytes() == one
    assert shown(page) == answer
    page.click("#undo")
    page.wait_for_selector("#preview:not([data-drawn='1'])", state="attached")
    assert shown(page)[0] == "–"

    # A file chosen with the upload button is sent as it is: mlp predict's answer for it.
    upload = tmp_path / "upload.png"
    Image.fromarray(np.asarray(Image.open(tmp_path / "one.png").convert("L"))).save(upload)
    page.set_input_files("#file", str(upload))
    page.wait_for_selector("#preview[data-drawn='1']", state="attached")
    page.wait_for_selector("body[data-busy='0']", state="attached")
    want = mlp_predict(upload, served["model"], tmp_path / "upload-input")
    assert shown(page) == (want["class_name"], want["probabilities"])

    # The run menu switches the model: its facts, its units, its answers.
    page.click("#clear")
    choose_run(page, "other", "400-12-10")
    draw(page, SEVEN)
    assert page.locator("#top canvas").count() >= 1
    assert "12 units" in page.inner_text("#hidden")
    other = tmp_path / "other.png"
    pad_png(page, other)
    want = mlp_predict(other, served["model"].parents[1] / "other", tmp_path / "other-input")
    assert shown(page) == (want["class_name"], want["probabilities"])

    # A file that is not an image: the server's message is shown, the page keeps working.
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not(:empty)")
    assert "not an image" in page.inner_text("#error")
    page.close()


def test_a_finger_draws_too(served: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """Touch events (a phone) reach the pad as pointer events, as the mouse's do."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = context.new_page()
    page.goto(served["url"])
    page.wait_for_selector("#bars li")
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / PAD
    touch = context.new_cdp_session(page)
    for stroke in SEVEN:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        # Several small moves between the corners, as a finger sends them.
        path = [
            (x0 + (x1 - x0) * t / 8, y0 + (y1 - y0) * t / 8)
            for (x0, y0), (x1, y1) in itertools.pairwise(points)
            for t in range(9)
        ]
        for kind, (x, y) in [("touchStart", path[0])] + [("touchMove", p) for p in path[1:]]:
            touch.send(
                "Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]}
            )
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_selector("#preview[data-drawn='1']", state="attached")
    page.wait_for_selector("body[data-busy='0']", state="attached")
    png = pad_png(page, tmp_path / "finger.png")
    assert canvas_grey(page, "#pad").min() == 0  # ink on the pad
    want = mlp_predict(png, served["model"], tmp_path / "finger-input")
    assert shown(page) == (want["class_name"], want["probabilities"])
    page.screenshot(path=str(tmp_path / "finger-390x844.png"))
    context.close()


def test_the_content_security_policy_allows_only_what_the_page_uses(
    served: dict[str, Any], browser: Any
) -> None:
    """The page's pictures are its own files and its uploads' blobs: a data: URL picture, a
    media file, a <base> are refused, even from the page's own server."""
    page = browser.new_page()
    page.goto(served["url"])
    page.wait_for_selector("#bars li")
    loaded, refused = page.evaluate(
        """async () => {
          const refused = [];
          document.addEventListener("securitypolicyviolation", (e) => {
            refused.push(e.effectiveDirective);
          });
          const picture = new Image();
          const loaded = await new Promise((resolve) => {
            picture.onload = () => resolve(true);
            picture.onerror = () => resolve(false);
            picture.src = document.getElementById("pad").toDataURL("image/png");
          });
          const audio = document.createElement("audio");
          audio.src = "/api/units.png";
          document.body.append(audio);
          const base = document.createElement("base");
          base.href = "/elsewhere/";
          document.head.append(base);
          await new Promise((resolve) => setTimeout(resolve, 500));
          return [loaded, refused.sort()];
        }"""
    )
    assert loaded is False
    assert refused == ["base-uri", "img-src", "media-src"]
    page.close()


def test_long_class_names_stay_in_their_column_and_panel(
    served: dict[str, Any], browser: Any
) -> None:
    """A class name of up to 100 characters (as a model file may hold) is cut short with an
    ellipsis in its bar's label and after two lines in the answer, whole in their tooltips,
    instead of running over the bars and out of the panel."""
    meta = checkpoint.load(served["model"]).meta.model_dump(mode="json", exclude_unset=True)
    names = [f"{'W' * 96} {d}\n." for d in range(10)]
    runs = served["model"].parents[1]
    checkpoint.save(
        runs / "long-names" / "model.npz",
        *_random_weights([784, 12, 10]),
        meta | {"class_names": names},
    )
    page = open_page(browser, served)
    choose_run(page, "long-names", "784-12-10")
    draw(page, SEVEN)
    assert page.get_attribute("#digit", "title") in names
    panel, labels = page.evaluate(
        """() => [
          document.getElementById("answer-panel").getBoundingClientRect().toJSON(),
          [...document.querySelectorAll("#bars li")].map((li) => [
            li.children[0].title,
            li.children[0].getBoundingClientRect().right,
            li.children[1].getBoundingClientRect().toJSON(),
          ]),
        ]"""
    )

    def blank(x: float, y: float, width: float, height: float) -> bool:
        clip = {"x": x, "y": y, "width": width, "height": height}
        shot = page.screenshot(clip=clip, full_page=True)
        return bool(np.ptp(np.asarray(Image.open(io.BytesIO(shot)).convert("L"))) == 0)

    # Nothing is drawn in the gap right of the panel, nor between a label and its bar.
    assert blank(panel["right"] + 2, panel["top"], 8, panel["height"])
    for _, right, track in labels:
        assert blank(right + 1, track["top"], track["left"] - right - 2, track["height"])
    assert [title for title, _, _ in labels] == names
    page.close()


def test_a_model_chosen_later_is_not_replaced_by_an_earlier_ones_late_answer(
    served: dict[str, Any], browser: Any
) -> None:
    """Runs chosen one after the other: the page shows the last one chosen, even when the
    facts of the one before arrive after its own."""
    page = open_page(browser, served)
    held: list[Any] = []
    page.route("**/api/model?run=other", lambda route: held.append(route))  # held back
    page.select_option("#run", "other")
    page.wait_for_function("() => document.body.dataset.busy === '1'")
    page.select_option("#run", "tiny")
    page.wait_for_selector("body[data-busy='0']", state="attached")  # "tiny" is shown
    held[0].continue_()
    # Once the browser has both of the late model's answers, the page has had them too.
    page.wait_for_function(
        """() => performance.getEntriesByType("resource").filter(
          (entry) => entry.name.endsWith("?run=other") && entry.responseEnd > 0
        ).length === 2"""
    )
    page.wait_for_timeout(200)
    assert "tiny: 784-48-10" in page.inner_text("#facts")
    assert page.eval_on_selector_all("#bars li", "(lis) => lis.length") == 10
    draw(page, SEVEN)
    assert "48 units" in page.inner_text("#hidden")
    page.close()


def test_a_model_the_server_does_not_answer_for_is_said_so(
    served: dict[str, Any], browser: Any
) -> None:
    """The connection fails while the page asks about a run: the page says so and is not
    left busy."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(served["url"])
    page.wait_for_selector("#bars li")
    page.route("**/api/model?run=other", lambda route: route.abort())
    page.select_option("#run", "other")
    page.wait_for_selector("#facts:has-text('the server did not answer')", timeout=5_000)
    page.wait_for_selector("body[data-busy='0']", state="attached", timeout=5_000)
    assert errors == []
    page.close()


def test_a_hidden_layer_of_more_units_than_a_call_takes_arguments_is_drawn(
    served: dict[str, Any], browser: Any
) -> None:
    """A layer may have up to 2**20 units; Chromium's calls take some 120,000 arguments."""
    meta = checkpoint.load(served["model"]).meta.model_dump(mode="json", exclude_unset=True)
    runs = served["model"].parents[1]
    checkpoint.save(runs / "wide" / "model.npz", *_random_weights([784, 1, 150_000, 10]), meta)
    page = open_page(browser, served)
    choose_run(page, "wide", "784-1-150000-10")
    draw(page, SEVEN)
    assert page.inner_text("#error") == ""
    assert page.locator("#hidden canvas").count() == 2
    assert "hidden layer 2: 150000 units" in page.inner_text("#hidden")
    page.close()


def test_a_run_list_the_server_does_not_answer_for_is_said_so(
    served: dict[str, Any], browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/api/runs", lambda route: route.abort())
    page.goto(served["url"])
    page.wait_for_selector("#bars li")  # the model is shown all the same
    page.wait_for_selector("#run option", state="attached", timeout=5_000)
    assert "the server did not answer" in page.inner_text("#run")
    assert errors == []
    page.close()


def test_clear_and_undo_forget_the_uploaded_files_name(
    served: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = open_page(browser, served)
    hint = page.inner_text("#hint")
    upload = tmp_path / "upload.png"
    Image.new("L", (28, 28), 255).save(upload)
    for button in ("#clear", "#undo"):
        page.set_input_files("#file", str(upload))
        page.wait_for_selector("#hint:has-text('upload.png')")
        page.click(button)
        page.wait_for_selector("body[data-busy='0']", state="attached")
        assert page.inner_text("#hint") == hint
    page.close()


def test_a_probability_short_of_1_is_never_shown_as_100_percent(
    served: dict[str, Any], browser: Any
) -> None:
    # What the page shows for an answer's probability, each bar and the validation accuracy.
    page = open_page(browser, served)
    values = [0.9999923, 0.996, 0.995, 1.0, 0.5, 0.002, 0.0009, 6.5e-6, 0.0]
    shown = page.evaluate(f"{values}.map(percent)")
    assert shown == [">99.5%", ">99.5%", ">99.5%", "100%", "50.0%", "0.2%", "<0.1%", "<0.1%", "0%"]
    page.close()
