"""The study's model: the seed tutorials' 784-200-10 ReLU MLP, and its input scaling.

Inputs are scaled as :math:`x \\mapsto (x/255 - 0.5)/0.5 \\in [-1, 1]` and flattened.
Initialisation ``"torch"`` is PyTorch's ``nn.Linear`` default: ``kaiming_uniform_(a=sqrt(5))``
gives :math:`W \\sim U(-1/\\sqrt{n_{in}}, 1/\\sqrt{n_{in}})` (gain :math:`\\sqrt{2/(1+a^2)}`
times :math:`\\sqrt{3/n_{in}}`) and the bias has the same bound. ``"flax"`` is Flax's default
(LeCun-normal kernel, zero bias).

Layers are Flax's own ``nn.Dense``, kernels ``(in, out)``: the model is written as a user writes
one. Until issue 26 it was hand-laid feature-major (kernels ``(out, in)``, ``W @ x.T``), because
a vmapped sweep of ``nn.Dense`` copied its stacked kernels at every step; ``fit`` now computes
any such model kernel first and feature-major itself (``jaxmom.sweep._layout``), and measured the
plain model as fast (``docs/speed.md``). The initial values are those the hand-laid model drew
(it drew ``(in, out)`` and stored the transpose): a seed gives the same initial function.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_linear_init(fan_in: int):
    """PyTorch nn.Linear's default for weight and bias alike: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class MLP(nn.Module):
    """784-200-10 with ReLU, as in the seed tutorials: (batch, 784) inputs, (batch, 10) logits."""

    features: tuple = (200, 10)
    init_scheme: str = "torch"  # or "flax"

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.features):
            if i:
                x = nn.relu(x)
            if self.init_scheme == "torch":
                init = torch_linear_init(x.shape[-1])
                x = nn.Dense(width, kernel_init=init, bias_init=init)(x)
            else:  # Flax's default: LeCun-normal kernel, zero bias
                x = nn.Dense(width)(x)
        return x


def preprocess(images):
    """uint8 (n, 28, 28) -> float32 (n, 784) in [-1, 1]: (x/255 - 0.5)/0.5, as the tutorials."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - 0.5) / 0.5).reshape(images.shape[0], -1)
