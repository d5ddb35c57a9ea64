"""SAC (Haarnoja et al., 2018), DrQ-style from pixels, as the paper's model-free baseline (jaxrl2).

The losses (pure functions in `algorithms.actor_critic`). Shapes: B is the batch, Q-values of
the twin critics carry a leading axis of 2.

    critic:       L(phi)   = sum_j mean_B (Q_j(s, a) - y)^2 / 2,
                  y        = r + g (1 - terminal) (min_j Qbar_j(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s')
    actor:        L(theta) = mean_B ( alpha log pi(a~|s) - mean_j Q_j(s, a~) ),                 a~ ~ pi(.|s)
    temperature:  L(alpha) = alpha * mean_B ( -log pi(a~|s) - H_target )

DrQ-style agent (jaxrl2 settings): one D4PG encoder shared by actor and critic, trained by the
critic only (the actor sees its features with the gradient stopped; a' in the target comes from
the current actor on the current encoder), random-shift augmentation of observation and next
observation, a Polyak target of encoder and critics, initial temperature 0.1, target entropy
-|A|, entropy in the backup. All losses of a step use the parameters at its start, and one
Adam step updates them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from algorithms import nets
from algorithms.actor_critic import TwinQ, actor_loss, polyak, soft_target, temperature_loss, twin_critic_loss
from algorithms.agent import FrameStackAgent
from algorithms.base import Transitions, register


# ---------------------------------------------------------------------------------------------
# The agent.


@dataclass(frozen=True)
class Config(nets.Jaxrl2Config):
    PRESETS: ClassVar[dict] = {
        **nets.Jaxrl2Config.PRESETS,
        # The co-author's jaxrl2 config for SAC (see docs/algorithms/model-free.md): CQL's
        # settings with alpha_cql = 0.
        "coauthor": {"share_encoder": False, "init_temperature": 1.0,
                     "target_entropy_per_dim": -0.5, "backup_entropy": False},
    }

    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target encoder and critics
    init_temperature: float = 0.1  # DrQ
    target_entropy_per_dim: float = -1.0  # target entropy = this x |A| (SAC: -|A|)
    backup_entropy: bool = True  # the entropy term in the critic's target (SAC: yes)
    share_encoder: bool = True  # DrQ: actor reads the critic's features; false: its own encoder
    log_std_min: float = -10.0  # ours: clip of the policy's log-std
    log_std_max: float = 2.0  # ours


class ActorHead(nn.Module):
    hidden_dims: tuple
    action_dim: int
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, embed):
        hidden = nets.MLP(self.hidden_dims)(embed)
        return nets.TanhGaussianHead(self.action_dim, self.log_std_min, self.log_std_max)(hidden)


@register
class SAC(FrameStackAgent):
    name = "sac"
    Config = Config
    batch_keys = ("obs", "action", "reward", "terminal")

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        self.config = config
        self.action_dim = action_space.shape[0]
        self.target_entropy = config.target_entropy_per_dim * self.action_dim
        self.batch_spec = Transitions(config.frame_stack, config.batch_size, config.steps_per_call)
        self.pixels = len(obs_space.shape) == 3
        self.encoder = nets.make_encoder(self.pixels, config.cnn_channels, config.embed_dim)
        self.critic = TwinQ(tuple(config.hidden_dims))
        self.actor = ActorHead(tuple(config.hidden_dims), self.action_dim, config.log_std_min,
                               config.log_std_max)
        keys = jax.random.split(jax.random.PRNGKey(seed), 5)
        self._rng = keys[4]
        obs = nets.stack_frames(jnp.zeros((1, config.frame_stack, *obs_space.shape), obs_space.dtype))
        embed = jnp.zeros((1, config.embed_dim))
        params = {"encoder": self.encoder.init(keys[0], obs),
                  "critic": self.critic.init(keys[1], embed, jnp.zeros((1, self.action_dim))),
                  "actor": self.actor.init(keys[2], embed),
                  "log_temperature": jnp.log(jnp.asarray(config.init_temperature, jnp.float32))}
        if not self.config.share_encoder:
            params["actor_encoder"] = self.encoder.init(keys[3], obs)
        self.policy_keys = ("actor", "log_temperature") + tuple(k for k in ("actor_encoder",) if k in params)
        self.optimizer = nets.jaxrl2_optimizer(config.lr, total_updates, ("actor", "actor_encoder"))
        target = {"encoder": params["encoder"], "critic": params["critic"]}
        self._train = {"params": params, "target": jax.tree.map(jnp.copy, target),
                       "opt": self.optimizer.init(params)}

    # -- pieces of one update ----------------------------------------------------------------

    def _actor_embed(self, params, obs, critic_embed=None):
        """The actor's input features. With `share_encoder` (DrQ, SAC's `paper`): the critic's
        encoder, gradient stopped (pass `critic_embed` when it is at hand); without (CQL, SAC's
        `coauthor`): the actor's own encoder, which the actor's loss trains."""
        if not self.config.share_encoder:
            return self.encoder.apply(params["actor_encoder"], obs)
        if critic_embed is None:
            critic_embed = self.encoder.apply(params["encoder"], obs)
        return jax.lax.stop_gradient(critic_embed)

    def _policy_sample(self, actor_params, embed, key):
        mean, log_std = self.actor.apply(actor_params, embed)
        return nets.tanh_gaussian_sample_and_log_prob(key, mean, log_std)

    def _critic_target(self, params, target, next_obs, batch, key):
        """y of the soft Bellman backup: a' from the current actor, Q from the target critic: (B,)."""
        next_action, next_log_prob = self._policy_sample(
            params["actor"], self._actor_embed(params, next_obs), key)
        next_embed = self.encoder.apply(target["encoder"], next_obs)
        next_q = self.critic.apply(target["critic"], next_embed, next_action).min(0)
        temperature = jnp.exp(params["log_temperature"])
        return soft_target(batch["reward"], batch["terminal"], next_q, next_log_prob, temperature,
                           self.config.discount, self.config.backup_entropy)

    def _critic_loss(self, critic_params, params, obs, action, target_q, key):
        """The loss of the critic's encoder and Q heads; returns it with (embedding, Q(s, a), metrics).

        `params` (all current parameters) and `key` are for subclasses that add a regularizer.
        """
        embed = self.encoder.apply(critic_params["encoder"], obs)
        q = self.critic.apply(critic_params["critic"], embed, action)
        loss = twin_critic_loss(q, target_q)
        return loss, (embed, q, {"critic_loss": loss, "q": q.mean()})

    def _actor_loss(self, policy_params, critic_params, obs, critic_embed, key):
        """Actor and temperature losses, with the critic fixed; `critic_embed` carries no gradient."""
        embed = self._actor_embed(policy_params, obs, critic_embed)
        action, log_prob = self._policy_sample(policy_params["actor"], embed, key)
        # The mean of the twin Q values, as jaxrl2's SAC and CQL actor updaters
        # (`q = qs.mean(axis=0)`); the min is for the critic's target only.
        q_mean = self.critic.apply(critic_params, critic_embed, action).mean(0)
        temperature = jnp.exp(policy_params["log_temperature"])
        a_loss = actor_loss(q_mean, log_prob, temperature)
        t_loss = temperature_loss(temperature, log_prob, self.target_entropy)
        return a_loss + t_loss, {"actor_loss": a_loss, "temperature": temperature,
                                 "entropy": -log_prob.mean(), "temperature_loss": t_loss}

    def _one_update(self, train, inputs):
        batch, key = inputs
        obs_key, next_key, target_key, critic_key, actor_key = jax.random.split(key, 5)
        params = train["params"]
        obs = self._augment(obs_key, nets.stack_frames(batch["obs"][:, :-1]))
        next_obs = self._augment(next_key, nets.stack_frames(batch["obs"][:, 1:]))

        target_q = self._critic_target(params, train["target"], next_obs, batch, target_key)
        critic_params = {"encoder": params["encoder"], "critic": params["critic"]}
        critic_grads, (embed, _, critic_metrics) = jax.grad(self._critic_loss, has_aux=True)(
            critic_params, params, obs, batch["action"], target_q, critic_key)

        policy_params = {k: params[k] for k in self.policy_keys}
        policy_grads, actor_metrics = jax.grad(self._actor_loss, has_aux=True)(
            policy_params, params["critic"], obs, jax.lax.stop_gradient(embed), actor_key)

        updates, opt = self.optimizer.update({**critic_grads, **policy_grads}, train["opt"], params)
        params = optax.apply_updates(params, updates)
        target = polyak({"encoder": params["encoder"], "critic": params["critic"]},
                        train["target"], self.config.tau)
        return {"params": params, "target": target, "opt": opt}, {**critic_metrics, **actor_metrics}

    # -- acting ------------------------------------------------------------------------------

    def _act(self, params, obs, key, explore):
        mean, log_std = self.actor.apply(params["actor"], self._actor_embed(params, nets.stack_frames(obs)))
        if explore:
            return nets.tanh_gaussian_sample(key, mean, log_std)
        return jnp.tanh(mean)
