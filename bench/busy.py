"""``python -m bench busy``: what one busy neighbour costs each shipped config, ours and PyTorch's.

    python -m bench busy              # every config in configs/, two rounds (a few minutes)
    python -m bench busy --smoke      # seconds: a few steps each, to see that it works
    python -m bench busy --config mnist-784-100-10 --rounds 3

Every config in ``configs/`` trains with its default settings (``training.threads: auto``,
resolved as ``mlp train`` resolves it, when the run starts) on the machine as it is
("quiet"), then beside one busy-loop process (``while True: pass``) that the benchmark
starts before the run and kills after it ("busy").  PyTorch, when installed, trains the same
layers, hidden activation and batch size on the same inputs, with its own default threads,
under the same two conditions.  The rounds alternate quiet and busy, so a burst of load from
other processes falls on both; the median of the rounds counts.

Small configs (a step under `mlp_cli.threads.SMALL_STEP_FLOPS`) are timed over a whole epoch
after a warm-up epoch: the number ``mlp train`` prints as ``time``.  The two large ones are
timed over `STEPS` steps after `WARMUP_STEPS`, scaled to an epoch, which keeps the benchmark
within a few minutes.  The goal: busy over quiet no worse for ours than for PyTorch, and at
most `SMALL_GOAL` for the small configs.

Left out of PyTorch's side: the config's optimizer (PyTorch uses Adam, as in
`bench.peers`), dropout and augmentation, which change little of the work threads share.
Prints a table and writes ``bench/results/busy-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from bench import report
from mlp_cli.config import Config, load_config
from mlp_cli.data import Splits
from mlp_cli.plain import plain
from mlp_cli.threads import SMALL_STEP_FLOPS, choose_threads, limit_blas, step_flops
from mlp_cli.train import Callbacks, Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RESULTS = Path(__file__).resolve().parent / "results"
WARMUP_STEPS = 20  # steps before the timed ones in a large config (compiling, caches)
STEPS = 120  # timed steps of a large config
SMALL_GOAL = 1.5  # busy / quiet at most, for the small configs
BUSY_LOOP = "while True: pass"
# The loop as run: it also ends when the benchmark does, even if killed before its cleanup.
_ORPHAN_SAFE_LOOP = (
    "import os\n"
    "parent = os.getppid()\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(1_000_000):\n"
    "        pass\n"
)
CONDITIONS = ("quiet", "busy")


@contextmanager
def busy_neighbour() -> Iterator[None]:
    """One CPU-bound Python process running beside the block, killed when it ends."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SAFE_LOOP])
    try:
        time.sleep(0.5)  # running at full speed before anything is measured
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def condition(name: str) -> Iterator[None]:
    if name == "busy":
        with busy_neighbour():
            yield
    else:
        yield


@dataclass
class Plan:
    """How one config is timed: whole epochs (small configs) or a stretch of steps."""

    path: Path
    cfg: Config
    splits: Splits
    steps_per_epoch: int
    whole_epoch: bool
    timed_steps: int
    warmup_steps: int

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def flops(self) -> int:
        return step_flops(self.cfg.model.layers, self.cfg.training.batch_size)

    @property
    def timed(self) -> str:
        if self.whole_epoch:
            return "a whole epoch after a warm-up epoch"
        return f"{self.timed_steps} steps after {self.warmup_steps}, scaled to an epoch"


class _Trainer(Trainer):
    def write_curves(self) -> None:
        """No learning curves: drawing them is not training and takes a second."""


class _Clock(Callbacks):
    """Times the steps after step ``first`` up to step ``last`` of the first epoch, then
    lets the loop stop."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.started = self.ended = 0.0

    def on_step(self, step: int, loss: float) -> None:
        if step == self.first:
            self.started = time.perf_counter()
        elif step == self.last:
            self.ended = time.perf_counter()

    def done(self) -> bool:
        return self.ended > 0.0


def time_ours(plan: Plan) -> tuple[float, dict[str, Any]]:
    """Seconds per epoch of ours on ``plan``, with the thread choice `mlp train` makes now."""
    cfg = plan.cfg
    choice = choose_threads(cfg.training.threads, cfg.model.layers, cfg.training.batch_size)
    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as tmp, limit_blas(choice.threads):
        if plan.whole_epoch:
            training = cfg.training.model_copy(update={"epochs": 2})
            trainer = _Trainer(
                cfg.model_copy(update={"training": training}), Path(tmp), plan.splits
            )
            seconds = float(trainer.run().history[-1]["time"])
        else:
            clock = _Clock(plan.warmup_steps, plan.warmup_steps + plan.timed_steps)
            trainer = _Trainer(cfg, Path(tmp), plan.splits)
            trainer.run(clock, clock.done)
            per_step = (clock.ended - clock.started) / plan.timed_steps
            seconds = per_step * plan.steps_per_epoch
    return seconds, {"threads": trainer.threads, "reason": choice.reason}


def torch_timer(plan: Plan) -> Callable[[], float]:
    """A function that times PyTorch on ``plan`` as `time_ours` times ours."""
    from bench.peers import TorchRunner
    from bench.workload import Dataset, Network

    cfg = plan.cfg
    hidden: Literal["relu", "sigmoid"] = (
        "sigmoid" if cfg.model.hidden_activation == "sigmoid" else "relu"
    )
    net = Network(tuple(cfg.model.layers), hidden)
    # All 60,000 inputs, but an epoch's worth of steps: the same work as ours.
    data = Dataset(plan.splits.X, plan.splits.y, "mnist")
    runner = TorchRunner(net, data, None, batch=cfg.training.batch_size)

    def timed() -> float:
        if plan.whole_epoch:
            runner.epoch(plan.steps_per_epoch)  # the warm-up epoch
            return runner.epoch(plan.steps_per_epoch)
        runner.epoch(plan.warmup_steps)
        return runner.epoch(plan.timed_steps) / plan.timed_steps * plan.steps_per_epoch

    return timed


def plans(names: list[str] | None, smoke: bool) -> Iterator[Plan]:
    """A `Plan` for each shipped config (or those named), with its training data, one at a
    time: each config's inputs (up to 190 MB) are prepared when its turn comes."""
    from mlp_cli.data import prepare_data

    paths = sorted(CONFIGS.glob("*.yaml"))
    if names:
        paths = [p for p in paths if p.stem in names]
    for path in paths:
        cfg = load_config(path)
        splits = _smoke_splits(cfg) if smoke else prepare_data(cfg)
        steps = math.ceil(len(splits.train_idx) / cfg.training.batch_size)
        small = step_flops(cfg.model.layers, cfg.training.batch_size) < SMALL_STEP_FLOPS
        if smoke:
            yield Plan(path, cfg, splits, steps, False, min(5, steps - 1), 1)
        else:
            yield Plan(path, cfg, splits, steps, small, min(STEPS, steps), WARMUP_STEPS)


def _smoke_splits(cfg: Config) -> Splits:
    """The benchmark's small dataset as the config's inputs, all of it for training."""
    import numpy as np

    from bench.workload import load_digits
    from mlp_cli.preprocess import digits_to_inputs

    images, labels, source = load_digits(smoke=True)
    size = cfg.data.input_size
    n = len(labels)
    preprocessing = {"input_size": size, "source": f"benchmark ({source})", "normalize": None}
    everything, nothing = np.arange(n, dtype=np.int64), np.arange(0, dtype=np.int64)
    return Splits(digits_to_inputs(images, size), labels, everything, nothing, preprocessing, {})


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Timings:
    """Seconds per epoch of every engine under each condition, one entry per round."""

    plan: Plan
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # ours, by condition

    def add(self, engine: str, cond: str, seconds: float) -> None:
        self.seconds.setdefault(engine, {}).setdefault(cond, []).append(seconds)

    def summary(self) -> dict[str, Any]:
        plan = self.plan
        engines: dict[str, Any] = {}
        for engine, by_cond in self.seconds.items():
            medians = {c: statistics.median(by_cond[c]) for c in CONDITIONS if by_cond.get(c)}
            ratio = medians["busy"] / medians["quiet"] if len(medians) == 2 else None
            engines[engine] = {"seconds": by_cond, "median": medians, "busy_over_quiet": ratio}
        small = plan.flops < SMALL_STEP_FLOPS
        ours = engines.get("ours", {}).get("busy_over_quiet")
        torch = engines.get("pytorch", {}).get("busy_over_quiet")
        goals: dict[str, bool | None] = {
            "no_worse_than_pytorch": None if ours is None or torch is None else ours <= torch,
            f"at_most_{SMALL_GOAL}x": None if ours is None or not small else ours <= SMALL_GOAL,
        }
        return {
            "config": plan.name,
            "layers": list(plan.cfg.model.layers),
            "batch_size": plan.cfg.training.batch_size,
            "step_flops": plan.flops,
            "small": small,
            "steps_per_epoch": plan.steps_per_epoch,
            "timed": plan.timed,
            "ours_threads": self.threads,
            "engines": engines,
            "goals": goals,
        }


def measure(plan: Plan, rounds: int, with_torch: bool, console: Console) -> Timings:
    timings = Timings(plan)
    timer = torch_timer(plan) if with_torch else None
    for r in range(rounds):
        # Alternate which condition goes first, so a slow drift of the load spreads evenly.
        order = CONDITIONS if r % 2 == 0 else CONDITIONS[::-1]
        for cond in order:
            with condition(cond):
                seconds, threads = time_ours(plan)
                timings.add("ours", cond, seconds)
                timings.threads.setdefault(cond, []).append(threads)
                if timer is not None:
                    timings.add("pytorch", cond, timer())
        console.print(f"  {plan.name}: round {r + 1}/{rounds} done", highlight=False)
    return timings


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(summaries: list[dict[str, Any]]) -> Table:
    out = Table(
        title="Seconds per epoch, quiet and beside one busy-loop process (median of rounds)",
        caption=f"busy/quiet: the cost of the neighbour (goal: ours no worse than PyTorch, at"
        f" most {SMALL_GOAL}x for small configs). threads: what auto chose, quiet / busy.",
    )
    for column in ("config", "threads", "ours quiet", "ours busy", "ours busy/quiet"):
        out.add_column(column, justify="left" if column == "config" else "right", no_wrap=True)
    for column in ("torch quiet", "torch busy", "torch busy/quiet", "goal"):
        out.add_column(column, justify="right")
    for s in summaries:
        ours = s["engines"]["ours"]
        torch = s["engines"].get("pytorch", {"median": {}, "busy_over_quiet": None})
        chosen = " / ".join(
            ",".join(sorted({str(t["threads"]) for t in s["ours_threads"].get(c, [])}))
            for c in CONDITIONS
        )
        verdicts = [v for v in s["goals"].values() if v is not None]
        goal = "–" if not verdicts else ("met" if all(verdicts) else "missed")
        out.add_row(
            s["config"],
            chosen,
            _fmt(ours["median"].get("quiet"), ".3f"),
            _fmt(ours["median"].get("busy"), ".3f"),
            _fmt(ours["busy_over_quiet"], ".2f"),
            _fmt(torch["median"].get("quiet"), ".3f"),
            _fmt(torch["median"].get("busy"), ".3f"),
            _fmt(torch["busy_over_quiet"], ".2f"),
            goal,
        )
    return out


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench busy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--smoke", action="store_true", help="a few steps each, tiny data")
    parser.add_argument("--config", action="append", help="only this config (name, repeatable)")
    parser.add_argument("--rounds", type=int, default=2, help="quiet/busy rounds per config")
    parser.add_argument("--no-peers", action="store_true", help="time ours only")
    parser.add_argument(
        "--out", type=report.results_file, help="JSON file [bench/results/busy-<time>.json]"
    )
    args = parser.parse_args(argv)
    report.check_counts(parser, args, "--rounds")
    unknown = set(args.config or ()) - {p.stem for p in CONFIGS.glob("*.yaml")}
    if unknown:
        parser.error(f"no config named {', '.join(sorted(unknown))} in {CONFIGS}")
    if args.out is None:
        kind = "busy-smoke" if args.smoke else "busy"
        args.out = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.check_results_file(parser, args.out)
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)
    console = Console(width=max(Console().width, 120))
    from bench.peers import available

    torch_version = None if args.no_peers else available().get("pytorch")
    if not args.no_peers and torch_version is None:
        console.print("[yellow]pytorch is not installed: ours only[/]")
    if torch_version is not None:
        import torch  # loaded before threadpoolctl limits anything (see bench.__main__)

        torch_threads: int | None = torch.get_num_threads()
    else:
        torch_threads = None
    started = time.perf_counter()
    load_before = os.getloadavg()
    console.print(
        f"load average {load_before[0]:.1f} on {os.cpu_count()} CPUs; "
        f"{args.rounds} round(s) per config"
    )
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench busy", *argv]),
        "smoke": args.smoke,
        "rounds": args.rounds,
        "neighbour": BUSY_LOOP,
        "small_goal": SMALL_GOAL,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "python": platform.python_version(),
            "pytorch": torch_version,
            "pytorch_threads": torch_threads,
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        },
        "configs": [],
    }
    for plan in plans(args.config, args.smoke):
        console.print(f"timing {plan.name} ({plan.timed}) ...", highlight=False)
        timings = measure(plan, args.rounds, torch_version is not None, console)
        record["configs"].append(timings.summary())
        # Written after every config: a run cut short still leaves what it measured.
        record["machine"]["load_average_after"] = os.getloadavg()
        record["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    console.print(table(record["configs"]))
    console.print("results:", plain(out))
    return 0
