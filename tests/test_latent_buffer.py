"""LOMPO and COMBO: the latent ring buffer, LOMPO's penalty and COMBO's regularizer as pure
functions with known answers, and the agents' buffers through updates and checkpoints."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithms import actor_critic, latent_buffer, lompo
from algorithms.base import get, make_config


def test_ring_buffer_fills_wraps_and_samples_only_written_rows():
    buffer = latent_buffer.buffer_init(5, {"x": (2,), "r": ()})
    rows = lambda start, n: {"x": np.stack([np.arange(start, start + n)] * 2, 1).astype(np.float32),
                             "r": np.arange(start, start + n, dtype=np.float32)}
    buffer = latent_buffer.buffer_add(buffer, rows(0, 3))
    assert int(buffer["size"]) == 3 and int(buffer["next"]) == 3
    sample = latent_buffer.buffer_sample(buffer, jax.random.PRNGKey(0), 200)
    assert set(np.asarray(sample["r"]).tolist()) == {0.0, 1.0, 2.0}  # never an empty row
    np.testing.assert_array_equal(sample["x"][:, 0], sample["r"])  # rows stay whole
    buffer = latent_buffer.buffer_add(buffer, rows(3, 4))  # 7 rows into 5: 0 and 1 overwritten
    assert int(buffer["size"]) == 5 and int(buffer["next"]) == 2
    np.testing.assert_array_equal(buffer["data"]["r"], [5, 6, 2, 3, 4])
    sample = latent_buffer.buffer_sample(buffer, jax.random.PRNGKey(1), 400)
    assert set(np.asarray(sample["r"]).tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}


def test_log_prob_disagreement_by_hand():
    # Two members, one latent dimension, one sample z = 1.
    means = jnp.asarray([[[0.0]], [[1.0]]])
    stds = jnp.asarray([[[1.0]], [[2.0]]])
    z = jnp.asarray([[1.0]])
    log_p = [-0.5 * 1.0 - np.log(1.0) - 0.5 * np.log(2 * np.pi),  # N(1; 0, 1)
             -0.5 * 0.0 - np.log(2.0) - 0.5 * np.log(2 * np.pi)]  # N(1; 1, 4)
    expected = np.std(log_p)  # population std: |a - b| / 2
    assert float(latent_buffer.log_prob_disagreement(means, stds, z)[0]) == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(abs(-0.5 + np.log(2.0)) / 2)
    # Members that agree have no disagreement, whatever the sample; dimensions add up.
    same = jnp.zeros((3, 4, 2)), jnp.ones((3, 4, 2))
    np.testing.assert_allclose(latent_buffer.log_prob_disagreement(*same, jnp.full((4, 2), 7.0)), 0.0, atol=1e-5)
    two_dims = latent_buffer.log_prob_disagreement(jnp.concatenate([means, means], -1),
                                                    jnp.concatenate([stds, stds], -1), jnp.ones((1, 2)))
    assert float(two_dims[0]) == pytest.approx(2 * expected, rel=1e-5)


def test_lompo_reward_is_penalized_by_lambda_u():
    np.testing.assert_allclose(lompo.penalized_reward(jnp.asarray([1.0, 0.5]), jnp.asarray([0.1, 0.2]), 5.0),
                               [0.5, -0.5], rtol=1e-6)


def test_combo_penalty_by_hand():
    # 2 critics, K = 2 sampled actions, S = 2 states; 1 real transition.
    q_sampled = np.asarray([[[0.0, 1.0], [0.0, 3.0]],
                            [[2.0, 2.0], [2.0, 2.0]]], np.float32)
    q_data = np.asarray([[0.5], [1.0]], np.float32)
    lse = np.log(np.exp(q_sampled[:, 0]) + np.exp(q_sampled[:, 1]))  # (2, S)
    expected = np.mean(lse.mean(-1) - q_data.mean(-1))
    got = actor_critic.sampled_action_penalty(jnp.asarray(q_sampled), jnp.asarray(q_data))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # Its gradient pushes Q up on the data and down on the sampled actions.
    grad_data = jax.grad(lambda d: actor_critic.sampled_action_penalty(jnp.asarray(q_sampled), d))(jnp.asarray(q_data))
    assert np.all(np.asarray(grad_data) < 0)
    grad_sampled = jax.grad(lambda s: actor_critic.sampled_action_penalty(s, jnp.asarray(q_data)))(jnp.asarray(q_sampled))
    assert np.all(np.asarray(grad_sampled) > 0)


def test_twin_critic_loss_ignores_weight_zero_samples():
    q = jnp.asarray([[1.0, 2.0, 100.0], [1.0, 3.0, -50.0]])
    target = jnp.asarray([0.0, 0.0, 0.0])
    weighted = actor_critic.twin_critic_loss(q, target, jnp.asarray([1.0, 1.0, 0.0]))
    assert float(weighted) == pytest.approx(float(actor_critic.twin_critic_loss(q[:, :2], target[:2])))


def _agent(name, **overrides):
    cls = get(name)
    obs = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    config = make_config(cls, "debug", {"real_capacity": 100, "imagined_capacity": 60, **overrides})
    return cls(obs, act, config, seed=0, total_updates=10)


def _sequences(rng, b=4, t=10):
    is_first = np.zeros((1, b, t), np.float32)
    is_first[:, :, 0] = 1.0
    is_first[:, 0, 5] = 1.0  # an episode boundary inside one sequence
    return {"obs": rng.normal(size=(1, b, t, 3)).astype(np.float32),
            "action": rng.uniform(-1, 1, (1, b, t, 2)).astype(np.float32),
            "reward": rng.random((1, b, t)).astype(np.float32), "is_first": is_first}


@pytest.mark.parametrize("name", ["lompo", "combo"])
def test_buffers_fill_through_updates_and_survive_a_checkpoint(name):
    agent, rng = _agent(name, refresh_every=1), np.random.default_rng(0)
    metrics = agent.update(_sequences(rng))
    # One refresh: 4 x (9 - 2 burn-in steps) real transitions (one across the boundary at
    # step 5, weight 0) and rollout_starts x horizon = 8 x 3 imagined ones.
    assert metrics["real_buffer_size"] == 28 and metrics["imagined_buffer_size"] == 24
    state = agent.state_dict()["train"]
    weights = np.asarray(state["real"]["data"]["weight"][:28])
    assert weights.sum() == 27
    for _ in range(3):
        metrics = agent.update(_sequences(rng))
    assert metrics["real_buffer_size"] == 100 and metrics["imagined_buffer_size"] == 60  # full, wrapped
    stored = sum(a.nbytes for a in jax.tree.leaves(state["real"]["data"]))
    assert stored == 100 * agent.bytes_per_transition  # the figure docs/algorithms/lompo-combo.md uses
    saved = agent.state_dict()
    other = _agent(name, refresh_every=1)
    other.load_state_dict(saved)
    for key in ("real", "imagined"):
        jax.tree.map(np.testing.assert_array_equal, saved["train"][key], other.state_dict()["train"][key])


def test_buffers_are_written_every_refresh_every_updates_from_all_starts():
    """LOMPO's schedule: rows are written on updates 0, N, 2N, ... only; with rollout_starts 0
    a refresh rolls out from every posterior state of the batch (4 x 10 here, horizon 3)."""
    agent, rng = _agent("lompo", refresh_every=3, rollout_starts=0, real_capacity=1000,
                        imagined_capacity=1000), np.random.default_rng(0)
    sizes = []
    for _ in range(7):
        m = agent.update(_sequences(rng))
        sizes.append((m["real_buffer_size"], m["imagined_buffer_size"]))
    assert sizes == [(28, 120)] * 3 + [(56, 240)] * 3 + [(84, 360)]
    assert m["disagreement_mean"] > 0  # the last refresh's rollout metrics, carried over


def test_stored_latents_are_not_refreshed_when_the_model_changes():
    """The staleness the paper discusses: a transition keeps the features it was written with."""
    agent, rng = _agent("lompo", real_capacity=1000, refresh_every=1), np.random.default_rng(0)
    agent.update(_sequences(rng))
    first = np.asarray(agent.state_dict()["train"]["real"]["data"]["features"][:28])
    before = agent.state_dict()["train"]["params"]["model"]
    for _ in range(3):
        agent.update(_sequences(rng))
    after = agent.state_dict()["train"]
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, after["params"]["model"])
    assert any(jax.tree.leaves(changed))  # the model moved ...
    np.testing.assert_array_equal(after["real"]["data"]["features"][:28], first)  # ... the rows did not


def test_lompo_penalty_lowers_the_stored_imagined_reward():
    """Same seed, same data: the stored imagined rewards differ by exactly lambda u."""
    rng = np.random.default_rng(0)
    batch = _sequences(rng)
    with_penalty, without = _agent("lompo", penalty=5.0), _agent("lompo", penalty=0.0)
    m1, m0 = with_penalty.update(batch), without.update(batch)
    assert m1["disagreement_mean"] > 0
    assert m1["imagined_model_reward"] == pytest.approx(m0["imagined_model_reward"], rel=1e-5)
    assert m1["imagined_reward"] == pytest.approx(m1["imagined_model_reward"] - 5.0 * m1["disagreement_mean"],
                                                  rel=1e-4, abs=1e-5)
    assert m0["imagined_reward"] == pytest.approx(m0["imagined_model_reward"], rel=1e-5)
