"""Rolling out policies into episodes, and making the offline datasets (stored by
`harness.data.store`).

Offline data per task family:
- `metaworld/*` and `metaworld-state/*`: Metaworld's scripted policies through the same wrapper the agent uses.
  We keep *successful* rollouts as demonstrations (ours: the raw scripted success rate of a
  few tasks is below 1, e.g. box-close ~0.87); the manifest records every attempt.
- `toy/reach`: the noisy scripted demonstrator; every rollout is kept.
- `gym/*`: a uniform random policy; every rollout is kept.

Datasets use a fixed data seed (not the run seed), so every run of a task shares one dataset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from harness.data import format as fmt
from harness.data import kitchen
from harness.data.store import (check_dataset, comparable, dataset_dir, how_to_fix,
                                refuse_linked, write_dataset)
from harness.envs import make_env, task_info
from harness.errors import UserError

DATA_SEED = 1_000_003
MAX_ATTEMPTS_PER_DEMO = 3


class EpisodeRecorder:
    """Builds one episode in the episode format, step by step (for `rollout`, and for the
    lockstep evaluation in `harness.evaluation`, which records N at once)."""

    def __init__(self, obs: np.ndarray, info: dict, action_shape: tuple):
        self.steps = {"obs": [obs], "action": [np.zeros(action_shape, np.float32)],
                      "reward": [0.0], "success": [info["success"]], "is_terminal": [False]}
        self.targets = [info["targets_done"]] if "targets_done" in info else None

    def add(self, action, obs, reward, terminated: bool, info: dict) -> None:
        for key, value in (("obs", obs), ("action", action), ("reward", reward),
                           ("success", info["success"]), ("is_terminal", terminated)):
            self.steps[key].append(value)
        if self.targets is not None:
            self.targets.append(info["targets_done"])

    def episode(self) -> dict:
        steps, n = self.steps, len(self.steps["obs"])
        episode = {
            "obs": np.stack(steps["obs"]),
            "action": np.stack(steps["action"]).astype(np.float32),
            "reward": np.asarray(steps["reward"], np.float32),
            "success": np.asarray(steps["success"], bool),
            "is_first": np.arange(n) == 0,
            "is_last": np.arange(n) == n - 1,
            "is_terminal": np.asarray(steps["is_terminal"], bool),
        }
        if self.targets is not None:
            episode["targets_done"] = np.asarray(self.targets, bool)
        return episode


def rollout(env, policy: Callable[[np.ndarray, bool], np.ndarray]) -> dict:
    """One episode of `env` under `policy(obs, is_first) -> action`, in the episode format."""
    obs, info = env.reset()
    recorder = EpisodeRecorder(obs, info, env.action_space.shape)
    is_first = True
    while True:
        action = np.asarray(policy(obs, is_first), np.float32)
        is_first = False
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.add(action, obs, reward, terminated, info)
        if terminated or truncated:
            return recorder.episode()


def _demonstrator(env):
    if hasattr(env, "scripted_action"):
        return lambda obs, first: env.scripted_action(), "scripted"
    return lambda obs, first: env.random_action(), "random"


def generate(task_id: str, episodes: int, progress: Callable[[int, int], None] | None = None
             ) -> tuple[list[dict], dict]:
    """Collect `episodes` offline episodes for a task; returns them and the manifest."""
    info = task_info(task_id)
    if episodes < 1:
        raise UserError(f"{task_id}: a dataset needs at least one episode, not {episodes}.")
    if info.dataset_policy == "minari":
        raise UserError(kitchen.how_to_get(task_id, kitchen.default_minari_dir()))
    env = make_env(task_id, DATA_SEED)
    policy, policy_name = _demonstrator(env)
    keep_successful_only = info.family in ("metaworld", "metaworld-state")
    kept, attempts = [], []
    try:
        while len(kept) < episodes:
            if len(attempts) >= MAX_ATTEMPTS_PER_DEMO * episodes:
                raise RuntimeError(
                    f"{task_id}: only {len(kept)} of {len(attempts)} scripted rollouts succeeded; "
                    f"cannot make {episodes} demonstrations")
            episode = rollout(env, policy)
            attempts.append(fmt.episode_success(episode))
            if fmt.episode_success(episode) or not keep_successful_only:
                kept.append(episode)
            if progress:
                progress(len(kept), episodes)
        settings = env.settings()
    finally:
        env.close()
    manifest = {
        "task": task_id, "policy": policy_name, "data_seed": DATA_SEED,
        "kept": "successful rollouts" if keep_successful_only else "all rollouts",
        **fmt.summarize(kept),
        "attempts": len(attempts),
        "attempt_success_rate": float(np.mean(attempts)),
        "env": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return kept, manifest


def ensure_dataset(task_id: str, episodes: int, data_dir: Path, env_settings: dict,
                   progress: Callable[[int, int], None] | None = None, generate_missing: bool = True,
                   check_episodes: bool = True) -> dict | None:
    """The task's dataset manifest, after generating the dataset if it is missing or short.
    A dataset made under other env settings is refused (never mixed, never overwritten); so is
    a damaged one (see `check_dataset`; `check_episodes=False` leaves the episode files' contents
    to the caller, who loads them anyway)."""
    directory = dataset_dir(task_id, data_dir)
    fix = how_to_fix(task_id, directory)
    if directory.exists() and not directory.is_dir():
        raise fmt.DatasetError(f"{directory} should be {task_id}'s dataset directory but is a "
                               "file; move it away (it is left as it is).")
    manifest = fmt.read_manifest(directory, fix)
    if manifest is not None and comparable(manifest["env"]) != comparable(env_settings):
        differing = sorted(k for k in set(manifest["env"]) | set(env_settings)
                           if comparable(manifest["env"]).get(k) != comparable(env_settings).get(k))
        raise UserError(
            f"the dataset in {directory} was made with other env settings than this code uses "
            f"({', '.join(differing)} differ; dataset: {manifest['env']}; now: {env_settings}). "
            "Move it away or pass another --data-dir, and it will be regenerated.")
    if manifest is None or manifest["episodes"] < episodes:
        if not generate_missing:
            return None
        refuse_linked(directory, episodes)  # before minutes of generation, not after
        if task_info(task_id).dataset_policy == "minari":
            manifest = _import_minari(task_id, episodes, data_dir, manifest)
        else:
            new_episodes, manifest = generate(task_id, episodes, progress)
            write_dataset(directory, new_episodes, manifest)
    check_dataset(task_id, directory, manifest, episodes if check_episodes else 0)
    return manifest


def _import_minari(task_id: str, episodes: int, data_dir: Path, manifest: dict | None) -> dict:
    """Kitchen: import the task's Minari dataset from Minari's local directory, if it is there
    (else a UserError that says how to get it); a dataset that is whole but short is refused."""
    if manifest is None:
        minari_dir = kitchen.default_minari_dir()
        print(f"importing {task_id} from the Minari dataset in {minari_dir} (re-rendering every "
              "frame; this takes a while)", flush=True)
        manifest = kitchen.import_tasks([task_id], minari_dir, data_dir)[task_id]
    if manifest["episodes"] < episodes:
        raise UserError(f"{task_id}: the imported dataset in {dataset_dir(task_id, data_dir)} holds "
                        f"{manifest['episodes']} episodes, fewer than the {episodes} the suite asks "
                        "for (protocol.dataset_episodes). Lower it, or import the full Minari dataset.")
    return manifest


def load_dataset(task_id: str, episodes: int, data_dir: Path, env_settings: dict,
                 progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], dict]:
    """The first `episodes` episodes of the task's dataset, generating it if it is missing;
    each checked as it loads (a DatasetError names a damaged file)."""
    manifest = ensure_dataset(task_id, episodes, data_dir, env_settings, progress,
                              check_episodes=False)
    directory = dataset_dir(task_id, data_dir)
    info, fix = task_info(task_id), how_to_fix(task_id, directory)
    return [fmt.load_episode(directory / f"episode_{i:06d}.npz", info, fix)
            for i in range(episodes)], manifest
