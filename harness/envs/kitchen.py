"""Franka Kitchen tasks from 64x64 pixels, as protocol.md specifies.

Gymnasium-Robotics' `KitchenEnv` (`FrankaKitchen-v1`) with its targets never removed and no
termination; 9-d joint-velocity actions in [-1, 1], action repeat 1 (the env's own frame skip
of 40 physics steps is one agent step), 280 steps per episode. The reward is the number of
target objects *currently* within 0.3 of their goal configuration (Gymnasium-Robotics'
`BONUS_THRESH`), computed from the simulator's true joint positions; `success` at a step is
all targets done at once, and the episode carries `targets_done` (T+1, K) for the report's
`eval_objects` and for behaviour regularization.

The two tasks use the paper's names, which are swapped relative to D4RL:

| here (paper) | targets | D4RL / Minari name of the same target set |
|---|---|---|
| `kitchen/mixed` | microwave, kettle, light switch, slide cabinet | `kitchen-partial` |
| `kitchen/partial` | microwave, kettle, bottom burner, light switch | `kitchen-mixed` |

Kitchen has no scripted demonstrator: its offline data is the relay-policy-learning
demonstrations, imported from a local Minari dataset (`python -m harness data kitchen`).
"""

from __future__ import annotations

import numpy as np

from harness.envs.base import TaskInfo, episode_seed
from harness.envs.render import FreeCameraRenderer, ensure_backend, renderer_info

TARGETS = {
    "mixed": ("microwave", "kettle", "light switch", "slide cabinet"),
    "partial": ("microwave", "kettle", "bottom burner", "light switch"),
}
# Behaviour regularization: successful episodes are those that complete these many of the
# first targets at once (protocol.md: mixed all four, partial its first three).
BC_TARGETS = {"mixed": 4, "partial": 3}
CAMERA = {"distance": 1.86, "azimuth": 90.0, "elevation": -60.0, "lookat": (-0.3, 0.5, 2.0)}
IMAGE_SIZE = 64
ACTION_REPEAT = 1
EPISODE_STEPS = 280
ACTION_DIM = 9  # 7 arm joint velocities and 2 gripper fingers
DONE_DISTANCE = 0.3  # Gymnasium-Robotics BONUS_THRESH

# Where each object's joints sit in the simulator's qpos (30 entries: robot 9, objects 21),
# and their goal values: Gymnasium-Robotics' OBS_ELEMENT_INDICES and OBS_ELEMENT_GOALS.
QPOS_INDICES = {
    "bottom burner": (11, 12), "top burner": (15, 16), "light switch": (17, 18),
    "slide cabinet": (19,), "hinge cabinet": (20, 21), "microwave": (22,),
    "kettle": (23, 24, 25, 26, 27, 28, 29),
}
GOALS = {
    "bottom burner": (-0.88, -0.01), "top burner": (-0.92, -0.01), "light switch": (-0.69, -0.05),
    "slide cabinet": (0.37,), "hinge cabinet": (0.0, 1.45), "microwave": (-0.75,),
    "kettle": (-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06),
}


def task_names() -> list[str]:
    return sorted(TARGETS)


def task_info(name: str) -> TaskInfo:
    return TaskInfo(f"kitchen/{name}", "kitchen", EPISODE_STEPS, ACTION_REPEAT, True, "minari",
                    (IMAGE_SIZE, IMAGE_SIZE, 3), ACTION_DIM, bc_targets=BC_TARGETS[name])


def settings(task_id: str) -> dict:
    name = task_id.split("/", 1)[1]
    return {"task": task_id, "image_size": IMAGE_SIZE, "camera": CAMERA,
            "action_repeat": ACTION_REPEAT, "episode_steps": EPISODE_STEPS,
            "targets": list(TARGETS[name]), "done_distance": DONE_DISTANCE,
            "reward": "targets currently done", "renderer": renderer_info(),
            "reset_seeding": "per-episode"}


def targets_done(qpos: np.ndarray, targets) -> np.ndarray:
    """Which `targets` are within DONE_DISTANCE of their goal: qpos (..., 30) -> (..., K) bool."""
    qpos = np.asarray(qpos)
    return np.stack([np.linalg.norm(qpos[..., list(QPOS_INDICES[t])] - np.asarray(GOALS[t]), axis=-1)
                     < DONE_DISTANCE for t in targets], -1)


class KitchenPixels:
    """One Kitchen task rendered from the protocol's free camera (a gymnasium.Env)."""

    metadata = {"render_modes": []}

    def __init__(self, name: str, seed: int):
        ensure_backend()
        import gymnasium as gym
        from gymnasium_robotics.envs.franka_kitchen.kitchen_env import KitchenEnv

        self.spec_info = task_info(name)
        self.targets = TARGETS[name]
        self._sim = KitchenEnv(tasks_to_complete=list(self.targets), remove_task_when_completed=False,
                               terminate_on_tasks_completed=False)
        self._seed = seed
        self.episode_index = 0  # the next reset starts this episode (see harness.envs.base)
        self._renderer = FreeCameraRenderer(self.model, IMAGE_SIZE, **CAMERA)
        self.observation_space = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._t = 0

    @property
    def model(self):
        return self._sim.robot_env.model

    @property
    def data(self):
        return self._sim.robot_env.data

    def settings(self) -> dict:
        return settings(self.spec_info.task_id)

    def _done(self) -> np.ndarray:
        return targets_done(self.data.qpos, self.targets)

    def _info(self, done: np.ndarray) -> dict:
        return {"success": bool(done.all()), "targets_done": done}

    def reset(self, seed=None, options=None):
        if seed is not None:
            raise ValueError("seed the env at construction; reset(seed=...) would break the stream")
        self._sim.reset(seed=episode_seed(self._seed, self.episode_index, 0))
        self.episode_index += 1
        self._t = 0
        return self.render(), self._info(self._done())

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self._sim.step(action)
        self._t += 1
        done = self._done()
        return self.render(), float(done.sum()), False, self._t >= EPISODE_STEPS, self._info(done)

    def render(self) -> np.ndarray:
        return self._renderer.render(self.data)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Put the simulator in a stored state (for re-rendering recorded episodes)."""
        import mujoco

        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)
        # The robot's next position target is read from the last observation it made: refresh it.
        self._sim.robot_env._get_obs()

    @property
    def render_seconds(self) -> float:
        """Seconds this env has spent rendering observations (harness.timings)."""
        return self._renderer.seconds if self._renderer is not None else 0.0

    def close(self):
        self._renderer.close()
        self._sim.close()
