"""End to end through the real run loop and CLI, with tiny budgets."""

import dataclasses
import json
import os
import shutil
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import yaml

from algorithms import base
from harness.cli import main
from harness.cores import core_slots, usable_cores
from tests.helpers import small_suite


def read(results, run_id, name):
    return (results / run_id / name).read_text()


@pytest.mark.slow
def test_smoke_like_suite_writes_every_file_and_reruns_skip_finished(tmp_path, capsys):
    path = small_suite(tmp_path, tasks="[toy/reach, metaworld/door-open]",
                       protocol={"online_env_steps": 400, "eval_every_episodes": 1})
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    for task, episodes in (("toy.reach", 8), ("metaworld.door-open", 1)):
        run = results / "t" / task / "bc" / "seed0"
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "finished"
        metrics = pd.read_csv(run / "metrics.csv")
        assert list(metrics.phase) == ["offline"] + ["online"] * episodes
        assert metrics.env_steps.iloc[-1] == 400  # simulator steps, action repeat counted
        assert (metrics.grad_steps.diff().dropna() == 10).all()
        train = pd.read_csv(run / "train.csv")
        assert {"bc_loss", "updates_per_second"} <= set(train.columns)
        assert train.grad_steps.is_monotonic_increasing and len(train) >= 3
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["algorithm_config"]["batch_size"] == 32
        assert config["versions"]["jax"] and config["protocol"]["offline_steps"] == 20
    config = yaml.safe_load((results / "t/metaworld.door-open/bc/seed0/config.yaml").read_text())
    assert config["env"]["renderer"]["backend"] in ("egl", "osmesa")
    assert config["dataset"]["success_rate"] == 1.0
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    out = capsys.readouterr().out
    assert "2 runs: 2 finished" in out and "0 to run" in out
    # The same runs under other settings are not silently skipped.
    assert main(["run", str(path), "--results", str(results), "--executor", "debug",
                 "--set", "protocol.offline_steps=30"]) == 2
    assert "already finished with other settings (protocol differ" in capsys.readouterr().err
    assert main(["report", "--results", str(results)]) == 0
    final = pd.read_csv(results / "_report" / "t" / "final.csv")
    assert set(final.task) == {"toy/reach", "metaworld/door-open"} and (final.n == 1).all()
    for family in ("toy", "metaworld"):
        assert (results / "_report" / "t" / f"curves-{family}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics(tmp_path):
    path = small_suite(tmp_path)
    outputs = []
    for attempt in ("a", "b"):
        results = tmp_path / attempt
        assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
        metrics = pd.read_csv(results / "t/toy.reach/bc/seed0/metrics.csv").drop(columns="wall_time")
        outputs.append(metrics)
    pd.testing.assert_frame_equal(*outputs)
    assert len(outputs[0]) == 3


@pytest.mark.slow
def test_local_executor_runs_each_run_in_its_own_process(tmp_path):
    path = small_suite(tmp_path, seeds="[0, 1]")
    results = tmp_path / "r"
    assert main(["run", str(path), "--results", str(results), "--only", "seed=1"]) == 0
    assert json.loads(read(results, "t/toy.reach/bc/seed1", "status.json"))["state"] == "finished"
    assert not (results / "t/toy.reach/bc/seed0").exists()


@pytest.mark.slow
@pytest.mark.skipif(len(usable_cores()) < 2 or not hasattr(os, "sched_setaffinity"),
                    reason="pinning needs 2 cores and Linux")
def test_local_executor_gives_each_parallel_run_its_own_core(tmp_path):
    path = small_suite(tmp_path, seeds="[0, 1]")  # resources: 1 cpu per run (the default)
    results = tmp_path / "r"
    assert main(["run", str(path), "--results", str(results), "--max-parallel", "2"]) == 0
    cores = [json.loads(read(results, f"t/toy.reach/bc/seed{seed}", "status.json"))["cores"]
             for seed in (0, 1)]
    assert sorted(cores) == [[core] for core in usable_cores()[:2]]


def test_core_slots_are_disjoint_and_only_when_every_run_gets_its_own():
    assert core_slots([3, 0, 2, 1], workers=2, per_worker=2) == [(0, 1), (2, 3)]
    assert core_slots([0, 1, 2, 3], workers=3, per_worker=1) == [(0,), (1,), (2,)]
    assert core_slots([0, 1], workers=3, per_worker=1) == []  # oversubscribed: share
    assert core_slots([0, 1, 2], workers=2, per_worker=2) == []


class NaNAlgorithm:
    """A ninth algorithm defined outside the package: diverges on its third update."""

    name = "nan-test"

    @dataclasses.dataclass(frozen=True)
    class Config:
        PRESETS: ClassVar[dict] = {"paper": {}}

    def __init__(self, obs_space, action_space, config, seed, total_updates):
        self.batch_spec = base.Transitions(frame_stack=1, batch_size=4, steps_per_call=5)
        self.action_dim = action_space.shape[0]
        self.calls = 0

    def update(self, batch):
        self.calls += 1
        return {"loss": float("nan") if self.calls == 3 else 1.0}

    def initial_state(self, n):
        return None

    def act(self, obs, state, explore):
        return np.zeros((len(obs), self.action_dim), np.float32), state

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_divergence_fails_the_run_with_step_and_metric_and_the_suite_goes_on(tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setitem(base.MODULES, "nan-test", __name__)
    monkeypatch.setitem(base._REGISTRY, "nan-test", NaNAlgorithm)
    path = small_suite(tmp_path, seeds="[0, 1]", algorithms="[nan-test]")
    results = tmp_path / "r"
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 1
    for seed in (0, 1):
        status = json.loads(read(results, f"t/toy.reach/nan-test/seed{seed}", "status.json"))
        assert status["state"] == "failed"
        assert status["failed_metric"] == "loss" and status["failed_step"] == 15
    # Running again skips failed runs; --retry-failed runs them again, keeping the failed
    # attempt (it has no checkpoint to resume from) instead of deleting it.
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 1
    assert "2 failed (skipped; --retry-failed runs them again)" in capsys.readouterr().out
    assert not (results / "t/toy.reach/nan-test/seed0/previous").exists()
    assert main(["run", str(path), "--results", str(results), "--executor", "debug",
                 "--only", "seed=0", "--retry-failed"]) == 1
    kept = results / "t/toy.reach/nan-test/seed0/previous/attempt-1/status.json"
    assert json.loads(kept.read_text())["state"] == "failed"
    # The report leaves failed runs out of every number, and lists them with their state.
    assert main(["report", "--results", str(results)]) == 0
    report_md = (results / "_report" / "t" / "report.md").read_text()
    assert "No run of this suite has finished yet" in report_md
    assert "| `t/toy.reach/nan-test/seed0` | failed |" in report_md
    assert not (results / "_report" / "t" / "final.csv").exists()


class DeletingAlgorithm(NaNAlgorithm):
    """Deletes its own run directory on its third update, as a user's `rm -r` mid-run would."""

    name = "delete-test"
    run_dir = None

    def update(self, batch):
        self.calls += 1
        if self.calls == 3:
            shutil.rmtree(DeletingAlgorithm.run_dir)
        return {"loss": 1.0}


def test_a_run_whose_directory_is_deleted_mid_run_fails_and_says_so(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setitem(base.MODULES, "delete-test", __name__)
    monkeypatch.setitem(base._REGISTRY, "delete-test", DeletingAlgorithm)
    path = small_suite(tmp_path, algorithms="[delete-test]")
    results = tmp_path / "r"
    run = results / "t/toy.reach/delete-test/seed0"
    monkeypatch.setattr(DeletingAlgorithm, "run_dir", run)
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 1
    captured = capsys.readouterr()
    assert "done: 1 failed" in captured.out
    assert "was deleted or moved while the run worked in it" in captured.err
    assert not run.exists()  # not recreated with a status.json that claims it finished
    assert main(["status", "--results", str(results)]) in (0, 1)
    assert "finished" not in capsys.readouterr().out
    # Running again starts it over (this time nothing deletes it).
    monkeypatch.setattr(DeletingAlgorithm, "run_dir", tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    assert json.loads(read(results, "t/toy.reach/delete-test/seed0", "status.json"))["state"] == "finished"


@pytest.mark.slow
def test_model_free_baselines_run_on_a_vector_gymnasium_task(tmp_path):
    """SAC, CQL and IQL through the real run loop on gym/Pendulum-v1 (state vectors)."""
    algorithms = ", ".join(f"{{name: {name}, preset: debug, config: {{steps_per_call: 2}}}}"
                           for name in ("sac", "cql", "iql"))
    path = small_suite(tmp_path, tasks="[gym/Pendulum-v1]", algorithms=f"[{algorithms}]",
                       protocol={"online_env_steps": 200})
    results = tmp_path / "results"
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    for name in ("sac", "cql", "iql"):
        run = results / "t" / "gym.Pendulum-v1" / name / "seed0"
        assert json.loads((run / "status.json").read_text())["state"] == "finished", name
        metrics = pd.read_csv(run / "metrics.csv")
        assert metrics.env_steps.iloc[-1] == 200 and metrics.grad_steps.iloc[-1] == 30
        train = pd.read_csv(run / "train.csv")
        assert np.isfinite(train.select_dtypes("number").to_numpy()).all(), name


@pytest.mark.slow
def test_metaworld10_suite_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """The paper's MetaWorld suite as shipped: all 400 runs plan, and its eight algorithms
    (debug sizes) run through offline and online phases on one of its tasks, then report."""
    from harness.suite import SUITES_DIR

    suite, results = SUITES_DIR / "metaworld10.yaml", tmp_path / "r"
    assert main(["run", str(suite), "--results", str(results), "--dry-run"]) == 0
    assert "suite metaworld10: 400 runs" in capsys.readouterr().out
    names = yaml.safe_load(suite.read_text())["algorithms"]
    debug = "[" + ", ".join(f"{{name: {name}, preset: debug}}" for name in names) + "]"
    sets = ["tasks=[metaworld/door-open]", "seeds=[0]", f"algorithms={debug}",
            "protocol.offline_steps=20", "protocol.online_env_steps=400",
            "protocol.updates_per_episode=20", "protocol.eval_every_episodes=1",
            "protocol.eval_episodes=1", "protocol.dataset_episodes=2", "protocol.train_log_every=10"]
    argv = ["run", str(suite), "--results", str(results), "--executor", "debug"]
    for assignment in sets:
        argv += ["--set", assignment]
    assert main(argv) == 0
    for name in names:
        run = results / "metaworld10" / "metaworld.door-open" / name / "seed0"
        assert json.loads((run / "status.json").read_text())["state"] == "finished", name
        metrics = pd.read_csv(run / "metrics.csv")
        assert list(metrics.phase) == ["offline", "online"], name
    train = pd.read_csv(results / "metaworld10/metaworld.door-open/lompo/seed0/train.csv")
    assert {"disagreement_mean", "real_buffer_size", "imagined_buffer_size"} <= set(train.columns)
    train = pd.read_csv(results / "metaworld10/metaworld.door-open/combo/seed0/train.csv")
    assert "conservative_penalty" in train.columns
    assert main(["report", "--results", str(results)]) == 0
    final = pd.read_csv(results / "_report" / "metaworld10" / "final.csv")
    assert set(final.algorithm) == set(names)
