"""``python -m bench startup``: how long `mlp` takes to start, against ``import numpy``.

    python -m bench startup                     # 21 rounds, this interpreter's mlp
    python -m bench startup --pairs 5           # a quick look
    python -m bench startup --python A/.venv/bin/python --python B/.venv/bin/python
    python -m bench startup --model runs/latest # predict with a trained model

Each command runs as a user runs it: a new process of the interpreter running its ``mlp``
script (next to it in the venv), output to /dev/null.  The baseline is
``python -c "import numpy"`` in the same interpreter: the least a NumPy program pays to
start.  Each round runs the baseline and every command once, in an order that rotates from
round to round, so a burst of load from other processes falls on a round's runs alike; a
command's figure is the median over rounds of its time divided by the same round's baseline
time (and, for reference, its median in milliseconds); the same of CPU time (user and
system), which the load of other processes changes less than wall time.  With several
``--python``, each interpreter's commands are paired with its own baseline, in the same
rounds.

The last command, "its libraries alone", imports what ``mlp predict IMAGE`` imports of other
packages and the standard library (`libraries_of`) in one process, without mlp_cli: the part
of the command's time that mlp's own modules and work add to is the floor that only using
fewer or other libraries can lower.

Then each command runs under ``python -X importtime`` (`IMPORTTIME_RUNS` times; the run with
the median total counts) and the imports that cost most are listed: per package, the self
times of its modules summed; and the single modules with the largest cumulative times.

Every process runs from compiled bytecode, as an installed program does (pip compiles a
package's modules when it installs them): ``PYTHONDONTWRITEBYTECODE`` is dropped and
``PYTHONPYCACHEPREFIX`` points at a temporary folder, which the first, untimed run of each
command fills, so nothing is written beside the sources.  ``--as-is`` keeps the environment
as it is instead.

Without ``--model``, ``mlp predict`` reads a 784-100-10 network with random weights (its
forward pass and file cost what a trained one's do) and a 280x280 PNG of a drawn "7".
Writes ``bench/results/startup-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import report
from mlp_cli.plain import plain

RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = 21  # rounds: each command's time paired with the baseline's in the same round
IMPORTTIME_RUNS = 3
TOP = 10  # packages and modules listed per command
BASELINE = "python -c 'import numpy'"
# `mlp predict IMAGE`'s imports of other packages, alone (see `libraries_of`).
LIBRARIES = "its libraries alone"
# The goals: a command's time over the baseline's, at most.
GOALS = {"mlp --help": 1.3, "mlp predict IMAGE": 2.0}


@dataclass(frozen=True)
class Command:
    """One command line to time: ``label`` as printed, ``argv`` as run."""

    label: str
    argv: list[str]


def commands(python: str, image: Path, model: Path) -> list[Command]:
    """The baseline, then `mlp`'s commands, all in the interpreter ``python``."""
    mlp = str(Path(python).parent / "mlp")
    return [
        Command(BASELINE, [python, "-c", "import numpy"]),
        Command("mlp --help", [python, mlp, "--help"]),
        Command("mlp predict --help", [python, mlp, "predict", "--help"]),
        Command("mlp predict IMAGE", [python, mlp, "predict", str(image), "--model", str(model)]),
    ]


def compiled_env(cache: Path) -> dict[str, str]:
    """This process's environment, with bytecode written to and read from ``cache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str], env: dict[str, str] | None) -> tuple[float, float]:
    """Seconds of wall time and of CPU time (user and system) ``argv`` takes to run to its
    end, its output discarded."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}")
    return seconds, _children_cpu() - cpu


def check_runs(argv: list[str], env: dict[str, str] | None) -> None:
    """Run ``argv`` once, untimed (it also fills the file cache and writes .pyc files), and
    stop with its error output if it fails: a failing command would time its error path."""
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr.strip()}"
        )


def paired_times(
    groups: list[list[Command]], pairs: int, env: dict[str, str] | None
) -> list[list[list[tuple[float, float]]]]:
    """``times[g][c][r]``: wall and CPU seconds of command ``c`` of group ``g`` in round ``r``.

    Every round runs every command of every group once; the order rotates by one each round
    so that no command always runs first (or right after the same neighbour).
    """
    flat = [(g, c) for g, group in enumerate(groups) for c in range(len(group))]
    times: list[list[list[tuple[float, float]]]] = [[[] for _ in group] for group in groups]
    for r in range(pairs):
        shift = r % len(flat)
        for g, c in flat[shift:] + flat[:shift]:
            times[g][c].append(run_once(groups[g][c].argv, env))
    return times


def parse_importtime(stderr: str) -> list[dict[str, Any]]:
    """The lines of ``python -X importtime``'s report: module, self and cumulative
    microseconds, and depth (0: imported by the program itself)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        if not self_us.strip().isdigit():  # the header line
            continue
        stripped = name.lstrip()
        rows.append(
            {
                "module": stripped.strip(),
                "self_us": int(self_us),
                "cumulative_us": int(cumulative_us),
                "depth": (len(name) - len(stripped) - 1) // 2,
            }
        )
    return rows


def importtime_rows(argv: list[str], env: dict[str, str] | None) -> list[dict[str, Any]]:
    """The `parse_importtime` rows of one run of ``argv`` under ``python -X importtime``."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    return parse_importtime(done.stderr)


def _ours(module: str) -> bool:
    return module == "mlp_cli" or module.startswith("mlp_cli.")


def libraries_of(rows: list[dict[str, Any]]) -> list[str]:
    """The modules outside mlp_cli that a command imports itself (`parse_importtime`'s
    ``rows`` at depth 0: the program, or a library importing at run time) or that mlp_cli's
    modules import directly, in the order their imports ended.  Importing these alone costs
    what mlp cannot save but by doing without those libraries."""
    enclosing: dict[int, str] = {}  # by depth: the import the rows after it (reversed) are in
    found = []
    for row in reversed(rows):  # an import's row follows those of the imports it makes
        depth, module = row["depth"], row["module"]
        parent = enclosing.get(depth - 1) if depth else None
        enclosing[depth] = module
        if not _ours(module) and (depth == 0 or (parent is not None and _ours(parent))):
            found.append(module)
    return found[::-1]


def libraries_command(python: str, predict: Command, env: dict[str, str] | None) -> Command:
    """The imports of `predict` (`libraries_of` them) in one process of ``python``, as a
    command to time beside it: the floor that mlp's own modules and work stand on."""
    modules = libraries_of(importtime_rows(predict.argv, env))
    # Ended as `mlp_cli.cli.main` ends a command, with the objects frozen: the collection
    # Python's exit would make of them is a cost mlp saves without doing without a library.
    imports = f"import gc, importlib\nfor name in {modules!r}:\n    importlib.import_module(name)"
    script = f"{imports}\ngc.freeze()"
    return Command(LIBRARIES, [python, "-c", script])


def importtime(
    argv: list[str], env: dict[str, str] | None, runs: int = IMPORTTIME_RUNS
) -> dict[str, Any]:
    """What ``argv``'s imports cost: the total, per package, and the largest single imports
    (the run with the median total of ``runs``)."""
    reports = []
    for _ in range(runs):
        rows = importtime_rows(argv, env)
        reports.append((sum(row["self_us"] for row in rows), rows))
    reports.sort(key=lambda report: report[0])
    total_us, rows = reports[len(reports) // 2]
    packages: dict[str, int] = {}
    for row in rows:
        package = row["module"].split(".")[0]
        packages[package] = packages.get(package, 0) + row["self_us"]
    by_package = sorted(packages.items(), key=lambda item: -item[1])
    by_cumulative = sorted(rows, key=lambda row: -row["cumulative_us"])
    return {
        "total_ms": total_us / 1000,
        "modules": len(rows),
        "packages": [{"package": p, "self_ms": us / 1000} for p, us in by_package],
        "top_cumulative": [
            {"module": row["module"], "cumulative_ms": row["cumulative_us"] / 1000}
            for row in by_cumulative[:TOP]
        ],
        "imported": sorted(row["module"] for row in rows),
    }


def _ratios(seconds: list[float], baseline: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of ``seconds`` over the same round's ``baseline``, and the
    quartiles."""
    ratios = [t / b for t, b in zip(seconds, baseline, strict=True)]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return statistics.median(ratios), [quartiles[0], quartiles[2]]


def summarize(group: list[Command], times: list[list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """Per command: median milliseconds, and the median and quartiles over rounds of its time
    over the baseline's (the group's first command); of wall time, and of CPU time, which
    other processes' load changes less."""
    base_wall, base_cpu = (list(column) for column in zip(*times[0], strict=True))
    out = []
    for command, runs in zip(group, times, strict=True):
        wall, cpu = (list(column) for column in zip(*runs, strict=True))
        ratio, quartiles = _ratios(wall, base_wall)
        cpu_ratio, cpu_quartiles = _ratios(cpu, base_cpu)
        out.append(
            {
                "command": command.label,
                "argv": command.argv,
                "median_ms": 1000 * statistics.median(wall),
                "ratio_to_baseline": ratio,
                "ratio_quartiles": quartiles,
                "median_cpu_ms": 1000 * statistics.median(cpu),
                "cpu_ratio_to_baseline": cpu_ratio,
                "cpu_ratio_quartiles": cpu_quartiles,
                "goal": GOALS.get(command.label),
                "seconds": wall,
                "cpu_seconds": cpu,
            }
        )
    return out


def measure(
    pythons: list[str], pairs: int, model: Path | None, console: Console, as_is: bool = False
) -> dict[str, Any]:
    """Time the commands in each interpreter of ``pythons``, paired with its baseline, then
    list their imports; ``as_is``: in this process's environment, else from bytecode cached
    in a temporary folder."""
    from bench.serve import canvas_png, random_model

    with tempfile.TemporaryDirectory(prefix="mlp-startup-") as scratch:
        image = Path(scratch) / "seven.png"
        image.write_bytes(canvas_png())
        chosen = model or random_model(Path(scratch) / "model.npz", [784, 100, 10])
        env = None if as_is else compiled_env(Path(scratch) / "bytecode")
        groups = [commands(python, image, chosen) for python in pythons]
        for python, group in zip(pythons, groups, strict=True):
            for command in group:
                check_runs(command.argv, env)
            group.append(libraries_command(python, group[-1], env))
            check_runs(group[-1].argv, env)
        console.print(
            f"startup: {pairs} rounds of {sum(map(len, groups))} commands ..."
            f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        times = paired_times(groups, pairs, env)
        results = []
        for python, group, group_times in zip(pythons, groups, times, strict=True):
            console.print(plain(f"importtime: {python} ..."))
            rows = summarize(group, group_times)
            for row, command in zip(rows, group, strict=True):
                row["importtime"] = importtime(command.argv, env)
            results.append({"python": python, "commands": rows})
    return {
        "pairs": pairs,
        "bytecode": "as the environment has it" if as_is else "compiled, cached",
        "model": str(model) if model else "random 784-100-10",
        "results": results,
    }


def table(record: dict[str, Any]) -> Table:
    """One row per interpreter and command: milliseconds, ratio to the baseline, goal."""
    out = Table(
        title=f"Start-up, median of {record['pairs']} rounds",
        caption=f"÷ baseline: the command's wall time over {BASELINE}'s in the same round"
        " (median, and quartiles); CPU: the same of user and system CPU time",
    )
    columns = ("python", "command", "ms", "÷ baseline", "quartiles", "goal", "CPU ÷", "imports ms")
    for name in columns:
        out.add_column(name, justify="left" if name in ("python", "command") else "right")
    for result in record["results"]:
        first = True
        for row in result["commands"]:
            goal = row["goal"]
            met = goal is None or row["ratio_to_baseline"] <= goal
            low, high = row["ratio_quartiles"]
            out.add_row(
                plain(result["python"]) if first else "",
                row["command"],
                f"{row['median_ms']:.0f}",
                f"{row['ratio_to_baseline']:.2f}",
                f"{low:.2f}-{high:.2f}",
                "" if goal is None else f"≤ {goal:.1f}" + ("" if met else " (missed)"),
                f"{row['cpu_ratio_to_baseline']:.2f}",
                f"{row['importtime']['total_ms']:.0f}",
            )
            first = False
        out.add_section()
    return out


def print_imports(console: Console, record: dict[str, Any]) -> None:
    """Each command's costliest packages and modules beyond the baseline's."""
    for result in record["results"]:
        rows = result["commands"]
        numpy_only = set(rows[0]["importtime"]["imported"])
        for row in rows[1:]:
            report = row["importtime"]
            packages = ", ".join(
                f"{p['package']} {p['self_ms']:.0f}" for p in report["packages"][:TOP]
            )
            beyond = [m for m in report["top_cumulative"] if m["module"] not in numpy_only]
            modules = ", ".join(f"{m['module']} {m['cumulative_ms']:.0f}" for m in beyond)
            console.print(
                plain(
                    f"{row['command']} ({result['python']}): {report['modules']} modules,"
                    f" {report['total_ms']:.0f} ms of imports\n  by package (self ms): {packages}"
                    f"\n  largest imports beyond the baseline's (cumulative ms): {modules}"
                ),
                soft_wrap=True,
            )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench startup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pairs", type=int, default=PAIRS, help="rounds of paired runs")
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter whose mlp to time (repeatable) [this one]",
    )
    parser.add_argument("--model", type=Path, help="model or run folder [random 784-100-10]")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="keep the environment's bytecode settings (e.g. PYTHONDONTWRITEBYTECODE)",
    )
    parser.add_argument(
        "--out", type=report.results_file, help="JSON file [bench/results/startup-<time>.json]"
    )
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--pairs")
    for python in args.python or []:
        if not os.access(python, os.X_OK) or not os.access(Path(python).parent / "mlp", os.X_OK):
            parser.error(
                f"--python {python}: expected an interpreter with an installed mlp beside it "
                "(a virtualenv's bin/python)"
            )
    if args.model is not None and not args.model.exists():
        parser.error(f"--model {args.model}: no such model file or run folder")
    if args.out is None:
        args.out = RESULTS / f"startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.check_results_file(parser, args.out)
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)
    console = Console(width=max(Console().width, 120))
    load_before = os.getloadavg()
    started = time.perf_counter()
    try:
        measured = measure(
            args.python or [sys.executable], args.pairs, args.model, console, args.as_is
        )
    except RuntimeError as exc:  # a command failed; its untimed first run tries --model's file
        print(f"python -m bench startup: error: {exc}", file=sys.stderr)
        return 2
    record: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench startup", *argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "python": platform.python_version(),
        },
        **measured,
    }
    record["machine"]["load_average_after"] = os.getloadavg()
    record["seconds"] = time.perf_counter() - started
    console.print(table(record))
    print_imports(console, record)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print("results:", plain(out))
    return 0
