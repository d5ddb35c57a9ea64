"""The dataset directory: where each task's offline dataset lives, how it is written (whole or
not at all, through a staging directory), and how it is checked before a run trusts it.

One module owns it. `harness.data.collect` (scripted and random rollouts) and
`harness.data.kitchen` (the Minari import) only produce episodes and a manifest for it.

Layout: `<data dir>/<task dirname>/manifest.json` and `episode_000000.npz`, ... (the episode
format is `harness.data.format`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

from harness.data import format as fmt
from harness.envs import task_info
from harness.errors import UserError
from harness.results import process_alive


def default_data_dir() -> Path:
    if "MOTO_HARNESS_DATA" in os.environ:
        if not os.environ["MOTO_HARNESS_DATA"].strip():
            raise UserError("MOTO_HARNESS_DATA is set but empty: unset it (for the default "
                            "dataset directory) or name a directory.")
        return Path(os.environ["MOTO_HARNESS_DATA"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "moto-harness" / "datasets"


def dataset_dir(task_id: str, data_dir: Path) -> Path:
    return Path(data_dir) / task_info(task_id).dirname


def comparable(settings: dict) -> dict:
    """Settings that must match between a dataset and the agent's env (not the GL driver's vendor and name),
    in their JSON form, as the manifest stores them (tuples become lists)."""
    settings = json.loads(json.dumps(settings))
    if isinstance(settings.get("renderer"), dict):
        settings["renderer"] = {k: v for k, v in settings["renderer"].items()
                                if k not in ("gl_renderer", "gl_vendor")}
    return settings


def write_dataset(directory: Path, episodes: list[dict], manifest: dict) -> None:
    """Write a whole dataset atomically: a reader sees the old one or the new one, never half.
    The episodes go to a staging directory beside it, removed again if writing fails or is
    interrupted; staging directories that crashed writers left behind are removed first."""
    directory = Path(directory)
    refuse_linked(directory, len(episodes))
    if directory.exists() and not directory.is_dir():
        raise fmt.DatasetError(f"{directory} is a file, not a dataset directory; move it away.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(directory)
    staging = directory.with_name(f"{directory.name}.writing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for i, episode in enumerate(episodes):
            fmt.save_episode(staging / f"episode_{i:06d}.npz", episode)
        fmt.write_manifest(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if directory.exists():
        retired = directory.with_name(f"{directory.name}.old-{os.getpid()}")
        os.replace(directory, retired)
        os.replace(staging, directory)
        shutil.rmtree(retired)
    else:
        os.replace(staging, directory)


def refuse_linked(directory: Path, episodes: int) -> None:
    """A dataset directory that is a link (e.g. to a dataset shared with others) is never
    written over or replaced; one that is too short is the user's to extend."""
    if directory.is_symlink():
        raise fmt.DatasetError(
            f"{directory} is a link to {os.path.realpath(directory)}, which does not hold the "
            f"{episodes} episodes this launch needs, and a linked dataset is never written "
            "over. Make them where the link points (python -m harness data ... --episodes "
            f"{episodes} --data-dir <the folder that holds it>), or remove the link to make a "
            "private copy here.")


def remove_abandoned_staging(directory: Path) -> list[Path]:
    """Clean up after a writer that died mid-way (its pid is gone): remove its
    `<name>.writing-<pid>` staging directory, and its `<name>.old-<pid>` (the dataset it was
    replacing) unless `directory` itself is missing, when that old dataset is put back.
    Returns the paths removed."""
    removed = []
    for path in sorted(directory.parent.glob(f"{glob.escape(directory.name)}.*-*")):
        kind, _, pid = path.name[len(directory.name) + 1:].rpartition("-")
        if kind not in ("writing", "old") or not pid.isdigit() or process_alive(int(pid)):
            continue
        if kind == "old" and not directory.exists():
            os.replace(path, directory)  # killed between its two renames: keep the old data
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def how_to_fix(task_id: str, directory: Path) -> str:
    """What to do about a damaged dataset: make it again."""
    if task_info(task_id).dataset_policy == "minari":
        family, name = task_id.split("/", 1)
        return (f"Delete {directory} and import it again: python -m harness data {family} "
                f"--tasks {name}.")
    return f"Delete {directory}; the next run (or python -m harness data) makes it again."


def check_dataset(task_id: str, directory: Path, manifest: dict, check_first: int) -> None:
    """The dataset is whole: its manifest names this task, its episode files are exactly
    episode_000000.npz ... for the manifest's count, and the first `check_first` of them load
    with this task's shapes, dtypes and finite values. A DatasetError says what is wrong."""
    fix = how_to_fix(task_id, directory)
    if manifest["task"] != task_id:
        raise fmt.DatasetError(f"{directory / 'manifest.json'} is the manifest of {manifest['task']}, "
                               f"not {task_id}. {fix}")
    expected = [f"episode_{i:06d}.npz" for i in range(manifest["episodes"])]
    present = [p.name for p in fmt.episode_paths(directory)]
    if present != expected:
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}" if missing else "",
            f"not in the manifest {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
            if extra else "") if part)
        raise fmt.DatasetError(f"{directory} holds {len(present)} episode files, but its manifest "
                               f"says {manifest['episodes']} ({detail}). {fix}")
    info = task_info(task_id)
    for name in expected[:check_first]:
        fmt.load_episode(directory / name, info, fix)
