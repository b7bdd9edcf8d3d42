"""The study's model: the seed tutorials' 784-200-10 ReLU MLP, and its input scaling.

Inputs are scaled as :math:`x \\mapsto (x/255 - 0.5)/0.5 \\in [-1, 1]` and flattened.
Initialisation ``"torch"`` is PyTorch's ``nn.Linear`` default: ``kaiming_uniform_(a=sqrt(5))``
gives :math:`W \\sim U(-1/\\sqrt{n_{in}}, 1/\\sqrt{n_{in}})` (gain :math:`\\sqrt{2/(1+a^2)}`
times :math:`\\sqrt{3/n_{in}}`) and the bias has the same bound. ``"flax"`` is Flax's default
(LeCun-normal kernel, zero bias).

Layout, chosen for sweeps: every kernel is stored as PyTorch stores its weight, ``(out, in)``, and
the layers compute feature-major, ``h = W @ x.T + b[:, None]`` of shape ``(features, batch)``.
Under ``jax.vmap`` over K configurations that share the input batch, the K first-layer kernels
stack to (K, 200, 784), which is contiguously one (K*200, 784) matrix: the forward
``(K*200, 784) @ (784, B)`` and the weight gradient ``(K*200, B) @ (B, 784)`` are each ONE wide
matmul, with no transposed copy of the weights, and the optimizer's update runs over contiguous
memory. (Flax's ``nn.Dense`` stores (in, out): its stacked (K, 784, 200) kernels must be
transposed into a (784, K*200) matrix at every step.) A single configuration was measured no
slower in this layout than in Flax's (``experiments/benchmark.py``), so there is one layout.

The initial values are drawn exactly as ``nn.Dense`` with the same initialiser would draw them,
(in, out), and stored transposed: a seed gives the same initial function as the earlier (in, out)
model did.
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


def _transposed(init):
    """An initialiser for an (out, in) kernel that draws (in, out), as ``nn.Dense`` does, and
    transposes: the same values as the (in, out) kernel, laid out as PyTorch's weight."""
    return lambda key, shape, dtype=jnp.float32: init(key, shape[::-1], dtype).T


class Dense(nn.Module):
    """Flax's ``nn.Dense`` laid out as ``torch.nn.Linear``, on feature-major input: ``x`` (in, batch) -> ``kernel @ x + bias[:, None]``
    (out, batch), with ``kernel`` stored (out, in) as ``torch.nn.Linear.weight``. Named as
    ``nn.Dense`` is, so that Flax derives the same parameter keys (``Dense_0``, ...)."""

    features: int
    init_scheme: str = "torch"  # or "flax"

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[0]
        if self.init_scheme == "torch":
            kernel_init = bias_init = torch_linear_init(fan_in)
        else:
            kernel_init, bias_init = nn.initializers.lecun_normal(), nn.initializers.zeros_init()
        kernel = self.param("kernel", _transposed(kernel_init), (self.features, fan_in))
        bias = self.param("bias", bias_init, (self.features,))
        return kernel @ x + bias[:, None]


class MLP(nn.Module):
    """784-200-10 with ReLU, as in the seed tutorials: (batch, 784) inputs, (batch, 10) logits."""

    features: tuple = (200, 10)
    init_scheme: str = "torch"  # or "flax"

    @nn.compact
    def __call__(self, x):
        x = x.T  # feature-major: the shared batch is the right-hand operand of every matmul
        for i, width in enumerate(self.features):
            if i:
                x = nn.relu(x)
            x = Dense(width, self.init_scheme)(x)
        return x.T


def preprocess(images):
    """uint8 (n, 28, 28) -> float32 (n, 784) in [-1, 1]: (x/255 - 0.5)/0.5, as the tutorials."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - 0.5) / 0.5).reshape(images.shape[0], -1)
