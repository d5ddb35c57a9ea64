"""The scripted MetaWorld datasets of the paper's 10 tasks: success rate >= 0.9 in the manifests."""

import json

import pytest

from harness.cli import main
from harness.envs.metaworld import TASKS_10


@pytest.mark.slow
def test_scripted_datasets_for_the_ten_tasks(data_dir, capsys):
    assert main(["data", "metaworld", "--episodes", "10", "--data-dir", str(data_dir)]) == 0
    for task in TASKS_10:
        manifest = json.loads((data_dir / f"metaworld.{task}" / "manifest.json").read_text())
        assert manifest["episodes"] == 10 and manifest["steps"] == 2000
        assert manifest["success_rate"] >= 0.9, task
        assert manifest["attempt_success_rate"] >= 0.75, task  # the raw scripted policy
        assert manifest["env"]["action_repeat"] == 2
    out = capsys.readouterr().out
    assert all(f"metaworld/{t}" in out for t in TASKS_10)
