"""DreamerV2 (Hafner et al., 2021) on the shared world model, pre-trained offline then fine-tuned.

Per update, on a batch of real sequences:
1. World model: minimize -log p(o) - log p(r) + balanced KL (`world_model_loss`).
2. From every posterior state of the batch (B*T starts, gradient stopped) imagine H = 15
   steps with the actor; rewards from the reward head, values from the target critic.
3. Critic v(s): regress v(s_t) onto the lambda-returns R_t (lambda = 0.95, gamma = 0.99),
   weighted by the cumulative discount; the target critic is a copy refreshed every 100 updates.
4. Actor pi(a|s): maximize the lambda-returns by backpropagating through the learned dynamics,
   reward head and target critic (only the actor's parameters change), plus entropy 1e-4.

Differences from DreamerV2's code, ours: a tanh-Gaussian actor (the same head as MOTO's,
DreamerV2's `tanh_normal` with std >= 0.1) instead of a truncated normal, entropy estimated as -log pi(a) of the imagined action, and no
discount head (the benchmark's episodes end by time limit, never by termination).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms import nets
from algorithms.base import register
from algorithms.latent import LatentAgent, flatten_time, world_model_config
from algorithms.returns import lambda_returns
from algorithms.world_model import WorldModel, imagine


@dataclass(frozen=True)
class Config:
    PRESETS: ClassVar[dict] = {
        "paper": {},
        "small": {"world_model": "small"},  # DreamerV2's dmc_vision model sizes
        "debug": {"world_model": "debug", "batch_size": 4, "sequence_length": 10, "horizon": 5,
                  "units": 32, "layers": 1, "steps_per_call": 1},
        # Ours, for state vectors on 2 CPU cores (docs/decisions.md): the `cpu` world model,
        # 16 sequences of 16 steps, actor and critic 2 x 64, their learning rates 3e-4 (the
        # world model's; DreamerV2's 8e-5 is for 400-unit nets and 10x more updates).
        "cpu": {"world_model": "cpu", "batch_size": 16, "sequence_length": 16, "units": 64,
                "layers": 2, "actor_lr": 3e-4, "critic_lr": 3e-4, "steps_per_call": 10},
    }

    world_model: str = "paper"  # preset of WorldModelConfig: paper, small, cpu or debug
    world_model_overrides: dict = field(default_factory=dict)  # e.g. {deter: 256, cnn_depth: 32}
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
    weight_decay: float = 1e-6  # actor and critic: (1 - wd) per step (DreamerV2 actor_opt, critic_opt)
    actor_min_std: float = 0.1  # lower bound of the actor's std (DreamerV2 actor.min_std)
    entropy: float = 1e-4  # actor entropy bonus (DreamerV2 dmc)
    target_update_every: int = 100  # updates between hard copies of the critic
    steps_per_call: int = 4  # ours: gradient steps per jitted update call

    def __post_init__(self):
        world_model_config(self.world_model, **self.world_model_overrides)  # fails early if bad


class Critic(nn.Module):
    units: int
    layers: int

    @nn.compact
    def __call__(self, features):
        return nn.Dense(1)(nets.MLP((self.units,) * self.layers, activation="elu")(features))[..., 0]


@register
class DreamerV2(LatentAgent):
    name = "dreamerv2"
    Config = Config

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        model_config = world_model_config(config.world_model, **config.world_model_overrides)
        params = self._build(obs_space, action_space, config, model_config,
                             Critic(config.units, config.layers), critic_inputs=1, seed=seed)
        self._train = self._initial_train(
            params=params, target_critic=jax.tree.map(jnp.copy, params["critic"]),
            opt=self._init_opt(params), step=jnp.zeros((), jnp.int32))

    # -- losses ------------------------------------------------------------------------------

    def _imagined_returns(self, actor_params, model_params, target_critic, start, key):
        """Imagine from `start` with the actor; returns features, log pi(a) and lambda-returns."""
        c = self.config
        states, actions, log_probs = imagine(self.model, model_params, self._policy(actor_params), start,
                                  c.horizon, key)
        n = actions.shape[0]
        features = WorldModel.features(flatten_time(states)).reshape(n, c.horizon + 1, -1)  # (N, H+1, F)
        reward = self.model.apply(model_params, features[:, 1:], method=WorldModel.reward)  # (N, H)
        value = self.critic.apply(target_critic, features)  # (N, H+1)
        returns = lambda_returns(reward, value, jnp.full_like(reward, c.discount), c.lambda_)
        return features, log_probs, returns

    def _actor_loss(self, actor_params, model_params, target_critic, start, key):
        c = self.config
        features, log_probs, returns = self._imagined_returns(
            actor_params, model_params, target_critic, start, key)
        weights = c.discount ** jnp.arange(c.horizon)  # (H,) cumulative discount
        entropy = -log_probs  # (N, H) sample estimate
        loss = -jnp.mean(weights * returns) - c.entropy * jnp.mean(weights * entropy)
        return loss, (features, returns, {"actor_loss": loss, "actor_entropy": entropy.mean(),
                                          "imagined_return": returns[:, 0].mean()})

    def _critic_loss(self, critic_params, features, returns):
        weights = self.config.discount ** jnp.arange(self.config.horizon)
        value = self.critic.apply(critic_params, features[:, :-1])
        loss = 0.5 * jnp.mean(weights * (value - returns) ** 2)
        return loss, {"critic_loss": loss, "value": value.mean()}

    # -- update ------------------------------------------------------------------------------

    def _one_update(self, train, inputs):
        batch, key = inputs
        model_key, imagine_key = jax.random.split(key)
        params, opt = train["params"], dict(train["opt"])
        sg = jax.lax.stop_gradient

        model_params, opt["model"], posts, model_metrics = self._model_step(params, opt, batch, model_key)

        start = sg(flatten_time(posts))  # B*T starts
        grads, (features, returns, actor_metrics) = jax.grad(self._actor_loss, has_aux=True)(
            params["actor"], sg(model_params), train["target_critic"], start, imagine_key)
        actor_params, opt["actor"] = self._apply_grads("actor", params, opt, grads)

        grads, critic_metrics = jax.grad(self._critic_loss, has_aux=True)(
            params["critic"], sg(features), sg(returns))
        critic_params, opt["critic"] = self._apply_grads("critic", params, opt, grads)

        step = train["step"] + 1
        refresh = step % self.config.target_update_every == 0
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              critic_params, train["target_critic"])
        new_train = {"params": {"model": model_params, "actor": actor_params, "critic": critic_params},
                     "target_critic": target, "opt": opt, "step": step}
        return new_train, {**model_metrics, **actor_metrics, **critic_metrics}
