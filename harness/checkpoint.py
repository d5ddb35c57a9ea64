"""A run's checkpoint: everything needed to continue it exactly, the latest one only.

    <run_dir>/checkpoint/
        state.json                     counters, RNG states, env episode counts, CSV row
                                       counts, the spec, and the SHA-256 of itself and of
                                       the agent file it names (replaced atomically)
        agent-<sha256>.npz             the algorithm's state_dict as its pytree's leaves, in
                                       order; written before the state.json that names it
        online/episode_NNNNNN.npz      the online episodes, one file each, written once as they
                                       are collected; state.json says how many belong to it

Nothing here is ever unpickled: a results tree someone copied or shared can hold any bytes,
and `pickle.load` of them runs code. The agent's leaves load with `allow_pickle=False` (object
arrays are refused), and the loader puts them back into the pytree structure of the agent
the run has just built (`restore_agent`), so the file holds no structure to trust. A file whose
checksum does not match, or a checkpoint in the old pickle format, is unusable: the run starts
over and keeps the old attempt (harness.run).

The offline dataset is not copied: a resumed run reloads it (its manifest's settings are
checked as at the start). Episode files past the checkpoint's count are the work of an attempt
that died after it; the resumed run collects those episodes again and overwrites them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from harness import faults
from harness.data import format as fmt

FORMAT_VERSION = 2
_AGENT_FILE = re.compile(r"agent-[0-9a-f]{64}\.npz")
MAX_STATE_BYTES = 16 * 2**20  # state.json holds counters and RNG states: kilobytes


class UnusableCheckpoint(Exception):
    """A checkpoint that cannot be trusted or read; the message says why."""


def directory(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoint"


def episode_path(run_dir: Path, index: int) -> Path:
    return directory(run_dir) / "online" / f"episode_{index:06d}.npz"


def save_episode(run_dir: Path, index: int, episode: dict) -> None:
    path = episode_path(run_dir, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.save_episode(path, episode)


def load_episodes(run_dir: Path, count: int) -> list[dict]:
    """The checkpoint's online episodes; UnusableCheckpoint if one is missing or damaged."""
    missing = [i for i in range(count) if not episode_path(run_dir, i).exists()]
    if missing:
        raise UnusableCheckpoint(f"{directory(run_dir)}: the checkpoint counts {count} online "
                                 f"episodes but episode files {missing[:5]} are missing")
    try:
        return [fmt.load_episode(episode_path(run_dir, i)) for i in range(count)]
    except fmt.DatasetError as err:
        raise UnusableCheckpoint(str(err)) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(state: dict) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def _write_atomic(path: Path, data: bytes, fault: str | None = None) -> None:
    """A temporary file, fsync, rename: a kill at any moment leaves the old file or the new."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        if fault:
            faults.point(fault)
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(run_dir: Path, state: dict, agent_leaves: list) -> None:
    """Write the agent's leaves, then the state.json that names them, then remove older agent
    files. `state` must be JSON (ints of any size, floats, strings, lists, dicts)."""
    folder = directory(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(leaf) for leaf in agent_leaves])
    agent_bytes = buffer.getvalue()
    agent_name = f"agent-{_sha256(agent_bytes)}.npz"
    if not (folder / agent_name).exists():
        _write_atomic(folder / agent_name, agent_bytes)
    body = {"format": FORMAT_VERSION, **state, "agent_file": agent_name,
            "agent_leaves": len(agent_leaves)}
    document = {"state": body, "sha256": _sha256(_canonical(body))}
    _write_atomic(folder / "state.json", json.dumps(document).encode(), "checkpoint-write")
    for old in folder.glob("agent-*.npz"):
        if old.name != agent_name:
            old.unlink(missing_ok=True)


def _read_regular(path: Path, limit: int | None = None) -> bytes:
    if not path.is_file():  # a FIFO or device would block the read, a directory fails it
        raise UnusableCheckpoint(f"{path} is not a regular file")
    if limit is not None and path.stat().st_size > limit:
        raise UnusableCheckpoint(f"{path} is larger than {limit} bytes")
    return path.read_bytes()


def load(run_dir: Path) -> dict | None:
    """The latest checkpoint's state (with `agent_leaves`: the list of arrays), or None when
    there is none. UnusableCheckpoint when it is damaged, in the old pickle format, or not
    what this code writes. Leftover temporary files of a write that was killed are removed."""
    folder = directory(run_dir)
    for tmp in folder.glob("*.tmp-*"):
        tmp.unlink(missing_ok=True)
    state_path = folder / "state.json"
    if not state_path.exists():
        if (folder / "state.pkl").exists():
            raise UnusableCheckpoint(f"{folder / 'state.pkl'} is in the old pickle format, which "
                                     "is never loaded (unpickling a file can run any code)")
        return None
    try:
        document = json.loads(_read_regular(state_path, MAX_STATE_BYTES))
        body, digest = document["state"], document["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise UnusableCheckpoint(f"{state_path} is not a checkpoint this code writes ({err})") from None
    if not isinstance(body, dict) or _sha256(_canonical(body)) != digest:
        raise UnusableCheckpoint(f"{state_path} does not match its checksum: damaged")
    if body.get("format") != FORMAT_VERSION:
        raise UnusableCheckpoint(f"{state_path}: checkpoint format {body.get('format')} is not "
                                 f"{FORMAT_VERSION}")
    agent_name = body.get("agent_file")
    if not isinstance(agent_name, str) or not _AGENT_FILE.fullmatch(agent_name):
        raise UnusableCheckpoint(f"{state_path} names no agent file of the form agent-<sha256>.npz")
    agent_bytes = _read_regular(folder / agent_name) if (folder / agent_name).exists() else None
    if agent_bytes is None:
        raise UnusableCheckpoint(f"{folder / agent_name}, which {state_path} names, is missing")
    if _sha256(agent_bytes) != agent_name[len("agent-"):-len(".npz")]:
        raise UnusableCheckpoint(f"{folder / agent_name} does not match its checksum: damaged")
    try:
        with np.load(io.BytesIO(agent_bytes), allow_pickle=False) as archive:
            leaves = [archive[f"arr_{i}"] for i in range(body["agent_leaves"])]
    except (ValueError, KeyError, OSError) as err:
        raise UnusableCheckpoint(f"{folder / agent_name} cannot be read ({err})") from None
    return {**body, "agent_leaves": leaves}


def agent_leaves(state_dict) -> list[np.ndarray]:
    """An algorithm's `state_dict()` as the list of its pytree's leaves, as host arrays."""
    import jax

    return [np.asarray(leaf) for leaf in jax.tree.leaves(state_dict)]


def restore_agent(template, leaves: list):
    """`template` (a fresh agent's `state_dict()`) with its leaves replaced by `leaves`, or
    UnusableCheckpoint when their number, shapes or dtypes differ (another version of the
    algorithm made the checkpoint)."""
    import jax

    expected, structure = jax.tree.flatten(template)
    layout = lambda xs: [(np.shape(x), np.asarray(x).dtype.str) for x in xs]
    if layout(expected) != layout(leaves):
        raise UnusableCheckpoint("its agent state has another layout than this code's (the "
                                 "checkpoint was made by an older version of the algorithm)")
    return jax.tree.unflatten(structure, leaves)
