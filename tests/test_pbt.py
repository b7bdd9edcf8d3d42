"""jaxmom.sweep.fit(..., search=PBT(...)): population-based training. Without exploitation it is a
plain fit bit for bit; every member's final params equal a plain loop that replays its recorded
lineage schedule through optax.inject_hyperparams; the exploit rule is checked by hand on a problem
whose ranking is known (a diverged member, best by its metric, is replaced and never a donor); the
history round-trips through save/load; nothing compiles after the first leg; a crash at any
checkpoint resumes bit-identically; bad settings are one line before training.

Internals pinned here, and why: ``_checkpoint.Checkpoint``'s save (a crash between two saves),
``_pbt.PBT.next`` (wrapped to count traces at each leg boundary), ``_pbt.PBT._explore`` (integers
and choices, by hand)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from crash import crash_after_save
from fit_problem import X, Y, mlp_init, mlp_loss, mlp_metrics, sgd
from toy_problem import BOOM, LRS, ONES, toy_eval, toy_init, toy_loss, toy_tx

import jaxmom
from jaxmom import sweep
from jaxmom.sweep import _pbt
from jaxmom.sweep._checkpoint import Checkpoint

GRID = sweep.product(lr=[0.01, 0.1, 0.3, 1.0, 30.0], momentum=[0.0, 0.9]).with_seeds(2)
KW = dict(
    init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=6,
    eval=(X, Y), evaluate=mlp_metrics, progress=False, chunk_size=3, return_params=True,
)  # fmt: skip
SPACE = {"lr": sweep.log_uniform(0.001, 30.0), "momentum": sweep.choice([0.0, 0.5, 0.9])}
PBT = sweep.PBT(space=SPACE, interval=2, fraction=0.25, metric="accuracy", mode="max")


def assert_identical(a, b, names=None):
    for k in names or a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k], err_msg=k)
    np.testing.assert_array_equal(a.diverged, b.diverged)
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def population():
    return sweep.fit(GRID, **KW, search=PBT)


def test_without_exploitation_pbt_is_a_plain_fit_bit_for_bit():
    plain = sweep.fit(GRID, **KW)
    assert plain.diverged.any()  # lr 30 diverges: the marks are compared where they matter
    res = sweep.fit(GRID, **KW, search=sweep.PBT(space=SPACE, interval=2, exploit=False))
    assert_identical(res, plain, names=plain.metrics)
    np.testing.assert_array_equal(res.metrics["hp/lr"], np.repeat(GRID.coords()["lr"][..., None],
                                  6, -1).astype(np.float32))  # fmt: skip
    members = np.arange(10).reshape(5, 2, 1)
    assert (res.metrics["parent"] == members[..., None]).all()
    assert res.metrics["parent"].shape == (5, 2, 2, 3) and res.info["pbt"]["copies"] == [[], []]


def _replay(sched, seed, epochs):
    """fit's contract run alone, with the hyperparameters of ``sched`` set before each epoch."""
    make = optax.inject_hyperparams(lambda lr, momentum: jaxmom.sgd(lr, momentum))
    init_key, data_key = jax.random.split(jax.random.key(seed))
    params = mlp_init(init_key)
    tx = make(lr=float(sched["hp"]["lr"][0]), momentum=float(sched["hp"]["momentum"][0]))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        grads = jax.grad(lambda p: mlp_loss(p, x, y).mean())(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for e in range(epochs):
        for name in ("lr", "momentum"):
            opt_state.hyperparams[name] = jnp.asarray(sched["hp"][name][e])
        order = jax.random.permutation(jax.random.fold_in(data_key, e), len(X))
        for i in range(0, len(X), 16):
            idx = np.asarray(order[i : i + 16])
            params, opt_state = step(params, opt_state, X[idx], Y[idx])
    return params


@pytest.mark.parametrize("seeded", [True, False])
def test_every_member_replays_from_its_lineage_schedule(population, seeded):
    grid = sweep.product(lr=[0.01, 0.1, 0.3, 1.0, 30.0], momentum=[0.0, 0.9])
    res = population if seeded else sweep.fit(grid, **KW, search=PBT)
    copied = 0
    for m in range(10):
        sched = res.schedule(m)
        copied += len(set(sched["members"].tolist())) > 1
        for cell, seed in zip(sched["cells"], sched["seeds"] or [0], strict=True):
            alone = _replay(sched, seed, 6)
            for x, y in zip(jax.tree.leaves(alone), jax.tree.leaves(res.params), strict=True):
                np.testing.assert_allclose(y[cell], x, rtol=2e-5, atol=2e-6, err_msg=f"{m} {cell}")
    assert copied >= 3  # lineages that cross members were replayed, not only single runs


def test_the_history_follows_the_rule_and_round_trips_through_save_and_load(population, tmp_path):
    res = population
    info = res.info["pbt"]
    assert info["ends"] == [2, 4, 6] and info["members"] == 10
    assert res.metrics["hp/lr"].shape == res.metrics["hp/momentum"].shape == (5, 2, 2, 6)
    assert (res.metrics["member"] == np.arange(10).reshape(5, 2, 1)).all()
    loss = res.metrics["loss"].reshape(10, 2, -1)
    lr = res.metrics["hp/lr"].reshape(10, 2, -1)[:, 0]
    mu = res.metrics["hp/momentum"].reshape(10, 2, -1)[:, 0]
    for i, copies in enumerate(info["copies"], start=1):  # exploit i, after epoch 2 i
        end = info["ends"][i - 1]
        parent = res.metrics["parent"][..., 0, i].reshape(-1)
        assert [[b, d] for b, d in enumerate(parent) if b != d] == copies
        copied, donors = {b for b, _ in copies}, {d for _, d in copies}
        assert len(copied) >= 3 and not copied & donors
        if i == 1:  # by hand: the seed means of accuracy; diverged on the own curves so far
            acc = res.metrics["accuracy"][..., end - 1].mean(-1).reshape(-1)
            so_far = loss[:, :, : end * 3]
            with np.errstate(invalid="ignore"):
                bad = (~np.isfinite(so_far) | (so_far > 10 * so_far[:, :, :1])).any((1, 2))
            ranked = [
                m for m in np.argsort(-acc, kind="stable") if np.isfinite(acc[m]) and not bad[m]
            ]
            assert bad.any() and copied == set(np.flatnonzero(bad)) | set(ranked[-3:])
            assert donors <= set(ranked[:3])  # ceil(0.25 * 10) = 3
        for b, d in copies:  # explore: the donor's values, perturbed or resampled, in the space
            was, now = float(lr[d, end - 1]), float(lr[b, end])
            assert 0.001 <= now <= np.float32(30)
            assert now in (np.float32(was * 0.8), np.float32(was * 1.2)) or now != was
            assert mu[b, end] in np.float32([0.0, 0.5, 0.9])
    res.save(tmp_path / "pbt.npz")
    back = sweep.SweepResult.load(tmp_path / "pbt.npz")
    assert back.info == res.info
    assert_identical(back, res)
    best = back.best("accuracy_last", "max")
    a, b = back.schedule(best["member"]), res.schedule(int(best["member"]))
    np.testing.assert_array_equal(a["members"], b["members"])
    np.testing.assert_array_equal(a["hp"]["lr"], b["hp"]["lr"])
    assert a["hp"]["lr"][-1] == best["hp/lr_last"] and a["seeds"] == [0, 1]
    with pytest.raises(ValueError, match=r"^schedule\(\) needs the result of fit"):
        sweep.fit(GRID, **{**KW, "epochs": 1}).schedule(0)
    with pytest.raises(ValueError, match=r"^member must be an integer in \[0, 10\), got 10"):
        res.schedule(10)


def toy_fit(grid, **kw):
    args = dict(
        init=toy_init, loss=toy_loss, optimizer=toy_tx, train=(ONES,), batch_size=1, epochs=3,
        eval=(ONES,), evaluate=toy_eval, progress=False, chunk_size=None,
    )  # fmt: skip
    return sweep.fit(grid, **{**args, **kw})


def test_a_diverged_member_is_replaced_by_a_top_member_and_never_donates():
    # By hand (toy_problem): after epoch 1, dist = 4 |lr - 3|. lr 3.0 has dist 0 but diverged
    # (its boom blows q up): it is never a donor. Top 3 (fraction 1/3 of 9): 2.9, 2.5, 3.6;
    # bottom: the diverged 3.0 and the worst 3 (1.5, 1.0, 0.5). A copy doubles the donor's lr,
    # clipped to 5, and takes its boom (0): the copied lineage no longer diverges.
    pbt = sweep.PBT(space={"lr": sweep.uniform(0.1, 5.0)}, interval=1, fraction=1 / 3,
                    metric="dist", perturb=(2.0,), resample=0.0)  # fmt: skip
    res = toy_fit(sweep.zipped(lr=LRS, boom=BOOM), search=pbt)
    first = dict(res.info["pbt"]["copies"][0])
    assert sorted(first) == [0, 1, 2, 6]  # lr 0.5, 1.0, 1.5 and the diverged 3.0
    assert set(first.values()) <= {5, 4, 7}  # lr 2.9, 2.5, 3.6
    lr, boom = res.metrics["hp/lr"], res.metrics["hp/boom"]
    for b, d in first.items():
        assert lr[b, 1] == np.float32(min(2 * LRS[d], 5.0)) and boom[b, 1] == 0
    assert (lr[:, 0] == np.float32(LRS)).all() and boom[6, 0] == 1
    # The lineage of 3.0's slot after the copy is its donor's: not diverged, though its own curve
    # blew up in epoch 1 (a plain fit marks it).
    assert not res.diverged.any() and (res.diverged_step == -1).all()
    assert toy_fit(sweep.zipped(lr=LRS, boom=BOOM)).diverged[6]


def test_integers_and_choices_are_explored_within_their_spaces():
    pbt = sweep.PBT(space={"k": sweep.uniform(0, 4)}, perturb=(1.2,), resample=0.0)
    rng = np.random.default_rng(0)
    explore = lambda v, sp, p=pbt: p._explore(v, "k", sp, rng)
    assert explore(np.int32(1), sweep.uniform(0, 4)) == 2  # 1.2 rounds to 1: moves by one
    assert explore(np.int32(4), sweep.uniform(0, 4)) == 4  # clipped to the bound
    assert explore(np.float32(3.9), sweep.uniform(0, 4)) == np.float32(4.0)
    down = sweep.PBT(space={"k": sweep.uniform(0, 4)}, perturb=(0.5,), resample=0.0)
    assert explore(np.int32(1), sweep.uniform(0.5, 4), down) == 1  # ceil(0.5): the lowest
    choice = sweep.choice([0.0, 0.5, 0.9])
    steps = {explore(np.float32(0.5), choice).item() for _ in range(50)}
    assert steps == {0.0, np.float32(0.9).item()}  # a neighbour, one side or the other
    assert {explore(np.bool_(False), sweep.choice([False, True])) for _ in range(20)} <= {
        False, True}  # fmt: skip
    resample = sweep.PBT(space={"k": choice}, resample=1.0)
    drawn = {explore(np.float32(0.0), choice, resample).item() for _ in range(50)}
    assert drawn == {0.0, np.float32(0.5).item(), np.float32(0.9).item()}


def test_nothing_compiles_after_the_first_leg(monkeypatch):
    traces = []

    def fresh_loss(params, x, y):  # its own function: its own programs
        traces.append(1)
        return mlp_loss(params, x, y)

    seen, next_ = [], _pbt.PBT.next

    def counting(self, s, log, leg):
        seen.append((leg.end, len(traces)))
        return next_(self, s, log, leg)

    monkeypatch.setattr(_pbt.PBT, "next", counting)
    res = sweep.fit(GRID, **{**KW, "loss": fresh_loss}, search=PBT)
    assert [end for end, _ in seen] == [2, 4, 6] and len(res.info["pbt"]["copies"][0]) > 0
    assert len({n for _, n in seen}) == 1 and seen[0][1] > 0  # traced in leg 1 only
    before = sweep.cache_size()
    plain = sweep.fit(GRID, **{**KW, "loss": fresh_loss})  # the same programs, all cached
    assert sweep.cache_size() == before and plain.compile_seconds == 0.0


def test_a_crash_at_any_checkpoint_resumes_bit_identically(tmp_path, monkeypatch, population):
    save, saves = Checkpoint.save, []

    def counting(self, header, *args):
        saves.append(header["leg"]["end"])
        save(self, header, *args)

    monkeypatch.setattr(Checkpoint, "save", counting)
    whole = sweep.fit(GRID, **KW, search=PBT, checkpoint_dir=tmp_path / "whole")
    assert_identical(whole, population)
    assert sorted(set(saves)) == [2, 4, 6]
    per_leg = len(saves) // 3
    monkeypatch.setattr(Checkpoint, "save", save)  # counted enough
    for k in (1, per_leg, per_leg + 1, 2 * per_leg + 2, len(saves)):  # legs' ends, after exploits
        folder = tmp_path / f"crash{k}"
        crash_after_save(
            monkeypatch,
            k,
            lambda folder=folder: sweep.fit(GRID, **KW, search=PBT, checkpoint_dir=folder),
        )
        resumed = sweep.fit(GRID, **KW, search=PBT, checkpoint_dir=folder)
        assert_identical(resumed, population)
        assert resumed.info["pbt"] == population.info["pbt"]
        assert np.asarray(resumed.info["resumed_epochs"]).sum() > 0


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"interval": 0}, r"^PBT: interval must be an integer of at least 1, got 0$"),
        ({"fraction": 0.0}, r"^PBT: fraction must be a number in \(0, 0.5\], got 0.0$"),
        ({"fraction": 0.6}, r"^PBT: fraction must be a number in \(0, 0.5\]"),
        ({"resample": 2}, r"^PBT: resample must be a probability in \[0, 1\]"),
        ({"perturb": (1.0,)}, r"^PBT: perturb must be positive factors, not all 1"),
        ({"perturb": (-0.5, 2)}, r"^PBT: perturb must be positive factors"),
        ({"mode": "up"}, r"^PBT: mode must be 'min' or 'max'"),
        ({"space": {}}, r"^PBT: space must map the grid's hyperparameters"),
        ({"space": {"lr": [0.1, 1]}}, r"^PBT: space lr=\[0.1, 1\] is not a uniform"),
        ({"space": {"lr": sweep.choice([0.1])}}, r"cannot be perturbed$"),
    ],
)
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as e:
        sweep.PBT(**{"space": SPACE, **settings})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "settings, kw, message",
    [
        ({"metric": "acc"}, {}, r"^PBT: metric 'acc' is neither 'epoch_loss' nor a name evaluate"),
        ({"interval": 6}, {}, r"^PBT: interval 6 leaves no exploit in 6 epochs$"),
        ({"space": {"wd": sweep.uniform(0, 1)}}, {}, r"^PBT: space 'wd' is not in the grid"),
        ({"space": {"wd": sweep.uniform(0, 1)}}, {"fixed": {"wd": 0.1}}, r"'wd' is fixed, not"),
        ({"space": {"lr": sweep.uniform(0.1, 1)}}, {}, r"the grid's lr=0.01 is outside its space"),
        ({"space": {"momentum": sweep.uniform(0, 1)}}, {},
         r"^PBT: space momentum=.* reaches momentum=1.0, which the optimizer refuses: "),
        ({"space": {"momentum": sweep.choice([0, 0.5])}}, {},
         r"^PBT: the grid's momentum=0.9 is outside its space"),
        ({}, {"grid": sweep.product(lr=[0.1], momentum=[0.9]).with_seeds(3)},
         r"^PBT: the population needs at least 2 members"),
        ({}, {"optimizer": lambda h: optax.inject_hyperparams(jaxmom.sgd)(
            learning_rate=h["lr"], momentum=h["momentum"])},
         r"^PBT: the optimizer's update does not read \['lr', 'momentum'\] \(it keeps them"),
        ({}, {"evaluate": lambda p, x, y: {**mlp_metrics(p, x, y), "hp/x": y}},
         r"^PBT: the names \['hp/x'\] are the result's own"),
    ],
)  # fmt: skip
def test_settings_that_do_not_fit_the_problem_are_refused_before_training(settings, kw, message):
    traces = []

    def loss(params, x, y):
        traces.append(1)
        return mlp_loss(params, x, y)

    grid = kw.pop("grid", GRID)
    with pytest.raises(ValueError, match=message) as e:
        sweep.fit(grid, **{**KW, "loss": loss, **kw}, search=sweep.PBT(**{"space": SPACE,
                  "metric": "accuracy", **settings}))  # fmt: skip
    assert "\n" not in str(e.value)
    assert len(traces) <= 1  # setup's one abstract look at the loss; nothing compiled


def test_search_takes_halving_too_and_refuses_other_things():
    grid = sweep.zipped(lr=LRS, boom=BOOM)
    h = sweep.Halving(eta=3, metric="dist")
    assert_identical(toy_fit(grid, search=h), toy_fit(grid, halving=h))
    with pytest.raises(TypeError, match=r"^search must be a sweep.Halving or sweep.PBT, got dict"):
        toy_fit(grid, search={"eta": 3})
    with pytest.raises(ValueError, match=r"^give the search as search= or halving=, not both$"):
        toy_fit(grid, search=h, halving=h)
