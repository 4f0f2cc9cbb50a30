"""The reference engines: PyTorch on the CPU and scikit-learn's MLPClassifier.

Each trains the same network as `mlp train` would (`bench.workload`) and times one epoch per
call to ``epoch()``.  PyTorch is written the way its tutorials write it: a plain
``nn.Sequential``, manual batching over a random permutation, ``torch.optim.Adam`` with its
defaults; like `mlp_cli.train.Trainer` it also keeps the running loss and accuracy.
scikit-learn trains one epoch per ``partial_fit`` (solver adam, no L2 penalty).

Both libraries are optional: `available` reports what is installed, and nothing here is
imported by the project itself.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Protocol

import numpy as np

from bench.workload import BATCH, LR, Dataset, Network


class EpochRunner(Protocol):
    name: str

    def epoch(self) -> float:
        """Train one epoch over the whole dataset; the seconds it took."""
        ...


def available() -> dict[str, str | None]:
    """Each peer's version, or None when it is not installed."""
    found: dict[str, str | None] = {}
    for name, module in (("pytorch", "torch"), ("sklearn", "sklearn")):
        if importlib.util.find_spec(module) is None:
            found[name] = None
            continue
        found[name] = str(importlib.import_module(module).__version__)
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


def runners(names: list[str], net: Network, data: Dataset, threads: int) -> list[EpochRunner]:
    """A runner for each peer in ``names`` ("pytorch", "sklearn") on ``net``."""
    found: list[EpochRunner] = []
    if "pytorch" in names:
        found.append(TorchRunner(net, data, threads))
    if "sklearn" in names:
        found.append(SklearnRunner(net, data))
    return found
