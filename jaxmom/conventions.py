r"""Converting momentum hyperparameters between the three conventions.

=============  ==========================================  =====================================
convention     update                                      jaxmom / others
=============  ==========================================  =====================================
``pytorch``    b = mu*b + g;            p -= lr*b          ``sgd``, torch.optim.SGD, optax.sgd
``sutskever``  v = mu*v + lr*g;         p -= v             ``sutskever_sgd``, CS231n, Keras
``ema``        v = beta*v + (1-beta)*g; p -= lr*v          ``ema_sgd``, Andrew Ng's course
=============  ==========================================  =====================================

Under a constant learning rate the three give identical parameter paths when

* ``sutskever(lr, mu)`` = ``pytorch(lr, mu)``: the velocity is lr times the PyTorch buffer;
* ``ema(lr_e, beta)`` = ``pytorch(lr_e * (1 - beta), beta)``, first step included
  (``ema_sgd`` without ``debias``; PyTorch with dampening 0).

Under a schedule they differ: ``pytorch`` and ``ema`` apply today's learning rate to the whole
history, ``sutskever`` keeps each step's own learning rate inside the velocity.
"""

import jax

CONVENTIONS = ("pytorch", "sutskever", "ema")


def convert_momentum(
    learning_rate: jax.typing.ArrayLike,
    momentum: jax.typing.ArrayLike,
    *,
    source: str,
    target: str,
):
    """Returns ``(learning_rate, momentum)`` in ``target`` with the same path as in ``source``.

    Exact under a constant learning rate; works on traced values and arrays.

    Args:
      learning_rate: the learning rate in the ``source`` convention.
      momentum: the momentum (``beta`` for ``ema``) in [0, 1); it is the same in every convention.
      source, target: one of ``"pytorch"``, ``"sutskever"``, ``"ema"``.

    Example:
      >>> convert_momentum(0.1, 0.9, source="ema", target="pytorch")  # doctest: +ELLIPSIS
      (0.00999..., 0.9)
    """
    for name, value in (("source", source), ("target", target)):
        if value not in CONVENTIONS:
            raise ValueError(f"{name} must be one of {CONVENTIONS}, got {value!r}")
    pytorch_lr = learning_rate * (1 - momentum) if source == "ema" else learning_rate
    target_lr = pytorch_lr / (1 - momentum) if target == "ema" else pytorch_lr
    return target_lr, momentum
