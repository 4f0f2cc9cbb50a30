"""Threads: how many a run uses, how BLAS's idle workers wait, and when a run is starved.

``training.threads: auto`` (the default) picks the count once, when a run starts: one thread
for a network whose step is small (its products are too short to share, while a thread that
waits for a core another process holds stalls every product), else the cores other
processes leave free, watched for a moment in ``/proc/stat`` (else the load average).  A
number is capped at the cores this process may use (CPU affinity and a cgroup quota).
During the run, the share of time our threads spent ready but waiting for a core, and
epochs much slower than the earlier ones, show a run starved by other processes;
`slowdown` says when, with the thread count to try.

NumPy's OpenBLAS keeps idle workers spinning after each product, on the cores the
optimizer's update needs next; `let_blas_workers_sleep` shortens the spin to cover the gaps
between one step's products but not the update.  This module imports neither NumPy nor
threadpoolctl at import time, so the command line can call that before OpenBLAS loads.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise, product
from pathlib import Path, PurePosixPath
from typing import Literal

from mlp_cli.limits import counted

# log2 of the clock cycles an idle OpenBLAS worker spins before it sleeps (OpenBLAS: 4-30).
BLAS_SPIN_LOG2_CYCLES = 20


def let_blas_workers_sleep() -> None:
    """Shorten OpenBLAS's idle spinning, unless the user set ``OPENBLAS_THREAD_TIMEOUT``;
    OpenBLAS reads it as it loads, so this acts only before NumPy is imported."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(BLAS_SPIN_LOG2_CYCLES))


def blas_threads() -> int:
    """The number of threads NumPy's BLAS uses now, within any threadpoolctl limit."""
    from threadpoolctl import threadpool_info

    counts = [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max([1, *counts])


# -- choosing the thread count ---------------------------------------------------------------

AUTO = "auto"
ThreadSetting = int | Literal["auto"] | None  # training.threads: a count, auto, or BLAS's own

# Under `auto`, a step with fewer floating-point operations than this runs on one thread:
# sharing its short products gains little even on an idle machine, and one thread kept
# waiting by another process makes every product wait (see `python -m bench busy`).
SMALL_STEP_FLOPS = 50_000_000
# Cores count as free when other processes keep them busy less than this in total (in
# cores): a thread that has to share its core holds up the threads it synchronises with.
FREE_CORE_BUSY = 0.2
# How long `busy_cores` watches /proc/stat: long enough for a few clock ticks per core.
BUSY_SAMPLE_SECONDS = 0.2


def step_flops(layers: Sequence[int], batch: int) -> int:
    """Floating-point operations of one training step's matrix products: the forward
    product and the weight gradient of every layer, and the back-propagated delta of
    every layer but the first (2 per multiply-add)."""
    weights = [n_in * n_out for n_in, n_out in pairwise(layers)]
    return 2 * batch * (2 * sum(weights) + sum(weights[1:]))


def auto_threads(flops: int, cores: int, busy: float) -> int:
    """The `auto` thread count for a step of ``flops`` on ``cores`` usable cores, of which
    other processes keep ``busy`` (in cores) occupied: 1 for a small step, else the free
    cores, never fewer than 1 nor more than ``cores``."""
    if flops < SMALL_STEP_FLOPS or cores <= 1:
        return 1
    free = math.floor(cores - max(busy, 0.0) + FREE_CORE_BUSY)
    return max(1, min(cores, free))


def _affinity_cores() -> int:
    """The CPUs this process may be scheduled on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, within a cgroup CPU quota."""
    cores, quota = _affinity_cores(), _cgroup_cpu_quota()
    return cores if quota is None else min(cores, max(1, math.ceil(quota)))


# Where cgroups are mounted, and which of them this process belongs to.
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_MEMBERSHIP = Path("/proc/self/cgroup")


def _cgroup_cpu_quota() -> float | None:
    """The CPUs this process's cgroups allow it, or None where none sets a limit: the
    smallest quota on the path of its cgroup, which binds it from any parent (a systemd
    slice), in cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` over the period)."""
    try:
        lines = CGROUP_MEMBERSHIP.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:  # "0::/path" in v2, "3:cpu,cpuacct:/path" in v1
        controllers, _, own = line.partition(":")[2].partition(":")
        v1 = "cpu" in controllers.split(",")
        if not own.startswith("/") or (controllers and not v1):
            continue
        # v1: a hierarchy is mounted under the names of its controllers ("cpu,cpuacct"),
        # and often linked as "cpu" too; either may be missing
        bases = (CGROUP_ROOT / controllers, CGROUP_ROOT / "cpu") if v1 else (CGROUP_ROOT,)
        path = PurePosixPath(own)
        # missing folders (a namespace's, or a mount's other name) are skipped
        for base, folder in product(bases, (path, *path.parents)):
            quotas.append(_folder_cpu_quota(base / folder.relative_to("/"), v1))
    return min((quota for quota in quotas if quota is not None), default=None)


def _folder_cpu_quota(folder: Path, v1: bool) -> float | None:
    """The CPUs one cgroup folder's own quota allows, or None ("max" or -1: no limit)."""
    try:
        if v1:
            quota, period = ((folder / f"cpu.cfs_{n}_us").read_text() for n in ("quota", "period"))
        else:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        cpus = int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


def _cpu_times() -> dict[str, tuple[int, int]]:
    """(busy, total) clock ticks of each CPU ("cpu0", ...) from /proc/stat."""
    found: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(f) for f in fields[:8]]
            idle = ticks[3] + ticks[4]  # idle and waiting for I/O
            found[name] = (sum(ticks) - idle, sum(ticks))
    return found


def busy_cores(seconds: float = BUSY_SAMPLE_SECONDS) -> float:
    """How many of this process's cores other processes keep busy, watched for ``seconds``
    (this process sleeps meanwhile); the 1-minute load average where /proc/stat is
    missing, and 0 where neither is known."""
    try:
        cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (AttributeError, OSError, ValueError, IndexError):
        try:
            return min(os.getloadavg()[0], usable_cores())
        except (AttributeError, OSError):
            return 0.0
    ticks = {cpu: after[cpu][1] - before[cpu][1] for cpu in cpus & before.keys() & after.keys()}
    return sum(((after[cpu][0] - before[cpu][0]) / n for cpu, n in ticks.items() if n > 0), 0.0)


@dataclass(frozen=True)
class ThreadChoice:
    """The threads a run uses (None: BLAS's own default) and why, in a few words."""

    threads: int | None
    reason: str
    capped: bool = False  # a number asked for was more than the usable cores


def choose_threads(
    setting: ThreadSetting,
    layers: Sequence[int],
    batch: int,
    *,
    cores: int | None = None,
    busy: Callable[[], float] = busy_cores,
    earlier: int | None = None,
) -> ThreadChoice:
    """Resolve ``training.threads`` for a network of ``layers`` trained in batches of
    ``batch``, once, at the start of a run.  ``busy`` is only called when the network is
    large enough for threads to matter.  ``earlier`` is the thread count a resumed run used
    so far: `auto` keeps it, since BLAS rounds some products differently on another count
    and resuming must give the bits of a run never interrupted."""
    cores = usable_cores() if cores is None else cores
    if setting is None:
        return ThreadChoice(None, "BLAS default")
    if setting != AUTO:
        asked = int(setting)
        if asked > cores:
            return ThreadChoice(
                cores, f"{asked:,} asked, capped at the {counted(cores, 'core')}", True
            )
        return ThreadChoice(asked, "as set")
    if earlier is not None:
        if earlier > cores:
            return ThreadChoice(cores, f"auto: the run used {earlier}, this machine has {cores}")
        return ThreadChoice(earlier, "auto: as the run used so far")
    flops = step_flops(layers, batch)
    if flops < SMALL_STEP_FLOPS:
        return ThreadChoice(1, f"auto: {'-'.join(map(str, layers))} is small")
    if cores == 1:
        return ThreadChoice(1, "auto: 1 core")
    # Load on CPUs beyond a cgroup quota's share leaves the quota's cores to this process.
    taken = max(0.0, busy() - max(0, _affinity_cores() - cores))
    threads = auto_threads(flops, cores, taken)
    if threads == cores:
        return ThreadChoice(threads, f"auto: {cores} cores free")
    return ThreadChoice(threads, f"auto: other processes use {taken:.1f} of {cores} cores")


@contextmanager
def limit_blas(threads: int | None) -> Iterator[None]:
    """Limit NumPy's BLAS to ``threads`` threads inside the block (None: no limit)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


# -- noticing a starved run ------------------------------------------------------------------

# An epoch this many times slower than the fastest earlier one (the first, which warms up,
# left out) is much slower than expected.
SLOW_FACTOR = 2.0
# Threads that spent this share of an epoch ready to run but waiting for a core are starved.
WAITING_SHARE = 0.25
# Epochs shorter than this are not judged: a moment's hiccup doubles them.
JUDGED_SECONDS = 0.25


def waiting_seconds() -> float | None:
    """Seconds this process's threads have spent ready to run but waiting for a core (the
    scheduler's run-queue delay), or None where the system does not say (not Linux)."""
    total = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):  # the thread just ended
                continue
    except OSError:
        return None
    return total / 1e9


@dataclass(frozen=True)
class Slowdown:
    """A run much slower than expected: which epoch, how slow, and what to try."""

    epoch: int
    seconds: float
    usual: float | None  # the fastest earlier epoch (the first left out), if it is slower
    waiting: float | None  # share of the epoch our threads waited for a core, if starved
    threads: int
    suggest: int | None  # threads to try, None when there is nothing to change


def slowdown(
    epoch: int, times: Sequence[float], waiting: float | None, threads: int
) -> Slowdown | None:
    """Whether epoch ``epoch``, the last of ``times`` (this session's epoch seconds, in
    order), ran much slower than expected: ``SLOW_FACTOR`` times the fastest earlier epoch
    but the first, or with our ``threads`` waiting for a core ``WAITING_SHARE`` of the time
    or more.  None when it did not."""
    seconds = times[-1] if times else 0.0
    usual = min(times[1:-1], default=None)
    slower = usual is not None and seconds >= SLOW_FACTOR * usual
    starved = waiting is not None and waiting >= WAITING_SHARE
    if seconds < JUDGED_SECONDS or not (slower or starved):
        return None
    # The cores our threads actually had, on average: more threads only wait.
    had = threads * (1 - waiting) if waiting is not None else threads / 2
    suggest = max(1, min(threads - 1, math.floor(had))) if threads > 1 else None
    return Slowdown(
        epoch, seconds, usual if slower else None, waiting if starved else None, threads, suggest
    )
