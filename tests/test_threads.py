"""Tests for `mlp_cli.threads`: the BLAS thread count the optimizer follows, the idle-spin
setting the command line makes before NumPy loads OpenBLAS, how `auto` and a number become a
thread count, and when a run counts as starved.  No timings: the load and the clock are
given to the pure functions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from mlp_cli import threads
from mlp_cli.threads import (
    BLAS_SPIN_LOG2_CYCLES,
    SMALL_STEP_FLOPS,
    Slowdown,
    auto_threads,
    blas_threads,
    choose_threads,
    let_blas_workers_sleep,
    limit_blas,
    slowdown,
    step_flops,
    waiting_seconds,
)


def test_blas_threads_follows_a_threadpoolctl_limit() -> None:
    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads() == 1
    assert blas_threads() >= 1


def test_the_spin_setting_is_made_unless_the_user_made_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    let_blas_workers_sleep()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == str(BLAS_SPIN_LOG2_CYCLES)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "28")
    let_blas_workers_sleep()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "28"


def test_the_command_line_makes_the_setting_before_numpy_loads() -> None:
    code = (
        "import os, sys\n"
        "from mlp_cli import cli\n"
        "sys.argv = ['mlp', '--version']\n"
        "try:\n"
        "    cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.splitlines()[-1] == f"{BLAS_SPIN_LOG2_CYCLES} False"


# -- choosing the thread count ----------------------------------------------------------------


def test_step_flops_counts_every_product_of_a_step() -> None:
    # 784-100-10, batch 64: forward and weight gradient of both layers, the delta of the
    # second only, each product 2 * batch * weights.
    assert step_flops([784, 100, 10], 64) == 2 * 64 * (2 * (78_400 + 1_000) + 1_000)
    assert step_flops([784, 10], 128) == 2 * 128 * 2 * 7_840  # no hidden layer: no delta


BIG = SMALL_STEP_FLOPS  # the smallest step that may use threads


@pytest.mark.parametrize(
    ("flops", "cores", "busy", "expected"),
    [
        (BIG - 1, 8, 0.0, 1),  # a small step stays on one thread, however idle the machine
        (BIG, 2, 0.0, 2),  # a large one takes the free cores
        (BIG, 2, 0.1, 2),  # a little background work still leaves a core free
        (BIG, 2, 0.3, 1),  # a core another process keeps a third busy is not free
        (BIG, 2, 1.0, 1),  # one busy-loop neighbour on two cores
        (BIG, 2, 5.0, 1),  # never fewer than one
        (BIG, 8, 2.0, 6),
        (BIG, 8, -0.5, 8),  # never more than the cores
        (BIG, 1, 0.0, 1),
    ],
)
def test_auto_threads_follows_the_step_and_the_free_cores(
    flops: int, cores: int, busy: float, expected: int
) -> None:
    assert auto_threads(flops, cores, busy) == expected


def never_called() -> float:
    raise AssertionError("the load was measured for a network that cannot use threads")


def test_auto_keeps_the_shipped_small_networks_on_one_thread_without_measuring() -> None:
    for layers, batch in (([784, 10], 128), ([400, 25, 10], 64), ([784, 100, 10], 64)):
        choice = choose_threads("auto", layers, batch, cores=2, busy=never_called)
        assert choice.threads == 1
        assert choice.reason == f"auto: {'-'.join(map(str, layers))} is small"


def test_load_beyond_a_cgroup_quota_leaves_the_quota_free(monkeypatch: pytest.MonkeyPatch) -> None:
    # Eight CPUs to run on, a quota of two, other processes busy on three of the eight.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    choice = choose_threads("auto", [784, 800, 10], 128, cores=2, busy=lambda: 3.0)
    assert (choice.threads, choice.reason) == (2, "auto: 2 cores free")
    choice = choose_threads("auto", [784, 800, 10], 128, cores=2, busy=lambda: 7.0)
    assert choice.threads == 1


def test_auto_gives_a_large_network_the_cores_other_processes_leave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    quiet = choose_threads("auto", [784, 800, 10], 128, cores=2, busy=lambda: 0.05)
    assert (quiet.threads, quiet.reason) == (2, "auto: 2 cores free")
    busy = choose_threads("auto", [784, 800, 10], 128, cores=2, busy=lambda: 1.0)
    assert (busy.threads, busy.reason) == (1, "auto: other processes use 1.0 of 2 cores")
    assert not busy.capped


def test_auto_on_resume_keeps_the_thread_count_the_run_used_so_far() -> None:
    # Measured load would say 1 thread now; the run's bits need the 2 it trained on.
    kept = choose_threads("auto", [784, 800, 10], 128, cores=2, busy=never_called, earlier=2)
    assert (kept.threads, kept.reason) == (2, "auto: as the run used so far")
    fewer = choose_threads("auto", [784, 800, 10], 128, cores=1, busy=never_called, earlier=2)
    assert (fewer.threads, fewer.reason) == (1, "auto: the run used 2, this machine has 1")
    asked = choose_threads(1, [784, 800, 10], 128, cores=2, busy=never_called, earlier=2)
    assert asked.threads == 1  # a number the user gives still wins


def test_a_number_is_capped_at_the_usable_cores_and_says_so() -> None:
    capped = choose_threads(10_000, [784, 10], 128, cores=2, busy=never_called)
    assert (capped.threads, capped.capped) == (2, True)
    assert capped.reason == "10,000 asked, capped at the 2 cores"
    kept = choose_threads(2, [784, 10], 128, cores=2, busy=never_called)
    assert (kept.threads, kept.capped, kept.reason) == (2, False, "as set")
    one = choose_threads(3, [784, 10], 128, cores=1, busy=never_called)
    assert (one.threads, one.reason) == (1, "3 asked, capped at the 1 core")


def test_null_leaves_blas_its_own_thread_count() -> None:
    choice = choose_threads(None, [784, 800, 10], 128, cores=2, busy=never_called)
    assert (choice.threads, choice.reason) == (None, "BLAS default")
    with limit_blas(None):
        unlimited = blas_threads()
    with limit_blas(1):
        assert blas_threads() == 1
    assert blas_threads() == unlimited


def test_busy_cores_adds_up_the_busy_share_of_this_process_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # cpu0 busy 100 of 100 ticks, cpu1 25 of 100; cpu2 is not ours and fully busy.
    samples = iter(
        [
            {"cpu0": (1000, 5000), "cpu1": (300, 5000), "cpu2": (0, 5000)},
            {"cpu0": (1100, 5100), "cpu1": (325, 5100), "cpu2": (100, 5100)},
        ]
    )
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert threads.busy_cores() == pytest.approx(1.25)


def test_busy_cores_falls_back_on_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> dict[str, tuple[int, int]]:
        raise OSError("no /proc/stat")

    monkeypatch.setattr(threads, "_cpu_times", missing)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.75, 0.5, 0.25), raising=False)
    assert threads.busy_cores(0.0) == 0.75


def test_usable_cores_respects_affinity_and_a_cgroup_quota(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "_cgroup_cpu_quota", lambda: None)
    assert threads.usable_cores() == 4
    monkeypatch.setattr(threads, "_cgroup_cpu_quota", lambda: 1.5)
    assert threads.usable_cores() == 2
    monkeypatch.setattr(threads, "_cgroup_cpu_quota", lambda: 0.2)
    assert threads.usable_cores() == 1


@pytest.mark.parametrize(
    ("membership", "files"),
    [
        # a container's own cgroup, seen as the root (cgroup v2)
        ("0::/\n", {"cpu.max": "150000 100000\n"}),
        # a systemd scope inside a slice whose quota binds it (cgroup v2)
        ("0::/user.slice/run-1.scope\n", {"user.slice/cpu.max": "150000 100000\n"}),
        # cgroup v1, its cpu controller mounted beside the others
        (
            "4:memory:/job\n3:cpu,cpuacct:/job\n0::/\n",
            {"cpu/job/cpu.cfs_quota_us": "150000\n", "cpu/job/cpu.cfs_period_us": "100000\n"},
        ),
        # cgroup v1, cpu mounted with cpuacct under both their names, as systemd mounts it,
        # without the link "cpu" to it that systemd adds
        (
            "3:cpu,cpuacct:/job\n",
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                "cpu,cpuacct/job/cpu.cfs_quota_us": "150000\n",
                "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n",
            },
        ),
    ],
)
def test_usable_cores_finds_the_cgroup_quota_of_this_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, membership: str, files: dict[str, str]
) -> None:
    # No limit at the root of either hierarchy: only the process's own cgroup sets one.
    files = {"cpu.max": "max 100000\n", "cpu/cpu.cfs_quota_us": "-1\n", **files}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "self-cgroup").write_text(membership)
    monkeypatch.setattr(threads, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(threads, "CGROUP_MEMBERSHIP", tmp_path / "self-cgroup")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.usable_cores() == 2


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux's /proc only")
def test_waiting_seconds_never_decreases() -> None:
    first = waiting_seconds()
    sum(range(200_000))
    second = waiting_seconds()
    assert first is not None
    assert second is not None
    assert 0.0 <= first <= second


# -- noticing a starved run -------------------------------------------------------------------


def test_an_epoch_twice_as_slow_as_the_earlier_ones_is_a_slowdown() -> None:
    # The first epoch warms up and is not the yardstick; the fastest later one is.
    slow = slowdown(4, [3.0, 0.5, 0.45, 1.0], None, 2)
    assert slow == Slowdown(epoch=4, seconds=1.0, usual=0.45, waiting=None, threads=2, suggest=1)
    assert slowdown(4, [3.0, 0.5, 0.45, 0.85], None, 2) is None
    assert slowdown(4, [3.0, 0.5, 0.5, 1.0], None, 2) is not None  # exactly twice as slow
    assert slowdown(2, [0.4, 1.0], None, 2) is None  # nothing to compare with yet


def test_threads_waiting_for_a_core_are_a_slowdown_from_the_first_epoch() -> None:
    slow = slowdown(1, [1.5], 0.4, 2)
    assert slow is not None
    assert (slow.usual, slow.waiting, slow.suggest) == (None, 0.4, 1)
    assert slowdown(1, [1.5], 0.1, 2) is None


def test_short_epochs_are_not_judged() -> None:
    assert slowdown(3, [0.1, 0.01, 0.2], 0.9, 2) is None
    assert slowdown(1, [0.25], 0.9, 2) is not None  # an epoch of JUDGED_SECONDS is judged


@pytest.mark.parametrize(
    ("waiting", "threads_used", "suggest"),
    [
        (0.4, 2, 1),  # two threads that had 1.2 cores between them
        (0.25, 8, 6),  # eight threads that had six cores
        (0.9, 8, 1),
        (0.01, 8, 7),  # slower than before without waiting: still one fewer
        (0.0, 8, 7),  # threads that had every core they asked for: one fewer all the same
        (0.5, 1, None),  # one thread already: nothing to try
    ],
)
def test_the_suggestion_is_the_cores_the_threads_actually_had(
    waiting: float, threads_used: int, suggest: int | None
) -> None:
    slow = slowdown(3, [2.0, 1.0, 2.5], waiting, threads_used)
    assert slow is not None
    assert slow.suggest == suggest


def test_without_waiting_figures_the_suggestion_halves_the_threads() -> None:
    slow = slowdown(3, [2.0, 1.0, 2.5], None, 4)
    assert slow is not None
    assert slow.suggest == 2


# -- what the command line shows --------------------------------------------------------------


def test_the_training_header_names_the_thread_count_and_why(tmp_path: Path) -> None:
    from rich.console import Console

    from mlp_cli.config import config_from_yaml
    from mlp_cli.render import TrainDisplay

    console = Console(record=True, width=200)
    cfg = config_from_yaml("model:\n  layers: 784-100-10\n")
    display = TrainDisplay(console, cfg, choose_threads(7, [784, 100, 10], 64, cores=2))
    info = {"run_dir": tmp_path, "epochs": 1, "start_epoch": 0, "steps_per_epoch": 1}
    display.on_train_start({**info, "n_train": 10, "n_val": 0, "parameters": 5, "threads": 2})
    display.close()
    assert "threads: 2 (7 asked, capped at the 2 cores)" in console.export_text()


def test_the_slow_run_message_says_why_and_what_to_try() -> None:
    from mlp_cli.render import slow_run_message

    two = Slowdown(epoch=3, seconds=1.5, usual=0.5, waiting=0.4, threads=2, suggest=1)
    text = slow_run_message(two, "runs/x")
    assert text.startswith("epoch 3 took 1.5s, 3.0x the 0.5s of an earlier epoch; ")
    assert "training's 2 threads waited for a CPU 40% of the time" in text
    assert text.endswith("continue with mlp train --resume runs/x --threads 1")
    one = Slowdown(epoch=1, seconds=2.0, usual=None, waiting=0.7, threads=1, suggest=None)
    text = slow_run_message(one, "runs/x")
    assert "training's thread waited for a CPU 70% of the time" in text
    assert "--threads" not in text
