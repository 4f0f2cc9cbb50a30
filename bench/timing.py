"""Timing epochs: ours, the peers and the matmul ceiling, interleaved; and the drift run.

Our epochs are timed by `mlp_cli.train.Trainer` itself, the number ``mlp train`` writes to
``metrics.jsonl`` as ``time``: the whole loop over the shuffled training set (gathering
batches, forward, backward, loss and accuracy bookkeeping, the optimizer step), without the
checkpoint written at the end of the epoch.  Between two of our epochs every peer trains one
epoch and the matmul ceiling is timed once, so a burst of load from other processes on a
shared machine falls on all of them alike.  The first epoch of each is a warm-up and not
counted.  A network whose epochs are short gets more of them: a burst lasting a second or
two would otherwise fall on one of three timed epochs of 0.1 s and move their median.

Left out: validation (the benchmark's config has no validation split, and the peers
validate nothing either).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import matmul
from bench.peers import EpochRunner
from bench.workload import MORE_EPOCHS, Dataset, Network, bench_config
from mlp_cli.train import Callbacks, Trainer

OURS = "ours"


@dataclass
class NetworkTimings:
    """Per-epoch seconds of every engine on one network, warm-up epoch first."""

    network: Network
    samples: int
    epochs: dict[str, list[float]] = field(default_factory=dict)
    ceiling: dict[str, list[float]] = field(default_factory=dict)  # library -> s/step

    def median(self, engine: str, warmup: int) -> float:
        counted = self.epochs[engine][warmup:] or self.epochs[engine]
        return float(np.median(counted))

    def ceiling_step(self) -> tuple[str, float]:
        """The faster library's median seconds for one step's matmuls."""
        medians = {lib: float(np.median(times)) for lib, times in self.ceiling.items()}
        best = min(medians, key=lambda lib: medians[lib])
        return best, medians[best]


class _Between(Callbacks):
    """Runs ``between()`` after each of our epochs, keeps the trainer's epoch times, and
    sets ``done`` once they are `enough_epochs`."""

    def __init__(self, between: Callable[[], None], enough: Callable[[list[float]], bool]) -> None:
        self.between, self.enough = between, enough
        self.times: list[float] = []
        self.done = False

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.times.append(float(record["time"]))
        self.between()
        self.done = self.enough(self.times)


def enough_epochs(times: list[float], epochs: int, warmup: int, seconds: float) -> bool:
    """Whether ``times`` (our epochs, warm-up first) time enough: at least ``epochs`` after
    the warm-up, and as many more as it takes them to add up to ``seconds``, up to
    MORE_EPOCHS times ``epochs``."""
    timed = times[warmup:]
    return len(timed) >= epochs and (sum(timed) >= seconds or len(timed) >= MORE_EPOCHS * epochs)


def time_network(
    net: Network,
    data: Dataset,
    peers: list[EpochRunner],
    epochs: int,
    warmup: int,
    libraries: tuple[str, ...],
    budget: float = 0.5,
    seconds: float = 0.0,
) -> NetworkTimings:
    """``warmup + epochs`` interleaved epochs of ours and every peer on ``net``, or more
    (`enough_epochs`) until our timed epochs add up to ``seconds``."""
    timings = NetworkTimings(net, len(data.y))
    for peer in peers:
        timings.epochs[peer.name] = []
    for lib in libraries:
        timings.ceiling[lib] = []

    def between() -> None:
        for peer in peers:
            timings.epochs[peer.name].append(peer.epoch())
        for lib in libraries:
            timings.ceiling[lib].append(matmul.step_seconds(net, lib, budget=budget))

    cfg = bench_config(net, warmup + MORE_EPOCHS * epochs)
    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as tmp:
        trainer = Trainer(cfg, Path(tmp), data.splits(net.input_size))
        callbacks = _Between(between, lambda times: enough_epochs(times, epochs, warmup, seconds))
        trainer.run(callbacks, lambda: callbacks.done)  # asked before every step
    timings.epochs = {OURS: callbacks.times, **timings.epochs}
    return timings


@dataclass
class Drift:
    """Epoch times of one long run of ours, and the subnormal numbers its state holds."""

    network: Network
    wall: list[float]  # trainer's seconds per epoch
    cpu: list[float]  # process CPU seconds per epoch (all threads)
    subnormals: dict[str, int]  # array name -> count of float32 subnormals after the run

    @property
    def last_over_second(self) -> float:
        """The last epoch's wall time over the second's (the first one warms up)."""
        return self.wall[-1] / self.wall[1] if len(self.wall) > 1 else float("nan")

    @property
    def cpu_last_over_second(self) -> float:
        """The same for CPU time, which load from other processes disturbs less."""
        return self.cpu[-1] / self.cpu[1] if len(self.cpu) > 1 else float("nan")


def _subnormals(array: np.ndarray[Any, Any]) -> int:
    tiny = np.finfo(array.dtype).tiny
    return int(np.count_nonzero((array != 0) & (np.abs(array) < tiny)))


def drift(net: Network, data: Dataset, epochs: int) -> Drift:
    """Train ``net`` for ``epochs`` epochs and keep every epoch's time."""
    cpu: list[float] = []

    class _Clock(Callbacks):
        def on_epoch_start(self, epoch: int, steps: int, start_step: int) -> None:
            self.started = time.process_time()

        def on_epoch_end(self, record: dict[str, Any]) -> None:
            cpu.append(time.process_time() - self.started)

    cfg = bench_config(net, epochs)
    with tempfile.TemporaryDirectory(prefix="mlp-bench-") as tmp:
        trainer = Trainer(cfg, Path(tmp), data.splits(net.input_size))
        trainer.run(_Clock())
    state = trainer.optimizer.state_dict()
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "params": trainer.model.params,
        "grads": trainer.model.grads,
    }
    arrays.update({k: v for k, v in state.items() if v.ndim == 1})
    wall = [float(r["time"]) for r in trainer.state.history]
    return Drift(net, wall, cpu, {k: _subnormals(v) for k, v in arrays.items()})
