"""The on-disk episode format and dataset manifests.

A dataset is a directory:

    manifest.json           what made it and what it holds (see `write_manifest`)
    episode_000000.npz      one compressed NumPy archive per episode
    ...

An episode of T agent steps holds T+1 entries per key, in the order the agent saw them:

| key           | shape                | dtype   | meaning                                           |
|---------------|----------------------|---------|---------------------------------------------------|
| `obs`         | (T+1, 64, 64, 3)     | uint8   | image observations (float32 (T+1, D) for state)   |
| `action`      | (T+1, A)             | float32 | the action that led to this entry; zeros at t=0   |
| `reward`      | (T+1,)               | float32 | reward received on arriving here; 0 at t=0        |
| `success`     | (T+1,)               | bool    | the task's success flag at this entry             |
| `is_first`    | (T+1,)               | bool    | True at t=0 only                                  |
| `is_last`     | (T+1,)               | bool    | True at t=T only (time limit or termination)      |
| `is_terminal` | (T+1,)               | bool    | True at t=T only if the env terminated (not a time limit) |

Optional, for tasks with several targets (Kitchen):

| key            | shape    | dtype | meaning                                              |
|----------------|----------|-------|------------------------------------------------------|
| `targets_done` | (T+1, K) | bool  | which of the task's K targets are done at this entry |
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from harness.errors import UserError

KEYS = ("obs", "action", "reward", "success", "is_first", "is_last", "is_terminal")
OPTIONAL_KEYS = ("targets_done",)
FORMAT_VERSION = 1


def episode_return(episode: dict) -> float:
    return float(episode["reward"].sum())


def episode_success(episode: dict, bc_targets: int | None = None) -> bool:
    """Whether an episode counts as successful, for filtered behaviour regularization.

    Success at any step; or, when `bc_targets` = k is given and the episode carries
    `targets_done` (T+1, K) bools, its first k targets all done at one step (protocol:
    kitchen/partial counts episodes that complete its first three targets).
    """
    if bc_targets is not None and "targets_done" in episode:
        return bool(np.asarray(episode["targets_done"])[:, :bc_targets].all(-1).any())
    return bool(np.asarray(episode["success"]).any())


class DatasetError(UserError):
    """A dataset or episode file on disk that cannot be used as it is; the message names the
    file, what is wrong, and how to get a good copy."""


FLAG_KEYS = ("success", "is_first", "is_last", "is_terminal")


def check_episode(episode: dict, info=None) -> None:
    """The episode format (ValueError if not). With `info` (the task's `TaskInfo`) also the
    task's shapes and dtypes, and that every number is finite."""
    missing = [k for k in KEYS if k not in episode]
    if missing:
        raise ValueError(f"episode is missing keys {missing}")
    n = len(episode["obs"])
    bad = {k: len(episode[k]) for k in KEYS + OPTIONAL_KEYS if k in episode and len(episode[k]) != n}
    if bad or n < 2:
        raise ValueError(f"episode keys must all have the same length >= 2; obs has {n}, {bad}")
    if not episode["is_first"][0] or episode["is_first"][1:].any():
        raise ValueError("is_first must be True exactly at index 0")
    if not episode["is_last"][-1] or episode["is_last"][:-1].any():
        raise ValueError("is_last must be True exactly at the final index")
    if info is None:
        return
    expected = {"obs": ((n, *info.obs_shape), np.uint8 if info.pixels else np.float32),
                "action": ((n, info.action_dim), np.float32), "reward": ((n,), np.float32),
                **{k: ((n,), np.bool_) for k in FLAG_KEYS}}
    for key, (shape, dtype) in expected.items():
        array = episode[key]
        if array.shape != shape or array.dtype != dtype:
            raise ValueError(f"'{key}' is {array.dtype} {array.shape}, but {info.task_id} needs "
                             f"{np.dtype(dtype)} {shape}")
        if dtype == np.float32 and not np.isfinite(array).all():
            raise ValueError(f"'{key}' holds {np.size(array) - np.isfinite(array).sum()} NaN or "
                             "infinite values")
    if "targets_done" in episode:
        targets = episode["targets_done"]
        if targets.dtype != np.bool_ or targets.ndim != 2 or targets.shape[1] < (info.bc_targets or 0):
            raise ValueError(f"'targets_done' is {targets.dtype} {targets.shape}, but "
                             f"{info.task_id} needs bool ({n}, K) with K >= {info.bc_targets}")


def save_episode(path: Path, episode: dict) -> None:
    check_episode(episode)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **{k: episode[k] for k in KEYS + OPTIONAL_KEYS if k in episode})
    os.replace(tmp, path)


def load_episode(path: Path, info=None, fix: str = "") -> dict:
    """One episode file, checked (see `check_episode`); a file that cannot be read or is not a
    valid episode raises DatasetError naming it, followed by `fix`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            episode = {k: archive[k] for k in KEYS + OPTIONAL_KEYS if k in archive.files}
        check_episode(episode, info)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        what = "is not a valid episode" if isinstance(err, ValueError) else "cannot be read"
        size = (f"{path.stat().st_size} bytes" if path.is_file() else
                "a directory" if path.is_dir() else "missing")
        raise DatasetError(f"{path} ({size}) {what}: {err}. {fix}".strip()) from None
    return episode


def episode_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("episode_*.npz"))


def write_manifest(directory: Path, manifest: dict) -> None:
    tmp = directory / "manifest.json.tmp"
    # allow_nan=False: NaN is not JSON; a statistic of zero episodes must never be written.
    tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2,
                              allow_nan=False) + "\n")
    os.replace(tmp, directory / "manifest.json")


MAX_EPISODES = 10_000_000  # far above any dataset (D4RL Kitchen: 621; ours: 10 per task)
# What every manifest holds, and its type.
MANIFEST_KEYS = {"format_version": int, "task": str, "episodes": int, "env": dict}


def read_manifest(directory: Path, fix: str = "") -> dict | None:
    """The dataset's manifest, None if there is none; one that is not JSON, or lacks a key
    (MANIFEST_KEYS), raises DatasetError naming the file, followed by `fix`."""
    path = directory / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"{path} cannot be read as JSON ({err}). {fix}".strip()) from None
    problems = [] if isinstance(manifest, dict) else ["it is not a JSON object"]
    for key, kind in MANIFEST_KEYS.items():
        if problems:
            break
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            problems.append(f"'{key}' is missing or not {kind.__name__}")
    if not problems and manifest["format_version"] != FORMAT_VERSION:
        problems.append(f"format_version {manifest['format_version']} is not {FORMAT_VERSION}")
    if not problems and not 0 <= manifest["episodes"] <= MAX_EPISODES:
        problems.append(f"'episodes' is {manifest['episodes']}, not in [0, {MAX_EPISODES}]")
    if problems:
        raise DatasetError(f"{path} is not a dataset manifest: {problems[0]}. {fix}".strip())
    return manifest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def most_targets_done(episode: dict) -> int | None:
    """The most targets done at once in an episode (Kitchen's `eval_objects`), or None."""
    if "targets_done" not in episode:
        return None
    return int(np.asarray(episode["targets_done"]).sum(-1).max())


def summarize(episodes: list[dict]) -> dict:
    """The manifest's statistics (the paper's Table 1): episodes, steps, return, success rate."""
    returns = [episode_return(e) for e in episodes]
    return {"episodes": len(episodes),
            "steps": int(sum(len(e["obs"]) - 1 for e in episodes)),
            "average_return": float(np.mean(returns)) if returns else 0.0,
            "success_rate": float(np.mean([episode_success(e) for e in episodes])) if episodes else 0.0}
