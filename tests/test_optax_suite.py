"""The kinds of test Optax runs on its own optimizers (optax/_src/alias_test.py), on jaxmom's.

One table of optimizer cases, every flag present at least once, drives: buffer donation,
no recompilation, dtype stability under ``lax.cond``, mixed-precision trees, extra keyword
arguments, ``tree_map_params`` / ``tree_get``, the state under ``inject_hyperparams``,
``MultiSteps`` with mixed dtypes, convergence, complex parameters, and default-versus-default
equality with each twin.
"""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimizer_reference as ref
import pytest
import torch
from noisy_quadratic import (
    CURVATURE,
    NEAR_MAX,
    SMALL,
    at_count,
    path_f64,
    problem,
    run_jax,
    run_torch,
    scan,
    steps,
    steps_from,
)

import jaxmom

SCHEDULE = optax.cosine_decay_schedule(1e-2, 10_000, 0.1)

# name: (factory, keyword arguments): every optimizer, and every flag at least once. The values
# converge on both problems below in 10,000 float32 steps (a weight decay of 1e-6 moves the
# minimum by less than the tolerance).
OPTIMIZERS = {
    "sgd": (jaxmom.sgd, dict(learning_rate=1e-3)),
    "sgd-nesterov": (jaxmom.sgd, dict(learning_rate=1e-3, momentum=0.9, nesterov=True)),
    "sgd-dampening-wd": (
        jaxmom.sgd,
        dict(learning_rate=1e-3, momentum=0.9, dampening=0.3, weight_decay=1e-6),
    ),
    "sutskever_sgd-nesterov": (
        jaxmom.sutskever_sgd,
        dict(learning_rate=1e-3, momentum=0.9, nesterov=True),
    ),
    "ema_sgd-debias": (jaxmom.ema_sgd, dict(learning_rate=1e-2, beta=0.9, debias=True)),
    "adagrad-all": (
        jaxmom.adagrad,
        dict(learning_rate=0.5, lr_decay=1e-4, initial_accumulator_value=0.1, weight_decay=1e-6),
    ),
    "adadelta-wd": (jaxmom.adadelta, dict(learning_rate=0.1, rho=0.9, eps=1e-6, weight_decay=1e-6)),
    "rmsprop": (jaxmom.rmsprop, dict(learning_rate=3e-3)),
    "rmsprop-centered-momentum": (
        jaxmom.rmsprop,
        dict(learning_rate=1e-3, centered=True, momentum=0.9),
    ),
    "rmsprop-eps_in_sqrt-wd": (
        jaxmom.rmsprop,
        dict(learning_rate=1e-3, momentum=0.9, eps_in_sqrt=True, weight_decay=1e-6),
    ),
    "adam-amsgrad": (jaxmom.adam, dict(learning_rate=1e-2, amsgrad=True)),
    "adam-no-debias-eps_in_sqrt": (
        jaxmom.adam,
        dict(learning_rate=1e-2, debias=False, eps_in_sqrt=True),
    ),
    "adam-schedule-wd": (jaxmom.adam, dict(learning_rate=SCHEDULE, weight_decay=1e-6)),
}
NAMES = list(OPTIMIZERS)


def make(name):
    factory, kwargs = OPTIMIZERS[name]
    return factory(**kwargs)


def injected_values(name):
    """What inject_hyperparams hands the factory: every numeric argument, defaults included, as a
    JAX array (bools and the None state dtypes stay static)."""
    factory, kwargs = OPTIMIZERS[name]
    bound = inspect.signature(factory).bind(**kwargs)
    bound.apply_defaults()
    # a schedule becomes its value, recomputed every step: here the first one, which gives the
    # same state as long as the state does not depend on the learning rate (true of every case)
    return {
        k: v
        if isinstance(v, bool) or v is None
        else jnp.asarray(v(0) if callable(v) else v, jnp.float32)
        for k, v in bound.arguments.items()
    }


def grads_like(params, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def params_of(dtype):
    return {"w": jnp.linspace(-1, 1, 6, dtype=dtype).reshape(2, 3), "b": jnp.ones(3, dtype)}


def assert_trees_close(a, b, tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    chex.assert_trees_all_close(a, b, rtol=tol, atol=tol)


# --- donation: every state leaf is its own buffer --------------------------------------------

DONATED = {
    **{name: (lambda name=name: make(name)) for name in NAMES},
    "ema": lambda: jaxmom.ema(0.9),
    "ema-no-debias": lambda: jaxmom.ema(0.9, debias=False),
    "sgd-traced-like-momentum": lambda: jaxmom.sgd(0.1, jnp.asarray(0.0), dampening=0.3),
}


@pytest.mark.parametrize("name", list(DONATED))
def test_three_donated_steps(name):
    tx = DONATED[name]()
    params = params_of(jnp.float32)
    grads = grads_like(params)
    expected_p, expected_s = params, tx.init(params)
    for _ in range(3):
        u, expected_s = tx.update(grads, expected_s, expected_p)
        expected_p = optax.apply_updates(expected_p, u)

    @jax.jit
    def init(p):
        return tx.init(p)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1))
    for make_state in (tx.init, init):  # eager and jitted init
        p = jax.tree.map(jnp.copy, params)
        s = make_state(p)
        for _ in range(3):
            p, s = step(p, s, grads)
        assert_trees_close((p, s), (expected_p, expected_s), 1e-6)


# --- no recompilation: the init state and the updated state compile to one program -------------


@pytest.mark.parametrize("name", NAMES)
def test_the_second_step_reuses_the_compiled_program(name):
    tx = make(name)
    params = params_of(jnp.float32)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    chex.clear_trace_counter()
    p, s = step(params, tx.init(params), grads_like(params))
    p, s = step(p, s, grads_like(params, 1))  # a retrace would raise


# --- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_state_type_and_dtype_are_stable_under_cond(name):
    """float16, float64 and complex128 leaves in one tree, as Optax tests them one by one."""
    with jax.enable_x64(True):
        tx = make(name)
        params = {
            dtype: params_of(jnp.dtype(dtype)) for dtype in ("float16", "float64", "complex128")
        }
        state = tx.init(params)
        grads = grads_like(params)

        @jax.jit
        def maybe_step(state, take):
            # lax.cond demands that both branches give the same types: update must keep them
            return jax.lax.cond(take, lambda s: tx.update(grads, s, params)[1], lambda s: s, state)

        new = maybe_step(state, True)
        assert jax.tree.structure(new) == jax.tree.structure(state)
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
            assert a.dtype == b.dtype and a.shape == b.shape
        updates, _ = tx.update(grads, state, params)
        for dtype, leaves in updates.items():
            assert all(u.dtype == jnp.dtype(dtype) for u in jax.tree.leaves(leaves))


@pytest.mark.parametrize("name", NAMES)
def test_a_tree_of_float32_and_float64_leaves(name):
    """Each leaf keeps its dtype and takes the same steps as alone in its own dtype."""
    with jax.enable_x64(True):
        tx = make(name)
        params = {"a": jnp.linspace(-1, 1, 4, dtype=jnp.float32), "b": jnp.ones(3, jnp.float64)}
        grads = [grads_like(params, seed) for seed in range(3)]
        p, state = jax.jit(lambda params, grads: steps(tx, params, grads))(params, grads)
        assert p["a"].dtype == jnp.float32 and p["b"].dtype == jnp.float64
        for key in params:
            alone, _ = steps(tx, {key: params[key]}, [{key: g[key]} for g in grads])
            tol = 1e-6 if key == "a" else 1e-12
            np.testing.assert_allclose(p[key], alone[key], rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_multi_steps_with_mixed_gradient_and_parameter_dtypes(name):
    params = {"a": jnp.linspace(-1, 1, 4, dtype=jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    grads = [
        {"a": g["a"].astype(jnp.float32), "b": g["b"].astype(jnp.bfloat16)}
        for g in (grads_like(params, seed) for seed in range(4))
    ]
    tx = optax.MultiSteps(make(name), every_k_schedule=2)

    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = params, tx.init(params)
    for g in grads:
        p, s = step(p, s, g)
    assert p["a"].dtype == jnp.bfloat16 and p["b"].dtype == jnp.float32
    assert int(s.gradient_step) == 2
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))


# --- Optax's interfaces ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_extra_keyword_arguments_pass_through(name):
    params = params_of(jnp.float32)
    grads = grads_like(params)
    plain = make(name)
    expected, _ = plain.update(grads, plain.init(params), params)
    wrapped = optax.with_extra_args_support(make(name))
    assert isinstance(wrapped, optax.GradientTransformationExtraArgs)
    u, _ = wrapped.update(grads, wrapped.init(params), params, value=jnp.ones(()), key=None)
    assert_trees_close(u, expected, 0)
    # in a chain with a transformation that reads an extra argument
    reads_value = optax.GradientTransformationExtraArgs(
        lambda p: optax.EmptyState(),
        lambda u, s, p=None, *, value, **kw: (jax.tree.map(lambda x: x * value, u), s),
    )
    chained = optax.chain(reads_value, make(name))
    u, _ = chained.update(grads, chained.init(params), params, value=jnp.asarray(1.0))
    assert_trees_close(u, expected, 0)


@pytest.mark.parametrize("name", NAMES)
def test_tree_map_params_and_tree_get(name):
    tx = make(name)
    params = params_of(jnp.float32)
    state = tx.init(params)
    for seed in range(3):
        u, state = tx.update(grads_like(params, seed), state, params)
    # every parameter-shaped leaf is found, and nothing else is touched
    mapped = optax.tree_utils.tree_map_params(
        tx, lambda p: jnp.full_like(p, 7.0), state, transform_non_params=lambda x: x
    )
    assert jax.tree.structure(mapped) == jax.tree.structure(state)
    for path, leaf in jax.tree_util.tree_leaves_with_path(mapped):
        if leaf.shape in ((2, 3), (3,)):
            assert bool(jnp.all(leaf == 7.0)), jax.tree_util.keystr(path)
        else:
            assert leaf.dtype == jnp.int32 and leaf.shape == (), jax.tree_util.keystr(path)
    # one step counter at most; where there is one, it counts the steps
    counts = optax.tree_utils.tree_get_all_with_path(state, "count")
    if name == "adam-schedule-wd":  # a schedule keeps its own count, as Optax's does
        assert [int(c) for _, c in counts] == [3, 3]
        return
    assert len(counts) <= 1
    count = optax.tree_utils.tree_get(state, "count")
    assert count is None if not counts else int(count) == 3


def test_every_momentum_optimizer_has_one_count():
    params = params_of(jnp.float32)
    for tx in (jaxmom.sgd(0.1, 0.9), jaxmom.sutskever_sgd(0.1, 0.9), jaxmom.ema_sgd(0.1)):
        state = tx.init(params)
        for _ in range(2):
            _, state = tx.update(grads_like(params), state, params)
        assert int(optax.tree_utils.tree_get(state, "count")) == 2


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams_keeps_the_same_state(name):
    factory, kwargs = OPTIMIZERS[name]
    params = params_of(jnp.float32)
    grads = [grads_like(params, seed) for seed in range(3)]
    injected = optax.inject_hyperparams(factory)(**kwargs)
    # inject_hyperparams hands the factory JAX arrays, so the state to compare with is made from
    # the same arrays; the parameter path equals that of the Python-float optimizer.
    p_injected, s_injected = jax.jit(lambda p: steps(injected, p, grads))(params)
    p_arrays, s_arrays = steps(factory(**injected_values(name)), params, grads)
    assert_trees_close(s_injected.inner_state, s_arrays, 1e-6)
    assert_trees_close(p_injected, steps(make(name), params, grads)[0], 1e-6)


# --- convergence ------------------------------------------------------------------------------


def parabola():
    target = jnp.array([1.0, -1.0, 1.0])
    return jnp.array([-1.0, 10.0, 1.0]), target, lambda p: jnp.sum(jnp.square(p - target))


def rosenbrock():
    a, b = 1.0, 100.0
    objective = lambda p: jnp.square(a - p[0]) + b * jnp.square(p[1] - p[0] ** 2)
    return jnp.zeros(2), jnp.array([a, a**2]), objective


@pytest.mark.parametrize("surface", [parabola, rosenbrock])
@pytest.mark.parametrize("name", NAMES)
def test_converges_in_ten_thousand_steps(name, surface):
    tx = make(name)
    start, minimum, objective = surface()

    def body(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(objective)(p), s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=10_000))(
        (start, tx.init(start))
    )
    chex.assert_trees_all_close(p, minimum, rtol=3e-2, atol=3e-2)


# --- complex parameters ------------------------------------------------------------------------

# (jaxmom transformation, its Optax twin with matching settings)
COMPLEX_TWINS = {
    "sgd": (jaxmom.sgd(0.05), optax.sgd(0.05)),
    "sgd-momentum-nesterov": (
        jaxmom.sgd(0.05, 0.9, nesterov=True),
        optax.sgd(0.05, 0.9, nesterov=True),
    ),
    "sutskever_sgd": (jaxmom.sutskever_sgd(0.05, 0.9), optax.sgd(0.05, 0.9)),
    "ema_sgd": (
        jaxmom.ema_sgd(0.1, 0.8, debias=True),
        optax.chain(optax.ema(0.8), optax.scale_by_learning_rate(0.1)),
    ),
    "adagrad": (
        jaxmom.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
        optax.adagrad(0.1, initial_accumulator_value=0.1, eps=0.0),
    ),
    "rmsprop": (jaxmom.rmsprop(0.01, 0.9), optax.rmsprop(0.01, 0.9, eps_in_sqrt=False)),
    "rmsprop-centered-momentum-eps_in_sqrt": (
        jaxmom.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.5, eps_in_sqrt=True),
        optax.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.5),
    ),
    "adam": (jaxmom.adam(0.05), optax.adam(0.05)),
    "adam-eps_in_sqrt": (
        jaxmom.adam(0.05, 0.8, 0.99, 1e-4, eps_in_sqrt=True),
        optax.chain(
            optax.scale_by_adam(0.8, 0.99, eps=0.0, eps_root=1e-4),
            optax.scale_by_learning_rate(0.05),
        ),
    ),
    # the building blocks
    "scale_by_momentum": (jaxmom.scale_by_momentum(0.9), optax.trace(0.9)),
    "scale_by_adam": (jaxmom.scale_by_adam(0.8, 0.99, 1e-4), optax.scale_by_adam(0.8, 0.99, 1e-4)),
    "scale_by_rms": (jaxmom.scale_by_rms(0.9), optax.scale_by_rms(0.9, eps_in_sqrt=False)),
    "scale_by_rms-centered": (
        jaxmom.scale_by_rms(0.9, 1e-4, centered=True),
        optax.scale_by_stddev(0.9, 1e-4, eps_in_sqrt=False),
    ),
    "scale_by_adagrad": (
        jaxmom.scale_by_adagrad(0.1, eps=0.0),
        optax.scale_by_rss(initial_accumulator_value=0.1, eps=0.0),
    ),
    "ema": (jaxmom.ema(0.8), optax.ema(0.8)),
    "scale_by_learning_rate": (
        jaxmom.scale_by_learning_rate(0.05),
        optax.scale_by_learning_rate(0.05),
    ),
}
# No Optax twin on complex parameters: optax.adadelta squares g**2, not |g|^2, and
# optax.amsgrad maximises the bias-corrected v. These go against the NumPy transcription.
COMPLEX_REFERENCE = {
    "adadelta": (jaxmom.adadelta(0.5, 0.8, 1e-4), ref.adadelta(0.5, 0.8, 1e-4)),
    "adam-amsgrad": (jaxmom.adam(0.05, amsgrad=True), ref.adam(0.05, amsgrad=True)),
    "adam-eps_in_sqrt": (
        jaxmom.adam(0.05, 0.8, 0.99, 1e-4, eps_in_sqrt=True),
        ref.adam(0.05, 0.8, 0.99, 1e-4, eps_in_sqrt=True),
    ),
    "rmsprop-centered-momentum": (
        jaxmom.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.9),
        ref.rmsprop(0.01, 0.9, 1e-3, centered=True, momentum=0.9),
    ),
    "adagrad": (jaxmom.adagrad(0.1, lr_decay=0.01), ref.adagrad(0.1, lr_decay=0.01)),
}
COMPLEX_TOLERANCE = {"complex64": 2e-4, "complex128": 1e-9}


def complex_problem(dtype, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (2, 3), "s": ()}
    draw = lambda *s: (rng.normal(size=s) + 1j * rng.normal(size=s)).astype(dtype)
    return {k: draw(*s) for k, s in shapes.items()}, {k: draw(steps, *s) for k, s in shapes.items()}


def complex_path(tx, params, noise):
    return jax.jit(run_jax, static_argnums=0)(tx, params, noise)


def assert_complex_paths_close(actual, expected, dtype):
    """Leaf by leaf within the dtype's tolerance, absolute errors relative to the leaf's scale."""
    tol = COMPLEX_TOLERANCE[dtype]
    for k in expected:
        scale = float(np.max(np.abs(expected[k])))
        np.testing.assert_allclose(actual[k], expected[k], rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("name", list(COMPLEX_TWINS))
def test_complex_parameters_match_the_optax_twin(name, dtype):
    ours, theirs = COMPLEX_TWINS[name]
    with jax.enable_x64(dtype == "complex128"):
        params, noise = complex_problem(dtype)
        actual = complex_path(ours, params, noise)
        expected = complex_path(theirs, params, noise)
    assert all(x.dtype == jnp.dtype(dtype) for x in jax.tree.leaves(actual))
    assert_complex_paths_close(actual, expected, dtype)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("name", list(COMPLEX_REFERENCE))
def test_complex_parameters_match_the_transcription(name, dtype):
    ours, reference = COMPLEX_REFERENCE[name]
    with jax.enable_x64(dtype == "complex128"):
        params, noise = complex_problem(dtype)
        actual = complex_path(ours, params, noise)
    expected = ref.run(reference, params, noise, CURVATURE)
    assert_complex_paths_close(actual, expected, dtype)


def test_an_imaginary_gradient_gives_an_imaginary_step():
    """The issue's symptom: with g*g instead of |g|^2, 1j gave a real step and amsgrad NaN."""
    p = jnp.zeros(1, jnp.complex64)
    for tx in (jaxmom.adam(0.1), jaxmom.adam(0.1, amsgrad=True), jaxmom.rmsprop(0.1, eps=0.0)):
        u, _ = tx.update(jnp.array([1j], jnp.complex64), tx.init(p), p)
        assert bool(jnp.all(jnp.isfinite(u)))
        assert abs(complex(u[0]).real) < 1e-7 and complex(u[0]).imag < 0


# --- default versus default ---------------------------------------------------------------------


# Every "Equal to" claim that holds default for default: only the arguments that the twin
# requires are given (a learning rate for sgd, a decay for ema and trace).
DEFAULT_TWINS = {
    "sgd/optax": (lambda: jaxmom.sgd(0.1), lambda: optax.sgd(0.1)),
    "sutskever_sgd/optax": (lambda: jaxmom.sutskever_sgd(0.1), lambda: optax.sgd(0.1)),
    "sutskever_sgd/sgd": (lambda: jaxmom.sutskever_sgd(0.1), lambda: jaxmom.sgd(0.1)),
    "adam/optax": (lambda: jaxmom.adam(), lambda: optax.adam(1e-3)),
    "ema/optax": (lambda: jaxmom.ema(0.9), lambda: optax.ema(0.9)),
    "scale_by_adam/optax": (lambda: jaxmom.scale_by_adam(), lambda: optax.scale_by_adam()),
    "scale_by_adadelta/optax": (lambda: jaxmom.scale_by_adadelta(), optax.scale_by_adadelta),
    "scale_by_momentum/optax": (lambda: jaxmom.scale_by_momentum(0.9), lambda: optax.trace(0.9)),
}
DEFAULT_TORCH_TWINS = {
    "sgd": (lambda: jaxmom.sgd(0.1), torch.optim.SGD, dict(lr=0.1)),
    "sutskever_sgd": (lambda: jaxmom.sutskever_sgd(0.1), torch.optim.SGD, dict(lr=0.1)),
    "adagrad": (jaxmom.adagrad, torch.optim.Adagrad, {}),
    "adadelta": (jaxmom.adadelta, torch.optim.Adadelta, {}),
    "rmsprop": (jaxmom.rmsprop, torch.optim.RMSprop, {}),
    "adam": (jaxmom.adam, torch.optim.Adam, {}),
}


@pytest.mark.parametrize("name", list(DEFAULT_TWINS))
def test_defaults_equal_the_optax_twin(name):
    ours, theirs = DEFAULT_TWINS[name]
    params, noise = problem("float64", 20, seed=1, shapes=SMALL)
    with jax.enable_x64(True):
        np.testing.assert_allclose(
            *(
                np.concatenate([p.ravel() for p in path_f64(f(), params, noise).values()])
                for f in (ours, theirs)
            ),
            rtol=1e-12,
            atol=1e-12,
        )


@pytest.mark.parametrize("name", list(DEFAULT_TORCH_TWINS))
def test_defaults_equal_the_torch_twin(name):
    ours, torch_class, torch_kwargs = DEFAULT_TORCH_TWINS[name]
    params, noise = problem("float64", 20, seed=1, shapes=SMALL)
    actual = path_f64(ours(), params, noise)
    expected = run_torch(torch_class, torch_kwargs, params, noise)
    for k in params:
        np.testing.assert_allclose(actual[k], expected[k], rtol=1e-12, atol=1e-12)


def test_optax_defaults_that_differ_are_the_stated_ones():
    """The docstrings warn about these; if Optax changes a default, this test says so."""
    params, noise = problem("float64", 20, seed=1, shapes=SMALL)
    ours = path_f64(jaxmom.adadelta(), params, noise)
    theirs = path_f64(optax.adadelta(), params, noise)  # learning_rate=None: no descent step
    assert np.all(np.sign(theirs["s"][-1] - params["s"]) != np.sign(ours["s"][-1] - params["s"]))
    for ours, theirs in [
        (jaxmom.rmsprop(), optax.rmsprop(1e-2)),  # decay 0.9, eps inside the root
        (jaxmom.adagrad(), optax.adagrad(1e-2)),  # G_0 = 0.1, eps inside the root
        (jaxmom.scale_by_rms(), optax.scale_by_rms()),
        (jaxmom.ema_sgd(0.1), optax.chain(optax.ema(0.9), optax.scale_by_learning_rate(0.1))),
    ]:
        a, b = path_f64(ours, params, noise), path_f64(theirs, params, noise)
        assert np.max(np.abs(a["w"] - b["w"])) > 1e-6


def test_adam_float32_first_steps_are_more_accurate_than_optax():
    """README's numbers: a constant gradient makes every exact step -g / (|g| + eps)."""
    g = np.array([0.3, -1.7, 2e-3, 5.0], np.float32)
    exact = -(g.astype(np.float64) / (np.abs(g.astype(np.float64)) + 1e-8))

    def errors(tx):
        p, s, out = jnp.zeros(4, jnp.float32), None, []
        s = tx.init(p)
        for _ in range(3):
            u, s = tx.update(jnp.asarray(g), s, p)
            out.append(np.max(np.abs(np.asarray(u, np.float64) - exact) / np.abs(exact)))
        return out

    ours, theirs = errors(jaxmom.adam(1.0)), errors(optax.adam(1.0))
    assert max(ours) < 2e-7
    assert theirs[0] > 5e-6 and max(theirs) > 1e-5


# --- state dtypes: Optax's test_explicit_dtype, ported (issue 18) --------------------------------

EXPLICIT = {  # name: (jaxmom with a state dtype, Optax's attribute, jaxmom's attribute)
    "sgd_mom": (lambda d: jaxmom.sgd(0.1, momentum=0.9, accumulator_dtype=d), "trace", "buffer"),
    "adam": (lambda d: jaxmom.adam(0.1, mu_dtype=d), "mu", "mu"),
    "adamw": (lambda d: jaxmom.adamw(0.1, mu_dtype=d), "mu", "mu"),
}
OPTAX_EXPLICIT = {
    "sgd_mom": lambda d: optax.sgd(0.1, momentum=0.9, accumulator_dtype=d),
    "adam": lambda d: optax.adam(0.1, mu_dtype=d),
    "adamw": lambda d: optax.adamw(0.1, mu_dtype=d),
}
DTYPES = ("bfloat16", "float32", "complex64", None)


@pytest.mark.parametrize("opt_name", list(EXPLICIT))
@pytest.mark.parametrize("state_dtype", DTYPES)
@pytest.mark.parametrize("params_dtype", DTYPES)
def test_explicit_dtype(params_dtype, state_dtype, opt_name):
    """optax/_src/alias_test.py: the buffer has the state dtype, or the parameters' for None.

    One case differs on purpose: complex parameters with a real state dtype. Optax stores the
    real part of the complex buffer and drops the imaginary one silently (the second test
    below); jaxmom refuses it in one line at init."""
    factory, _, attribute = EXPLICIT[opt_name]
    opt = factory(state_dtype)
    params_dtype = jax.dtypes.canonicalize_dtype(params_dtype)
    params = jnp.array([0.0, 0.0], dtype=params_dtype)
    if jnp.iscomplexobj(params) and state_dtype not in ("complex64", None):
        with pytest.raises(TypeError, match=f"={state_dtype} cannot hold .* complex params"):
            opt.init(params)
        return
    expected_dtype = params_dtype if state_dtype is None else jnp.dtype(state_dtype)
    state = opt.init(params)
    assert optax.tree.get(state, attribute).dtype == expected_dtype
    # and so it stays, with updates in the parameters' dtype
    updates, state = jax.jit(opt.update)(jnp.ones_like(params), state, params)
    assert optax.tree.get(state, attribute).dtype == expected_dtype
    assert updates.dtype == params_dtype
    # the state dtype Optax's twin picks is the same
    assert (
        optax.tree.get(
            OPTAX_EXPLICIT[opt_name](state_dtype).init(params), EXPLICIT[opt_name][1]
        ).dtype
        == expected_dtype
    )


@pytest.mark.filterwarnings("ignore:Casting from complex to real:DeprecationWarning")
def test_optax_drops_the_imaginary_part_of_a_real_state_for_complex_params():
    """Why jaxmom refuses the case: with an imaginary gradient, Optax's float32 momentum of
    complex parameters stays 0, and its steps lose their momentum."""
    params = jnp.zeros(1, jnp.complex64)
    g = jnp.array([1j], jnp.complex64)
    tx = optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32)
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(g, state, params)
    assert float(optax.tree.get(state, "trace")[0]) == 0.0  # the momentum of 1j, lost
    assert complex(updates[0]) == pytest.approx(-0.1j)  # not -0.1 * 1.9j
    ours = jaxmom.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.complex64)
    state = ours.init(params)
    for _ in range(2):
        updates, state = ours.update(g, state, params)
    assert complex(updates[0]) == pytest.approx(-0.19j)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mu_dtype="int32"), "mu_dtype must be None or a floating-point or complex dtype"),
        (dict(mu_dtype="foo"), "mu_dtype must be None or a floating-point or complex dtype"),
        (dict(mu_dtype=3), "mu_dtype must be None or a floating-point or complex dtype"),
        (dict(nu_dtype="complex64"), r"nu_dtype must be None or a real .*\|g\|\^2 is real"),
        (dict(nu_dtype=jnp.ones(())), "got an array: under inject_hyperparams pass jnp.dtype"),
    ],
)
def test_bad_state_dtypes_are_one_line_type_errors(kwargs, message):
    with pytest.raises(TypeError, match=message) as error:
        jaxmom.adam(**kwargs)
    assert "\n" not in str(error.value)


def test_a_dtype_class_under_inject_hyperparams_is_named():
    """inject_hyperparams takes jnp.bfloat16 (a callable) for a schedule: say what to pass."""
    params = jnp.ones(3)
    with pytest.raises(TypeError, match=r"pass jnp.dtype\('bfloat16'\) or 'bfloat16'"):
        optax.inject_hyperparams(jaxmom.adam)(0.1, mu_dtype=jnp.bfloat16).init(params)
    for tx in (
        optax.inject_hyperparams(jaxmom.adam)(0.1, mu_dtype="bfloat16"),
        optax.inject_hyperparams(jaxmom.adam, static_args="mu_dtype")(0.1, mu_dtype=jnp.bfloat16),
    ):
        assert tx.init(params).inner_state[1].mu.dtype == jnp.bfloat16


# (jaxmom with state dtype d, its Optax twin with the same, the buffer's name in each)
DTYPE_TWINS = {
    "sgd": (
        lambda d: jaxmom.sgd(0.05, 0.9, accumulator_dtype=d),
        lambda d: optax.sgd(0.05, 0.9, accumulator_dtype=d),
        ("buffer", "trace"),
    ),
    "sgd-nesterov": (
        lambda d: jaxmom.sgd(0.05, 0.9, nesterov=True, accumulator_dtype=d),
        lambda d: optax.sgd(0.05, 0.9, nesterov=True, accumulator_dtype=d),
        ("buffer", "trace"),
    ),
    "sutskever_sgd": (
        lambda d: jaxmom.sutskever_sgd(0.05, 0.9, accumulator_dtype=d),
        lambda d: optax.sgd(0.05, 0.9, accumulator_dtype=d),
        ("buffer", "trace"),
    ),
    "scale_by_momentum": (
        lambda d: jaxmom.scale_by_momentum(0.9, accumulator_dtype=d),
        lambda d: optax.trace(0.9, accumulator_dtype=d),
        ("buffer", "trace"),
    ),
    "ema": (
        lambda d: jaxmom.ema(0.8, accumulator_dtype=d),
        lambda d: optax.ema(0.8, accumulator_dtype=d),
        ("ema", "ema"),
    ),
    "ema_sgd": (
        lambda d: jaxmom.ema_sgd(0.1, 0.8, debias=True, accumulator_dtype=d),
        lambda d: optax.chain(
            optax.ema(0.8, accumulator_dtype=d), optax.scale_by_learning_rate(0.1)
        ),
        ("ema", "ema"),
    ),
    "adam": (
        lambda d: jaxmom.adam(0.05, mu_dtype=d),
        lambda d: optax.adam(0.05, mu_dtype=d),
        ("mu", "mu"),
    ),
    "adamw": (
        lambda d: jaxmom.adamw(0.05, weight_decay=0.1, mu_dtype=d),
        lambda d: optax.adamw(0.05, weight_decay=0.1, mu_dtype=d),
        ("mu", "mu"),
    ),
    "lion": (
        lambda d: jaxmom.lion(0.01, mu_dtype=d),
        lambda d: optax.lion(0.01, mu_dtype=d, weight_decay=0.0),
        ("mu", "mu"),
    ),
    "schedule_free_sgd": (
        lambda d: jaxmom.schedule_free_sgd(0.2, accumulator_dtype=d),
        lambda d: optax.contrib.schedule_free_sgd(0.2, state_dtype=d),
        ("z", "z"),
    ),
}


@pytest.mark.parametrize(
    "state_dtype, param_dtype",
    [
        (jnp.bfloat16, jnp.float32),
        (jnp.float32, jnp.bfloat16),
        (jnp.complex64, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
    ],
)
@pytest.mark.parametrize("name", list(DTYPE_TWINS))
@pytest.mark.filterwarnings("ignore:Casting from complex to real:DeprecationWarning")  # Optax's
def test_state_dtypes_and_paths_equal_the_optax_twin(name, state_dtype, param_dtype):
    """The same state dtypes as the Optax twin, and the same 30-step path to rounding: float32
    rounding, or a few units of bfloat16's last place where either the state or the parameters
    are bfloat16 (the two round at different points of the same arithmetic)."""
    ours, theirs, (our_name, their_name) = DTYPE_TWINS[name]
    params, noise = problem(param_dtype, 30, seed=2, shapes=SMALL)
    ours, theirs = ours(state_dtype), theirs(state_dtype)
    assert optax.tree.get(ours.init(params), our_name) is not None
    for a, b in zip(
        jax.tree.leaves(optax.tree.get(ours.init(params), our_name)),
        jax.tree.leaves(optax.tree.get(theirs.init(params), their_name)),
    ):
        assert a.dtype == b.dtype == state_dtype
    (_, s_ours), p_ours = jax.jit(lambda p: scan(ours, p, noise))(params)
    (_, s_theirs), p_theirs = jax.jit(lambda p: scan(theirs, p, noise))(params)
    for a in jax.tree.leaves(optax.tree.get(s_ours, our_name)):
        assert a.dtype == state_dtype
    bfloat16 = jnp.bfloat16 in (state_dtype, param_dtype)
    tol = 3e-2 if bfloat16 else 1e-5
    # Lion steps by sign(b1 m + (1 - b1) g): where that is within rounding of 0 the two signs
    # may differ, once here, which moves the parameter by 2 lr
    flip = 2 * 0.01 * 1.01 if name == "lion" and bfloat16 else 0.0
    for k in params:
        a, b = (np.asarray(x[k], np.float64) for x in (p_ours, p_theirs))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(np.max(np.abs(b))) + flip)


# --- step counts at the top of int32 (issue 17, item 3) -------------------------------------------

# jaxmom, its Optax twin, and how each one's state reads "NEAR_MAX steps taken"
SATURATION_TWINS = {
    "sgd-schedule": (
        lambda: jaxmom.sgd(SCHEDULE, 0.9),
        lambda: optax.sgd(SCHEDULE, 0.9),
    ),
    "ema": (lambda: jaxmom.ema(0.9), lambda: optax.ema(0.9)),
    "adam": (lambda: jaxmom.adam(0.05), lambda: optax.adam(0.05)),
    "adamw": (
        lambda: jaxmom.adamw(0.05, weight_decay=0.1),
        lambda: optax.adamw(0.05, weight_decay=0.1),
    ),
    "adamax": (lambda: jaxmom.adamax(0.05), lambda: optax.adamax(0.05)),
    "radam": (lambda: jaxmom.radam(0.05), lambda: optax.radam(0.05)),  # same eps once c2 = 1
    # once 0.96**(t psi) has vanished, torch's NAdam is Dozat's: optax.nadam
    "nadam": (lambda: jaxmom.nadam(0.05), lambda: optax.nadam(0.05)),
    "qhadam": (lambda: jaxmom.qhadam(0.05), lambda: optax.adam(0.05)),
    "lion": (lambda: jaxmom.lion(0.01), lambda: optax.lion(0.01, weight_decay=0.0)),
    "schedule_free_sgd": (
        lambda: jaxmom.schedule_free_sgd(0.2),
        lambda: optax.contrib.schedule_free_sgd(0.2),
    ),
}


def saturated(state):
    """jaxmom's state after NEAR_MAX steps: the count, and NAdam's product of mu_t (0)."""
    if optax.tree.get_all_with_path(state, "mu_product"):
        return at_count(state, NEAR_MAX, mu_product=jnp.zeros([]))
    return at_count(state, NEAR_MAX)


def optax_saturated(state):
    """Optax's: schedule-free counts from 1, in a leaf named step_count."""
    if optax.tree.get_all_with_path(state, "step_count"):
        return optax.tree.set(state, step_count=np.int32(NEAR_MAX + 1))
    return at_count(state, NEAR_MAX)


@pytest.mark.parametrize("name", list(SATURATION_TWINS))
def test_steps_past_the_top_of_int32_equal_the_optax_twin(name):
    """The issue's symptom: nadam gave NaN from the second step, schedule-free +-inf."""
    ours, theirs = (f() for f in SATURATION_TWINS[name])
    params = params_of(jnp.float32)
    grads = [grads_like(params, seed) for seed in range(5)]
    p_ours, s_ours = steps_from(ours, saturated(ours.init(params)), params, grads)
    p_theirs, _ = steps_from(theirs, optax_saturated(theirs.init(params)), params, grads)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((p_ours, s_ours)))
    for _, count in optax.tree.get_all_with_path(s_ours, "count"):
        assert int(count) == 2**31 - 1  # saturated, as optax.safe_increment
    assert_trees_close(p_ours, p_theirs, 1e-5)
    assert not all(
        bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(params))
    )
