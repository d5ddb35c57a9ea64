"""Lockstep evaluation (harness.evaluation) plays exactly the episodes the sequential one does.

Batched `act` rounds differently from `act` at batch 1 (XLA's matmul; test_algorithms_contract
bounds the difference), and MuJoCo's contacts can grow that into another trajectory. So the
bit-for-bit comparisons act row by row (`RowByRow`): what they test is everything else, the
seeding of each episode, the frame stacks, the recurrent states, episode ends, the split over
worker processes. On the toy task, where nothing amplifies the rounding, a whole run's
metrics.csv and train.csv come out the same either way (the last test).
"""

import jax
import numpy as np
import pytest

from algorithms.base import get, make_config
from harness import evaluation
from harness.envs import make_env
from harness.errors import UserError
from harness.evaluation import LockstepEvaluation, evaluate_sequential, summary
from harness.run import EVAL_SEED_OFFSET

from tests.helpers import small_suite


class RowByRow:
    """An agent's batched `act`, one row at a time: rounding as at batch 1."""

    def __init__(self, agent):
        self.agent, self.batch_spec = agent, agent.batch_spec
        self.rows_seen = []

    def initial_state(self, n):
        return self.agent.initial_state(n)

    def act(self, obs, state, explore):
        assert not explore
        self.rows_seen.append(len(obs))
        actions, states = [], []
        for i in range(len(obs)):
            row_state = None if state is None else jax.tree.map(lambda x: x[i:i + 1], state)
            action, row_state = self.agent.act(obs[i:i + 1], row_state, explore)
            actions.append(action)
            states.append(row_state)
        if state is not None:
            state = jax.tree.map(lambda *rows: np.concatenate(rows), *states)
        return np.concatenate(actions), state


def agent_for(task, name, preset="debug"):
    env = make_env(task, EVAL_SEED_OFFSET)
    cls = get(name)
    agent = cls(env.observation_space, env.action_space, make_config(cls, preset), 0,
                total_updates=100)
    return env, agent


def assert_same_episodes(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def lockstep(task, env, episodes, workers, monkeypatch):
    monkeypatch.setenv(evaluation.WORKERS_ENV, str(workers))
    return LockstepEvaluation(task, EVAL_SEED_OFFSET, episodes)


@pytest.mark.parametrize("task, name", [
    ("toy/reach-state", "bc"),  # vectors, no frame stack
    ("toy/reach", "sac"),  # pixels, a frame stack of 3
    ("toy/reach-state", "moto"),  # a recurrent state
    ("toy/reach", "bc-torch"),  # PyTorch
])
def test_lockstep_plays_the_sequential_episodes(task, name, monkeypatch):
    env, agent = agent_for(task, name)
    before = agent.state_dict()
    expected = evaluate_sequential(env, agent, 5)  # episodes 0..4 of the evaluation seed
    monkeypatch.setattr(evaluation, "MAX_LOCKSTEP", 2)  # groups of 2, 2 and 1
    run = lockstep(task, env, 5, 0, monkeypatch)
    try:
        row_by_row = RowByRow(agent)
        got = run(row_by_row, 0)
        assert row_by_row.rows_seen[0] == 2 and row_by_row.rows_seen[-1] == 1
        assert_same_episodes(expected, got)
        assert summary(got) == summary(expected)
        # Later episodes: the next evaluation starts where this one ended, as env does.
        assert_same_episodes(evaluate_sequential(env, agent, 2), run(RowByRow(agent), 5)[:2])
    finally:
        run.close()
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(agent.state_dict())):
        np.testing.assert_array_equal(a, b)  # evaluating drew nothing from the agent's RNG


@pytest.mark.slow
def test_lockstep_in_worker_processes_plays_the_sequential_episodes(monkeypatch):
    """MetaWorld from pixels, 3 episodes over 2 workers (2 + 1), a recurrent agent."""
    task = "metaworld/door-open"
    env, agent = agent_for(task, "dreamerv2")
    expected = evaluate_sequential(env, agent, 3)
    run = lockstep(task, env, 3, 2, monkeypatch)
    try:
        assert run.workers == 2
        assert_same_episodes(expected, run(RowByRow(agent), 0))
        processes = run.envs().processes
        # A worker's own peak (2 MetaWorld environments with renderers), not the run's RSS
        # that a forked child's ru_maxrss would carry.
        assert 100 < run.worker_peak_rss_mb() < 1500
    finally:
        run.close()
    assert all(p.poll() == 0 for p in processes)  # closed cleanly


def test_a_worker_that_fails_or_dies_is_an_error_that_says_so(monkeypatch):
    with pytest.raises(RuntimeError, match="evaluation worker failed:(.|\n)*no-such-task"):
        evaluation.WorkerEnvs("toy/no-such-task", 0, 2, 2)
    envs = evaluation.WorkerEnvs("toy/reach-state", 0, 2, 2)
    try:
        envs.reset(0)
        envs.processes[1].kill()
        envs.processes[1].wait()
        with pytest.raises(RuntimeError, match=r"evaluation worker \(pid \d+\) died"):
            envs.step(np.zeros((2, 2), np.float32), np.ones(2, bool))
    finally:
        envs.close()


def test_workers_for_rendering_simulators_on_several_cores_and_as_told(monkeypatch):
    monkeypatch.delenv(evaluation.WORKERS_ENV, raising=False)
    monkeypatch.setattr(evaluation, "usable_cores", lambda: [0, 1, 2, 3])
    assert evaluation.eval_workers("metaworld/door-open", 10) == 4
    assert evaluation.eval_workers("kitchen/partial", 3) == 3
    assert evaluation.eval_workers("metaworld-state/door-open", 10) == 0
    assert evaluation.eval_workers("toy/reach", 10) == 0
    monkeypatch.setattr(evaluation, "usable_cores", lambda: [0])
    assert evaluation.eval_workers("metaworld/door-open", 10) == 0
    monkeypatch.setenv(evaluation.WORKERS_ENV, "2")
    assert evaluation.eval_workers("metaworld-state/door-open", 10) == 2
    monkeypatch.setenv(evaluation.WORKERS_ENV, "1")  # one worker is no better than none
    assert evaluation.eval_workers("metaworld/door-open", 10) == 0
    monkeypatch.setenv(evaluation.WORKERS_ENV, "two")
    with pytest.raises(UserError, match="give a number of worker processes"):
        evaluation.eval_workers("metaworld/door-open", 10)


def _csv_without_wall_time(path):
    import pandas as pd

    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame.columns
                               if c in ("wall_time", "updates_per_second")])


def test_a_run_writes_the_same_metrics_either_way(tmp_path, data_dir, monkeypatch):
    """A whole run (offline and online: 8 episodes, 3 evaluations) with the lockstep evaluation and with
    the sequential one: the same metrics.csv and train.csv, so evaluating in lockstep changed
    neither what was measured nor the training that followed (SAC's updates draw from the
    agent's RNG, which evaluating leaves alone)."""
    from harness.run import execute
    from harness.suite import load_suite

    protocol = {"offline_steps": 40, "online_env_steps": 400, "updates_per_episode": 10,
                "eval_every_episodes": 4, "eval_episodes": 6, "dataset_episodes": 10,
                "train_log_every": 10}
    outputs = {}
    for way in ("lockstep", "sequential"):
        if way == "sequential":
            def sequential(self, agent, first_episode):
                env = make_env(self.task, self.seed)
                env.episode_index = first_episode
                return evaluate_sequential(env, agent, self.episodes)
            monkeypatch.setattr(LockstepEvaluation, "__call__", sequential)
        (tmp_path / way).mkdir()
        suite = small_suite(tmp_path / way, tasks="[toy/reach-state]", protocol=protocol,
                            algorithms="[{name: sac, preset: debug}]")
        results = tmp_path / way / "results"
        spec = load_suite(str(suite)).runs()[0]
        assert execute(spec, results, data_dir, show_progress=False) == "finished"
        run_dir = results / spec.run_id
        outputs[way] = [_csv_without_wall_time(run_dir / name)
                        for name in ("metrics.csv", "train.csv")]
    metrics, train = outputs["lockstep"]
    assert len(metrics) == 3 and metrics["eval_episodes"].eq(6).all()  # offline, 2 online
    for got, expected in zip(outputs["lockstep"], outputs["sequential"]):
        assert got.equals(expected), (got, expected)
