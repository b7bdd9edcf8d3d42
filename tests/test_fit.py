"""jaxmom.sweep.fit: every cell equals a plain training loop run alone (MLP and CNN, seeds, the
partial last batch, drop_last), chunking, bad cells refused before compiling, checkpoints that
resume bit-identically after kill -9 and refuse tampered files, memory, progress."""

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fit_problem import (
    IMAGES,
    LABELS,
    X,
    Y,
    cnn_init,
    cnn_loss,
    mlp_init,
    mlp_logits,
    mlp_loss,
    mlp_metrics,
    plain_loop,
    sgd,
)  # fmt: skip

import jaxmom
from jaxmom import sweep

# Internals pinned here, and why: _setup.setup (a setup's stepwise flag), _checkpoint.Checkpoint
# .save (a window for kill -9), _driver.run_epochs (which epochs a resume trains), _memory's
# estimate and _programs' compiled programs (peak memory against the estimate).
from jaxmom.sweep import _driver, _memory, _setup

# ---- a cell equals the plain loop (fit_problem.plain_loop) ---------------------------------------


def assert_cell_equals_loop(res, index, cell, init, loss, train, batch_size, epochs, seed, **kw):
    params, losses = plain_loop(init, loss, sgd, cell, train, batch_size, epochs, seed, **kw)
    np.testing.assert_allclose(res.metrics["loss"][index], losses, rtol=2e-5, atol=2e-6)
    got = jax.tree.map(lambda x: x[index], res.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5), got, params)


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_mlp_cell_with_two_seeds_equals_the_plain_loop(drop_last):
    grid = sweep.product(lr=[0.05, 0.3], momentum=[0.0, 0.9]).with_seeds(2)
    res = sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, drop_last=drop_last, return_params=True, progress=False, chunk_size=None,
    )  # fmt: skip
    steps = 2 if drop_last else 3  # 40 = 16 + 16 + 8: the partial batch is kept or dropped
    assert res.metrics["loss"].shape == (2, 2, 2, 2 * steps)
    assert res.metrics["epoch_loss"].shape == (2, 2, 2, 2)
    np.testing.assert_allclose(
        res.metrics["epoch_loss"], res.metrics["loss"].reshape(2, 2, 2, 2, steps).mean(-1)
    )
    for i, lr in enumerate([0.05, 0.3]):
        for j, mu in enumerate([0.0, 0.9]):
            for seed in (0, 1):
                assert_cell_equals_loop(
                    res, (i, j, seed), {"lr": lr, "momentum": mu}, mlp_init, mlp_loss,
                    (X, Y), 16, 2, seed, drop_last=drop_last,
                )  # fmt: skip


def test_cnn_cells_with_two_seeds_and_a_partial_batch_equal_the_plain_loop():
    grid = sweep.product(lr=[0.02, 0.1], momentum=[0.9]).with_seeds(2)
    res = sweep.fit(
        grid, init=cnn_init, loss=cnn_loss, optimizer=sgd, train=(IMAGES, LABELS), batch_size=8,
        epochs=2, return_params=True, progress=False, chunk_size=None,
    )  # fmt: skip
    assert res.metrics["loss"].shape == (2, 1, 2, 6)  # 20 = 8 + 8 + 4
    s = _setup.setup(grid, init=cnn_init, loss=cnn_loss, optimizer=sgd, train=(IMAGES, LABELS),
                   batch_size=8, epochs=2)  # fmt: skip
    assert s.stepwise == (jax.default_backend() == "cpu")  # a Python loop of compiled steps
    for i, lr in enumerate([0.02, 0.1]):
        for seed in (0, 1):
            assert_cell_equals_loop(
                res, (i, 0, seed), {"lr": lr, "momentum": 0.9}, cnn_init, cnn_loss,
                (IMAGES, LABELS), 8, 2, seed,
            )  # fmt: skip


def test_without_a_seed_axis_every_cell_uses_seed_and_evaluation_averages_all_of_eval():
    grid = sweep.product(lr=[0.1, 0.5], momentum=[0.5])
    res = sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, seed=3, eval=(X[:25], Y[:25]), evaluate=mlp_metrics, eval_batch_size=10,
        return_params=True, progress=False,
    )  # fmt: skip
    for i, lr in enumerate([0.1, 0.5]):
        assert_cell_equals_loop(
            res, (i, 0), {"lr": lr, "momentum": 0.5}, mlp_init, mlp_loss, (X, Y), 16, 2, 3
        )
        logits = mlp_logits(jax.tree.map(lambda x: x[i, 0], res.params), X[:25])
        accuracy = np.mean(np.argmax(logits, -1) == Y[:25])
        test_loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, Y[:25]))
        np.testing.assert_allclose(res.metrics["accuracy"][i, 0, -1], accuracy, rtol=1e-6)
        np.testing.assert_allclose(res.metrics["test_loss"][i, 0, -1], test_loss, rtol=1e-5)
    assert res.metrics["accuracy"].shape == (2, 1, 2)
    assert res.eval_seconds > 0


def key_of_64_bit_seed(seed: int):
    """``jax.random.key(seed)`` on the full 64-bit value, as JAX makes it with x64 on."""
    with jax.enable_x64(True):
        data = np.asarray(jax.random.key_data(jax.random.key(np.uint64(seed))))
    return jax.random.wrap_key_data(data.astype(np.uint32), impl="threefry2x32")


def test_seeds_beyond_32_bits_are_exact_on_the_seed_axis_and_as_the_shared_seed():
    big = [2**32 + 5, 2**63 + 11]
    grid = sweep.product(lr=[0.1], momentum=[0.5]).with_seeds(big)
    kw = dict(init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=1,
              return_params=True, progress=False)  # fmt: skip
    res = sweep.fit(grid, **kw)
    cell = {"lr": 0.1, "momentum": 0.5}
    for i, seed in enumerate(big):
        key = key_of_64_bit_seed(seed)
        assert_cell_equals_loop(res, (0, 0, i), cell, mlp_init, mlp_loss, (X, Y), 16, 1, key)
    shared = sweep.fit(sweep.product(lr=[0.1], momentum=[0.5]), seed=big[0], **kw)
    np.testing.assert_array_equal(shared.metrics["loss"][0, 0], res.metrics["loss"][0, 0, 0])
    with pytest.raises(ValueError, match=r"^seed .*0\.\.18446744073709551615"):
        sweep.fit(sweep.product(lr=[0.1], momentum=[0.5]), seed=2**64, **kw)


def sgd_wd(h):
    return jaxmom.sgd(h["lr"], 0.9, weight_decay=0.01)


def test_fixed_values_and_eval_params_reach_the_optimizer_and_the_evaluation():
    calls = []

    def make_tx(h):
        return jaxmom.sgd(h["lr"], h["momentum"], weight_decay=h["weight_decay"])

    def eval_params(params, opt_state):
        calls.append(type(opt_state))
        return jax.tree.map(jnp.zeros_like, params)

    res = sweep.fit(
        sweep.product(lr=[0.1]), init=mlp_init, loss=mlp_loss, optimizer=make_tx, train=(X, Y),
        batch_size=16, epochs=1, fixed={"momentum": 0.9, "weight_decay": 0.01},
        eval=(X, Y), evaluate=mlp_metrics, eval_params=eval_params, progress=False,
        return_params=True,
    )  # fmt: skip
    params, losses = plain_loop(mlp_init, mlp_loss, sgd_wd, {"lr": 0.1}, (X, Y), 16, 1, 0)
    np.testing.assert_allclose(res.metrics["loss"][0], losses, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(res.metrics["test_loss"][0, 0], np.log(3.0), rtol=1e-6)
    assert calls


# ---- bad input, refused before any compile -------------------------------------------------


def counting_loss():
    traced = []

    def loss(params, x, y):
        traced.append(1)
        return mlp_loss(params, x, y)

    return loss, traced


def test_a_grid_cell_the_optimizer_refuses_names_the_cell_before_compiling():
    loss, traced = counting_loss()
    grid = sweep.product(lr=[0.1], momentum=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"^grid cell lr=0\.1, momentum=1\.0: .*momentum") as e:
        sweep.fit(
            grid, init=mlp_init, loss=loss, optimizer=sgd, train=(X, Y), batch_size=8, epochs=1
        )
    assert "\n" not in str(e.value)
    assert not traced


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"epochs": 1.5}, "epochs must be a positive integer, got 1.5"),
        (
            {"train": (X, Y[:30])},
            r"train arrays need equal leading \(example\) axes, got \[40, 30\]",
        ),
        ({"train": (X[:0], Y[:0])}, "train needs at least one example, got 0"),
        ({"train": X}, "train must be a non-empty tuple of arrays, got ndarray"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer, None or 'auto', got 0"),
        ({"chunk_size": True}, "chunk_size must be a positive integer, None or 'auto', got True"),
        (
            {"chunk_size": "bogus"},
            "chunk_size must be a positive integer, None or 'auto', got 'bogus'",
        ),
        ({"drop_last": True, "batch_size": 64}, "drop_last=True with batch_size 64 above the 40"),
        ({"evaluate": mlp_metrics}, "eval and evaluate go together"),
        ({"fixed": {"lr": 0.1}}, r"fixed hyperparameters \['lr'\] are also axes of the grid"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_compiling(kwargs, message):
    loss, traced = counting_loss()
    args = dict(
        init=mlp_init, loss=loss, optimizer=sgd, train=(X, Y), batch_size=8, epochs=1,
        fixed={"momentum": 0.5},
    )  # fmt: skip
    if "fixed" in kwargs:
        args["fixed"] = {"momentum": 0.5, **kwargs.pop("fixed")}
    with pytest.raises(ValueError, match=message) as e:
        sweep.fit(sweep.product(lr=[0.1]), **{**args, **kwargs})
    assert "\n" not in str(e.value)
    assert not traced


# ---- chunks -------------------------------------------------------------------------------------


@functools.cache
def _mlp_fit(chunk_size, **kw):
    grid = sweep.product(lr=[0.05, 0.1, 0.3], momentum=[0.0, 0.9])
    return sweep.fit(
        grid, init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
        epochs=2, eval=(X, Y), evaluate=mlp_metrics, return_params=True, progress=False,
        chunk_size=chunk_size, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("chunk_size", [1, 4, "auto"])
def test_chunked_equals_unchunked(chunk_size):
    whole, chunked = _mlp_fit(None), _mlp_fit(chunk_size)
    for name in whole.metrics:
        np.testing.assert_allclose(chunked.metrics[name], whole.metrics[name], rtol=1e-6, atol=1e-7)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        chunked.params,
        whole.params,
    )


# ---- several devices, checkpoints, memory: in subprocesses --------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, devices: int = 1, timeout: int = 300, **kw):
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kw,
    )  # fmt: skip


@pytest.mark.slow  # a subprocess with 4 devices
def test_a_grid_over_four_devices_in_chunks_equals_one_device_unchunked():
    out = run_python(
        """
        import jax, numpy as np
        from jaxmom import sweep
        from fit_problem import X, Y, mlp_init, mlp_loss, mlp_metrics, sgd
        assert jax.device_count() == 4, jax.devices()
        grid = sweep.product(lr=[0.05, 0.1, 0.3], momentum=[0.0, 0.9]).with_seeds(1)  # 6 cells
        kw = dict(init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16,
                  epochs=2, eval=(X, Y), evaluate=mlp_metrics, return_params=True, progress=False)
        one = sweep.fit(grid, devices=jax.devices()[:1], chunk_size=None, **kw)
        four = sweep.fit(grid, chunk_size=1, **kw)  # 2 chunks of 4 cells, one per device
        for k in one.metrics:
            np.testing.assert_allclose(four.metrics[k], one.metrics[k], rtol=1e-6, atol=1e-7)
        for a, b in zip(jax.tree.leaves(four.params), jax.tree.leaves(one.params)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        print("ok", len(four.devices))
        """,
        devices=4,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", "4"]


CHECKPOINTED = """
    import sys, time
    import numpy as np
    from jaxmom import sweep
    from jaxmom.sweep._checkpoint import Checkpoint
    from fit_problem import X, Y, mlp_init, mlp_loss, mlp_metrics, sgd

    save = Checkpoint.save

    def slow_save(self, *args):  # a window between epochs for the parent's kill -9
        save(self, *args)
        print("saved", args[0]["chunk"], args[0]["epoch"], flush=True)
        time.sleep(0.5)

    Checkpoint.save = slow_save
    sweep.fit(sweep.product(lr=[0.05, 0.1, 0.3], momentum=[0.0, 0.9]), init=mlp_init,
              loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=3, eval=(X, Y),
              evaluate=mlp_metrics, chunk_size=2, return_params=True, progress=False,
              checkpoint_dir=sys.argv[1])
    print("finished", flush=True)
"""


def checkpointed_fit(folder, **kw):
    return sweep.fit(
        sweep.product(lr=[0.05, 0.1, 0.3], momentum=[0.0, 0.9]), loss=mlp_loss, train=(X, Y),
        batch_size=16, epochs=3, eval=(X, Y), evaluate=mlp_metrics, return_params=True,
        progress=False, checkpoint_dir=folder,
        **{"optimizer": sgd, "init": mlp_init, "chunk_size": 2, **kw},
    )  # fmt: skip


def assert_identical(a, b):
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_run_killed_by_sigkill_between_epochs_resumes_bit_identically(tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHECKPOINTED), str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    seen = []
    for line in child.stdout:  # 3 chunks of 2 cells, 3 epochs each: kill in the second chunk
        seen.append(line.split())
        if seen[-1] == ["saved", "1", "1"]:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, (seen, child.stderr and child.stderr.read())
    assert [f.name for f in tmp_path.glob("fit-*.npz")] == [
        next(tmp_path.glob("fit-*.json")).stem + ".1.1.npz"
    ]

    calls = []
    run_epochs = _driver.run_epochs

    def counted(s, state, cells, e0, e1, *args):
        calls.append((e0, e1))
        return run_epochs(s, state, cells, e0, e1, *args)

    monkeypatch.setattr(_driver, "run_epochs", counted)
    resumed = checkpointed_fit(tmp_path)
    assert calls == [(1, 3), (0, 3)]  # the second chunk resumed after its first epoch
    assert resumed.info["resumed_epochs"] == [[3, 3], [1, 1], [0, 0]]  # cells by chunk of 2
    monkeypatch.undo()
    assert_identical(resumed, checkpointed_fit(None))
    assert checkpointed_fit(None).info["resumed_epochs"] == [[0, 0]] * 3
    finished = checkpointed_fit(tmp_path)
    assert_identical(finished, resumed)  # a finished run loads its results
    assert finished.info["resumed_epochs"] == [[3, 3]] * 3


def half_lr(h):
    return jaxmom.sgd(h["lr"] / 2, h["momentum"])  # the same state as sgd's


def test_another_optimizer_with_the_same_state_never_resumes_this_ones_checkpoint(tmp_path):
    first = checkpointed_fit(tmp_path)
    other = checkpointed_fit(tmp_path, optimizer=half_lr)
    assert len(list(tmp_path.glob("fit-*.json"))) == 2  # one run each, by the optimizer's name
    assert not np.array_equal(first.metrics["loss"], other.metrics["loss"])


def test_bfloat16_params_come_back_as_bfloat16_from_a_finished_checkpoint(tmp_path):
    def init_bf16(key):
        return jax.tree.map(lambda x: x.astype(jnp.bfloat16), mlp_init(key))

    kw = dict(init=init_bf16, optimizer=sgd, chunk_size=6)
    first = checkpointed_fit(tmp_path, **kw)
    again = checkpointed_fit(tmp_path, **kw)  # every chunk finished: all read from the file
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True):
        assert a.dtype == b.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def rewrite_state(folder, change, rehash: bool):
    header_path = next(folder.glob("fit-*.json"))
    header = json.loads(header_path.read_text())
    path = folder / header["file"]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["state/0"] = change(arrays["state/0"])
    np.savez(path, **arrays)
    if rehash:
        header["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        header_path.write_text(json.dumps(header))
    return path


@pytest.mark.parametrize(
    "change, rehash, message",
    [
        (lambda w: w + 1e-3, False, "does not match its sha256"),
        (lambda w: np.full_like(w, np.nan), True, "holds NaN or inf parameters in a cell"),
    ],
    ids=["changed weights", "NaN weights"],
)
def test_a_tampered_checkpoint_is_refused_in_one_line_naming_the_file(
    tmp_path, change, rehash, message
):
    checkpointed_fit(tmp_path)
    path = rewrite_state(tmp_path, change, rehash)
    with pytest.raises(ValueError, match=message) as e:
        checkpointed_fit(tmp_path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


PEAK_RSS = """
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jaxmom import sweep
    from jaxmom.sweep import _memory, _programs, _setup

    configs, chunk = int(sys.argv[1]), sys.argv[2]
    chunk = chunk if chunk == "auto" else None if chunk == "None" else int(chunk)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 1000)).astype(np.float32)
    y = rng.normal(size=(16, 1000)).astype(np.float32)
    init = lambda key: {"w": jax.random.normal(key, (1000, 1000)) * 0.01}   # 4 MB a configuration
    loss = lambda p, x, y: jnp.mean((x @ p["w"] - y) ** 2, axis=-1)
    grid = sweep.product(lr=np.linspace(0.01, 0.1, configs))
    kw = dict(init=init, loss=loss, optimizer=lambda h: optax.sgd(h["lr"], momentum=0.9),
              train=(x, y), batch_size=16, epochs=1, progress=False, memory_budget=200 * 2**20)
    s = _setup.setup(grid, **{k: v for k, v in kw.items() if k not in ("progress", "memory_budget")})
    auto = _memory.auto_chunk_size(s, 200 * 2**20)
    per_config = _memory.bytes_per_config(s.with_chunk(_memory.most_per_device(s)))  # its estimate
    s = s.with_chunk(auto if chunk == "auto" else chunk or s.chunk)
    _programs.init_program(s), _programs.epoch_program(s)  # compiled before: the measure is training's
    def status(field):  # bytes
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from the current RSS
    before = status("VmRSS:")
    res = sweep.fit(grid, chunk_size=chunk, **kw)
    after = status("VmHWM:")
    print(auto, per_config, before, after)
"""


def peak_rss(configs: int, chunk: str):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "MALLOC_MMAP_THRESHOLD_": str(2**20),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_RSS), str(configs), chunk],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    chunk_size, per_config, before, after = map(int, out.stdout.split())
    return chunk_size, per_config, after - before


def test_peak_memory_stays_within_the_auto_chunks_budget_and_flat_in_the_configurations():
    """4 MB of weights a configuration, a 200 MiB budget: chunks of 16 (the CPU's cap too). The
    growth of peak RSS over training (programs compiled before) stays within the budget, and 64
    configurations (in even chunks) need at most 16 MiB more than one chunk's worth of
    configurations (four more configurations' weights; one chunk
    more kept live would be 64 MB), where the whole grid of 64 at once needs more than three
    budgets. Measured: 197 MB for 16 and for 64, 780 MB for 64 at once; identical runs of either
    differ by up to 8.7 MB on a loaded 2-core machine (the tolerance was 4 MiB, which failed 3 runs
    in 10 there).

    Peak RSS is Linux's VmHWM, reset (``/proc/self/clear_refs``) after compiling, whose own peak
    varies. The children allocate blocks above 1 MiB with mmap (``MALLOC_MMAP_THRESHOLD_``), so that RSS
    counts what fit keeps live. With glibc's default, whose threshold rises to the largest block
    freed, the 67 MB of gradients and temporaries freed after each epoch stay in one of its
    per-thread heaps, not always the one the next epoch allocates from: 64 configurations then
    measured 16 to 48 MB above 16 configurations' 197 MB."""
    budget = 200 * 2**20
    chunk, per_config, grew_64 = peak_rss(64, "auto")
    # the estimate covers at least the params, their momentum and their gradients (12 MB)
    assert 3 * 4 * 10**6 <= per_config <= budget // 8
    assert chunk == _memory.balanced(64, min(16, budget // per_config))  # 64 split evenly
    assert grew_64 <= budget
    _, _, grew_one = peak_rss(chunk, "auto")  # one chunk's worth of configurations
    assert abs(grew_64 - grew_one) <= 16 * 2**20, (grew_64, grew_one)
    _, _, whole = peak_rss(64, "None")
    assert whole > 3 * budget


# ---- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [False, True])
def test_progress_draws_a_bar_on_stderr_only_when_asked(capfd, progress):
    sweep.fit(
        sweep.product(lr=[0.1, 0.2]), init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y),
        batch_size=16, epochs=2, fixed={"momentum": 0.5}, chunk_size=1, progress=progress,
    )  # fmt: skip
    out, err = capfd.readouterr()
    assert out == ""
    if progress:
        assert "4/4" in err and "fit" in err
    else:
        assert err == ""


def test_a_checkpoint_with_nan_params_in_a_diverged_cell_resumes(tmp_path):
    kw = dict(
        init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=2,
        fixed={"momentum": 0.9}, chunk_size=2, return_params=True, progress=False,
    )  # fmt: skip
    grid = sweep.product(lr=[0.1, 3e38])
    first = sweep.fit(grid, checkpoint_dir=tmp_path, **kw)
    assert first.diverged.tolist() == [False, True]
    assert not np.isfinite(first.params["w2"][1]).all()
    assert_identical(sweep.fit(grid, checkpoint_dir=tmp_path, **kw), first)
