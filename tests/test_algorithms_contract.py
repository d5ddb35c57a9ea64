"""Contracts every registered algorithm must meet, from its `debug` preset."""

import gymnasium as gym
import jax
import numpy as np
import pytest

from algorithms.agent import JittedAgent
from algorithms.base import Sequences, Transitions, get, implemented, make_config

PIXELS = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
VECTOR = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)


def fake_batch(agent, obs_space, action_dim, k, seed=0):
    rng = np.random.default_rng(seed)
    spec = agent.batch_spec
    b = spec.batch_size
    if isinstance(spec, Transitions):
        obs_shape = (k, b, spec.frame_stack + 1, *obs_space.shape)
        lead = (k, b)
    else:
        obs_shape = (k, b, spec.length, *obs_space.shape)
        lead = (k, b, spec.length)
    if obs_space.dtype == np.uint8:
        obs = rng.integers(0, 256, obs_shape, dtype=np.uint8)
    else:
        obs = rng.normal(size=obs_shape).astype(np.float32)
    batch = {"obs": obs, "action": rng.uniform(-1, 1, (*lead, action_dim)).astype(np.float32),
             "reward": rng.random(lead).astype(np.float32),
             "terminal": np.zeros(lead, np.float32),
             "episode_success": np.ones(lead, np.float32)}
    if isinstance(spec, Sequences):
        batch["is_first"] = np.zeros(lead, np.float32)
        batch["is_terminal"] = np.zeros(lead, np.float32)
    return batch


def build(name, obs_space=PIXELS, action_dim=4, seed=0):
    cls = get(name)
    config = make_config(cls, "debug")
    if config.steps_per_call > 2:  # K = 2 still scans; on CPU the K steps unroll, so compile time grows with K
        config = make_config(cls, "debug", {"steps_per_call": 2})
    action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
    return cls(obs_space, action_space, config, seed, total_updates=100)


def act_input(agent, obs_space, n):
    spec = agent.batch_spec
    shape = (n, spec.frame_stack, *obs_space.shape) if isinstance(spec, Transitions) else (n, *obs_space.shape)
    return np.zeros(shape, obs_space.dtype)


@pytest.mark.parametrize("name", implemented())
@pytest.mark.parametrize("obs_space", [PIXELS, VECTOR], ids=["pixels", "vector"])
def test_update_is_finite_and_compiles_once(name, obs_space):
    agent = build(name, obs_space)
    k = agent.batch_spec.steps_per_call
    for i in range(3):
        metrics = agent.update(fake_batch(agent, obs_space, 4, k, seed=i))
        assert metrics and all(np.isfinite(v) for v in metrics.values())
    if isinstance(agent, JittedAgent):  # the JAX agents compile one update program
        assert agent.trace_count == 1


@pytest.mark.parametrize("name", implemented())
def test_act_respects_the_action_space(name):
    agent = build(name)
    state = agent.initial_state(5)
    for explore in (True, False):
        action, state = agent.act(act_input(agent, PIXELS, 5), state, explore)
        assert action.shape == (5, 4)
        assert (np.abs(action) <= 1.0).all()


@pytest.mark.parametrize("name", implemented())
def test_state_dict_round_trips_exactly(name):
    agent = build(name)
    k = agent.batch_spec.steps_per_call
    agent.update(fake_batch(agent, PIXELS, 4, k, seed=1))
    saved = agent.state_dict()
    clone = build(name, seed=123)  # different initial parameters and RNG
    clone.load_state_dict(saved)
    batch = fake_batch(agent, PIXELS, 4, k, seed=2)
    assert agent.update(batch) == clone.update(batch)
    for a, b in zip(jax.tree.leaves(agent.state_dict()), jax.tree.leaves(clone.state_dict())):
        np.testing.assert_array_equal(a, b)
    obs = act_input(agent, PIXELS, 2)
    np.testing.assert_array_equal(agent.act(obs, agent.initial_state(2), True)[0],
                                  clone.act(obs, clone.initial_state(2), True)[0])


@pytest.mark.parametrize("name", implemented())
def test_initial_state_starts_a_fresh_episode(name):
    agent = build(name)
    rng = np.random.default_rng(0)
    obs = [rng.integers(0, 256, act_input(agent, PIXELS, 1).shape, dtype=np.uint8) for _ in range(3)]
    saved = agent.state_dict()  # parameters and RNG, so that sampled latents repeat
    first, _ = agent.act(obs[0], agent.initial_state(1), explore=False)
    state = agent.initial_state(1)
    for o in obs[1:]:  # some history carried in the state
        _, state = agent.act(o, state, explore=False)
    agent.load_state_dict(saved)
    again, _ = agent.act(obs[0], agent.initial_state(1), explore=False)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", implemented())
def test_deterministic_act_draws_nothing_and_acts_on_each_row_alone(name):
    """What lockstep evaluation relies on (harness.evaluation): a deterministic `act` leaves
    the agent's state (its RNG included) as it was, and row i of a batch of N gets the action
    it gets alone, up to float rounding (XLA's matmul at batch N rounds differently)."""
    agent = build(name, VECTOR)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=act_input(agent, VECTOR, 3).shape).astype(np.float32)
    before = agent.state_dict()
    batched, state = agent.act(obs, agent.initial_state(3), explore=False)
    batched_next, _ = agent.act(obs[::-1].copy(), state, explore=False)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(agent.state_dict())):
        np.testing.assert_array_equal(a, b)
    for i in range(3):
        alone, state_i = agent.act(obs[i:i + 1], agent.initial_state(1), explore=False)
        np.testing.assert_allclose(alone[0], batched[i], rtol=1e-5, atol=1e-6)
        alone_next, _ = agent.act(obs[::-1][i:i + 1].copy(), state_i, explore=False)
        np.testing.assert_allclose(alone_next[0], batched_next[i], rtol=1e-5, atol=1e-6)
