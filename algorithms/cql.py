"""CQL (Kumar et al., 2020) from pixels, as the paper's model-free baseline (jaxrl2 settings).

SAC's agent and its critic, actor and temperature losses (`algorithms.actor_critic`), without the entropy term in the
backup, plus a conservative regularizer on the critics, averaged over the two like the
Bellman error:

    R = alpha_cql * mean_j mean_B [ log sum_k exp(Q_j(s, a_k) - log mu(a_k)) - Q_j(s, a_data) ]

over N actions a_k ~ Uniform[-1, 1]^A (mu = 2^-A) and N actions a_k ~ pi(.|s) (mu = pi): the
importance-weighted estimate of log integral exp Q(s, a) da, as in CQL's code (which, like this
function, leaves out the constant -log 2N; it changes no gradient). alpha_cql = 5, N = 4.

Agent (jaxrl2 `PixelCQLLearner` with the co-author's config): separate encoders for the actor
and the critic, each trained by its own loss; tanh-Gaussian actor; automatic temperature from
1.0 towards a target entropy of -|A|/2; min over two target Qs in the backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from algorithms import nets, sac
from algorithms.actor_critic import conservative_penalty
from algorithms.base import register


@dataclass(frozen=True)
class Config(sac.Config):
    PRESETS: ClassVar[dict] = nets.Jaxrl2Config.PRESETS

    init_temperature: float = 1.0  # jaxrl2 CQL
    target_entropy_per_dim: float = -0.5  # jaxrl2 CQL: target entropy -|A|/2
    backup_entropy: bool = False  # jaxrl2 CQL
    share_encoder: bool = False  # the co-author's config: separate actor and critic encoders
    cql_alpha: float = 5.0  # the co-author's config
    cql_actions: int = 4  # N: actions sampled from the policy and, as many, from Uniform[-1, 1]


@register
class CQL(sac.SAC):
    name = "cql"
    Config = Config

    def _critic_loss(self, critic_params, params, obs, action, target_q, key):
        """SAC's Bellman error plus alpha_cql times the conservative penalty."""
        loss, (embed, q_data, metrics) = super()._critic_loss(
            critic_params, params, obs, action, target_q, key)
        n, (b, a) = self.config.cql_actions, action.shape
        uniform_key, policy_key = jax.random.split(key)
        random_actions = jax.random.uniform(uniform_key, (n, b, a), minval=-1.0, maxval=1.0)
        actor_embed = jnp.broadcast_to(self._actor_embed(params, obs), (n, b, self.config.embed_dim))
        policy_actions, policy_log_prob = jax.lax.stop_gradient(
            self._policy_sample(params["actor"], actor_embed, policy_key))
        embed_n = jnp.broadcast_to(embed, (n, *embed.shape))
        q_random = self.critic.apply(critic_params["critic"], embed_n, random_actions)
        q_policy = self.critic.apply(critic_params["critic"], embed_n, policy_actions)
        penalty = conservative_penalty(q_random, q_policy, policy_log_prob, q_data, a)
        metrics = {**metrics, "bellman_loss": loss, "cql_penalty": penalty,
                   "q_random": q_random.mean(), "q_policy": q_policy.mean()}
        loss = loss + self.config.cql_alpha * penalty
        return loss, (embed, q_data, {**metrics, "critic_loss": loss})
