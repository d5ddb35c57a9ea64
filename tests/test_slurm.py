"""The SLURM executor against a real single-node SLURM cluster (`scripts/local-slurm.sh`,
started by .ci/run). Without `sbatch` these tests skip, unless MOTO_HARNESS_REQUIRE_SLURM is
set (as .ci/run sets it): then a missing cluster fails them."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import results as tree
from harness.cli import main
from tests.helpers import small_suite

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sbatch") is None and not os.environ.get("MOTO_HARNESS_REQUIRE_SLURM"),
                       reason="no SLURM here (scripts/local-slurm.sh starts one)"),
]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    squeue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; squeue:\n{squeue}")


def states(results, run_ids):
    return [tree.observed_state(Path(results) / r) for r in run_ids]


def test_smoke_suite_submits_in_seconds_shows_progress_and_every_run_finishes(tmp_path, capsys,
                                                                            data_dir):
    from harness.launch import prepare_datasets
    from harness.suite import load_suite

    sets = ["--set", "protocol.offline_steps=40", "--set", "protocol.online_env_steps=400",
            "--set", "protocol.eval_episodes=1"]
    only = ["--only", "algorithm=bc", "--only", "algorithm=sac"]
    suite = load_suite("smoke", [s for s in sets if s != "--set"])
    prepare_datasets(suite.runs(), data_dir)  # made once beforehand: the timing is the launch
    results = tmp_path / "r"
    start = time.perf_counter()
    assert main(["run", "smoke", "--executor", "slurm", "--results", str(results), *only, *sets]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert elapsed < 10, elapsed
    assert "submitted job array" in out and "python -m harness status smoke" in out
    run_ids = [f"smoke/metaworld.door-open/{a}/seed0" for a in ("bc", "sac")]
    assert all(s in ("pending", "running") for s in states(results, run_ids))
    wait_for(lambda: "running" in states(results, run_ids), 300, "a run to start")
    wait_for(lambda: any((tree.read_status(results / r) or {}).get("progress", {}).get("phase")
                         in ("offline", "online") for r in run_ids), 300, "progress")
    assert main(["status", "smoke", "--results", str(results)]) == 0
    shown = capsys.readouterr().out
    assert "running" in shown and ("offline" in shown or "online" in shown)
    wait_for(lambda: set(states(results, run_ids)) == {"finished"}, 900, "every run to finish")
    for run_id in run_ids:
        assert len(pd.read_csv(results / run_id / "metrics.csv")) >= 2


def test_array_parallelism_caps_the_runs_at_once_and_wait_follows_them_to_the_end(tmp_path,
                                                                                  capsys):
    import threading

    path = small_suite(tmp_path, seeds="[0, 1, 2, 3]")
    with open(path, "a") as f:
        f.write("resources: {array_parallelism: 1, memory_gb: 1}\n")
    results = tmp_path / "r"
    running_counts, done = [], threading.Event()

    def watch():
        while not done.is_set():
            out = subprocess.run(["squeue", "-h", "-r", "-n", "harness-t", "-t", "RUNNING",
                                  "-o", "%i"], capture_output=True, text=True).stdout
            running_counts.append(len(out.split()))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert main(["run", str(path), "--executor", "slurm", "--wait", "--results", str(results)]) == 0
    finally:
        done.set()
        watcher.join()
    run_ids = [f"t/toy.reach/bc/seed{s}" for s in range(4)]
    assert set(states(results, run_ids)) == {"finished"}  # --wait returned when all had ended
    assert "done: 4 finished" in capsys.readouterr().out
    assert max(running_counts) == 1  # two CPUs were free: only the array's %1 held tasks back
    script = next((results / "_jobs" / "t").rglob("*_submission.sh")).read_text()
    assert "--array=0-3%1" in script and "--requeue" in script


def test_a_run_signalled_as_slurm_does_before_a_time_limit_requeues_and_finishes(
        tmp_path, data_dir):
    """USR2 (what `--signal` sends before the time limit): the run checkpoints at its next
    safe point, submitit requeues the job, and the requeued job resumes to the same CSV."""
    protocol = {"offline_steps": 60, "online_env_steps": 2500, "updates_per_episode": 10,
                "eval_every_episodes": 10, "eval_episodes": 1, "dataset_episodes": 2}
    path = small_suite(tmp_path, protocol=protocol)
    with open(path, "a") as f:
        f.write("resources: {memory_gb: 1}\n")
    reference = tmp_path / "reference"
    assert main(["run", str(path), "--executor", "debug", "--results", str(reference)]) == 0
    results, run_id = tmp_path / "r", "t/toy.reach/bc/seed0"
    assert main(["run", str(path), "--executor", "slurm", "--results", str(results)]) == 0
    job = tree.read_status(results / run_id)["slurm_job"]
    wait_for(lambda: (tree.read_status(results / run_id) or {}).get("progress", {}).get("episodes", 0) >= 5,
             300, "the online phase")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_for(lambda: tree.observed_state(results / run_id) == "finished", 600, "the requeued run")
    logs = "".join(p.read_text() for p in (results / "_jobs").rglob("*_log.err"))
    assert "resumed from its checkpoint: online" in logs
    # The worker keeps the job id in status.json, so a relaunch sees a requeued run queued.
    assert tree.read_status(results / run_id)["slurm_job"] == job
    ours = pd.read_csv(results / run_id / "metrics.csv").drop(columns="wall_time")
    theirs = pd.read_csv(reference / run_id / "metrics.csv").drop(columns="wall_time")
    pd.testing.assert_frame_equal(ours, theirs)


def test_sbatch_values_that_could_inject_flags_are_refused_and_plain_ones_reach_sbatch(
        tmp_path, capsys):
    """A value sbatch would split (a backslash escapes even inside submitit's quotes) could add
    --hold, --array or --output anywhere: it is refused before anything is queued. A plain
    value reaches the job."""
    injected = ("resources: {memory_gb: 1, sbatch: {wckey: \"\\\\'\\\\' --hold --time=1 "
                "--array=0-4 --output=/tmp/x-%A_%a.out --job-name=INJECTED #\"}}\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    path = small_suite(tmp_path / "bad")
    with open(path, "a") as f:
        f.write(injected)
    assert main(["run", str(path), "--executor", "slurm", "--results", str(tmp_path / "r")]) == 2
    assert "hold characters sbatch could read as the end of the flag" in capsys.readouterr().err
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    assert "INJECTED" not in queued
    assert not (tmp_path / "r").exists()

    path = small_suite(tmp_path / "good")
    with open(path, "a") as f:
        f.write("resources: {memory_gb: 1, sbatch: {comment: harness-test_ok.1, hold: true}}\n")
    results = tmp_path / "r2"
    assert main(["run", str(path), "--executor", "slurm", "--results", str(results)]) == 0
    job = tree.read_status(results / "t/toy.reach/bc/seed0")["slurm_job"]
    try:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True,
                               text=True).stdout
        assert "Comment=harness-test_ok.1" in shown and "JobState=PENDING" in shown
    finally:
        subprocess.run(["scancel", job.split("_")[0]], check=False)


def test_a_second_submission_leaves_queued_runs_alone(tmp_path, capsys):
    path = small_suite(tmp_path, seeds="[0, 1]")
    with open(path, "a") as f:
        f.write("resources: {memory_gb: 1, sbatch: {hold: true}}\n")  # held: they stay queued
    results = tmp_path / "r"
    run_ids = [f"t/toy.reach/bc/seed{s}" for s in (0, 1)]

    def queued():  # this test's tasks (other tests' jobs may still be in the queue)
        ids = subprocess.run(["squeue", "-h", "-r", "-n", "harness-t", "-o", "%i"],
                             capture_output=True, text=True).stdout.split()
        return [i for i in ids if i.split("_")[0] == array]

    assert main(["run", str(path), "--executor", "slurm", "--results", str(results)]) == 0
    jobs = [tree.read_status(results / r)["slurm_job"] for r in run_ids]
    array = jobs[0].split("_")[0]
    try:
        assert sorted(queued()) == sorted(jobs)
        capsys.readouterr()
        assert main(["run", str(path), "--executor", "slurm", "--results", str(results)]) == 0
        out = capsys.readouterr().out
        assert "2 running elsewhere, 0 to run" in out
        assert f"queued on SLURM as job {jobs[0]}" in out
        assert sorted(queued()) == sorted(jobs)  # nothing submitted twice
        assert [tree.read_status(results / r)["slurm_job"] for r in run_ids] == jobs
    finally:
        subprocess.run(["scancel", jobs[0].split("_")[0]], check=False)
    wait_for(lambda: not queued(), 60, "the held jobs to go")
    # Once SLURM no longer has them, the runs are to run again.
    assert main(["run", str(path), "--executor", "slurm", "--results", str(results),
                 "--dry-run"]) == 0
    assert "0 running elsewhere, 2 to run" in capsys.readouterr().out


def test_a_job_sbatch_refuses_is_a_message_not_a_traceback(tmp_path, capsys):
    path = small_suite(tmp_path)
    with open(path, "a") as f:
        f.write("resources: {memory_gb: 100000}\n")  # more than the node has
    assert main(["run", str(path), "--executor", "slurm", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "sbatch refused the 1 runs" in err and "Traceback" not in err
