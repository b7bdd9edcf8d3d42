"""The momentum family keeps jaxmom's contracts: traced hyperparameters, bad input, dtypes,
donation and Optax's wrappers."""

import functools

import chex
import jax
import jax.numpy as jnp
import mixed_precision
import numpy as np
import optax
import pytest
from noisy_quadratic import CURVATURE, check_saturation, counted, problem, run_jax, steps

import jaxmom

# name: (factory, flags, base keyword arguments, {hyperparameter: three values to vmap over})
FAMILY = {
    "adamw": (
        jaxmom.adamw,
        dict(amsgrad=True),
        dict(learning_rate=0.05, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "nadam": (
        jaxmom.nadam,
        dict(decoupled_weight_decay=True),
        dict(learning_rate=0.05, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            momentum_decay=[4e-3, 0.05, 0.0],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "radam": (
        jaxmom.radam,
        dict(decoupled_weight_decay=False),
        dict(learning_rate=0.05, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.9, 0.999, 0.5],  # rectified from step 2 (traced rho_t > 5), step 6, never
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "adamax": (
        jaxmom.adamax,
        {},
        dict(learning_rate=0.05, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "lion": (
        jaxmom.lion,
        {},
        dict(learning_rate=0.01, weight_decay=0.5),
        dict(
            learning_rate=[0.01, 0.02, 0.005],
            b1=[0.9, 0.8, 0.0],
            b2=[0.99, 0.9, 1.0],
            weight_decay=[0.0, 0.5, 0.1],
        ),
    ),
    "qhm": (
        jaxmom.qhm,
        dict(decoupled_weight_decay=True),
        dict(learning_rate=0.5, momentum=0.9, weight_decay=0.1),
        dict(
            learning_rate=[0.5, 0.2, 0.1],
            momentum=[0.9, 0.999, 0.0],
            nu=[0.7, 0.0, 1.0],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "qhadam": (
        jaxmom.qhadam,
        {},
        dict(learning_rate=0.05, nu1=0.7, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            b1=[0.9, 0.8, 0.0],
            b2=[0.999, 0.99, 0.5],
            nu1=[0.7, 1.0, 0.0],
            nu2=[1.0, 0.5, 0.0],
            eps=[1e-8, 1e-4, 1e-2],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "aggmo": (
        jaxmom.aggmo,
        dict(decoupled_weight_decay=True),
        dict(learning_rate=0.05, weight_decay=0.1),
        dict(
            learning_rate=[0.05, 0.02, 0.1],
            betas=[(0.0, 0.9, 0.99), (0.0, 0.5, 0.9), (0.5, 0.5, 0.5)],
            weight_decay=[0.0, 0.1, 0.01],
        ),
    ),
    "schedule_free_sgd": (
        jaxmom.schedule_free_sgd,
        {},
        dict(learning_rate=0.2, warmup_steps=3, weight_decay=0.1),
        dict(
            learning_rate=[0.2, 0.1, 0.5],
            b1=[0.9, 0.5, 0.99],
            warmup_steps=[3, 0, 10],
            weight_decay=[0.0, 0.1, 0.01],
            weight_lr_power=[2.0, 0.0, 1.0],
            r=[0.0, 0.5, 2.0],
        ),
    ),
}


def assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol), a, b)


def make(name, **overrides):
    factory, flags, base, _ = FAMILY[name]
    return factory(**{**base, **overrides}, **flags)


def eager_path(tx, params, noise):
    """``run_jax`` step by step in Python, with no trace of the optimizer."""
    p, state, path = params, tx.init(params), []
    for t in range(len(noise["b"])):
        g = jax.tree.map(lambda n, p: n[t] + CURVATURE * p, noise, p)
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        path.append(p)
    return jax.tree.map(lambda *x: jnp.stack(x), *path)


@pytest.mark.parametrize("name", list(FAMILY))
def test_vmap_over_each_hyperparameter_equals_a_loop_with_one_trace(name):
    """One program vmaps over each hyperparameter in turn (the others at their base values);
    new values reuse it, and every row equals a Python loop over concrete values."""
    grid = FAMILY[name][3]
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


# --- bad input: one line, at construction --------------------------------------------------

BAD = [
    (jaxmom.adamw, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.adamw, dict(b1=1.0), "b1 must be a finite number in [0, 1)"),
    (jaxmom.adamw, dict(weight_decay=-0.1), "weight_decay"),
    (jaxmom.adamw, dict(amsgrad=1), "amsgrad must be True or False"),
    (jaxmom.nadam, dict(b2=1.5), "b2"),
    (jaxmom.nadam, dict(momentum_decay=-1.0), "momentum_decay must be a finite number in [0, inf)"),
    (jaxmom.nadam, dict(eps=float("nan")), "eps"),
    (jaxmom.nadam, dict(decoupled_weight_decay="yes"), "decoupled_weight_decay must be True"),
    (jaxmom.radam, dict(b1=-0.1), "b1"),
    (jaxmom.radam, dict(b2=1.0), "b2"),
    (jaxmom.radam, dict(weight_decay=-1.0), "weight_decay"),
    (jaxmom.adamax, dict(learning_rate=float("inf")), "learning_rate"),
    (jaxmom.adamax, dict(b2=-0.5), "b2"),
    (jaxmom.adamax, dict(eps=-1e-8), "eps"),
    (jaxmom.lion, dict(learning_rate=-1e-4), "learning_rate"),
    (jaxmom.lion, dict(b1=1.5), "b1 must be a finite number in [0, 1]"),
    (jaxmom.lion, dict(b2=-0.1), "b2"),
    (jaxmom.lion, dict(weight_decay=-0.1), "weight_decay"),
    (jaxmom.qhm, dict(learning_rate=-1.0), "learning_rate"),
    (
        jaxmom.qhm,
        dict(learning_rate=1.0, momentum=1.5),
        "momentum must be a finite number in [0, 1]",
    ),
    (jaxmom.qhm, dict(learning_rate=1.0, nu=float("nan")), "nu must be a finite number"),
    (jaxmom.qhm, dict(learning_rate=1.0, weight_decay=-1.0), "weight_decay"),
    (jaxmom.qhadam, dict(nu2=1.5), "nu2 must be a finite number in [0, 1]"),
    (jaxmom.qhadam, dict(nu1=float("inf")), "nu1"),
    (jaxmom.qhadam, dict(b1=1.0), "b1"),
    (jaxmom.aggmo, dict(learning_rate=-0.1), "learning_rate"),
    (jaxmom.aggmo, dict(learning_rate=0.1, betas=(0.0, 1.0)), "betas[1] must be a finite number"),
    (jaxmom.aggmo, dict(learning_rate=0.1, betas=()), "betas must be a non-empty 1-D sequence"),
    (jaxmom.aggmo, dict(learning_rate=0.1, betas=jnp.array([0.5, -0.1])), "betas must be finite"),
    (jaxmom.aggmo, dict(learning_rate=0.1, betas=jnp.ones((2, 2)) / 2), "non-empty 1-D"),
    (jaxmom.schedule_free_sgd, dict(learning_rate=-1.0), "learning_rate"),
    (jaxmom.schedule_free_sgd, dict(b1=0.0), "b1 must be a finite number in (0, 1)"),
    (jaxmom.schedule_free_sgd, dict(b1=1.0), "b1"),
    (jaxmom.schedule_free_sgd, dict(warmup_steps=-1), "warmup_steps"),
    (jaxmom.schedule_free_sgd, dict(weight_lr_power=-2.0), "weight_lr_power"),
    (jaxmom.schedule_free_sgd, dict(r=float("nan")), "r must be"),
]


@pytest.mark.parametrize(
    "factory, kwargs, message", BAD, ids=[f"{f.__name__}-{list(k)[-1]}" for f, k, _ in BAD]
)
def test_bad_input_is_a_one_line_error(factory, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as error:
        factory(**kwargs)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_update_without_params_is_a_clear_error():
    tx = jaxmom.schedule_free_sgd(0.1)
    with pytest.raises(ValueError, match="schedule_free_sgd needs the parameters"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    with pytest.raises(ValueError, match="state must hold one ScheduleFreeSgdState, found 0"):
        jaxmom.schedule_free_eval_params(jaxmom.adam().init(jnp.ones(2)), jnp.ones(2))


# --- dtypes --------------------------------------------------------------------------------


def _params(dtype):
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(rng.normal(size=4), dtype),
    }


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("name", list(FAMILY))
def test_bfloat16_stays_bfloat16(name, traced):
    params = _params(jnp.bfloat16)
    grads = [jax.tree.map(lambda p: (p * (t + 1)).astype(p.dtype), params) for t in range(3)]
    base = {k: jnp.asarray(v, jnp.float32) for k, v in FAMILY[name][2].items()} if traced else {}

    def final(hparams):
        tx = make(name, **hparams)
        p, state = params, tx.init(params)
        for g in grads:
            u, state = tx.update(g, state, p)
            assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
            p = optax.apply_updates(p, u)
        return p, state

    p, state = jax.jit(final)(base) if traced else final(base)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(p))
    buffers = [x for x in jax.tree.leaves(state) if x.ndim > 0]  # scalars: counts, mu products
    assert buffers and all(x.dtype == jnp.bfloat16 for x in buffers)
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p))


@pytest.mark.parametrize("name", list(FAMILY))
def test_float64_under_x64(name):
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        tx = make(name)
        u, state = tx.update(params, tx.init(params), params)
        floats = [x for x in jax.tree.leaves((u, state)) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and all(x.dtype == jnp.float64 for x in floats)


@pytest.mark.parametrize("name", list(FAMILY))
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


@pytest.mark.parametrize("name", list(FAMILY))
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


@pytest.mark.parametrize("name", list(FAMILY))
def test_chain_with_clipping_and_decayed_weights(name):
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    chained = optax.chain(
        optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-3), make(name)
    )

    @jax.jit
    def by_hand(p):  # clip to global norm 1, add 1e-3 * p, then the optimizer
        tx = make(name)
        state = tx.init(p)
        for g in grads:
            norm = optax.tree.norm(g)
            g = jax.tree.map(lambda g, p: g * jnp.minimum(1.0, 1.0 / norm) + 1e-3 * p, g, p)
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
        return p

    assert_close(jitted_steps(chained, params, grads)[0], by_hand(params))


@pytest.mark.parametrize("name", list(FAMILY))
def test_inject_hyperparams(name):
    factory, flags, base, grid = FAMILY[name]
    params, _ = problem(np.float32)
    grads = gradients(params, 4)
    hp_a = {k: v[0] for k, v in grid.items()}
    hp_b = {k: v[1] for k, v in grid.items()}
    arrays = lambda hp: {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
    injected = optax.inject_hyperparams(factory)(**arrays(hp_a), **flags)
    p_inj, state = jitted_steps(injected, params, grads)
    p_ref, inner = jitted_steps(factory(**hp_a, **flags), params, grads)
    assert_close(p_inj, p_ref)
    if name == "schedule_free_sgd":
        assert_close(
            jaxmom.schedule_free_eval_params(state, p_inj),
            jaxmom.schedule_free_eval_params(inner, p_ref),
        )
    # a new value in the state changes the next update as a fresh optimizer with it would
    state.hyperparams.update(arrays(hp_b))
    u, _ = injected.update(grads[0], state, p_inj)
    expected, _ = factory(**hp_b, **flags).update(grads[0], inner, p_ref)
    assert_close(u, expected)


@pytest.mark.parametrize("name", list(FAMILY))
def test_multi_steps_accumulates(name):
    params, _ = problem(np.float32)
    g1, g2, g3, g4 = gradients(params, 4)
    p_multi, state = jitted_steps(
        optax.MultiSteps(make(name), every_k_schedule=2), params, [g1, g2, g3, g4]
    )
    mean = lambda a, b: jax.tree.map(lambda x, y: (x + y) / 2, a, b)
    p_plain, inner = jitted_steps(make(name), params, [mean(g1, g2), mean(g3, g4)])
    assert_close(p_multi, p_plain)
    if name == "schedule_free_sgd":
        assert_close(
            jaxmom.schedule_free_eval_params(state, p_multi),
            jaxmom.schedule_free_eval_params(inner, p_plain),
        )


@pytest.mark.parametrize(
    "state_dtype, param_dtype", [(jnp.bfloat16, jnp.float32), (jnp.float32, jnp.bfloat16)]
)
@pytest.mark.parametrize("name", list(FAMILY))
def test_state_dtype_arguments(name, state_dtype, param_dtype):
    """Dtypes after init and 10 jitted steps, donation, inject_hyperparams, and the 100-step
    path within the stated tolerance of the float32 run (see ``mixed_precision.tolerance``)."""
    factory, flags, base, _ = FAMILY[name]
    mixed_precision.check(factory, {**base, **flags}, state_dtype, param_dtype)


@pytest.mark.parametrize("name", list(FAMILY))
def test_state_dtypes_equal_to_the_parameters_change_nothing(name):
    factory, flags, base, _ = FAMILY[name]
    mixed_precision.check_explicit_default(factory, {**base, **flags})


@pytest.mark.parametrize(
    "name", counted({k: (f, {**base, **flags}) for k, (f, flags, base, _) in FAMILY.items()})
)
def test_counts_saturate_at_the_top_of_int32(name):
    """The issue's symptoms: nadam gave NaN from the second step, schedule-free (warm-up
    included) +-inf or garbage."""
    params, _ = problem(np.float32)
    check_saturation(make(name), params, gradients(params, 4))
