"""Recurrent state-space world model (DreamerV2's RSSM) with an ensemble of prior heads.

    encoder      e_t = enc(o_t)                                      conv 4x (k4 s2) ELU + MLP
    deterministic h_t = GRU(h_{t-1}, Dense([z_{t-1}, a_{t-1}]))      layer-norm GRU
    prior (m)    p_m(z_t | h_t)                                      ensemble head m of M
    posterior    q(z_t | h_t, e_t)
    decoder      p(o_t | h_t, z_t)   reward  p(r_t | h_t, z_t)       unit-variance Gaussians

State vectors are standardized before the encoder and as the decoder's target (ours,
`standardize_states`): each entry to zero mean and unit variance under running moments of
the batches trained on (`update_moments`, `standardize`). With the raw vector in the
unit-variance likelihood, an entry that varies by 0.03 (a MetaWorld object's position between
episodes) is worth ~1e-3 nats to the model and it leaves it out (docs/decisions.md).

Latents are either 32 categoricals x 32 classes sampled with straight-through gradients
(`latent="discrete"`), or a diagonal Gaussian (`latent="gaussian"`, LOMPO's sizes). All M prior
heads share the GRU. In training one member is drawn uniformly at every time step and only its
parameters are applied, so the ensemble costs what one head costs; `ensemble_prior` applies
all heads at once (for MOTO's disagreement penalty).

The module holds the networks; `observe` and `imagine` are the `lax.scan` loops over time,
written as functions of the parameters so that agents can differentiate through them.
States are dicts of arrays with a leading batch axis:
`deter` (B, D); discrete: `stoch` (B, S, C) one-hot samples, `logits` (B, S, C);
Gaussian: `stoch` (B, S), `mean` (B, S), `std` (B, S).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from algorithms import conv, nets


@dataclass(frozen=True)
class WorldModelConfig:
    PRESETS: ClassVar[dict] = {
        "paper": {},
        # DreamerV2's dmc_vision sizes.
        "small": {"deter": 200, "hidden": 200, "mlp_units": 200},
        "debug": {"deter": 32, "hidden": 32, "stoch": 4, "classes": 4, "cnn_depth": 4,
                  "mlp_units": 32, "mlp_layers": 1},
        # The LOMPO repository's model (lompo.py define_config, models.RSSME): Gaussian latents
        # 64 + deter 256, encoder depth 32, reward MLP 2 x 256, model lr 6e-4, no weight decay,
        # and the plain KL without free nats (balance 0.5 with scale 2 has exactly the plain
        # KL's gradients).
        "lompo": {"latent": "gaussian", "stoch": 64, "deter": 256, "hidden": 256, "cnn_depth": 32,
                  "mlp_units": 256, "mlp_layers": 2, "lr": 6e-4, "weight_decay": 0.0,
                  "kl_balance": 0.5, "kl_scale": 2.0, "free_nats": 0.0},
        # Ours, for state vectors on 2 CPU cores (docs/decisions.md): DreamerV2's model, every
        # width 64, 8 x 8 categorical latents, MLPs 2 deep. `small` costs 2.1 s per MOTO
        # update here, this about 50 ms.
        "cpu": {"deter": 64, "hidden": 64, "stoch": 8, "classes": 8, "mlp_units": 64,
                "mlp_layers": 2},
        # The same for LOMPO's Gaussian model: its settings, widths 64, 16 Gaussian latents.
        "lompo-cpu": {"latent": "gaussian", "stoch": 16, "deter": 64, "hidden": 64, "mlp_units": 64,
                      "mlp_layers": 2, "lr": 6e-4, "weight_decay": 0.0, "kl_balance": 0.5,
                      "kl_scale": 2.0, "free_nats": 0.0},
    }

    latent: str = "discrete"  # "discrete" (DreamerV2) or "gaussian" (LOMPO)
    stoch: int = 32  # categorical variables (discrete) or Gaussian dimensions
    classes: int = 32  # classes per categorical (discrete only)
    deter: int = 1024  # GRU state size
    hidden: int = 1024  # width of the GRU input and of each prior/posterior head
    ensemble: int = 1  # prior heads sharing the GRU (M; MOTO uses 7)
    cnn_depth: int = 48  # encoder channels depth*(1,2,4,8); decoder the reverse
    mlp_units: int = 400  # ours: encoder, decoder and reward MLP width
    mlp_layers: int = 4  # encoder, decoder and reward MLP depth
    min_std: float = 0.1  # Gaussian latents: lower bound of the std (LOMPO)
    kl_balance: float = 0.8  # weight of the prior's side of the KL
    free_nats: float = 1.0  # the KL loss is max(KL, free_nats), after averaging
    kl_scale: float = 1.0
    lr: float = 3e-4
    eps: float = 1e-5
    clip: float = 100.0  # gradient norm clip
    weight_decay: float = 1e-6  # (1 - wd) per step (DreamerV2 model_opt)
    standardize_states: bool = True  # ours: state vectors in and out in standardized units


# ---------------------------------------------------------------------------------------------
# Pure math, each tested against hand-computed values.


def straight_through_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One-hot sample of categorical `logits` (..., C) whose gradient is that of the probabilities.

    sample + p - stop_gradient(p): the forward value is the one-hot sample, the backward pass
    sees d p / d logits (Bengio et al. 2013; DreamerV2).
    """
    probs = jax.nn.softmax(logits, -1)
    index = jax.random.categorical(key, logits, -1)
    one_hot = jax.nn.one_hot(index, logits.shape[-1], dtype=probs.dtype)
    return one_hot + probs - jax.lax.stop_gradient(probs)


def categorical_kl(lhs_logits: jax.Array, rhs_logits: jax.Array) -> jax.Array:
    """KL(lhs || rhs) of independent categoricals, summed over the variables: (..., S, C) -> (...)."""
    lhs_log = jax.nn.log_softmax(lhs_logits, -1)
    rhs_log = jax.nn.log_softmax(rhs_logits, -1)
    return jnp.sum(jnp.exp(lhs_log) * (lhs_log - rhs_log), axis=(-2, -1))


def gaussian_kl(lhs_mean, lhs_std, rhs_mean, rhs_std) -> jax.Array:
    """KL(N(lhs) || N(rhs)) of diagonal Gaussians, summed over the last axis: (..., S) -> (...)."""
    var_ratio = (lhs_std / rhs_std) ** 2
    return 0.5 * jnp.sum(var_ratio + ((lhs_mean - rhs_mean) / rhs_std) ** 2 - 1.0
                         - jnp.log(var_ratio), axis=-1)


def balanced_kl_loss(kl_fn: Callable, post: tuple, prior: tuple, balance: float,
                     free_nats: float) -> tuple[jax.Array, jax.Array]:
    """DreamerV2's KL balancing with free nats applied to the batch average.

        loss = balance * max(mean KL(sg(post) || prior), free)
             + (1 - balance) * max(mean KL(post || sg(prior)), free)

    `post` and `prior` are the distribution parameters (logits, or (mean, std)) with any
    leading axes; returns (loss, mean KL(post || prior)) as scalars.
    """
    sg = jax.lax.stop_gradient
    kl_train_prior = kl_fn(*jax.tree.map(sg, post), *prior).mean()
    kl_train_post = kl_fn(*post, *jax.tree.map(sg, prior)).mean()
    loss = (balance * jnp.maximum(kl_train_prior, free_nats)
            + (1.0 - balance) * jnp.maximum(kl_train_post, free_nats))
    return loss, kl_fn(*post, *prior).mean()


# Running moments of state vectors, for standardizing them (ours; docs/decisions.md).

STD_FLOOR = 1e-3  # entries that (nearly) never vary are divided by this, not by ~0
STANDARDIZED_CLIP = 10.0  # standardized entries beyond +-this are clipped


def initial_moments(size: int) -> dict:
    """No states seen yet: count 0, mean 0, variance 1."""
    return {"count": jnp.zeros(()), "mean": jnp.zeros((size,)), "var": jnp.ones((size,))}


def update_moments(moments: dict, states: jax.Array) -> dict:
    """The moments of everything seen so far and `states` (..., D), merged exactly (Chan et
    al.'s pairwise update): the mean and population variance of the union of the samples."""
    x = states.reshape(-1, states.shape[-1]).astype(jnp.float32)
    n_new = x.shape[0]
    mean_new, var_new = x.mean(0), x.var(0)
    n_old = moments["count"]
    total = n_old + n_new
    delta = mean_new - moments["mean"]
    mean = moments["mean"] + delta * (n_new / total)
    # With nothing seen yet, the old variance (1) has weight n_old = 0.
    var = (n_old * moments["var"] + n_new * var_new + delta ** 2 * (n_old * n_new / total)) / total
    return {"count": total, "mean": mean, "var": var}


def standardize(moments: dict, states: jax.Array) -> jax.Array:
    """(x - mean) / max(std, STD_FLOOR), clipped to +-STANDARDIZED_CLIP."""
    std = jnp.maximum(jnp.sqrt(moments["var"]), STD_FLOOR)
    z = (states.astype(jnp.float32) - moments["mean"]) / std
    return jnp.clip(z, -STANDARDIZED_CLIP, STANDARDIZED_CLIP)


# ---------------------------------------------------------------------------------------------
# Networks.


class LayerNormGRU(nn.Module):
    """DreamerV2's GRU cell: one Dense over [input, state], layer norm, update gate biased to -1."""

    size: int

    @nn.compact
    def __call__(self, inputs, state):
        parts = nn.LayerNorm()(nn.Dense(3 * self.size, use_bias=False)(
            jnp.concatenate([inputs, state], -1)))
        reset, candidate, update = jnp.split(parts, 3, -1)
        candidate = jnp.tanh(jax.nn.sigmoid(reset) * candidate)
        update = jax.nn.sigmoid(update - 1.0)
        return update * candidate + (1.0 - update) * state


class EnsembleDense(nn.Module):
    """M dense layers with stacked parameters (M, in, out).

    `member` given: apply that member only, x (..., in) -> (..., out): the cost of one layer.
    `member=None`: apply every member; x is either shared (..., in) or already per member
    (M, ..., in) when `per_member_input`; the result is (M, ..., out).
    """

    members: int
    features: int

    @nn.compact
    def __call__(self, x, member=None, per_member_input: bool = False):
        kernel = self.param("kernel", nn.initializers.lecun_normal(batch_axis=(0,)),
                            (self.members, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.members, self.features))
        if member is not None:
            return x @ kernel[member] + bias[member]
        pattern = "m...i,mio->m...o" if per_member_input else "...i,mio->m...o"
        out = jnp.einsum(pattern, x, kernel)
        return out + bias.reshape((self.members,) + (1,) * (out.ndim - 2) + (self.features,))


class ConvEncoder(nn.Module):
    depth: int
    units: int
    layers: int

    @nn.compact
    def __call__(self, obs_uint8):  # (..., 64, 64, 3) uint8 -> (..., units)
        lead = obs_uint8.shape[:-3]
        x = obs_uint8.reshape((-1,) + obs_uint8.shape[-3:])
        # The first layer sees x / 255 - 0.5, computed without a float copy of the images.
        x = nn.elu(conv.Conv(self.depth, 4, stride=2, input_scale=1 / 255, input_offset=-0.5)(x))
        for mult in (2, 4, 8):
            x = nn.elu(conv.Conv(self.depth * mult, 4, stride=2)(x))
        x = x.reshape(x.shape[0], -1)
        x = nets.MLP((self.units,) * self.layers, activation="elu")(x)
        return x.reshape(lead + (x.shape[-1],))


class ConvDecoder(nn.Module):
    """Features -> mean image in [-0.5, 0.5] space, (..., 64, 64, 3)."""

    depth: int
    units: int
    layers: int

    @nn.compact
    def __call__(self, features):
        lead = features.shape[:-1]
        x = nets.MLP((self.units,) * self.layers, activation="elu")(features.reshape(-1, features.shape[-1]))
        x = nn.Dense(32 * self.depth)(x).reshape(-1, 1, 1, 32 * self.depth)
        for channels, kernel in ((4 * self.depth, 5), (2 * self.depth, 5), (self.depth, 6)):
            x = nn.elu(conv.ConvTranspose(channels, kernel, stride=2)(x))
        x = conv.ConvTranspose(3, 6, stride=2)(x)  # 1->5->13->30->64
        return x.reshape(lead + x.shape[1:])


class VectorDecoder(nn.Module):
    """Features -> mean state vector, for `gym/` tasks with state observations."""

    size: int
    units: int
    layers: int

    @nn.compact
    def __call__(self, features):
        return nn.Dense(self.size)(nets.MLP((self.units,) * self.layers, activation="elu")(features))


class WorldModel(nn.Module):
    config: WorldModelConfig
    action_dim: int
    obs_shape: tuple = (64, 64, 3)  # 64x64x3 uint8 images, or (D,) float state vectors

    @property
    def pixels(self) -> bool:
        return len(self.obs_shape) == 3

    def setup(self):
        c = self.config
        if self.pixels:
            self.encoder = ConvEncoder(c.cnn_depth, c.mlp_units, c.mlp_layers)
            self.decoder = ConvDecoder(c.cnn_depth, c.mlp_units, c.mlp_layers)
        else:
            self.encoder = nets.MLP((c.mlp_units,) * c.mlp_layers, activation="elu")
            self.decoder = VectorDecoder(self.obs_shape[0], c.mlp_units, c.mlp_layers)
        self.reward_head = nets.MLP((c.mlp_units,) * c.mlp_layers, activation="elu")
        self.reward_out = nn.Dense(1)
        self.img_in = nn.Dense(c.hidden)
        self.gru = LayerNormGRU(c.deter)
        self.prior_hidden = EnsembleDense(c.ensemble, c.hidden)
        self.prior_out = EnsembleDense(c.ensemble, self._stats_size())
        self.post_hidden = nn.Dense(c.hidden)
        self.post_out = nn.Dense(self._stats_size())

    def _stats_size(self) -> int:
        c = self.config
        return c.stoch * c.classes if c.latent == "discrete" else 2 * c.stoch

    # -- latent distributions ----------------------------------------------------------------

    def _stats(self, raw):
        c = self.config
        if c.latent == "discrete":
            return {"logits": raw.reshape(raw.shape[:-1] + (c.stoch, c.classes))}
        mean, std = jnp.split(raw, 2, -1)
        return {"mean": mean, "std": jax.nn.softplus(std) + c.min_std}

    def _sample(self, key, stats):
        if self.config.latent == "discrete":
            return straight_through_sample(key, stats["logits"])
        return stats["mean"] + stats["std"] * jax.random.normal(key, stats["mean"].shape)

    def _mode(self, stats):
        """The most likely latent: one-hot of each categorical's argmax, or the Gaussian's mean."""
        if self.config.latent == "discrete":
            logits = stats["logits"]
            return jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=logits.dtype)
        return stats["mean"]

    def initial(self, batch: int) -> dict:
        c = self.config
        state = {"deter": jnp.zeros((batch, c.deter))}
        if c.latent == "discrete":
            state.update(stoch=jnp.zeros((batch, c.stoch, c.classes)),
                         logits=jnp.zeros((batch, c.stoch, c.classes)))
        else:
            state.update(stoch=jnp.zeros((batch, c.stoch)), mean=jnp.zeros((batch, c.stoch)),
                         std=jnp.ones((batch, c.stoch)))
        return state

    @staticmethod
    def features(state: dict) -> jax.Array:
        """[flattened stoch, deter]: the input of the decoder, reward head, actor and critic."""
        stoch = state["stoch"]
        return jnp.concatenate([stoch.reshape(stoch.shape[:1] + (-1,)) if stoch.ndim == 3 else stoch,
                                state["deter"]], -1)

    # -- one step ----------------------------------------------------------------------------

    def deterministic_step(self, state: dict, action: jax.Array) -> jax.Array:
        stoch = state["stoch"].reshape(state["stoch"].shape[0], -1)
        x = nn.elu(self.img_in(jnp.concatenate([stoch, action], -1)))
        return self.gru(x, state["deter"])

    def prior(self, deter: jax.Array, member) -> dict:
        """Prior statistics of ensemble member `member` (an int or traced index)."""
        return self._stats(self.prior_out(nn.elu(self.prior_hidden(deter, member)), member))

    def ensemble_prior(self, deter: jax.Array) -> dict:
        """All M members' prior statistics at once, each with a leading member axis (M, B, ...)."""
        hidden = nn.elu(self.prior_hidden(deter))  # (M, B, hidden)
        return self._stats(self.prior_out(hidden, per_member_input=True))

    def img_step(self, state: dict, action: jax.Array, key: jax.Array, member) -> dict:
        deter = self.deterministic_step(state, action)
        stats = self.prior(deter, member)
        return {"deter": deter, "stoch": self._sample(key, stats), **stats}

    def obs_step(self, state: dict, action: jax.Array, embed: jax.Array, is_first: jax.Array,
                 key: jax.Array, member, sample: bool = True) -> tuple[dict, dict]:
        """(posterior, prior) at one step; the state and action are zeroed at episode starts.
        With `sample=False` the posterior's stochastic state is its mode, not a sample."""
        keep = (1.0 - is_first.astype(jnp.float32))
        state = jax.tree.map(lambda x: x * keep.reshape((-1,) + (1,) * (x.ndim - 1)), state)
        action = action * keep[:, None]
        prior_key, post_key = jax.random.split(key)
        prior = self.img_step(state, action, prior_key, member)
        x = nn.elu(self.post_hidden(jnp.concatenate([prior["deter"], embed], -1)))
        stats = self._stats(self.post_out(x))
        stoch = self._sample(post_key, stats) if sample else self._mode(stats)
        post = {"deter": prior["deter"], "stoch": stoch, **stats}
        return post, prior

    # -- heads -------------------------------------------------------------------------------

    def encode(self, obs):
        return self.encoder(obs if self.pixels else obs.astype(jnp.float32))

    def observation_target(self, obs):
        """What the decoder predicts: images scaled to x/255 - 0.5, state vectors as they come
        (standardized by the agent when `standardize_states`)."""
        if self.pixels:
            return obs.astype(jnp.float32) / 255.0 - 0.5
        return obs.astype(jnp.float32)

    def decode(self, features):
        return self.decoder(features)

    def reward(self, features):
        return self.reward_out(self.reward_head(features))[..., 0]

    def init_all(self, obs, action, key):
        """Touches every submodule once, for `init`: obs (B, *obs_shape), action (B, A)."""
        state = self.initial(obs.shape[0])
        post, _ = self.obs_step(state, action, self.encode(obs), jnp.ones(obs.shape[0]), key, 0)
        features = self.features(post)
        self.ensemble_prior(post["deter"])
        return self.decode(features), self.reward(features)


# ---------------------------------------------------------------------------------------------
# Loops over time (lax.scan), as functions of the parameters.


def _time_major(x):
    return jnp.swapaxes(x, 0, 1)


def observe(model: WorldModel, params, embed, action, is_first, key) -> tuple[dict, dict]:
    """Posterior and prior states over real sequences.

    embed (B, T, E), action (B, T, A) (the action that led to each step), is_first (B, T).
    A prior member is drawn uniformly per time step. Returns (posts, priors), each a state
    dict with arrays (B, T, ...).
    """
    batch, length = action.shape[:2]
    keys = jax.random.split(key, length + 1)
    members = jax.random.randint(keys[0], (length,), 0, model.config.ensemble)

    def step(state, inputs):
        embed_t, action_t, first_t, key_t, member_t = inputs
        post, prior = model.apply(params, state, action_t, embed_t, first_t, key_t, member_t,
                                  method=WorldModel.obs_step)
        return post, (post, prior)

    start = model.apply(params, batch, method=WorldModel.initial)
    _, (posts, priors) = jax.lax.scan(
        step, start, (_time_major(embed), _time_major(action), _time_major(is_first), keys[1:], members))
    return jax.tree.map(_time_major, posts), jax.tree.map(_time_major, priors)


def imagine(model: WorldModel, params, policy: Callable, start: dict, horizon: int, key,
            member=None) -> tuple[dict, jax.Array]:
    """Roll the prior `horizon` steps from `start` (a state dict, (N, ...)) under `policy`.

    `policy(features, key) -> (action (N, A), log_prob (N,))`. The next latent comes from one
    ensemble member per step, drawn uniformly unless `member` fixes it. Returns
    (states, actions, log_probs): states with arrays (N, H+1, ...) including the start,
    actions (N, H, A) with action h taken in state h, and their log-probabilities (N, H).
    """
    keys = jax.random.split(key, horizon + 1)
    if member is None:
        members = jax.random.randint(keys[0], (horizon,), 0, model.config.ensemble)
    else:
        members = jnp.full((horizon,), member)

    def step(state, inputs):
        key_t, member_t = inputs
        policy_key, step_key = jax.random.split(key_t)
        # The policy sees the state with its gradient stopped (DreamerV2: policy(stop_gradient(
        # feat))): the actor's loss reaches earlier actions through the dynamics, never through
        # the input of a later policy call.
        action, log_prob = policy(jax.lax.stop_gradient(WorldModel.features(state)), policy_key)
        nxt = model.apply(params, state, action, step_key, member_t, method=WorldModel.img_step)
        return nxt, (nxt, action, log_prob)

    _, (states, actions, log_probs) = jax.lax.scan(step, start, (keys[1:], members))
    states = jax.tree.map(lambda s, seq: jnp.concatenate([s[:, None], _time_major(seq)], 1),
                          start, states)
    return states, _time_major(actions), _time_major(log_probs)


def world_model_loss(model: WorldModel, params, batch: dict, key) -> tuple[jax.Array, tuple]:
    """-log p(image) - log p(reward) + kl_scale * balanced KL, averaged over (B, T).

    batch: `obs` (B, T, *obs_shape), `action` (B, T, A), `reward` (B, T), `is_first` (B, T).
    Unit-variance Gaussian log-likelihoods without their constants: the observation term is
    half the squared error summed over pixels (in the x/255 - 0.5 scale) or vector entries.
    Returns the loss and (posts, metrics).
    """
    c = model.config
    embed = model.apply(params, batch["obs"], method=WorldModel.encode)
    posts, priors = observe(model, params, embed, batch["action"], batch["is_first"], key)
    features = WorldModel.features(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), posts))
    features = features.reshape(batch["action"].shape[:2] + (-1,))
    target = model.apply(params, batch["obs"], method=WorldModel.observation_target)
    prediction = model.apply(params, features, method=WorldModel.decode)
    obs_axes = tuple(range(-len(model.obs_shape), 0))
    image_nll = 0.5 * jnp.sum((prediction - target) ** 2, axis=obs_axes).mean()
    reward_nll = 0.5 * jnp.mean((model.apply(params, features, method=WorldModel.reward)
                                 - batch["reward"]) ** 2)
    if c.latent == "discrete":
        kl_loss, kl = balanced_kl_loss(categorical_kl, (posts["logits"],), (priors["logits"],),
                                       c.kl_balance, c.free_nats)
    else:
        kl_loss, kl = balanced_kl_loss(gaussian_kl, (posts["mean"], posts["std"]),
                                       (priors["mean"], priors["std"]), c.kl_balance, c.free_nats)
    loss = image_nll + reward_nll + c.kl_scale * kl_loss
    metrics = {"model_loss": loss, "image_nll": image_nll, "reward_nll": reward_nll, "kl": kl,
               "image_mse": jnp.mean((prediction - target) ** 2)}
    return loss, (posts, metrics)
