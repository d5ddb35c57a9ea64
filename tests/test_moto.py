"""MOTO: known answers for its equations, the ablation switches, and the metrics it logs."""

from types import SimpleNamespace

import gymnasium as gym
import jax
import numpy as np
import pytest

from algorithms.base import Sequences, get, make_config
from algorithms.moto import (behaviour_cloning_loss, ensemble_disagreement, filtered_bc_mask,
                             imagined_critic_targets, real_critic_target, value_expansion)
from tests.test_algorithms_contract import PIXELS, fake_batch

GAMMA = 0.5


def test_ensemble_disagreement_is_the_mean_std_across_members():
    # Two members, one state, one variable with two classes: stds (1, 0) -> mean 0.5.
    logits = np.array([[[[0.0, 2.0]]], [[[2.0, 2.0]]]])  # (M=2, N=1, S=1, C=2)
    np.testing.assert_allclose(ensemble_disagreement(logits), [0.5])
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 2, 5))
    expected = [np.mean([np.sqrt(np.mean((logits[:, n, s, c] - logits[:, n, s, c].mean()) ** 2))
                         for s in range(2) for c in range(5)]) for n in range(4)]
    np.testing.assert_allclose(ensemble_disagreement(logits), expected, rtol=1e-5)


def test_value_expansion_by_hand():
    rewards, bootstrap = np.array([[1.0, 2.0]]), np.array([[10.0, 20.0, 30.0]])
    # V^0 = 10; V^1 = 1 + .5 * 20 = 11; V^2 = 1 + .5 * 2 + .25 * 30 = 9.5
    np.testing.assert_allclose(value_expansion(rewards, bootstrap, GAMMA), [[10.0, 11.0, 9.5]])


def test_imagined_critic_targets_by_hand():
    rewards, bootstrap = np.array([[1.0, 2.0]]), np.array([[10.0, 20.0, 30.0]])
    # h = 0: mean(1 + .5 * 20, 1 + .5 * 2 + .25 * 30) = mean(11, 9.5) = 10.25
    # h = 1: 2 + .5 * 30 = 17
    np.testing.assert_allclose(imagined_critic_targets(rewards, bootstrap, GAMMA), [[10.25, 17.0]])


def test_real_critic_target_stops_at_terminals():
    got = real_critic_target(np.array([1.0, 1.0]), np.array([0.0, 1.0]), np.array([10.0, 10.0]), 0.9)
    np.testing.assert_allclose(got, [10.0, 1.0])


def test_behaviour_cloning_loss_by_hand():
    # Pre-tanh means atanh(0.5), atanh(-1 + 1e-3) against demonstrated actions 1 and -1: the
    # squared error is 0.5 * (0.5^2 + 1e-3^2), whatever the log-std; the log-likelihood
    # option clips the target to +-0.99 and depends on the std.
    mean = np.arctanh(np.array([[0.5, -1 + 1e-3]]))
    action = np.array([[1.0, -1.0]])
    for log_std in (np.zeros((1, 2)), np.full((1, 2), -3.0)):
        np.testing.assert_allclose(
            behaviour_cloning_loss("squared_error", mean, log_std, action, 0.99),
            [0.5 * (0.25 + 1e-6)], rtol=1e-4)
    wide, narrow = (behaviour_cloning_loss("log_prob", mean, np.full((1, 2), s), action, 0.99)
                    for s in (0.0, -3.0))
    assert np.isfinite(wide).all() and np.isfinite(narrow).all() and not np.allclose(wide, narrow)


def test_filtered_bc_mask_keeps_successful_episodes_and_skips_episode_starts():
    success = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 1, 1]], np.float32)
    is_first = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]], np.float32)
    # Pair t uses action[t+1]: it counts if step t+1 starts no episode and its episode succeeded.
    np.testing.assert_array_equal(filtered_bc_mask(success, is_first),
                                  [[1, 0, 1], [0, 0, 0], [0, 0, 1]])


def build(**overrides):
    cls = get("moto")
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    return cls(PIXELS, action_space, make_config(cls, "debug", overrides), 0, total_updates=10)


def debug_batch(seed=0):
    """A batch shaped for the debug preset (4 sequences of 10 steps, K = 1)."""
    spec = make_config(get("moto"), "debug")
    holder = SimpleNamespace(batch_spec=Sequences(spec.sequence_length, spec.batch_size, 1))
    return fake_batch(holder, PIXELS, 2, 1, seed)


def actor_after_update(agent, batch, start):
    agent.load_state_dict(start)
    metrics = agent.update(batch)
    leaves = jax.tree.leaves(agent.state_dict()["train"]["params"]["actor"])
    return np.concatenate([np.ravel(x) for x in leaves]), metrics


@pytest.fixture(scope="module")
def default_agent():
    """The debug preset as it is (H = 3, BC and uncertainty on); tests restore its state."""
    return build()


@pytest.mark.parametrize("bc", [True, False])
def test_bc_switch_decides_whether_successful_episodes_shape_the_actor(bc, default_agent):
    batch = debug_batch()
    failed = dict(batch, episode_success=np.zeros_like(batch["episode_success"]))
    agent = default_agent if bc else build(bc=False)
    start = agent.state_dict()
    with_success, metrics = actor_after_update(agent, batch, start)
    assert metrics["bc_fraction"] > 0.5 and metrics["bc_loss"] > 0
    without_success, metrics = actor_after_update(agent, failed, start)
    assert metrics["bc_fraction"] == 0.0
    assert np.array_equal(with_success, without_success) == (not bc)
    agent.load_state_dict(start)
    assert agent.trace_count == 1


def test_uncertainty_switch_subtracts_alpha_times_the_penalty_from_the_value():
    batch = debug_batch()
    on = build(horizon=1, alpha=2.0).update(batch)
    off = build(horizon=1, alpha=2.0, uncertainty=False).update(batch)
    assert on["penalty_mean"] > 0 and on["penalty_mean"] == pytest.approx(off["penalty_mean"])
    # V^1 = r~_0 + g Q(s_1, a_1) and only r~ changes: the gap is alpha * mean u.
    assert off["value_h1"] - on["value_h1"] == pytest.approx(2.0 * on["penalty_mean"], rel=1e-3)
    assert off["value_h0"] == pytest.approx(on["value_h0"])


def test_metrics_show_what_moto_is_doing_and_horizon_zero_is_plain_actor_critic(default_agent):
    assert default_agent.config.horizon == 3
    metrics = default_agent.update(debug_batch())
    for name in ("penalty_mean", "penalty_max", "bc_loss", "actor_entropy", "model_loss",
                 "image_nll", "kl", "critic_loss_imagined", "critic_loss_real",
                 "value_h0", "value_h1", "value_h2", "value_h3"):
        assert np.isfinite(metrics[name]), name
    assert metrics["penalty_max"] >= metrics["penalty_mean"] > 0
    plain = build(horizon=0).update(debug_batch())
    assert all(np.isfinite(v) for v in plain.values())
    assert "value_h1" not in plain and "critic_loss_imagined" not in plain
