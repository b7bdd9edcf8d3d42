"""Bytes of optimizer state per parameter, for every optimizer at each state-dtype setting.

Measured with ``jax.eval_shape(tx.init, params)`` (shapes and dtypes only, nothing allocated) on
one parameter vector of 2**20 elements; the scalars (counts, NAdam's product, schedule-free's
weight sums) add a few bytes per tensor, under 0.01 byte per parameter here. Writes the whole page
``docs/mixed_precision.md``; ``tests/test_state_bytes.py`` checks that the committed page is what
this script writes now.

    python experiments/state_bytes.py            # rewrites docs/mixed_precision.md
    python experiments/state_bytes.py --print    # prints it instead
"""

import argparse
import inspect
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxmom
from jaxmom.sweep import add_compile_cache_flags, configure_compile_cache, write_text

PAGE = Path(__file__).resolve().parents[1] / "docs" / "mixed_precision.md"
SIZE = 2**20

# label: (factory, arguments) at settings that keep all its buffers
OPTIMIZERS = {
    "sgd(lr)": (jaxmom.sgd, dict(learning_rate=0.1)),
    "sgd(lr, 0.9)": (jaxmom.sgd, dict(learning_rate=0.1, momentum=0.9)),
    "sutskever_sgd(lr, 0.9)": (jaxmom.sutskever_sgd, dict(learning_rate=0.1, momentum=0.9)),
    "ema_sgd(lr)": (jaxmom.ema_sgd, dict(learning_rate=0.1)),
    "adagrad()": (jaxmom.adagrad, {}),
    "adadelta()": (jaxmom.adadelta, {}),
    "rmsprop()": (jaxmom.rmsprop, {}),
    "rmsprop(centered, momentum=0.9)": (jaxmom.rmsprop, dict(centered=True, momentum=0.9)),
    "adam()": (jaxmom.adam, {}),
    "adam(amsgrad=True)": (jaxmom.adam, dict(amsgrad=True)),
    "adamw()": (jaxmom.adamw, {}),
    "nadam()": (jaxmom.nadam, {}),
    "radam()": (jaxmom.radam, {}),
    "adamax()": (jaxmom.adamax, {}),
    "lion()": (jaxmom.lion, {}),
    "qhm(lr)": (jaxmom.qhm, dict(learning_rate=0.1)),
    "qhadam()": (jaxmom.qhadam, {}),
    "aggmo(lr), 3 betas": (jaxmom.aggmo, dict(learning_rate=0.1)),
    "schedule_free_sgd()": (jaxmom.schedule_free_sgd, {}),
}

# column: (parameters' dtype, state dtype for the first-moment arguments, for nu_dtype)
SETTINGS = {
    "float32 params": ("float32", None, None),
    "bfloat16 params": ("bfloat16", None, None),
    "float32 params, bfloat16 state": ("float32", "bfloat16", "bfloat16"),
    "float32 params, bfloat16 first moments": ("float32", "bfloat16", None),
    "bfloat16 params, float32 state": ("bfloat16", "float32", "float32"),
}


def dtype_names(factory):
    return [n for n in inspect.signature(factory).parameters if n.endswith("_dtype")]


def dtype_arguments(factory, first, second):
    names = dtype_names(factory)
    chosen = {n: (second if n == "nu_dtype" else first) for n in names}
    return {n: jnp.dtype(d) for n, d in chosen.items() if d is not None}


def state_bytes(label, setting) -> float:
    """Bytes of ``tx.init``'s state per parameter, from shapes and dtypes alone."""
    params_dtype, first, second = SETTINGS[setting]
    factory, kwargs = OPTIMIZERS[label]
    tx = factory(**kwargs, **dtype_arguments(factory, first, second))
    params = jax.ShapeDtypeStruct((SIZE,), jnp.dtype(params_dtype))
    state = jax.eval_shape(tx.init, params)
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) / SIZE


def table() -> str:
    head = "| optimizer | arguments | " + " | ".join(SETTINGS) + " |"
    rows = [head, "|---|---|" + "---:|" * len(SETTINGS)]
    for label in OPTIMIZERS:
        names = ", ".join(f"`{n}`" for n in dtype_names(OPTIMIZERS[label][0]))
        cells = " | ".join(f"{state_bytes(label, s):.2f}" for s in SETTINGS)
        rows.append(f"| `{label}` | {names} | {cells} |")
    return "\n".join(rows)


INTRO = """\
# Mixed precision

Every optimizer with a parameter-sized state takes static, keyword-only dtype arguments for its
buffers, with Optax's names where Optax has them:

- `accumulator_dtype`: the momentum-style buffers of `sgd`, `sutskever_sgd`, `ema_sgd` (and
  `ema`), `qhm`, `aggmo`, schedule-free's $z$, and RMSprop's momentum buffer;
- `mu_dtype`: the first moments of `adam`, `adamw`, `nadam`, `radam`, `adamax`, `qhadam`, `lion`
  and centered RMSprop;
- `nu_dtype` (Optax has none): the second moments and accumulators of the Adam family,
  `rmsprop`, `adagrad`, `adadelta`, amsgrad's maximum and Adamax's infinity norm. They hold
  $|g|^2$, so they are real, and a complex `nu_dtype` is refused.

`None`, the default, keeps the state in the parameters' dtypes, as before. Each step reads the
stored buffer into the wider of its dtype and the gradient's (`jnp.promote_types`: bfloat16 with
float32 is float32), computes the update there, stores the buffer back in its own dtype, and
returns updates in the gradients' dtype. A buffer of $g$ for complex parameters must be complex:
a real `mu_dtype` or `accumulator_dtype` for them is a one-line `TypeError` at `init` (Optax
stores the real part and drops the imaginary one).

```python
>>> import jax.numpy as jnp, jaxmom
>>> params = jnp.zeros(3, jnp.bfloat16)
>>> tx = jaxmom.adam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
>>> state = tx.init(params)
>>> state[1].mu.dtype, state[1].nu.dtype
(dtype('float32'), dtype('float32'))
>>> updates, state = tx.update(jnp.ones(3, jnp.bfloat16), state)
>>> updates.dtype
dtype(bfloat16)

```

Under `optax.inject_hyperparams`, pass a dtype as a string or `jnp.dtype(...)`: a class such as
`jnp.bfloat16` is a callable, which `inject_hyperparams` takes for a schedule (or list the
argument in its `static_args`).

## What a bfloat16 state costs in accuracy

A bfloat16 number keeps 8 significant bits. An average $m \\leftarrow \\beta m + (1 - \\beta) g$
stored in bfloat16 stops moving once $|g - m| < 2^{-9} |m| / (1 - \\beta)$: with $\\beta = 0.9$ it
may sit 2% away from the gradient it averages, and with $\\beta_2 = 0.999$ the decay is lost
entirely ($0.999\\, m$ rounds back to $m$). On the tests' quadratic the 100-step paths with a
bfloat16 state stay within 3% of the float32 paths' scale (6% with a bfloat16 second moment);
see `tests/mixed_precision.py`. A bfloat16 `nu_dtype` is the setting to avoid; a float32 state
with bfloat16 parameters does not lose these digits, but steps under half a unit in the
parameters' last place are lost whatever the state.

## Bytes of optimizer state per parameter

Generated by `python experiments/state_bytes.py` from `jax.eval_shape(tx.init, params)`; the
first-moment arguments are `accumulator_dtype` and `mu_dtype`. "bfloat16 state" sets every
dtype argument the optimizer takes to bfloat16.

"""


def page() -> str:
    return INTRO + table() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the page, write nothing")
    add_compile_cache_flags(parser)
    args = parser.parse_args(argv)
    configure_compile_cache(args.compile_cache, prog="state_bytes.py")
    if args.print:
        print(page(), end="")
    else:
        write_text(PAGE, page())
        print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
