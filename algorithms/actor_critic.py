"""The pieces of off-policy actor-critic learning that several agents share: twin critics, TD
targets, Polyak averaging, the SAC actor and temperature losses, and conservative penalties.

SAC, CQL and IQL (jaxrl2 settings) and LOMPO and COMBO (latent replay buffers) all build on
these; no agent imports another agent's module for them. Shapes: B is the batch; Q-values of
the twin critics carry a leading axis of 2.

    soft TD target:   y = r + g (1 - terminal) (min_j Qbar_j(s', a') - alpha log pi(a'|s'))
    TD target:        y = r + g (1 - terminal) min_j Qbar_j(s', a')
    twin critic:      L = sum_j mean_B w (Q_j(s, a) - y)^2 / 2   (w: optional per-sample weights)
    SAC actor:        L = mean_B (alpha log pi(a~|s) - mean_j Q_j(s, a~))
    temperature:      L = alpha mean_B (-log pi(a~|s) - H_target)
    CQL penalty:      mean_j mean_B [logsumexp_k (Q_j(s, a_k) - log mu(a_k)) - Q_j(s, a_data)]
    COMBO penalty:    mean_j [mean_S logsumexp_k Q_j(s, a_k) - mean_B Q_j(s, a_data)]
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms import nets


class TwinQ(nn.Module):
    """Q_1, Q_2 with separate parameters on [features, action]: (..., E), (..., A) -> (2, ...)."""

    hidden_dims: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, features, action):
        twins = nn.vmap(nets.ScalarHead, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=None, out_axes=0, axis_size=2)
        return twins(tuple(self.hidden_dims), self.activation)(jnp.concatenate([features, action], -1))


def polyak(new, old, tau: float):
    """tau * new + (1 - tau) * old, leaf by leaf: the target networks' update."""
    return jax.tree.map(lambda n, o: tau * n + (1.0 - tau) * o, new, old)


def td_target(reward, terminal, next_q_min, discount: float) -> jax.Array:
    """y = r + g (1 - terminal) min_j Qbar_j(s', a'); all (B,)."""
    return reward + discount * (1.0 - terminal) * next_q_min


def soft_target(reward, terminal, next_q_min, next_log_prob, temperature, discount: float,
                backup_entropy: bool = True) -> jax.Array:
    """y = r + g (1 - terminal) (min_j Qbar_j(s', a') - alpha log pi(a'|s')); all (B,).

    `backup_entropy=False` drops the entropy term (CQL's setting).
    """
    next_value = next_q_min - temperature * next_log_prob if backup_entropy else next_q_min
    return td_target(reward, terminal, next_value, discount)


def twin_critic_loss(q, target, weight=None) -> jax.Array:
    """sum over the two critics of the (weighted) mean squared error / 2: q (2, B), target (B,)
    -> (). With `weight` (B,), the mean is sum(w e^2) / sum(w): samples of weight 0 (a
    transition across an episode boundary) do not count."""
    errors = (q - jax.lax.stop_gradient(target)) ** 2
    if weight is None:
        return 0.5 * jnp.sum(jnp.mean(errors, axis=-1))
    return 0.5 * jnp.sum(jnp.sum(errors * weight, -1) / jnp.maximum(jnp.sum(weight), 1.0))


def actor_loss(q, log_prob, temperature) -> jax.Array:
    """mean(alpha log pi(a~|s) - Q(s, a~)) with Q the mean of the twin critics (jaxrl2's actor
    updaters; the min is for the critic's target only): q, log_prob (B,) -> ()."""
    return jnp.mean(jax.lax.stop_gradient(temperature) * log_prob - q)


def temperature_loss(temperature, log_prob, target_entropy: float) -> jax.Array:
    """alpha * mean(-log pi - H_target): lowers alpha while the entropy is above target.

    log_prob (B,) is treated as a constant; the gradient reaches only `temperature`.
    """
    entropy = -jax.lax.stop_gradient(log_prob)
    return temperature * jnp.mean(entropy - target_entropy)


def importance_weighted_logsumexp(q_random, q_policy, policy_log_prob, action_dim: int):
    """logsumexp over the 2N sampled actions of Q - log mu: (2, N, B) x 2 -> (2, B)."""
    uniform_log_density = -action_dim * jnp.log(2.0)  # Uniform[-1, 1]^A
    weighted = jnp.concatenate([q_random - uniform_log_density,
                                q_policy - jax.lax.stop_gradient(policy_log_prob)], axis=1)
    return jax.nn.logsumexp(weighted, axis=1)


def conservative_penalty(q_random, q_policy, policy_log_prob, q_data, action_dim: int) -> jax.Array:
    """CQL's: mean_j mean_B [logsumexp_k(Q_j(s, a_k) - log mu(a_k)) - Q_j(s, a_data)], before
    alpha_cql.

    q_random (2, N, B): Q at uniform actions in [-1, 1]^A (A = `action_dim`); q_policy
    (2, N, B): Q at policy samples whose log pi is `policy_log_prob` (N, B), a constant here;
    q_data (2, B): Q at the dataset's actions. Returns ().
    """
    logsumexp = importance_weighted_logsumexp(q_random, q_policy, policy_log_prob, action_dim)
    return jnp.mean(logsumexp - q_data)


def sampled_action_penalty(q_sampled, q_data) -> jax.Array:
    """COMBO's regularizer as LOMPO's code writes it, before its weight:
    mean_j [mean_S logsumexp_k Q_j(s, a_k) - mean_B Q_j(s, a_data)].

    q_sampled (2, K, S): Q at K actions (uniform and policy, no importance weights) at S states,
    real and model-generated; q_data (2, B): Q at the dataset's actions of the B real
    transitions. Pushes Q down where the actions are not the data's and up on the data.
    """
    return jnp.mean(jax.nn.logsumexp(q_sampled, axis=1).mean(-1) - q_data.mean(-1))
