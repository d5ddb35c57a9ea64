"""Policy optimization in latent replay buffers: what LOMPO and COMBO share (the paper ran both
from the LOMPO repository).

Per update, on a batch of real sequences (B x T):

1. World model: one gradient step of `world_model_loss` (Gaussian latents, M prior heads
   sharing the GRU), which also gives the posterior states of the batch.
2. On every `refresh_every`-th update only (LOMPO: 200; the first update is one), the buffers
   get new rows, from the model as it is then (steps 2 and 3). Real latent transitions
   (s_t, a_t+1, r_t+1, s_t+1) from those posterior features, past the first `burn_in` steps
   of each sequence (whose filter has seen too little; LOMPO encodes whole episodes from
   their first step), B (T - 1 - burn_in) of them, go into the real buffer; a pair across an
   episode boundary is stored with weight 0.
3. Imagined transitions: from `rollout_starts` posterior states (0: every one of the batch,
   B T, as LOMPO), H steps with
   a = clip(pi(s) + N(0, sigma^2)), the next latent sampled from one ensemble member drawn
   per step, the reward from the reward head at the next state, and the ensemble's
   disagreement u (`log_prob_disagreement`) at the sampled next latent. The agent turns
   (r, u) into the stored reward (LOMPO: r - lambda u; COMBO: r). They go into the imagined
   buffer.
4. Agent: `agent_batch_size` transitions from each buffer; two critics with Polyak targets
   regress onto y = r + g min_j Qbar_j(s', pi(s')) (plus the agent's critic regularizer), and
   the deterministic tanh actor maximizes min_j Q_j(s, pi(s)) over all of them (TD3-style,
   as LOMPO's code: no target actor, no target smoothing, no delayed actor updates).

Both buffers are rings in the agent's state (`buffer_init`, `buffer_add`, `buffer_sample`),
so checkpoints and the K-step jitted update carry them. A stored transition keeps the
features the model gave when it was written: it is not recomputed when the model changes
during online fine-tuning. That staleness is what the MOTO paper discusses for these methods;
the harness keeps it rather than fixing it. Transitions never terminate (the benchmark's
episodes end by time limit; LOMPO's `pcont` is off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms import nets
from algorithms.actor_critic import TwinQ, polyak, td_target, twin_critic_loss
from algorithms.base import ConfigError
from algorithms.latent import LatentAgent, flatten_time, world_model_config
from algorithms.world_model import WorldModel

@dataclass(frozen=True)
class LatentBufferConfig:
    """The settings LOMPO and COMBO share; each algorithm's `Config` subclasses this."""

    PRESETS: ClassVar[dict] = {
        "paper": {},
        "debug": {"world_model": "debug", "ensemble": 3, "batch_size": 4, "sequence_length": 10,
                  "horizon": 3, "rollout_starts": 8, "burn_in": 2, "agent_batch_size": 32,
                  "real_capacity": 2000,
                  "imagined_capacity": 2000, "actor_units": 32, "actor_layers": 2,
                  "critic_units": 32, "critic_layers": 2, "steps_per_call": 1},
        # Ours, for state vectors on 2 CPU cores (docs/decisions.md): the `lompo-cpu` world
        # model, 16 sequences of 16 steps, LOMPO's actor and critic depths at width 64, 128 +
        # 128 latent transitions per agent batch.
        "cpu": {"world_model": "lompo-cpu", "batch_size": 16, "sequence_length": 16,
                "agent_batch_size": 128, "actor_units": 64, "critic_units": 64,
                "steps_per_call": 10},
    }

    MINIMUMS: ClassVar[dict] = {"rollout_starts": 0, "burn_in": 0}

    world_model: str = "lompo"  # preset of WorldModelConfig (Gaussian latents are required)
    world_model_overrides: dict = field(default_factory=dict)  # e.g. {deter: 128}
    ensemble: int = 7  # prior heads sharing the GRU (LOMPO num_models)
    batch_size: int = 64  # model batch: sequences (LOMPO model_batch_size)
    sequence_length: int = 50  # steps per sequence (LOMPO model_batch_length)
    horizon: int = 5  # imagined steps per rollout (LOMPO)
    refresh_every: int = 200  # updates between writes to the buffers (LOMPO agent_itters_per_step); 1: every update
    rollout_starts: int = 0  # posterior states rolled out at a refresh; 0: all B x T of the batch (LOMPO: 3200)
    burn_in: int = 5  # ours: first steps of each sequence whose latents are not stored as real rows
    exploration_noise: float = 0.2  # std of the Gaussian noise on rollout and exploration actions (LOMPO expl_amount)
    agent_batch_size: int = 256  # transitions drawn from each buffer per update (LOMPO: 256 + 256)
    real_capacity: int = 50_000  # ours: real latent transitions kept (LOMPO: the dataset's size)
    imagined_capacity: int = 50_000  # ours: imagined transitions kept (LOMPO: the dataset's size)
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics (LOMPO)
    actor_units: int = 256  # deterministic tanh actor, 4 x 256 ELU (LOMPO)
    actor_layers: int = 4
    critic_units: int = 256  # two Q networks, 3 x 256 ELU (LOMPO)
    critic_layers: int = 3
    actor_lr: float = 3e-4  # LOMPO actor_lr
    critic_lr: float = 3e-4  # LOMPO q_lr
    eps: float = 1e-8  # ours: Adam's epsilon for actor and critic
    clip: float = 100.0  # gradient norm clip (LOMPO grad_clip)
    weight_decay: float = 0.0  # LOMPO: none
    steps_per_call: int = 4  # ours: gradient steps per jitted update call

    ALGORITHM: ClassVar[str] = "lompo"  # the name error messages use

    def __post_init__(self):
        check_config(self, self.ALGORITHM)
        # The world model it will build, checked now (preset name, override names and values).
        world_model_config(self.world_model,
                           **{**self.world_model_overrides, "ensemble": self.ensemble})


# ---------------------------------------------------------------------------------------------
# The ring buffer, as pure functions of a dict of arrays.


ROLLOUT_METRICS = ("imagined_model_reward", "imagined_reward", "disagreement_mean",
                   "disagreement_max")


def buffer_init(capacity: int, fields: dict[str, tuple]) -> dict:
    """An empty ring of `capacity` rows: `fields` maps a name to its per-row shape (float32)."""
    return {"data": {k: jnp.zeros((capacity, *shape), jnp.float32) for k, shape in fields.items()},
            "size": jnp.zeros((), jnp.int32), "next": jnp.zeros((), jnp.int32)}


def buffer_add(buffer: dict, rows: dict) -> dict:
    """Writes the N rows of `rows` (each (N, ...)) after the last written one, overwriting the
    oldest when full. N must not exceed the capacity."""
    capacity = next(iter(buffer["data"].values())).shape[0]
    n = next(iter(rows.values())).shape[0]
    index = (buffer["next"] + jnp.arange(n)) % capacity
    data = {k: v.at[index].set(rows[k].astype(v.dtype)) for k, v in buffer["data"].items()}
    return {"data": data, "size": jnp.minimum(buffer["size"] + n, capacity),
            "next": (buffer["next"] + n) % capacity}


def buffer_sample(buffer: dict, key: jax.Array, n: int) -> dict:
    """n rows drawn uniformly, with replacement, from the filled part."""
    index = jax.random.randint(key, (n,), 0, jnp.maximum(buffer["size"], 1))
    return {k: v[index] for k, v in buffer["data"].items()}


def transition_bytes(feature_size: int, action_dim: int) -> int:
    """Bytes of one stored transition: features, next features, action, reward, weight."""
    return 4 * (2 * feature_size + action_dim + 2)


# ---------------------------------------------------------------------------------------------
# LOMPO's uncertainty: the ensemble's disagreement about the sampled next latent.


def log_prob_disagreement(means: jax.Array, stds: jax.Array, sample: jax.Array) -> jax.Array:
    """u = std over the M members of log p_m(z), p_m = N(mean_m, diag std_m^2), at one sample z.

    means, stds (M, N, S); sample (N, S) -> (N,). The log-density is summed over the S latent
    dimensions; the std is the population std (LOMPO's `reduce_std`).
    """
    z = (sample[None] - means) / stds
    log_probs = jnp.sum(-0.5 * z**2 - jnp.log(stds) - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)  # (M, N)
    return jnp.std(log_probs, axis=0)


# ---------------------------------------------------------------------------------------------
# Networks.


class DeterministicActor(nn.Module):
    """pi(s) = tanh(MLP(s)): (..., F) -> (..., A) in [-1, 1] (LOMPO's ActorNetwork, ELU)."""

    units: int
    layers: int
    action_dim: int

    @nn.compact
    def __call__(self, features):
        hidden = nets.MLP((self.units,) * self.layers, activation="elu")(features)
        return jnp.tanh(nn.Dense(self.action_dim)(hidden))


def rollout_starts(config) -> int:
    """How many posterior states a refresh rolls out from (0 in the config: the whole batch)."""
    return config.rollout_starts or config.batch_size * config.sequence_length


def real_rows_per_refresh(config) -> int:
    return config.batch_size * (config.sequence_length - 1 - config.burn_in)


def check_config(config, name: str) -> None:
    """Errors a user can fix, named by field."""
    c = config
    for name_ in ("horizon", "agent_batch_size", "real_capacity", "imagined_capacity",
                  "batch_size", "steps_per_call", "refresh_every"):
        if getattr(c, name_) < 1:
            raise ConfigError(f"{name}.config.{name_} must be at least 1, got {getattr(c, name_)}.")
    if c.sequence_length < c.burn_in + 2:
        raise ConfigError(f"{name}.config.sequence_length must be at least burn_in + 2 (a "
                          f"transition needs two steps past the burn-in), got {c.sequence_length} "
                          f"with burn_in {c.burn_in}.")
    real_rows = real_rows_per_refresh(c)
    if real_rows > c.real_capacity:
        raise ConfigError(f"{name}.config.real_capacity ({c.real_capacity}) must hold one refresh's "
                          f"real transitions, batch_size x (sequence_length - 1 - burn_in) = "
                          f"{real_rows}.")
    starts = rollout_starts(c)
    if starts > c.batch_size * c.sequence_length:
        raise ConfigError(f"{name}.config.rollout_starts ({c.rollout_starts}) must be at most the "
                          f"batch's posterior states, batch_size x sequence_length = "
                          f"{c.batch_size * c.sequence_length} (0 means all of them).")
    if starts * c.horizon > c.imagined_capacity:
        raise ConfigError(f"{name}.config.imagined_capacity ({c.imagined_capacity}) must hold one "
                          f"refresh's rollouts, rollout starts x horizon = {starts * c.horizon}.")
    if not c.exploration_noise >= 0.0:
        raise ConfigError(f"{name}.config.exploration_noise must be >= 0, got {c.exploration_noise}.")


# ---------------------------------------------------------------------------------------------
# The agent.


class LatentBufferAgent(LatentAgent):
    """LOMPO and COMBO: subclasses say how u enters the reward and what regularizes the critic."""

    def __init__(self, obs_space, action_space, config, seed: int, total_updates: int):
        overrides = {**config.world_model_overrides, "ensemble": config.ensemble}
        if overrides.get("latent", "gaussian") != "gaussian":
            raise ConfigError(f"{self.name} uses Gaussian latents (its penalty is a Gaussian "
                              f"log-density); remove world_model_overrides.latent.")
        model_config = world_model_config(config.world_model, **{**overrides, "latent": "gaussian"})
        actor = DeterministicActor(config.actor_units, config.actor_layers, action_space.shape[0])
        critic = TwinQ((config.critic_units,) * config.critic_layers, activation="elu")
        params = self._build(obs_space, action_space, config, model_config, critic,
                             critic_inputs=2, seed=seed, actor=actor)
        features = model_config.stoch + model_config.deter
        fields = {"features": (features,), "action": (self.action_dim,), "reward": (),
                  "next_features": (features,), "weight": ()}
        self.bytes_per_transition = transition_bytes(features, self.action_dim)
        self._train = self._initial_train(
            params=params, target_critic=jax.tree.map(jnp.copy, params["critic"]),
            opt=self._init_opt(params),
            real=buffer_init(config.real_capacity, fields),
            imagined=buffer_init(config.imagined_capacity, fields),
            updates=jnp.zeros((), jnp.int32),
            # The last refresh's rollout metrics, reported until the next one.
            rollout_metrics={k: jnp.zeros((), jnp.float32) for k in ROLLOUT_METRICS})

    # -- what LOMPO and COMBO say differently ------------------------------------------------

    def _imagined_reward(self, reward, disagreement):
        """The reward stored for an imagined transition, from the model's reward and u."""
        raise NotImplementedError

    def _critic_regularizer(self, critic_params, actor_params, states, q_real, key):
        """A term added to the critic's loss; returns (term, metrics)."""
        raise NotImplementedError

    # -- the buffers' contents ---------------------------------------------------------------

    def _real_transitions(self, posts, batch) -> dict:
        """(s_t, a_t+1, r_t+1, s_t+1) of every adjacent pair of the batch's posterior states
        from step `burn_in` on."""
        b, t = batch["action"].shape[:2]
        s = self.config.burn_in
        features = WorldModel.features(flatten_time(posts)).reshape(b, t, -1)
        rows = {"features": features[:, s:-1], "action": batch["action"][:, s + 1:],
                "reward": batch["reward"][:, s + 1:], "next_features": features[:, s + 1:],
                "weight": 1.0 - batch["is_first"][:, s + 1:].astype(jnp.float32)}
        return jax.tree.map(lambda x: x.reshape((b * (t - 1 - s),) + x.shape[2:]), rows)

    def _rollouts(self, model_params, actor_params, start: dict, key) -> tuple[dict, dict]:
        """H imagined steps from `start` (N states): N H transitions and their metrics."""
        c = self.config
        ensemble = self.model.config.ensemble

        def step(state, key_t):
            noise_key, member_key, sample_key = jax.random.split(key_t, 3)
            features = WorldModel.features(state)
            action = self.actor.apply(actor_params, features)
            action = jnp.clip(action + c.exploration_noise * jax.random.normal(noise_key, action.shape),
                              -1.0, 1.0)
            deter = self.model.apply(model_params, state, action, method=WorldModel.deterministic_step)
            members = self.model.apply(model_params, deter, method=WorldModel.ensemble_prior)
            member = jax.random.randint(member_key, (), 0, ensemble)  # one per step, as LOMPO
            mean, std = members["mean"][member], members["std"][member]
            nxt = {"deter": deter, "stoch": mean + std * jax.random.normal(sample_key, mean.shape),
                   "mean": mean, "std": std}
            next_features = WorldModel.features(nxt)
            reward = self.model.apply(model_params, next_features, method=WorldModel.reward)
            disagreement = log_prob_disagreement(members["mean"], members["std"], nxt["stoch"])
            return nxt, {"features": features, "action": action, "next_features": next_features,
                         "model_reward": reward, "disagreement": disagreement}

        _, steps = jax.lax.scan(step, start, jax.random.split(key, c.horizon))  # (H, N, ...)
        steps = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), steps)
        rows = {"features": steps["features"], "action": steps["action"],
                "next_features": steps["next_features"],
                "reward": self._imagined_reward(steps["model_reward"], steps["disagreement"]),
                "weight": jnp.ones_like(steps["model_reward"])}
        metrics = {"imagined_model_reward": steps["model_reward"].mean(),
                   "imagined_reward": rows["reward"].mean(),
                   "disagreement_mean": steps["disagreement"].mean(),
                   "disagreement_max": steps["disagreement"].max()}
        assert set(metrics) == set(ROLLOUT_METRICS)
        return rows, metrics

    # -- losses ------------------------------------------------------------------------------

    def _critic_loss(self, critic_params, actor_params, target_critic, batch, n_real, key):
        c = self.config
        next_action = self.actor.apply(actor_params, batch["next_features"])
        next_q = self.critic.apply(target_critic, batch["next_features"], next_action).min(0)
        target = td_target(batch["reward"], 0.0, next_q, c.discount)
        q = self.critic.apply(critic_params, batch["features"], batch["action"])  # (2, 2B)
        bellman = twin_critic_loss(q, target, batch["weight"])
        regularizer, metrics = self._critic_regularizer(critic_params, actor_params,
                                                        batch["features"], q[:, :n_real], key)
        loss = bellman + regularizer
        return loss, {"critic_loss": loss, "bellman_loss": bellman, "q_real": q[:, :n_real].mean(),
                      "q_imagined": q[:, n_real:].mean(), "td_target": target.mean(), **metrics}

    def _actor_loss(self, actor_params, critic_params, features):
        q = self.critic.apply(critic_params, features, self.actor.apply(actor_params, features))
        loss = -q.min(0).mean()
        return loss, {"actor_loss": loss}

    # -- update ------------------------------------------------------------------------------

    def _one_update(self, train, inputs):
        batch, key = inputs
        c = self.config
        model_key, start_key, rollout_key, real_key, imagined_key, critic_key = jax.random.split(key, 6)
        params, opt = train["params"], dict(train["opt"])
        sg = jax.lax.stop_gradient

        model_params, opt["model"], posts, model_metrics = self._model_step(params, opt, batch, model_key)
        posts = sg(posts)

        def refresh(_):
            """New real and imagined rows from the model as it is now."""
            real = buffer_add(train["real"], self._real_transitions(posts, batch))
            starts = flatten_time(posts)
            if c.rollout_starts:
                pick = jax.random.randint(start_key, (c.rollout_starts,), 0, starts["deter"].shape[0])
                starts = jax.tree.map(lambda x: x[pick], starts)
            rows, metrics = self._rollouts(sg(model_params), params["actor"], starts, rollout_key)
            return real, buffer_add(train["imagined"], rows), metrics

        due = train["updates"] % c.refresh_every == 0
        real_buffer, imagined_buffer, rollout_metrics = jax.lax.cond(
            due, refresh, lambda _: (train["real"], train["imagined"], train["rollout_metrics"]), None)

        n = c.agent_batch_size
        agent_batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                                   buffer_sample(real_buffer, real_key, n),
                                   buffer_sample(imagined_buffer, imagined_key, n))
        grads, critic_metrics = jax.grad(self._critic_loss, has_aux=True)(
            params["critic"], params["actor"], train["target_critic"], agent_batch, n, critic_key)
        critic_params, opt["critic"] = self._apply_grads("critic", params, opt, grads)
        grads, actor_metrics = jax.grad(self._actor_loss, has_aux=True)(
            params["actor"], critic_params, agent_batch["features"])
        actor_params, opt["actor"] = self._apply_grads("actor", params, opt, grads)

        new_train = {"params": {"model": model_params, "actor": actor_params, "critic": critic_params},
                     "target_critic": polyak(critic_params, train["target_critic"], c.tau),
                     "opt": opt, "real": real_buffer, "imagined": imagined_buffer,
                     "updates": train["updates"] + 1, "rollout_metrics": rollout_metrics}
        sizes = {"real_buffer_size": real_buffer["size"].astype(jnp.float32),
                 "imagined_buffer_size": imagined_buffer["size"].astype(jnp.float32)}
        return new_train, {**model_metrics, **rollout_metrics, **critic_metrics, **actor_metrics, **sizes}

    # -- acting ------------------------------------------------------------------------------

    def _policy_action(self, actor_params, features, key, explore):
        """The deterministic actor's action, plus N(0, sigma^2) noise (clipped) when exploring."""
        action = self.actor.apply(actor_params, features)
        if explore:
            noise = self.config.exploration_noise * jax.random.normal(key, action.shape)
            action = jnp.clip(action + noise, -1.0, 1.0)
        return action
