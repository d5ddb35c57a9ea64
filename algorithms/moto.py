"""MOTO (Rafailov et al., CoRL 2023): model-based offline-to-online fine-tuning from pixels.

The world model is DreamerV2's RSSM with M = 7 prior heads sharing the GRU. Per update, on a
batch of real sequences (equations numbered as in the paper; docs/algorithms/moto.md has them
all with which values are the paper's and which are ours):

1. World model: -log p(o) - log p(r) + balanced KL, one random prior member per step.
2. Start from every posterior state of the batch (B*T starts, gradient stopped) and imagine
   H steps with a ~ pi(.|s); each next latent comes from one random ensemble member.
3. Uncertainty (Eq. 2-3): u(s) = mean over the 32x32 entries of the members' normalized
   logits (log-probabilities) of their standard deviation across the M members, all computed
   from the same deterministic state; r~ = r^ - alpha * u.
4. Value expansion (Eq. 5): V^h(s_t) = sum_{i<h} g^i r~_{t+i} + g^h min_j Q_j(s_{t+h}, pi(s_{t+h})),
   h = 0..H, and V^(s_t) = mean_h V^h(s_t).
5. Actor (Eq. 6, 10): -V^ (backpropagated through dynamics, reward head and critics, whose
   parameters this loss does not change) - eta * entropy + beta * BC on real steps of
   successful episodes only; BC is 0.5 ||tanh(mean) - a_t||^2 (ours; -log pi(a_t|s_t) as an
   option).
6. Critic (Eq. 7-9): on imagined states, Q_j(s^h, a^h) regresses onto the value-expansion target
   of the target critics from s^h on; on real data, Q_j(s_t, a_t) onto
   r_t + g (1 - terminal) min_j Qbar_j(s_{t+1}, pi(s_{t+1})), with real rewards and no model sample.

The pure functions below are the equations; `Moto` wires them into one jitted update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms import nets
from algorithms.base import ConfigError, register
from algorithms.latent import LatentAgent, flatten_time, world_model_config
from algorithms.world_model import WorldModel, imagine

# ---------------------------------------------------------------------------------------------
# The equations, each a pure function with a known-answer test (tests/test_moto.py).


def member_log_probs(member_logits: jax.Array) -> jax.Array:
    """log-softmax over the classes: (M, ..., S, C) -> (M, ..., S, C).

    A member's logits can carry an offset per categorical that softmax ignores and training
    never removes; normalized, two members that predict the same distribution agree exactly.
    """
    return jax.nn.log_softmax(member_logits, axis=-1)


def ensemble_disagreement(member_stats: jax.Array) -> jax.Array:
    """Eq. 2-3: u = mean over the latent statistics of their std across ensemble members.

    member_stats (M, ..., S, C): the M prior heads' logits for the same deterministic states
    (for Gaussian latents, (M, ..., S) means work the same way with C left out: pass them with a
    trailing axis of 1). The std is the population std (divide by M). Returns (...).
    """
    return jnp.std(member_stats, axis=0).mean(axis=(-2, -1))


def value_expansion(rewards: jax.Array, bootstrap: jax.Array, discount: float) -> jax.Array:
    """Eq. 5: V^h = sum_{i<h} g^i r_i + g^h b_h for h = 0..H.

    rewards (N, H): the (penalized) rewards of the H imagined steps; bootstrap (N, H+1):
    min_j Q_j(s_h, a_h) at every imagined state, a_h ~ pi(s_h). Returns (N, H+1); V^0 = b_0.
    """
    horizon = rewards.shape[-1]
    weights = discount ** jnp.arange(horizon + 1)  # g^0 .. g^H
    partial_returns = jnp.cumsum(rewards * weights[:horizon], axis=-1)  # sum_{i<h}, h = 1..H
    partial_returns = jnp.concatenate([jnp.zeros(rewards.shape[:-1] + (1,)), partial_returns], -1)
    return partial_returns + weights * bootstrap


def imagined_critic_targets(rewards: jax.Array, bootstrap: jax.Array, discount: float) -> jax.Array:
    """Eq. 7-8: the target of Q(s^h, a^h) for each imagined step h < H.

    The mean over k = 1..H-h of the k-step value expansion from s^h that starts with the action
    a^h actually taken: sum_{i<k} g^i r_{h+i} + g^k b_{h+k}. rewards (N, H), bootstrap (N, H+1)
    (from the target critics). Returns (N, H). H is static, so the loop unrolls.
    """
    horizon = rewards.shape[-1]
    if horizon == 0:
        return jnp.zeros(rewards.shape)
    targets = [value_expansion(rewards[:, h:], bootstrap[:, h:], discount)[:, 1:].mean(-1)
               for h in range(horizon)]
    return jnp.stack(targets, -1)


def real_critic_target(reward: jax.Array, terminal: jax.Array, next_value: jax.Array,
                       discount: float) -> jax.Array:
    """Eq. 9: y = r + g (1 - terminal) min_j Qbar_j(s', pi(s')); all arrays the same shape."""
    return reward + discount * (1.0 - terminal) * next_value


def filtered_bc_mask(episode_success: jax.Array, is_first: jax.Array) -> jax.Array:
    """Eq. 10's filter: which (s_t, a_t) pairs of a sequence batch enter the BC term.

    In a sequence the action that left step t is stored at t+1, so pair t is (s_t, action[t+1]);
    it counts when step t+1 is not an episode start (that action is a placeholder) and its
    episode succeeded (for kitchen/partial: reached the first three targets; see
    `harness.data.format.episode_success`). episode_success, is_first (B, T) -> (B, T-1).
    """
    return episode_success[:, 1:] * (1.0 - is_first[:, 1:])


def behaviour_cloning_loss(kind: str, mean: jax.Array, log_std: jax.Array, action: jax.Array,
                           action_limit: float) -> jax.Array:
    """Eq. 10's per-pair term for the actor's (pre-tanh mean, log-std): (..., A) -> (...).

    "squared_error" (ours, the default): 0.5 * ||tanh(mean) - a||^2, the negative
    log-likelihood of a unit-std Gaussian around the actor's mean action (jaxrl2's BC head;
    docs/algorithms/moto.md). "log_prob": -log pi(a|s) of the tanh-Gaussian, the paper's
    Eq. 10 as written, with the targets clipped to +-action_limit before atanh.
    """
    if kind == "squared_error":
        return 0.5 * jnp.sum((jnp.tanh(mean) - action) ** 2, -1)
    targets = jnp.clip(action, -action_limit, action_limit)
    return -nets.tanh_gaussian_log_prob(mean, log_std, targets)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over the entries where mask is 1; 0 when the mask is empty."""
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# ---------------------------------------------------------------------------------------------
# Configuration and networks.


@dataclass(frozen=True)
class Config:
    PRESETS: ClassVar[dict] = {
        "paper": {},
        "small": {"world_model": "small"},  # DreamerV2's dmc_vision model sizes
        "debug": {"world_model": "debug", "ensemble": 3, "batch_size": 4, "sequence_length": 10,
                  "horizon": 3, "units": 32, "layers": 1, "steps_per_call": 1},
        # Ours, for state vectors on 2 CPU cores (docs/decisions.md): the `cpu` world model,
        # 16 sequences of 16 steps, actor and critic 2 x 64, their learning rates 3e-4 (the
        # world model's; DreamerV2's 8e-5 is for 400-unit nets and 10x more updates).
        "cpu": {"world_model": "cpu", "batch_size": 16, "sequence_length": 16, "units": 64,
                "layers": 2, "actor_lr": 3e-4, "critic_lr": 3e-4, "steps_per_call": 10},
    }

    MINIMUMS: ClassVar[dict] = {"horizon": 0}

    world_model: str = "paper"  # preset of WorldModelConfig: paper, small, cpu or debug
    world_model_overrides: dict = field(default_factory=dict)  # e.g. {deter: 256, cnn_depth: 32}
    ensemble: int = 7  # M prior heads sharing the GRU (paper)
    batch_size: int = 16  # sequences per batch (DreamerV2, as the paper)
    sequence_length: int = 50  # steps per sequence (DreamerV2, as the paper)
    horizon: int = 5  # H, imagined steps of value expansion (ours; 0 = plain actor-critic)
    discount: float = 0.99  # gamma (paper)
    alpha: float = 1.0  # weight of the uncertainty penalty (ours)
    beta: float = 10.0  # weight of the filtered BC term (ours; docs/algorithms/moto.md)
    entropy: float = 1e-4  # eta, actor entropy bonus (DreamerV2)
    tau: float = 0.005  # Polyak rate of the target critics (ours)
    units: int = 400  # actor and critic MLP width (DreamerV2)
    layers: int = 4  # actor and critic MLP depth (DreamerV2)
    actor_lr: float = 8e-5  # (DreamerV2)
    critic_lr: float = 8e-5  # (DreamerV2)
    eps: float = 1e-5  # Adam epsilon, actor and critic
    clip: float = 100.0  # gradient norm clip, actor and critic
    weight_decay: float = 1e-6  # actor and critic: (1 - wd) per step (DreamerV2 actor_opt, critic_opt)
    actor_min_std: float = 0.1  # lower bound of the actor's std (DreamerV2 actor.min_std)
    bc: bool = True  # ablation "No BC": false drops the filtered BC term
    uncertainty: bool = True  # ablation "No uncertainty": false sets alpha to 0 (u is still logged)
    normalize_value: bool = True  # ours: divide the value term by sg(mean |Q|) so beta is scale-free
    disagreement_on: str = "log_probs"  # ours: u from log-softmax logits; "logits": raw logits
    bc_loss: str = "squared_error"  # ours; "log_prob": -log pi(a|s) (see behaviour_cloning_loss)
    bc_action_limit: float = 0.99  # ours: with bc_loss "log_prob", targets clipped to +-this before atanh
    steps_per_call: int = 4  # ours: gradient steps per jitted update call

    def __post_init__(self):
        if "ensemble" in self.world_model_overrides:
            raise ConfigError("moto.config.world_model_overrides: set the ensemble size with "
                              "moto's own 'ensemble' field.")
        world_model_config(self.world_model, **self.world_model_overrides)  # fails early if bad
        if self.disagreement_on not in ("log_probs", "logits"):
            raise ConfigError(f"moto.config.disagreement_on must be 'log_probs' or 'logits', got "
                              f"{self.disagreement_on!r}.")
        if self.bc_loss not in ("squared_error", "log_prob"):
            raise ConfigError(f"moto.config.bc_loss must be 'squared_error' or 'log_prob', got "
                              f"{self.bc_loss!r}.")
        if not 0.0 < self.bc_action_limit < 1.0:
            raise ConfigError(f"moto.config.bc_action_limit must be in (0, 1), got "
                              f"{self.bc_action_limit}.")


class QNetwork(nn.Module):
    units: int
    layers: int

    @nn.compact
    def __call__(self, features, action):
        x = jnp.concatenate([features, action], -1)
        return nn.Dense(1)(nets.MLP((self.units,) * self.layers, activation="elu")(x))[..., 0]


class TwinCritic(nn.Module):
    """Q_1, Q_2 with separate parameters, evaluated together: returns (2, ...)."""

    units: int
    layers: int

    @nn.compact
    def __call__(self, features, action):
        twins = nn.vmap(QNetwork, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=None, out_axes=0, axis_size=2)
        return twins(self.units, self.layers)(features, action)


# ---------------------------------------------------------------------------------------------
# The agent.


@register
class Moto(LatentAgent):
    name = "moto"
    Config = Config

    batch_keys = ("obs", "action", "reward", "is_first", "is_terminal", "episode_success")

    def __init__(self, obs_space, action_space, config: Config, seed: int, total_updates: int):
        model_config = world_model_config(config.world_model, **{
            **config.world_model_overrides, "ensemble": config.ensemble})
        params = self._build(obs_space, action_space, config, model_config,
                             TwinCritic(config.units, config.layers), critic_inputs=2, seed=seed)
        self.alpha = config.alpha if config.uncertainty else 0.0
        self.beta = config.beta if config.bc else 0.0
        self._train = self._initial_train(
            params=params, target_critic=jax.tree.map(jnp.copy, params["critic"]),
            opt=self._init_opt(params))

    def _min_q(self, critic_params, features, action):
        return self.critic.apply(critic_params, features, action).min(0)

    # -- imagination -------------------------------------------------------------------------

    def _imagine(self, actor_params, model_params, start, key):
        """H steps from `start` (N states): features (N, H+1, F), actions (N, H+1, A) with
        a_H ~ pi(s_H) for bootstrapping, their log pi (N, H+1), the model rewards and
        disagreement u of the H steps, (N, H) each, and u's means to log (from raw and from
        normalized logits)."""
        c = self.config
        rollout_key, last_key = jax.random.split(key)
        policy = self._policy(actor_params)
        states, actions, log_probs = imagine(self.model, model_params, policy, start, c.horizon,
                                             rollout_key)
        n = start["deter"].shape[0]
        features = WorldModel.features(flatten_time(states)).reshape(n, c.horizon + 1, -1)
        last_action, last_log_prob = policy(jax.lax.stop_gradient(features[:, -1]), last_key)
        actions = jnp.concatenate([actions, last_action[:, None]], 1)
        log_probs = jnp.concatenate([log_probs, last_log_prob[:, None]], 1)
        reward = self.model.apply(model_params, features[:, 1:], method=WorldModel.reward)
        next_deter = states["deter"][:, 1:].reshape(n * c.horizon, states["deter"].shape[-1])
        members = self.model.apply(model_params, next_deter, method=WorldModel.ensemble_prior)
        if "logits" in members:
            raw = ensemble_disagreement(members["logits"]).reshape(n, c.horizon)
            normalized = ensemble_disagreement(member_log_probs(members["logits"])).reshape(n, c.horizon)
            disagreement = normalized if c.disagreement_on == "log_probs" else raw
            logged = {"penalty_logits": raw.mean(), "penalty_log_probs": normalized.mean()}
        else:
            disagreement = ensemble_disagreement(members["mean"][..., None]).reshape(n, c.horizon)
            logged = {}
        return features, actions, log_probs, reward, disagreement, logged

    # -- losses ------------------------------------------------------------------------------

    def _actor_loss(self, actor_params, model_params, critic_params, start, real, key):
        c = self.config
        features, actions, log_probs, reward, disagreement, logged = self._imagine(
            actor_params, model_params, start, key)
        penalized = reward - self.alpha * disagreement
        bootstrap = self._min_q(critic_params, features, actions)  # (N, H+1)
        values = value_expansion(penalized, bootstrap, c.discount)  # (N, H+1): V^0 .. V^H
        scale = jax.lax.stop_gradient(jnp.abs(bootstrap).mean()) if c.normalize_value else 1.0
        value_term = values.mean() / jnp.maximum(scale, 1e-3)

        entropy = -log_probs.mean()  # sample estimate over all H+1 imagined states

        real_features, real_actions, mask = real
        mean, log_std = self.actor.apply(actor_params, real_features)
        bc_loss = masked_mean(behaviour_cloning_loss(c.bc_loss, mean, log_std, real_actions,
                                                     c.bc_action_limit), mask)

        loss = -value_term - c.entropy * entropy + self.beta * bc_loss
        metrics = {"actor_loss": loss, "actor_entropy": entropy, "bc_loss": bc_loss,
                   "bc_fraction": mask.mean(), "value_scale": scale,
                   **{f"value_h{h}": values[:, h].mean() for h in range(c.horizon + 1)}}
        if c.horizon > 0:
            metrics.update(penalty_mean=disagreement.mean(), penalty_max=disagreement.max(),
                           model_reward=reward.mean(), **logged)
        return loss, ((features, actions, penalized), metrics)

    def _critic_targets(self, target_critic, actor_params, imagined, real_next, key):
        """Eq. 7-9 targets, from the target critics: imagined (N, H) and real (B, T-1)."""
        c = self.config
        features, actions, penalized = imagined
        bootstrap = self._min_q(target_critic, features, actions)
        imagined_targets = imagined_critic_targets(penalized, bootstrap, c.discount)
        next_features, reward, terminal = real_next
        mean, log_std = self.actor.apply(actor_params, next_features)
        next_value = self._min_q(target_critic, next_features,
                                 nets.tanh_gaussian_sample(key, mean, log_std))
        return imagined_targets, real_critic_target(reward, terminal, next_value, c.discount)

    def _critic_loss(self, critic_params, imagined, imagined_targets, real, real_targets):
        """Squared errors of both Q_j: the mean over imagined steps plus the mean over valid
        real pairs."""
        features, actions, _ = imagined
        real_features, real_actions, valid = real
        losses = {}
        if self.config.horizon > 0:
            q = self.critic.apply(critic_params, features[:, :-1], actions[:, :-1])  # (2, N, H)
            losses["critic_loss_imagined"] = jnp.mean(0.5 * jnp.sum((q - imagined_targets) ** 2, 0))
        q = self.critic.apply(critic_params, real_features, real_actions)  # (2, B, T-1)
        losses["critic_loss_real"] = masked_mean(0.5 * jnp.sum((q - real_targets) ** 2, 0), valid)
        loss = sum(losses.values())
        return loss, {**losses, "critic_loss": loss, "q_real": masked_mean(q.mean(0), valid)}

    # -- update ------------------------------------------------------------------------------

    def _one_update(self, train, inputs):
        batch, key = inputs
        model_key, actor_key, critic_key = jax.random.split(key, 3)
        params, opt = train["params"], dict(train["opt"])
        sg = jax.lax.stop_gradient

        model_params, opt["model"], posts, model_metrics = self._model_step(params, opt, batch, model_key)
        model_params_sg = sg(model_params)

        # Real pairs (s_t, a_t, r_t+1, s_t+1): action and reward of step t+1 in sequence layout.
        real_features = sg(WorldModel.features(flatten_time(posts)).reshape(
            batch["action"].shape[:2] + (-1,)))
        valid = 1.0 - batch["is_first"][:, 1:]
        bc_mask = filtered_bc_mask(batch["episode_success"], batch["is_first"])
        real_bc = (real_features[:, :-1], batch["action"][:, 1:], bc_mask)

        start = sg(flatten_time(posts))  # B*T starts
        grads, (imagined, actor_metrics) = jax.grad(self._actor_loss, has_aux=True)(
            params["actor"], model_params_sg, sg(params["critic"]), start, real_bc, actor_key)
        actor_params, opt["actor"] = self._apply_grads("actor", params, opt, grads)

        imagined = sg(imagined)
        real_next = (real_features[:, 1:], batch["reward"][:, 1:], batch["is_terminal"][:, 1:])
        imagined_targets, real_targets = self._critic_targets(
            train["target_critic"], actor_params, imagined, real_next, critic_key)
        real_pairs = (real_features[:, :-1], batch["action"][:, 1:], valid)
        grads, critic_metrics = jax.grad(self._critic_loss, has_aux=True)(
            params["critic"], imagined, imagined_targets, real_pairs, real_targets)
        critic_params, opt["critic"] = self._apply_grads("critic", params, opt, grads)

        tau = self.config.tau
        target = jax.tree.map(lambda new, old: tau * new + (1.0 - tau) * old,
                              critic_params, train["target_critic"])
        new_train = {"params": {"model": model_params, "actor": actor_params, "critic": critic_params},
                     "target_critic": target, "opt": opt}
        return new_train, {**model_metrics, **actor_metrics, **critic_metrics}
