"""Details where our agents follow DreamerV2's and jaxrl2's code (issue 12). Each test fails
with the behaviour we had before."""

import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithms import nets
from algorithms.base import get, make_config
from algorithms.latent import Actor, clipped_adam
from algorithms.moto import ensemble_disagreement, member_log_probs
from algorithms.world_model import WorldModel, WorldModelConfig, imagine

RNG = np.random.default_rng(0)


def train(loss, params, steps, lr=1e-2):
    optimizer = optax.adam(lr)
    opt = optimizer.init(params)

    @jax.jit
    def step(params, opt, key):
        grads = jax.grad(loss)(params, key)
        updates, opt = optimizer.update(grads, opt)
        return optax.apply_updates(params, updates), opt

    for i in range(steps):
        params, opt = step(params, opt, jax.random.PRNGKey(i))
    return params


def after_saturated_bc(apply, params, features, demo_actions, clip):
    """Behaviour cloning on demonstrations saturated at +1 on dimension 0 (as 52% of door-open's
    demo action components are), then: the smallest std on that dimension, the spread of its
    sampled actions (exploration), and the norm of the gradient of E[a_0] with respect to the
    parameters (how strongly a critic can still move it)."""
    def bc(params, key):
        mean, log_std = apply(params, features)
        return -nets.tanh_gaussian_log_prob(mean, log_std, jnp.clip(demo_actions, -clip, clip)).mean()

    def value(params, key):  # reparameterized, as the actor's value term
        mean, log_std = apply(params, features)
        return nets.tanh_gaussian_sample(key, mean, log_std)[:, 0].mean()

    params = train(bc, params, 1500)
    mean, log_std = apply(params, features)
    samples = nets.tanh_gaussian_sample(jax.random.PRNGKey(9), jnp.repeat(mean[:, None], 100, 1),
                                        jnp.repeat(log_std[:, None], 100, 1))[..., 0]
    grads = jax.grad(value)(params, jax.random.PRNGKey(1))
    grad_norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
    return float(jnp.exp(log_std[:, 0]).min()), float(samples.std(1).mean()), float(grad_norm)


def test_the_latent_actor_keeps_exploring_and_learning_on_saturated_demonstrations():
    features = jnp.asarray(RNG.normal(size=(64, 8)), jnp.float32)
    demos = jnp.stack([jnp.ones(64), jnp.asarray(RNG.uniform(-0.5, 0.5, 64), jnp.float32)], -1)
    actor = Actor(32, 1, 2, min_std=0.1)
    std, spread, grad_norm = after_saturated_bc(actor.apply, actor.init(jax.random.PRNGKey(0), features),
                                                features, demos, 0.99)
    # Measured: std 0.100, spread 2.0e-3, gradient norm 0.058.
    assert std >= 0.1 - 1e-6 and spread > 1e-3 and grad_norm > 1e-2

    class FormerActor(nn.Module):  # log-std clipped at -10, BC targets at 1 - 1e-6
        @nn.compact
        def __call__(self, x):
            return nets.TanhGaussianHead(2)(nets.MLP((32,), activation="elu")(x))

    former = FormerActor()
    std, spread, grad_norm = after_saturated_bc(former.apply, former.init(jax.random.PRNGKey(0), features),
                                                features, demos, 1 - 1e-6)
    # Measured: pre-tanh mean 7.2, std 0.028, spread 1.7e-7, gradient norm 1.1e-5.
    assert spread < 1e-5 and grad_norm < 1e-3


def test_imagination_stops_the_gradient_at_the_policy_input():
    """d a_1 / d theta comes from pi_theta at step 1 only, not through s_1 <- a_0 <- theta."""
    config = make_config(type("H", (), {"name": "world_model", "Config": WorldModelConfig}), "debug", {})
    model = WorldModel(config, 2, (5,))
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((3, 5)), jnp.zeros((3, 2)),
                        jax.random.PRNGKey(1), method=WorldModel.init_all)
    start = model.apply(params, 3, method=WorldModel.initial)
    start = jax.tree.map(lambda x: x + jnp.asarray(RNG.normal(size=x.shape), jnp.float32), start)
    actor = Actor(16, 1, 2)
    actor_params = actor.init(jax.random.PRNGKey(2), WorldModel.features(start))

    def policy_of(theta):
        def policy(features, key):
            mean, log_std = actor.apply(theta, features)
            return nets.tanh_gaussian_sample_and_log_prob(key, mean, log_std)
        return policy

    key = jax.random.PRNGKey(3)
    states, actions, _ = imagine(model, params, policy_of(actor_params), start, 2, key)
    through_imagine = jax.grad(lambda theta: imagine(model, params, policy_of(theta), start, 2, key)[1][:, 1].sum())(actor_params)
    # The same sample at step 1 with the state held fixed: imagine's key for step 1's policy.
    step_key = jax.random.split(jax.random.split(key, 3)[2])[0]
    state_1 = jax.tree.map(lambda x: x[:, 1], states)
    direct = jax.grad(lambda theta: policy_of(theta)(WorldModel.features(state_1), step_key)[0].sum())(actor_params)
    for got, want in zip(jax.tree.leaves(through_imagine), jax.tree.leaves(direct)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_disagreement_ignores_logit_offsets_that_softmax_ignores():
    base = RNG.normal(size=(1, 2, 4, 5))
    offsets = RNG.normal(size=(3, 2, 4, 1)) * 2.0  # one per member and categorical
    logits = jnp.asarray(base + offsets)          # three members, the same distributions
    assert float(ensemble_disagreement(logits).max()) > 0.5
    np.testing.assert_allclose(ensemble_disagreement(member_log_probs(logits)), 0.0, atol=1e-6)


def test_moto_penalizes_normalized_disagreement_and_logs_both():
    from tests.test_algorithms_contract import PIXELS, fake_batch

    cls = get("moto")
    agent = cls(PIXELS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), make_config(cls, "debug"), 0, 10)
    metrics = agent.update(fake_batch(agent, PIXELS, 2, agent.batch_spec.steps_per_call))
    assert metrics["penalty_mean"] == pytest.approx(metrics["penalty_log_probs"], rel=1e-5)
    assert metrics["penalty_logits"] != pytest.approx(metrics["penalty_log_probs"])
    raw = cls(PIXELS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
              make_config(cls, "debug", {"disagreement_on": "logits"}), 0, 10)
    metrics = raw.update(fake_batch(raw, PIXELS, 2, raw.batch_spec.steps_per_call))
    assert metrics["penalty_mean"] == pytest.approx(metrics["penalty_logits"], rel=1e-5)


@pytest.mark.parametrize("name", ["sac", "cql"])
def test_sac_and_cql_actors_use_the_mean_of_the_twin_critics(name):
    cls = get(name)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    agent = cls(obs_space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), make_config(cls, "debug"), 0, 10)
    params = agent._train["params"]
    # Make the twins disagree: shift the second critic's output bias.
    critic = jax.tree_util.tree_map_with_path(
        lambda path, p: p.at[1].add(3.0) if "bias" in jax.tree_util.keystr(path) and p.ndim == 2
        and p.shape[-1] == 1 else p, params["critic"])
    obs = jnp.asarray(RNG.normal(size=(8, 9)), jnp.float32)
    embed = agent.encoder.apply(params["encoder"], obs)
    policy_params = {k: params[k] for k in agent.policy_keys}
    key = jax.random.PRNGKey(0)
    _, metrics = agent._actor_loss(policy_params, critic, obs, embed, key)
    action, log_prob = agent._policy_sample(params["actor"], agent._actor_embed(policy_params, obs, embed), key)
    q = agent.critic.apply(critic, embed, action)
    assert float(jnp.abs(q[0] - q[1]).min()) > 1.0
    temperature = jnp.exp(params["log_temperature"])
    expected = jnp.mean(temperature * log_prob - q.mean(0))
    assert float(metrics["actor_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_dreamerv2_weight_decay_is_one_minus_wd_per_step_not_times_the_learning_rate():
    params = {"w": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)}
    optimizer = clipped_adam(3e-4, 1e-5, 100.0, weight_decay=1e-2)
    opt = optimizer.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = optimizer.update(zero, opt, params)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], 0.99 * params["w"], rtol=1e-6)
    grads = {"w": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)}
    with_decay, _ = optimizer.update(grads, opt, params)
    without, _ = clipped_adam(3e-4, 1e-5, 100.0).update(grads, opt, params)
    np.testing.assert_allclose(with_decay["w"] - without["w"], -1e-2 * params["w"], rtol=1e-5)
    # Every optimizer of the world-model agents decays, at DreamerV2's 1e-6.
    for name in ("dreamerv2", "moto"):
        cls = get(name)
        config = make_config(cls, "debug")
        assert config.weight_decay == 1e-6
        agent = cls(gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
                    gym.spaces.Box(-1.0, 1.0, (2,), np.float32), config, 0, 10)
        for part in ("model", "actor", "critic"):
            p = agent._train["params"][part]
            new, _ = agent._apply_grads(part, agent._train["params"], agent._train["opt"],
                                        jax.tree.map(jnp.zeros_like, p))
            leaf, new_leaf = jax.tree.leaves(p)[0], jax.tree.leaves(new)[0]
            np.testing.assert_allclose(new_leaf, (1 - 1e-6) * leaf, rtol=1e-7, atol=1e-12)
