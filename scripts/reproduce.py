"""Train every shipped config, score it on the MNIST test set and check it against its target.

Each shipped config (configs/, i.e. mlp_cli/configs/) states the test accuracy it must reach
in a header line

    # expected: >= 98.4% test accuracy

This script trains each one through the real command line (`mlp train`, then
`mlp evaluate --json`), prints a table of expected and measured accuracy, epochs and wall
time, writes ``summary.json`` and ``summary.md`` into the output folder, and exits with 1
if any config misses its target or fails to train (2 for a usage mistake).

    python scripts/reproduce.py                       # everything (over an hour on 2 cores)
    python scripts/reproduce.py --only nielsen-784-30-10 --only mnist-784-800-10
    python scripts/reproduce.py --list                # the configs and targets, no training

MNIST must be in the data cache (`mlp data import` or `mlp data download`); the cache
folder comes from MLP_DATA_DIR as for `mlp` itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mlp_cli.shipped import CONFIGS_DIR, ShippedConfig, shipped_configs

ROOT = Path(__file__).resolve().parent.parent
EXIT_MISSED, EXIT_USAGE = 1, 2

console = Console(stderr=True)


@dataclass
class Outcome:
    """What training and scoring one config gave."""

    config: str
    expected: float | None  # target test accuracy in percent; None when the config has none
    accuracy: float | None = None  # measured test accuracy in percent
    epochs: int = 0  # epochs trained
    best_epoch: int | None = None  # epoch whose weights model.npz holds
    seconds: float = 0.0  # wall time of training and scoring
    run_dir: str = ""
    error: str | None = None  # why training or scoring failed

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.accuracy is not None
            and (self.expected is None or self.accuracy >= self.expected)
        )

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "FAILED"
        if self.expected is None:
            return "no target"
        return "pass" if self.passed else "MISSED"


def mlp(*args: str) -> list[str]:
    """The command line running `mlp` with this interpreter (no PATH needed)."""
    return [sys.executable, "-m", "mlp_cli.cli", *args]


def fresh_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... when that exists: runs are never reused."""
    for n in range(1, 1000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        if not path.exists():
            return path
    raise SystemExit(f"too many runs named {name} in {parent}")


def reproduce(config: ShippedConfig, out: Path, threads: int, overrides: list[str]) -> Outcome:
    """Train ``config`` into a new folder under ``out``, then score it on the test set."""
    name = config.name
    outcome = Outcome(name, config.expected)
    run_dir = fresh_dir(out, name)
    outcome.run_dir = str(run_dir)
    command = mlp("train", "-c", str(config.path), "--quiet", "--json", "--out", str(run_dir))
    command += ["--threads", str(threads)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with (
        console.status(f"{name}: starting") as status,
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        ) as process,
    ):
        assert process.stdout is not None
        assert process.stderr is not None
        for line in process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.append(record)
            val = record.get("val_acc")
            shown = f", validation accuracy {100 * val:.2f}%" if val is not None else ""
            elapsed = time.perf_counter() - started
            status.update(f"{name}: epoch {record['epoch']}{shown} ({elapsed:.0f} s)")
        errors = process.stderr.read()
    outcome.epochs = len(records)
    best = [r["epoch"] for r in records if r.get("best")]
    outcome.best_epoch = best[-1] if best else (records[-1]["epoch"] if records else None)
    if process.returncode != 0:
        outcome.error = errors.strip() or f"mlp train exited with {process.returncode}"
        outcome.seconds = time.perf_counter() - started
        return outcome
    scored = subprocess.run(
        mlp("evaluate", "--model", str(run_dir), "--json"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    outcome.seconds = time.perf_counter() - started
    if scored.returncode != 0:
        outcome.error = scored.stderr.strip() or f"mlp evaluate exited with {scored.returncode}"
        return outcome
    outcome.accuracy = round(100 * float(json.loads(scored.stdout)["accuracy"]), 2)
    return outcome


def _percent(value: float | None, prefix: str = "") -> str:
    return "-" if value is None else f"{prefix}{value:.2f}%"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _epochs(o: Outcome) -> str:
    return f"{o.epochs} (best {o.best_epoch})" if o.best_epoch else str(o.epochs)


def table(outcomes: list[Outcome]) -> Table:
    grid = Table(title="MNIST test accuracy of the shipped configs")
    for column in ("config", "expected", "got", "epochs", "wall time", "result"):
        grid.add_column(column, justify="left" if column == "config" else "right")
    styles = {"pass": "green", "MISSED": "bold red", "FAILED": "bold red", "no target": "yellow"}
    for o in outcomes:
        grid.add_row(
            o.config,
            _percent(o.expected, ">= "),
            _percent(o.accuracy),
            _epochs(o),
            _minutes(o.seconds),
            f"[{styles[o.verdict]}]{o.verdict}[/]",
        )
    return grid


def markdown(outcomes: list[Outcome]) -> str:
    lines = [
        "| config | expected | got | epochs | wall time | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.config} | {_percent(o.expected, '>= ')} | {_percent(o.accuracy)} | "
            f"{_epochs(o)} | {_minutes(o.seconds)} | {o.verdict} |"
        )
    failures = [f"- {o.config}: {o.error}" for o in outcomes if o.error]
    return "\n".join(lines + (["", *failures] if failures else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="train only this config (its file name without .yaml); repeatable",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "reproduce", help="folder for runs and summary"
    )
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads per run (default 2)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key in every config, e.g. training.epochs=1 (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list configs and targets, then exit")
    args = parser.parse_args(argv)

    configs = shipped_configs()
    if args.only:
        known = {c.name: c for c in configs}
        unknown = [name for name in args.only if name not in known]
        if unknown:
            console.print(
                f"[bold red]error:[/] no config named {', '.join(unknown)} in {CONFIGS_DIR}; "
                f"choose from {', '.join(known)}",
                highlight=False,
            )
            return EXIT_USAGE
        configs = [known[name] for name in dict.fromkeys(args.only)]
    if args.list:
        for config in configs:
            print(f"{config.name}: {_percent(config.expected, '>= ')}")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    for config in configs:
        outcome = reproduce(config, args.out, args.threads, args.overrides)
        outcomes.append(outcome)
        console.print(
            f"{outcome.config}: {outcome.verdict}, {_percent(outcome.accuracy)} "
            f"in {_minutes(outcome.seconds)}",
            highlight=False,
        )
    Console().print(table(outcomes))
    for o in outcomes:
        if o.error:
            console.print(f"[bold red]{o.config} failed:[/] {o.error}", highlight=False)
    summary = {
        "overrides": args.overrides,
        "threads": args.threads,
        "results": [asdict(o) | {"result": o.verdict} for o in outcomes],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text(markdown(outcomes), encoding="utf-8")
    console.print(f"summary written to {args.out}/summary.json and summary.md", highlight=False)
    return 0 if all(o.passed for o in outcomes) else EXIT_MISSED


if __name__ == "__main__":
    sys.exit(main())
