"""The contracts every optimizer keeps: traced hyperparameters, bad input, dtypes, donation,
chaining and Optax's wrappers. Each optimizer comes from ``optimizer_table.OPTIMIZERS``."""

import functools
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import mixed_precision
import numpy as np
import optax
import optimizer_reference as ref
import pytest
from absl.testing import parameterized
from flax.training import train_state
from noisy_quadratic import CURVATURE, check_saturation, counted, problem, run_jax, steps
from optimizer_reference import reference_kwargs
from optimizer_table import OPTIMIZERS, REFERENCED

import jaxmom


def make(name, **overrides):
    """The table's optimizer ``name`` at its base values, with ``overrides``."""
    return OPTIMIZERS[name].make(**overrides)


def as_arrays(hparams):
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


def assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol), a, b)


# --- hyperparameters: traced, no retrace, vmap = loop, jit = no jit --------------------------


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_new_hyperparameter_values_do_not_retrace(name):
    opt = OPTIMIZERS[name]
    hp_a, hp_b = opt.point(0), opt.point(1)
    params, noise = problem(np.float32, steps=10)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train(hparams, params, noise):
        return run_jax(opt.factory(**hparams, **opt.flags), params, noise)

    chex.clear_trace_counter()
    path_a = train(as_arrays(hp_a), params, noise)
    path_b = train(as_arrays(hp_b), params, noise)  # would raise on a second trace
    assert_close(path_a, run_jax(opt.factory(**hp_a, **opt.flags), params, noise))
    assert_close(path_b, run_jax(opt.factory(**hp_b, **opt.flags), params, noise))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_vmap_over_hyperparameters_equals_python_loop(name):
    """One vmap over the grid's three points, every hyperparameter at once."""
    opt = OPTIMIZERS[name]
    params, noise = problem(np.float32, steps=10)
    batch = {k: jnp.asarray(values, jnp.float32) for k, values in opt.grid.items()}
    paths = jax.jit(jax.vmap(lambda hp: run_jax(opt.factory(**hp, **opt.flags), params, noise)))(
        batch
    )
    for i in range(3):
        expected = run_jax(opt.factory(**opt.point(i), **opt.flags), params, noise)
        assert_close(jax.tree.map(lambda x: x[i], paths), expected)


def eager_path(tx, params, noise):
    """``run_jax`` step by step in Python, with no trace of the optimizer."""
    p, state, path = params, tx.init(params), []
    for t in range(len(noise["b"])):
        g = jax.tree.map(lambda n, p: n[t] + CURVATURE * p, noise, p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        path.append(p)
    return jax.tree.map(lambda *x: jnp.stack(x), *path)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_vmap_over_each_hyperparameter_equals_a_loop_with_one_trace(name):
    """One program vmaps over each hyperparameter in turn (the others at their base values);
    new values reuse it, and every row equals a Python loop over concrete values."""
    grid = OPTIMIZERS[name].grid
    params, noise = problem(np.float32, steps=5)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def paths(batches):
        return {
            hp: jax.vmap(lambda v, hp=hp: run_jax(make(name, **{hp: v}), params, noise))(batch)
            for hp, batch in batches.items()
        }

    chex.clear_trace_counter()
    batches = {hp: jnp.asarray(values, jnp.float32) for hp, values in grid.items()}
    vmapped = paths(batches)
    paths({hp: b[::-1] for hp, b in batches.items()})  # new values: a second trace would raise
    for hp, values in grid.items():
        for i, value in enumerate(values):
            loop = eager_path(make(name, **{hp: value}), params, noise)
            assert_close(jax.tree.map(lambda x: x[i], vmapped[hp]), loop)


class JitAgreementTest(chex.TestCase):
    """chex variants: the update, jitted or not, matches the NumPy transcription."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((name, name) for name in REFERENCED))
    def test_update_matches_reference(self, name):
        opt = OPTIMIZERS[name]
        params, noise = problem(np.float32, steps=5)
        tx = opt.make()
        update = self.variant(tx.update)
        p, state, path = params, tx.init(params), []
        for t in range(5):
            grads = jax.tree.map(lambda n, p: n[t] + CURVATURE * p, noise, p)
            u, state = update(grads, state, p)
            p = optax.apply_updates(p, u)
            path.append(p)
        assert opt.reference is not None
        expected = ref.run(
            opt.reference(**reference_kwargs(opt.base), **opt.flags), params, noise, CURVATURE
        )
        for k in params:
            np.testing.assert_allclose(
                np.stack([q[k] for q in path]), expected[k], rtol=1e-5, atol=1e-6
            )


def test_traced_values_are_not_checked():
    params, noise = problem(np.float32, steps=3)
    out = jax.jit(lambda lr: run_jax(jaxmom.sgd(lr, 0.9), params, noise))(-0.1)  # no error
    assert np.all(np.isfinite(out["w"]))


# --- bad hyperparameters -------------------------------------------------------------------

BAD = [
    (jaxmom.sgd, dict(learning_rate=-0.1), "learning_rate must be a finite number in [0, inf)"),
    (jaxmom.sgd, dict(learning_rate=float("nan")), "learning_rate"),
    (jaxmom.sgd, dict(learning_rate=float("inf")), "learning_rate"),
    (jaxmom.sgd, dict(learning_rate=jnp.array([0.1, -0.1])), "learning_rate"),
    (
        jaxmom.sgd,
        dict(learning_rate=0.1, momentum=-0.1),
        "momentum must be a finite number in [0, 1)",
    ),
    (
        jaxmom.sgd,
        dict(learning_rate=0.1, momentum=1.0),
        "momentum must be a finite number in [0, 1)",
    ),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=1.5), "momentum"),
    (
        jaxmom.sgd,
        dict(learning_rate=0.1, momentum=0.9, dampening=-0.1),
        "dampening must be a finite number in [0, 1]",
    ),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=0.9, dampening=1.5), "dampening"),
    (
        jaxmom.sgd,
        dict(learning_rate=0.1, weight_decay=-1e-4),
        "weight_decay must be a finite number in [0, inf)",
    ),
    (
        jaxmom.sgd,
        dict(learning_rate=0.1, momentum=0.9, dampening=0.1, nesterov=True),
        "nesterov needs dampening == 0",
    ),
    (jaxmom.sgd, dict(learning_rate=0.1, nesterov=True), "nesterov needs momentum > 0"),
    (jaxmom.sutskever_sgd, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.sutskever_sgd, dict(learning_rate=0.1, momentum=1.0), "momentum"),
    (
        jaxmom.sutskever_sgd,
        dict(learning_rate=0.1, momentum=0.0, nesterov=True),
        "nesterov needs momentum > 0",
    ),
    (jaxmom.ema_sgd, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.ema_sgd, dict(learning_rate=0.1, beta=1.0), "beta must be a finite number in [0, 1)"),
    (jaxmom.ema_sgd, dict(learning_rate=0.1, beta=-0.5), "beta"),
    (jaxmom.ema, dict(decay=1.0), "decay must be a finite number in [0, 1)"),
    (jaxmom.ema, dict(decay=-0.1), "decay"),
    (jaxmom.ema, dict(decay=float("nan")), "decay"),
    (jaxmom.adagrad, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.adagrad, dict(lr_decay=-1.0), "lr_decay must be a finite number in [0, inf)"),
    (jaxmom.adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (jaxmom.adagrad, dict(eps=-1.0), "eps must be a finite number in [0, inf)"),
    (jaxmom.adagrad, dict(weight_decay=-1.0), "weight_decay"),
    (jaxmom.adadelta, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.adadelta, dict(rho=1.5), "rho must be a finite number in [0, 1]"),
    (jaxmom.adadelta, dict(rho=-0.1), "rho"),
    (jaxmom.adadelta, dict(eps=-1e-6), "eps"),
    (jaxmom.adadelta, dict(weight_decay=-1.0), "weight_decay"),
    (jaxmom.rmsprop, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.rmsprop, dict(alpha=1.5), "alpha must be a finite number in [0, 1]"),
    (jaxmom.rmsprop, dict(alpha=-0.1), "alpha"),
    (jaxmom.rmsprop, dict(eps=-1.0), "eps"),
    (jaxmom.rmsprop, dict(momentum=1.0), "momentum"),
    (jaxmom.rmsprop, dict(weight_decay=-1.0), "weight_decay"),
    (jaxmom.adam, dict(learning_rate=-1e-3), "learning_rate"),
    (jaxmom.adam, dict(b1=1.0), "b1 must be a finite number in [0, 1)"),
    (jaxmom.adam, dict(b1=-0.1), "b1"),
    (jaxmom.adam, dict(b2=1.0), "b2 must be a finite number in [0, 1)"),
    (jaxmom.adam, dict(b2=2.0), "b2"),
    (jaxmom.adam, dict(eps=-1e-8), "eps"),
    (jaxmom.adam, dict(weight_decay=-0.1), "weight_decay"),
    (
        jaxmom.convert_momentum,
        dict(learning_rate=0.1, momentum=0.9, source="keras", target="ema"),
        "source must be one of",
    ),
    (
        jaxmom.convert_momentum,
        dict(learning_rate=0.1, momentum=0.9, source="ema", target="x"),
        "target must be one of",
    ),
]


@pytest.mark.parametrize(
    "factory, kwargs, message", BAD, ids=[f"{f.__name__}-{k}" for f, k, _ in BAD]
)
def test_bad_hyperparameters_raise_one_line_value_error(factory, kwargs, message):
    with pytest.raises(ValueError) as error:
        factory(**kwargs)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


BAD_TYPES = [
    (jaxmom.sgd, dict(learning_rate=True), "learning_rate must be a real number in [0, inf)"),
    (jaxmom.sgd, dict(learning_rate=Fraction(1, 10)), "got a Fraction"),
    (jaxmom.sgd, dict(learning_rate="0.1"), "got a str"),
    (jaxmom.sgd, dict(learning_rate=0.1 + 0j), "got a complex"),
    (jaxmom.sgd, dict(learning_rate=[0.1, 0.2]), "got a list"),
    (jaxmom.sgd, dict(learning_rate=np.array([True])), "of dtype bool"),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=False), "momentum must be a real number"),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=lambda c: 0.9), "momentum must be a number"),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=0.9, nesterov="yes"), "nesterov must be True"),
    (jaxmom.sgd, dict(learning_rate=0.1, momentum=0.9, nesterov=1), "nesterov must be True"),
    (jaxmom.sutskever_sgd, dict(learning_rate=0.1, nesterov=None), "nesterov must be True"),
    (jaxmom.ema_sgd, dict(learning_rate=0.1, debias="no"), "debias must be True or False"),
    (jaxmom.ema, dict(decay=0.9, debias=1), "debias must be True or False"),
    (jaxmom.adam, dict(amsgrad="yes"), "amsgrad must be True or False"),
    (jaxmom.adam, dict(debias=0), "debias must be True or False"),
    (jaxmom.adam, dict(eps_in_sqrt="no"), "eps_in_sqrt must be True or False"),
    (jaxmom.adam, dict(b1=True), "b1 must be a real number"),
    (jaxmom.rmsprop, dict(centered=1), "centered must be True or False"),
    (jaxmom.rmsprop, dict(eps_in_sqrt=None), "eps_in_sqrt must be True or False"),
    (jaxmom.adagrad, dict(lr_decay=Fraction(1, 2)), "lr_decay must be a real number"),
    (jaxmom.adadelta, dict(rho=True), "rho must be a real number"),
]


@pytest.mark.parametrize(
    "factory, kwargs, message", BAD_TYPES, ids=[f"{f.__name__}-{m}" for f, _, m in BAD_TYPES]
)
def test_wrong_types_raise_one_line_type_error(factory, kwargs, message):
    with pytest.raises(TypeError) as error:
        factory(**kwargs)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_numpy_bools_and_integers_are_accepted():
    jaxmom.sgd(1, momentum=np.float32(0.5), nesterov=np.bool_(True))
    jaxmom.adam(np.int64(1), amsgrad=np.True_)


@pytest.mark.parametrize("bad", [-0.25, float("nan"), float("inf")])
def test_an_array_hyperparameter_names_its_first_bad_element_in_one_short_line(bad):
    values = np.full((40, 50), 0.5, np.float32)
    values[7, 3], values[9, 9] = bad, -1.0
    for factory, name in [(jaxmom.sgd, "learning_rate"), (jaxmom.adam, "b2")]:
        kwargs = {"learning_rate": 0.1, name: jnp.asarray(values)}
        with pytest.raises(ValueError) as error:
            factory(**kwargs)
        message = str(error.value)
        assert "\n" not in message and len(message) <= 200, message
        assert message.startswith(name) and "element [7, 3]" in message
        assert f"is {np.float32(bad)}" in message


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize("name", ["ema", *OPTIMIZERS])
def test_integer_parameters_are_refused_at_init(name, dtype):
    tx = jaxmom.ema(0.9) if name == "ema" else make(name)
    params = {"dense": {"w": jnp.ones((2, 2)), "b": [jnp.ones(2), jnp.ones(3, dtype)]}}
    with pytest.raises(TypeError) as error:
        tx.init(params)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"params['dense']['b'][1] has dtype {jnp.dtype(dtype)}")


def test_weight_decay_without_params_is_a_clear_error():
    tx = jaxmom.sgd(0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="weight_decay needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


# --- dtypes --------------------------------------------------------------------------------


FLOAT32_SCALARS = {"mu_product", "weight_sum", "lr_max", "b1"}  # nadam's, schedule-free's


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_bfloat16_stays_bfloat16(name, traced):
    """Updates, parameters and every float in the state stay bfloat16, but for the scalars that
    only hyperparameters make (``FLOAT32_SCALARS``), which stay float32."""
    params, noise = problem(jnp.bfloat16, steps=3)
    base = as_arrays(OPTIMIZERS[name].base) if traced else {}

    def final(hparams):
        tx = make(name, **hparams)
        state = tx.init(params)
        p = params
        for t in range(3):
            u, state = tx.update(jax.tree.map(lambda n: n[t], noise), state, p)
            assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
            p = optax.apply_updates(p, u)
        return p, state

    p, state = jax.jit(final)(base) if traced else final(base)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(p))
    floats = {
        jax.tree_util.keystr(path, simple=True, separator="."): x.dtype
        for path, x in jax.tree_util.tree_leaves_with_path(state)
        if jnp.issubdtype(x.dtype, jnp.floating)
    }
    assert floats and all(
        dtype == (jnp.float32 if path.split(".")[-1] in FLOAT32_SCALARS else jnp.bfloat16)
        for path, dtype in floats.items()
    ), floats
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float64_state_under_x64(name):
    with jax.enable_x64(True):
        params, _ = problem(np.float64, steps=1)
        tx = make(name)
        u, state = tx.update(params, tx.init(params), params)
        leaves = jax.tree.leaves((u, state))
        assert all(x.dtype in (jnp.float64, jnp.int32) for x in leaves)
        assert any(x.dtype == jnp.float64 for x in jax.tree.leaves(state))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_complex_parameters_stay_complex_and_converge(name):
    target = jnp.array([1.0 + 2.0j, -0.5j, 3.0])
    loss = lambda x: jnp.sum(jnp.abs(x - target) ** 2)
    tx = make(name)

    def step(carry, _):
        x, state = carry
        g = jnp.conj(jax.grad(loss)(x))  # Optax's convention for complex parameters
        u, state = tx.update(g, state, x)
        return (optax.apply_updates(x, u), state), None

    x0 = jnp.zeros(3, jnp.complex64)
    (x, _), _ = jax.jit(lambda x: jax.lax.scan(step, (x, tx.init(x)), length=30))(x0)
    assert x.dtype == jnp.complex64
    assert loss(x) < loss(jnp.zeros(3))


# --- state dtypes (issue 18) ----------------------------------------------------------------


def with_ema(name):
    """``(factory, kwargs)`` of a table optimizer, or of ``jaxmom.ema(0.9)`` for "ema"."""
    return (
        (jaxmom.ema, dict(decay=0.9))
        if name == "ema"
        else (
            OPTIMIZERS[name].factory,
            OPTIMIZERS[name].kwargs,
        )
    )


@pytest.mark.parametrize(
    "state_dtype, param_dtype", [(jnp.bfloat16, jnp.float32), (jnp.float32, jnp.bfloat16)]
)
@pytest.mark.parametrize("name", [*OPTIMIZERS, "ema"])
def test_state_dtype_arguments(name, state_dtype, param_dtype):
    """Dtypes after init and 10 jitted steps, donation, inject_hyperparams, and the 100-step
    path within the stated tolerance of the float32 run (see ``mixed_precision.tolerance``)."""
    mixed_precision.check(*with_ema(name), state_dtype, param_dtype)


@pytest.mark.parametrize("name", [*OPTIMIZERS, "ema"])
def test_state_dtypes_equal_to_the_parameters_change_nothing(name):
    mixed_precision.check_explicit_default(*with_ema(name))


# --- step counts at the top of int32 (issue 17, item 3) -------------------------------------


@pytest.mark.parametrize(
    "name", counted({name: (opt.factory, opt.kwargs) for name, opt in OPTIMIZERS.items()})
)
def test_counts_saturate_at_the_top_of_int32(name):
    """The issue's symptoms: nadam gave NaN from the second step, schedule-free (warm-up
    included) +-inf or garbage."""
    params, _ = problem(np.float32)
    check_saturation(make(name), params, gradients(params, 4))


# --- donation, chaining, wrappers ----------------------------------------------------------


def gradients(params, n, seed=1):
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(lambda p: jnp.asarray(3 * rng.normal(size=p.shape), p.dtype), params)
        for _ in range(n)
    ]


def jitted_steps(tx, params, grads):
    """:func:`noisy_quadratic.steps` as one jitted program."""
    return jax.jit(functools.partial(steps, tx))(params, grads)


def assert_same_eval_params(name, state, params, other_state, other_params):
    """Schedule-free SGD's evaluation parameters agree too."""
    if name == "schedule_free_sgd":
        assert_close(
            jaxmom.schedule_free_eval_params(state, params),
            jaxmom.schedule_free_eval_params(other_state, other_params),
        )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_donated_params_and_state(name):
    tx = make(name)
    params, _ = problem(np.float32)
    grads = gradients(params, 3)

    def step(p, state, g):
        u, state = tx.update(g, state, p)
        return optax.apply_updates(p, u), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    p, state = jax.tree.map(jnp.copy, params), tx.init(params)
    for g in grads:
        p, state = donated(p, state, g)
    assert_close(p, jitted_steps(tx, params, grads)[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_chain_with_clipping_and_decayed_weights(name):
    """The chain, eager and jitted, equals the same by hand, jitted and eager."""
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    chained = optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-3), make(name)
    )

    def by_hand(p):  # clip to global norm 1, add 1e-3 * p, then the optimizer
        tx = make(name)
        state = tx.init(p)
        for g in grads:
            norm = optax.tree.norm(g)
            g = jax.tree.map(lambda g, p: g * jnp.minimum(1.0, 1.0 / norm) + 1e-3 * p, g, p)
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
        return p

    assert_close(steps(chained, params, grads)[0], jax.jit(by_hand)(params))
    assert_close(jitted_steps(chained, params, grads)[0], by_hand(params))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_inject_hyperparams(name):
    opt = OPTIMIZERS[name]
    hp_a, hp_b = as_arrays(opt.point(0)), as_arrays(opt.point(1))
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    injected = optax.inject_hyperparams(opt.factory)(**hp_a, **opt.flags)
    p_inj, state = jitted_steps(injected, params, grads)
    plain = opt.factory(**opt.point(0), **opt.flags)
    assert_close(p_inj, steps(plain, params, grads)[0])
    p_ref, inner = jitted_steps(plain, params, grads)
    assert_close(p_inj, p_ref)
    assert_same_eval_params(name, state, p_inj, inner, p_ref)
    # a new value in the state changes the next update as a fresh optimizer with it would
    state.hyperparams.update(hp_b)
    u, _ = injected.update(grads[0], state, p_inj)
    expected, _ = opt.factory(**opt.point(1), **opt.flags).update(grads[0], inner, p_ref)
    assert_close(u, expected)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_multi_steps_accumulates(name):
    params, _ = problem(np.float32)
    g1, g2, g3, g4 = gradients(params, 4)
    multi = optax.MultiSteps(make(name), every_k_schedule=2)
    mean = lambda a, b: jax.tree.map(lambda x, y: (x + y) / 2, a, b)
    p_plain, inner = jitted_steps(make(name), params, [mean(g1, g2), mean(g3, g4)])
    assert_close(steps(multi, params, [g1, g2, g3, g4])[0], p_plain)
    p_multi, state = jitted_steps(multi, params, [g1, g2, g3, g4])
    assert_close(p_multi, p_plain)
    assert_same_eval_params(name, state, p_multi, inner, p_plain)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_apply_if_finite_skips_a_nan_step(name):
    params, _ = problem(np.float32)
    g1, g2 = gradients(params, 2)
    bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan), g1)
    guarded = optax.apply_if_finite(make(name), max_consecutive_errors=3)
    p, state = steps(guarded, params, [g1, bad, g2])
    assert int(state.total_notfinite) == 1
    assert_close(p, steps(make(name), params, [g1, g2])[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_flax_train_state(name):
    params, _ = problem(np.float32)
    grads = gradients(params, 3)
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=make(name))
    for g in grads:
        state = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, g)
    assert int(state.step) == 3
    assert_close(state.params, steps(make(name), params, grads)[0])


@pytest.mark.parametrize("name", REFERENCED)
def test_warmup_cosine_schedule_matches_reference(name):
    opt = OPTIMIZERS[name]
    assert opt.reference is not None
    schedule = optax.warmup_cosine_decay_schedule(0.0, opt.base["learning_rate"], 5, 30)
    kwargs = {**opt.base, "learning_rate": schedule}
    params, noise = problem(np.float32, steps=30)
    actual = jax.jit(run_jax, static_argnums=0)(opt.factory(**kwargs, **opt.flags), params, noise)
    expected = ref.run(
        opt.reference(**reference_kwargs(kwargs), **opt.flags), params, noise, CURVATURE
    )
    assert_close(actual, expected)


# --- conventions ---------------------------------------------------------------------------


def test_conventions_agree_under_a_constant_learning_rate():
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        run = jax.jit(run_jax, static_argnums=0)
        lr_e, beta = 0.1, 0.9
        lr, mu = jaxmom.convert_momentum(lr_e, beta, source="ema", target="pytorch")
        assert (lr, mu) == pytest.approx((lr_e * (1 - beta), beta))
        assert jaxmom.convert_momentum(lr, mu, source="pytorch", target="sutskever") == (lr, mu)
        assert jaxmom.convert_momentum(lr, mu, source="sutskever", target="ema") == pytest.approx(
            (lr_e, beta)
        )
        pytorch = run(jaxmom.sgd(lr, mu), params, noise)
        assert_close(run(jaxmom.sutskever_sgd(lr, mu), params, noise), pytorch, rtol=1e-12)
        assert_close(run(jaxmom.ema_sgd(lr_e, beta), params, noise), pytorch, rtol=1e-12)
        nesterov = run(jaxmom.sgd(lr, mu, nesterov=True), params, noise)
        assert_close(
            run(jaxmom.sutskever_sgd(lr, mu, nesterov=True), params, noise), nesterov, rtol=1e-12
        )
        # torch's dampening = momentum has the EMA recurrence but not its first step
        dampened = run(jaxmom.sgd(lr_e, beta, dampening=beta), params, noise)
        assert (
            max(float(np.max(np.abs(a - b))) for a, b in zip(dampened.values(), pytorch.values()))
            > 1e-3
        )


def test_conventions_differ_under_a_schedule():
    with jax.enable_x64(True):
        params, noise = problem(np.float64)
        run = jax.jit(run_jax, static_argnums=0)
        schedule = optax.piecewise_constant_schedule(0.0625, {5: 0.5, 20: 0.25})  # exact values
        pytorch = run(jaxmom.sgd(schedule, 0.5), params, noise)
        sutskever = run(jaxmom.sutskever_sgd(schedule, 0.5), params, noise)
        ema = run(jaxmom.ema_sgd(lambda c: schedule(c) / (1 - 0.5), 0.5), params, noise)
        gap = max(float(np.max(np.abs(pytorch[k] - sutskever[k]))) for k in params)
        assert gap > 1e-3  # lr-inside keeps each step's own rate; lr-outside rescales history
        assert_close(ema, pytorch, rtol=1e-12)  # EMA and PyTorch are both lr-outside: still equal
