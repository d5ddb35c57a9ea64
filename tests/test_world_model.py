"""World model: known answers for its math, scan-vs-loop, ensemble heads, learning to reconstruct."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms.base import make_config
from algorithms.returns import lambda_returns
from algorithms.world_model import (WorldModel, WorldModelConfig, balanced_kl_loss,
                                    categorical_kl, gaussian_kl, observe, imagine,
                                    straight_through_sample, world_model_loss)


class _Holder:
    name, Config = "world_model", WorldModelConfig


def build(preset="debug", **overrides):
    config = make_config(_Holder, preset, overrides)
    model = WorldModel(config, action_dim=2)
    key = jax.random.PRNGKey(0)
    params = jax.jit(lambda k: model.init(k, jnp.zeros((1, 64, 64, 3), jnp.uint8), jnp.zeros((1, 2)),
                                          k, method=WorldModel.init_all))(key)
    return model, params


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_lambda_returns_match_a_hand_computed_case_and_a_loop():
    reward = jnp.array([[1.0, 0.0, 2.0]])
    value = jnp.array([[0.0, 10.0, 20.0, 30.0]])
    discount = jnp.array([[0.5, 0.5, 0.0]])  # a terminal after the third step
    got = np.asarray(lambda_returns(reward, value, discount, 0.5))
    r2 = 2.0  # discount 0 after the last step: R_2 = r_2
    r1 = 0.0 + 0.5 * (0.5 * 20.0 + 0.5 * r2)  # 5.5
    r0 = 1.0 + 0.5 * (0.5 * 10.0 + 0.5 * r1)  # 4.875
    np.testing.assert_allclose(got, [[r0, r1, r2]], rtol=1e-6)
    rng = np.random.default_rng(0)
    reward, discount = rng.normal(size=(4, 7)), rng.uniform(0.9, 1.0, (4, 7))
    value = rng.normal(size=(4, 8))
    expected = np.zeros((4, 7))
    nxt = value[:, -1]
    for t in reversed(range(7)):
        nxt = reward[:, t] + discount[:, t] * (0.05 * value[:, t + 1] + 0.95 * nxt)
        expected[:, t] = nxt
    np.testing.assert_allclose(np.asarray(lambda_returns(jnp.asarray(reward), jnp.asarray(value),
                                                         jnp.asarray(discount), 0.95)),
                               expected, rtol=1e-5)


def test_straight_through_sample_is_one_hot_with_the_gradient_of_the_probabilities():
    logits = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    weights = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    key = jax.random.PRNGKey(1)
    sample = straight_through_sample(key, logits)
    np.testing.assert_allclose(np.asarray(sample).sum(-1), 1.0, atol=1e-6)
    assert set(np.round(np.asarray(sample), 6).ravel()) <= {0.0, 1.0}
    grad_st = jax.grad(lambda l: jnp.sum(weights * straight_through_sample(key, l)))(logits)
    grad_probs = jax.grad(lambda l: jnp.sum(weights * jax.nn.softmax(l)))(logits)
    np.testing.assert_allclose(np.asarray(grad_st), np.asarray(grad_probs), rtol=1e-5, atol=1e-6)


def test_categorical_and_gaussian_kl_match_numpy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    p, q = softmax(a), softmax(b)
    expected = (p * (np.log(p) - np.log(q))).sum((-2, -1))
    np.testing.assert_allclose(np.asarray(categorical_kl(jnp.asarray(a), jnp.asarray(b))), expected,
                               rtol=1e-5)
    m1, s1, m2, s2 = rng.normal(size=4), rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.uniform(0.5, 2, 4)
    expected = (np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5).sum()
    got = gaussian_kl(*(jnp.asarray(x) for x in (m1, s1, m2, s2)))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_kl_balance_weights_the_gradients_and_free_nats_clip_the_average():
    post = jnp.array([[[2.0, 0.0, -1.0]]])
    prior = jnp.array([[[0.0, 1.0, 0.0]]])
    kl = float(categorical_kl(post, prior).mean())
    loss, reported = balanced_kl_loss(categorical_kl, (post,), (prior,), 0.8, free_nats=0.0)
    np.testing.assert_allclose(float(loss), kl, rtol=1e-6)  # both sides equal KL in value
    np.testing.assert_allclose(float(reported), kl, rtol=1e-6)

    def loss_of(post, prior, free):
        return balanced_kl_loss(categorical_kl, (post,), (prior,), 0.8, free)[0]

    g_post, g_prior = jax.grad(loss_of, argnums=(0, 1))(post, prior, 0.0)
    full_post, full_prior = jax.grad(lambda a, b: categorical_kl(a, b).mean(), argnums=(0, 1))(post, prior)
    np.testing.assert_allclose(np.asarray(g_post), 0.2 * np.asarray(full_post), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g_prior), 0.8 * np.asarray(full_prior), rtol=1e-5, atol=1e-7)
    free = kl + 1.0  # below the free nats: the loss is the constant, no gradient
    np.testing.assert_allclose(float(loss_of(post, prior, free)), free, rtol=1e-6)
    g_post, g_prior = jax.grad(loss_of, argnums=(0, 1))(post, prior, free)
    assert not np.asarray(g_post).any() and not np.asarray(g_prior).any()


@pytest.mark.parametrize("latent", ["discrete", "gaussian"])
def test_observe_scan_equals_a_step_by_step_loop(latent):
    model, params = build(latent=latent, ensemble=3)
    rng = np.random.default_rng(3)
    b, t = 2, 5
    embed = jnp.asarray(rng.normal(size=(b, t, model.config.mlp_units)), jnp.float32)
    action = jnp.asarray(rng.uniform(-1, 1, (b, t, 2)), jnp.float32)
    is_first = jnp.zeros((b, t)).at[:, 0].set(1.0).at[1, 3].set(1.0)
    key = jax.random.PRNGKey(4)
    posts, priors = observe(model, params, embed, action, is_first, key)
    keys = jax.random.split(key, t + 1)
    members = jax.random.randint(keys[0], (t,), 0, 3)
    state = model.apply(params, b, method=WorldModel.initial)
    for i in range(t):
        state, prior = model.apply(params, state, action[:, i], embed[:, i], is_first[:, i],
                                   keys[i + 1], members[i], method=WorldModel.obs_step)
        for name in state:
            np.testing.assert_allclose(np.asarray(posts[name][:, i]), np.asarray(state[name]),
                                       rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(priors[name][:, i]), np.asarray(prior[name]),
                                       rtol=1e-4, atol=1e-5)


def test_is_first_resets_the_recurrent_state():
    model, params = build()
    rng = np.random.default_rng(5)
    embed = jnp.asarray(rng.normal(size=(1, 4, model.config.mlp_units)), jnp.float32)
    action = jnp.asarray(rng.uniform(-1, 1, (1, 4, 2)), jnp.float32)
    first = jnp.array([[1.0, 0.0, 1.0, 0.0]])
    posts, _ = observe(model, params, embed, action, first, jax.random.PRNGKey(0))
    fresh, _ = observe(model, params, embed[:, 2:], action[:, 2:], first[:, 2:], jax.random.PRNGKey(0))
    # Same deterministic state after a reset, whatever came before (the stochastic sample differs
    # only through the key, and the deterministic state does not depend on it at a reset).
    np.testing.assert_allclose(np.asarray(posts["deter"][:, 2]), np.asarray(fresh["deter"][:, 0]),
                               rtol=1e-5, atol=1e-6)


def test_imagine_shapes_and_a_fixed_member_is_used():
    model, params = build(ensemble=3)
    start = model.apply(params, 4, method=WorldModel.initial)
    policy = lambda features, key: (jnp.tanh(features[:, :2]), features[:, 0])  # noqa: E731
    states, actions, log_probs = imagine(model, params, policy, start, 5, jax.random.PRNGKey(0),
                                         member=2)
    assert log_probs.shape == (4, 5)
    assert states["deter"].shape == (4, 6, model.config.deter)
    assert states["logits"].shape == (4, 6, model.config.stoch, model.config.classes)
    assert actions.shape == (4, 5, 2)
    # Member 2's prior from the imagined deterministic state reproduces the stored logits.
    deter = states["deter"][:, 3]
    logits = model.apply(params, deter, 2, method=WorldModel.prior)["logits"]
    np.testing.assert_allclose(np.asarray(logits), np.asarray(states["logits"][:, 3]), rtol=1e-5, atol=1e-6)
    everyone = model.apply(params, deter, method=WorldModel.ensemble_prior)["logits"]
    assert everyone.shape == (3, 4, model.config.stoch, model.config.classes)
    np.testing.assert_allclose(np.asarray(everyone[2]), np.asarray(logits), rtol=1e-5, atol=1e-6)


def test_paper_and_small_presets_have_the_documented_sizes():
    paper = make_config(_Holder, "paper")
    assert (paper.stoch, paper.classes, paper.deter, paper.hidden, paper.cnn_depth) == (32, 32, 1024, 1024, 48)
    assert (paper.kl_balance, paper.free_nats, paper.lr, paper.eps, paper.clip) == (0.8, 1.0, 3e-4, 1e-5, 100.0)
    small = make_config(_Holder, "small")
    assert (small.deter, small.hidden) == (200, 200)


@pytest.mark.slow
def test_reconstruction_error_falls_while_training_on_toy_sequences(data_dir):
    import optax

    from harness.data.collect import load_dataset
    from harness.envs import make_env
    from harness.replay import EpisodeReplay

    env = make_env("toy/reach", 0)
    dataset, _ = load_dataset("toy/reach", 10, data_dir, env.settings())
    replay = EpisodeReplay((64, 64, 3), np.uint8, 2)
    for episode in dataset:
        replay.add_episode(episode, offline=True)
    model, params = build()
    c = model.config
    optimizer = optax.chain(optax.clip_by_global_norm(c.clip),
                            optax.adamw(1e-3, eps=c.eps, weight_decay=c.weight_decay))
    opt_state = optimizer.init(params)
    traces = []

    @jax.jit
    def update(params, opt_state, batch, key):
        traces.append(1)
        grads, (_, metrics) = jax.grad(lambda p: world_model_loss(model, p, batch, key), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    rng = np.random.default_rng(0)
    mse = []
    for step in range(150):
        batch = replay.sample_sequences(rng, 1, 8, 10)
        batch = {k: v[0] for k, v in batch.items() if k in ("obs", "action", "reward", "is_first")}
        params, opt_state, metrics = update(params, opt_state, batch, jax.random.PRNGKey(step))
        mse.append(float(metrics["image_mse"]))
    assert len(traces) == 1  # compiled once
    first, last = np.mean(mse[:10]), np.mean(mse[-10:])
    assert last < 0.5 * first, (first, last)


def test_running_moments_merge_to_the_moments_of_all_batches():
    from algorithms.world_model import initial_moments, update_moments
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[0.0, 5.0, -2.0], scale=[1.0, 0.03, 10.0], size=(n, 3))
               for n in (7, 256, 1)]
    moments = initial_moments(3)
    for b in batches:
        moments = update_moments(moments, jnp.asarray(b, jnp.float32))
    every = np.concatenate(batches)
    assert float(moments["count"]) == len(every)
    np.testing.assert_allclose(moments["mean"], every.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moments["var"], every.var(0), rtol=1e-4)


def test_standardize_floors_the_std_and_clips():
    from algorithms.world_model import STANDARDIZED_CLIP, STD_FLOOR, standardize
    moments = {"count": jnp.array(10.0), "mean": jnp.array([1.0, 0.0, 0.0]),
               "var": jnp.array([4.0, 0.0, 1.0])}
    z = np.asarray(standardize(moments, jnp.array([[3.0, 0.5 * STD_FLOOR, 50.0]])))
    np.testing.assert_allclose(z, [[1.0, 0.5, STANDARDIZED_CLIP]], rtol=1e-6)


@pytest.mark.parametrize("name", ["moto", "dreamerv2", "lompo", "combo"])
def test_world_model_agents_see_state_vectors_in_standardized_units(name):
    """Two agents, one trained on states x and one on a * x + b (per-entry a > 0): with the
    states standardized by their running moments, both take the same gradient steps and act
    the same on corresponding states. Without standardization the second agent's encoder and
    decoder see entries 1000 times larger or smaller, and the two differ at once."""
    import gymnasium as gym
    from algorithms.base import get
    from tests.test_algorithms_contract import fake_batch
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    actions = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    scale = np.array([1e-3, 1.0, 1e3], np.float32)
    offset = np.array([5.0, -1.0, 0.0], np.float32)
    cls = get(name)
    config = make_config(cls, "debug", {"steps_per_call": 1})
    agents = [cls(space, actions, config, 0, total_updates=10) for _ in range(2)]
    for i in range(2):
        batch = fake_batch(agents[0], space, 2, 1, seed=i)
        agents[0].update(batch)
        agents[1].update({**batch, "obs": batch["obs"] * scale + offset})
    obs = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
    got = [agent.act(x, agent.initial_state(4), explore=False)[0]
           for agent, x in zip(agents, (obs, obs * scale + offset))]
    np.testing.assert_allclose(got[0], got[1], atol=2e-4)
    assert np.abs(got[0]).max() > 1e-3  # the agents do act: not two zero outputs
