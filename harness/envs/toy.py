"""`toy/reach`: a cheap 64x64 pixel task on which every algorithm can learn in CPU minutes.

`toy/reach-state` is the same task observed as the state vector (agent x, y, goal x, y): the
same episodes, without the cost of images, for learning tests of the model-based agents, whose
pixel world models need more updates than a CPU test can afford (docs/benchmarks.md).

A red agent dot moves in the square [-1, 1]^2 by 0.08 * action per step toward a green goal
dot. Reward 1.0 on steps where the agent is within 0.15 of the goal; 50 steps, no early
termination (as in MetaWorld). The scripted demonstrator heads for the goal with Gaussian
action noise (std 0.3) at speed 0.7, so its data is good but not perfect.
"""

from __future__ import annotations

import numpy as np

from harness.envs.base import TaskInfo, episode_rng

SIZE = 64
EPISODE_STEPS = 50
STEP_SCALE = 0.08
SUCCESS_RADIUS = 0.15
DEMO_NOISE_STD = 0.3
INFO = TaskInfo("toy/reach", "toy", EPISODE_STEPS, 1, True, "scripted", (SIZE, SIZE, 3), 2)
STATE_INFO = TaskInfo("toy/reach-state", "toy", EPISODE_STEPS, 1, False, "scripted", (4,), 2)

_PIXEL_CENTRES = (np.arange(SIZE) + 0.5) / SIZE * 2.0 - 1.0  # pixel centre coordinates in [-1, 1]


def settings(pixels: bool) -> dict:
    """Everything that shapes the observations and the demonstrations."""
    return {"task": (INFO if pixels else STATE_INFO).task_id,
            "image_size": SIZE if pixels else None, "episode_steps": EPISODE_STEPS,
            "step_scale": STEP_SCALE, "success_radius": SUCCESS_RADIUS,
            "demo_noise_std": DEMO_NOISE_STD, "renderer": "numpy", "reset_seeding": "per-episode"}


class ToyReach:
    metadata = {"render_modes": []}

    def __init__(self, seed: int, pixels: bool = True):
        import gymnasium as gym

        self.pixels = pixels
        self.spec_info = INFO if pixels else STATE_INFO
        if pixels:
            self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._seed = seed
        self.episode_index = 0  # the next reset starts this episode (see harness.envs.base)
        self._rng = episode_rng(seed, 0, 2)
        self._agent = np.zeros(2)
        self._goal = np.zeros(2)
        self._t = 0

    def settings(self) -> dict:
        return settings(self.pixels)

    def _observe(self) -> np.ndarray:
        if not self.pixels:
            return np.concatenate([self._agent, self._goal]).astype(np.float32)
        return self._render()

    def _render(self) -> np.ndarray:
        image = np.full((SIZE, SIZE, 3), 60, np.uint8)
        for (x, y), radius, colour in ((self._goal, 0.22, (40, 220, 40)),
                                       (self._agent, 0.16, (230, 40, 40))):
            # Row 0 is the top of the image (+y), column 0 the left (-x).
            inside = ((_PIXEL_CENTRES[None, :] - x) ** 2
                      + (_PIXEL_CENTRES[::-1, None] - y) ** 2) <= radius**2
            image[inside] = colour
        return image

    def _success(self) -> bool:
        return bool(np.linalg.norm(self._agent - self._goal) < SUCCESS_RADIUS)

    def reset(self, seed=None, options=None):
        if seed is not None:
            raise ValueError("seed the env at construction; reset(seed=...) would break the stream")
        self._rng = episode_rng(self._seed, self.episode_index, 2)
        self.episode_index += 1
        self._agent = self._rng.uniform(-0.8, 0.8, 2)
        self._goal = self._rng.uniform(-0.8, 0.8, 2)
        while np.linalg.norm(self._agent - self._goal) < 0.6:
            self._goal = self._rng.uniform(-0.8, 0.8, 2)
        self._t = 0
        return self._observe(), {"success": self._success()}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self._agent = np.clip(self._agent + STEP_SCALE * action, -1.0, 1.0)
        self._t += 1
        success = self._success()
        return self._observe(), float(success), False, self._t >= EPISODE_STEPS, {"success": success}

    def scripted_action(self) -> np.ndarray:
        offset = self._goal - self._agent
        # Full speed 0.7 toward the goal, slowing down inside one step of it.
        heading = 0.7 * offset / max(np.linalg.norm(offset), STEP_SCALE)
        noisy = heading + self._rng.normal(0.0, DEMO_NOISE_STD, 2)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)

    def close(self):
        pass
