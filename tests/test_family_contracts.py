"""The momentum family's own contracts: bad input is a one-line error at construction, and
schedule-free SGD names what it needs. The contracts every optimizer keeps (traced
hyperparameters, dtypes, donation, Optax's wrappers) are in ``test_optimizer_contracts.py``,
driven by ``optimizer_table.OPTIMIZERS``."""

import jax.numpy as jnp
import pytest

import jaxmom

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
