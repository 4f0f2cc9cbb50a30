"""`mlp serve` under load: POST /api/predict of a 280x280 canvas PNG from concurrent clients.

    python -m bench.serve                              # 2,000 requests, 8 clients, 784-100-10
    python -m bench.serve --requests 400 --memory 200,1000
    python -m bench.serve --model runs/mnist-784-100-10

The server runs as ``mlp serve --port 0`` in its own process (as a user starts it); the
clients are threads of this process, each on its own keep-alive connection, posting the
same canvas PNG (a "7" drawn with the page's pen).  Prints requests per second and the
p50/p99 latency, then the server's resident memory (VmRSS) after the first and the last of
the ``--memory`` request counts, to show whether it grows with the number of requests.
Without ``--model``, a 784-100-10 network with random weights is used: its forward pass
costs what a trained one costs.  Writes the figures to ``bench/results/serve-<time>.json``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench import report
from mlp_cli import checkpoint

RESULTS = Path(__file__).resolve().parent / "results"


def canvas_png() -> bytes:
    """A black "7" on a white 280x280 canvas, as the page sends it."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(80, 60), (200, 60), (120, 240)], fill=0, width=18)
    buffer = io.BytesIO()
    image.convert("RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def random_model(path: Path, layers: list[int]) -> Path:
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(0, 0.05, (n_out, n_in)).astype(np.float32)
        for n_in, n_out in itertools.pairwise(layers)
    ]
    meta = {
        "hidden_activation": "relu",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "preprocessing": {"input_size": 28, "normalize": {"mean": 0.1307, "std": 0.3081}},
        "class_names": [str(d) for d in range(10)],
    }
    return checkpoint.save(path, weights, [np.zeros(n, np.float32) for n in layers[1:]], meta)


def family(pid: int) -> list[int]:
    """``pid`` and its child processes (the server's forked workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid] + [int(child) for child in children.read_text().split()]


def rss_mb(pid: int) -> float:
    """Resident memory of the server's processes together."""
    total = 0
    for member in family(pid):
        with open(f"/proc/{member}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the server's processes have used so far."""
    ticks = 0
    for member in family(pid):
        with open(f"/proc/{member}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load(
    host: str,
    port: int,
    body: bytes,
    requests: int,
    clients: int,
    method: str = "POST",
    path: str = "/api/predict",
) -> dict[str, Any]:
    """Send ``requests`` requests (by default, predictions of ``body``) from ``clients``
    threads; latencies in ms."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    share = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(n: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        mine = []
        for _ in range(n):
            started = time.perf_counter()
            if method == "POST":
                connection.request(method, path, body, {"Content-Type": "image/png"})
            else:
                connection.request(method, path)
            response = connection.getresponse()
            data = response.read()
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                with lock:
                    failures.append(data.decode(errors="replace"))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": requests,
        "clients": clients,
        "seconds": seconds,
        "requests_per_second": requests / seconds,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "failures": len(failures),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model or run folder [random 784-100-10]")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--memory",
        default="1000,10000",
        help="request counts after which to read the server's memory ('' skips)",
    )
    parser.add_argument("--workers", type=int, help="the server's processes [mlp serve's default]")
    parser.add_argument(
        "--out", type=report.results_file, help="JSON file [bench/results/serve-<time>.json]"
    )
    parser.add_argument(
        "--overhead",
        type=int,
        default=400,
        help="GET /api/runs requests timed too: the HTTP layer's own cost (0 skips)",
    )
    parser.add_argument(
        "--url", help="time a server already running here instead (memory is then skipped)"
    )
    given = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(given)
    report.check_counts(parser, args, "--requests", "--clients")
    if args.overhead < 0:
        parser.error(f"--overhead takes a whole number (0 skips), not {args.overhead}")
    try:
        targets = [] if args.url else [int(n) for n in args.memory.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--memory takes request counts separated by commas, not {args.memory!r}")
    out = args.out or RESULTS / f"serve-{datetime.now():%Y%m%d-%H%M%S}.json"
    report.check_results_file(parser, out)

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or random_model(Path(scratch) / "m.npz", [784, 100, 10])
        mlp = Path(sys.executable).parent / "mlp"
        command = [str(mlp), "serve", "--model", str(model), "--port", "0", "--runs", scratch]
        if args.workers:
            command += ["--workers", str(args.workers)]
        server = subprocess.Popen(
            ["true"] if args.url else command, stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            url = args.url or server.stdout.readline().split(" at ")[1].split()[0]
            host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
            body = canvas_png()
            load(host, int(port), body, 50, 2)  # warm-up: imports, first allocations
            record: dict[str, Any] = {
                "command": " ".join(["python -m bench.serve", *given]),
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "load_average": os.getloadavg(),
                "cpus": os.cpu_count(),
                "model": str(args.model or "random 784-100-10"),
                "workers": args.workers or "default",
                "canvas_png_bytes": len(body),
            }
            server_before, client_before = cpu_seconds(server.pid), time.process_time()
            record["speed"] = load(host, int(port), body, args.requests, args.clients)
            if not args.url:  # CPU per request on each side: both share the machine's cores
                record["speed"]["server_cpu_ms"] = (
                    (cpu_seconds(server.pid) - server_before) * 1000 / args.requests
                )
            record["speed"]["client_cpu_ms"] = (
                (time.process_time() - client_before) * 1000 / args.requests
            )
            if args.overhead:
                record["http_overhead"] = load(
                    host, int(port), b"", args.overhead, args.clients, "GET", "/api/runs"
                )
            memory = []
            done = 50 + args.requests
            for target in targets:
                if target > done:
                    load(host, int(port), body, target - done, args.clients)
                    done = target
                memory.append({"after_requests": done, "rss_mb": rss_mb(server.pid)})
            record["memory"] = memory
            record["load_average_after"] = os.getloadavg()
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
            server.wait(timeout=10)

    speed = record["speed"]
    print(
        f"{speed['requests']:,} POST /api/predict, {speed['clients']} clients: "
        f"{speed['requests_per_second']:.0f} requests/s, p50 {speed['p50_ms']:.1f} ms, "
        f"p99 {speed['p99_ms']:.1f} ms, {speed['failures']} failed"
    )
    print(
        f"CPU per request: server {speed.get('server_cpu_ms', float('nan')):.2f} ms, "
        f"client {speed['client_cpu_ms']:.2f} ms"
    )
    if "http_overhead" in record:
        over = record["http_overhead"]
        print(
            f"{over['requests']:,} GET /api/runs (the HTTP layer alone): "
            f"{over['requests_per_second']:.0f} requests/s, p50 {over['p50_ms']:.1f} ms"
        )
    for m in memory:
        print(f"server memory after {m['after_requests']:,} requests: {m['rss_mb']:.1f} MB")
    if len(memory) >= 2:
        growth = memory[-1]["rss_mb"] / memory[0]["rss_mb"] - 1
        print(f"growth: {100 * growth:+.1f}%")
    print(f"load average before/after: {record['load_average']} / {record['load_average_after']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
