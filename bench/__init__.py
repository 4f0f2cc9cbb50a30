"""Performance benchmark of the training engine (``python -m bench``, ``make bench``).

Times full training epochs of `mlp_cli` against PyTorch and scikit-learn on the same
networks and data, measures this machine's matmul ceiling for the same shapes, checks that
epochs do not slow down over a long run, and measures peak memory.  Not part of the
installed package; PyTorch and scikit-learn are optional and never needed by `mlp_cli`.
"""

from mlp_cli.threads import let_blas_workers_sleep

# Train as `mlp train` does, whose entry point sets this before NumPy loads OpenBLAS.
let_blas_workers_sleep()
