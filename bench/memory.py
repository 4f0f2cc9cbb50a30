"""Peak memory of a training run, measured in a fresh process.

`measure` starts ``python -m bench.memory`` with the run's settings; that process imports
the engine, loads the data, trains, and prints the high-water mark of its resident memory
(VmHWM, the peak resident set size) as JSON at three moments: after the imports (the
interpreter and libraries), after the data is loaded, and after each epoch.  Peaks that
stop growing after the first epoch show that nothing (in particular, not the training set)
is copied per epoch.

For our engine the process runs what ``mlp train`` runs: `mlp_cli.data.prepare_data`,
`mlp_cli.train.start` and `Trainer.run`, with the benchmark's config (smoke mode: the
benchmark's small dataset instead of `prepare_data`).  Left out: how the peak splits into
NumPy arrays and everything else (tracemalloc could tell, at a cost in speed), and memory
reserved but never touched, which is not resident.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ENGINES = ("ours", "pytorch", "sklearn")


def _peak_mb() -> float:
    # Linux carries ru_maxrss across exec, so a child started by a large parent would report
    # the parent's peak; VmHWM belongs to this process's own memory map.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux (bytes on macOS, where this reads 1024 times high).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(network: str, engine: str, epochs: int, threads: int, smoke: bool) -> dict[str, Any]:
    """Peak memory of ``epochs`` epochs of ``engine`` on ``network``, from a fresh process."""
    command = [sys.executable, "-m", "bench.memory", network, engine, str(epochs), str(threads)]
    if smoke:
        command.append("--smoke")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _train(network: str, engine: str, epochs: int, threads: int, smoke: bool) -> dict[str, Any]:
    from bench.workload import bench_config, datasets, network_named

    net = network_named(network)
    cfg = bench_config(net, epochs)
    report: dict[str, Any] = {"network": net.name, "engine": engine, "epochs": epochs}
    if engine == "pytorch":
        import torch  # noqa: F401  (its libraries count as imports, not as training)
    elif engine == "sklearn":
        import sklearn.neural_network  # noqa: F401
    else:
        import mlp_cli.train  # noqa: F401
    report["after_imports_mb"] = _peak_mb()
    after_epoch: list[float] = []
    if engine == "ours":
        from mlp_cli.data import prepare_data
        from mlp_cli.train import Callbacks, start

        class _Peaks(Callbacks):
            def on_epoch_end(self, record: dict[str, Any]) -> None:
                after_epoch.append(_peak_mb())

        data = (
            datasets((net,), smoke)[net.input_size].splits(net.input_size)
            if smoke
            else prepare_data(cfg)
        )
        report["data_mb"] = data.X.nbytes / 2**20
        report["after_data_mb"] = _peak_mb()
        with tempfile.TemporaryDirectory() as tmp:
            start(cfg, data, Path(tmp) / "run").run(_Peaks())
    else:
        from bench.peers import EpochRunner, SklearnRunner, TorchRunner

        dataset = datasets((net,), smoke)[net.input_size]
        report["data_mb"] = dataset.X.nbytes / 2**20
        report["after_data_mb"] = _peak_mb()
        runner: EpochRunner = (
            TorchRunner(net, dataset, threads)
            if engine == "pytorch"
            else SklearnRunner(net, dataset)
        )
        for _ in range(epochs):
            runner.epoch()
            after_epoch.append(_peak_mb())
    report["after_epoch_mb"] = after_epoch
    report["peak_mb"] = _peak_mb()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("epochs", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    # threadpoolctl limits the BLAS libraries already loaded: import them first.
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    if args.engine == "sklearn":
        import sklearn.neural_network  # noqa: F401
    with threadpool_limits(limits=args.threads, user_api="blas"):
        report = _train(args.network, args.engine, args.epochs, args.threads, args.smoke)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
