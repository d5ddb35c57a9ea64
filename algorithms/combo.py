"""COMBO (Yu et al., 2021) from images, as the paper ran it from the LOMPO code: LOMPO's model
and latent buffers (`algorithms.latent_buffer`) with the uncertainty penalty off, and a
conservative regularizer on the critics instead:

    R = alpha * mean_j [ mean_s logsumexp_k Q_j(s, a_k) - mean_(s,a) in real Q_j(s, a) ]

over the agent batch's states s, real and imagined, and K = 16 actions a_k ~ Uniform[-1, 1]^A
plus the policy's action pi(s) (`actor_critic.sampled_action_penalty`; LOMPO's code, with no
importance weights), and the real transitions' (s, a). It pushes Q down on actions the data
does not support, on model states too, and up on the data. alpha = 1 (ours; the LOMPO code's
`alpha` defaults to 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from algorithms.actor_critic import sampled_action_penalty
from algorithms.base import ConfigError, register
from algorithms.latent_buffer import LatentBufferAgent, LatentBufferConfig


@dataclass(frozen=True)
class Config(LatentBufferConfig):
    conservative_weight: float = 1.0  # alpha (ours)
    uniform_actions: int = 16  # uniform actions per state in the logsumexp (LOMPO cql_samples)

    ALGORITHM: ClassVar[str] = "combo"

    def __post_init__(self):
        super().__post_init__()
        if not self.conservative_weight >= 0.0:
            raise ConfigError(f"combo.config.conservative_weight must be >= 0, got "
                              f"{self.conservative_weight}.")
        if self.uniform_actions < 1:
            raise ConfigError(f"combo.config.uniform_actions must be at least 1, got "
                              f"{self.uniform_actions}.")


@register
class COMBO(LatentBufferAgent):
    name = "combo"
    Config = Config

    def _imagined_reward(self, reward, disagreement):
        return reward  # no uncertainty penalty

    def _critic_regularizer(self, critic_params, actor_params, states, q_real, key):
        k, (n, a) = self.config.uniform_actions, (states.shape[0], self.action_dim)
        uniform = jax.random.uniform(key, (k, n, a), minval=-1.0, maxval=1.0)
        policy = jax.lax.stop_gradient(self.actor.apply(actor_params, states))[None]
        actions = jnp.concatenate([uniform, policy], 0)  # (K + 1, S, A)
        q_sampled = self.critic.apply(critic_params, jnp.broadcast_to(states, (k + 1, *states.shape)),
                                      actions)  # (2, K + 1, S)
        penalty = sampled_action_penalty(q_sampled, q_real)
        return self.config.conservative_weight * penalty, {"conservative_penalty": penalty,
                                                           "q_sampled": q_sampled.mean()}
