"""Behaviour cloning: a tanh-Gaussian policy fit by maximum likelihood to the offline data.

    L(theta) = -E_{(s, a) ~ D_offline} [ log pi_theta(a | aug(s)) ]

Encoder and sizes follow the model-free baselines (jaxrl2): frame stack 3, D4PG-style encoder,
MLP (256, 256), random shift (pad 4), Adam 3e-4 with cosine decay, batch 256. BC learns from
the offline data only (`offline_only=True` in its batch spec): its online curve is flat by
design, and its online episodes only measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from algorithms import nets
from algorithms.agent import FrameStackAgent
from algorithms.base import Transitions, register


@dataclass(frozen=True)
class Config(nets.Jaxrl2Config):
    log_std_min: float = -10.0  # ours: clip of the policy's log-std
    log_std_max: float = 2.0  # ours


class Policy(nn.Module):
    config: Config
    action_dim: int
    pixels: bool

    @nn.compact
    def __call__(self, stacked_obs):
        c = self.config
        features = nets.make_encoder(self.pixels, c.cnn_channels, c.embed_dim)(stacked_obs)
        features = nets.MLP(c.hidden_dims)(features)
        return nets.TanhGaussianHead(self.action_dim, c.log_std_min, c.log_std_max)(features)


def bc_loss(params, policy: Policy, stacked_obs, action):
    """Negative log-likelihood of the data's actions; stacked_obs (B, ...), action (B, A)."""
    mean, log_std = policy.apply(params, stacked_obs)
    log_prob = nets.tanh_gaussian_log_prob(mean, log_std, action)
    return -log_prob.mean(), {"bc_loss": -log_prob.mean(), "policy_log_std": log_std.mean(),
                              "action_mse": jnp.mean((jnp.tanh(mean) - action) ** 2)}


@register
class BC(FrameStackAgent):
    name = "bc"
    Config = Config

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        self.config = config
        self.batch_spec = Transitions(config.frame_stack, config.batch_size, config.steps_per_call,
                                      offline_only=True)
        self.pixels = len(obs_space.shape) == 3
        self.policy = Policy(config, action_space.shape[0], self.pixels)
        init_key, self._rng = jax.random.split(jax.random.PRNGKey(seed))
        dummy = jnp.zeros((1, config.frame_stack, *obs_space.shape), obs_space.dtype)
        params = self.policy.init(init_key, nets.stack_frames(dummy))
        schedule = optax.cosine_decay_schedule(config.lr, max(total_updates, 1))
        self.optimizer = optax.adam(schedule)
        self._train = {"params": params, "opt_state": self.optimizer.init(params),
                       "step": jnp.zeros((), jnp.int32)}

    def _one_update(self, train, inputs):
        batch, key = inputs
        obs = self._augment(key, nets.stack_frames(batch["obs"][:, :-1]))
        grads, metrics = jax.grad(bc_loss, has_aux=True)(train["params"], self.policy, obs,
                                                         batch["action"])
        updates, opt_state = self.optimizer.update(grads, train["opt_state"], train["params"])
        params = optax.apply_updates(train["params"], updates)
        return {"params": params, "opt_state": opt_state, "step": train["step"] + 1}, metrics

    def _act(self, params, obs, key, explore):
        mean, log_std = self.policy.apply(params, nets.stack_frames(obs))
        if explore:
            return nets.tanh_gaussian_sample(key, mean, log_std)
        return jnp.tanh(mean)
