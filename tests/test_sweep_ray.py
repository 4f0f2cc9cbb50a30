"""`mlp sweep --engine ray`: on a real one-machine Ray cluster, the same trials as the local
engine, bit for bit, with a Ray worker killed in the middle of a trial (whose scratch folder
its retry removes); a private Ray that listens on the loopback interface only and writes no
token; clear errors without Ray or without a cluster at --address; and no Ray for `mlp
--help` or the local engine.

The cluster is started here (`ray start --head --block`, loopback only, token
authentication, its own temporary folders for Ray and, as TMPDIR, for its workers) and
stopped by ending that process, which stops every process of the cluster and nothing else on
the machine (`ray stop` would stop every Ray on it). Its workers train on the synthetic data
of `sweep_child.py` (see ``ray_worker/sitecustomize.py``).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sweep import base_config, mlp, write_sweep
from test_train import arrays_of, metrics, without_timing

from mlp_cli import checkpoint
from mlp_cli.errors import MLPError
from mlp_cli.sweep import Sweep, plan

HERE = Path(__file__).parent
RAY = Path(sys.executable).parent / "ray"
SWEEP = """\
name: lrs
config: base.yaml
metric: {name: val_loss, goal: minimize}
parameters:
  optimizer.lr: {values: [0.03, 0.01, 0.003]}
"""
BASE = base_config(epochs=5)  # long enough to kill a worker in the middle of a trial
# Seconds to wait for the cluster to answer and for a trial to reach the middle.
PATIENCE = 60.0


@pytest.fixture(scope="session")
def ray_tune() -> None:
    """Skips when Ray Tune cannot be imported (checked in a child process: importing it here
    would load Ray into the process that forks the local engine's workers)."""
    probe = subprocess.run([sys.executable, "-c", "import ray.tune"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Ray Tune is not installed (pip install 'ray[tune]')")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def listening_at(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


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
    """A running cluster: its address, the environment that joins it (its token), and its
    `ray start --block` process."""

    def __init__(self, address: str, env: dict[str, str], head: subprocess.Popen[bytes]) -> None:
        self.address, self.env, self.head = address, env, head
        self.trials = Path(env["MLP_TEST_TRIALS"])
        self.scratch = Path(env["MLP_TEST_SCRATCH"])

    def trial_workers(self) -> list[int]:
        """Workers of this cluster running a trial (named after Tune's trainable)."""
        found = descendants(self.head.pid).items()
        return [pid for pid, line in found if "ray::ImplicitFunc" in line]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, ray_tune: None) -> Iterator[Cluster]:
    """One cluster for the module's tests (it takes seconds to start); its workers note
    their trials in `Cluster.trials`."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps 127.0.0.1 as the node's address
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(HERE / "ray_worker"),
        "MLP_TEST_TRIALS": str(tmp_path / "trials"),
        # The workers' temporary files (the trials' scratch run directories) stay in here.
        "TMPDIR": str(tmp_path / "tmp"),
    }
    # Short: Ray's sockets live in it, and a socket's path has at most 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="mlp-ray-"))
    (tmp_path / "trials").mkdir()
    (tmp_path / "tmp").mkdir()
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
        # A driver gets the token, not the cluster's other settings, so the test sees that
        # mlp joins a loopback cluster by itself.
        auth = {key: env[key] for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLP_TEST_TRIALS")}
        scratch = {"MLP_TEST_SCRATCH": env["TMPDIR"]}
        yield Cluster(f"127.0.0.1:{port}", {**os.environ, **auth, **scratch}, head)
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
    path = write_sweep(tmp_path, SWEEP, base=BASE)
    local = sweep_child(str(path), "--out", str(tmp_path / "local"), "--quiet")
    out, err = local.communicate(timeout=PATIENCE)
    assert local.returncode == 0, err

    folder = tmp_path / "ray"
    args = ("--engine", "ray", "--address", ray_cluster.address, "--quiet")
    driver = sweep_child(str(path), "--out", str(folder), *args, env=ray_cluster.env)
    killed: str | None = None
    killed_run_dir = Path()
    deadline = time.monotonic() + PATIENCE
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        # A trial's note, not the temporary file it is written through before it replaces it.
        for note in ray_cluster.trials.glob("t[0-9][0-9][0-9]"):
            pid, done, run_dir = note.read_text().split(maxsplit=2)
            # In the middle: an earlier epoch's checkpoint reported (the note is written as an
            # epoch ends, before its report), epochs still to train.
            if 2 <= int(done) <= 3 and int(pid) in ray_cluster.trial_workers():
                os.kill(int(pid), signal.SIGKILL)
                killed, killed_run_dir = note.name, Path(run_dir)
                break
        time.sleep(0.02)
    out, err = driver.communicate(timeout=PATIENCE)
    assert killed is not None, "no trial was caught in the middle to kill its worker"
    assert driver.returncode == 0, err
    assert "A worker died" not in out + err  # Ray's own notice stays off the terminal

    # The killed trial, and only it, was resumed from a checkpoint, not started afresh.
    resumed = (ray_cluster.trials / "resumed").read_text().split()
    assert len(resumed) == 2, resumed
    assert resumed[0] == killed
    assert int(resumed[1]) >= 1
    # The killed worker's scratch folder was in the cluster's temporary folder, and the retry
    # removed it: every trial's scratch folder is gone.
    assert killed_run_dir.parent.parent == ray_cluster.scratch
    assert not killed_run_dir.parent.exists()
    assert list(ray_cluster.scratch.glob("mlp-sweep-*")) == []
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


# -- a private Ray ------------------------------------------------------------------------------


def listening(pids: list[int]) -> set[str]:
    """The addresses (IP in hex, as /proc/net/tcp writes it) that the TCP sockets of `pids`
    listen on."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # it ended, or is not ours to look into
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1].split(":")[0])
    return found


def is_loopback(hex_ip: str) -> bool:
    """127.0.0.0/8, ::1 or ::ffff:127.x.y.z, from /proc/net/tcp's hex (32-bit words in the
    machine's byte order, little-endian here)."""
    if len(hex_ip) == 8:
        return hex_ip.endswith("7F")
    words = [hex_ip[i : i + 8] for i in range(0, 32, 8)]
    return words == ["00000000"] * 3 + ["01000000"] or (
        words[:2] == ["00000000"] * 2 and words[2] == "FFFF0000" and words[3].endswith("7F")
    )


def test_a_private_ray_listens_on_loopback_only_writes_no_token_and_reports_failures(
    tmp_path: Path, ray_tune: None
) -> None:
    lrs = "[0.1, 1.0e+30]}\n  optimizer.name: {value: sgd}"  # t001 diverges
    path = write_sweep(tmp_path, SWEEP.replace("[0.03, 0.01, 0.003]}", lrs), base=BASE)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "trials").mkdir()
    (tmp_path / "tmp").mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RAY_")  # no token, no address: the sweep makes its own
    }
    env.update(
        HOME=str(home),
        PYTHONPATH=str(HERE / "ray_worker"),
        MLP_TEST_TRIALS=str(tmp_path / "trials"),
    )
    folder = tmp_path / "ray"
    driver = sweep_child(str(path), "--out", str(folder), "--engine", "ray", "--quiet", env=env)
    addresses: set[str] = set()
    while driver.poll() is None:
        addresses |= listening([driver.pid, *descendants(driver.pid)])
        time.sleep(0.1)
    _out, err = driver.communicate()
    assert driver.returncode == 0, err
    assert addresses  # Ray's servers were seen
    assert all(is_loopback(a) for a in addresses), addresses
    assert not (home / ".ray").exists()  # the token stayed in memory
    ran = Sweep.load(folder)
    assert [t.status for t in ran.trials] == ["completed", "failed"]
    reason = ran.trials[1].reason or ""
    assert "the loss became" in reason
    assert str(folder / "t001" / "checkpoint.npz") in reason  # where the driver keeps it
    assert (folder / "t001" / "checkpoint.npz").is_file()
    assert not (folder / "ray").exists()  # Ray's own copies of the checkpoints are gone
    assert not list(folder.glob("ray-*"))


def test_a_trial_ashas_stops_on_ray_that_keeps_no_best_epoch_has_its_last_epoch_in_model_npz(
    tmp_path: Path, ray_tune: None
) -> None:
    body = (
        "name: asha\nconfig: base.yaml\nmetric: {name: val_acc, goal: maximize}\nparameters:\n"
        "  optimizer.lr: {values: [0.01, 1.0e-6, 0.003, 1.0e-7]}\n"
        "  training.early_stopping.restore_best: {value: false}\n"
        "early_terminate: {type: asha, grace_period: 1, reduction_factor: 2}\n"
    )
    path = write_sweep(tmp_path, body, base=base_config(epochs=4))
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(HERE / "ray_worker"), MLP_TEST_TRIALS=str(tmp_path / "trials"))
    (tmp_path / "trials").mkdir()
    folder = tmp_path / "ray"
    driver = sweep_child(str(path), "--out", str(folder), "--engine", "ray", "--quiet", env=env)
    _out, err = driver.communicate(timeout=4 * PATIENCE)
    assert driver.returncode == 0, err
    pruned = [t for t in Sweep.load(folder).trials if t.status == "pruned"]
    assert pruned  # 1e-7 trails every trial that reaches the first rung before it
    for t in pruned:
        run_dir = folder / t.id
        model = checkpoint.load(run_dir / "model.npz")
        saved = checkpoint.load(run_dir / "checkpoint.npz", checkpoint=True)
        assert model.meta.training is not None
        assert model.meta.training.weights_from_epoch == t.epoch == len(metrics(run_dir))
        for ours, theirs in zip(
            model.weights + model.biases, saved.weights + saved.biases, strict=True
        ):
            assert np.array_equal(ours, theirs)
        code, _, err = mlp("inspect", "--model", str(run_dir))
        assert code == 0, err


def test_a_folder_named_ray_of_the_users_in_a_resumed_sweep_is_left_alone(
    tmp_path: Path, ray_tune: None
) -> None:
    folder = tmp_path / "sweep"  # a sweep not run yet, as one stopped as it started leaves it
    run = plan(write_sweep(tmp_path, SWEEP), out=folder)
    folder.mkdir()
    run.save(claim=True)
    (folder / "ray").mkdir()
    (folder / "ray" / "notes.txt").write_text("mine")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(HERE / "ray_worker"), MLP_TEST_TRIALS=str(tmp_path))
    driver = sweep_child("--resume", str(folder), "--engine", "ray", "--quiet", env=env)
    _out, err = driver.communicate(timeout=PATIENCE)
    assert driver.returncode == 0, err
    assert (folder / "ray" / "notes.txt").read_text() == "mine"
    assert [p.name for p in folder.iterdir() if p.name.startswith("ray")] == ["ray"]


def test_a_trial_whose_run_cannot_be_kept_in_the_sweep_folder_fails_with_the_reason(
    tmp_path: Path, ray_tune: None
) -> None:
    folder = tmp_path / "sweep"
    run = plan(write_sweep(tmp_path, SWEEP), out=folder)
    folder.mkdir()
    run.save(claim=True)
    (folder / "t001").symlink_to(tmp_path / "nowhere")  # a link to nowhere, where t001 goes
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(HERE / "ray_worker"), MLP_TEST_TRIALS=str(tmp_path))
    driver = sweep_child("--resume", str(folder), "--engine", "ray", "--quiet", env=env)
    _out, err = driver.communicate(timeout=PATIENCE)
    assert driver.returncode == 0, err
    ran = Sweep.load(folder)
    assert [t.status for t in ran.trials] == ["completed", "failed", "completed"]
    assert "its run could not be kept in the sweep folder" in (ran.trials[1].reason or "")
    assert "t001 failed: its run could not be kept" in " ".join(err.split())


def test_sigterm_stops_a_sweep_on_a_private_ray_as_ctrl_c_does(
    tmp_path: Path, ray_tune: None
) -> None:
    path = write_sweep(tmp_path, SWEEP, base=BASE)
    trials = tmp_path / "trials"
    trials.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(HERE / "ray_worker"), MLP_TEST_TRIALS=str(trials))
    folder = tmp_path / "ray"
    driver = sweep_child(str(path), "--out", str(folder), "--engine", "ray", "--quiet", env=env)
    try:
        deadline = time.monotonic() + PATIENCE
        while not list(trials.glob("t[0-9][0-9][0-9]")):  # a trial is in the middle
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.05)
        ray_processes = descendants(driver.pid)
        driver.send_signal(signal.SIGTERM)
        _out, err = driver.communicate(timeout=PATIENCE)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 128 + signal.SIGTERM, err
    assert f"Resume with: mlp sweep --resume {folder}" in " ".join(err.split())
    assert "SIGTERM received" not in err  # no crash report of Ray's
    statuses = [t.status for t in Sweep.load(folder).trials]
    assert "interrupted" in statuses
    assert "running" not in statuses
    deadline = time.monotonic() + PATIENCE  # the private Ray's processes end with it
    while left := [line for pid, line in ray_processes.items() if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, left
        time.sleep(0.1)


def test_is_loopback_reads_proc_net_tcp() -> None:
    assert is_loopback("0100007F")  # 127.0.0.1
    assert not is_loopback("0202000C")  # 12.0.2.2
    assert not is_loopback("00000000")  # 0.0.0.0
    assert is_loopback("00000000000000000000000001000000")  # ::1
    assert is_loopback("0000000000000000FFFF00000100007F")  # ::ffff:127.0.0.1
    assert not is_loopback("00000000000000000000000000000000")  # ::


# -- errors, and where Ray is not loaded ---------------------------------------------------------


def test_without_ray_the_engine_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec

    def without_ray(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] == "ray" else find_spec(name, package)

    from mlp_cli import sweep_ray

    monkeypatch.setattr(importlib.util, "find_spec", without_ray)
    path = write_sweep(tmp_path, SWEEP)
    code, _out, err = mlp("sweep", str(path), "--engine", "ray")
    assert code == 2, err
    assert sweep_ray.INSTALL_HINT in err
    assert "mlp-cli[" not in err  # mlp is on no package index: pip would find nothing
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_the_help_of_engine_gives_the_install_hint_the_refusal_gives() -> None:
    from mlp_cli import sweep_ray

    code, out, err = mlp("sweep", "--help")
    assert code == 0, err
    text = " ".join(out.replace("\u2502", " ").split())  # one line, without the panel's sides
    assert f"ray: Ray Tune trials on a Ray cluster ({sweep_ray.INSTALL_HINT}," in text
    assert "mlp-cli[" not in text  # mlp is on no package index: pip would find nothing


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost", "HOST:PORT"),
        ("127.0.0.1:99999", "HOST:PORT"),
        ("127.0.0.1:0", "HOST:PORT"),  # port 0 is "any free port" to a listener, none to join
        ("127.0.0.1:x", "HOST:PORT"),
        ("127.0.0.1:\u00b2", "HOST:PORT"),  # a digit to str.isdigit, not to int()
        ("a" * 64 + ":6379", "HOST:PORT"),  # a label longer than a host name's 63 characters
        ("head..cluster:6379", "HOST:PORT"),  # an empty label
        ("127.0.0.1:" + "9" * 5000, "HOST:PORT"),  # more digits than int() converts
        ("a" * 5000 + ":6379", "HOST:PORT"),
    ],
)
def test_a_malformed_address_is_a_usage_error(
    tmp_path: Path, ray_tune: None, address: str, expected: str
) -> None:
    path = write_sweep(tmp_path, SWEEP)
    code, _out, err = mlp("sweep", str(path), "--engine", "ray", "--address", address)
    assert code == 2, err
    assert expected in err
    if len(address) <= 300:
        assert repr(address) in err
    else:  # cut short: a host name has at most 253 characters, a port 5
        assert repr(address[:297] + "...") in err
        assert len(err) < 1000
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])  # an IPv6 address keeps its brackets
def test_an_address_where_no_cluster_answers_is_a_usage_error_at_once(
    tmp_path: Path, ray_tune: None, host: str
) -> None:
    path = write_sweep(tmp_path, SWEEP)
    address = f"{host}:{free_port()}"
    started = time.monotonic()
    code, _out, err = mlp("sweep", str(path), "--engine", "ray", "--address", address)
    assert code == 2, err
    assert f"no Ray cluster answers at {address}" in " ".join(err.split())
    assert time.monotonic() - started < PATIENCE
    assert not (tmp_path / "runs").exists()


def test_an_address_where_something_else_than_ray_answers_is_a_usage_error_in_seconds(
    tmp_path: Path, ray_tune: None
) -> None:
    port = free_port()  # a web server, such as a cluster's dashboard, where the head should be
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = write_sweep(tmp_path, SWEEP, base=BASE)
    folder = tmp_path / "ray"
    driver = None
    try:
        while not listening_at(port):
            assert server.poll() is None
            time.sleep(0.05)
        address = f"127.0.0.1:{port}"
        args = ("--out", str(folder), "--engine", "ray", "--address", address, "--quiet")
        driver = sweep_child(str(path), *args)
        _out, err = driver.communicate(timeout=PATIENCE)
    finally:
        for proc in (driver, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert driver.returncode == 2, err
    assert f"could not join the Ray cluster at {address}" in " ".join(err.split())
    assert "Traceback" not in err
    assert [t.status for t in Sweep.load(folder).trials] == ["pending"] * 3


def test_a_host_name_too_long_to_resolve_is_cut_short_in_the_error(
    tmp_path: Path, ray_tune: None
) -> None:
    path = write_sweep(tmp_path, SWEEP)
    host = "a." * 2500 + "b"  # labels of one character: only the resolver refuses it
    code, _out, err = mlp("sweep", str(path), "--engine", "ray", "--address", f"{host}:6379")
    assert code == 2, err
    said = "".join(err.split())
    assert f"noRayclusteranswersat{host[:297]}...:6379" in said
    assert len(err) < 1000
    assert not (tmp_path / "runs").exists()


def test_a_tilde_in_storage_is_the_home_folder(
    tmp_path: Path, ray_tune: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import data, sweep_ray

    given: list[Any] = []

    def run_ray(*args: Any, storage: Any, **kwargs: Any) -> bool:
        given.append(storage)
        raise MLPError("stopped before Ray starts")

    monkeypatch.setattr(sweep_ray, "run_ray", run_ray)
    monkeypatch.setattr(data, "fetch_missing", lambda **kwargs: None)  # MNIST is not needed
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_sweep(tmp_path, SWEEP)
    code, _out, err = mlp("sweep", str(path), "--engine", "ray", "--storage", "~/ray")
    assert code == 1, err
    assert given == [str(tmp_path / "home" / "ray")], err


def test_address_and_storage_need_the_ray_engine(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, SWEEP)
    for option in ("--address", "--storage"):
        code, _out, err = mlp("sweep", str(path), option, "127.0.0.1:6379")
        assert code == 2, err
        assert "go with --engine ray" in err


@pytest.mark.parametrize(
    "code",
    [
        "from mlp_cli.cli import app\ntry:\n    app(['sweep', '--help'])\nexcept SystemExit:\n"
        "    pass",
        "import mlp_cli.sweep",
    ],
)
def test_help_and_the_local_engine_do_not_import_ray(
    code: str, imports_of: Callable[[str], set[str]]
) -> None:
    assert "ray" not in imports_of(code)


def test_joining_a_cluster_without_its_token_is_a_usage_error(
    tmp_path: Path, ray_cluster: Cluster
) -> None:
    path = write_sweep(tmp_path, SWEEP, base=BASE)
    env = {**ray_cluster.env, "RAY_AUTH_TOKEN": "not-the-token"}
    folder = tmp_path / "ray"
    args = ("--engine", "ray", "--address", ray_cluster.address, "--quiet")
    driver = sweep_child(str(path), "--out", str(folder), *args, env=env)
    _out, err = driver.communicate(timeout=PATIENCE)
    assert driver.returncode == 2, err
    said = " ".join(err.split())
    assert f"could not join the Ray cluster at {ray_cluster.address}: it refused" in said
    assert "RAY_AUTH_TOKEN" in said
    assert f"mlp sweep --resume {folder} --engine ray" in said
    assert "Traceback" not in err
    assert [t.status for t in Sweep.load(folder).trials] == ["pending"] * 3


def test_a_retried_trial_removes_only_the_scratch_folders_of_its_dead_predecessors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import sweep_ray

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead_pid = subprocess.Popen([sys.executable, "-c", ""])  # a process that has ended
    dead_pid.wait()
    host = socket.gethostname()
    owners = {
        "mlp-sweep-t001-dead0000": f"{host} {dead_pid.pid}",  # the one to remove
        "mlp-sweep-t001-alive000": f"{host} {os.getpid()}",
        "mlp-sweep-t001-elsewher": f"another-host {dead_pid.pid}",
        "mlp-sweep-t001-negative": f"{host} -{dead_pid.pid}",
        "mlp-sweep-t001-longer-name": f"{host} {dead_pid.pid}",
        "mlp-sweep-t002-dead0000": f"{host} {dead_pid.pid}",
        "mlp-sweep-t001-noowner0": None,
    }
    for name, owner in owners.items():
        (tmp_path / name / "t001").mkdir(parents=True)
        if owner is not None:
            (tmp_path / name / "owner").write_text(owner)
    sweep_ray._remove_dead_scratch("t001")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        set(owners) - {"mlp-sweep-t001-dead0000"}
    )


def test_a_trials_lock_file_is_not_copied_between_the_driver_and_the_workers(
    tmp_path: Path,
) -> None:
    from mlp_cli import sweep_ray
    from mlp_cli.train import CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE

    # A checkpoint Tune took while the trial trained holds the worker's lock file.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for name in (CONFIG_FILE, CHECKPOINT_FILE, LOCK_FILE):
        (scratch / name).write_text(name)
    trial = tmp_path / "sweep" / "t000"
    sweep_ray._copy_run(scratch, trial)
    assert sorted(p.name for p in trial.iterdir()) == [CHECKPOINT_FILE, CONFIG_FILE]
    (trial / LOCK_FILE).write_text("4242\n")  # left by a killed process
    assert sorted(sweep_ray._run_files(trial)) == [CHECKPOINT_FILE, CONFIG_FILE]


def test_a_resumed_trial_takes_only_its_runs_files_to_its_worker(tmp_path: Path) -> None:
    from mlp_cli import sweep_ray
    from mlp_cli.checkpoint import MODEL_FILE
    from mlp_cli.train import CHECKPOINT_FILE, CONFIG_FILE, CURVES_FILE, METRICS_FILE

    run_files = [CHECKPOINT_FILE, CONFIG_FILE, CURVES_FILE, METRICS_FILE, MODEL_FILE]
    trial = tmp_path / "sweep" / "t000"
    trial.mkdir(parents=True)
    for name in [*run_files, "notes.txt", "data.bin"]:  # the user's files beside the run's
        (trial / name).write_text(name)
    assert sorted(sweep_ray._run_files(trial)) == sorted(run_files)


def test_a_metrics_file_larger_than_mlp_reads_stays_behind_when_a_trial_resumes(
    tmp_path: Path,
) -> None:
    from mlp_cli import sweep_ray
    from mlp_cli.train import CHECKPOINT_FILE, CONFIG_FILE, MAX_METRICS_BYTES, METRICS_FILE

    trial = tmp_path / "sweep" / "t000"
    trial.mkdir(parents=True)
    for name in (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE):
        (trial / name).write_text(name)
    assert sorted(sweep_ray._run_files(trial)) == [CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE]
    os.truncate(trial / METRICS_FILE, MAX_METRICS_BYTES + 1)  # read whole, it would fill memory
    assert sorted(sweep_ray._run_files(trial)) == [CHECKPOINT_FILE, CONFIG_FILE]


@pytest.mark.parametrize(
    ("bests", "epochs", "patience", "ended"),
    [
        ([], 3, None, False),
        ([True, False], 3, None, False),
        ([True, False, False], 3, None, True),  # all its epochs
        ([True, False, False], 5, 2, True),  # two epochs without a new best: patience spent
        ([True, False, True, False], 5, 2, False),
        ([True, False], 5, 2, False),
        ([True, True, True], 3, 2, True),  # all its epochs, though still improving
    ],
)
def test_a_run_has_ended_after_its_epochs_or_its_patience(
    bests: list[bool], epochs: int, patience: int | None, ended: bool
) -> None:
    from mlp_cli import sweep_ray

    history = [{"epoch": i, "best": best} for i, best in enumerate(bests, start=1)]
    assert sweep_ray._ended(history, epochs, patience) is ended


def test_a_trial_without_a_checkpoint_takes_no_files_to_its_worker(tmp_path: Path) -> None:
    from mlp_cli import sweep_ray
    from mlp_cli.train import CONFIG_FILE, METRICS_FILE

    trial = tmp_path / "sweep" / "t000"
    trial.mkdir(parents=True)
    for name in (CONFIG_FILE, METRICS_FILE):  # written before its first checkpoint
        (trial / name).write_text(name)
    assert sweep_ray._run_files(trial) == {}  # it starts afresh


def test_a_copied_run_gets_its_checkpoint_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the trainer writes it last, so a copy cut short is a run cut short.
    from mlp_cli import checkpoint, sweep_ray
    from mlp_cli.train import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for name in (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, "z.txt"):
        (scratch / name).write_text(name)
    written: list[str] = []
    atomic_write = checkpoint.atomic_write

    def record(path: Path, write: Any) -> None:
        written.append(path.name)
        atomic_write(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", record)
    sweep_ray._copy_run(scratch, tmp_path / "t000")
    assert written[-1] == CHECKPOINT_FILE
    assert sorted(written) == sorted([CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, "z.txt"])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_a_dead_workers_scratch_folder_of_another_user_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlp_cli import sweep_ray

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", ""])  # a process that has ended
    dead.wait()
    folder = tmp_path / "mlp-sweep-t001-dead0000"
    folder.mkdir()
    (folder / "owner").write_text(f"{socket.gethostname()} {dead.pid}")
    os.chown(folder, os.getuid() + 1, -1)  # not this user's
    sweep_ray._remove_dead_scratch("t001")
    assert folder.is_dir()
