"""The one driver of fit's searches: a halving run crashed at any checkpoint resumes to bit-identical
results, a strategy can copy states and change traced hyperparameters between legs (what
population-based training needs), the fingerprint tells two lambdas apart, one check per rule,
and ``sweep.plan``.

Internals pinned here, and why: ``_setup.setup`` and ``_driver.drive`` with a hand-made
``Strategy`` (the strategy interface that a second search builds on), ``_checkpoint.Checkpoint``'s
save (a crash between two saves)."""

import jax
import numpy as np
import optax
import pytest
from crash import crash_after_save
from fit_problem import X, Y, mlp_init, mlp_loss, mlp_metrics, sgd

from jaxmom import sweep
from jaxmom.sweep import _driver, _setup
from jaxmom.sweep._checkpoint import Checkpoint

GRID = sweep.product(lr=[0.01, 0.1, 0.3, 1.0, 30.0], momentum=[0.0, 0.9]).with_seeds(2)
KW = dict(
    init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=4,
    eval=(X, Y), evaluate=mlp_metrics, progress=False, chunk_size=3, return_params=True,
)  # fmt: skip
HALVING = sweep.Halving(eta=2, metric="accuracy", mode="max")


def assert_identical(a, b):
    assert a.metrics.keys() == b.metrics.keys()
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def halved():
    return sweep.fit(GRID, **KW, halving=HALVING)


def test_halving_checkpoints_every_epoch_and_a_crash_at_any_save_resumes_bit_identically(
    tmp_path, monkeypatch, halved
):
    save, saves = Checkpoint.save, []

    def counting(self, header, *args):
        saves.append((header["leg"]["end"], header["chunk"], header["epoch"]))
        save(self, header, *args)

    monkeypatch.setattr(Checkpoint, "save", counting)
    whole = sweep.fit(GRID, **KW, halving=HALVING, checkpoint_dir=tmp_path / "whole")
    assert_identical(whole, halved)
    legs = sorted({end for end, _, _ in saves})
    assert legs == [1, 2, 4]  # the rungs: every leg checkpoints
    monkeypatch.setattr(Checkpoint, "save", save)  # counted enough
    for k in (1, 4, len(saves) // 2, len(saves) - 2, len(saves)):  # first, rung ends, last
        folder = tmp_path / f"crash{k}"
        crash_after_save(
            monkeypatch,
            k,
            lambda folder=folder: sweep.fit(GRID, **KW, halving=HALVING, checkpoint_dir=folder),
        )
        resumed = sweep.fit(GRID, **KW, halving=HALVING, checkpoint_dir=folder)
        assert_identical(resumed, halved)
        assert np.asarray(resumed.info["resumed_epochs"]).sum() > 0


class CopyTheFirst(_driver.Strategy):
    """Two legs: all cells for one epoch; then every cell goes on from cell 0's state with cell
    0's hyperparameters (the exploit step of population-based training, at its simplest)."""

    def first(self, s):
        return _driver.Leg(np.arange(s.grid.size), 0, 1, keep=True)

    def next(self, s, log, leg):
        if leg.end == s.epochs:
            return None
        n = s.grid.size
        hp = {k: np.repeat(v[:1], n) for k, v in s.hparams.items()}
        return _driver.Leg(np.arange(n), 1, s.epochs, sources=np.zeros(n, int), hparams=hp)


def test_a_strategy_copies_states_and_changes_hyperparameters_between_legs():
    grid = sweep.product(lr=[0.1, 0.5, 1.0], momentum=[0.9])
    s = _setup.setup(grid, **{k: v for k, v in KW.items() if k in ("init", "loss", "optimizer",
                     "train", "batch_size", "eval", "evaluate")}, epochs=3)  # fmt: skip
    res = _driver.drive(s.with_chunk(2), CopyTheFirst(), progress=False, return_params=True)
    alone = sweep.fit(grid, **{**KW, "epochs": 3, "chunk_size": 2})  # the programs of drive's
    loss = res.metrics["epoch_loss"][:, 0]
    np.testing.assert_array_equal(loss[:, 0], alone.metrics["epoch_loss"][:, 0, 0])
    for i in (1, 2):  # after the copy every cell is cell 0, bit for bit
        np.testing.assert_array_equal(loss[i, 1:], alone.metrics["epoch_loss"][0, 0, 1:])
        for x in jax.tree.leaves(res.params):
            np.testing.assert_array_equal(x[i], x[0])
    for x, y in zip(jax.tree.leaves(res.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_array_equal(x[0], y[0])


def test_two_lambdas_that_compute_differently_never_share_a_checkpoint(tmp_path):
    kw = {**KW, "epochs": 1, "checkpoint_dir": tmp_path, "return_params": False}
    grid = sweep.product(lr=[0.1], momentum=[0.9])
    plain = sweep.fit(grid, **{**kw, "optimizer": lambda h: optax.sgd(h["lr"], h["momentum"])})
    nesterov = sweep.fit(
        grid, **{**kw, "optimizer": lambda h: optax.sgd(h["lr"], h["momentum"], nesterov=True)}
    )
    assert len(list(tmp_path.glob("fit-*.json"))) == 2
    assert nesterov.info["resumed_epochs"] == [[0]]
    assert not np.array_equal(plain.metrics["loss"], nesterov.metrics["loss"])


def test_an_evaluate_name_that_the_result_uses_is_refused_before_training():
    def clashing(params, x, y):
        return {"loss": mlp_metrics(params, x, y)["test_loss"]}

    with pytest.raises(ValueError, match=r"^evaluate returns \['loss'\].*rename") as e:
        sweep.fit(GRID, **{**KW, "evaluate": clashing})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"evaluate returns \['rung'\]"):
        sweep.fit(GRID, **{**KW, "evaluate": lambda p, x, y: {"rung": y}}, halving=HALVING)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"divergence_factor": "10"}, r"^divergence_factor must be a number above 1 \(or None\)"),
        ({"divergence_factor": 1.0}, r"^divergence_factor must be a number above 1"),
        ({"memory_budget": -5}, r"^memory_budget must be a positive integer, got -5"),
        ({"chunk_size": True}, r"^chunk_size must be a positive integer, None or 'auto'"),
        ({"seed": -1}, r"^seed -1 is outside the allowed range"),
        ({"devices": []}, r"^devices must name at least one device"),
    ],
)
def test_one_check_per_rule_gives_one_line_in_fit_and_sweep(kw, message):
    with pytest.raises(ValueError, match=message):
        sweep.fit(GRID, **{**KW, **kw})
    if "memory_budget" not in kw:  # sweep() has no memory budget; the rest read the same there
        if kw.get("chunk_size") is True:
            message = message.replace(", None or 'auto'", " or None")
        with pytest.raises(ValueError, match=message):
            sweep.sweep(lambda h, key: {"loss": h["lr"]}, sweep.product(lr=[0.1]), **kw)


def test_a_results_table_larger_than_memory_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"of host memory, more than is available$"):
        sweep.fit(GRID, **{**KW, "epochs": 2**40})


def test_plan_tells_the_chunk_size_the_memory_and_the_compiled_epoch_without_training():
    plan = sweep.plan(GRID, **{k: v for k, v in KW.items() if k not in ("progress",
                      "return_params")})  # fmt: skip
    assert (plan.chunk_size, plan.chunks, plan.stepwise) == (3, 7, False)  # 20 cells, 3 at once
    assert plan.bytes_per_config > 0
    assert "HloModule" in plan.epoch_hlo()


@pytest.mark.parametrize("cells, chunk", [(16, 16), (18, 9), (20, 10), (33, 11), (256, 16)])
def test_the_automatic_chunk_size_pads_no_more_than_it_must(cells, chunk):
    """On CPU at most 16 configurations train at once; a grid that is not a multiple of the
    chunks it needs is split evenly (18: two chunks of 9), not padded (two of 16, 14 wasted)."""
    kw = {k: v for k, v in KW.items() if k not in ("progress", "return_params", "chunk_size")}
    plan = sweep.plan(sweep.product(lr=list(np.linspace(0.01, 0.1, cells)), momentum=[0.9]), **kw)
    assert (plan.chunk_size, plan.chunks) == (chunk, -(-cells // chunk))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h: {**h, "leg": []},
        lambda h: {**h, "leg": {**h["leg"], "end": 99}},
        lambda h: {**h, "leg": {**h["leg"], "chunk": 7}},
        lambda h: {**h, "epoch": 99, "file": h["file"].rsplit(".", 2)[0] + ".99.npz"},
        lambda h: {**h, "chunk": 7, "file": h["file"].replace(".0.", ".7.", 1)},
        lambda h: {**h, "chunk_size": 2},
    ],
)
def test_a_checkpoint_header_rewritten_by_hand_is_refused_in_one_line(tmp_path, tamper):
    import json

    kw = {**KW, "epochs": 2, "checkpoint_dir": tmp_path}
    sweep.fit(GRID, **kw, halving=HALVING)
    (header,) = tmp_path.glob("fit-*.json")
    h = json.loads(header.read_text())
    header.write_text(json.dumps(tamper(h)))
    with pytest.raises(ValueError, match=r"^checkpoint ") as e:
        sweep.fit(GRID, **kw, halving=HALVING)
    assert "\n" not in str(e.value)
