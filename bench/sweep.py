"""`mlp sweep` against the same runs one after another, and the Ray engine against the local one.

    python -m bench.sweep                  # local engine vs sequential mlp train runs
    python -m bench.sweep --ray            # and --engine ray (a private Ray, start-up included)
    python -m bench.sweep --repeats 2 --epochs 3

The workload is an 8-trial sweep of 784-100-10 on MNIST (four learning rates, two seeds
each, ``--epochs`` epochs, the recipe of configs/mnist-784-100-10.yaml). Three ways to run it,
each a fresh process as a user starts it, timed by wall clock:

- sequential: the 8 ``mlp train --set ... --threads 2`` runs, one after another;
- local: ``mlp sweep FILE --workers 2 --cpus-per-trial 1``;
- ray: ``mlp sweep FILE --engine ray --cpus-per-trial 1`` (its own Ray started and stopped).

With ``--repeats`` > 1 the three alternate, so slow phases of a shared machine fall on all of
them. Prints the median seconds and the ratios local / sequential and ray / local, and writes
them to ``bench/results/sweep-<time>.json``. Needs MNIST in the cache (``mlp data import``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BASE = ROOT / "configs" / "mnist-784-100-10.yaml"
LEARNING_RATES = (0.01, 0.02, 0.05, 0.1)
SEEDS = (0, 1)


def sweep_file(folder: Path, epochs: int) -> Path:
    path = folder / "bench-sweep.yaml"
    path.write_text(
        f"name: bench-sweep\nconfig: {BASE}\nnum_samples: {len(SEEDS)}\n"
        f"parameters:\n  optimizer.lr: {{values: {list(LEARNING_RATES)}}}\n"
        f"  training.epochs: {{value: {epochs}}}\n"
    )
    return path


def _mlp(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlp_cli.cli", *args]


def _timed(commands: list[list[str]], cwd: Path) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def sequential(folder: Path, epochs: int) -> float:
    out = folder / "sequential"
    shutil.rmtree(out, ignore_errors=True)
    commands = [
        _mlp(
            "train",
            "--config",
            str(BASE),
            "--quiet",
            "--threads",
            "2",
            "--set",
            f"optimizer.lr={lr}",
            "--set",
            f"training.seed={seed}",
            "--set",
            f"training.epochs={epochs}",
            "--out",
            str(out / f"{lr}-{seed}"),
        )
        for lr in LEARNING_RATES
        for seed in SEEDS
    ]
    return _timed(commands, folder)


def swept(folder: Path, path: Path, engine: str) -> float:
    out = folder / engine
    shutil.rmtree(out, ignore_errors=True)
    where = ["--workers", "2"] if engine == "local" else ["--engine", "ray"]
    command = _mlp(
        "sweep", str(path), "--quiet", "--cpus-per-trial", "1", "--out", str(out), *where
    )
    return _timed([command], folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ray", action="store_true", help="time --engine ray too")
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--epochs", "--repeats")
    seconds: dict[str, list[float]] = {"sequential": [], "local": []}
    if args.ray:
        seconds["ray"] = []
    with tempfile.TemporaryDirectory(prefix="mlp-bench-sweep-") as tmp:
        folder = Path(tmp)
        path = sweep_file(folder, args.epochs)
        for repeat in range(args.repeats):
            seconds["sequential"].append(sequential(folder, args.epochs))
            seconds["local"].append(swept(folder, path, "local"))
            if args.ray:
                seconds["ray"].append(swept(folder, path, "ray"))
            shown = ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items())
            print(f"repeat {repeat + 1}: {shown}", flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    record: dict[str, Any] = {
        "kind": "sweep",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "trials": len(LEARNING_RATES) * len(SEEDS),
        "epochs": args.epochs,
        "network": "784-100-10",
        "seconds": seconds,
        "median_seconds": median,
        "local_over_sequential": median["local"] / median["sequential"],
        "load_average": os.getloadavg(),
    }
    print(
        f"8 trials of 784-100-10, {args.epochs} epochs: sequential {median['sequential']:.1f} s,"
        f" local sweep {median['local']:.1f} s: local / sequential ="
        f" {record['local_over_sequential']:.2f}"
    )
    if args.ray:
        record["ray_over_local"] = median["ray"] / median["local"]
        print(f"ray sweep {median['ray']:.1f} s: ray / local = {record['ray_over_local']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sweep-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
