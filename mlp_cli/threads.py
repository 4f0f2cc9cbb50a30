"""Threads: how many BLAS uses, and how its idle workers wait.

NumPy's OpenBLAS keeps its worker threads spinning after each matrix product, ready for the
next one, for 2^28 clock cycles (about 0.1 s) before they go to sleep.  Between products a
training step does other work: at 784-1200-1200-10 the optimizer update alone takes about
2 ms.  Split between two threads (`mlp_cli.optim`), that update shares a core with a worker
that spins and gets nowhere, and was measured no faster than on one thread.  With
``OPENBLAS_THREAD_TIMEOUT=20`` the workers spin for 2^20 cycles (about 0.4 ms), which
covers the short gaps between one step's products, then sleep and leave the cores to the
update: a 784-1200-1200-10 step took about 9.0 ms instead of 9.8.  On the smaller networks the
setting made no measurable difference, while a shorter spin (2^18 cycles) made 784-100-10
20% slower: its workers fell asleep between products and took time to wake.

This module imports neither NumPy nor threadpoolctl at import time, so the command line can
call `let_blas_workers_sleep` before anything loads OpenBLAS.
"""

from __future__ import annotations

import os

# log2 of the clock cycles an idle OpenBLAS worker spins before it sleeps (OpenBLAS: 4-30).
BLAS_SPIN_LOG2_CYCLES = 20


def let_blas_workers_sleep() -> None:
    """Shorten OpenBLAS's idle spinning, unless the user set ``OPENBLAS_THREAD_TIMEOUT``.

    OpenBLAS reads the variable once, when it loads, so this only acts if called before
    NumPy is imported.
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(BLAS_SPIN_LOG2_CYCLES))


def blas_threads() -> int:
    """The number of threads NumPy's BLAS uses now, within any threadpoolctl limit."""
    from threadpoolctl import threadpool_info

    counts = [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max([1, *counts])
