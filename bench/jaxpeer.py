"""The JAX peer: the benchmark's network in JAX and optax, in a process of its own.

Two styles train the same network from the same start, each with its own parameters:

- ``scan``: the whole epoch is one compiled call, `jax.lax.scan` over the rows of the
  epoch's permutation (a device array of batch indices), the short last batch in the same
  call; no Python runs per step.
- ``step``: the tutorials' loop, one compiled step called from Python per mini-batch.

Both run one step function: gather the batch from the training set held on the device,
forward (examples as rows, z = a W + b), softmax cross-entropy, its gradient, optax's Adam
with its defaults at lr 1e-3, and the running loss and correct count that
`mlp_cli.train.Trainer` keeps too (summed on the device and read once per epoch).  Weights
start as ours do by default, xavier-uniform with zero biases; the permutation comes from a
NumPy generator, so both styles see the same batches.  Compilation happens ahead of time
(``lower().compile()``), is timed on its own and is in no epoch.

Threads: XLA sizes its CPU thread pool from the CPUs the process may run on, when JAX
starts.  The flags once used to cap it do nothing here: jaxlib 0.10 rejects
``--intra_op_parallelism_threads`` as an unknown XLA flag, and runs as many busy threads
with ``--xla_cpu_multi_thread_eigen=false`` as without.  So the peer runs as
``python -m bench.jaxpeer``, pins itself to ``threads`` CPUs before importing JAX, and
reports per epoch how many of its threads did the work and its CPU time over wall time.

Protocol (`bench.peers.JaxProcess` is the other end): the training set is read from
``X.npy`` and ``y.npy`` in a folder; one JSON line on stdout says the peer is ready (with
compile seconds and versions), then each line ``scan`` or ``step`` on stdin trains one epoch
in that style and is answered by one JSON line; end of input ends the process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from bench.workload import BATCH, LR

STYLES = ("scan", "step")
BUSY_SHARE = 0.05  # a thread that ran for this share of the epoch's CPU time did the work


def pin(threads: int) -> list[int]:
    """Restrict this process to its first ``threads`` allowed CPUs; the CPUs kept.

    The calling thread's affinity is set and every thread started after inherits it, as
    XLA's will; OpenBLAS's workers, started with NumPy, do none of the peer's work."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


def thread_run_ns() -> dict[str, int]:
    """Nanoseconds each of this process's threads has run on a CPU (thread id -> ns)."""
    found: dict[str, int] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            found[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return found


def xavier(layers: tuple[int, ...], seed: int) -> list[tuple[np.ndarray[Any, Any], ...]]:
    """(W (n_in, n_out), b (n_out,)) per layer: W ~ U(+-sqrt(6 / (n_in + n_out))), b = 0."""
    rng = np.random.default_rng(seed)
    params: list[tuple[np.ndarray[Any, Any], ...]] = []
    for n_in, n_out in pairwise(layers):
        limit = np.sqrt(6.0 / (n_in + n_out))
        W = (rng.random((n_in, n_out), dtype=np.float32) * (2 * limit) - limit).astype(np.float32)
        params.append((W, np.zeros(n_out, np.float32)))
    return params


class JaxTrainer:
    """Both styles' state and compiled functions for one network on one training set."""

    def __init__(
        self,
        layers: tuple[int, ...],
        hidden: str,
        X: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        seed: int = 0,
        batch: int = BATCH,
    ) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self.jax: Any = jax  # typed loosely: the peer must type-check without JAX too
        self.batch, self.n = batch, len(y)
        activation: Callable[[Any], Any] = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[hidden]
        optimizer = optax.adam(LR)

        def loss_and_logits(params: Any, xb: Any, yb: Any) -> tuple[Any, Any]:
            a = xb  # (batch, n_in)
            for W, b in params[:-1]:
                a = activation(a @ W + b)  # (batch, hidden)
            W, b = params[-1]
            z = a @ W + b  # (batch, 10)
            return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean(), z

        grad_fn = jax.value_and_grad(loss_and_logits, has_aux=True)

        def step(state: Any, X: Any, y: Any, idx: Any) -> Any:
            params, opt_state, loss_sum, correct = state
            xb, yb = X[idx], y[idx]
            (loss, z), grads = grad_fn(params, xb, yb)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            loss_sum = loss_sum + loss * idx.shape[0]
            correct = correct + jnp.sum(jnp.argmax(z, axis=1) == yb)
            return params, opt_state, loss_sum, correct

        def epoch(state: Any, X: Any, y: Any, full: Any, rest: Any) -> Any:
            def body(state: Any, idx: Any) -> tuple[Any, None]:
                return step(state, X, y, idx), None

            state, _ = jax.lax.scan(body, state, full)  # full: (steps, batch)
            return step(state, X, y, rest) if rest.shape[0] else state

        self.X = jax.device_put(X)  # (n, n_in) float32, on the device once
        self.y = jax.device_put(y.astype(np.int32))  # (n,)
        start = [(jnp.asarray(W), jnp.asarray(b)) for W, b in xavier(layers, seed)]
        self.params = dict.fromkeys(STYLES, start)
        self.opt_state = {style: optimizer.init(start) for style in STYLES}
        self.rng = {style: np.random.default_rng(seed) for style in STYLES}
        self.zero_loss, self.zero_count = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)

        full_steps, rest = divmod(self.n, batch)
        state = self._state("scan")
        perm = np.arange(self.n, dtype=np.int32)
        self.compile_seconds: dict[str, float] = {}
        started = time.perf_counter()
        self.epoch_fn = (
            jax.jit(epoch)
            .lower(state, self.X, self.y, *self._rows(perm, full_steps, rest))
            .compile()
        )
        self.compile_seconds["scan"] = time.perf_counter() - started
        started = time.perf_counter()
        shapes = {batch} | ({rest} if rest else set())
        step_jit = jax.jit(step)
        self.step_fn = {
            size: step_jit.lower(state, self.X, self.y, perm[:size]).compile() for size in shapes
        }
        self.compile_seconds["step"] = time.perf_counter() - started

    def _state(self, style: str) -> tuple[Any, Any, Any, Any]:
        return self.params[style], self.opt_state[style], self.zero_loss, self.zero_count

    def _rows(self, perm: np.ndarray[Any, Any], full_steps: int, rest: int) -> tuple[Any, Any]:
        """The permutation as device arrays: (full_steps, batch) rows and the short rest."""
        cut = full_steps * self.batch
        rows = perm[:cut].reshape(full_steps, self.batch)
        return self.jax.device_put(rows), self.jax.device_put(perm[cut : cut + rest])

    def epoch(self, style: str) -> dict[str, float]:
        """Train one epoch in ``style``; its seconds, mean loss and accuracy."""
        before, cpu_before = thread_run_ns(), time.process_time()
        started = time.perf_counter()
        perm = self.rng[style].permutation(self.n).astype(np.int32)
        state = self._state(style)
        if style == "scan":
            full_steps, rest = divmod(self.n, self.batch)
            state = self.epoch_fn(state, self.X, self.y, *self._rows(perm, full_steps, rest))
        else:
            for start in range(0, self.n, self.batch):
                idx = perm[start : start + self.batch]
                state = self.step_fn[len(idx)](state, self.X, self.y, idx)
        state = self.jax.block_until_ready(state)
        params, opt_state, loss_sum, correct = state
        loss, right = float(loss_sum), int(correct)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        after = thread_run_ns()
        ran = [ns - before.get(tid, 0) for tid, ns in after.items()]
        self.params[style], self.opt_state[style] = params, opt_state
        return {
            "seconds": seconds,
            "loss": loss / self.n,
            "accuracy": right / self.n,
            "cpu_over_wall": cpu / seconds,
            "busy_threads": sum(r >= BUSY_SHARE * sum(ran) for r in ran),
            "threads": len(after),
        }

    def weights(self, style: str) -> list[np.ndarray[Any, Any]]:
        """The parameters of ``style`` as NumPy arrays: W1, b1, W2, b2, ..."""
        return [np.asarray(p) for layer in self.params[style] for p in layer]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jaxpeer", description=__doc__)
    parser.add_argument("folder", type=Path, help="holds X.npy (n, inputs) and y.npy (n,)")
    parser.add_argument("--layers", required=True, help="e.g. 784-100-10")
    parser.add_argument("--hidden", choices=("relu", "sigmoid"), required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cpus = pin(args.threads)  # before JAX starts and sizes its thread pool

    X = np.load(args.folder / "X.npy", allow_pickle=False)
    y = np.load(args.folder / "y.npy", allow_pickle=False)
    layers = tuple(int(n) for n in args.layers.split("-"))
    trainer = JaxTrainer(layers, args.hidden, X, y, args.seed)
    del X, y
    ready = {
        "compile_seconds": trainer.compile_seconds,
        "cpus": cpus,
        "versions": {m: importlib.metadata.version(m) for m in ("jax", "jaxlib", "optax")},
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        style = line.strip()
        if style not in STYLES:
            print(json.dumps({"error": f"unknown style {style!r}; one of {STYLES}"}), flush=True)
            continue
        print(json.dumps(trainer.epoch(style)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
