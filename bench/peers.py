"""The reference engines: PyTorch on the CPU, scikit-learn's MLPClassifier and JAX.

Each trains the same network as `mlp train` would (`bench.workload`) and times one epoch per
call to ``epoch()``.  PyTorch is written the way its tutorials write it: a plain
``nn.Sequential``, manual batching over a random permutation, ``torch.optim.Adam`` with its
defaults; like `mlp_cli.train.Trainer` it also keeps the running loss and accuracy.
scikit-learn trains one epoch per ``partial_fit`` (solver adam, no L2 penalty).  JAX (with
optax's Adam) runs in a process of its own, `bench.jaxpeer`, in two styles: the whole epoch
as one compiled `jax.lax.scan` ("jax-scan") and a compiled step called per mini-batch
("jax-step"); its compile time is reported beside the epochs, not in them.

All three are optional: `available` reports what is installed, and nothing here is imported
by the project itself.  To install them in the project's virtualenv:

    pip install torch           # its CPU build: the default Linux wheel brings CUDA's GBs
    pip install scikit-learn
    pip install -e '.[bench]'   # jax, jaxlib (CPU) and optax
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from bench.workload import BATCH, LR, Dataset, Network

ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.jaxpeer` finds bench
# How to install each peer, for the note that says it was skipped.
INSTALL = {
    "pytorch": "pip install torch, its CPU build",
    "sklearn": "pip install scikit-learn",
    "jax": "pip install -e '.[bench]' installs jax and optax",
}


class EpochRunner(Protocol):
    name: str

    def epoch(self) -> float:
        """Train one epoch over the whole dataset; the seconds it took."""
        ...

    def details(self) -> dict[str, Any]:
        """What the JSON record keeps about this engine beside its epoch times."""
        ...

    def close(self) -> None:
        """Release what the runner holds (a process, files)."""
        ...


def available() -> dict[str, str | None]:
    """Each peer's version, or None when it is not installed."""
    found: dict[str, str | None] = {}
    for name, module in (("pytorch", "torch"), ("sklearn", "sklearn")):
        if importlib.util.find_spec(module) is None:
            found[name] = None
            continue
        found[name] = str(importlib.import_module(module).__version__)
    # Not imported here: JAX starts in its own process, pinned to the benchmark's CPUs.
    jax_parts = ("jax", "jaxlib", "optax")
    if all(importlib.util.find_spec(module) is not None for module in jax_parts):
        found["jax"] = ", ".join(f"{m} {importlib.metadata.version(m)}" for m in jax_parts)
    else:
        found["jax"] = None
    return found


class TorchRunner:
    """PyTorch CPU training of ``net``: nn.Sequential, index_select batches, torch Adam."""

    name = "pytorch"

    def __init__(
        self, net: Network, data: Dataset, threads: int | None, seed: int = 0, batch: int = BATCH
    ) -> None:
        import torch
        from torch import nn

        if threads is not None:  # None: PyTorch's own default
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        activation = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}[net.hidden]
        self.batch = batch
        layers: list[nn.Module] = []
        pairs = list(zip(net.layers[:-1], net.layers[1:], strict=True))
        for l, (n_in, n_out) in enumerate(pairs):
            layers.append(nn.Linear(n_in, n_out))
            if l < len(pairs) - 1:
                layers.append(activation())
        self.torch = torch
        self.model = nn.Sequential(*layers)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.loss_fn = nn.CrossEntropyLoss()
        self.X = torch.from_numpy(data.X)  # shares the NumPy buffer: no copy
        self.y = torch.from_numpy(data.y.astype(np.int64))
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self, steps: int | None = None) -> float:
        """Train one epoch, or its first ``steps`` batches; the seconds it took."""
        torch, model, optimizer, batch = self.torch, self.model, self.optimizer, self.batch
        started = time.perf_counter()
        n = self.X.shape[0]
        perm = torch.randperm(n, generator=self.generator)
        loss_sum, correct = 0.0, 0
        stop = n if steps is None else min(n, steps * batch)
        for start in range(0, stop, batch):
            idx = perm[start : start + batch]
            xb, yb = self.X.index_select(0, idx), self.y.index_select(0, idx)
            out = model(xb)
            loss = self.loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(dim=1) == yb).sum())
        return time.perf_counter() - started

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class SklearnRunner:
    """scikit-learn's MLPClassifier, one ``partial_fit`` (one epoch) per call."""

    name = "sklearn"

    def __init__(self, net: Network, data: Dataset, seed: int = 0) -> None:
        from sklearn.neural_network import MLPClassifier

        self.model: Any = MLPClassifier(
            hidden_layer_sizes=net.layers[1:-1],
            activation={"relu": "relu", "sigmoid": "logistic"}[net.hidden],
            solver="adam",
            alpha=0.0,
            batch_size=BATCH,
            learning_rate_init=LR,
            shuffle=True,
            random_state=seed,
        )
        self.X, self.y = data.X, data.y
        self.classes = np.arange(10)

    def epoch(self) -> float:
        started = time.perf_counter()
        self.model.partial_fit(self.X, self.y, classes=self.classes)
        return time.perf_counter() - started

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class PeerError(RuntimeError):
    """A peer's process failed; the message ends with what it wrote to stderr."""


class JaxProcess:
    """`bench.jaxpeer` training ``net`` in a child process pinned to ``threads`` CPUs.

    The training set goes to the child as two ``.npy`` files in a temporary folder; each
    `epoch` call is one line to the child and one JSON line back.
    """

    def __init__(self, net: Network, data: Dataset, threads: int, seed: int = 0) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="mlp-bench-jax-")
        folder = Path(self.folder.name)
        np.save(folder / "X.npy", data.X, allow_pickle=False)
        np.save(folder / "y.npy", data.y, allow_pickle=False)
        self.stderr: IO[str] = (folder / "stderr.txt").open("w+")
        command = [
            *(sys.executable, "-m", "bench.jaxpeer", str(folder)),
            *("--layers", net.name, "--hidden", net.hidden),
            *("--threads", str(threads), "--seed", str(seed)),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=ROOT,
        )
        ready = self._reply()
        self.compile_seconds: dict[str, float] = ready["compile_seconds"]
        self.cpus: list[int] = ready["cpus"]
        self.versions: dict[str, str] = ready["versions"]

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.stderr.seek(0)
            said = self.stderr.read().strip().splitlines()[-5:]
            raise PeerError(
                f"the JAX peer stopped (exit code {self.process.returncode}): "
                + (" | ".join(said) or "it said nothing")
            )
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise PeerError(f"the JAX peer: {reply['error']}")
        return reply

    def epoch(self, style: str) -> dict[str, Any]:
        """One epoch in ``style`` ("scan" or "step"): seconds, loss, accuracy, threads."""
        assert self.process.stdin is not None
        self.process.stdin.write(style + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait()
        self.stderr.close()
        self.folder.cleanup()


class JaxRunner:
    """One style of the JAX peer: ``scan`` (whole epoch compiled) or ``step`` (per batch)."""

    def __init__(self, process: JaxProcess, style: str) -> None:
        self.process, self.style = process, style
        self.name = f"jax-{style}"
        self.epochs: list[dict[str, Any]] = []

    def epoch(self) -> float:
        reply = self.process.epoch(self.style)
        self.epochs.append(reply)
        return float(reply["seconds"])

    def details(self) -> dict[str, Any]:
        """Compile seconds, the CPUs the peer was pinned to, and per epoch its loss,
        accuracy, CPU over wall time and how many of its threads did the work."""
        return {
            "compile_seconds": self.process.compile_seconds[self.style],
            "cpus": self.process.cpus,
            "versions": self.process.versions,
            "epoch_details": self.epochs,
        }

    def close(self) -> None:
        self.process.close()


def runners(names: list[str], net: Network, data: Dataset, threads: int) -> list[EpochRunner]:
    """A runner for each peer in ``names`` ("pytorch", "sklearn", "jax": two) on ``net``."""
    found: list[EpochRunner] = []
    if "pytorch" in names:
        found.append(TorchRunner(net, data, threads))
    if "sklearn" in names:
        found.append(SklearnRunner(net, data))
    if "jax" in names:
        process = JaxProcess(net, data, threads)
        found.extend(JaxRunner(process, style) for style in ("scan", "step"))
    return found
