"""The mixed-precision contract every optimizer keeps (issue 18), checked in one place for every
optimizer of ``optimizer_table.OPTIMIZERS`` (driven by ``test_optimizer_contracts``).

``dtype_arguments(factory, dtype)`` names every state-dtype argument a factory takes
(``accumulator_dtype``, ``mu_dtype``, ``nu_dtype``) with one value, read from its signature.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = 100


def tolerance(state_dtype, param_dtype, dtypes):
    r"""The stated distance from the all-float32 path, relative to the path's scale (measured
    on this problem, then rounded up).

    * bfloat16 state, float32 parameters: 3e-2, or 6e-2 with a bfloat16 second moment. A
      bfloat16 average :math:`m \leftarrow \beta m + (1 - \beta) g` stops moving once
      :math:`|g - m|` is under :math:`2^{-9} |m| / (1 - \beta)`: for :math:`\beta = 0.9` it
      can sit 2% off (Adam's first moment), for :math:`\beta_2 = 0.999` its decay is lost whole
      (Adamax's maximum). This is the format, not the optimizer.
    * bfloat16 parameters, float32 state: 0.15. The parameters round to 8 bits every step, and
      steps under half a unit in their last place are lost: Adagrad's, Adadelta's and Lion's
      paths stall on this problem whatever the state's dtype.
    """
    if param_dtype == jnp.bfloat16:
        return 0.15
    return 6e-2 if "nu_dtype" in dtypes else 3e-2


def dtype_arguments(factory, dtype):
    names = [n for n in inspect.signature(factory).parameters if n.endswith("_dtype")]
    return {n: dtype for n in names}


def quadratic(dtype):
    """Parameters and a gradient function of 0.5 * sum(c * (p - target)^2), c in [0.2, 1]."""
    rng = np.random.default_rng(0)
    shapes = {"w": (3, 4), "b": (4,)}
    start = {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in shapes.items()}
    target = {k: 10 * rng.normal(size=s) for k, s in shapes.items()}
    curvature = {k: rng.uniform(0.2, 1.0, size=s) for k, s in shapes.items()}

    def grad(p):
        return jax.tree.map(
            lambda p, t, c: (c * (p.astype(jnp.float32) - t)).astype(p.dtype), p, target, curvature
        )

    return start, grad


def path(tx, params, grad, steps=STEPS, donate=False):
    """The parameters after each of ``steps`` jitted steps, and the final state."""

    def step(p, s):
        u, s = tx.update(grad(p), s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    p, s, out = jax.tree.map(jnp.copy, params), tx.init(params), []
    for _ in range(steps):
        p, s = step(p, s)
        out.append(jax.tree.map(lambda x: np.asarray(x, np.float64), p))
    return jax.tree.map(lambda *x: np.stack(x), *out), s


def buffers(state):
    """The parameter-shaped leaves of a state (scalars are counts, weight sums, products)."""
    return [x for x in jax.tree.leaves(state) if jnp.ndim(x) > 0]


def check(factory, kwargs, state_dtype, param_dtype):
    """State dtypes after init and 10 jitted steps, donation, inject_hyperparams, and the
    100-step path against the all-float32 run."""
    dtypes = dtype_arguments(factory, jnp.dtype(state_dtype))
    assert dtypes, f"{factory.__name__} takes no state dtype"
    tx = factory(**kwargs, **dtypes)
    params, grad = quadratic(param_dtype)
    state = tx.init(params)
    assert buffers(state) and all(b.dtype == state_dtype for b in buffers(state))
    ten, s10 = path(tx, params, grad, steps=10)
    assert all(b.dtype == state_dtype for b in buffers(s10))
    assert jax.tree.structure(s10) == jax.tree.structure(state)
    # donation: every state leaf its own buffer, the same path
    donated, s_donated = path(tx, params, grad, steps=10, donate=True)
    jax.tree.map(np.testing.assert_array_equal, donated, ten)
    # inject_hyperparams: the dtypes are static arguments (np.dtype objects are not callables).
    # Its hyperparameters are float32 arrays (by default it would round b2=0.999 to bfloat16's
    # 1.0 for bfloat16 parameters, which the optimizer refuses), so the path to equal is that of
    # the same float32 arrays, to rounding.
    injected = optax.inject_hyperparams(factory, hyperparam_dtype=jnp.float32)(**kwargs, **dtypes)
    p_injected, s_injected = path(injected, params, grad, steps=10)
    assert all(b.dtype == state_dtype for b in buffers(s_injected.inner_state))
    numbers = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    arrays = {k: jnp.asarray(v, jnp.float32) if numbers(v) else v for k, v in kwargs.items()}
    p_arrays, _ = path(factory(**arrays, **dtypes), params, grad, steps=10)
    # XLA folds constants and fuses differently: float32 rounding, one bfloat16 unit
    close = 1e-5 if param_dtype == jnp.float32 else 2**-7
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, close, close), p_injected, p_arrays)
    # the 100-step path against the float32 run, float32 parameters and default state
    mixed, _ = path(tx, params, grad)
    reference, _ = path(factory(**kwargs), quadratic(jnp.float32)[0], quadratic(jnp.float32)[1])
    tol = tolerance(state_dtype, param_dtype, dtypes)
    for k in reference:
        scale = float(np.max(np.abs(reference[k])))
        error = float(np.max(np.abs(mixed[k] - reference[k])))
        assert error <= tol * scale, f"{k}: {error:.3g} > {tol} * {scale:.3g}"


def check_explicit_default(factory, kwargs):
    """Every dtype argument set to the parameters' own dtype takes the default's path, bit for
    bit: the dtype code adds no rounding of its own (float32, and bfloat16 throughout)."""
    for dtype in (jnp.float32, jnp.bfloat16):
        params, grad = quadratic(dtype)
        default, s_default = path(factory(**kwargs), params, grad, steps=20)
        explicit, s_explicit = path(
            factory(**kwargs, **dtype_arguments(factory, jnp.dtype(dtype))), params, grad, steps=20
        )
        jax.tree.map(np.testing.assert_array_equal, explicit, default)
        jax.tree.map(np.testing.assert_array_equal, s_explicit, s_default)
