"""Networks and distributions shared by several algorithms (Flax linen).

Images arrive as uint8 and are converted inside jit. A stacked observation is
(B, S, H, W, C) for pixels or (B, S, D) for state vectors; encoders flatten the stack axis into
channels (pixels) or features (vectors), as jaxrl2 concatenates stacked frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from algorithms import conv


def scan_updates(step, carry, xs):
    """`lax.scan(step, carry, xs)` over K gradient steps in one jitted call.

    On XLA:CPU a convolution inside a while loop runs several times slower than the same
    convolution outside one (jax-ml/jax#12868; measured here: BC debug 140 vs 17 ms per step),
    and `lax.scan` emits a while loop even when fully unrolled (DreamerV2 debug: 221 vs 111 ms
    per call at K = 1). So on CPU the K steps are a Python loop traced into one program: still
    one dispatch per K steps, at the price of a compile time that grows with K. Accelerators
    keep `lax.scan`.
    """
    if jax.default_backend() != "cpu":
        return jax.lax.scan(step, carry, xs)
    outputs = []
    for i in range(jax.tree.leaves(xs)[0].shape[0]):
        carry, out = step(carry, jax.tree.map(lambda x: x[i], xs))
        outputs.append(out)
    return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)


def stack_frames(obs: jax.Array) -> jax.Array:
    """(B, S, H, W, C) -> (B, H, W, S*C) for images; (B, S, D) -> (B, S*D) for vectors."""
    if obs.ndim == 5:
        b, s, h, w, c = obs.shape
        return jnp.transpose(obs, (0, 2, 3, 1, 4)).reshape(b, h, w, s * c)
    return obs.reshape(obs.shape[0], -1)


def random_shift(key: jax.Array, images: jax.Array, pad: int) -> jax.Array:
    """DrQ augmentation: pad each (H, W, C) image by `pad` (edge values), crop back at a random offset.

    images: (B, H, W, C), any dtype; one offset per batch element, shared by its channels
    (so stacked frames move together). Returns the same shape and dtype.
    """
    b, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


@dataclass(frozen=True)
class Jaxrl2Config:
    """The settings BC, SAC, CQL and IQL share: jaxrl2's pixel baselines. Each algorithm's
    `Config` subclasses this and adds its own fields."""

    PRESETS: ClassVar[dict] = {
        "paper": {},
        "debug": {"batch_size": 32, "cnn_channels": (16, 32, 32), "embed_dim": 32,
                  "hidden_dims": (64, 64)},
        # For state vectors on 2 CPU cores: the paper's sizes, which without convolutions cost
        # 3-16 ms per update here (docs/decisions.md).
        "cpu": {},
    }

    batch_size: int = 256  # jaxrl2
    frame_stack: int = 3  # jaxrl2
    lr: float = 3e-4  # jaxrl2, every network's Adam; the actor's (policy's) decays by a cosine
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)  # D4PG encoder, 3x3 stride 2
    embed_dim: int = 50  # encoder output (Dense -> LayerNorm -> tanh)
    hidden_dims: tuple[int, ...] = (256, 256)  # every MLP
    shift_pad: int = 4  # random-shift augmentation padding, pixels
    steps_per_call: int = 10  # ours: gradient steps per jitted update call


def jaxrl2_optimizer(lr: float, total_updates: int, actor_keys: tuple[str, ...]):
    """Adam at `lr` for every parameter; the actor's rate decays to 0 by a cosine over all
    updates, the others stay constant (jaxrl2 decays only `actor_lr`). `actor_keys` name the
    top-level parameter entries that belong to the actor."""
    actor = optax.adam(optax.cosine_decay_schedule(lr, max(total_updates, 1)))
    labels = lambda params: {k: "actor" if k in actor_keys else "rest" for k in params}
    return optax.multi_transform({"actor": actor, "rest": optax.adam(lr)}, labels)


class MLP(nn.Module):
    hidden_dims: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        act = getattr(nn, self.activation)
        for width in self.hidden_dims:
            x = act(nn.Dense(width)(x))
        return x


class ScalarHead(nn.Module):
    """MLP -> Dense(1), squeezed: a value or one Q function. (..., D) -> (...)."""

    hidden_dims: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(MLP(self.hidden_dims, self.activation)(x))[..., 0]


class PixelEncoder(nn.Module):
    """D4PG / jaxrl2 encoder: 3x3 stride-2 VALID convs with ReLU -> Dense -> LayerNorm -> tanh."""

    channels: Sequence[int]
    embed_dim: int

    @nn.compact
    def __call__(self, images_uint8):  # (B, H, W, C) uint8
        # The first layer sees x / 255, computed without a float copy of the images.
        x = nn.relu(conv.Conv(self.channels[0], 3, stride=2, input_scale=1 / 255)(images_uint8))
        for width in self.channels[1:]:
            x = nn.relu(conv.Conv(width, 3, stride=2)(x))
        x = x.reshape(x.shape[0], -1)
        return jnp.tanh(nn.LayerNorm()(nn.Dense(self.embed_dim)(x)))


class VectorEncoder(nn.Module):
    """For state observations: Dense -> LayerNorm -> tanh, the same trunk head as PixelEncoder."""

    embed_dim: int

    @nn.compact
    def __call__(self, x):
        return jnp.tanh(nn.LayerNorm()(nn.Dense(self.embed_dim)(x.astype(jnp.float32))))


def make_encoder(pixels: bool, channels: Sequence[int], embed_dim: int) -> nn.Module:
    return PixelEncoder(tuple(channels), embed_dim) if pixels else VectorEncoder(embed_dim)


class TanhGaussianHead(nn.Module):
    """Mean and log-std of a Gaussian whose samples are squashed by tanh into [-1, 1]^A."""

    action_dim: int
    log_std_min: float = -10.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, features):
        mean = nn.Dense(self.action_dim)(features)
        log_std = nn.Dense(self.action_dim)(features)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array,
                           eps: float = 1e-6) -> jax.Array:
    """log pi(a) for a = tanh(u), u ~ N(mean, exp(log_std)^2), summed over the action axis.

    log pi(a) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - a_i^2) ],  u = atanh(a).
    Actions are clipped to [-1 + eps, 1 - eps] first so atanh stays finite.
    Shapes: mean, log_std, action (..., A) -> (...).
    """
    action = jnp.clip(action, -1.0 + eps, 1.0 - eps)
    pre_tanh = jnp.arctanh(action)
    z = (pre_tanh - mean) / jnp.exp(log_std)
    gaussian = -0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    return jnp.sum(gaussian - jnp.log1p(-action**2 + eps), axis=-1)


def tanh_gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return jnp.tanh(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape))


def tanh_gaussian_sample_and_log_prob(key: jax.Array, mean: jax.Array,
                                      log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A reparameterized sample a = tanh(u) and log pi(a), computed from u, not from atanh(a).

    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) stays exact when tanh(u) rounds to +-1,
    where `tanh_gaussian_log_prob` of the sample would have to clip. Shapes (..., A) -> (..., A), (...).
    """
    noise = jax.random.normal(key, mean.shape)
    pre_tanh = mean + jnp.exp(log_std) * noise
    gaussian = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh))
    return jnp.tanh(pre_tanh), jnp.sum(gaussian - log_det, axis=-1)
