"""What the agents on the world model (DreamerV2, MOTO, LOMPO, COMBO) share: the actor on latent features, the
optimizers, building the model, one world-model gradient step, and acting by filtering.

An agent built on `LatentAgent` calls `_build` in its constructor (model, actor, its critic,
optimizers, initial parameters), keeps all its state in `self._train` (made by
`_initial_train`) with the parameters under `params` ("model", "actor", "critic"), and writes
`_one_update(train, (batch, key))`: one gradient step on observations as the model sees them.
`update` runs K of them in one jitted call; for state vectors it first merges the batch into
the running moments and standardizes it (`standardize_states`, docs/decisions.md), and `act`
standardizes with the same moments.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from algorithms import nets
from algorithms.agent import JittedAgent
from algorithms.base import Sequences, make_config
from algorithms.world_model import (WorldModel, WorldModelConfig, initial_moments, standardize,
                                    update_moments, world_model_loss)


class _WorldModelPresets:  # lets make_config check a `world_model` preset name
    name, Config = "world_model", WorldModelConfig


def world_model_config(preset: str, **overrides) -> WorldModelConfig:
    return make_config(_WorldModelPresets, preset, overrides)


def clipped_adam(lr: float, eps: float, clip: float, weight_decay: float = 0.0):
    """DreamerV2's optimizer: clip the global gradient norm, then Adam, and shrink every
    parameter by (1 - weight_decay) per step, not scaled by the learning rate (DreamerV2's
    `tfutils.Optimizer` multiplies each variable by (1 - wd) before applying Adam's update;
    `optax.adamw` would multiply the decay by the learning rate: 1e-6 * 3e-4)."""
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps),
                       shrink_weights(weight_decay))


def shrink_weights(rate: float) -> optax.GradientTransformation:
    """Adds -rate * params to the update: params_new = (1 - rate) * params + update."""

    def update(updates, state, params):
        if rate:
            updates = jax.tree.map(lambda u, p: u - rate * p, updates, params)
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class Actor(nn.Module):
    """pi(a | s): ELU MLP on the model features -> tanh-squashed Gaussian (mean, log_std).

    Parameterized as DreamerV2's `tanh_normal`: mean = 5 tanh(x / 5), std = softplus(y) +
    min_std. The std never falls below `min_std` (DreamerV2's actor.min_std = 0.1), so the
    actor keeps exploring and keeps a usable gradient on a dimension whose demonstrations sit
    at +-1: with an unbounded log-std, behaviour cloning on such actions drove the pre-tanh
    mean to ~7 and the std to e^-10, where tanh's slope (~1e-6) stops every other loss.
    """

    units: int
    layers: int
    action_dim: int
    min_std: float = 0.1

    @nn.compact
    def __call__(self, features):
        hidden = nets.MLP((self.units,) * self.layers, activation="elu")(features)
        mean = 5.0 * jnp.tanh(nn.Dense(self.action_dim)(hidden) / 5.0)
        std = jax.nn.softplus(nn.Dense(self.action_dim)(hidden)) + self.min_std
        return mean, jnp.log(std)


def feature_size(config: WorldModelConfig) -> int:
    stoch = config.stoch * config.classes if config.latent == "discrete" else config.stoch
    return stoch + config.deter


def flatten_time(tree):
    """(B, T, ...) -> (B*T, ...) for every array of a state dict."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


class LatentAgent(JittedAgent):
    """Model building, the world-model step, `update` and `act` for agents on RSSM states."""

    batch_keys: tuple = ("obs", "action", "reward", "is_first")  # what `_one_update` reads

    def _build(self, obs_space, action_space, config, model_config: WorldModelConfig,
               critic: nn.Module, critic_inputs: int, seed: int, actor: nn.Module | None = None) -> dict:
        """Sets up the model, actor, critic and optimizers; returns the initial parameters.

        `config` needs batch_size, sequence_length, steps_per_call, actor_lr, critic_lr, eps,
        clip and weight_decay, and, for the default tanh-Gaussian `Actor`, units, layers and
        actor_min_std; the critic is applied to `critic_inputs` arrays shaped like
        (features, action)[:critic_inputs].
        """
        self.config = config
        self.action_dim = action_space.shape[0]
        self.standardizes = model_config.standardize_states and len(obs_space.shape) == 1
        self.batch_spec = Sequences(config.sequence_length, config.batch_size, config.steps_per_call)
        self.model = WorldModel(model_config, self.action_dim, tuple(obs_space.shape))
        self.actor = actor or Actor(config.units, config.layers, self.action_dim, config.actor_min_std)
        self.critic = critic
        keys = jax.random.split(jax.random.PRNGKey(seed), 4)
        self._rng = keys[3]
        inputs = (jnp.zeros((1, feature_size(model_config))), jnp.zeros((1, self.action_dim)))
        params = {"model": self._init_model(keys[0], obs_space),
                  "actor": self.actor.init(keys[1], inputs[0]),
                  "critic": critic.init(keys[2], *inputs[:critic_inputs])}
        self.optimizers = {
            "model": clipped_adam(model_config.lr, model_config.eps, model_config.clip,
                                  model_config.weight_decay),
            "actor": clipped_adam(config.actor_lr, config.eps, config.clip, config.weight_decay),
            "critic": clipped_adam(config.critic_lr, config.eps, config.clip, config.weight_decay),
        }
        return params

    def _initial_train(self, **state) -> dict:
        """The agent's `self._train`: `state`, plus the running moments of the state vectors
        when the model standardizes them."""
        if self.standardizes:
            state["obs_moments"] = initial_moments(self.model.obs_shape[0])
        return state

    def _update_many(self, train, key, batch):
        """K gradient steps; state vectors enter standardized by the moments of every batch so
        far, this one included (one merge per call: K x B x T states)."""
        if not self.standardizes:
            return super()._update_many(train, key, batch)
        moments = update_moments(train["obs_moments"], batch["obs"])
        batch = {**batch, "obs": standardize(moments, batch["obs"])}
        rest = {k: v for k, v in train.items() if k != "obs_moments"}
        rest, metrics = super()._update_many(rest, key, batch)
        return {**rest, "obs_moments": moments}, metrics

    def _init_opt(self, params: dict) -> dict:
        return {k: self.optimizers[k].init(params[k]) for k in self.optimizers}

    def _init_model(self, key, obs_space) -> dict:
        obs = jnp.zeros((1, *obs_space.shape), obs_space.dtype)
        return jax.jit(lambda k: self.model.init(
            k, obs, jnp.zeros((1, self.action_dim)), k, method=WorldModel.init_all))(key)

    def _apply_grads(self, name: str, params: dict, opt: dict, grads):
        """One optimizer step of `params[name]`; returns (new params[name], new opt[name])."""
        updates, new_opt = self.optimizers[name].update(grads, opt[name], params[name])
        return optax.apply_updates(params[name], updates), new_opt

    def _model_step(self, params: dict, opt: dict, batch: dict, key):
        """One gradient step of the world model; returns (model params, its opt state, posts, metrics)."""
        grads, (posts, metrics) = jax.grad(
            lambda p: world_model_loss(self.model, p, batch, key), has_aux=True)(params["model"])
        model_params, model_opt = self._apply_grads("model", params, opt, grads)
        return model_params, model_opt, posts, metrics

    def _policy(self, actor_params):
        """features, key -> (sampled action, its log-probability), for `imagine`."""
        def policy(features, key):
            mean, log_std = self.actor.apply(actor_params, features)
            return nets.tanh_gaussian_sample_and_log_prob(key, mean, log_std)
        return policy

    # -- acting ------------------------------------------------------------------------------

    def initial_state(self, n: int):
        """(latent state, previous action, is_first): the next `act` starts a new episode."""
        latent = self.model.apply(self._train["params"]["model"], n, method=WorldModel.initial)
        return latent, jnp.zeros((n, self.action_dim)), jnp.ones((n,))

    def _act(self, train, obs, state, key, explore):
        params = train["params"]
        if self.standardizes:
            obs = standardize(train["obs_moments"], obs)
        latent, prev_action, is_first = state
        obs_key, action_key = jax.random.split(key)
        embed = self.model.apply(params["model"], obs, method=WorldModel.encode)
        # Exploring: a posterior sample, as in training. Deterministic: its mode (DreamerV2's
        # `eval_state_mean` option), so an evaluation draws no random numbers (docs/decisions.md).
        post, _ = self.model.apply(params["model"], latent, prev_action, embed, is_first, obs_key, 0,
                                   explore, method=WorldModel.obs_step)
        action = self._policy_action(params["actor"], WorldModel.features(post), action_key, explore)
        return action, (post, action, jnp.zeros_like(is_first))

    def _policy_action(self, actor_params, features, key, explore):
        """The action `act` takes: a tanh-Gaussian sample when exploring, else tanh(mean)."""
        mean, log_std = self.actor.apply(actor_params, features)
        return nets.tanh_gaussian_sample(key, mean, log_std) if explore else jnp.tanh(mean)

    def act(self, obs: np.ndarray, state, explore: bool):
        if not hasattr(self, "_act_jit"):
            self._act_jit = jax.jit(self._act, static_argnums=(4,))
        key = self._act_key(explore)
        action, state = self._act_jit(self._train, obs, state, key, bool(explore))
        return np.asarray(action), state
