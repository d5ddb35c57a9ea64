"""IQL (Kostrikov et al., 2022) from pixels, as the paper's model-free baseline (jaxrl2 settings).

Three losses, each a pure function below. V never sees an action outside the data:

    value:   L(psi)   = mean_B |tau - 1(u < 0)| u^2,   u = min_j Qbar_j(s, a) - V(s)   (expectile tau)
    critic:  L(phi)   = sum_j mean_B (Q_j(s, a) - (r + g (1 - terminal) V(s')))^2 / 2
    actor:   L(theta) = -mean_B min(exp(beta (min_j Qbar_j(s, a) - V(s))), 100) log pi(a|s)

tau = 0.7 (jaxrl2; the co-author's scripts used 0.5, a config field), beta = 3.0 (inverse
temperature), weights clipped at 100.

Agent (jaxrl2 `PixelIQLLearner`): separate D4PG encoders for actor, critic and value, each
trained by its own loss; a Polyak target of the critic (encoder and Q heads) that V and the
advantages read; a Gaussian actor with unit standard deviation and an unsquashed mean, so
log pi(a|s) is a negative squared error and the actor is advantage-weighted regression; the
mean action (clipped to [-1, 1]) at evaluation, a sample (clipped) when exploring online.
All three losses of a step use the parameters at its start; jaxrl2 updates V first and lets
Q and pi read the new V, one step fresher (see docs/algorithms/model-free.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from algorithms import nets
from algorithms.actor_critic import TwinQ, polyak, twin_critic_loss
from algorithms.agent import FrameStackAgent
from algorithms.base import ConfigError, Transitions, register


def expectile_loss(diff, expectile: float) -> jax.Array:
    """mean |tau - 1(u < 0)| u^2 of u = diff (B,): tau weighs u > 0, 1 - tau weighs u < 0."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return jnp.mean(weight * diff**2)


def value_target(reward, terminal, next_value, discount: float) -> jax.Array:
    """r + g (1 - terminal) V(s'); all (B,)."""
    return reward + discount * (1.0 - terminal) * next_value


def advantage_weighted_actor_loss(log_prob, advantage, inverse_temperature: float,
                                  max_weight: float = 100.0) -> jax.Array:
    """-mean(min(exp(beta A), max_weight) log pi(a|s)); log_prob, advantage (B,) -> ().

    The weights are constants (no gradient reaches Q or V through them).
    """
    weight = jnp.minimum(jnp.exp(inverse_temperature * jax.lax.stop_gradient(advantage)), max_weight)
    return -jnp.mean(weight * log_prob)


def unit_gaussian_log_prob(mean, action) -> jax.Array:
    """log N(action; mean, I), summed over the action axis: (..., A) x 2 -> (...)."""
    return jnp.sum(-0.5 * (action - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


# ---------------------------------------------------------------------------------------------
# The agent.


@dataclass(frozen=True)
class Config(nets.Jaxrl2Config):
    PRESETS: ClassVar[dict] = {
        **nets.Jaxrl2Config.PRESETS,
        # The co-author's jaxrl2 fork: the config its IQL trainers load sets expectile 0.5.
        "coauthor": {"expectile": 0.5},
    }

    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critic
    expectile: float = 0.7  # jaxrl2's offline pixel config (`coauthor` preset: 0.5)
    inverse_temperature: float = 3.0  # beta of the advantage weights (jaxrl2 `A_scaling`)
    max_weight: float = 100.0  # clip of the advantage weights

    def __post_init__(self):
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"iql.config.expectile must be in (0, 1), got {self.expectile}.")


class GaussianActorHead(nn.Module):
    """The mean of pi(a|s) = N(mean, I), not squashed."""

    hidden_dims: tuple
    action_dim: int

    @nn.compact
    def __call__(self, embed):
        return nn.Dense(self.action_dim)(nets.MLP(self.hidden_dims)(embed))


@register
class IQL(FrameStackAgent):
    name = "iql"
    Config = Config
    batch_keys = ("obs", "action", "reward", "terminal")

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        self.config = config
        self.action_dim = action_space.shape[0]
        self.batch_spec = Transitions(config.frame_stack, config.batch_size, config.steps_per_call)
        self.pixels = len(obs_space.shape) == 3
        hidden = tuple(config.hidden_dims)
        self.encoder = nets.make_encoder(self.pixels, config.cnn_channels, config.embed_dim)
        self.heads = {"actor": GaussianActorHead(hidden, self.action_dim), "critic": TwinQ(hidden),
                      "value": nets.ScalarHead(hidden)}
        keys = jax.random.split(jax.random.PRNGKey(seed), 7)
        self._rng = keys[6]
        obs = nets.stack_frames(jnp.zeros((1, config.frame_stack, *obs_space.shape), obs_space.dtype))
        embed, action = jnp.zeros((1, config.embed_dim)), jnp.zeros((1, self.action_dim))
        head_inputs = {"actor": (embed,), "critic": (embed, action), "value": (embed,)}
        params = {name: {"encoder": self.encoder.init(keys[i], obs),
                         "head": self.heads[name].init(keys[3 + i], *head_inputs[name])}
                  for i, name in enumerate(("actor", "critic", "value"))}
        self.optimizer = nets.jaxrl2_optimizer(config.lr, total_updates, ("actor",))
        self._train = {"params": params, "target_critic": jax.tree.map(jnp.copy, params["critic"]),
                       "opt": self.optimizer.init(params)}

    def _apply(self, name, net_params, obs, *args):
        """One network (`actor`, `critic` or `value`) on observations, through its own encoder."""
        embed = self.encoder.apply(net_params["encoder"], obs)
        return self.heads[name].apply(net_params["head"], embed, *args)

    def _one_update(self, train, inputs):
        batch, key = inputs
        c = self.config
        obs_key, next_key = jax.random.split(key)
        params = train["params"]
        obs = self._augment(obs_key, nets.stack_frames(batch["obs"][:, :-1]))
        next_obs = self._augment(next_key, nets.stack_frames(batch["obs"][:, 1:]))
        action = batch["action"]
        target_q = self._apply("critic", train["target_critic"], obs, action).min(0)

        def value_loss(value_params):
            v = self._apply("value", value_params, obs)
            loss = expectile_loss(target_q - v, c.expectile)
            return loss, (v, {"value_loss": loss, "v": v.mean()})

        def critic_loss(critic_params):
            y = value_target(batch["reward"], batch["terminal"],
                             self._apply("value", params["value"], next_obs), c.discount)
            q = self._apply("critic", critic_params, obs, action)
            loss = twin_critic_loss(q, y)
            return loss, {"critic_loss": loss, "q": q.mean()}

        def actor_loss(actor_params, advantage):
            mean = self._apply("actor", actor_params, obs)
            loss = advantage_weighted_actor_loss(unit_gaussian_log_prob(mean, action), advantage,
                                                 c.inverse_temperature, c.max_weight)
            return loss, {"actor_loss": loss, "advantage": advantage.mean(),
                          "action_mse": jnp.mean((jnp.clip(mean, -1, 1) - action) ** 2)}

        value_grads, (v, value_metrics) = jax.grad(value_loss, has_aux=True)(params["value"])
        critic_grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(params["critic"])
        actor_grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(params["actor"], target_q - v)
        grads = {"value": value_grads, "critic": critic_grads, "actor": actor_grads}
        updates, opt = self.optimizer.update(grads, train["opt"], params)
        params = optax.apply_updates(params, updates)
        target_critic = polyak(params["critic"], train["target_critic"], c.tau)
        return ({"params": params, "target_critic": target_critic, "opt": opt},
                {**value_metrics, **critic_metrics, **actor_metrics})

    # -- acting ------------------------------------------------------------------------------

    def _act(self, params, obs, key, explore):
        mean = self._apply("actor", params["actor"], nets.stack_frames(obs))
        if explore:
            mean = mean + jax.random.normal(key, mean.shape)
        return jnp.clip(mean, -1.0, 1.0)
