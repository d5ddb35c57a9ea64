"""A run's checkpoint: everything needed to continue it exactly, the latest one only.

    <run_dir>/checkpoint/
        state.pkl                      the algorithm's state_dict, counters, RNG states, env
                                       episode counts, CSV row counts (replaced atomically)
        online/episode_NNNNNN.npz      the online episodes, one file each, written once as they
                                       are collected; state.pkl says how many belong to it

The offline dataset is not copied: a resumed run reloads it (its manifest's settings are
checked as at the start). Episode files past the checkpoint's count are the work of an attempt
that died after it; the resumed run collects those episodes again and overwrites them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from harness import faults
from harness.data import format as fmt

FORMAT_VERSION = 1


def directory(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def episode_path(run_dir: Path, index: int) -> Path:
    return directory(run_dir) / "online" / f"episode_{index:06d}.npz"


def save_episode(run_dir: Path, index: int, episode: dict) -> None:
    path = episode_path(run_dir, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.save_episode(path, episode)


def load_episodes(run_dir: Path, count: int) -> list[dict]:
    missing = [i for i in range(count) if not episode_path(run_dir, i).exists()]
    if missing:
        raise RuntimeError(f"{directory(run_dir)}: the checkpoint counts {count} online episodes "
                           f"but episode files {missing[:5]} are missing")
    return [fmt.load_episode(episode_path(run_dir, i)) for i in range(count)]


def save(run_dir: Path, state: dict) -> None:
    """Write state.pkl atomically (a temporary file, fsync, rename): a kill at any moment
    leaves the previous checkpoint or this one, never a torn file."""
    target = directory(run_dir) / "state.pkl"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"state.pkl.tmp-{os.getpid()}")
    data = pickle.dumps({"format": FORMAT_VERSION, **state}, protocol=pickle.HIGHEST_PROTOCOL)
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        faults.point("checkpoint-write")
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def load(run_dir: Path) -> dict | None:
    """The latest checkpoint, or None when there is none. Leftover temporary files of a write
    that was killed are removed."""
    folder = directory(run_dir)
    for tmp in folder.glob("state.pkl.tmp-*"):
        tmp.unlink(missing_ok=True)
    try:
        with open(folder / "state.pkl", "rb") as f:
            state = pickle.load(f)
    except FileNotFoundError:
        return None
    if state.get("format") != FORMAT_VERSION:
        raise RuntimeError(f"{folder}: checkpoint format {state.get('format')} is not "
                           f"{FORMAT_VERSION}; move the run directory away to start it over")
    return state
