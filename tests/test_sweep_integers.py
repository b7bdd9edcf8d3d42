"""jaxmom.sweep keeps every integer exact or refuses it in one line: grid values, seeds, chunk sizes.

The references are JAX's own keys (``jax.random.key`` of a seed, with x64 on for 64-bit seeds) and
the values written into the grid, never the engine's output.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxmom import sweep

ROOT = Path(__file__).resolve().parents[1]


def keys_and_steps(hparams, key):
    return {
        "key": jax.random.key_data(key),
        "steps_seen": hparams["steps"] + 0,  # a metric may not reuse a grid column's name
        "loss": jax.random.normal(key, (3,)),
    }


def test_integer_hyperparameters_beyond_int32_are_kept_exact_in_the_grid():
    big = 2**31 + 5
    assert sweep.product(steps=[big]).coords()["steps"].tolist() == [big]
    assert sweep.product(steps=[1, 2]).coords()["steps"].dtype == np.int32  # small: as before
    assert sweep.zipped(steps=np.array([2**40, -(2**40)])).coords()["steps"].tolist() == [
        2**40,
        -(2**40),
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sweep.product(steps=[2**63]), r"'steps' value 9223372036854775808 .*range"),
        (lambda: sweep.product(steps=[2**70]), r"'steps' value .*range"),
        (lambda: sweep.product(steps=np.array([2**64 - 1], np.uint64)), "range"),
        (
            lambda: sweep.product(a=[1.0]).with_seeds([-1]),
            r"seed -1 .*range 0\.\.18446744073709551615",
        ),
        (lambda: sweep.product(a=[1.0]).with_seeds([2**64]), "seed 18446744073709551616"),
        (lambda: sweep.product(a=[1.0]).with_seeds(True), "seeds"),
        (lambda: sweep.product(a=[1.0]).with_seeds([1, 2.0]), "seeds"),
    ],
)
def test_integers_out_of_range_are_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_seeds_beyond_32_bits_are_exact_and_small_seeds_keep_their_keys():
    seeds = [2**32 + 1, 1, 2**31 + 5, 2**64 - 1]
    grid = sweep.product(a=[1.0]).with_seeds(seeds)
    assert grid.coords()["seed"].tolist() == [seeds]
    assert sweep.product(a=[1.0]).with_seeds(np.int64(2)).coords()["seed"].tolist() == [[0, 1]]
    res = sweep.sweep(lambda h, k: keys_and_steps({"steps": 0}, k), grid)
    got = res.metrics["key"].reshape(-1, 2).tolist()
    # Below 2**32: the very key jax.random.key(seed) gives (the seed tutorials' runs are unchanged).
    for s in (1, 2**31 + 5):
        assert got[seeds.index(s)] == jax.random.key_data(jax.random.key(s)).tolist()
    # Above: the key of the full 64-bit value, as jax.random.key makes it with x64 on (threefry's
    # key data is [high 32 bits, low 32 bits]); seeds 2**32 + 1 and 1 no longer share a key.
    assert got[0] == [1, 1] and got[3] == [2**32 - 1, 2**32 - 1]
    assert len({tuple(k) for k in got}) == 4
    shared = sweep.sweep(
        lambda h, k: keys_and_steps({"steps": 0}, k), sweep.product(a=[1.0]), seed=2**40 + 3
    )
    assert shared.metrics["key"].reshape(2).tolist() == [256, 3]


X64 = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxmom import sweep
    def f(h, key):
        return {"key": jax.random.key_data(key), "steps_seen": h["steps"] + 0, "loss": jax.random.normal(key, (3,))}
    seeds = [2**32 + 1, 1, 2**64 - 1]
    res = sweep.sweep(f, sweep.product(steps=[2**31 + 5]).with_seeds(seeds))
    for i, s in enumerate(seeds):
        alone = jax.random.key(np.uint64(s))
        assert res.metrics["key"][0, i].tolist() == jax.random.key_data(alone).tolist(), s
        assert np.array_equal(res.metrics["loss"][0, i], jax.random.normal(alone, (3,))), s
    assert res.metrics["steps_seen"].tolist() == [[2**31 + 5] * 3], res.metrics["steps_seen"]
    print("ok")
""")


@pytest.mark.slow  # a subprocess with x64 on
def test_with_x64_on_64_bit_values_reach_train_fn_exactly_and_keys_equal_jax_random_key():
    out = subprocess.run(
        [sys.executable, "-c", X64],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
    )
    assert out.stdout.split() == ["ok"], out.stderr[-2000:]


def test_with_x64_off_an_integer_beyond_int32_is_refused_before_compiling():
    compiled = []

    def train(hparams, key):
        compiled.append(1)
        return keys_and_steps(hparams, key)

    with pytest.raises(ValueError, match=r"'steps' value 2147483653 .*-2147483648\.\.2147483647"):
        sweep.sweep(train, sweep.product(steps=[1, 2**31 + 5]))
    assert not compiled
    res = sweep.sweep(train, sweep.product(steps=[2**31 - 1, -(2**31)]))  # the edges fit
    assert res.metrics["steps_seen"].tolist() == [2**31 - 1, -(2**31)]


def test_a_float_that_float32_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="'lr' value 1e\\+39 does not fit in float32"):
        sweep.sweep(keys_and_steps, sweep.product(steps=[1], lr=[0.1, 1e39]))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sweep.product(lr=[1e-50]), r"'lr' value 1e-50 is below float32's smallest normal"),
        (lambda: sweep.zipped(lr=[0.1, 1e-40]), r"'lr' value 1e-40 is below float32's"),
        (lambda: sweep.product(lr=[0.1, -1e39]), r"'lr' value -1e\+39 does not fit in float32"),
        (lambda: sweep.product(x=[True, 0.5]), r"'x' mixes bools and numbers"),
        (lambda: sweep.product(x=(2**53 + 1, 0.5)), r"'x' value 9007199254740993 .*exactly"),
        (lambda: sweep.product(a=[1.0]).with_seeds(0), r"list of integers, got 0$"),
    ],
)
def test_grid_values_at_the_edges_are_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_zero_and_normal_floats_pass_and_a_hand_built_tiny_axis_is_refused_by_sweep_and_fit():
    edges = [0.0, -0.0, float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)]
    assert sweep.product(lr=edges).coords()["lr"].tolist() == edges
    assert sweep.product(lr=[float("inf"), float("nan")]).shape == (2,)  # not finite: as given
    from toy_problem import ONES, toy_init, toy_loss, toy_tx

    tiny = sweep.Grid(
        [
            sweep.Axis("steps", {"steps": np.array([1], np.int32)}),
            sweep.Axis("lr", {"lr": np.array([1e-50])}),
        ]
    )
    with pytest.raises(ValueError, match="'lr' value 1e-50 is below float32's smallest normal"):
        sweep.sweep(keys_and_steps, tiny)
    grid = sweep.Grid(
        [
            sweep.Axis("lr", {"lr": np.array([1e-50])}),
            sweep.Axis("boom", {"boom": np.array([0], np.int32)}),
        ]
    )
    with pytest.raises(ValueError, match="'lr' value 1e-50 is below float32's smallest normal"):
        sweep.fit(
            grid, init=toy_init, loss=toy_loss, optimizer=toy_tx, train=(ONES,), batch_size=1,
            epochs=1, progress=False,
        )  # fmt: skip


def test_chunk_size_and_seed_take_numpy_integers_and_refuse_bools():
    grid = sweep.product(steps=[1, 2, 3])
    res = sweep.sweep(keys_and_steps, grid, chunk_size=np.int64(2), seed=np.uint8(4))
    assert res.metrics["steps_seen"].tolist() == [1, 2, 3]
    assert res.metrics["key"][0].tolist() == jax.random.key_data(jax.random.key(4)).tolist()
    for bad in (True, np.True_, 1.0, 0):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            sweep.sweep(keys_and_steps, grid, chunk_size=bad)
    for bad in (True, -1, 2**64, 1.5):
        with pytest.raises(ValueError, match="seed"):
            sweep.sweep(keys_and_steps, grid, seed=bad)
