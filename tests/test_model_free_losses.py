"""SAC, CQL and IQL losses: known answers against NumPy written here, and their gradients' reach."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import actor_critic, iql, nets

RNG = np.random.default_rng(0)
B = 5


def test_soft_target_with_and_without_the_entropy_backup():
    r, done = np.array([1.0, 0.5]), np.array([0.0, 1.0])
    q, log_prob = np.array([10.0, 10.0]), np.array([-2.0, -2.0])
    # 1 + .9 * (10 - .1 * -2) = 10.18; a terminal keeps only the reward.
    np.testing.assert_allclose(actor_critic.soft_target(r, done, q, log_prob, 0.1, 0.9), [10.18, 0.5], rtol=1e-6)
    np.testing.assert_allclose(actor_critic.soft_target(r, done, q, log_prob, 0.1, 0.9, backup_entropy=False),
                               [10.0, 0.5], rtol=1e-6)


def test_twin_critic_loss_sums_both_critics_mean_squared_errors():
    q, y = RNG.normal(size=(2, B)), RNG.normal(size=B)
    expected = 0.5 * (np.mean((q[0] - y) ** 2) + np.mean((q[1] - y) ** 2))
    assert float(actor_critic.twin_critic_loss(q, y)) == pytest.approx(expected, rel=1e-5)
    grad_target = jax.grad(lambda t: actor_critic.twin_critic_loss(jnp.asarray(q), t))(jnp.asarray(y))
    assert np.all(np.asarray(grad_target) == 0)  # the target is a constant


def test_actor_and_temperature_losses():
    q_min, log_prob = RNG.normal(size=B), RNG.normal(size=B)
    assert float(actor_critic.actor_loss(q_min, log_prob, 0.2)) == pytest.approx(np.mean(0.2 * log_prob - q_min), rel=1e-5)
    # d/d alpha of alpha * mean(-log pi - H): positive when the entropy exceeds the target.
    loss = actor_critic.temperature_loss(0.3, log_prob, -2.0)
    assert float(loss) == pytest.approx(0.3 * np.mean(-log_prob + 2.0), rel=1e-5)
    grad = jax.grad(actor_critic.temperature_loss)(0.3, jnp.asarray(log_prob), -2.0)
    assert float(grad) == pytest.approx(np.mean(-log_prob + 2.0), rel=1e-5)


def test_conservative_penalty_is_an_importance_weighted_logsumexp_minus_the_data_q():
    n, action_dim = 4, 3
    q_random, q_policy = RNG.normal(size=(2, n, B)), RNG.normal(size=(2, n, B))
    log_pi, q_data = RNG.normal(size=(n, B)), RNG.normal(size=(2, B))
    expected = 0.0
    for j in range(2):
        for b in range(B):
            terms = [np.exp(q_random[j, k, b]) / 0.5**action_dim for k in range(n)]
            terms += [np.exp(q_policy[j, k, b]) / np.exp(log_pi[k, b]) for k in range(n)]
            expected += (np.log(np.sum(terms)) - q_data[j, b]) / (2 * B)  # mean over critics, batch
    got = actor_critic.conservative_penalty(q_random, q_policy, log_pi, q_data, action_dim)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_expectile_loss_weighs_positive_errors_by_tau():
    diff = np.array([2.0, -1.0, 0.5, -3.0])
    tau = 0.7
    expected = np.mean([0.7 * 4.0, 0.3 * 1.0, 0.7 * 0.25, 0.3 * 9.0])
    assert float(iql.expectile_loss(diff, tau)) == pytest.approx(expected, rel=1e-6)
    # tau = 0.5 is half the mean squared error.
    assert float(iql.expectile_loss(diff, 0.5)) == pytest.approx(0.5 * np.mean(diff**2), rel=1e-6)


def test_iql_value_target_and_clipped_advantage_weights():
    np.testing.assert_allclose(iql.value_target(np.array([1.0, 1.0]), np.array([0.0, 1.0]),
                                                np.array([5.0, 5.0]), 0.9), [5.5, 1.0])
    log_prob = np.array([-1.0, -2.0, -0.5])
    advantage = np.array([0.1, -1.0, 3.0])  # exp(3 * 3) = 8103 is clipped to 100
    weights = np.minimum(np.exp(3.0 * advantage), 100.0)
    expected = -np.mean(weights * log_prob)
    assert float(iql.advantage_weighted_actor_loss(log_prob, advantage, 3.0)) == pytest.approx(expected, rel=1e-5)
    grad = jax.grad(iql.advantage_weighted_actor_loss, argnums=1)(
        jnp.asarray(log_prob), jnp.asarray(advantage), 3.0)
    assert np.all(np.asarray(grad) == 0)  # weights are constants


def test_unit_gaussian_log_prob_matches_the_normal_density():
    mean, action = RNG.normal(size=(B, 3)), RNG.normal(size=(B, 3))
    expected = np.sum(-0.5 * (action - mean) ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(iql.unit_gaussian_log_prob(mean, action), expected, rtol=1e-5)


def test_jaxrl2_optimizer_decays_only_the_actor_learning_rate():
    params = {"actor": jnp.zeros(2), "critic": jnp.zeros(2), "log_temperature": jnp.zeros(())}
    optimizer = nets.jaxrl2_optimizer(1e-3, total_updates=10, actor_keys=("actor",))
    state = optimizer.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for step in range(10):  # Adam's first steps move by about lr * sign(grad)
        updates, state = optimizer.update(grads, state, params)
        if step == 0:
            first = updates
    assert float(first["actor"][0]) == pytest.approx(-1e-3, rel=1e-3)
    assert float(updates["critic"][0]) == pytest.approx(-1e-3, rel=1e-3)  # constant
    assert float(updates["log_temperature"]) == pytest.approx(-1e-3, rel=1e-3)
    # Cosine over 10 updates: at the 10th step the actor's rate is lr * (1 + cos(0.9 pi)) / 2.
    assert float(updates["actor"][0]) == pytest.approx(-1e-3 * (1 + np.cos(0.9 * np.pi)) / 2, rel=1e-2)


def test_iql_rejects_an_expectile_outside_zero_one():
    from algorithms.base import ConfigError, get, make_config

    with pytest.raises(ConfigError, match="expectile must be in"):
        make_config(get("iql"), "paper", {"expectile": 1.0})


def test_sac_shares_the_critic_encoder_and_cql_trains_its_own_actor_encoder():
    import gymnasium as gym

    from algorithms.base import get, make_config

    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(1, 32, 4, 3)).astype(np.float32),
             "action": rng.uniform(-1, 1, (1, 32, 2)).astype(np.float32),
             "reward": rng.random((1, 32)).astype(np.float32), "terminal": np.zeros((1, 32), np.float32)}
    agents = {}
    for name in ("sac", "cql"):
        cls = get(name)
        agents[name] = cls(obs_space, action_space, make_config(cls, "debug", {"steps_per_call": 1}),
                           seed=0, total_updates=10)
    assert "actor_encoder" not in agents["sac"].state_dict()["train"]["params"]
    cql = agents["cql"]
    before = cql.state_dict()["train"]["params"]
    cql.update(batch)
    after = cql.state_dict()["train"]["params"]
    for part in ("encoder", "actor_encoder"):  # both trained, each by its own loss
        changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before[part], after[part])
        assert any(jax.tree.leaves(changed)), part
    assert not np.allclose(jax.tree.leaves(after["encoder"])[0], jax.tree.leaves(after["actor_encoder"])[0])


def test_bc_loss_is_the_unit_gaussian_likelihood_of_the_actions():
    """jaxrl2's pixel BC head: -log N(a; tanh(mu), I), i.e. half the squared error plus a
    constant; no learned std for the likelihood to shrink where the data are easy."""
    import gymnasium as gym
    import jax

    from algorithms.base import get, make_config
    from algorithms.bc import bc_loss

    cls = get("bc")
    obs_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    agent = cls(obs_space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                make_config(cls, "debug"), seed=0, total_updates=10)
    params = agent.state_dict()["train"]["params"]
    obs = np.random.default_rng(0).normal(size=(7, 5 * agent.config.frame_stack)).astype(np.float32)
    action = np.random.default_rng(1).uniform(-1, 1, (7, 2)).astype(np.float32)
    mean = np.asarray(agent.policy.apply(params, obs))
    assert np.all(np.abs(mean) < 1)
    loss, metrics = bc_loss(params, agent.policy, obs, action)
    expected = np.mean(0.5 * ((action - mean) ** 2).sum(-1)) + np.log(2 * np.pi)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    heads = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 2 and leaf.shape[1] == 2]
    assert len(heads) == 1  # one head, the mean's: no log-std head
