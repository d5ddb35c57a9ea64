"""The memory estimate (harness.memory) against the replay it models and a measured run, and
the SLURM launch that refuses to ask for less."""

import dataclasses

import numpy as np
import pytest

from harness import memory
from harness.envs import task_info
from harness.errors import UserError
from harness.replay import EpisodeReplay
from harness.suite import load_suite
from tests.helpers import episode, small_suite


def test_the_replay_costs_what_the_estimate_says_per_step_and_in_capacity():
    replay = EpisodeReplay((64, 64, 3), np.uint8, 4)
    per_step = memory.replay_bytes_per_step((64, 64, 3), np.uint8, 4)
    assert per_step == 12_322  # the image's 12,288 bytes and 34 more
    for i in range(11):  # 11 x 201 = 2,211 entries: capacity 4,096
        replay.add_episode(episode(200, obs_shape=(64, 64, 3), action_dim=4))
    assert replay.nbytes == replay.num_entries * per_step
    assert replay.allocated_bytes == memory.replay_allocated_bytes(replay.num_entries, per_step)
    assert replay.allocated_bytes == 4096 * per_step


def test_the_paper_schedule_stores_a_quarter_million_steps():
    spec = load_suite("metaworld10").runs()[0]
    steps = memory.replay_steps(spec.protocol, task_info(spec.task))
    assert steps == (10 + 1250) * 201
    assert memory.replay_allocated_bytes(steps, 12_322) == 2**18 * 12_322  # 3.0 GiB


def test_every_shipped_suite_asks_for_the_memory_its_runs_need():
    from harness.suite import SUITES_DIR

    estimated = 0
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        for spec in load_suite(str(path)).runs():
            needed = memory.estimate(spec)
            if spec.resources.gpus:
                assert needed is None  # not measured on a GPU
                continue
            estimated += 1
            assert needed["total_gb"] <= spec.resources.memory_gb, (path.name, spec.run_id, needed)
    assert estimated > 100


def test_the_paper_runs_fit_the_default_request_with_eight_cores():
    """metaworld10 with `cpus: 8` (8 evaluation workers) and the default memory_gb."""
    for spec in load_suite("metaworld10").runs():
        wide = dataclasses.replace(spec, resources=dataclasses.replace(spec.resources, cpus=8))
        needed = memory.estimate(wide)
        assert needed["eval_workers"] == 8
        assert needed["total_gb"] <= wide.resources.memory_gb, (spec.run_id, needed)


@pytest.mark.slow
def test_the_estimate_holds_a_measured_run_whose_replay_dominates(tmp_path, data_dir):
    """BC at `paper` (K = 1) on toy/reach from pixels with 600 dataset episodes and 2 online
    ones (30,702 stored steps of 12,314 bytes: 361 MiB of data in 385 MiB of arrays), in a
    fresh process as a launched run is: its peak RSS lies above its replay and below the
    estimate for it."""
    import subprocess
    import sys

    from harness.launch import prepare_datasets
    from harness.results import read_status

    (tmp_path / "s").mkdir()
    suite = small_suite(tmp_path / "s", tasks="[toy/reach]",
                        algorithms="[{name: bc, config: {steps_per_call: 1}}]",
                        protocol={"dataset_episodes": 600, "offline_steps": 2,
                                  "updates_per_episode": 1, "eval_episodes": 2})
    spec = load_suite(str(suite)).runs()[0]
    prepare_datasets([spec], data_dir)  # generated here: the run's process only loads them
    subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--executor", "debug",
                    "--results", str(tmp_path / "r"), "--data-dir", str(data_dir)], check=True)
    status = read_status(tmp_path / "r" / spec.run_id)
    assert status["state"] == "finished"
    measured, needed, info = status["memory"], memory.estimate(spec), task_info(spec.task)
    assert measured["replay_entries"] == memory.replay_steps(spec.protocol, info) == 602 * 51
    per_step = memory.replay_bytes_per_step(info.obs_shape, np.uint8, info.action_dim)
    assert measured["replay_allocated_bytes"] == 32_768 * per_step
    assert measured["replay_bytes"] / 2**20 < measured["peak_rss_mb"] < needed["total_gb"] * 1024


def test_slurm_is_not_asked_for_less_memory_than_a_run_needs(tmp_path, capsys):
    from harness.launch import launch

    (tmp_path / "s").mkdir()
    suite = small_suite(tmp_path / "s", tasks="[metaworld/door-open]",
                        protocol={"online_env_steps": 500_000})
    text = suite.read_text() + "resources: {memory_gb: 0.5}\n"
    suite.write_text(text)
    runs = load_suite(str(suite)).runs()
    with pytest.raises(UserError, match=r"resources.memory_gb is 0.5, the estimate .* GB"):
        launch(runs, tmp_path / "r", tmp_path / "data", executor="slurm")
    assert launch(runs, tmp_path / "r", tmp_path / "data", executor="local", dry_run=True) == 0
    assert "estimated to need" in capsys.readouterr().out
    on_gpus = [dataclasses.replace(s, resources=dataclasses.replace(s.resources, gpus=1))
               for s in runs]
    assert launch(on_gpus, tmp_path / "r", tmp_path / "data", executor="local", dry_run=True) == 0
    assert "estimated to need" not in capsys.readouterr().out  # no estimate for a GPU run
