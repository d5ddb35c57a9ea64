"""Checkpoints and resume: a run killed at any moment, then re-run, ends with the same CSVs as
a run that was never interrupted; signals and a dead launcher leave runs `interrupted`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import results as tree
from harness.cli import main
from tests.helpers import small_suite, tmpfs

RUN = "t/toy.reach/bc/seed0"
# 6 offline update calls (K = 10), then 5 online episodes of 50 steps with 1 update call each.
PROTOCOL = {"offline_steps": 60, "online_env_steps": 250, "updates_per_episode": 10,
            "eval_every_episodes": 2, "eval_episodes": 2, "dataset_episodes": 2,
            "train_log_every": 10}


def suite(tmp_path, every_minutes=60, every_episodes=2, online_env_steps=250, seeds="[0]"):
    path = small_suite(tmp_path, seeds=seeds,
                       protocol={**PROTOCOL, "online_env_steps": online_env_steps})
    with open(path, "a") as f:
        f.write(f"checkpoint: {{every_minutes: {every_minutes}, every_episodes: {every_episodes}}}\n")
    return path


def csvs(results, run_id=RUN):
    run = Path(results) / run_id
    metrics = pd.read_csv(run / "metrics.csv").drop(columns="wall_time")
    train = pd.read_csv(run / "train.csv").drop(columns=["wall_time", "updates_per_second"])
    return metrics, train


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """The uninterrupted run, through the local executor as the killed runs are: pinned to
    one core like them. (XLA's sums depend on its thread count in the last digits, so an
    in-process run on all cores differs from them in train.csv's 7th digit.)"""
    tmp = tmp_path_factory.mktemp("reference")
    os.environ["MOTO_HARNESS_DATA"] = str(data_dir)
    assert main(["run", str(suite(tmp)), "--results", str(tmp / "r")]) == 0
    return csvs(tmp / "r")


@pytest.mark.slow
@pytest.mark.parametrize("fault,every_minutes,resumed_at", [
    ("update:4", 0, "offline, grad_steps=30"),  # mid-offline: killed after the 4th update call
    ("env-step:130", 60, "online, grad_steps=80, episodes=2"),  # mid-episode (the 3rd)
    ("checkpoint-write:3", 60, "online, grad_steps=80, episodes=2"),  # during a checkpoint write
])
def test_killed_run_resumes_to_the_same_csvs(tmp_path, monkeypatch, reference, fault,
                                             every_minutes, resumed_at):
    path, results = suite(tmp_path, every_minutes=every_minutes), tmp_path / "r"
    monkeypatch.setenv("MOTO_HARNESS_FAULT", fault)  # the worker SIGKILLs itself there
    assert main(["run", str(path), "--results", str(results)]) == 1
    status = tree.read_status(results / RUN)
    assert status["state"] == "interrupted" and "without recording a result" in status["error"]
    assert not tree.lock_is_held(results / RUN)
    monkeypatch.delenv("MOTO_HARNESS_FAULT")
    assert main(["run", str(path), "--results", str(results)]) == 0
    logs = "".join(p.read_text() for p in (results / "_jobs").rglob("*_log.err"))
    assert f"resumed from its checkpoint: {resumed_at}" in logs
    metrics, train = csvs(results)
    pd.testing.assert_frame_equal(metrics, reference[0])
    pd.testing.assert_frame_equal(train, reference[1])  # no lost, no duplicated rows
    assert tree.read_status(results / RUN)["state"] == "finished"
    assert not (results / RUN / "checkpoint").exists()  # removed once finished (keep: false)
    assert not (results / RUN / "previous").exists()  # resumed, not started over


def killed_mid_offline(tmp_path, monkeypatch):
    """A run SIGKILLed after its 4th update call, with a checkpoint at every safe point."""
    path, results = suite(tmp_path, every_minutes=0), tmp_path / "r"
    monkeypatch.setenv("MOTO_HARNESS_FAULT", "update:4")  # the worker SIGKILLs itself there
    assert main(["run", str(path), "--results", str(results)]) == 1
    monkeypatch.delenv("MOTO_HARNESS_FAULT")
    return path, results, results / RUN / "checkpoint"


def rewrite_agent(folder, change):
    """Replace the checkpoint's agent leaves by `change(leaves)`, with valid checksums: what
    another version of the code (or a careful forger) would leave."""
    import hashlib
    import io

    import numpy as np

    document = json.loads((folder / "state.json").read_text())
    body = document["state"]
    with np.load(folder / body["agent_file"]) as archive:
        leaves = change([archive[f"arr_{i}"] for i in range(body["agent_leaves"])])
    buffer = io.BytesIO()
    np.savez(buffer, *leaves)
    name = f"agent-{hashlib.sha256(buffer.getvalue()).hexdigest()}.npz"
    (folder / name).write_bytes(buffer.getvalue())
    body.update(agent_file=name, agent_leaves=len(leaves))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    document["sha256"] = hashlib.sha256(canonical).hexdigest()
    (folder / "state.json").write_text(json.dumps(document))


def starts_over(path, results, reference, kept):
    """The re-run starts over, keeps the old attempt, and ends with the reference CSVs."""
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    assert tree.read_status(results / RUN)["state"] == "finished"
    assert (results / RUN / "previous" / "attempt-1" / "checkpoint" / kept).exists()
    metrics, _ = csvs(results)
    pd.testing.assert_frame_equal(metrics, reference[0])


@pytest.mark.slow
def test_a_checkpoint_from_other_code_starts_the_run_over_and_keeps_the_old_attempt(
        tmp_path, monkeypatch, reference):
    path, results, folder = killed_mid_offline(tmp_path, monkeypatch)
    rewrite_agent(folder, lambda leaves: leaves[:-1])  # as if the agent had one array fewer
    starts_over(path, results, reference, "state.json")


@pytest.mark.slow
def test_a_pickle_in_a_checkpoint_is_never_loaded(tmp_path, monkeypatch, reference):
    """A results tree from someone else: an interrupted run whose checkpoint is a pickle that
    would run a command when unpickled. Resuming runs nothing from it and starts over."""
    import pickle
    import shutil

    path, results, folder = killed_mid_offline(tmp_path, monkeypatch)
    marker = tmp_path / "PWNED"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "state.pkl").write_bytes(pickle.dumps({"format": 1, "x": Exploit()}))
    starts_over(path, results, reference, "state.pkl")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped bytes in the agent file", "state.json edited",
                                    "an object array", "a damaged online episode"])
def test_a_damaged_checkpoint_starts_over_instead_of_resuming_silently(
        tmp_path, monkeypatch, reference, damage):
    import numpy as np

    if damage == "a damaged online episode":
        path, results = suite(tmp_path, every_minutes=0), tmp_path / "r"
        monkeypatch.setenv("MOTO_HARNESS_FAULT", "env-step:180")  # in the 4th online episode
        assert main(["run", str(path), "--results", str(results)]) == 1
        monkeypatch.delenv("MOTO_HARNESS_FAULT")
        folder = results / RUN / "checkpoint"
        episode = folder / "online" / "episode_000001.npz"
        episode.write_bytes(episode.read_bytes()[:100])
    else:
        path, results, folder = killed_mid_offline(tmp_path, monkeypatch)
    if damage == "flipped bytes in the agent file":
        agent = next(folder.glob("agent-*.npz"))
        data = bytearray(agent.read_bytes())
        for i in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
            data[i] ^= 0xFF
        agent.write_bytes(bytes(data))
    elif damage == "state.json edited":
        document = json.loads((folder / "state.json").read_text())
        document["state"]["grad_steps"] += 10  # the checksum no longer matches
        (folder / "state.json").write_text(json.dumps(document))
    elif damage == "an object array":
        rewrite_agent(folder, lambda leaves: [np.array([{"a": 1}], dtype=object), *leaves[1:]])
    starts_over(path, results, reference, "state.json")


@pytest.mark.slow
def test_sigterm_and_ctrl_c_stop_workers_at_a_safe_point_and_resume(tmp_path, data_dir):
    """The launcher's SIGTERM, then Ctrl-C to the whole process group (as a terminal sends it),
    then SIGKILL of the launcher: each leaves resumable `interrupted` runs and no worker."""
    path = suite(tmp_path, online_env_steps=100_000, seeds="[0, 1]")
    results = tmp_path / "r"
    env = {**os.environ, "MOTO_HARNESS_DATA": str(data_dir)}
    command = [sys.executable, "-m", "harness", "run", str(path), "--results", str(results)]
    for how in ("SIGTERM", "SIGINT to the group", "SIGKILL"):
        launcher = subprocess.Popen(command, env=env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: all(tree.observed_state(results / f"t/toy.reach/bc/seed{s}") == "running"
                             and progress(results, s).get("phase") == "online" for s in (0, 1)), 120)
        episodes = [progress(results, s)["episodes"] for s in (0, 1)]
        if how == "SIGTERM":
            launcher.send_signal(signal.SIGTERM)
        elif how == "SIGKILL":
            launcher.kill()
        else:
            os.killpg(launcher.pid, signal.SIGINT)
        launcher.wait(60)
        wait_for(lambda: all(tree.observed_state(results / f"t/toy.reach/bc/seed{s}") != "running"
                             for s in (0, 1)), 90)
        for seed in (0, 1):
            status = tree.read_status(results / f"t/toy.reach/bc/seed{seed}")
            assert status["state"] == "interrupted", (how, status)
            assert ("launcher" if how == "SIGKILL" else "received SIG") in status["error"]
            assert "stopped at a safe point after a checkpoint" in status["error"]
            assert not tree.lock_is_held(results / f"t/toy.reach/bc/seed{seed}")
        # Resumed runs pick up where they stopped, not from the start.
        assert all(progress(results, s)["episodes"] >= e for s, e in zip((0, 1), episodes))
    def processes():
        return subprocess.run(["pgrep", "-f", str(results)], capture_output=True,
                              text=True).stdout.split()

    try:  # every worker and its submitit controller exit on their own
        wait_for(lambda: not processes(), 30)
    except AssertionError:
        raise AssertionError(f"processes left behind: {processes()}") from None


def progress(results, seed):
    return tree.read_status(results / f"t/toy.reach/bc/seed{seed}").get("progress") or {}


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (TypeError, KeyError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs (root only): a results directory that fills up during a run."""
    with tmpfs(tmp_path / "small-disk", "1536k") as mount:
        yield mount


@pytest.mark.slow
def test_a_full_disk_leaves_no_run_running_and_no_worker_behind(tmp_path, small_disk, capsys):
    path = suite(tmp_path, every_minutes=0, online_env_steps=5000)
    results = small_disk / "r"
    assert main(["run", str(path), "--results", str(results)]) == 1
    status = tree.read_status(results / RUN)
    state = tree.observed_state(results / RUN)
    assert state in ("failed", "stale"), (state, status)  # never `running` with no process
    if state == "failed":
        assert "No space left on device" in status["error"]
    assert not tree.lock_is_held(results / RUN)
    out = subprocess.run(["pgrep", "-f", str(results)], capture_output=True, text=True).stdout
    assert not out.split(), f"processes left behind: {out}"


@pytest.mark.slow
def test_a_second_job_of_a_finished_run_neither_redoes_it_nor_moves_it(tmp_path, data_dir):
    """As when a suite was submitted to SLURM twice: the first job finished the run, then the
    second one starts on it. It must leave the results as they are."""
    from harness.run import execute
    from harness.suite import load_suite

    path = suite(tmp_path)
    results = tmp_path / "r"
    assert main(["run", str(path), "--results", str(results), "--executor", "debug"]) == 0
    before = {p.name: p.read_bytes() for p in (results / RUN).iterdir() if p.is_file()}
    spec = next(s for s in load_suite(str(path)).runs() if s.run_id == RUN)
    assert execute(spec, results, data_dir, show_progress=False) == "finished"
    after = {p.name: p.read_bytes() for p in (results / RUN).iterdir() if p.is_file()}
    assert after == before
    assert not (results / RUN / "previous").exists()
