"""``python -m bench``: time training epochs of ours against PyTorch, scikit-learn and JAX.

    python -m bench                  # full run on MNIST's 60,000 training digits
    python -m bench --smoke          # seconds: 512 digits (random ones without MNIST), 1 epoch
    python -m bench --network 784-100-10 --epochs 5 --no-drift --no-memory
    python -m bench busy             # each shipped config quiet and beside a busy neighbour
    python -m bench threads          # step time by thread count: where threads start to pay
    python -m bench startup          # how long `mlp --help` and `mlp predict` take to start
                                     # (a full run ends with it too, unless --no-startup)

Prints a table and writes everything measured to ``bench/results/<kind>-<time>.json``, with
the load average before and after.  On a machine that other processes keep busy, a
two-thread BLAS mostly waits for its second thread to be scheduled and every engine slows
down several times over: compare the ratios, not the seconds, or use ``--threads 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bench import report
from bench.workload import BATCH, MORE_EPOCHS, NETWORKS, THREADS, WIDEST, Network, network_named
from mlp_cli.errors import MLPError
from mlp_cli.plain import plain

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data, one epoch each (CI)")
    parser.add_argument("--network", action="append", help="only this network (repeatable)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="time more epochs of a network until ours add up to this many seconds"
        f" (at most {MORE_EPOCHS}x --epochs)",
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="BLAS/intra-op threads")
    parser.add_argument("--no-peers", action="store_true", help="time ours only")
    parser.add_argument("--drift-epochs", type=int, default=10, help="0 skips the drift run")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    parser.add_argument(
        "--peer-memory", action="store_true", help="measure the peers' peak memory too"
    )
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up timing")
    parser.add_argument(
        "--out", type=report.results_file, help="JSON file [bench/results/<kind>-<time>.json]"
    )
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--epochs", "--threads")
    if not args.seconds >= 0:  # NaN too
        parser.error(f"--seconds takes a number of seconds, 0 or more, not {args.seconds}")
    if args.out is None:
        kind = "smoke" if args.smoke else "bench"
        args.out = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        args.nets = tuple(map(network_named, args.network)) if args.network else NETWORKS
    except ValueError as exc:
        parser.error(str(exc))
    report.check_results_file(parser, args.out)
    return args


def _print_extras(console: Console, record: dict[str, Any]) -> None:
    for s in record["networks"]:
        jax = {e: row for e, row in s["engines"].items() if "compile_seconds" in row}
        if jax:
            console.print(
                f"{s['network']}: " + "; ".join(report.jax_line(e, r) for e, r in jax.items())
            )
        c = s["matmul_ceiling"]
        ours = s["engines"]["ours"]["matmul_fraction_by_library"]
        libraries = ", ".join(
            f"{lib} {gflops:.1f} GFLOP/s (ours reaches {100 * ours[lib]:.0f}%)"
            for lib, gflops in c["gflops_by_library"].items()
        )
        console.print(
            f"matmul ceiling {s['network']} ({s['matmul_flops_per_step'] / 1e6:.1f} MFLOP per"
            f" step): {libraries}"
        )
    drift = record["drift"]
    if drift is not None:
        wall = ", ".join(f"{w:.2f}" for w in drift["wall_seconds"])
        console.print(
            f"drift {drift['network']}: last / second epoch = {drift['last_over_second']:.3f}"
            f" wall, {drift['cpu_last_over_second']:.3f} CPU (s/epoch: {wall}); float32"
            f" subnormals left: {drift['subnormals_after_run']}"
        )
    for key, m in record["memory"].items():
        if "error" in m:
            console.print(f"peak memory {key}: failed ({m['error']})")
            continue
        epochs = ", ".join(f"{e:,.0f}" for e in m["after_epoch_mb"])
        console.print(
            f"peak memory {key}: {m['peak_mb']:,.0f} MB (after imports"
            f" {m['after_imports_mb']:,.0f}, after loading {m['data_mb']:,.0f} MB of inputs"
            f" {m['after_data_mb']:,.0f},"
            f" after each epoch {epochs})"
        )


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["busy"]:
        from bench import busy

        return busy.main(given[1:])
    if given[:1] == ["threads"]:
        from bench import breakeven

        return breakeven.main(given[1:])
    if given[:1] == ["startup"]:
        from bench import startup

        return startup.main(given[1:])
    args = _parse(argv)
    console = Console(width=max(Console().width, 132))  # the table has a column per peer
    nets: tuple[Network, ...] = args.nets
    epochs, warmup = (1, 0) if args.smoke else (args.epochs, 1)
    seconds = 0.0 if args.smoke else args.seconds
    drift_epochs = min(args.drift_epochs, 3) if args.smoke else args.drift_epochs
    budget = 0.05 if args.smoke else 0.5  # seconds of matmul-ceiling timing per round

    from bench import peers as peer_module

    versions = {} if args.no_peers else peer_module.available()
    peers = [name for name, version in versions.items() if version is not None]
    for name, version in versions.items():
        if version is None:
            hint = escape(peer_module.INSTALL[name])
            console.print(f"[yellow]{name} is not installed: skipped[/] ({hint})")
    # threadpoolctl limits the BLAS libraries already loaded: load the peers' first.
    if "pytorch" in peers:
        import torch

        torch.set_num_threads(args.threads)
    if "sklearn" in peers:
        import sklearn.neural_network  # noqa: F401
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from bench.timing import drift, time_network
    from bench.workload import datasets

    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        data = datasets(nets, args.smoke)
    except MLPError as exc:  # MNIST neither cached nor downloadable
        console.print(plain(exc, "red"))
        return 1
    first = next(iter(data.values()))
    console.print(
        f"data: {first.source}, {len(first.y):,} training images; {args.threads} threads; "
        f"load average {load_before[0]:.1f} on {os.cpu_count()} CPUs"
    )
    libraries = ("numpy", "pytorch") if "pytorch" in peers else ("numpy",)
    summaries: list[dict[str, Any]] = []
    drift_result: dict[str, Any] | None = None
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = threadpool_info()
        for net in nets:
            runners = peer_module.runners(peers, net, data[net.input_size], args.threads)
            names = ", ".join(["ours", *(r.name for r in runners)])
            console.print(f"timing {net.label}: {names} ...")
            try:
                timings = time_network(
                    net, data[net.input_size], runners, epochs, warmup, libraries, budget, seconds
                )
            finally:
                for runner in runners:
                    runner.close()
            details = {runner.name: runner.details() for runner in runners}
            summaries.append(report.summarize(timings, warmup, details))
        if drift_epochs > 1 and WIDEST in nets:
            console.print(f"drift: {drift_epochs} epochs of {WIDEST.label} ...")
            drift_result = report.drift_summary(
                drift(WIDEST, data[WIDEST.input_size], drift_epochs)
            )
    memory: dict[str, dict[str, Any]] = {}
    if not args.no_memory and WIDEST in nets:
        from bench.memory import ENGINES, measure

        measured = [p for p in peers if p in ENGINES] if args.peer_memory else []
        for engine in ["ours", *measured]:
            console.print(f"peak memory: {WIDEST.label}, {engine} ...")
            memory[report.memory_key(WIDEST.label, engine)] = measure(
                WIDEST.name,
                engine,
                1 if args.smoke or engine != "ours" else 2,
                args.threads,
                args.smoke,
            )
    starts: dict[str, Any] | None = None
    if not args.no_startup:
        from bench import startup

        pairs = 3 if args.smoke else startup.PAIRS
        try:
            starts = startup.measure([sys.executable], pairs, None, console)
        except RuntimeError as exc:  # no mlp beside this interpreter: keep what was measured
            console.print(plain(f"startup: failed ({exc})", "red"))
            starts = {"error": str(exc)}

    record: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "smoke": args.smoke,
        "data": first.source,
        "training_images": len(first.y),
        "threads": args.threads,
        "batch_size": BATCH,
        "timed_epochs": epochs,  # at least; each network's "epochs" lists all it timed
        "timed_seconds": seconds,
        "warmup_epochs": warmup,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "blas": blas,
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "peers": versions,
        },
        "seconds": time.perf_counter() - started,
        "networks": summaries,
        "drift": drift_result,
        "memory": memory,
        "startup": starts,
    }
    console.print(report.table(summaries, memory))
    _print_extras(console, record)
    if starts is not None and "error" not in starts:
        console.print(startup.table(starts))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    console.print("results:", plain(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
