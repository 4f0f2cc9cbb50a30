"""Turning the measurements into the benchmark's table and its JSON record.

Every number in the table is derived here from raw per-epoch seconds: medians after the
warm-up epoch, samples per second, ratios to PyTorch, scikit-learn and JAX (below 1 means
faster than the peer; JAX twice, its whole-epoch scan and its per-step loop), achieved
matmul GFLOP/s and its fraction of the measured ceiling.
The JSON file keeps the raw timings too, with the machine's load and library versions, so a
result can be judged later.

Left out: pass/fail verdicts on absolute times, which depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from bench.timing import OURS, Drift, NetworkTimings
from bench.workload import BATCH
from mlp_cli.errors import MLPError
from mlp_cli.outputs import check_folder, check_replaceable
from mlp_cli.plain import shown

RECORD_MB = 64  # the largest results file read to see whether it is an earlier record
PEER_COLUMNS = (
    ("pytorch", "÷ torch"),
    ("sklearn", "÷ sklearn"),
    ("jax-scan", "÷ jax"),
    ("jax-step", "÷ jax\nstep"),
)


def summarize(
    t: NetworkTimings, warmup: int, details: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Medians, ratios and matmul fractions of one network, as plain data; ``details``
    (engine -> fields, such as the JAX peer's compile seconds) join their engine's row."""
    net = t.network
    steps = math.ceil(t.samples / BATCH)
    flops = net.flops_per_step() * steps
    library, ceiling_step = t.ceiling_step()
    by_library = {lib: float(np.median(times)) for lib, times in t.ceiling.items()}
    engines: dict[str, Any] = {}
    for engine in t.epochs:
        seconds = t.median(engine, warmup)
        row: dict[str, Any] = {
            "seconds_per_epoch": seconds,
            "samples_per_second": t.samples / seconds,
            "gflops": flops / seconds / 1e9,
            "matmul_fraction": ceiling_step * steps / seconds,
            "matmul_fraction_by_library": {
                lib: step * steps / seconds for lib, step in by_library.items()
            },
            "epochs": t.epochs[engine],
        }
        for peer, _ in PEER_COLUMNS:
            if peer in t.epochs:
                row[f"ratio_to_{peer}"] = seconds / t.median(peer, warmup)
        row.update((details or {}).get(engine, {}))
        engines[engine] = row
    return {
        "network": net.label,
        "layers": list(net.layers),
        "parameters": net.parameters,
        "samples": t.samples,
        "steps_per_epoch": steps,
        "matmul_flops_per_step": net.flops_per_step(),
        "matmul_ceiling": {
            "library": library,
            "seconds_per_step": ceiling_step,
            "gflops": net.flops_per_step() / ceiling_step / 1e9,
            "gflops_by_library": {
                lib: net.flops_per_step() / step / 1e9 for lib, step in by_library.items()
            },
            "seconds_per_step_each_round": t.ceiling,
        },
        "engines": engines,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def table(summaries: list[dict[str, Any]], memory: dict[str, dict[str, Any]]) -> Table:
    """The rich table: one row per network and engine."""
    out = Table(
        title="Training epochs (median after warm-up), batch 128, Adam, float32",
        caption="÷ peer: seconds per epoch over the peer's (below 1: faster); ÷ jax: JAX's"
        " whole epoch as one compiled scan, ÷ jax step: its compiled step called per batch,"
        " neither counting compile time.  Matmul ceiling:"
        " the step's matrix products alone, in the fastest of NumPy's BLAS and PyTorch, each"
        " in two memory layouts.",
    )
    out.add_column("network")
    out.add_column("engine")
    for name in ("s/epoch", "samples/s", *(c for _, c in PEER_COLUMNS)):
        out.add_column(name, justify="right")
    out.add_column("GFLOP/s", justify="right")
    out.add_column("of matmul\nceiling", justify="right")
    out.add_column("peak\nmemory", justify="right")
    for s in summaries:
        first = True
        for engine, row in s["engines"].items():
            peak = memory.get(memory_key(s["network"], engine), {}).get("peak_mb")
            cells = [
                s["network"] if first else "",
                engine,
                _fmt(row["seconds_per_epoch"], ".3f"),
                _fmt(row["samples_per_second"], ",.0f"),
                *(_fmt(row.get(f"ratio_to_{peer}"), ".2f") for peer, _ in PEER_COLUMNS),
                _fmt(row["gflops"], ".1f"),
                _fmt(100 * row["matmul_fraction"], ".0f") + "%",
                "–" if peak is None else f"{peak:,.0f} MB",
            ]
            out.add_row(*cells, style="bold" if engine == OURS else None)
            first = False
        out.add_section()
    return out


def jax_line(engine: str, row: dict[str, Any]) -> str:
    """One JAX style's compile time and how many threads did its work, in words."""
    counted = row["epoch_details"][1:] or row["epoch_details"]
    busy = sorted({int(e["busy_threads"]) for e in counted})
    cpu = float(np.median([e["cpu_over_wall"] for e in counted]))
    return (
        f"{engine} compiled in {row['compile_seconds']:.2f} s, ran on CPUs"
        f" {','.join(map(str, row['cpus']))} with {'/'.join(map(str, busy))} busy threads"
        f" (CPU/wall {cpu:.2f})"
    )


def is_record(path: Path) -> bool:
    """Whether ``path`` holds a JSON record that this benchmark wrote (up to `RECORD_MB`)."""
    try:
        if path.stat().st_size > RECORD_MB * 2**20:
            return False
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and str(record.get("command")).startswith("python -m bench")


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace, *options: str) -> None:
    """Stop with ``parser``'s usage error if one of ``options`` (each counting something the
    benchmark does) is below 1: a count of 0 would time nothing and report it as a result."""
    for option in options:
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        if value < 1:
            parser.error(f"{option} takes a whole number of at least 1, not {value}")


def results_file(text: str) -> Path:
    """The path given to ``--out`` (argparse's ``type``): an empty one names no file, though
    ``Path("")`` is the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no file; give a JSON file's path")
    return Path(text)


def check_results_file(parser: argparse.ArgumentParser, out: Path) -> None:
    """Stop with ``parser``'s usage error if the JSON record cannot be written to ``out``, or
    would replace a file that is not an earlier record: judged before the timing, whose
    results would otherwise be lost at its end."""
    try:
        check_replaceable(out, "results file")
        check_folder(out.parent, "results folder")
    except MLPError as exc:
        parser.error(str(exc))
    if out.exists() and not is_record(out):
        parser.error(
            f"cannot write the results file '{shown(out)}': it exists and is not a record of"
            " python -m bench, which replaces only its own; choose another path"
        )


def memory_key(network: str, engine: str) -> str:
    """How `table` finds a memory measurement: network label and engine."""
    return f"{network} | {engine}"


def drift_summary(d: Drift) -> dict[str, Any]:
    return {
        "network": d.network.label,
        "wall_seconds": d.wall,
        "cpu_seconds": d.cpu,
        "last_over_second": d.last_over_second,
        "cpu_last_over_second": d.cpu_last_over_second,
        "subnormals_after_run": d.subnormals,
    }
