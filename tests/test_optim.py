"""Tests for `mlp_cli.optim`: one or two steps of every optimizer worked out by hand with plain
Python floats (in both the compiled and the NumPy version), the two versions against each
other bit for bit, state round trips, and the learning-rate schedules against their formulas."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

import mlp_cli
from mlp_cli import config, optim
from mlp_cli.errors import CheckpointError
from mlp_cli.optim import (
    FLUSH_EVERY,
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    Schedule,
)

F64 = np.dtype(np.float64)
N_WEIGHTS = 3  # params[:3] are weights, params[3:] biases
P0 = [0.5, -1.0, 2.0, 0.25, -0.75]
G1 = [0.1, -0.2, 0.3, -0.4, 0.5]
G2 = [-0.3, 0.05, 0.2, 0.1, -0.6]


@pytest.fixture(params=["compiled", "numpy"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the compiled update loops, then with the NumPy version."""
    if request.param == "numpy":
        monkeypatch.setattr(optim, "compiled_kernels", lambda: None)
    else:
        assert optim.compiled_kernels() is not None, "numba is a dependency"
    return str(request.param)


def run_steps(opt: Optimizer, grads: list[list[float]], lrs: list[float]) -> list[float]:
    params = np.array(P0)
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(params, np.array(g), lr)
    return [float(p) for p in params]


# -- one step by hand -------------------------------------------------------------------------


@pytest.mark.usefixtures("engine")
def test_sgd_step_by_hand() -> None:
    lr = 0.1
    want = [p - lr * g for p, g in zip(P0, G1, strict=True)]
    assert run_steps(SGD(5, F64, N_WEIGHTS), [G1], [lr]) == pytest.approx(want, rel=1e-15)


@pytest.mark.usefixtures("engine")
def test_sgd_momentum_two_steps_by_hand() -> None:
    lr1, lr2, mu = 0.1, 0.05, 0.9
    want = []
    for p, g1, g2 in zip(P0, G1, G2, strict=True):
        v = -lr1 * g1
        p += v
        v = mu * v - lr2 * g2
        want.append(p + v)
    got = run_steps(SGD(5, F64, N_WEIGHTS, momentum=mu), [G1, G2], [lr1, lr2])
    assert got == pytest.approx(want, rel=1e-14)


@pytest.mark.usefixtures("engine")
def test_nesterov_two_steps_by_hand() -> None:
    lr, mu = 0.1, 0.9
    want = []
    for p, g1, g2 in zip(P0, G1, G2, strict=True):
        v = -lr * g1
        p += mu * v - lr * g1
        v = mu * v - lr * g2
        want.append(p + mu * v - lr * g2)
    got = run_steps(SGD(5, F64, N_WEIGHTS, momentum=mu, nesterov=True), [G1, G2], [lr, lr])
    assert got == pytest.approx(want, rel=1e-14)


def adam_by_hand(
    grads: list[list[float]], lr: float, b1: float, b2: float, eps: float, wd: float
) -> list[float]:
    out = []
    for i, p in enumerate(P0):
        m = v = 0.0
        for t, g in enumerate((gs[i] for gs in grads), start=1):
            if wd and i < N_WEIGHTS:
                p *= 1.0 - lr * wd
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            p -= lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(p)
    return out


@pytest.mark.usefixtures("engine")
def test_adam_first_step_moves_each_parameter_by_about_lr_against_the_gradient() -> None:
    lr = 0.01
    got = run_steps(Adam(5, F64, N_WEIGHTS), [G1], [lr])
    assert got == pytest.approx(adam_by_hand([G1], lr, 0.9, 0.999, 1e-8, 0.0), rel=1e-14)
    for p, q, g in zip(P0, got, G1, strict=True):
        assert q - p == pytest.approx(-lr * math.copysign(1.0, g), rel=1e-6)


@pytest.mark.usefixtures("engine")
def test_adam_two_steps_by_hand() -> None:
    opt = Adam(5, F64, N_WEIGHTS, beta1=0.8, beta2=0.99, eps=1e-3)
    got = run_steps(opt, [G1, G2], [0.01, 0.01])
    assert got == pytest.approx(adam_by_hand([G1, G2], 0.01, 0.8, 0.99, 1e-3, 0.0), rel=1e-13)
    assert opt.t == 2


@pytest.mark.usefixtures("engine")
def test_adamw_decays_weights_only_decoupled_from_the_gradient() -> None:
    lr, wd = 0.01, 0.5
    got = run_steps(AdamW(5, F64, N_WEIGHTS, weight_decay=wd), [G1, G2], [lr, lr])
    assert got == pytest.approx(adam_by_hand([G1, G2], lr, 0.9, 0.999, 1e-8, wd), rel=1e-13)
    plain = run_steps(Adam(5, F64, N_WEIGHTS), [G1, G2], [lr, lr])
    assert got[N_WEIGHTS:] == plain[N_WEIGHTS:]  # biases: exactly Adam's step
    assert all(
        w != pytest.approx(a, rel=1e-6)
        for w, a in zip(got[:N_WEIGHTS], plain[:N_WEIGHTS], strict=True)
    )


@pytest.mark.usefixtures("engine")
def test_adamw_with_zero_gradient_only_shrinks_the_weights() -> None:
    lr, wd = 0.1, 0.2
    got = run_steps(AdamW(5, F64, N_WEIGHTS, weight_decay=wd), [[0.0] * 5], [lr])
    want = [p * (1 - lr * wd) for p in P0[:N_WEIGHTS]] + P0[N_WEIGHTS:]
    assert got == pytest.approx(want, rel=1e-15)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_rmsprop_two_steps_by_hand(momentum: float) -> None:
    lr, rho, eps = 0.01, 0.9, 1e-8
    want = []
    for i, p in enumerate(P0):
        s = buf = 0.0
        for g in (G1[i], G2[i]):
            s = rho * s + (1 - rho) * g * g
            u = g / (math.sqrt(s) + eps)
            buf = momentum * buf + u
            p -= lr * (buf if momentum else u)
        want.append(p)
    got = run_steps(RMSprop(5, F64, N_WEIGHTS, momentum=momentum), [G1, G2], [lr, lr])
    assert got == pytest.approx(want, rel=1e-13)


def test_the_registry_builds_optimizers_by_name_with_hyperparameters() -> None:
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}
    opt = OPTIMIZERS["sgd"](5, F64, N_WEIGHTS, momentum=0.9, nesterov=True)
    assert isinstance(opt, SGD)
    assert (opt.momentum, opt.nesterov) == (0.9, True)
    adamw = OPTIMIZERS["adamw"](5, F64, N_WEIGHTS, weight_decay=0.1)
    assert isinstance(adamw, AdamW)
    assert adamw.weight_decay == 0.1


def test_each_config_class_has_its_optimizer_whose_hyperparameters_are_its_fields() -> None:
    assert set(OPTIMIZERS) == set(config.OPTIMIZERS)
    for name, section in config.OPTIMIZERS.items():
        fields = set(section.model_fields) - {"name", "lr"}
        defaults = OPTIMIZERS[name](5, F64, N_WEIGHTS)
        assert {k: getattr(defaults, k) for k in fields} == section().model_dump(include=fields)
        # Each field reaches the rule: another value changes the steps (with momentum on).
        base: dict[str, Any] = {"momentum": 0.5} if "momentum" in fields else {}
        want = run_steps(OPTIMIZERS[name](5, F64, N_WEIGHTS, **base), [G1, G2], [0.1] * 2)
        for key in fields:
            value = base.get(key, section.model_fields[key].default)
            other = (not value) if isinstance(value, bool) else value / 2 or 0.5
            changed = OPTIMIZERS[name](5, F64, N_WEIGHTS, **(base | {key: other}))
            assert getattr(changed, key) == other
            assert run_steps(changed, [G1, G2], [0.1] * 2) != want, (name, key)


def test_unknown_hyperparameters_are_refused() -> None:
    with pytest.raises(ValidationError, match="beta1"):
        OPTIMIZERS["sgd"](5, F64, N_WEIGHTS, beta1=0.9)


@pytest.mark.usefixtures("engine")
def test_float32_updates_stay_float32() -> None:
    for name in OPTIMIZERS:
        opt = OPTIMIZERS[name](5, np.dtype(np.float32), N_WEIGHTS)
        params = np.array(P0, dtype=np.float32)
        opt.step(params, np.array(G1, dtype=np.float32), 0.01)
        assert params.dtype == np.float32
        assert all(a.dtype == np.float32 for k, a in opt.state_dict().items() if k != "t")


@pytest.mark.usefixtures("engine")
def test_adam_flushes_vanishing_second_moments_to_zero() -> None:
    # v of a parameter whose gradient stopped decays geometrically; in float32 it would end
    # up subnormal.  It is set to zero on every FLUSH_EVERY-th step, without changing steps.
    opt = Adam(2, np.dtype(np.float32), 1)
    params = np.zeros(2, dtype=np.float32)
    opt.step(params, np.array([1e-17, 1.0], dtype=np.float32), 1e-3)
    for _ in range(FLUSH_EVERY - 2):
        opt.step(params, np.array([0.0, 1.0], dtype=np.float32), 1e-3)
    assert opt.t == FLUSH_EVERY - 1
    assert 0.0 < opt.v[0] < 1e-30
    opt.step(params, np.array([0.0, 1.0], dtype=np.float32), 1e-3)
    assert opt.v[0] == 0.0
    assert opt.v[1] > 0.0


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop"])
def test_flushing_changes_no_update_even_with_a_tiny_eps(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gradient of 1e-16 keeps the squared average near 1e-32, below FLUSH_BELOW, and the
    # running mean of gradients (Adam) or the gradient itself (RMSprop) near 1e-16: the step
    # divides one by the other, and an eps of 1e-30 must not take the flushed zero's place.
    def run(flush_every: int) -> bytes:
        monkeypatch.setattr(optim, "FLUSH_EVERY", flush_every)
        opt = OPTIMIZERS[name](2, np.dtype(np.float32), 1, eps=1e-30)
        params = np.zeros(2, dtype=np.float32)
        for _ in range(2 * FLUSH_EVERY + 1):
            opt.step(params, np.array([1e-16, 1.0], dtype=np.float32), 1e-3)
        return params.tobytes()

    assert run(FLUSH_EVERY) == run(10**9)


# -- the compiled loops against the NumPy version ---------------------------------------------

BUILDERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": lambda n, dt, **kw: SGD(n, dt, n // 2, **kw),
    "momentum": lambda n, dt, **kw: SGD(n, dt, n // 2, momentum=0.9, **kw),
    "nesterov": lambda n, dt, **kw: SGD(n, dt, n // 2, momentum=0.9, nesterov=True, **kw),
    "adam": lambda n, dt, **kw: Adam(n, dt, n // 2, **kw),
    "adamw": lambda n, dt, **kw: AdamW(n, dt, n // 2, weight_decay=0.1, **kw),
    "rmsprop": lambda n, dt, **kw: RMSprop(n, dt, n // 2, **kw),
    "rmsprop-momentum": lambda n, dt, **kw: RMSprop(n, dt, n // 2, momentum=0.5, **kw),
}


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", BUILDERS)
def test_compiled_and_numpy_versions_give_the_same_bits(
    kind: str, dtype: type, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than one block, more than one flush, gradients from 1 down to 1e-25 (whose
    # squares are subnormal or zero in float32), exact zeros, and one inf (then inf or NaN).
    # With threads, the compiled update is shared among as many threads as numba may run;
    # the weights (n // 2 entries, which AdamW decays) end inside a block and a thread's share.
    n, rng = 2 * optim.BLOCK + 123, np.random.default_rng(7)
    monkeypatch.setattr(optim, "THREAD_MIN", 4096)
    compiled = BUILDERS[kind](n, np.dtype(dtype), threads=threads)
    reference = BUILDERS[kind](n, np.dtype(dtype), compiled=False, threads=threads)
    assert compiled.kernels is not None
    assert reference.kernels is None
    assert reference.threads == 1
    assert compiled.threads == threads
    assert (n // 2) % 4096 != 0
    p_compiled: NDArray[np.floating] = rng.standard_normal(n).astype(dtype)
    p_reference = p_compiled.copy()
    for step in range(2 * FLUSH_EVERY + 5):
        g = rng.standard_normal(n) * 10.0 ** rng.integers(-25, 1, n)
        g[rng.random(n) < 0.2] = 0.0
        g[step] = np.inf if step == 150 else g[step]
        lr = 10 ** rng.uniform(-4, -1)
        compiled.step(p_compiled, g.astype(dtype), lr)
        with np.errstate(invalid="ignore"):  # inf / inf, which the loop does silently
            reference.step(p_reference, g.astype(dtype), lr)
    assert not np.isfinite(p_reference).all()
    assert p_compiled.tobytes() == p_reference.tobytes()
    for name in compiled.state_names:
        state = getattr(compiled, name)
        assert state.tobytes() == getattr(reference, name).tobytes(), name


@pytest.mark.parametrize(
    ("size", "threads", "used"),
    [
        (10, 4, 1),
        (optim.THREAD_MIN * 2 - 1, 4, 1),
        (optim.THREAD_MIN * 2, 4, 2),
        (optim.THREAD_MIN * 4, 4, 4),
    ],
)
def test_only_large_updates_are_shared_among_threads(size: int, threads: int, used: int) -> None:
    opt = SGD(size, np.dtype(np.float32), size, threads=threads)
    assert opt.threads == used


def test_updates_from_several_threads_at_once_run_one_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # numba's workqueue aborts the process when two parallel loops start at once
    import threading

    monkeypatch.setattr(optim, "THREAD_MIN", 1 << 16)  # parallel loops, on small arrays
    n = optim.THREAD_MIN * 4
    optimizers = [Adam(n, np.dtype(np.float32), n, threads=2) for _ in range(4)]
    params = [np.zeros(n, np.float32) for _ in optimizers]
    gradient = np.ones(n, np.float32)

    def train(opt: Optimizer, p: NDArray[np.floating]) -> None:
        for _ in range(50):
            opt.step(p, gradient, 1e-3)

    pairs = zip(optimizers, params, strict=True)
    threads = [threading.Thread(target=train, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(p.tobytes() == params[0].tobytes() for p in params)
    assert params[0][0] < 0


def test_a_second_process_loads_the_update_loops_from_numba_cache(tmp_path: Path) -> None:
    # Each loop is compiled once per machine, not once per run: numba's cache must find it.
    script = (
        "import numpy as np; from mlp_cli import kernels, optim;"
        "optim.THREAD_MIN = 1 << 12; n = optim.THREAD_MIN * 2;"
        "[optim.OPTIMIZERS[name](n, np.dtype(np.float32), n, threads=t).step("
        " np.zeros(n, np.float32), np.ones(n, np.float32), 0.1)"
        " for name in ('sgd', 'adam', 'rmsprop') for t in (1, 2)];"
        "print(sorted(f'{f.__name__} {len(f.stats.cache_hits)} {len(f.stats.cache_misses)}'"
        " for loops in kernels._LOOPS.values() for f in loops))"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    from mlp_cli import kernels

    loops = sorted(f.__name__ for pair in kernels._LOOPS.values() for f in pair)
    kinds = [
        f"{rule}_{kind}_" for rule in ("adam", "rmsprop", "sgd") for kind in ("parallel", "serial")
    ]
    assert [name[: len(kind)] for name, kind in zip(loops, kinds, strict=True)] == kinds
    assert runs == [str([f"{loop} 0 1" for loop in loops]), str([f"{loop} 1 0" for loop in loops])]


def test_an_edited_rule_gets_a_loop_of_its_own_name() -> None:
    # numba checks a cached loop against kernels.py's source only: a rule edited in optim.py
    # must not find the loop compiled from its old code.
    from mlp_cli import kernels

    def sgd(p: Any, g: Any, v: Any, w: Any, h: Any) -> tuple[Any, Any, Any]:
        return p - g, v, w

    def sgd_edited(p: Any, g: Any, v: Any, w: Any, h: Any) -> tuple[Any, Any, Any]:
        return p + g, v, w

    sgd_edited.__name__ = "sgd"
    names = {kernels._loop(rule, False).__name__ for rule in (sgd, sgd_edited)}
    assert len(names) == 2
    assert all(name.startswith("sgd_serial_") for name in names)


@pytest.mark.parametrize(("chosen", "used"), [(None, "workqueue"), ("omp", "omp")])
def test_the_update_threads_sleep_between_updates_unless_the_user_chose(
    chosen: str | None, used: str
) -> None:
    script = (
        "import numba, numpy as np; from mlp_cli import optim;"
        "optim.THREAD_MIN = 1 << 12; n = optim.THREAD_MIN * 4;"
        "opt = optim.SGD(n, np.dtype(np.float32), n, threads=2);"
        "opt.step(np.zeros(n, np.float32), np.ones(n, np.float32), 0.1);"
        "print(numba.threading_layer())"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if chosen:
        env["NUMBA_THREADING_LAYER"] = chosen
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == used


def test_the_numpy_version_stays_on_one_thread() -> None:
    assert Adam(10**7, np.dtype(np.float32), 10**7, compiled=False, threads=4).threads == 1


def test_without_numba_the_optimizers_run_the_numpy_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` fail
    monkeypatch.delitem(sys.modules, "mlp_cli.kernels", raising=False)
    monkeypatch.delattr(mlp_cli, "kernels", raising=False)
    assert optim.compiled_kernels() is None
    opt = Adam(5, F64, N_WEIGHTS)
    assert opt.kernels is None
    got = run_steps(opt, [G1], [0.01])
    assert got == pytest.approx(adam_by_hand([G1], 0.01, 0.9, 0.999, 1e-8, 0.0), rel=1e-14)


@pytest.mark.parametrize(
    "error",
    [
        # What llvmlite raises where its library cannot be mapped (`ulimit -v` too low for
        # it) or is missing: no setting of numba's is at fault.
        "OSError(\"Could not find/load shared object file 'libllvmlite.so'\")",
        # What the import raises where the library maps but the rest of numba does not fit
        # (`ulimit -v` a little higher): no setting either, and no message to quote.
        "MemoryError()",
    ],
)
def test_a_numba_whose_compiler_library_does_not_load_runs_the_numpy_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: str
) -> None:
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text(f"raise {error}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "numba", raising=False)
    monkeypatch.delitem(sys.modules, "mlp_cli.kernels", raising=False)
    monkeypatch.delattr(mlp_cli, "kernels", raising=False)
    assert optim.compiled_kernels() is None
    assert Adam(5, F64, N_WEIGHTS).kernels is None


# -- state round trips ------------------------------------------------------------------------

FACTORIES: dict[str, Callable[[], Optimizer]] = {
    "sgd": lambda: SGD(5, F64, N_WEIGHTS),
    "momentum": lambda: SGD(5, F64, N_WEIGHTS, momentum=0.9),
    "nesterov": lambda: SGD(5, F64, N_WEIGHTS, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(5, F64, N_WEIGHTS),
    "adamw": lambda: AdamW(5, F64, N_WEIGHTS, weight_decay=0.1),
    "rmsprop": lambda: RMSprop(5, F64, N_WEIGHTS, momentum=0.5),
}


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("kind", FACTORIES)
def test_state_dict_round_trip_gives_identical_subsequent_steps(kind: str) -> None:
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 5))
    first = FACTORIES[kind]()
    params = np.array(P0)
    for g in grads[:3]:
        first.step(params, g, 0.01)
    saved = {k: np.array(v, copy=True) for k, v in first.state_dict().items()}
    assert saved["t"] == 3
    assert set(saved) == {"t", *first.state_names}

    second = FACTORIES[kind]()
    second.load_state_dict(saved)
    resumed = params.copy()
    for g in grads[3:]:
        first.step(params, g, 0.01)
        second.step(resumed, g, 0.01)
    assert params.tobytes() == resumed.tobytes()
    for name, value in first.state_dict().items():
        np.testing.assert_array_equal(second.state_dict()[name], value)


def test_state_with_the_wrong_shape_is_a_checkpoint_error() -> None:
    opt = Adam(5, F64, N_WEIGHTS)
    state = {"t": np.array(3), "m": np.zeros(5), "v": np.zeros(4)}
    with pytest.raises(CheckpointError, match=r"'v'.*\(4,\).*5 parameters"):
        opt.load_state_dict(state)


def test_state_missing_an_entry_is_a_checkpoint_error() -> None:
    opt = RMSprop(5, F64, N_WEIGHTS)
    with pytest.raises(CheckpointError, match="velocity"):
        opt.load_state_dict({"t": np.array(1), "square_avg": np.zeros(5)})


@pytest.mark.parametrize(
    "state",
    [
        {"t": np.array([1, 2]), "velocity": np.zeros(5)},
        {"t": np.array(1), "velocity": np.array(["x"] * 5)},
    ],
    ids=["t-not-a-scalar", "velocity-not-numbers"],
)
def test_damaged_state_values_are_a_checkpoint_error(state: dict[str, NDArray[np.generic]]) -> None:
    with pytest.raises(CheckpointError):
        SGD(5, F64, N_WEIGHTS, momentum=0.9).load_state_dict(state)


# -- schedules --------------------------------------------------------------------------------


def test_constant_schedule() -> None:
    s = Schedule("constant", 0.3, epochs=10)
    assert [s(p) for p in (0.0, 0.5, 9.99, 10.0)] == [0.3] * 4


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs() -> None:
    s = Schedule("step", 0.2, epochs=30, step_size=10, gamma=0.5)
    assert s(0.0) == 0.2
    assert s(9.999) == 0.2
    assert s(10.0) == pytest.approx(0.1)
    assert s(25.0) == pytest.approx(0.05)


def test_cosine_schedule_goes_from_base_to_min_lr() -> None:
    base, low, epochs = 0.1, 0.001, 20
    s = Schedule("cosine", base, epochs=epochs, min_lr=low)
    for p in (0.0, 3.0, 10.0, 17.5, 20.0):
        want = low + 0.5 * (base - low) * (1 + math.cos(math.pi * p / epochs))
        assert s(p) == pytest.approx(want, rel=1e-12)
    assert s(0.0) == pytest.approx(base)
    assert s(epochs) == pytest.approx(low)
    assert s(epochs / 2) == pytest.approx((base + low) / 2)
    values = [s(p / 4) for p in range(4 * epochs + 1)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_onecycle_rises_to_base_at_30_percent_then_falls_to_min_lr() -> None:
    base, epochs = 0.1, 10
    s = Schedule("onecycle", base, epochs=epochs, min_lr=1e-5)
    assert s(0.0) == pytest.approx(base / 25)
    assert s(3.0) == pytest.approx(base)
    assert s(1.5) == pytest.approx(base / 25 + 0.5 * (base - base / 25))
    assert s(3.0 + 3.5) == pytest.approx(1e-5 + 0.5 * (base - 1e-5))
    assert s(float(epochs)) == pytest.approx(1e-5)
    rising = [s(0.3 * k) for k in range(11)]
    falling = [s(3.0 + 0.7 * k) for k in range(11)]
    assert all(a < b for a, b in itertools.pairwise(rising))
    assert all(a > b for a, b in itertools.pairwise(falling))
    # min_lr above base/25 is also where the cycle starts
    assert Schedule("onecycle", base, epochs=epochs, min_lr=0.01)(0.0) == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["constant", "step", "onecycle"])
def test_warmup_scales_the_shape_linearly_from_zero(name: str) -> None:
    plain = Schedule(name, 0.1, epochs=10, step_size=1, gamma=0.5)
    s = Schedule(name, 0.1, epochs=10, step_size=1, gamma=0.5, warmup_epochs=2.0)
    assert s(0.0) == 0.0
    for p in (0.5, 1.0, 1.5):
        assert s(p) == pytest.approx(plain(p) * p / 2.0, rel=1e-12)
    for p in (2.0, 4.5, 10.0):
        assert s(p) == plain(p)


def test_warmed_up_constant_reaches_base_at_the_end_of_warmup() -> None:
    s = Schedule("constant", 0.1, epochs=10, warmup_epochs=0.5)
    assert s(0.0) == 0.0
    assert s(0.25) == pytest.approx(0.05)
    assert s(0.5) == 0.1
    assert s(3.0) == 0.1


def test_warmed_up_cosine_peaks_at_the_end_of_warmup_and_ends_at_min_lr() -> None:
    s = Schedule("cosine", 0.1, epochs=10, warmup_epochs=2.0, min_lr=0.002)
    assert s(0.0) == 0.0
    assert s(1.0) == pytest.approx(0.05)
    assert s(2.0) == pytest.approx(0.1)
    assert s(6.0) == pytest.approx(0.002 + 0.5 * (0.1 - 0.002))
    assert s(10.0) == pytest.approx(0.002)


def test_a_schedule_is_built_from_its_config_section_by_field_name() -> None:
    section = config.ScheduleConfig(name="step", warmup_epochs=1.5, step_size=3, gamma=0.5)
    got = Schedule.from_config(section, 0.2, epochs=12)
    want = Schedule("step", 0.2, 12, warmup_epochs=1.5, step_size=3, gamma=0.5, min_lr=0.0)
    assert got == want
    assert got(4.0) == pytest.approx(0.1)


def _loading_kernels(
    env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A fresh process that loads the compiled kernels and prints what it raised, if any."""
    script = (
        "from mlp_cli import optim\n"
        "try:\n    optim.compiled_kernels()\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )


def test_numba_refusing_its_environment_is_a_usage_error() -> None:
    out = _loading_kernels({**os.environ, "NUMBA_NUM_THREADS": "0"}).stdout
    assert out.startswith("UsageError numba could not start")
    assert "NUMBA_NUM_THREADS must be 1 or more" in out


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("junk", "NUMBA_NUM_THREADS is 'junk', not a whole number"),
        ("1.5", "NUMBA_NUM_THREADS is '1.5', not a whole number"),
        (str(100 * (os.cpu_count() or 1)), "more threads than this machine has CPUs"),
    ],
)
def test_a_numba_thread_count_numba_would_let_pass_is_a_usage_error(
    value: str, problem: str
) -> None:
    proc = _loading_kernels({**os.environ, "NUMBA_NUM_THREADS": value})
    assert proc.stdout.startswith("UsageError numba could not start")
    assert problem in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("variable", "file", "problem"),
    [
        ("NUMBA_OPT=x", None, "'NUMBA_OPT' is defined but its associated value 'x' could not"),
        (None, "[", "while parsing a flow node"),
        (None, "- 1", "'list' object has no attribute 'items'"),
    ],
    ids=["unparsable-variable", "config-file-no-yaml", "config-file-no-mapping"],
)
def test_numba_settings_numba_cannot_read_are_a_usage_error(
    tmp_path: Path, variable: str | None, file: str | None, problem: str
) -> None:
    # numba reads NUMBA_* and a .numba_config.yaml in the current folder as it loads: it
    # warns, with a traceback, of a value it cannot parse, and fails on a file it cannot read.
    env = dict(os.environ)
    if variable is not None:
        name, _, value = variable.partition("=")
        env[name] = value
    if file is not None:
        (tmp_path / ".numba_config.yaml").write_text(file)
    proc = _loading_kernels(env, cwd=tmp_path)
    assert proc.stdout.startswith("UsageError numba could not start")
    assert problem in proc.stdout
    assert ".numba_config.yaml" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("layer", ["bogus", "tbb"])
def test_a_threading_layer_numba_cannot_load_is_refused_when_the_optimizer_is_built(
    layer: str,
) -> None:
    # numba loads its threading layer at the first parallel loop: in a run, its first update
    if layer == "tbb" and importlib.util.find_spec("tbb") is not None:
        pytest.skip("TBB is installed here")
    script = (
        "import numpy as np\n"
        "from mlp_cli import optim\n"
        "optim.THREAD_MIN = 4096\n"
        "try:\n    optim.SGD(2 * 4096, np.dtype(np.float32), 4096, threads=2)\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("UsageError numba could not start its threads")
    assert "NUMBA_THREADING_LAYER" in proc.stdout
    assert proc.stderr == ""
