"""`gym/<id>`: any Gymnasium id with a continuous action space and state observations.

Agent actions in [-1, 1] are rescaled to the env's action bounds. `info["success"]` is the
env's own `success` or `is_success` when it reports one, else False. Offline data for these
tasks comes from a uniform random policy (they have no scripted demonstrator).
"""

from __future__ import annotations

import numpy as np

from harness.envs.base import TaskInfo
from harness.errors import UserError, closest


def task_info(env_id: str) -> TaskInfo:
    import gymnasium as gym

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        names = sorted(gym.registry)
        raise UserError(f"unknown Gymnasium id '{env_id}' in task 'gym/{env_id}'."
                        f"{closest(env_id, names)} ({err})") from None
    try:
        probe = gym.make(env_id)
    except Exception as err:  # noqa: BLE001 (any env's own error: a missing dependency, ...)
        raise UserError(f"task 'gym/{env_id}': Gymnasium cannot make this environment "
                        f"({type(err).__name__}: {str(err).strip()[:300]}). Install what it "
                        "needs, or choose another task.") from None
    action_space, observation_space = probe.action_space, probe.observation_space
    probe.close()
    if not isinstance(action_space, gym.spaces.Box):
        raise UserError(f"task 'gym/{env_id}' has a discrete action space; only continuous "
                        "(Box) action spaces are supported.")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UserError(f"task 'gym/{env_id}' observes {observation_space}; gym/ tasks need a "
                        "state vector (a 1-D Box observation space).")
    steps = spec.max_episode_steps or 1000
    return TaskInfo(f"gym/{env_id}", "gym", steps, 1, False, "random",
                    obs_shape=observation_space.shape, action_dim=action_space.shape[0])


def settings(info: TaskInfo) -> dict:
    return {"task": info.task_id, "episode_steps": info.episode_steps, "observations": "state"}


class GymState:
    metadata = {"render_modes": []}

    def __init__(self, env_id: str, seed: int):
        import gymnasium as gym

        self.spec_info = task_info(env_id)
        self._env = gym.make(env_id)
        self._low = self._env.action_space.low.astype(np.float64)
        self._high = self._env.action_space.high.astype(np.float64)
        shape = self._env.observation_space.shape
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, self._env.action_space.shape, np.float32)
        self._seed = seed
        self.episode_index = 0  # the next reset starts this episode (see harness.envs.base)
        self._rng = np.random.default_rng([seed, 3])

    def settings(self) -> dict:
        return settings(self.spec_info)

    def reset(self, seed=None, options=None):
        if seed is not None:
            raise ValueError("seed the env at construction; reset(seed=...) would break the stream")
        # Seed every reset from (seed, episode index): the same seed gives the same episodes.
        obs, info = self._env.reset(seed=int(np.random.SeedSequence([self._seed, self.episode_index])
                                             .generate_state(1)[0]))
        self.episode_index += 1
        return obs.astype(np.float32), {"success": _success(info)}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        obs, reward, terminated, truncated, info = self._env.step(scaled.astype(np.float32))
        return obs.astype(np.float32), float(reward), terminated, truncated, {"success": _success(info)}

    def random_action(self) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, self.action_space.shape).astype(np.float32)

    def close(self):
        self._env.close()


def _success(info: dict) -> bool:
    return bool(info.get("success", info.get("is_success", False)))
