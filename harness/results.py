"""The results tree, and the one place that writes a run's status.

    <results>/<suite>/<task with / as .>/<label>/seed<k>/
        status.json   state, progress, host, pid, heartbeat, last error (written here only)
        .lock         held (flock) by the one process working on the run
        metrics.csv, train.csv, config.yaml, checkpoint/, previous/attempt-N/

States written to status.json: `pending` (submitted, not started), `running`, `interrupted`
(stopped by a signal or a preemption, resumable), `finished`, `failed`. `status` also derives
`stale`: a `running` run whose process is gone (its lock is free, on this host) or, on another
host, whose heartbeat is older than `STALE_AFTER_S`. A stale or interrupted run resumes from
its checkpoint when the suite is run again.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import yaml

from harness.cores import usable_cores
from harness.errors import UserError

HEARTBEAT_S = 30.0  # a running run rewrites its status at least this often
STALE_AFTER_S = 600.0  # a heartbeat older than this, from another host, means the run is gone
LOCK_NAME = ".lock"
# The parts of a run's spec that make it the same run (resources and checkpointing do not).
IDENTITY_KEYS = ("suite", "task", "seed", "algorithm", "protocol")


def run_dir(results: Path, run_id: str) -> Path:
    return Path(results) / run_id


# What a run writes in its directory; none of them may be a link out of the results tree.
RUN_ENTRIES = ("status.json", "config.yaml", "metrics.csv", "train.csv", "checkpoint",
               "previous", LOCK_NAME)


class LinkedRunPath(UserError):
    pass


def refuse_links(results: Path, run_id: str, checked: set | None = None) -> None:
    """Raise LinkedRunPath if a folder between `results` and the run, the run's folder, or an
    entry the run writes in it is a symbolic link: the run would write outside the results tree
    while `status` and `report` (which never follow links) do not see it. `results` itself may
    be a link. `checked` caches the folders already seen, for suites of many runs."""
    checked = set() if checked is None else checked
    path = Path(results)
    for part in Path(run_id).parts:
        path = path / part
        if path in checked:
            continue
        if path.is_symlink():
            raise LinkedRunPath(
                f"{path} is a symbolic link (to {os.path.realpath(path)}); a run is only "
                "written inside --results. Replace the link with the folder it points to, or "
                "give that place as --results.")
        if not path.exists():
            return  # nothing below it exists yet
        checked.add(path)
    for name in RUN_ENTRIES:
        entry = path / name
        if entry.is_symlink():
            raise LinkedRunPath(
                f"{entry} is a symbolic link (to {os.path.realpath(entry)}); a run writes its "
                "files, its checkpoints and its earlier attempts only inside its own folder. "
                "Replace the link with what it points to, or remove it.")


def iter_run_dirs(results: Path, suite: str | None = None):
    """Every run directory (<suite>/<task>/<label>/seed<k>) under `results`, sorted."""
    results = Path(results)
    suites = [results / suite] if suite else sorted(p for p in _subdirs(results)
                                                   if not p.name.startswith(("_", ".")))
    for suite_dir in suites:
        for task in sorted(_subdirs(suite_dir)):
            for label in sorted(_subdirs(task)):
                yield from sorted(p for p in _subdirs(label) if p.name.startswith("seed"))


def ignored_entries(results: Path, suite: str | None = None) -> list[tuple[str, str]]:
    """(path, why) of what `iter_run_dirs` passes over in the tree's suite, task, label and
    run levels: symlinks (never followed, so a loop or a link outside the tree is harmless)
    and files where run directories would be (`seed9` as a file)."""
    results = Path(results)
    found = []

    def entries(path: Path):
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError:
            return []

    def walk(path: Path, depth: int):
        for entry in entries(path):
            if depth == 0 and (entry.name.startswith(("_", ".")) or (suite and entry.name != suite)):
                continue
            shown = str(Path(entry.path).relative_to(results))
            if entry.is_symlink():
                found.append((shown, "a symlink; not followed"))
            elif entry.is_dir(follow_symlinks=False):
                if depth < 3:
                    walk(Path(entry.path), depth + 1)
            elif depth == 3 and entry.name.startswith("seed"):
                found.append((shown, "a file where a run directory should be"))
    walk(results, 0)
    return found


def _subdirs(path: Path):
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:  # unreadable, a symlink loop, /proc
        print(f"warning: {path} cannot be read ({err.strerror}); skipped", file=sys.stderr)
        return []


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file, then rename: a reader sees the old file or the new one."""
    tmp = Path(f"{path}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict | None:
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    except OSError as err:  # a directory, or unreadable
        return {"state": "damaged", "error": f"{Path(run_dir) / 'status.json'} cannot be read "
                                            f"({err.strerror}); fix it or move the run away"}
    return status if isinstance(status, dict) else None


def write_status(run_dir: Path, state: str, **fields) -> dict:
    """Replace a run's status.json with `state` and `fields`, stamped with host, pid and time."""
    now = time.time()
    status = {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
              "heartbeat": now, "host": platform.node(), "pid": os.getpid(), **fields}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(run_dir) / "status.json", status)
    return status


def slurm_job_id() -> str | None:
    """This process's SLURM job as squeue shows it (`<array>_<task>` for an array task), or
    None outside SLURM."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


class StatusFile:
    """The status of the run this process works on. The run loop calls `set`; a heartbeat
    thread calls `beat`, which rewrites the last status with a fresh timestamp."""

    def __init__(self, run_dir: Path, run_id: str, run_lock: "RunLock | None" = None):
        self.run_dir, self.run_id, self.run_lock = Path(run_dir), run_id, run_lock
        self._lock = threading.Lock()
        self._state, self._fields = "running", {}
        self.last_write = 0.0
        self.cores = usable_cores()  # the cores this process may run on
        self.slurm_job = slurm_job_id()  # kept through requeues: a relaunch sees it queued


    def set(self, state: str, **fields) -> None:
        """Raises RunDirectoryGone, instead of making a new directory, when the run's
        directory was deleted or moved under the run."""
        with self._lock:
            if self.run_lock is not None and not self.run_lock.in_place():
                raise RunDirectoryGone(
                    f"the run's directory {self.run_dir} was deleted or moved while the run "
                    "worked in it, so what it wrote since is not there; run the suite again to "
                    "start the run over.")
            self._state, self._fields = state, {"run_id": self.run_id, "cores": self.cores,
                                                **({"slurm_job": self.slurm_job}
                                                   if self.slurm_job else {}), **fields}
            write_status(self.run_dir, state, **self._fields)
            self.last_write = time.time()

    def beat(self) -> None:
        with self._lock:
            if self.run_lock is not None and not self.run_lock.in_place():
                return  # the run's next `set` raises RunDirectoryGone
            if self._state == "running":
                write_status(self.run_dir, self._state, **self._fields)
                self.last_write = time.time()


class RunBusy(UserError):
    pass


class RunDirectoryGone(Exception):
    """A run's directory was deleted or moved while the run worked in it."""


class RunLock:
    """An exclusive flock on `<run_dir>/.lock`, so two processes never write one run. The
    kernel releases it when the process dies, however it dies."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            status = read_status(self.path.parent) or {}
            raise RunBusy(f"run {self.path.parent} is being written by another process (host "
                          f"{status.get('host', '?')}, pid {status.get('pid', '?')}). Wait for it "
                          "or stop it; two processes never write one run.") from None
        self._fd = fd
        return self

    def in_place(self) -> bool:
        """Whether the locked file is still `<run_dir>/.lock`: False once the run directory
        was deleted (the open file has no name left) or moved (the path names another file)."""
        if self._fd is None:
            return True
        held = os.fstat(self._fd)
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        return held.st_nlink > 0 and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_is_held(run_dir: Path) -> bool:
    """True if some process (this one included) holds the run's lock."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def observed_state(run_dir: Path, status: dict | None = None, now: float | None = None) -> str:
    """The state `status` shows: the written one, or `stale` for a running run that is gone."""
    status = read_status(run_dir) if status is None else status
    if not status:
        return "pending"
    state = status.get("state", "?")
    if state == "running":
        if status.get("host") == platform.node():
            if not lock_is_held(run_dir):
                return "stale"
        elif (now or time.time()) - number(status.get("heartbeat")) > STALE_AFTER_S:
            return "stale"
    return state if isinstance(state, str) else "?"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def number(value) -> float:
    """A status field as a number; 0 when it is not one (an old or hand-edited file)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def mark_interrupted_if_gone(run_dir: Path, reason: str) -> bool:
    """After a worker died without saying so: `running` -> `interrupted`, if no process holds
    the run. Returns True if it changed the status."""
    status = read_status(run_dir)
    if not status or status.get("state") not in ("running", "pending"):
        return False
    try:
        lock = RunLock(run_dir).acquire()
    except RunBusy:
        return False
    try:
        status = read_status(run_dir) or {}
        if status.get("state") not in ("running", "pending"):
            return False
        fields = {k: v for k, v in status.items()
                  if k not in ("state", "updated", "heartbeat", "host", "pid")}
        write_status(run_dir, "interrupted", **{**fields, "error": reason})
        return True
    finally:
        lock.release()


def identity(spec_dict: dict) -> dict:
    return {k: spec_dict.get(k) for k in IDENTITY_KEYS}


def is_finished(results: Path, spec) -> bool:
    """True if the run finished with this very spec; a UserError if it finished with another.

    Skipping a finished run made under other settings (another protocol, config override or
    preset) would mix results silently, so that is refused with the differing fields named.
    """
    directory = run_dir(results, spec.run_id)
    status = read_status(directory)
    if not status or status.get("state") != "finished":
        return False
    try:
        recorded = yaml.safe_load((directory / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        recorded = {}
    wanted = identity(spec.as_dict())
    differing = sorted(key for key in wanted if recorded.get(key) != wanted[key])
    if differing:
        raise UserError(
            f"run {spec.run_id} already finished with other settings ({', '.join(differing)} "
            f"differ from the suite's). Use another --results directory, or move {directory} away "
            "to run it again.")
    return True
