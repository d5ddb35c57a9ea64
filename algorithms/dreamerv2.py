"""DreamerV2 (Hafner et al., 2021) on the shared world model, pre-trained offline then fine-tuned.

Per update, on a batch of real sequences:
1. World model: minimize -log p(o) - log p(r) + balanced KL (`world_model_loss`).
2. From every posterior state of the batch (B*T starts, gradient stopped) imagine H = 15
   steps with the actor; rewards from the reward head, values from the target critic.
3. Critic v(s): regress v(s_t) onto the lambda-returns R_t (lambda = 0.95, gamma = 0.99),
   weighted by the cumulative discount; the target critic is a copy refreshed every 100 updates.
4. Actor pi(a|s): maximize the lambda-returns by backpropagating through the learned dynamics,
   reward head and target critic (only the actor's parameters change), plus entropy 1e-4.

Differences from DreamerV2's code, ours: a tanh-Gaussian actor (the same head as MOTO's)
instead of a truncated normal, entropy estimated as -log pi(a) of the imagined action, and no
discount head (the benchmark's episodes end by time limit, never by termination).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algorithms import nets
from algorithms.base import Sequences, TrainStateMixin, make_config, register
from algorithms.returns import lambda_returns
from algorithms.world_model import WorldModel, WorldModelConfig, imagine, world_model_loss


@dataclass(frozen=True)
class Config:
    PRESETS: ClassVar[dict] = {
        "paper": {},
        "small": {"world_model": "small"},  # DreamerV2's dmc_vision model sizes
        "debug": {"world_model": "debug", "batch_size": 4, "sequence_length": 10, "horizon": 5,
                  "units": 32, "layers": 1, "steps_per_call": 1},
    }

    world_model: str = "paper"  # preset of WorldModelConfig: paper, small or debug
    batch_size: int = 16  # sequences per batch (DreamerV2)
    sequence_length: int = 50  # steps per sequence (DreamerV2)
    horizon: int = 15  # imagination horizon (DreamerV2)
    discount: float = 0.99
    lambda_: float = 0.95  # lambda-return mixing (DreamerV2)
    units: int = 400  # actor and critic MLP width (DreamerV2)
    layers: int = 4  # actor and critic MLP depth (DreamerV2)
    actor_lr: float = 8e-5
    critic_lr: float = 8e-5
    eps: float = 1e-5  # Adam epsilon, actor and critic
    clip: float = 100.0  # gradient norm clip, actor and critic
    entropy: float = 1e-4  # actor entropy bonus (DreamerV2 dmc)
    target_update_every: int = 100  # updates between hard copies of the critic
    steps_per_call: int = 4  # ours: gradient steps per jitted update call


class _WorldModelPresets:
    name, Config = "world_model", WorldModelConfig


class Actor(nn.Module):
    units: int
    layers: int
    action_dim: int

    @nn.compact
    def __call__(self, features):
        hidden = nets.MLP((self.units,) * self.layers, activation="elu")(features)
        return nets.TanhGaussianHead(self.action_dim)(hidden)


class Critic(nn.Module):
    units: int
    layers: int

    @nn.compact
    def __call__(self, features):
        return nn.Dense(1)(nets.MLP((self.units,) * self.layers, activation="elu")(features))[..., 0]


def _adam(lr: float, eps: float, clip: float, weight_decay: float = 0.0):
    return optax.chain(optax.clip_by_global_norm(clip),
                       optax.adamw(lr, eps=eps, weight_decay=weight_decay))


@register
class DreamerV2(TrainStateMixin):
    name = "dreamerv2"
    Config = Config

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int,
                 ensemble: int = 1):
        self.config = config
        self.action_dim = action_space.shape[0]
        self.batch_spec = Sequences(config.sequence_length, config.batch_size, config.steps_per_call)
        model_config = make_config(_WorldModelPresets, config.world_model, {"ensemble": ensemble})
        self.model = WorldModel(model_config, self.action_dim, tuple(obs_space.shape))
        self.actor = Actor(config.units, config.layers, self.action_dim)
        self.critic = Critic(config.units, config.layers)
        self.trace_count = 0
        keys = jax.random.split(jax.random.PRNGKey(seed), 4)
        self._rng = keys[3]
        obs = jnp.zeros((1, *obs_space.shape), obs_space.dtype)
        model_params = jax.jit(lambda k: self.model.init(
            k, obs, jnp.zeros((1, self.action_dim)), k, method=WorldModel.init_all))(keys[0])
        features = jnp.zeros((1, self._feature_size(model_config)))
        actor_params = self.actor.init(keys[1], features)
        critic_params = self.critic.init(keys[2], features)
        self.optimizers = {
            "model": _adam(model_config.lr, model_config.eps, model_config.clip, model_config.weight_decay),
            "actor": _adam(config.actor_lr, config.eps, config.clip),
            "critic": _adam(config.critic_lr, config.eps, config.clip),
        }
        params = {"model": model_params, "actor": actor_params, "critic": critic_params}
        self._train = {"params": params, "target_critic": jax.tree.map(jnp.copy, critic_params),
                       "opt": {k: self.optimizers[k].init(params[k]) for k in self.optimizers},
                       "step": jnp.zeros((), jnp.int32)}
        self._update_jit = jax.jit(self._update_many, donate_argnums=(0,))
        self._act_jit = jax.jit(self._act, static_argnums=(4,))

    @staticmethod
    def _feature_size(c: WorldModelConfig) -> int:
        return (c.stoch * c.classes if c.latent == "discrete" else c.stoch) + c.deter

    # -- losses ------------------------------------------------------------------------------

    def _imagined_returns(self, actor_params, model_params, target_critic, start, key):
        """Imagine from `start` with the actor; returns features, actions and lambda-returns."""
        c = self.config

        def policy(features, key):
            mean, log_std = self.actor.apply(actor_params, features)
            return nets.tanh_gaussian_sample(key, mean, log_std)

        states, actions = imagine(self.model, model_params, policy, start, c.horizon, key)
        n = actions.shape[0]
        flat = jax.tree.map(lambda x: x.reshape((n * (c.horizon + 1),) + x.shape[2:]), states)
        features = WorldModel.features(flat).reshape(n, c.horizon + 1, -1)  # (N, H+1, F)
        reward = self.model.apply(model_params, features[:, 1:], method=WorldModel.reward)  # (N, H)
        value = self.critic.apply(target_critic, features)  # (N, H+1)
        returns = lambda_returns(reward, value, jnp.full_like(reward, c.discount), c.lambda_)
        return features, actions, returns

    def _actor_loss(self, actor_params, model_params, target_critic, start, key):
        c = self.config
        features, actions, returns = self._imagined_returns(
            actor_params, model_params, target_critic, start, key)
        weights = c.discount ** jnp.arange(c.horizon)  # (H,) cumulative discount
        mean, log_std = self.actor.apply(actor_params, features[:, :-1])
        entropy = -nets.tanh_gaussian_log_prob(mean, log_std, actions)  # (N, H) sample estimate
        loss = -jnp.mean(weights * returns) - c.entropy * jnp.mean(weights * entropy)
        return loss, (features, returns, {"actor_loss": loss, "actor_entropy": entropy.mean(),
                                          "imagined_return": returns[:, 0].mean()})

    def _critic_loss(self, critic_params, features, returns):
        weights = self.config.discount ** jnp.arange(self.config.horizon)
        value = self.critic.apply(critic_params, features[:, :-1])
        loss = 0.5 * jnp.mean(weights * (value - returns) ** 2)
        return loss, {"critic_loss": loss, "value": value.mean()}

    # -- update ------------------------------------------------------------------------------

    def _apply(self, name, train_params, opt, grads):
        updates, new_opt = self.optimizers[name].update(grads, opt[name], train_params[name])
        return optax.apply_updates(train_params[name], updates), new_opt

    def _one_update(self, train, inputs):
        batch, key = inputs
        model_key, imagine_key = jax.random.split(key)
        params, opt = train["params"], dict(train["opt"])
        sg = jax.lax.stop_gradient

        grads, (posts, model_metrics) = jax.grad(
            lambda p: world_model_loss(self.model, p, batch, model_key), has_aux=True)(params["model"])
        model_params, opt["model"] = self._apply("model", params, opt, grads)

        start = sg(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), posts))  # B*T starts
        grads, (features, returns, actor_metrics) = jax.grad(self._actor_loss, has_aux=True)(
            params["actor"], sg(model_params), train["target_critic"], start, imagine_key)
        actor_params, opt["actor"] = self._apply("actor", params, opt, grads)

        grads, critic_metrics = jax.grad(self._critic_loss, has_aux=True)(
            params["critic"], sg(features), sg(returns))
        critic_params, opt["critic"] = self._apply("critic", params, opt, grads)

        step = train["step"] + 1
        refresh = step % self.config.target_update_every == 0
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              critic_params, train["target_critic"])
        new_train = {"params": {"model": model_params, "actor": actor_params, "critic": critic_params},
                     "target_critic": target, "opt": opt, "step": step}
        return new_train, {**model_metrics, **actor_metrics, **critic_metrics}

    def _update_many(self, train, key, batch):
        self.trace_count += 1  # runs only while tracing: counts compilations
        k = batch["action"].shape[0]
        train, metrics = nets.scan_updates(self._one_update, train, (batch, jax.random.split(key, k)))
        return train, jax.tree.map(jnp.mean, metrics)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        batch = {k: batch[k] for k in ("obs", "action", "reward", "is_first")}
        key, self._rng = jax.random.split(self._rng)
        self._train, metrics = self._update_jit(self._train, key, batch)
        return {k: float(v) for k, v in jax.device_get(metrics).items()}

    # -- acting ------------------------------------------------------------------------------

    def initial_state(self, n: int):
        """(latent state, previous action, is_first): the next `act` starts a new episode."""
        latent = self.model.apply(self._train["params"]["model"], n, method=WorldModel.initial)
        return latent, jnp.zeros((n, self.action_dim)), jnp.ones((n,))

    def _act(self, params, obs, state, key, explore):
        latent, prev_action, is_first = state
        obs_key, action_key = jax.random.split(key)
        embed = self.model.apply(params["model"], obs, method=WorldModel.encode)
        post, _ = self.model.apply(params["model"], latent, prev_action, embed, is_first, obs_key, 0,
                                   method=WorldModel.obs_step)
        mean, log_std = self.actor.apply(params["actor"], WorldModel.features(post))
        action = nets.tanh_gaussian_sample(action_key, mean, log_std) if explore else jnp.tanh(mean)
        return action, (post, action, jnp.zeros_like(is_first))

    def act(self, obs: np.ndarray, state, explore: bool):
        key, self._rng = jax.random.split(self._rng)
        action, state = self._act_jit(self._train["params"], obs, state, key, bool(explore))
        return np.asarray(action), state
