"""Kitchen's offline data: the D4RL demonstrations, imported from local Minari datasets.

The relay-policy-learning demonstrations are published as the Minari datasets
`D4RL/kitchen/mixed-v2` and `D4RL/kitchen/partial-v2`: the same episodes, labelled for two
target sets. Each episode stores 59-d state observations, robot qpos (9) and qvel (9), then
object qpos (21) and qvel (20), and 9-d actions. The importer:

- re-renders every step's image with our camera and fast settings, by putting the simulator in
  the stored state (`KitchenPixels.set_state`);
- relabels rewards for our target sets (`kitchen.targets_done` on the stored qpos) and stores
  `targets_done` for behaviour regularization and `eval_objects`;
- writes one dataset per task, with a manifest that has the Table 1 numbers and how far
  replaying the stored actions from an episode's first state drifts from its stored states.

Source for each task, by target set (the paper's names are swapped relative to D4RL):
`kitchen/mixed` reads `D4RL/kitchen/partial-v2`, `kitchen/partial` reads `D4RL/kitchen/mixed-v2`.

No network here reaches Minari's servers: the files must already be on disk, under
`--minari-dir`, `$MINARI_DATASETS_PATH` or `~/.minari/datasets` (Minari's own default).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from harness.data import format as fmt
from harness.data.store import dataset_dir, write_dataset
from harness.errors import UserError

SOURCES = {"kitchen/mixed": "D4RL/kitchen/partial-v2", "kitchen/partial": "D4RL/kitchen/mixed-v2"}
OBS_DIM, ACTION_DIM = 59, 9
REPLAY_CHECK_EPISODES = 3  # episodes whose stored actions are replayed for the manifest


def default_minari_dir() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def source_file(task_id: str, minari_dir: Path) -> Path:
    return Path(minari_dir) / SOURCES[task_id] / "data" / "main_data.hdf5"


def how_to_get(task_id: str, minari_dir: Path) -> str:
    dataset = SOURCES[task_id]
    return (f"{task_id} needs the Minari dataset {dataset}, expected at "
            f"{source_file(task_id, minari_dir)}, which is not there. On a machine with internet "
            f"access: `pip install 'minari[hdf5]'` then `minari download {dataset}` (it writes to "
            f"~/.minari/datasets/{dataset}/); copy that folder here under DIR/{dataset}/ and run "
            f"`python -m harness data kitchen --minari-dir DIR` (or set MINARI_DATASETS_PATH=DIR "
            f"and start the run again).")


def read_episodes(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, observations (T+1, 59), actions (T, 9)) of every episode in a Minari HDF5 file,
    in episode order. Every problem is a UserError naming the file (and the episode)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: not a readable HDF5 file ({err}). The file is truncated or "
                        "not a Minari dataset; download it again.") from None
    episodes = []
    with handle:
        names = sorted((k for k in handle if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise UserError(f"{path}: holds no episode_N groups; is it a Minari dataset file?")
        for name in names:
            group = handle[name]
            try:
                observations = np.asarray(group["observations"]["observation"], np.float64)
                actions = np.asarray(group["actions"], np.float64)
            except (KeyError, TypeError) as err:
                raise UserError(f"{path}: {name} lacks observations/observation or actions "
                                f"({err}); download the dataset again.") from None
            except OSError as err:
                raise UserError(f"{path}: {name} cannot be read ({err}); the file is damaged, "
                                "download it again.") from None
            if observations.ndim != 2 or observations.shape[1] != OBS_DIM:
                raise UserError(f"{path}: {name} observations/observation has shape "
                                f"{observations.shape}, expected (T+1, {OBS_DIM}): not a Franka "
                                "Kitchen dataset.")
            if actions.shape != (len(observations) - 1, ACTION_DIM):
                raise UserError(f"{path}: {name} actions have shape {actions.shape}, expected "
                                f"({len(observations) - 1}, {ACTION_DIM}) for "
                                f"{len(observations)} observations.")
            if len(actions) < 1 or not (np.isfinite(observations).all() and np.isfinite(actions).all()):
                raise UserError(f"{path}: {name} is empty or holds non-finite values.")
            episodes.append((name, observations, actions))
    return episodes


def simulator_states(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """qpos (T+1, 30) and qvel (T+1, 29) from the 59-d observations."""
    qpos = np.concatenate([observations[:, 0:9], observations[:, 18:39]], -1)
    qvel = np.concatenate([observations[:, 9:18], observations[:, 39:59]], -1)
    return qpos, qvel


def render_states(env, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    frames = []
    for position, velocity in zip(qpos, qvel):
        env.set_state(position, velocity)
        frames.append(env.render())
    return np.stack(frames)


def to_episode(frames: np.ndarray, qpos: np.ndarray, actions: np.ndarray, targets) -> dict:
    """One stored episode in our format, rewards relabelled for `targets`."""
    from harness.envs.kitchen import targets_done

    done = targets_done(qpos, targets)
    n = len(frames)
    reward = done.sum(-1).astype(np.float32)
    reward[0] = 0.0  # the format: reward received on arriving at an entry, none at t = 0
    return {"obs": frames, "reward": reward, "success": done.all(-1), "targets_done": done,
            "action": np.concatenate([np.zeros((1, ACTION_DIM)), np.clip(actions, -1, 1)]).astype(np.float32),
            "is_first": np.arange(n) == 0, "is_last": np.arange(n) == n - 1,
            "is_terminal": np.zeros(n, bool)}


def replay_drift(env, qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray) -> dict:
    """Replay the stored actions from the stored first state: how far the simulated robot and
    object positions end up from the stored ones (mean and max absolute difference over steps
    and joints, radians or metres)."""
    env.set_state(qpos[0], qvel[0])
    errors = []
    for t, action in enumerate(actions, start=1):
        env.step(action)
        errors.append(np.abs(np.asarray(env.data.qpos) - qpos[t]))
    errors = np.stack(errors)
    return {"robot_mean": float(errors[:, :9].mean()), "objects_mean": float(errors[:, 9:].mean()),
            "max": float(errors.max())}


def import_tasks(task_ids: list[str], minari_dir: Path, data_dir: Path,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """Convert each task's Minari dataset into our dataset directory; returns the manifests.

    Episodes stored identically in both sources are rendered once.
    """
    from harness.envs import make_env

    for task in task_ids:  # check every file before the long part
        if not source_file(task, minari_dir).exists():
            raise UserError(how_to_get(task, minari_dir))
    rendered: dict[str, np.ndarray] = {}
    manifests = {}
    for task in task_ids:
        path = source_file(task, minari_dir)
        source = read_episodes(path)
        env = make_env(task, 0)
        try:
            episodes, drifts = [], []
            for i, (name, observations, actions) in enumerate(source):
                qpos, qvel = simulator_states(observations)
                key = hashlib.sha1(observations.tobytes()).hexdigest()
                if key not in rendered:
                    rendered[key] = render_states(env, qpos, qvel)
                episodes.append(to_episode(rendered[key], qpos, actions, env.targets))
                if i < REPLAY_CHECK_EPISODES:
                    drifts.append(replay_drift(env, qpos, qvel, actions))
                if progress:
                    progress(task, i + 1, len(source))
            settings = env.settings()
        finally:
            env.close()
        bc_targets = env.spec_info.bc_targets
        manifest = {
            "task": task, "policy": "D4RL relay-policy-learning demonstrations (Minari)",
            "source": SOURCES[task], "source_file": str(path),
            "source_metadata": _source_metadata(path),
            "kept": "all episodes", **fmt.summarize(episodes),
            "attempts": len(episodes),
            "attempt_success_rate": fmt.summarize(episodes)["success_rate"],
            "bc_episodes": int(sum(fmt.episode_success(e, bc_targets) for e in episodes)),
            "average_most_targets_done": float(np.mean([fmt.most_targets_done(e) for e in episodes])),
            "replay_drift": {"episodes": len(drifts),
                             **{k: float(np.mean([d[k] for d in drifts])) for k in drifts[0]}},
            "env": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_dataset(dataset_dir(task, data_dir), episodes, manifest)
        manifests[task] = manifest
    return manifests


def _source_metadata(path: Path) -> dict:
    """The Minari metadata.json next to the file (id, counts, version), when readable."""
    try:
        meta = json.loads((path.parent / "metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: meta.get(k) for k in ("dataset_id", "total_episodes", "total_steps", "minari_version")}
