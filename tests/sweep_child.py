"""`mlp` in a child process, trained on the synthetic data of `test_train.make_splits`
instead of MNIST: ``python tests/sweep_child.py sweep FILE ...``. Worker processes forked
by the sweep inherit the replacement."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_train import make_splits

from mlp_cli import cli, data, sweep
from mlp_cli.train import Trainer

if __name__ == "__main__":
    splits = make_splits(n_train=2048, n_val=256)
    data.prepare_data = lambda cfg, progressbar=False: splits  # type: ignore[misc]
    data.cached_files = lambda: {"synthetic": Path(__file__)}
    Trainer.write_curves = lambda self: None  # type: ignore[method-assign]
    # no test split here: nothing to score
    sweep._test_accuracy = lambda run_dir: (None, None)  # type: ignore[assignment,return-value]
    sys.argv = ["mlp", *sys.argv[1:]]
    cli.main()
