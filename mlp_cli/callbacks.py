"""The hooks through which the training loop reports its progress.

A module of its own, apart from `mlp_cli.train`, so that what renders the progress (the
command line's `mlp_cli.render`) can implement them without loading the trainer, its
optimizers and the config schema: `mlp predict` and `mlp inspect` render too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlp_cli.threads import Slowdown


class Callbacks:
    """Progress hooks; the default does nothing.  The command line renders them."""

    def on_train_start(self, info: dict[str, Any]) -> None:
        """info: run_dir, epochs, start_epoch, steps_per_epoch, n_train, n_val, parameters."""

    def on_epoch_start(self, epoch: int, steps: int, start_step: int) -> None:
        """``epoch`` is 1-based; ``start_step`` > 0 when resuming inside an epoch."""

    def on_step(self, step: int, loss: float) -> None:
        """After each optimizer step; ``step`` is 1-based within the epoch."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """``record`` is the line written to metrics.jsonl."""

    def on_slow_run(self, slow: Slowdown) -> None:
        """At most once a run, after an epoch much slower than expected (see
        `mlp_cli.threads.slowdown`)."""
