"""The scripted MetaWorld datasets of the paper's 10 tasks: success rate >= 0.9 in the manifests."""

import json

import pytest

from harness.cli import main
from harness.envs.metaworld import TASKS_10


@pytest.mark.slow
def test_scripted_datasets_for_the_ten_tasks(data_dir, capsys):
    """From state vectors, which skip rendering: the same scripted rollouts as from pixels
    (the next test), so the same success rates."""
    assert main(["data", "metaworld-state", "--episodes", "10", "--data-dir", str(data_dir)]) == 0
    for task in TASKS_10:
        manifest = json.loads((data_dir / f"metaworld-state.{task}" / "manifest.json").read_text())
        assert manifest["episodes"] == 10 and manifest["steps"] == 2000
        assert manifest["success_rate"] >= 0.9, task
        assert manifest["attempt_success_rate"] >= 0.75, task  # the raw scripted policy
        assert manifest["env"]["action_repeat"] == 2
    out = capsys.readouterr().out
    assert all(f"metaworld-state/{t}" in out for t in TASKS_10)


@pytest.mark.slow
def test_state_datasets_are_the_same_demonstrations(data_dir, capsys):
    """`data metaworld-state` keeps the same successful scripted rollouts as `data metaworld`:
    the same actions and rewards, with state vectors for observations."""
    from harness.data.format import load_episode
    from harness.envs import task_info

    tasks = ["drawer-open", "plate-slide"]
    for family in ("metaworld", "metaworld-state"):
        assert main(["data", family, "--tasks", *tasks, "--episodes", "3", "--data-dir",
                     str(data_dir)]) == 0
    for task in tasks:
        pixels_dir, state_dir = data_dir / f"metaworld.{task}", data_dir / f"metaworld-state.{task}"
        manifest = json.loads((state_dir / "manifest.json").read_text())
        assert manifest["task"] == f"metaworld-state/{task}" and manifest["success_rate"] == 1.0
        for i in range(3):
            name = f"episode_{i:06d}.npz"
            a = load_episode(pixels_dir / name, task_info(f"metaworld/{task}"), "")
            b = load_episode(state_dir / name, task_info(f"metaworld-state/{task}"), "")
            assert b["obs"].shape == (201, 39) and b["obs"].dtype == "float32"
            for key in ("action", "reward", "success"):
                assert (a[key] == b[key]).all(), (task, i, key)
