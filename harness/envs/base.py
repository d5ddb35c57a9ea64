"""What every task environment offers the run loop, on top of `gymnasium.Env`.

- `reset()` starts episode number `episode_index` (then counts it), seeded from (the seed
  given once at construction, that number) alone, so the same seed gives the same sequence of
  episodes and an env's whole random state is its episode count: a resumed run sets
  `episode_index` and continues the sequence exactly.
- `step(action)` takes an agent action in [-1, 1]^A and returns Gymnasium's 5-tuple with
  `info["success"]` (bool) for the current step.
- `spec_info`: the `TaskInfo` of the task; `settings()`: everything that changes the
  observations (camera, renderer, action repeat...), recorded in manifests and run configs.
- `scripted_action()` (optional): the task's scripted demonstrator, used to make datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def episode_rng(seed: int, episode: int, stream: int) -> np.random.Generator:
    """The generator for one episode of an env seeded `seed`; `stream` tells apart the
    independent uses inside one env (so no two of them draw the same numbers)."""
    return np.random.default_rng([seed, stream, episode])


def episode_seed(seed: int, episode: int, stream: int) -> int:
    """An integer seed for libraries that take one (Gymnasium, Metaworld), per episode."""
    return int(np.random.SeedSequence([seed, stream, episode]).generate_state(1)[0])


@dataclass(frozen=True)
class TaskInfo:
    """Static facts about a task, known without building its simulator."""

    task_id: str
    family: str
    episode_steps: int  # agent steps per episode
    action_repeat: int  # simulator steps per agent step
    pixels: bool  # observations are 64x64x3 uint8 images
    dataset_policy: str  # how its offline data is made: "scripted", "random" or "minari"
    obs_shape: tuple[int, ...]  # one observation: (64, 64, 3) uint8 images, or (D,) float32
    action_dim: int  # actions are in [-1, 1]^action_dim
    # Episodes of multi-target tasks (Kitchen) carry `targets_done` (T+1, K): they count as
    # successful for behaviour regularization when their first `bc_targets` targets are all
    # done at some step (kitchen/partial: 3). None: use `success`.
    bc_targets: int | None = None

    @property
    def episode_sim_steps(self) -> int:
        return self.episode_steps * self.action_repeat

    @property
    def dirname(self) -> str:
        """The task id as one path component: 'metaworld/door-open' -> 'metaworld.door-open'."""
        return self.task_id.replace("/", ".")
