"""How much on-the-fly augmentation adds to a training epoch.

Trains a 784-800-10 ReLU network (Adam, lr 1e-3, batches of 128) for one epoch at a time,
alternating between a config without augmentation and the same config with it (A, B, A,
B, ...), so that changes in the machine's load hit both alike, and prints the median epoch
time of each and their ratio. Epoch times are the trainer's own (the training steps only:
no validation, checkpoints or plots).

    MLP_DATA_DIR=/tmp/mlpdata python -m bench.augment_overhead            # 3 rounds
    python -m bench.augment_overhead --rounds 5 --elastic-alpha 34        # with elastic
    python -m bench.augment_overhead --smoke                             # CI: seconds

MNIST must be in the data cache (`mlp data import` or `mlp data download`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.report import check_counts
from mlp_cli.augment import Augmenter
from mlp_cli.config import Config, config_from_dict
from mlp_cli.data import Splits, prepare_data
from mlp_cli.train import Trainer

SMOKE_IMAGES = 2000  # training images per epoch with --smoke


def bench_config(augment: bool, elastic_alpha: float, validation_size: int) -> Config:
    """784-800-10 ReLU, Adam lr 1e-3, batch 128, one epoch; augmentation on or off."""
    return config_from_dict(
        {
            "name": "augment-bench",
            "data": {
                "input_size": 28,
                "validation_size": validation_size,
                "normalize": "standardize",
            },
            "model": {"layers": "784-800-10", "hidden_activation": "relu", "init": "he"},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "training": {"epochs": 1, "batch_size": 128, "seed": 0},
            "augment": {"enabled": augment, "elastic_alpha": elastic_alpha},
        }
    )


def epoch_seconds(cfg: Config, data: Splits, parent: Path, label: str) -> float:
    """Train one epoch in a fresh run directory; the epoch's training time in seconds."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=parent))
    result = Trainer(cfg, run_dir, data).run()
    return float(result.history[-1]["time"])


def augmenter_ms_per_batch(cfg: Config, data: Splits, batches: int = 50) -> float:
    """Milliseconds the augmenter alone takes per batch of 128 (no training)."""
    aug = Augmenter(cfg.augment, cfg.data.input_size, 0.0)
    rng = np.random.default_rng(0)
    batch = np.ascontiguousarray(data.X[data.train_idx[:128]])
    aug(batch.copy(), rng)  # allocate buffers outside the timing
    started = time.perf_counter()
    for _ in range(batches):
        aug(batch.copy(), rng)
    return (time.perf_counter() - started) / batches * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="epochs of each kind (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--elastic-alpha", type=float, default=0.0, help="elastic strength")
    parser.add_argument("--validation-size", type=int, default=10000, help="held-out images")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_IMAGES} images, 1 round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    check_counts(parser, args, "--rounds", "--threads")
    rounds = 1 if args.smoke else args.rounds

    plain = bench_config(False, args.elastic_alpha, args.validation_size)
    augmented = bench_config(True, args.elastic_alpha, args.validation_size)
    data = prepare_data(plain)
    if args.smoke:
        data = dataclasses.replace(
            data, train_idx=data.train_idx[:SMOKE_IMAGES], val_idx=data.val_idx[:500]
        )
    times: dict[str, list[float]] = {"plain": [], "augmented": []}
    with (
        threadpool_limits(limits=args.threads, user_api="blas"),
        tempfile.TemporaryDirectory(prefix="augment-bench-") as tmp,
    ):
        per_batch = augmenter_ms_per_batch(augmented, data)
        for _ in range(rounds):
            for label, cfg in (("plain", plain), ("augmented", augmented)):
                times[label].append(epoch_seconds(cfg, data, Path(tmp), label))
    median = {label: statistics.median(values) for label, values in times.items()}
    ratio = median["augmented"] / median["plain"]
    report: dict[str, Any] = {
        "network": "784-800-10 relu, adam lr 1e-3, batch 128",
        "train_images": len(data.train_idx),
        "threads": args.threads,
        "augment": augmented.augment.model_dump(),
        "epoch_seconds": times,
        "median_seconds": median,
        "ratio": ratio,
        "augmenter_ms_per_batch": per_batch,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    aug = augmented.augment
    print(
        f"784-800-10 ReLU, adam, batch 128, {len(data.train_idx)} images per epoch, "
        f"{args.threads} BLAS thread(s), {rounds} round(s), interleaved"
    )
    print(
        f"augmentation: shift {aug.max_shift:g} px, rotation {aug.max_rotation:g} deg, "
        f"scale {aug.max_scale:g}, elastic alpha {aug.elastic_alpha:g} sigma {aug.elastic_sigma:g}"
    )
    for label in ("plain", "augmented"):
        runs = ", ".join(f"{t:.2f}" for t in times[label])
        print(f"  {label:<10} median {median[label]:7.2f} s per epoch   ({runs})")
    print(f"  ratio      {ratio:7.3f}   (augmented / plain; {100 * (ratio - 1):+.1f}%)")
    print(f"  augmenter alone: {per_batch:.2f} ms per batch of 128")
    return 0


if __name__ == "__main__":
    sys.exit(main())
