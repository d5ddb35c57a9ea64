"""Small builders shared by tests."""

import contextlib
import textwrap
from pathlib import Path

SMALL_PROTOCOL = {"offline_steps": 20, "online_env_steps": 100, "updates_per_episode": 10,
                  "eval_every_episodes": 1, "eval_episodes": 1, "dataset_episodes": 2,
                  "train_log_every": 10}


def write_suite(directory: Path, text: str, name: str = "suite.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text))
    return path


def small_suite(directory: Path, tasks="[toy/reach]", seeds="[0]", protocol=None, name="t",
                algorithms="[{name: bc, preset: debug}]") -> Path:
    proto = {**SMALL_PROTOCOL, **(protocol or {})}
    lines = "\n".join(f"  {k}: {v}" for k, v in proto.items())
    return write_suite(directory, f"name: {name}\ntasks: {tasks}\nalgorithms: {algorithms}\n"
                                  f"seeds: {seeds}\nprotocol:\n{lines}\n")


def episode(n: int, obs_shape=(2, 2, 1), action_dim=2, start: int = 0, success_at=None,
            terminal=False):
    """A synthetic episode of n agent steps whose obs values are start, start+1, ..."""
    import numpy as np

    obs = (np.arange(start, start + n + 1) % 256).astype(np.uint8)
    obs = np.broadcast_to(obs[:, None, None, None], (n + 1, *obs_shape)).copy()
    action = np.stack([np.full(action_dim, float(start + t), np.float32) for t in range(n + 1)])
    action[0] = 0
    success = np.zeros(n + 1, bool)
    if success_at is not None:
        success[success_at] = True
    return {"obs": obs, "action": action, "reward": success.astype(np.float32),
            "success": success, "is_first": np.arange(n + 1) == 0,
            "is_last": np.arange(n + 1) == n,
            "is_terminal": (np.arange(n + 1) == n) & terminal}


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    """A tmpfs of `size` (e.g. "64k") mounted on a new `directory`, unmounted afterwards: a
    disk that fills up. Skips the test where mounting is not allowed (not root)."""
    import subprocess

    import pytest

    directory.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
