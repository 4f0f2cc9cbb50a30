"""``python -m bench threads``: from what step size on a second thread pays, on this machine.

For a ladder of one-hidden-layer widths (and the shipped configs' networks and batch
sizes), times training steps (forward, backward, the compiled Adam update: the steps
`mlp_cli.train.Trainer` runs) on one thread and on every count up to the usable cores,
and reports the step's floating-point operations (`mlp_cli.threads.step_flops`) beside the
time each thread count takes.  The steps run back to back, as in training, so what a
thread count costs between products (waking BLAS's workers, the update's threads) counts;
each figure is the median over blocks of `BLOCK` consecutive steps of a block's time per
step, so that a burst of load from another process moves it little.
`mlp_cli.threads.SMALL_STEP_FLOPS`, below which ``auto`` uses one thread, comes from this
table read together with ``python -m bench busy``.

Then, for networks from 1 to 19 million parameters, the same steps with BLAS on every core
and the optimizer's update on one thread against shared among all of them:
`mlp_cli.optim.THREAD_MIN`, the parameters a thread must get before an update is shared,
comes from that table.

Left out: data gathering and validation, which do not change with the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import report
from mlp_cli.plain import plain
from mlp_cli.threads import SMALL_STEP_FLOPS, limit_blas, step_flops, usable_cores

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 20  # consecutive steps timed together
# (layers, batch): the widths between the shipped networks, and the shipped ones themselves.
LADDER: tuple[tuple[tuple[int, ...], int], ...] = (
    ((784, 30, 10), 10),
    ((400, 25, 10), 64),
    ((784, 10), 128),
    ((784, 100, 10), 64),
    ((784, 100, 10), 128),
    ((784, 200, 10), 128),
    ((784, 400, 10), 128),
    ((784, 800, 10), 128),
    ((784, 800, 800, 10), 128),
)
# Networks whose update may be shared among threads, batch 128: from 1.3 to 19 million
# parameters.
UPDATE_LADDER: tuple[tuple[int, ...], ...] = (
    (784, 800, 800, 10),
    (784, 1200, 1200, 10),
    (784, 2500, 2500, 10),
    (784, 4000, 4000, 10),
)


def step_seconds(
    layers: tuple[int, ...],
    batch: int,
    threads: int,
    steps: int,
    *,
    update_threads: int | None = None,
) -> float:
    """Seconds per training step of ``layers`` on ``threads`` threads, over ``steps`` steps
    run back to back (the median over blocks of `BLOCK`); with ``update_threads``, the update
    runs on that many whatever its size."""
    import numpy as np

    from mlp_cli.model import MLP
    from mlp_cli.optim import Adam, compiled_kernels

    with limit_blas(threads):
        model = MLP(list(layers), "relu", "softmax")
        model.initialize("he", np.random.default_rng(0))
        opt = Adam(model.params.size, model.dtype, model.n_weights, threads=threads)
        if update_threads is not None:
            opt.threads = update_threads if opt.kernels is not None else 1
        model.use_kernels(compiled_kernels())
        rng = np.random.default_rng(1)
        X = rng.random((8 * batch, layers[0]), dtype=np.float32)
        y = rng.integers(0, 10, 8 * batch).astype(np.uint8)
        blocks = []
        for block in range(max(1, steps // BLOCK) + 1):  # the first block warms up
            started = time.perf_counter()
            for i in range(BLOCK):
                rows = slice((i % 8) * batch, (i % 8 + 1) * batch)
                model.forward(X[rows])
                model.backward(y[rows], "cross_entropy")
                opt.step(model.params, model.grads, 1e-3)
            if block > 0:
                blocks.append((time.perf_counter() - started) / BLOCK)
    return statistics.median(blocks)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench threads", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=300, help="steps timed per cell")
    parser.add_argument(
        "--out", type=report.results_file, help="JSON file [bench/results/threads-<time>.json]"
    )
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--steps")
    if args.out is None:
        args.out = RESULTS / f"threads-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.check_results_file(parser, args.out)
    console = Console(width=max(Console().width, 100))
    counts = list(range(1, max(2, usable_cores()) + 1))
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for layers, batch in LADDER:
        seconds = {t: step_seconds(layers, batch, t, args.steps) for t in counts}
        rows.append(
            {
                "layers": list(layers),
                "batch_size": batch,
                "step_flops": step_flops(layers, batch),
                "seconds_per_step": seconds,
                "over_one_thread": {t: s / seconds[1] for t, s in seconds.items()},
            }
        )
        console.print(f"timed {'-'.join(map(str, layers))} batch {batch}", highlight=False)
    out_table = Table(
        title="Training step (Adam), by thread count",
        caption=f"auto uses one thread below {SMALL_STEP_FLOPS / 1e6:.0f} MFLOP per step.",
    )
    for column in ("network", "batch", "MFLOP/step", *(f"{t} thr. ms" for t in counts)):
        out_table.add_column(column, justify="left" if column == "network" else "right")
    out_table.add_column(f"{counts[-1]} / 1", justify="right")
    for r in rows:
        out_table.add_row(
            "-".join(map(str, r["layers"])),
            str(r["batch_size"]),
            f"{r['step_flops'] / 1e6:.1f}",
            *(f"{1e3 * r['seconds_per_step'][t]:.3f}" for t in counts),
            f"{r['over_one_thread'][counts[-1]]:.2f}",
        )
    console.print(out_table)
    updates = update_split(counts[-1], args.steps, console)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench threads", *argv]),
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "networks": rows,
        "update_threads": updates,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print("results:", plain(out))
    return 0


def update_split(cores: int, steps: int, console: Console) -> list[dict[str, Any]]:
    """`UPDATE_LADDER`'s step times with BLAS on ``cores`` threads and the update on one
    thread and on ``cores``, each pair timed one after the other; printed as a table."""
    from mlp_cli.optim import THREAD_MIN

    rows: list[dict[str, Any]] = []
    for layers in UPDATE_LADDER:
        seconds = {
            t: step_seconds(layers, 128, cores, steps // 3, update_threads=t) for t in (1, cores)
        }
        parameters = sum(a * b + b for a, b in pairwise(layers))
        rows.append({"layers": list(layers), "parameters": parameters, "seconds_per_step": seconds})
        console.print(f"timed the update of {'-'.join(map(str, layers))}", highlight=False)
    table = Table(
        title=f"Training step (Adam, batch 128), BLAS on {cores} threads, by the update's threads",
        caption=f"An update is shared among threads from {THREAD_MIN:,} parameters a thread.",
    )
    for column in ("network", "parameters", "update 1 thr. ms", f"update {cores} thr. ms"):
        table.add_column(column, justify="left" if column == "network" else "right")
    table.add_column(f"{cores} / 1", justify="right")
    for r in rows:
        one, shared = r["seconds_per_step"][1], r["seconds_per_step"][cores]
        table.add_row(
            "-".join(map(str, r["layers"])),
            f"{r['parameters']:,}",
            f"{1e3 * one:.3f}",
            f"{1e3 * shared:.3f}",
            f"{shared / one:.2f}",
        )
    console.print(table)
    return rows
