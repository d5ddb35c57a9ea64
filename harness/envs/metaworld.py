"""MetaWorld tasks from 64x64 pixels, as protocol.md specifies, and from state vectors.

Per reset: fresh object/goal positions drawn from (seed, episode index) (not one of 50 frozen tasks),
hand start (0.1, 0.5, 0.3) + N(0, 0.02^2) per axis, then 10 zero actions before the first
observation. Action repeat 2, 200 agent steps, sparse reward 1.0 when the last sub-step
reports success, no termination at success.

`metaworld-state/<task>` is the same task, episodes and demonstrations with MetaWorld's own
39-d state vector as the observation (float32; hand position, gripper opening, two objects'
positions and quaternions, the previous step's copy of those 18 numbers, and the goal position,
which is shown: not partially observable). It exists so that the algorithms can be shown to
learn the real tasks on a CPU, where a world model from 64x64 pixels is too slow to train
(docs/results.md).
"""

from __future__ import annotations

import warnings

import numpy as np

from harness.envs.base import TaskInfo, episode_rng, episode_seed
from harness.envs.render import FreeCameraRenderer, ensure_backend, renderer_info

TASKS_10 = ("assembly", "bin-picking", "box-close", "coffee-push", "disassemble", "door-open",
            "drawer-open", "hammer", "plate-slide", "window-open")

CAMERA = {"distance": 0.75, "azimuth": 15.0, "elevation": -22.5, "lookat": (-0.15, 0.65, 0.25)}
IMAGE_SIZE = 64
ACTION_REPEAT = 2
EPISODE_STEPS = 200
ACTION_DIM = 4  # end-effector x, y, z and gripper
HAND_START = (0.1, 0.5, 0.3)
HAND_NOISE_STD = 0.02
NOOP_STEPS = 10


def task_names() -> list[str]:
    """Every MetaWorld 3 task, named without the '-v3' suffix."""
    ensure_backend()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(name[: -len("-v3")] for name in ALL_V3_ENVIRONMENTS)


STATE_DIM = 39  # Metaworld 3's observation vector, goal included


def task_info(name: str, pixels: bool = True) -> TaskInfo:
    if pixels:
        return TaskInfo(f"metaworld/{name}", "metaworld", EPISODE_STEPS, ACTION_REPEAT, True,
                        "scripted", (IMAGE_SIZE, IMAGE_SIZE, 3), ACTION_DIM)
    return TaskInfo(f"metaworld-state/{name}", "metaworld-state", EPISODE_STEPS, ACTION_REPEAT,
                    False, "scripted", (STATE_DIM,), ACTION_DIM)


def settings(task_id: str) -> dict:
    """Everything that shapes the observations, known without building the simulator."""
    common = {"task": task_id, "action_repeat": ACTION_REPEAT, "episode_steps": EPISODE_STEPS,
              "hand_start": HAND_START, "hand_noise_std": HAND_NOISE_STD,
              "noop_steps": NOOP_STEPS, "reward": "sparse success", "reset_seeding": "per-episode"}
    if task_id.startswith("metaworld-state/"):
        return {**common, "observation": f"state vector ({STATE_DIM}, goal shown)", "renderer": None}
    return {**common, "image_size": IMAGE_SIZE, "camera": CAMERA, "renderer": renderer_info()}


def _policy_class_name(name: str) -> str:
    return "Sawyer" + "".join(part.capitalize() for part in name.split("-")) + "V3Policy"


class MetaWorldPixels:
    """One MetaWorld task rendered from the protocol's free camera (a gymnasium.Env)."""

    metadata = {"render_modes": []}
    pixels = True

    def __init__(self, name: str, seed: int):
        ensure_backend()
        import gymnasium as gym
        import metaworld
        import metaworld.policies
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self.spec_info = task_info(name, self.pixels)
        self._sim = ALL_V3_ENVIRONMENTS[f"{name}-v3"]()
        # A Task object puts the goal into the state vector the scripted policies read; then
        # unfreeze the reset randomization and draw it from Metaworld's generator, which each
        # reset seeds from (seed, episode index).
        self._sim.set_task(metaworld.MT1(f"{name}-v3", seed=0).train_tasks[0])
        self._sim._partially_observable = False  # the goal is part of the state vector
        self._sim._freeze_rand_vec = False
        self._sim.seeded_rand_vec = True
        self._sim.max_path_length = 10**9  # episode length is ours to enforce
        self._seed = seed
        self.episode_index = 0  # the next reset starts this episode (see harness.envs.base)
        self._policy = getattr(metaworld.policies, _policy_class_name(name))()
        if self.pixels:
            self._renderer = FreeCameraRenderer(self._sim.model, IMAGE_SIZE, **CAMERA)
            self.observation_space = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        else:
            self._renderer = None
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._state = None
        self._t = 0

    def settings(self) -> dict:
        return settings(self.spec_info.task_id)

    def reset(self, seed=None, options=None):
        if seed is not None:
            raise ValueError("seed the env at construction; reset(seed=...) would break the stream")
        self._sim.seed(episode_seed(self._seed, self.episode_index, 0))
        hand_rng = episode_rng(self._seed, self.episode_index, 1)
        self.episode_index += 1
        hand = np.asarray(HAND_START) + hand_rng.normal(0.0, HAND_NOISE_STD, 3)
        self._sim.hand_init_pos = hand
        self._state, _ = self._sim.reset()
        for _ in range(NOOP_STEPS):
            self._state, *_ = self._sim.step(np.zeros(4, np.float32))
        self._t = 0
        return self._observe(), {"success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        for _ in range(ACTION_REPEAT):
            self._state, _, _, _, info = self._sim.step(action)
        self._t += 1
        success = bool(info["success"])
        obs = self._observe()
        return obs, float(success), False, self._t >= EPISODE_STEPS, {"success": success}

    def _observe(self) -> np.ndarray:
        if self.pixels:
            return self._renderer.render(self._sim.data)
        return self._state.astype(np.float32)

    def scripted_action(self) -> np.ndarray:
        """Metaworld's scripted policy for this task, acting on the hidden state vector."""
        with warnings.catch_warnings():  # "Constant(s) may be too high": we clip, as the env does
            warnings.simplefilter("ignore", UserWarning)
            action = self._policy.get_action(self._state)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    @property
    def render_seconds(self) -> float:
        """Seconds this env has spent rendering observations (harness.timings)."""
        return self._renderer.seconds if self._renderer is not None else 0.0

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
        self._sim.close()


class MetaWorldState(MetaWorldPixels):
    """The same task observed as Metaworld's state vector (float32, goal shown), no rendering."""

    pixels = False
