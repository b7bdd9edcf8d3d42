"""fit's contract, checked before anything compiles: a loss that is not one floating value per
example, an evaluation that is not a dict of per-example values or whose names collide with the
result's, a model state that does not keep its shape, an optimizer that reads a name the grid
lacks: each refused in one line naming the function, what it gave and what was expected. (Before
these checks, each trained silently wrong numbers or failed with an unrelated message.)"""

import jax.numpy as jnp
import numpy as np
import pytest
from fit_problem import X, Y, mlp_init, mlp_logits, mlp_loss, sgd

import jaxmom
from jaxmom import sweep

GRID = sweep.product(lr=[0.1], momentum=[0.9]).with_seeds(2)
KW = dict(init=mlp_init, loss=mlp_loss, optimizer=sgd, train=(X, Y), batch_size=16, epochs=1,
          progress=False)  # fmt: skip


def refused(message: str, grid=GRID, **kw):
    compiled = sweep.cache_size()
    with pytest.raises(ValueError, match=message) as e:
        sweep.fit(grid, **{**KW, **kw})
    assert "\n" not in str(e.value)
    assert sweep.cache_size() == compiled  # before anything compiled


def bad_loss(p, x, y):
    return mlp_loss(p, x, y)[:, None]


@pytest.mark.parametrize(
    "loss, message",
    [
        # (B, 1) broadcast against the weights: losses 16 times too large, trained silently
        (
            lambda p, x, y: mlp_loss(p, x, y)[:, None],
            r"^loss gave float32 \(16, 1\) for a batch of 16; expected one floating value per "
            r"example, shape \(16,\)$",
        ),
        (bad_loss, r"^loss \(bad_loss\) gave float32 \(16, 1\) for a batch of 16"),
        # the batch mean: accepted, and the partial last batch averaged its padding rows in
        (
            lambda p, x, y: mlp_loss(p, x, y).mean(),
            r"^loss gave float32 \(\) for a batch of 16; .* \(not the batch's mean: fit averages",
        ),
        # (B - 1,): was "mul got incompatible shapes"
        (lambda p, x, y: mlp_loss(p, x, y)[1:], r"^loss gave float32 \(15,\) for a batch of 16"),
        (lambda p, x, y: y, r"^loss gave int32 \(16,\) for a batch of 16; expected one floating"),
        (
            lambda p, x, y: (mlp_loss(p, x, y), {}),
            r"^loss gave a tuple of 2 .* \(a loss that gives \(losses, new_model_state\) needs "
            r"has_state=True\)$",
        ),
    ],
)
def test_a_loss_that_is_not_one_floating_value_per_example_is_refused(loss, message):
    refused(message, loss=loss)


def accuracy_column(p, x, y):
    return {"accuracy": (jnp.argmax(mlp_logits(p, x), -1) == y)[:, None]}


@pytest.mark.parametrize(
    "evaluate, message",
    [
        # (B, 1): was averaged as (B, B) and reported an accuracy of 11.1
        (
            accuracy_column,
            r"^evaluate \(accuracy_column\)'s 'accuracy' gave bool \(16, 1\) for a batch of 16; "
            r"expected one number \(or bool\) per example, shape \(16,\)$",
        ),
        # an array: was "'ShapeDtypeStruct' object is not iterable"
        (
            lambda p, x, y: mlp_logits(p, x)[:, 0],
            r"^evaluate gave float32 \(16,\) for a batch of 16; expected a dict \{name: one value "
            r"per example, shape \(16,\)\}$",
        ),
        # a grid column: the table held lr (the hyperparameter) and lr_last (the metric)
        (
            lambda p, x, y: {"lr": y},
            r"^evaluate returns \['lr'\], which the result uses \('lr' is a column of the grid\)",
        ),
        (lambda p, x, y: {"seed": y}, r"\('seed' is a column of the grid\)"),
        (lambda p, x, y: {"diverged": y}, r"\('diverged' is a column the result adds\)"),
        (lambda p, x, y: {"epoch_loss": y}, r"\('epoch_loss' is a metric of fit's own\)"),
    ],
)
def test_an_evaluation_that_breaks_the_contract_is_refused(evaluate, message):
    refused(message, eval=(X, Y), evaluate=evaluate)


def test_a_named_sets_metric_is_checked_under_its_own_name():
    # "val/loss" is no metric of fit's own: accepted where the tuple form's "loss" is refused
    res = sweep.fit(GRID, **KW, eval={"val": (X, Y)}, evaluate=lambda p, x, y: {"loss": y + 0.0})
    np.testing.assert_allclose(res.metrics["val/loss"], np.mean(Y))
    refused(
        r"\('loss' is a metric of fit's own\)", eval=(X, Y), evaluate=lambda p, x, y: {"loss": y}
    )


def with_count(p, x, y):
    return mlp_loss(p, x, y), {"count": jnp.zeros(2)}


@pytest.mark.parametrize(
    "init, loss, message",
    [
        (
            mlp_init,
            mlp_loss,
            r"^init \(mlp_init\) gave a dict of 3; with has_state=True it must give \(params, ",
        ),
        (
            lambda key: (mlp_init(key), {"count": jnp.zeros(())}),
            lambda p, state, x, y: mlp_loss(p, x, y),
            r"^loss gave float32 \(16,\) for a batch of 16; with has_state=True it must give "
            r"\(losses, new_model_state\)",
        ),
        (
            lambda key: (mlp_init(key), {"count": jnp.zeros(())}),
            lambda p, state, x, y: with_count(p, x, y),
            r"^loss's new model state\['count'\] is float32 \(2,\), where init's is float32 \(\)$",
        ),
        (
            lambda key: (mlp_init(key), {"count": jnp.zeros(())}),
            lambda p, state, x, y: (mlp_loss(p, x, y), {"other": state["count"]}),
            r"^loss's new model state has the structure .*, not init's",
        ),
    ],
)
def test_a_model_state_that_breaks_the_contract_is_refused(init, loss, message):
    refused(message, init=init, loss=loss, has_state=True)


def test_an_optimizer_reading_a_name_the_grid_lacks_is_refused_naming_the_cell_and_the_names():
    # was a bare KeyError: 'learning_rate'
    refused(
        r"^grid cell lr=0.1, momentum=0.9: optimizer reads the hyperparameter 'learning_rate', "
        r"which is neither the grid's nor fixed's: those are \['lr', 'momentum', 'nesterov'\]$",
        optimizer=lambda h: jaxmom.sgd(h["learning_rate"], h["momentum"]),
        fixed={"nesterov": False},
    )


def test_has_state_must_be_a_bool():
    with pytest.raises(TypeError, match="has_state must be True or False, got 1"):
        sweep.fit(GRID, **KW, has_state=1)
