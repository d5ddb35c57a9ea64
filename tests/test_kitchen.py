"""Franka Kitchen from pixels (harness/envs/kitchen.py): the paper's target sets, reward as
targets currently done, success, `targets_done` through the episode format, `eval_objects`."""

import numpy as np
import pytest

from harness.data import format as fmt
from harness.data.collect import rollout
from harness.envs import kitchen, make_env, task_info
from harness.evaluation import evaluate


@pytest.fixture(scope="module")
def env():
    env = make_env("kitchen/mixed", 0)
    yield env
    env.close()


def test_paper_names_and_target_sets():
    # The paper's names, swapped relative to D4RL (docs): mixed = D4RL's kitchen-partial set.
    assert kitchen.TARGETS["mixed"] == ("microwave", "kettle", "light switch", "slide cabinet")
    assert kitchen.TARGETS["partial"] == ("microwave", "kettle", "bottom burner", "light switch")
    info = task_info("kitchen/partial")
    assert (info.episode_steps, info.action_repeat, info.bc_targets) == (280, 1, 3)
    assert task_info("kitchen/mixed").bc_targets == 4


def test_targets_done_by_distance_to_the_goal():
    qpos = np.zeros(30)
    assert not kitchen.targets_done(qpos, ["microwave"]).any()
    qpos[22] = -0.75 + 0.29  # within 0.3 of the microwave's goal
    assert kitchen.targets_done(qpos, ["microwave"]).all()
    qpos[22] = -0.75 + 0.31
    assert not kitchen.targets_done(qpos, ["microwave"]).any()
    both = np.zeros((2, 30))
    both[1, [17, 18]] = (-0.69, -0.05)
    np.testing.assert_array_equal(kitchen.targets_done(both, ["light switch", "microwave"]),
                                  [[False, False], [True, False]])


def test_pixels_reward_success_and_targets_done(env):
    obs, info = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs.std() > 10
    assert env.action_space.shape == (9,)
    assert not info["success"] and not info["targets_done"].any()
    qpos, qvel = env.data.qpos.copy(), np.zeros_like(env.data.qvel)
    for target in ("microwave", "kettle"):
        qpos[list(kitchen.QPOS_INDICES[target])] = kitchen.GOALS[target]
    env.set_state(qpos, qvel)
    moved = env.render()
    assert np.abs(moved.astype(int) - obs.astype(int)).mean() > 1  # the scene changed on screen
    _, reward, terminated, truncated, info = env.step(np.zeros(9))
    assert reward == 2.0 and not info["success"] and not terminated and not truncated
    np.testing.assert_array_equal(info["targets_done"], [True, True, False, False])
    for target in ("light switch", "slide cabinet"):
        qpos = env.data.qpos.copy()
        qpos[list(kitchen.QPOS_INDICES[target])] = kitchen.GOALS[target]
        env.set_state(qpos, np.zeros_like(env.data.qvel))
    _, reward, _, _, info = env.step(np.zeros(9))
    assert reward == 4.0 and info["success"]


def test_episode_is_280_steps_and_targets_done_survive_save_and_load(env, tmp_path):
    rng = np.random.default_rng(0)
    episode = rollout(env, lambda obs, first: rng.uniform(-1, 1, 9))
    assert len(episode["obs"]) == 281 and episode["is_last"][-1] and not episode["is_terminal"].any()
    assert episode["targets_done"].shape == (281, 4) and episode["targets_done"].dtype == bool
    episode["targets_done"][100:, :2] = True  # as if two targets were done from step 100
    fmt.save_episode(tmp_path / "episode_000000.npz", episode)
    loaded = fmt.load_episode(tmp_path / "episode_000000.npz")
    np.testing.assert_array_equal(loaded["targets_done"], episode["targets_done"])
    assert fmt.most_targets_done(loaded) == 2
    assert fmt.episode_success(loaded, bc_targets=2) and not fmt.episode_success(loaded, bc_targets=3)


def test_evaluation_logs_eval_objects(env):
    class Still:  # keeps the arm still: nothing gets done
        batch_spec = None

        def initial_state(self, n):
            return None

        def act(self, obs, state, explore):
            return np.zeros((1, 9), np.float32), state

    row = evaluate(env, Still(), 1)
    assert row["eval_objects"] == 0.0 and row["eval_success"] == 0.0


def test_evaluation_counts_success_both_ways():
    """Ours: all targets done at once. The co-author's (khatch31/jaxrl2 evaluation.py): return
    above 0, i.e. any one target done at some step."""
    import gymnasium as gym

    class TwoTargets:  # episode i: target 0 done from step 2 when i is odd; both when i % 3 == 0
        action_space = gym.spaces.Box(-1, 1, (1,))
        episode_index = 0

        def reset(self):
            self.t, self.i = 0, self.episode_index
            self.episode_index += 1
            return np.zeros(1, np.float32), {"success": False, "targets_done": np.zeros(2, bool)}

        def step(self, action):
            self.t += 1
            done = np.array([self.t >= 2 and self.i % 2 == 1, False]) | (self.t >= 2 and self.i % 3 == 0)
            info = {"success": bool(done.all()), "targets_done": done}
            return np.zeros(1, np.float32), float(done.sum()), False, self.t >= 4, info

    class Still:
        batch_spec = None

        def initial_state(self, n):
            return None

        def act(self, obs, state, explore):
            return np.zeros((1, 1), np.float32), state

    row = evaluate(TwoTargets(), Still(), 6)  # episodes 0..5: both at 0 and 3; one at 1 and 5
    assert row["eval_success"] == pytest.approx(2 / 6)
    assert row["eval_success_any"] == pytest.approx(4 / 6)
    assert row["eval_objects"] == pytest.approx((2 + 1 + 0 + 2 + 0 + 1) / 6)
