"""The Ray engine of `mlp sweep`: the sweep's trials as Ray Tune trials, on a Ray cluster.

Each trial runs `mlp_cli.sweep.run_trial` in a Ray worker, with BLAS capped to the sweep's
threads per trial inside the trial (Ray's ``OMP_NUM_THREADS`` comes too late for a worker
whose NumPy is already loaded), so its weights equal the local engine's. The trial trains
in a scratch folder on its worker and reports every epoch with its metrics and a Ray
checkpoint of its run directory; the driver copies each checkpoint into
``<sweep dir>/<trial id>/``, so the sweep folder, ``sweep.json`` and the live table follow
the trials as with the local engine, and ``mlp sweep --resume`` continues from there with
either engine. A worker that dies is replaced and its trial goes on from its last
checkpoint (`FailureConfig`); ``early_terminate: asha`` is Ray Tune's `ASHAScheduler`.

Without an address, a private Ray runs on this machine for the sweep: bound to the loopback
interface, with no dashboard, no usage statistics and a token of its own. With one, the
trials go to that cluster; its checkpoints must then be stored where every machine and the
driver can read them (``storage``: a shared folder or a cloud URI).

Left out: the sweep file, the plan, the trial loop and the results (`mlp_cli.sweep`). Ray
is imported only here, only when this engine runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlp_cli import checkpoint, outputs
from mlp_cli.errors import MLPError, UsageError
from mlp_cli.limits import shorten
from mlp_cli.stopping import STOP_SIGNALS
from mlp_cli.sweep import (
    SAVE_SECONDS,
    Outcome,
    Sweep,
    first_line,
    read_history,
    resume_hint,
    run_trial,
)
from mlp_cli.threads import limit_blas, usable_cores
from mlp_cli.train import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    LOCK_FILE,
    MAX_METRICS_BYTES,
    METRICS_FILE,
)

# The ray extra's requirement, which pip can install wherever mlp came from (mlp itself is
# on no package index, so `pip install 'mlp-cli[ray]'` would find nothing).
INSTALL_HINT = "pip install 'ray[tune]>=2.41'"
# Ray Tune's own folder of the sweep (experiment state, checkpoints) when none is given:
# ray-XXXXXXXX in the sweep folder, new for each run.
STORAGE_DIR = "ray"
# How long the driver waits for a cluster's address to answer before saying it does not.
CONNECT_SECONDS = 5.0
# Report keys of the trainable's last report, which says how the trial ended.
STATUS, REASON, SECONDS = "mlp_status", "mlp_reason", "mlp_seconds"
# Report key of the epoch that ends a run (its last, or early stopping's).
LAST = "mlp_last"
# Times a trial is started again, from its last checkpoint, after its worker died.
MAX_FAILURES = 3
# The files of a trial's run directory that a resumed trial takes to its worker.
_RUN_FILES = (CONFIG_FILE, METRICS_FILE, checkpoint.MODEL_FILE, CHECKPOINT_FILE, CURVES_FILE)
# Characters of an --address said in an error: a host name has at most 253, a port 5.
_SHOWN_ADDRESS = 300


def _missing(reason: str) -> UsageError:
    return UsageError(
        f"--engine ray needs Ray Tune, which is not installed here ({reason}). Install it "
        f"with `{INSTALL_HINT}` (in a clone of mlp, `pip install '.[ray]'`), or run the "
        "sweep with --engine local."
    )


def check_ready(address: str | None) -> None:
    """Refuse, before anything is written, a sweep on Ray where Ray is not installed or
    `address` is no running cluster (without importing Ray, which takes seconds)."""
    spec = importlib.util.find_spec("ray")
    places = spec.submodule_search_locations if spec is not None else None
    if not places or not any((Path(p) / "tune").is_dir() for p in places):
        raise _missing("no module named 'ray.tune'")
    if address is not None:
        check_address(address)


def check_address(address: str) -> None:
    """Refuse an `address` that is no ``HOST:PORT`` of a running cluster's head."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    # ASCII digits (str.isdigit alone takes "²"), at most a port's 5 (int() refuses 4301)
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    malformed = UsageError(
        f"--address takes the HOST:PORT of a Ray cluster's head (what `ray start --head`"
        f" printed, e.g. 127.0.0.1:6379), not {shorten(address, _SHOWN_ADDRESS)!r}"
    )
    if not sep or not host or not digits or not 0 < int(port_text) < 65536:
        raise malformed
    port = int(port_text)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
            pass
    except UnicodeError:  # a name no host can have: a label over 63 characters, or empty
        raise malformed from None
    except OSError as exc:
        # An IPv6 address in its brackets, as given: "::1:6379" would not say where the port is.
        shown = f"[{host}]" if ":" in host else host
        raise UsageError(
            f"no Ray cluster answers at {shorten(shown, _SHOWN_ADDRESS)}:{port}"
            f" ({outputs.reason(exc)}). Start one with "
            f"`ray start --head --port={port}` on that machine, or leave out --address to run"
            " the sweep on a private Ray on this machine."
        ) from None


@contextmanager
def _environment(address: str | None) -> Iterator[None]:
    """The environment Ray reads, for the sweep only: Tune's reporting and its Ctrl-C
    handler off (the command line stops the sweep itself); for a private cluster, loopback
    only, no usage statistics and a fresh token; for a cluster on this machine's loopback
    interface, an address left as given."""
    from mlp_cli.serve import is_loopback

    changes = {
        "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0, the old reporter prints nothing
        "TUNE_DISABLE_SIGINT_HANDLER": "1",
        # A failed trial's last report has no metric; ASHA then leaves it out.
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    }
    if address is not None:
        # Ray's C++ warnings (one a second while a cluster refuses the token) would crowd
        # out mlp's message. Not for a private Ray, whose token is its own: setting the
        # level makes Ray say so on stderr in every run.
        changes["RAY_BACKEND_LOG_LEVEL"] = os.environ.get("RAY_BACKEND_LOG_LEVEL", "error")
        # Where something else than a head answers (a web server, a dashboard's port),
        # ray.init would try 20 times for some 40 s each: once, for CONNECT_SECONDS, is
        # enough for a head, which has answered to the port already.
        for key, default in (
            ("RAY_gcs_server_port_wait_time_s", "1"),
            ("RAY_py_gcs_connect_timeout_s", str(int(CONNECT_SECONDS))),
        ):
            changes[key] = os.environ.get(key, default)
    if address is None or is_loopback(address.rpartition(":")[0].strip("[]")):
        # Without this, Ray replaces 127.0.0.1 by the machine's outward address: a private
        # cluster's servers listen on every interface, and a driver looks for a loopback
        # cluster where it does not listen.
        changes["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if address is None:
        changes["RAY_USAGE_STATS_ENABLED"] = "0"
        if "RAY_AUTH_MODE" not in os.environ:
            # A token in memory: Ray would otherwise write one to ~/.ray/auth_token.
            changes["RAY_AUTH_MODE"] = "token"
            changes["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    before = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _quiet_worker_deaths() -> Iterator[None]:
    """Keep Ray's "(raylet) A worker died ..." off stdout while the sweep runs: the driver's
    error listener prints it there (no setting turns it off), and the table already says
    that a trial is retried."""
    import ray._private.worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)

    ray_worker.print_to_stdstream = printer
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


# -- in the worker ---------------------------------------------------------------------------


def _ended(history: list[dict[str, Any]], epochs: int, patience: int | None) -> bool:
    """Whether a run with this metrics history has ended: all its epochs done, or early
    stopping's patience used up (as many epochs without a new best at the end)."""
    if patience is None or len(history) < patience:
        return len(history) >= epochs
    return len(history) >= epochs or not any(r.get("best") for r in history[-patience:])


_OWNER = "owner"  # in a trial's scratch folder: "<host> <pid>" of the worker using it


def _remove_dead_scratch(tid: str) -> None:
    """Remove the scratch folders of trial `tid` that a killed worker left on this machine
    (a retry runs in another worker): only this user's folders of exactly the name `trial`
    gives them, whose owner file names a process of this host that has ended."""
    shape = re.compile(rf"mlp-sweep-{re.escape(tid)}-[a-z0-9_]{{8}}")
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"mlp-sweep-{tid}-*"):
        try:
            info = folder.lstat()
            if not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()):
                continue
            if not shape.fullmatch(folder.name):
                continue
            host, pid = (folder / _OWNER).read_text().split()
            if host != socket.gethostname() or int(pid) <= 0:
                continue
            os.kill(int(pid), 0)  # raises ProcessLookupError when it has ended
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # not ours to judge: leave it
            continue


def trial(config: Mapping[str, Any], plan: Mapping[str, Any], threads: int) -> None:
    """One trial, in a Ray worker: `run_trial` in a scratch run directory, started afresh,
    from Tune's checkpoint (a retry) or from the files the sweep folder held (a resumed
    sweep)."""
    from ray import tune

    tid = str(config["trial"])
    task = plan[tid]
    patience = task["config"]["training"]["early_stopping"]["patience"]
    epochs = int(task["config"]["training"]["epochs"])
    _remove_dead_scratch(tid)
    with tempfile.TemporaryDirectory(prefix=f"mlp-sweep-{tid}-", ignore_cleanup_errors=True) as tmp:
        (Path(tmp) / _OWNER).write_text(f"{socket.gethostname()} {os.getpid()}")
        run_dir = Path(tmp) / tid
        saved = tune.get_checkpoint()
        if saved is not None:
            with saved.as_directory() as folder:
                shutil.copytree(folder, run_dir)
        elif task["files"]:
            run_dir.mkdir()
            for name, content in task["files"].items():
                (run_dir / name).write_bytes(content)

        def report(record: dict[str, Any]) -> bool:
            metrics = {k: v for k, v in record.items() if v is not None}
            # The epoch that ends the run is reported without a checkpoint: a retry from it
            # would find a run with nothing left to train but its end not yet written;
            # the last report, just after, carries the finished run.
            last = _ended(read_history(run_dir), epochs, patience)
            kept = None if last else tune.Checkpoint.from_directory(str(run_dir))
            tune.report({**metrics, LAST: last}, checkpoint=kept)
            return False

        with limit_blas(threads):
            outcome = run_trial(run_dir, task["config"], report, lambda: False)
        # A failure names the run's files where the driver keeps them, not the scratch copy.
        reason = (outcome.reason or "").replace(str(run_dir), task["run_dir"])
        final: dict[str, Any] = {
            STATUS: outcome.status,
            REASON: reason,
            SECONDS: outcome.seconds,
        }
        if outcome.history:
            final.update({k: v for k, v in outcome.history[-1].items() if v is not None})
        kept = (
            tune.Checkpoint.from_directory(str(run_dir))
            if (run_dir / CONFIG_FILE).is_file()
            else None
        )
        tune.report(final, checkpoint=kept)


# -- in the driver ---------------------------------------------------------------------------


def _copy_run(folder: Path, run_dir: Path) -> None:
    """The files of a checkpointed run directory into the trial's run directory, each
    replaced atomically, checkpoint.npz last: as the trainer writes it last after an epoch, a
    copy cut short leaves the run directory as a trainer cut short would."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Not the lock file: a checkpoint taken while the trial trained holds the worker's.
    names = sorted(
        (p.name for p in folder.iterdir() if p.is_file() and p.name != LOCK_FILE),
        key=lambda n: n == CHECKPOINT_FILE,
    )
    for name in names:
        content = (folder / name).read_bytes()
        target = run_dir / name
        with outputs.writing(target, "a trial's run directory"):
            checkpoint.atomic_write(target, lambda f, data=content: f.write(data))


def _keep_last_epoch(run_dir: Path) -> None:
    """The model.npz of a trial that Ray's ASHA stopped, where its run keeps no best epoch
    (restore_best off) and so saves one only at its end: the last epoch's weights, from the
    checkpoint its last report carried, as a pruned trial of the local engine saves them.
    The trial's worker is stopped from outside, before it could save them itself."""
    model = run_dir / checkpoint.MODEL_FILE
    if os.path.lexists(model) or not (run_dir / CHECKPOINT_FILE).is_file():
        return
    saved = checkpoint.load(run_dir / CHECKPOINT_FILE, checkpoint=True)
    training = saved.meta.training
    if training is None or training.weights_from_epoch is None:  # inside an epoch: no epoch's
        return
    meta = saved.meta.model_dump(exclude={"resume", "history"}, exclude_unset=True)
    meta["training"]["status"] = "interrupted"  # what the local engine's pruned trial says
    with outputs.writing(model, "a trial's run directory"):
        checkpoint.save(model, saved.weights, saved.biases, meta)


def _run_files(run_dir: Path) -> dict[str, bytes]:
    """The files `mlp train` wrote in a trial's run directory as {name: bytes}, for a resumed
    sweep's trial to continue from wherever it runs (empty when the trial has not started).
    Nothing else there goes: the worker's copy comes back over the folder's every epoch."""
    if not (run_dir / CHECKPOINT_FILE).is_file():
        return {}
    paths = [run_dir / name for name in _RUN_FILES]
    # A metrics.jsonl larger than mlp reads stays behind: the resumed run writes its own
    # from the checkpoint's history, as it does on this machine.
    return {
        p.name: p.read_bytes()
        for p in paths
        if p.is_file() and not (p.name == METRICS_FILE and p.stat().st_size > MAX_METRICS_BYTES)
    }


def run_ray(
    sweep: Sweep,
    *,
    address: str | None = None,
    storage: str | Path | None = None,
    workers: int | None = None,
    on_change: Callable[[], None] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Run the sweep's unfinished trials on Ray: the cluster at `address`, else a private one
    on this machine with `workers` trials at once (default: as many as its cores fit).
    False when `should_stop` stopped it (the trials' folders hold their last checkpoints)."""
    todo = sweep.unfinished()
    if not todo:
        return True
    sweep.dir.mkdir(parents=True, exist_ok=True)
    with _environment(address):
        try:  # after the environment is set: Ray reads some of it on import
            import ray.tune
        except ImportError as exc:
            raise _missing(str(exc)) from None

        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        if address is None:
            cpus = usable_cores()
            if workers is not None:
                cpus = min(cpus, workers * sweep.cpus_per_trial)
            try:
                ray.init(
                    address="local",  # never a cluster `ray start` left running here
                    num_cpus=max(cpus, sweep.cpus_per_trial),
                    _node_ip_address="127.0.0.1",
                    include_dashboard=False,
                    **quiet,
                )
            except (ConnectionError, RuntimeError) as exc:
                raise MLPError(
                    f"could not start a private Ray on this machine: {first_line(exc)}"
                ) from None
        else:
            # A private Ray's workers inherit this process's environment; a cluster's
            # workers have their own, so they are given mlp's settings (MLP_DATA_DIR, the
            # mirror...). (Workers with a runtime environment of their own are started
            # afresh, which costs seconds.)
            mlp_env = {key: value for key, value in os.environ.items() if key.startswith("MLP_")}
            try:
                ray.init(address=address, runtime_env={"env_vars": mlp_env}, **quiet)
            except (ConnectionError, RuntimeError) as exc:
                why = first_line(exc)
                if "token" in str(exc.__cause__ or "").lower():
                    why = "it refused this process's authentication token"
                raise UsageError(
                    f"could not join the Ray cluster at {address}: {why}. A cluster started"
                    " with RAY_AUTH_MODE=token needs the same RAY_AUTH_MODE and"
                    " RAY_AUTH_TOKEN here. No trial has run; once the cluster can be"
                    f" joined, start the sweep with `{resume_hint(sweep)} --engine ray"
                    f" --address {address}`."
                ) from None
        # ray.init (in the main thread) takes SIGTERM over with a handler that exits at once,
        # after a crash report of Ray's: the sweep's own stops it, as Ctrl-C does.
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failures reach the table
        made = None
        try:
            if storage is None:  # a new folder, all its own: never one of the user's named ray
                made = tempfile.mkdtemp(prefix=f"{STORAGE_DIR}-", dir=sweep.dir)
            where = str(made or storage)
            # A URI (s3://...) as given: a Path would fold its "//".
            storage_path = where if "://" in where else str(Path(where).resolve())
            with _quiet_worker_deaths():
                return _tune(sweep, todo, storage_path, workers, on_change, should_stop)
        finally:
            try:
                ray.shutdown()
            finally:  # a second Ctrl-C may come while Ray stops
                if made is not None:  # its copies of the checkpoints are in the trials' folders
                    shutil.rmtree(made, ignore_errors=True)


def _tune(
    sweep: Sweep,
    todo: list[int],
    storage_path: str,
    workers: int | None,
    on_change: Callable[[], None],
    should_stop: Callable[[], bool],
) -> bool:
    from ray import tune
    from ray.tune.experiment import Trial as TuneTrial
    from ray.tune.schedulers import ASHAScheduler

    index = {sweep.trials[i].id: i for i in todo}
    plan = {
        sweep.trials[i].id: {
            "config": sweep.trials[i].config,
            "files": _run_files(sweep.run_dir(sweep.trials[i])),
            "run_dir": str(sweep.run_dir(sweep.trials[i])),
        }
        for i in todo
    }
    stopped: list[bool] = []
    saved = [0.0]  # when sweep.json was last written
    unkept: dict[int, str] = {}  # trials whose run could not be copied into the sweep folder: why

    def trial_index(trial: TuneTrial) -> int:
        return index[str(trial.config["trial"])]

    def end(i: int, outcome: Outcome) -> None:
        outcome.history = read_history(sweep.run_dir(sweep.trials[i]))
        sweep.ended(i, outcome)
        sweep.save()
        on_change()

    class Progress(tune.Callback):
        """Tune's events, in the driver, as the sweep's progress."""

        def __reduce__(self) -> tuple[Any, ...]:
            return _unpickled, ()  # Tune pickles its settings; this lives in the driver only

        def on_trial_start(
            self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any
        ) -> None:
            sweep.started(trial_index(trial))
            on_change()

        def on_trial_result(
            self,
            iteration: int,
            trials: list[TuneTrial],
            trial: TuneTrial,
            result: dict[str, Any],
            **info: Any,
        ) -> None:
            i = trial_index(trial)
            if STATUS not in result and sweep.trials[i].status == "running":
                sweep.epoch_ended(i, result)
                if time.monotonic() - saved[0] > SAVE_SECONDS:  # for `mlp sweep show`
                    sweep.save()
                    saved[0] = time.monotonic()
                on_change()

        def on_checkpoint(
            self,
            iteration: int,
            trials: list[TuneTrial],
            trial: TuneTrial,
            checkpoint: tune.Checkpoint,
            **info: Any,
        ) -> None:
            i = trial_index(trial)
            # A trial that has ended (as the sweep says) never has its folder written again.
            if sweep.trials[i].status == "running" and i not in unkept:
                try:
                    with checkpoint.as_directory() as folder:
                        _copy_run(Path(folder), sweep.run_dir(sweep.trials[i]))
                except (MLPError, OSError) as exc:  # Tune would log it and go on
                    unkept[i] = f"its run could not be kept in the sweep folder: {first_line(exc)}"

        def on_trial_complete(
            self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any
        ) -> None:
            i = trial_index(trial)
            last = trial.last_result or {}
            if i in unkept:
                outcome = Outcome("failed", unkept[i])
            elif STATUS in last:
                status, reason = str(last[STATUS]), str(last[REASON]) or None
                outcome = Outcome(status, reason, seconds=float(last[SECONDS]))
            elif stopped:
                outcome = Outcome("interrupted", "the sweep was stopped")
            else:  # stopped by ASHA after an epoch
                outcome = Outcome("pruned")
                try:
                    _keep_last_epoch(sweep.run_dir(sweep.trials[i]))
                except (MLPError, OSError) as exc:  # Tune would log it and go on
                    reason = f"its model.npz could not be written: {first_line(exc)}"
                    outcome = Outcome("failed", reason)
            end(i, outcome)

        def on_trial_error(
            self, iteration: int, trials: list[TuneTrial], trial: TuneTrial, **info: Any
        ) -> None:
            lines = str(trial.get_error() or "").strip().splitlines()
            said = lines[-1] if lines else "no error message"
            reason = f"it failed on Ray {trial.num_failures} time(s); the last error: {said}"
            end(trial_index(trial), Outcome("failed", reason))

    class StopAll(tune.Stopper):
        def __reduce__(self) -> tuple[Any, ...]:
            return _unpickled, ()

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            if not stopped and should_stop():
                stopped.append(True)
            return bool(stopped)

    class Asha(ASHAScheduler):
        """Ray Tune's ASHA, except at a trial's last epoch: stopping a trial there saves
        nothing, and would keep it from writing its end (the local engine lets it too)."""

        def on_trial_result(
            self, tune_controller: Any, trial: TuneTrial, result: dict[str, Any]
        ) -> str:
            decision: str = super().on_trial_result(tune_controller, trial, result)
            return self.CONTINUE if result.get(LAST) else decision

    scheduler = None
    early = sweep.early_terminate
    if early is not None:
        longest = max(sweep.trials[i].epochs for i in todo)
        scheduler = Asha(
            time_attr="epoch",
            metric=sweep.metric,
            mode="max" if sweep.goal == "maximize" else "min",
            grace_period=early.grace_period,
            reduction_factor=early.reduction_factor,
            max_t=max(longest, early.grace_period),
        )
    trainable = tune.with_resources(
        tune.with_parameters(trial, plan=plan, threads=sweep.cpus_per_trial),
        {"cpu": sweep.cpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(plan))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, max_concurrent_trials=workers, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=sweep.name,
            storage_path=storage_path,
            stop=StopAll(),
            callbacks=[Progress()],
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=0,
        ),
    )
    tuner.fit()
    sweep.interrupt_running("the sweep was stopped" if stopped else "Ray ended it without a result")
    return not stopped


def _unpickled() -> None:
    """What the driver's callbacks become in the copy of the settings Ray Tune keeps (for
    `Tuner.restore`, which mlp does not use: `mlp sweep --resume` starts anew)."""
