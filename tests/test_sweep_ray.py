"""`mlp sweep --engine ray` on a real one-machine Ray cluster: the same trials as the local
engine, bit for bit, with a Ray worker killed in the middle of a trial.

The cluster is started here (`ray start --head --block`, loopback only, token
authentication, its own temporary folder) and stopped by ending that process, which stops
every process of the cluster and nothing else on the machine (`ray stop` would stop every
Ray on it). Its workers train on the synthetic data of `sweep_child.py` (see
``ray_worker/sitecustomize.py``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install 'mlp-cli[ray]')")

from test_train import arrays_of, metrics, without_timing

from mlp_cli.sweep import Sweep

HERE = Path(__file__).parent
RAY = Path(sys.executable).parent / "ray"
SWEEP = """\
name: lrs
config: base.yaml
metric: {name: val_loss, goal: minimize}
parameters:
  optimizer.lr: {values: [0.03, 0.01, 0.003]}
"""
BASE = """\
name: base
data: {input_size: 20, validation_size: 256}
model: {layers: 400-16-10}
optimizer: {name: adam, lr: 0.01}
training: {epochs: 5, batch_size: 64, seed: 0}
"""
# Seconds to wait for the cluster to answer and for a trial to reach the middle.
PATIENCE = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def descendants(root: int) -> dict[int, str]:
    """{pid: command line} of every process below `root`, from /proc."""
    parents: dict[int, int] = {}
    lines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it just ended
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        lines[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    found: dict[int, str] = {}
    for pid in parents:
        up = pid
        while up in parents and up != root:
            up = parents[up]
        if up == root and pid != root:
            found[pid] = lines[pid]
    return found


class Cluster:
    def __init__(self, address: str, env: dict[str, str], head: subprocess.Popen[bytes]) -> None:
        self.address, self.env, self.head = address, env, head

    def trial_workers(self) -> list[int]:
        """Workers of this cluster running a trial (named after Tune's trainable)."""
        found = descendants(self.head.pid).items()
        return [pid for pid, line in found if "ray::ImplicitFunc" in line]


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[Cluster]:
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps 127.0.0.1 as the node's address
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(HERE / "ray_worker"),
        "MLP_TEST_TRIALS": str(tmp_path / "trials"),
    }
    # Short: Ray's sockets live in it, and a socket's path has at most 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="mlp-ray-"))
    (tmp_path / "trials").mkdir()
    start = f"start --head --block --node-ip-address=127.0.0.1 --port={port} --num-cpus=2"
    options = f"--include-dashboard=false --disable-usage-stats --temp-dir={temp}"
    head = subprocess.Popen(
        [str(RAY), *start.split(), *options.split()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "ray-start.log").open("wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while "raylet" not in " ".join(descendants(head.pid).values()):
            assert head.poll() is None, (tmp_path / "ray-start.log").read_text()
            assert time.monotonic() < deadline, "the Ray cluster did not start"
            time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", env, head)
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its cluster on SIGTERM
        try:
            head.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def sweep_child(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "sweep_child.py"), "sweep", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ray_trials_equal_the_local_engines_bit_for_bit_after_a_worker_is_killed(
    tmp_path: Path, ray_cluster: Cluster
) -> None:
    (tmp_path / "base.yaml").write_text(BASE + f"output: {{dir: {tmp_path / 'runs'}}}\n")
    path = tmp_path / "s.yaml"
    path.write_text(SWEEP)
    local = sweep_child(str(path), "--out", str(tmp_path / "local"), "--quiet")
    out, err = local.communicate(timeout=PATIENCE)
    assert local.returncode == 0, err

    folder = tmp_path / "ray"
    args = ("--engine", "ray", "--address", ray_cluster.address, "--quiet")
    driver = sweep_child(str(path), "--out", str(folder), *args, env=ray_cluster.env)
    killed: str | None = None
    deadline = time.monotonic() + PATIENCE
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        for note in (tmp_path / "trials").glob("t*"):
            pid, done = map(int, note.read_text().split())
            # In the middle: an earlier epoch's checkpoint reported (the note is written as an
            # epoch ends, before its report), epochs still to train.
            if 2 <= done <= 3 and pid in ray_cluster.trial_workers():
                os.kill(pid, signal.SIGKILL)
                killed = note.name
                break
        time.sleep(0.02)
    out, err = driver.communicate(timeout=PATIENCE)
    assert killed is not None, "no trial was caught in the middle to kill its worker"
    assert driver.returncode == 0, err
    assert "A worker died" not in out + err  # Ray's own notice stays off the terminal

    # The killed trial, and only it, was resumed from a checkpoint, not started afresh.
    resumed = (tmp_path / "trials" / "resumed").read_text().split()
    assert len(resumed) == 2, resumed
    assert resumed[0] == killed
    assert int(resumed[1]) >= 1
    ran = Sweep.load(folder)
    assert [t.status for t in ran.trials] == ["completed"] * 3
    assert ran.engine == "ray"
    expected = Sweep.load(tmp_path / "local")
    for trial, same in zip(ran.trials, expected.trials, strict=True):
        assert (trial.id, trial.best, trial.best_epoch) == (same.id, same.best, same.best_epoch)
        for name in ("model.npz", "checkpoint.npz"):
            assert arrays_of(folder / trial.id / name) == arrays_of(
                tmp_path / "local" / trial.id / name
            ), (trial.id, name)
        assert without_timing(metrics(folder / trial.id)) == without_timing(
            metrics(tmp_path / "local" / trial.id)
        )
    assert os.path.realpath(folder / "best") == os.path.realpath(folder / expected.ranked()[0].id)
