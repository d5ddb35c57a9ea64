"""The results tree's owner: status, locks, stale runs; CSV truncation; checkpoint files;
envs whose state is their episode count; the launcher's plan and dry run."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from harness import checkpoint
from harness import results as tree
from harness.cli import main
from harness.log import CsvLog
from harness.suite import load_suite
from tests.helpers import small_suite, write_suite


def test_status_carries_host_pid_and_heartbeat(tmp_path):
    status = tree.write_status(tmp_path / "run", "running", progress={"phase": "offline"})
    assert tree.read_status(tmp_path / "run") == json.loads(json.dumps(status))
    assert status["pid"] == os.getpid() and status["host"] and status["heartbeat"] <= time.time()


def test_lock_is_exclusive_across_processes_and_freed_when_the_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from harness.results import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert tree.lock_is_held(tmp_path)
    with pytest.raises(tree.RunBusy, match="being written by another process"):
        tree.RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    assert not tree.lock_is_held(tmp_path)
    with tree.RunLock(tmp_path):
        assert tree.lock_is_held(tmp_path)


def test_a_running_run_whose_process_is_gone_is_stale_and_becomes_interrupted(tmp_path):
    tree.write_status(tmp_path, "running", run_id="x")
    assert tree.observed_state(tmp_path) == "stale"  # same host, nobody holds the lock
    with tree.RunLock(tmp_path):
        assert tree.observed_state(tmp_path) == "running"
        assert not tree.mark_interrupted_if_gone(tmp_path, "gone")  # held: left alone
    other_host = {**tree.read_status(tmp_path), "host": "elsewhere"}
    assert tree.observed_state(tmp_path, other_host) == "running"
    old = {**other_host, "heartbeat": time.time() - tree.STALE_AFTER_S - 1}
    assert tree.observed_state(tmp_path, old) == "stale"
    assert tree.mark_interrupted_if_gone(tmp_path, "the worker died")
    status = tree.read_status(tmp_path)
    assert status["state"] == "interrupted" and status["error"] == "the worker died"
    assert status["run_id"] == "x"


def test_csv_log_resumes_with_the_checkpointed_rows_only(tmp_path):
    log = CsvLog(tmp_path / "m.csv", ["a", "b"])
    for i in range(5):
        log.write({"a": i, "b": i * 0.5})
    log.close()
    log = CsvLog(tmp_path / "m.csv", ["a", "b"], keep_rows=3)
    log.write({"a": 30, "b": 1.0})
    log.close()
    assert (tmp_path / "m.csv").read_text().splitlines() == ["a,b", "0,0.0", "1,0.5", "2,1.0", "30,1.0"]
    with pytest.raises(RuntimeError, match="counts 9 rows but the file holds 4"):
        CsvLog(tmp_path / "m.csv", keep_rows=9)


def test_a_resumed_log_gains_the_columns_newer_code_writes(tmp_path):
    """A run started before a column existed (Kitchen's eval_success_any) resumes: the header
    gets the new column, empty in the old rows, instead of every new row being refused."""
    log = CsvLog(tmp_path / "m.csv", ["a", "b"])
    for i in range(3):
        log.write({"a": i, "b": i})
    log.close()
    log = CsvLog(tmp_path / "m.csv", ["a", "b", "c"], keep_rows=2)
    log.write({"a": 9, "b": 9, "c": 0.5})
    log.close()
    assert (tmp_path / "m.csv").read_text().splitlines() == ["a,b,c", "0,0,", "1,1,", "9,9,0.5"]


def test_checkpoint_write_is_atomic_and_leftovers_are_cleaned(tmp_path):
    checkpoint.save(tmp_path, {"x": [1, 2]}, [np.arange(3), np.ones((2, 2), np.float32)])
    checkpoint.save(tmp_path, {"x": [3, 4]}, [np.arange(4), np.ones((2, 2), np.float32)])
    torn = checkpoint.directory(tmp_path) / "state.json.tmp-999"
    torn.write_bytes(b"half a file")
    state = checkpoint.load(tmp_path)
    assert state["x"] == [3, 4] and not torn.exists()
    assert [leaf.tolist() for leaf in state["agent_leaves"]] == [[0, 1, 2, 3], [[1, 1], [1, 1]]]
    assert len(list(checkpoint.directory(tmp_path).glob("agent-*.npz"))) == 1  # the old one removed
    assert checkpoint.load(tmp_path / "none") is None


def test_checkpoint_leaves_go_back_into_the_agents_structure():
    template = {"train": {"w": np.zeros((2, 3), np.float32), "step": np.int32(0)}, "rng": np.zeros(2, np.uint32)}
    leaves = checkpoint.agent_leaves({"train": {"w": np.ones((2, 3), np.float32), "step": np.int32(7)},
                                      "rng": np.arange(2, dtype=np.uint32)})
    restored = checkpoint.restore_agent(template, leaves)
    assert restored["train"]["step"] == 7 and restored["rng"].tolist() == [0, 1]
    with pytest.raises(checkpoint.UnusableCheckpoint, match="another layout"):
        checkpoint.restore_agent(template, [leaves[0].astype(np.float64), *leaves[1:]])


@pytest.mark.parametrize("task", ["toy/reach", "metaworld/door-open"])
def test_an_envs_random_state_is_its_episode_count(task):
    from harness.envs import make_env

    env = make_env(task, 3)
    first = [env.reset()[0] for _ in range(3)]
    env.close()
    env = make_env(task, 3)
    env.episode_index = 2
    assert np.array_equal(env.reset()[0], first[2])
    assert not np.array_equal(first[1], first[2])
    env.close()


def test_plan_and_dry_run_are_linear_in_the_number_of_runs(tmp_path, capsys):
    path = write_suite(tmp_path, "name: big\ntasks: [toy/reach]\n"
                       "algorithms: [{name: bc, preset: debug}]\nseeds: 20000\n"
                       "protocol: {offline_steps: 10, online_env_steps: 50, updates_per_episode: 10,"
                       " eval_every_episodes: 1, eval_episodes: 1, dataset_episodes: 1}\n")
    start = time.perf_counter()
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert "20000 runs" in out and out.count("big/toy.reach/bc/seed") == 20000
    assert elapsed < 20, elapsed  # 1.7 s measured on the 2-core machine


def test_status_shows_every_state_with_progress(tmp_path, capsys):
    results = tmp_path / "r"
    base = results / "s" / "toy.reach" / "bc"
    tree.write_status(base / "seed0", "finished", progress={"phase": "online", "env_steps": 100,
                                                            "online_env_steps": 100})
    tree.write_status(base / "seed1", "running", progress={"phase": "offline", "grad_steps": 5,
                                                           "offline_steps": 10})
    tree.write_status(base / "seed2", "failed", error="ValueError: boom")
    tree.write_status(base / "seed3", "interrupted", error="received SIGTERM")
    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "finished    s/toy.reach/bc/seed0  online 100/100 steps" in out
    assert "stale       s/toy.reach/bc/seed1  offline 5/10 updates" in out and "resume it" in out
    assert "failed      s/toy.reach/bc/seed2" in out and "ValueError: boom" in out
    assert "interrupted s/toy.reach/bc/seed3" in out
    assert "total: 1 failed, 1 finished, 1 interrupted, 1 stale" in out
    assert main(["status", "--results", str(results), "--state", "failed"]) == 0
    assert capsys.readouterr().out.count("seed") == 1


def test_failed_runs_are_skipped_unless_retried_and_locked_runs_are_left_alone(tmp_path, capsys):
    from harness.launch import plan

    suite = load_suite(str(small_suite(tmp_path, seeds="[0, 1, 2]")))
    results = tmp_path / "r"
    runs = suite.runs()
    tree.write_status(results / runs[0].run_id, "failed", error="boom")
    with tree.RunLock(results / runs[1].run_id):
        tree.write_status(results / runs[1].run_id, "running")
        p = plan(runs, results, retry_failed=False)
        assert [s.seed for s in p.failed] == [0] and [s.seed for s in p.busy] == [1]
        assert [s.seed for s in p.todo] == [2]
        assert [s.seed for s in plan(runs, results, retry_failed=True).todo] == [0, 2]


def test_resources_and_checkpointing_parse_merge_per_algorithm_and_are_not_identity(tmp_path):
    path = small_suite(tmp_path, algorithms="[{name: bc, preset: debug}, {name: bc, preset: debug,"
                       " label: big, resources: {gpus: 1, time_min: 60, sbatch: {exclude: n7}}}]")
    with open(path, "a") as f:
        f.write("resources: {cpus: 4, partition: gpu, memory_gb: 32}\n"
                "checkpoint: {every_episodes: 5, every_minutes: 2.5, keep: true}\n")
    suite = load_suite(str(path))
    small, big = (r.resources for r in suite.runs())
    assert (small.cpus, small.gpus, small.partition, small.memory_gb) == (4, 0, "gpu", 32.0)
    assert (big.cpus, big.gpus, big.time_min, dict(big.sbatch)) == (4, 1, 60, {"exclude": "n7"})
    assert suite.runs()[0].checkpoint.every_minutes == 2.5
    spec = suite.runs()[1]
    assert type(spec).from_dict(json.loads(json.dumps(spec.as_dict()))) == spec
    assert set(tree.identity(spec.as_dict())) == {"suite", "task", "seed", "algorithm", "protocol"}

    from harness.launch import slurm_parameters

    params = slurm_parameters(big, "harness-t")
    assert params["gpus_per_node"] == 1 and params["partition"] == "gpu"
    assert params["time"] == 60 and params["mem"] == "32768M" and params["cpus_per_task"] == 4
    assert params["additional_parameters"] == {"requeue": True, "exclude": "n7"}


@pytest.mark.parametrize("extra,expected", [
    ("resources: {gpus: -1}", "'gpus' must be an integer in [0, 64], got -1"),
    ("resources: {cpu: 2}", "Did you mean 'cpus'"),
    ("resources: {sbatch: [x]}", "'sbatch' must map flag names"),
    ("resources: {memory_gb: 0}", "'memory_gb' must be a number in [0.1, 100000], got 0"),
    ("resources: {memory_gb: 0.0001}", "'memory_gb' must be a number in [0.1, 100000]"),  # 0M = all
    ("resources: {memory_gb: .inf}", "'memory_gb' must be a number in [0.1, 100000], got inf"),
    ("resources: {memory_gb: 1e3}", "YAML reads '1e3' as text; write it with a dot"),
    ("resources: {time_min: 1000000000000}", "'time_min' must be an integer in [1, 527040]"),
    ("resources: {array_parallelism: 1000000000}", "'array_parallelism' must be an integer in"),
    ("resources: {partition: 'a b'}", "'partition' must be a name with no spaces"),
    ("resources: {sbatch: {time: 5, mem: 3}}", "sbatch flag(s) ['time', 'mem'] are set by the "
                                               "harness from resources"),
    ("resources: {sbatch: {nice: .nan}}", "need a plain value"),
    ("checkpoint: {every_minutes: -1}", "every_minutes a number in [0, 1e9), got 10 and -1"),
    ("checkpoint: {every_minutes: '5'}", "field 'every_minutes' must be a number, got '5'"),
    ("checkpoint: {every_episode: 3}", "Did you mean 'every_episodes'"),
])
def test_bad_resources_and_checkpoint_settings_are_refused(tmp_path, capsys, extra, expected):
    path = small_suite(tmp_path)
    with open(path, "a") as f:
        f.write(extra + "\n")
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_updates_that_are_not_a_multiple_of_steps_per_call_are_refused(tmp_path, capsys):
    path = small_suite(tmp_path, protocol={"updates_per_episode": 15})  # bc debug: K = 10
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "protocol.updates_per_episode = 15 is not a multiple of bc's steps_per_call = 10" in err
    assert "Use 10 or 20" in err and not (tmp_path / "r").exists()


def test_a_dataset_made_under_other_settings_stops_the_launch_before_anything_runs(
        tmp_path, capsys, data_dir):
    from harness.data import format as fmt

    path = small_suite(tmp_path)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    other = tmp_path / "data"
    (other / "toy.reach").mkdir(parents=True)
    fmt.write_manifest(other / "toy.reach", {"task": "toy/reach", "episodes": 5,
                                            "env": {"task": "toy/reach", "step_scale": 0.5}})
    for dry in ([], ["--dry-run"]):
        assert main(["run", str(path), "--results", str(tmp_path / "r"), "--data-dir", str(other),
                     *dry]) == 2
        err = capsys.readouterr().err
        assert "made with other env settings" in err and "step_scale" in err
    assert not (tmp_path / "r" / "t" / "toy.reach").exists()


@pytest.mark.parametrize("link", ["seed0", "previous", "checkpoint", "metrics.csv"])
def test_links_inside_the_results_tree_are_refused_before_anything_runs(tmp_path, capsys, link):
    """A linked run folder (or a link inside it) would make `run` write outside --results,
    where `status` and `report` never look."""
    path = small_suite(tmp_path)
    results, elsewhere = tmp_path / "r", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = results / "t/toy.reach/bc/seed0"
    if link == "seed0":
        run.parent.mkdir(parents=True)
        run.symlink_to(elsewhere)
    else:
        run.mkdir(parents=True)
        (run / "status.json").write_text('{"state": "interrupted"}')
        (run / link).symlink_to(elsewhere / link)
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and "Traceback" not in err
    assert list(elsewhere.iterdir()) == []


def test_a_linked_results_directory_itself_is_fine(tmp_path):
    path = small_suite(tmp_path)
    real = tmp_path / "scratch"
    real.mkdir()
    (tmp_path / "r").symlink_to(real)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--executor", "debug",
                 "--dry-run"]) == 0
