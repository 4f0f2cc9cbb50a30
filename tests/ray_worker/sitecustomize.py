"""Ray workers of the test cluster (`test_sweep_ray`) train on the synthetic data of
`sweep_child.py` instead of MNIST, as forked workers of the local engine do. Ray starts its
workers afresh, so the replacement is made here, on the path the cluster's processes get
(PYTHONPATH), in worker processes only. Each epoch also takes a moment longer, so that a
worker can be killed in the middle of a trial.

MLP_TEST_TRIALS names a folder where each trial's worker keeps "<pid> <epochs done> <run
dir>" in a file named after the trial, and where ``resumed`` gets a line "<trial> <epochs
done>" for every trial resumed from a checkpoint: the test kills a worker in the middle of a
trial and tells a retry from the last checkpoint from a start afresh."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Seconds added to each epoch: long enough to kill a worker between two epochs.
EPOCH_PAUSE = 0.3


def _replace_data() -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))

    import time

    from test_train import make_splits

    from mlp_cli import data, train

    folder = Path(os.environ["MLP_TEST_TRIALS"])
    splits = make_splits(n_train=2048, n_val=256)
    data.prepare_data = lambda cfg, progressbar=False: splits  # type: ignore[misc]
    train.Trainer.write_curves = lambda self: None  # type: ignore[method-assign]
    end_epoch = train.Trainer._end_epoch

    def slow_end_epoch(
        self: train.Trainer, train_time: float, n_train: int, lr: float
    ) -> dict[str, Any]:
        time.sleep(EPOCH_PAUSE)
        record = end_epoch(self, train_time, n_train, lr)
        note = folder / self.run_dir.name
        note.with_suffix(".tmp").write_text(f"{os.getpid()} {self.state.epoch} {self.run_dir}")
        note.with_suffix(".tmp").replace(note)
        return record

    train.Trainer._end_epoch = slow_end_epoch  # type: ignore[method-assign]
    resume = train.resume

    def noted_resume(run_dir: str | Path, *args: Any, **kwargs: Any) -> train.Trainer:
        trainer = resume(run_dir, *args, **kwargs)
        with open(folder / "resumed", "a") as log:
            log.write(f"{Path(run_dir).name} {trainer.state.epoch}\n")
        return trainer

    train.resume = noted_resume


if any(arg.endswith("default_worker.py") for arg in sys.argv):
    _replace_data()
