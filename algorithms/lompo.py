"""LOMPO (Rafailov et al., 2021): offline model-based policy optimization in a latent space,
with an uncertainty-penalized reward, as the paper ran it from the LOMPO repository.

The machinery it shares with COMBO is in `algorithms.latent_buffer`: a world model with
Gaussian latents and an ensemble of M prior heads, a buffer of real latent transitions, a
buffer of H-step imagined ones, and a TD3-style actor-critic on 256 + 256 of them. What makes
it LOMPO is the reward of an imagined transition (s, a, s'):

    r~ = r^(s') - lambda u,    u = std_m log p_m(z' | h'),    lambda = 5

where z' is the next latent sampled from one member, h' the deterministic state, and p_m the
Gaussian prior of member m (`log_prob_disagreement`): the members agree on how likely the
sample is where the model has seen data, and disagree off it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from algorithms.base import ConfigError, register
from algorithms.latent_buffer import LatentBufferAgent, LatentBufferConfig


@dataclass(frozen=True)
class Config(LatentBufferConfig):
    penalty: float = 5.0  # lambda, weight of the ensemble disagreement u in the reward (LOMPO lmbd)

    ALGORITHM: ClassVar[str] = "lompo"

    def __post_init__(self):
        super().__post_init__()
        if not self.penalty >= 0.0:
            raise ConfigError(f"lompo.config.penalty must be >= 0, got {self.penalty}.")


def penalized_reward(reward, disagreement, penalty: float):
    """r~ = r - lambda u, elementwise."""
    return reward - penalty * disagreement


@register
class LOMPO(LatentBufferAgent):
    name = "lompo"
    Config = Config

    def _imagined_reward(self, reward, disagreement):
        return penalized_reward(reward, disagreement, self.config.penalty)

    def _critic_regularizer(self, critic_params, actor_params, states, q_real, key):
        return jnp.zeros(()), {}
