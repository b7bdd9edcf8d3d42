"""The contracts every optimizer keeps: traced hyperparameters, bad input, dtypes, chaining."""

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

import jaxmom

# name: (jaxmom factory, reference factory, flags, hyperparameter sets A, B, C)
CONTRACT = {
    "sgd": (
        jaxmom.sgd,
        ref.sgd,
        {},
        *(
            dict(learning_rate=lr, momentum=mu, dampening=d, weight_decay=wd)
            for lr, mu, d, wd in [
                (0.05, 0.9, 0.0, 0.0),
                (0.02, 0.5, 0.3, 0.1),
                (0.1, 0.0, 0.1, 0.01),
            ]
        ),
    ),
    "sgd-nesterov": (
        jaxmom.sgd,
        ref.sgd,
        dict(nesterov=True),
        *(dict(learning_rate=lr, momentum=mu) for lr, mu in [(0.05, 0.9), (0.02, 0.5), (0.1, 0.2)]),
    ),
    "sutskever_sgd": (
        jaxmom.sutskever_sgd,
        ref.sutskever_sgd,
        dict(nesterov=True),
        *(dict(learning_rate=lr, momentum=mu) for lr, mu in [(0.05, 0.9), (0.02, 0.5), (0.1, 0.2)]),
    ),
    "ema_sgd": (
        jaxmom.ema_sgd,
        ref.ema_sgd,
        dict(debias=True),
        *(dict(learning_rate=lr, beta=b) for lr, b in [(0.05, 0.9), (0.02, 0.5), (0.1, 0.0)]),
    ),
    "adagrad": (
        jaxmom.adagrad,
        ref.adagrad,
        {},
        *(
            dict(learning_rate=lr, lr_decay=d, initial_accumulator_value=a, eps=e, weight_decay=w)
            for lr, d, a, e, w in [
                (0.1, 0, 0, 1e-10, 0),
                (0.05, 0.1, 0.2, 1e-3, 0.1),
                (0.2, 0.01, 1, 0, 0),
            ]
        ),
    ),
    "adadelta": (
        jaxmom.adadelta,
        ref.adadelta,
        {},
        *(
            dict(learning_rate=lr, rho=r, eps=e, weight_decay=w)
            for lr, r, e, w in [(1.0, 0.9, 1e-6, 0), (0.5, 0.8, 1e-4, 0.1), (2.0, 0.95, 1e-5, 0.0)]
        ),
    ),
    "rmsprop": (
        jaxmom.rmsprop,
        ref.rmsprop,
        dict(centered=True),
        *(
            dict(learning_rate=lr, alpha=a, eps=e, momentum=m, weight_decay=w)
            for lr, a, e, m, w in [
                (0.01, 0.99, 1e-8, 0.9, 0),
                (0.02, 0.9, 1e-3, 0.5, 0.1),
                (0.01, 0.5, 1e-2, 0.1, 0),
            ]
        ),
    ),
    "adam": (
        jaxmom.adam,
        ref.adam,
        dict(amsgrad=True),
        *(
            dict(learning_rate=lr, b1=b1, b2=b2, eps=e, weight_decay=w)
            for lr, b1, b2, e, w in [
                (0.05, 0.9, 0.999, 1e-8, 0),
                (0.02, 0.8, 0.99, 1e-4, 0.1),
                (0.1, 0.0, 0.5, 1e-3, 0),
            ]
        ),
    ),
}


def as_arrays(hparams):
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


def assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol), a, b)


# --- hyperparameters: traced, no retrace, vmap = loop, jit = no jit --------------------------


@pytest.mark.parametrize("name", list(CONTRACT))
def test_new_hyperparameter_values_do_not_retrace(name):
    factory, _, flags, hp_a, hp_b, _ = CONTRACT[name]
    params, noise = problem(np.float32, steps=10)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train(hparams, params, noise):
        return run_jax(factory(**hparams, **flags), params, noise)

    chex.clear_trace_counter()
    path_a = train(as_arrays(hp_a), params, noise)
    path_b = train(as_arrays(hp_b), params, noise)  # would raise on a second trace
    assert_close(path_a, run_jax(factory(**hp_a, **flags), params, noise))
    assert_close(path_b, run_jax(factory(**hp_b, **flags), params, noise))


@pytest.mark.parametrize("name", list(CONTRACT))
def test_vmap_over_hyperparameters_equals_python_loop(name):
    factory, _, flags, *sets = CONTRACT[name]
    params, noise = problem(np.float32, steps=10)
    batch = {k: jnp.asarray([s[k] for s in sets], jnp.float32) for k in sets[0]}
    paths = jax.jit(jax.vmap(lambda hp: run_jax(factory(**hp, **flags), params, noise)))(batch)
    for i, hparams in enumerate(sets):
        assert_close(
            jax.tree.map(lambda x: x[i], paths), run_jax(factory(**hparams, **flags), params, noise)
        )


class JitAgreementTest(chex.TestCase):
    """chex variants: the update, jitted or not, matches the NumPy transcription."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((name, name) for name in CONTRACT))
    def test_update_matches_reference(self, name):
        factory, reference, flags, hparams, _, _ = CONTRACT[name]
        params, noise = problem(np.float32, steps=5)
        tx = factory(**hparams, **flags)
        update = self.variant(tx.update)
        p, state, path = params, tx.init(params), []
        for t in range(5):
            grads = jax.tree.map(lambda n, p: n[t] + CURVATURE * p, noise, p)
            u, state = update(grads, state, p)
            p = optax.apply_updates(p, u)
            path.append(p)
        expected = ref.run(
            reference(**reference_kwargs(hparams), **flags), params, noise, CURVATURE
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
@pytest.mark.parametrize("name", ["ema", *CONTRACT])
def test_integer_parameters_are_refused_at_init(name, dtype):
    tx = jaxmom.ema(0.9) if name == "ema" else CONTRACT[name][0](**CONTRACT[name][3])
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


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("name", list(CONTRACT))
def test_bfloat16_stays_bfloat16(name, traced):
    factory, _, flags, hparams, _, _ = CONTRACT[name]
    params, noise = problem(jnp.bfloat16, steps=3)

    def final(hp):
        tx = factory(**hp, **flags)
        state = tx.init(params)
        p = params
        for t in range(3):
            u, state = tx.update(jax.tree.map(lambda n: n[t], noise), state, p)
            assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
            p = optax.apply_updates(p, u)
        return p, state

    p, state = jax.jit(final)(as_arrays(hparams)) if traced else final(hparams)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(p))
    floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.bfloat16 for x in floats)
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p))


@pytest.mark.parametrize("name", list(CONTRACT))
def test_float64_state_under_x64(name):
    factory, _, flags, hparams, _, _ = CONTRACT[name]
    with jax.enable_x64(True):
        params, _ = problem(np.float64, steps=1)
        tx = factory(**hparams, **flags)
        u, state = tx.update(params, tx.init(params), params)
        leaves = jax.tree.leaves((u, state))
        assert all(x.dtype in (jnp.float64, jnp.int32) for x in leaves)


# --- chaining ------------------------------------------------------------------------------

OPTIMIZERS = {
    name: (factory, {**hp, **flags}) for name, (factory, _, flags, hp, _, _) in CONTRACT.items()
}


# --- state dtypes (issue 18) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "state_dtype, param_dtype", [(jnp.bfloat16, jnp.float32), (jnp.float32, jnp.bfloat16)]
)
@pytest.mark.parametrize("name", [*OPTIMIZERS, "ema"])
def test_state_dtype_arguments(name, state_dtype, param_dtype):
    """Dtypes after init and 10 jitted steps, donation, inject_hyperparams, and the 100-step
    path within the stated tolerance of the float32 run (see ``mixed_precision.tolerance``)."""
    factory, kwargs = OPTIMIZERS[name] if name != "ema" else (jaxmom.ema, dict(decay=0.9))
    mixed_precision.check(factory, kwargs, state_dtype, param_dtype)


@pytest.mark.parametrize("name", [*OPTIMIZERS, "ema"])
def test_state_dtypes_equal_to_the_parameters_change_nothing(name):
    factory, kwargs = OPTIMIZERS[name] if name != "ema" else (jaxmom.ema, dict(decay=0.9))
    mixed_precision.check_explicit_default(factory, kwargs)


# --- step counts at the top of int32 (issue 17, item 3) -------------------------------------


@pytest.mark.parametrize("name", counted(OPTIMIZERS))
def test_counts_saturate_at_the_top_of_int32(name):
    factory, kwargs = OPTIMIZERS[name]
    params, _ = problem(np.float32)
    check_saturation(factory(**kwargs), params, gradients(params, 4))


def gradients(params, n, seed=1):
    rng = np.random.default_rng(seed)
    return [
        jax.tree.map(lambda p: jnp.asarray(3 * rng.normal(size=p.shape), p.dtype), params)
        for _ in range(n)
    ]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_chain_with_clipping_and_decayed_weights(name):
    factory, kwargs = OPTIMIZERS[name]
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    chained = optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-3), factory(**kwargs)
    )
    p_chain, _ = steps(chained, params, grads)
    # the same by hand: clip to global norm 1, add 1e-3 * p, then the optimizer
    tx, state, p = factory(**kwargs), None, params
    state = tx.init(p)
    for g in grads:
        norm = optax.tree.norm(g)
        g = jax.tree.map(lambda g, p: g * jnp.minimum(1.0, 1.0 / norm) + 1e-3 * p, g, p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    assert_close(p_chain, p)


@pytest.mark.parametrize("name", list(CONTRACT))
def test_warmup_cosine_schedule_matches_reference(name):
    factory, reference, flags, hparams, _, _ = CONTRACT[name]
    schedule = optax.warmup_cosine_decay_schedule(0.0, hparams["learning_rate"], 5, 30)
    kwargs = {**hparams, "learning_rate": schedule}
    params, noise = problem(np.float32, steps=30)
    actual = jax.jit(run_jax, static_argnums=0)(factory(**kwargs, **flags), params, noise)
    expected = ref.run(reference(**reference_kwargs(kwargs), **flags), params, noise, CURVATURE)
    assert_close(actual, expected)


@pytest.mark.parametrize("name", list(CONTRACT))
def test_inject_hyperparams(name):
    factory, _, flags, hp_a, hp_b, _ = CONTRACT[name]
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    injected = optax.inject_hyperparams(factory)(**hp_a, **flags)
    p_inj, state = jax.jit(lambda p: steps(injected, p, grads))(params)
    assert_close(p_inj, steps(factory(**hp_a, **flags), params, grads)[0])
    # changing a hyperparameter in the state changes the next update as a fresh value would
    state.hyperparams.update({k: jnp.asarray(v, jnp.float32) for k, v in hp_b.items()})
    u, _ = injected.update(grads[0], state, p_inj)
    _, inner = steps(factory(**hp_a, **flags), params, grads)
    expected, _ = factory(**hp_b, **flags).update(grads[0], inner, p_inj)
    assert_close(u, expected)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_multi_steps_accumulates(name):
    factory, kwargs = OPTIMIZERS[name]
    params, _ = problem(np.float32)
    g1, g2, g3, g4 = gradients(params, 4)
    p_multi, _ = steps(
        optax.MultiSteps(factory(**kwargs), every_k_schedule=2), params, [g1, g2, g3, g4]
    )
    mean = lambda a, b: jax.tree.map(lambda x, y: (x + y) / 2, a, b)
    assert_close(p_multi, steps(factory(**kwargs), params, [mean(g1, g2), mean(g3, g4)])[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_apply_if_finite_skips_a_nan_step(name):
    factory, kwargs = OPTIMIZERS[name]
    params, _ = problem(np.float32)
    g1, g2 = gradients(params, 2)
    bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan), g1)
    guarded = optax.apply_if_finite(factory(**kwargs), max_consecutive_errors=3)
    p, state = steps(guarded, params, [g1, bad, g2])
    assert int(state.total_notfinite) == 1
    assert_close(p, steps(factory(**kwargs), params, [g1, g2])[0])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_flax_train_state(name):
    factory, kwargs = OPTIMIZERS[name]
    params, _ = problem(np.float32)
    grads = gradients(params, 3)
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=factory(**kwargs))
    for g in grads:
        state = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, g)
    assert int(state.step) == 3
    assert_close(state.params, steps(factory(**kwargs), params, grads)[0])


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
