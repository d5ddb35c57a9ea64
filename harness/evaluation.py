"""Acting in environments: the policy adapter the run loop collects with, and evaluation.

An evaluation plays `eval_episodes` deterministic episodes. They run in lockstep: N
environments at once, one batched `act` call per agent step for all N, instead of N episodes
one after another at batch 1. Episode `first + i` of the evaluation environment is seeded
exactly as it is when the episodes run one by one (`harness.envs.base`: the seed and the
episode's index), so the episodes are the same ones; `evaluate_sequential` is that reference.

Where the run has more than one CPU core, the environments step in worker processes, split
evenly over min(cores, N) of them (simulators rendering pixels only: rendering is what they
share out; a state vector's step costs less than the pipe). The workers are fresh interpreters, not forks (the run
process holds JAX's threads); they import no JAX, live for the whole run, and exit when the run
closes them or its process is gone. `MOTO_HARNESS_EVAL_WORKERS` sets their number (0: in this process).

Deterministic `act` draws no random numbers (docs/adding-an-algorithm.md), so an evaluation
leaves the agent exactly as it found it, whichever way it ran.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from harness import faults
from harness.cores import usable_cores
from harness.data.collect import EpisodeRecorder, rollout
from harness.data.format import episode_return, episode_success, most_targets_done
from harness.envs import make_env, task_info
from harness.errors import UserError
from harness.memory import peak_rss_mb

WORKERS_ENV = "MOTO_HARNESS_EVAL_WORKERS"
MAX_LOCKSTEP = 32  # more evaluation episodes than this run in lockstep groups of this many


class AgentPolicy:
    """Adapts `Algorithm.act` to `rollout`: keeps the frame stack and the recurrent state."""

    def __init__(self, agent, explore: bool):
        self.agent, self.explore = agent, explore
        self.frame_stack = getattr(agent.batch_spec, "frame_stack", None)
        self.frames: list[np.ndarray] = []
        self.state = None
        self.act_seconds = 0.0  # spent in `act` (harness.timings)

    def __call__(self, obs: np.ndarray, is_first: bool) -> np.ndarray:
        if self.explore:
            faults.point("env-step")
        if is_first:
            self.state = self.agent.initial_state(1)
            self.frames = [obs] * (self.frame_stack or 1)
        else:
            self.frames = self.frames[1:] + [obs]
        batch = np.stack(self.frames)[None] if self.frame_stack else obs[None]
        start = time.perf_counter()
        action, self.state = self.agent.act(batch, self.state, self.explore)
        self.act_seconds += time.perf_counter() - start
        return action[0]


def summary(episodes: list[dict]) -> dict:
    """An evaluation's metrics row: success = success reached at any step. For tasks with
    several targets, `eval_objects` = the mean over episodes of the most targets done at once,
    and `eval_success_any` = the fraction of episodes with a return above 0 (some target done)."""
    row = {"eval_success": float(np.mean([episode_success(e) for e in episodes])),
           "eval_return": float(np.mean([episode_return(e) for e in episodes])),
           "eval_episodes": len(episodes)}
    if all("targets_done" in e for e in episodes):
        row["eval_objects"] = float(np.mean([most_targets_done(e) for e in episodes]))
        row["eval_success_any"] = float(np.mean([episode_return(e) > 0 for e in episodes]))
    return row


def evaluate_sequential(env, agent, episodes: int) -> list[dict]:
    """The reference: `episodes` deterministic episodes of `env`, one after another, `act` at
    batch 1. The next episodes of `env` (its `episode_index` on) are the ones played."""
    policy = AgentPolicy(agent, explore=False)
    return [rollout(env, policy) for _ in range(episodes)]


# -- environments, here or in worker processes ------------------------------------------------


class LocalEnvs:
    """`n` environments of one task, in this process."""

    def __init__(self, task: str, seed: int, n: int):
        self.envs = [make_env(task, seed) for _ in range(n)]

    def reset(self, first_episode: int) -> list[tuple]:
        """Starts episodes first_episode, first_episode + 1, ...: (obs, info) for each."""
        out = []
        for i, env in enumerate(self.envs):
            env.episode_index = first_episode + i
            obs, info = env.reset()
            out.append((obs, _step_info(info)))
        return out

    def step(self, actions: np.ndarray, active: np.ndarray) -> list:
        """(obs, reward, terminated, truncated, info) for each active environment, else None."""
        out = []
        for env, action, is_active in zip(self.envs, actions, active):
            if not is_active:
                out.append(None)
                continue
            obs, reward, terminated, truncated, info = env.step(action)
            out.append((obs, reward, terminated, truncated, _step_info(info)))
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _step_info(info: dict) -> dict:
    """What an episode records of `info` (all a worker sends back)."""
    return {k: info[k] for k in ("success", "targets_done") if k in info}


def _serve(fd: int) -> None:
    """A worker process: the LocalEnvs its first message names, driven over the socket `fd`
    until told to close or the socket closes (the run's process is gone)."""
    conn = Connection(fd)
    try:
        envs = LocalEnvs(*conn.recv())
        conn.send(("ok", None))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            command, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if command == "close":
            break
        try:
            answer = ("ok", peak_rss_mb() if command == "peak_rss_mb"
                      else getattr(envs, command)(*args))
        except BaseException:
            answer = ("error", traceback.format_exc())
        try:
            conn.send(answer)
        except OSError:
            break
    envs.close()


def _died(process) -> RuntimeError:
    return RuntimeError(f"an evaluation worker (pid {process.pid}) died; exit code "
                        f"{process.poll()}")


class WorkerEnvs:
    """`n` environments of one task, split over `workers` processes; the same calls as
    LocalEnvs, each worker stepping its share at the same time.

    A worker is a fresh interpreter (`subprocess`, not `multiprocessing`, whose spawn would
    import the caller's main script again) that talks over a socket pair."""

    def __init__(self, task: str, seed: int, n: int, workers: int):
        self.shares = [len(part) for part in np.array_split(np.arange(n), workers)]
        root = str(Path(__file__).resolve().parent.parent)  # where `harness` imports from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        # Each worker is one core's share: Mesa's software renderer, which starts a thread per
        # core by default, renders a 64x64 frame no faster with more (docs/benchmarks.md).
        env.setdefault("LP_NUM_THREADS", "1")
        self.conns, self.processes = [], []
        for share in self.shares:
            ours, theirs = socket.socketpair()
            code = "import sys; from harness.evaluation import _serve; _serve(int(sys.argv[1]))"
            process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], env=env)
            theirs.close()
            conn = Connection(ours.detach())
            conn.send((task, seed, share))
            self.conns.append(conn)
            self.processes.append(process)
        try:
            for conn, process in zip(self.conns, self.processes):
                self._answer(conn, process)
        except BaseException:
            self.close()
            raise

    def _answer(self, conn, process):
        try:
            status, value = conn.recv()
        except (EOFError, OSError):
            raise _died(process) from None
        if status == "error":
            raise RuntimeError(f"an evaluation worker failed:\n{value}")
        return value

    def _each(self, command: str, per_worker_args: list[tuple]) -> list:
        """Each worker's answer to `command`, asked of all of them at once."""
        for conn, process, args in zip(self.conns, self.processes, per_worker_args):
            try:
                conn.send((command, args))
            except OSError:
                raise _died(process) from None
        return [self._answer(conn, process) for conn, process in zip(self.conns, self.processes)]

    def _all(self, command: str, per_worker_args: list[tuple]) -> list:
        return [item for answer in self._each(command, per_worker_args) for item in answer]

    def peak_rss_mb(self) -> list[float]:
        return self._each("peak_rss_mb", [()] * len(self.conns))

    def _split(self, array: np.ndarray) -> list[np.ndarray]:
        return np.split(array, np.cumsum(self.shares)[:-1])

    def reset(self, first_episode: int) -> list[tuple]:
        starts = first_episode + np.concatenate([[0], np.cumsum(self.shares)[:-1]])
        return self._all("reset", [(int(s),) for s in starts])

    def step(self, actions: np.ndarray, active: np.ndarray) -> list:
        return self._all("step", list(zip(self._split(actions), self._split(active))))

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", None))
                conn.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def eval_workers(task: str, episodes: int, cores: int | None = None) -> int:
    """How many worker processes an evaluation of `episodes` steps its environments in: one
    per core (`cores`, else the cores this process may use) for a simulator rendering pixels,
    none for state vectors or the toy task (their steps cost less than the pipe), and never
    just one."""
    if WORKERS_ENV in os.environ:
        value = os.environ[WORKERS_ENV]
        if not value.isdigit():
            raise UserError(f"{WORKERS_ENV}={value!r}: give a number of worker processes "
                            "(0: step the evaluation environments in the run's process)")
        workers = int(value)
    else:
        info = task_info(task)
        cores = len(usable_cores()) if cores is None else cores
        workers = cores if info.pixels and info.family != "toy" else 0
    return min(workers, episodes) if workers > 1 else 0


# -- the lockstep evaluation ------------------------------------------------------------------


class LockstepEvaluation:
    """Plays evaluations of `episodes` episodes in lockstep; keeps its environments (and any
    worker processes) between evaluations."""

    def __init__(self, task: str, seed: int, episodes: int):
        self.task, self.seed, self.episodes = task, seed, episodes
        self.action_shape = (task_info(task).action_dim,)
        self.width = min(episodes, MAX_LOCKSTEP)
        self.workers = eval_workers(task, self.width)
        self._envs = None

    def envs(self):
        if self._envs is None:  # made at the first evaluation, kept till the run closes
            self._envs = (WorkerEnvs(self.task, self.seed, self.width, self.workers)
                          if self.workers else LocalEnvs(self.task, self.seed, self.width))
        return self._envs

    def __call__(self, agent, first_episode: int) -> list[dict]:
        """Episodes first_episode ... first_episode + episodes - 1, in order."""
        episodes = []
        while len(episodes) < self.episodes:
            n = min(self.width, self.episodes - len(episodes))
            episodes += self._group(agent, first_episode + len(episodes), n)
        return episodes

    def _group(self, agent, first_episode: int, n: int) -> list[dict]:
        envs = self.envs()
        starts = envs.reset(first_episode)[:n]  # a short last group leaves the rest unused
        recorders = [EpisodeRecorder(obs, info, self.action_shape) for obs, info in starts]
        obs = np.stack([obs for obs, _ in starts])
        frame_stack = getattr(agent.batch_spec, "frame_stack", None)
        stacked = np.repeat(obs[:, None], frame_stack, 1) if frame_stack else None
        state = agent.initial_state(n)
        active = np.zeros(self.width, bool)
        active[:n] = True
        padding = np.zeros((self.width - n, *self.action_shape), np.float32)
        while active.any():
            actions, state = agent.act(stacked if frame_stack else obs, state, False)
            actions = np.asarray(actions, np.float32)
            for i, step in enumerate(envs.step(np.concatenate([actions, padding]), active)[:n]):
                if step is None:  # this episode has ended; its row is acted on and ignored
                    continue
                next_obs, reward, terminated, truncated, info = step
                recorders[i].add(actions[i], next_obs, reward, terminated, info)
                obs[i] = next_obs
                active[i] = not (terminated or truncated)
            if frame_stack:
                stacked = np.concatenate([stacked[:, 1:], obs[:, None]], 1)
        return [recorder.episode() for recorder in recorders]

    def worker_peak_rss_mb(self) -> float:
        """The largest peak RSS of the worker processes so far (0 without workers)."""
        if not self.workers or self._envs is None:
            return 0.0
        return max(self._envs.peak_rss_mb())

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


def evaluate(env, agent, episodes: int) -> dict:
    """`summary` of `evaluate_sequential`: the metrics row, from one environment object."""
    return summary(evaluate_sequential(env, agent, episodes))
