"""One run: offline dataset -> offline updates -> online episodes with updates -> evaluations.

Outputs in the run directory (architecture.md, `harness.results`): `config.yaml` (fully
resolved), `metrics.csv` (one row per evaluation), `train.csv` (training metrics every
`train_log_every` gradient steps), `status.json` (state and progress), `checkpoint/` (the
latest checkpoint and the online episodes). `env_steps` counts simulator steps, action repeat
included. The online phase runs whole episodes until `online_env_steps` is reached.

The loop is a small state machine over its counters (phase, gradient steps, episodes, an
evaluation due), so it can stop at any *safe point* (after an update call, an evaluation or
an episode) and continue from a checkpoint taken there exactly as if it had never stopped:
the same batches, actions, episodes and CSV rows. Checkpoints are taken every
`checkpoint.every_episodes` online episodes, at the first safe point after
`checkpoint.every_minutes`, at the end of the offline phase, and when a stop is requested (a
signal, a preemption, the launcher gone): then the run saves, says `interrupted`, and returns.

`execute` resumes a run whose checkpoint was made under the same spec and whose agent state
has the layout this code builds; an unfinished attempt without such a checkpoint is moved to
`previous/attempt-N/` (nothing is deleted) and the run starts over.
"""

from __future__ import annotations

import dataclasses
import json
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import yaml

from harness import checkpoint, faults
from harness.data.collect import load_dataset, rollout
from harness.data.format import summarize
from harness.envs import make_env
from harness.evaluation import AgentPolicy, LockstepEvaluation, summary
from harness.log import CsvLog
from harness.memory import peak_rss_mb
from harness.replay import EpisodeReplay
from harness.results import (HEARTBEAT_S, LinkedRunPath, RunBusy, RunDirectoryGone, RunLock,
                             StatusFile, identity, process_alive, read_status, refuse_links)
from harness.suite import RunSpec
from harness.timings import Timings

EVAL_SEED_OFFSET = 100_000
METRICS_COLUMNS = ["phase", "grad_steps", "env_steps", "episodes", "eval_success",
                   "eval_return", "eval_episodes", "wall_time"]
# Tasks with several targets (Kitchen) also log the most targets done at once, averaged, and
# success as the co-author's evaluation code counts it (khatch31/jaxrl2, evaluation.py: an
# episode whose return is above 0, i.e. any one target done at some step); `eval_success` is
# ours, all targets done at once (docs/decisions.md).
MULTI_TARGET_COLUMNS = [*METRICS_COLUMNS, "eval_objects", "eval_success_any"]
PACKAGES = ["jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "metaworld", "mujoco",
            "gymnasium-robotics"]
# Set by the local launcher: a worker whose launcher is gone stops instead of writing on alone.
LAUNCHER_PID_ENV = "MOTO_HARNESS_LAUNCHER_PID"
ORPHAN_GRACE_S = 60.0  # an orphaned worker that reaches no safe point in this long exits anyway


class Diverged(RuntimeError):
    def __init__(self, grad_steps: int, metric: str, value: float):
        super().__init__(f"non-finite {metric} = {value} at gradient step {grad_steps}")
        self.grad_steps, self.metric, self.value = grad_steps, metric, value


class Interrupted(Exception):
    """The run saved a checkpoint at a safe point and stopped, as asked."""


class StopRequest:
    """Asks a run to stop at its next safe point. Set from a signal handler or a thread."""

    def __init__(self):
        self.reason: str | None = None
        self.requeue = False  # the launcher should requeue the run (a SLURM preemption/timeout)

    def request(self, reason: str, requeue: bool = False) -> None:
        if self.reason is None:
            self.reason, self.requeue = reason, requeue


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class _Run:
    def __init__(self, spec: RunSpec, run_dir: Path, data_dir: Path, status: StatusFile,
                 stop: StopRequest, resume: dict | None, show_progress: bool):
        from algorithms.base import ConfigError, Sequences, Transitions, get, make_config

        self.spec, self.run_dir, self.protocol = spec, run_dir, spec.protocol
        self.status_file, self.stop, self.show_progress = status, stop, show_progress
        self.grad_steps = self.env_steps = self.episodes = 0
        self.phase, self.eval_due = "offline", False
        self._bars: dict = {}
        self._compiled = False  # the first update call of this process compiles
        self.timings = Timings()
        self._evaluated = False  # the first evaluation of this process starts its environments
        self._collected = False  # and the first episode collected compiles the exploring act

        self.env = make_env(spec.task, spec.seed)
        self.info = self.env.spec_info
        self.evaluation = LockstepEvaluation(spec.task, EVAL_SEED_OFFSET + spec.seed,
                                             self.protocol.eval_episodes)
        self.eval_episode_index = 0  # the evaluation environment's next episode
        algo_cls = get(spec.algorithm.name)
        config = make_config(algo_cls, spec.algorithm.preset, spec.algorithm.overrides)
        self.status("running", message="loading the offline dataset")
        dataset, manifest = load_dataset(spec.task, self.protocol.dataset_episodes, data_dir,
                                         self.env.settings(), self._dataset_progress)
        online_episodes = math.ceil(self.protocol.online_env_steps / self.info.episode_sim_steps)
        total_updates = self.protocol.offline_steps + online_episodes * self.protocol.updates_per_episode
        self.agent = algo_cls(self.env.observation_space, self.env.action_space, config,
                              spec.seed, total_updates)
        if not isinstance(getattr(self.agent, "batch_spec", None), (Transitions, Sequences)):
            raise ConfigError(
                f"algorithm '{spec.algorithm.name}': its instances need a `batch_spec`, an "
                f"algorithms.base.Transitions or Sequences, got "
                f"{getattr(self.agent, 'batch_spec', None)!r} (docs/adding-an-algorithm.md).")
        space = self.env.observation_space
        self.replay = EpisodeReplay(space.shape, space.dtype, self.env.action_space.shape[0],
                                    bc_targets=self.info.bc_targets)
        for episode in dataset:
            self.replay.add_episode(episode, offline=True)
        self.sample_rng = np.random.default_rng([spec.seed, 7])
        if resume is not None:
            try:
                resume = {**resume, "agent": checkpoint.restore_agent(self.agent.state_dict(),
                                                                      resume["agent_leaves"])}
            except checkpoint.UnusableCheckpoint as err:
                raise StaleCheckpoint(str(err)) from None
        if resume is None:
            self._write_config(config, manifest, dataset)
            self.metrics = CsvLog(run_dir / "metrics.csv", self._metrics_columns())
            self.train_log = CsvLog(run_dir / "train.csv")
            self.start = time.perf_counter()
        else:
            self._restore(resume)
        self._last_log = (time.perf_counter(), self.grad_steps)
        self._last_checkpoint = time.monotonic()
        self._checkpointed_episodes = self.episodes

    # -- checkpoints -------------------------------------------------------------------------

    def _state(self) -> dict:
        """The checkpoint's JSON part; the agent's state goes beside it as arrays."""
        return {"spec": _spec_identity(self.spec), "phase": self.phase, "grad_steps": self.grad_steps, "env_steps": self.env_steps,
                "episodes": self.episodes, "eval_due": self.eval_due,
                "sample_rng": self.sample_rng.bit_generator.state,
                "env_episode_index": self.env.episode_index,
                "eval_env_episode_index": self.eval_episode_index,
                "metrics_rows": self.metrics.rows, "train_rows": self.train_log.rows,
                "wall_time": time.perf_counter() - self.start, "timings": self.timings.as_dict()}

    def _restore(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.phase, self.eval_due = state["phase"], state["eval_due"]
        self.grad_steps, self.env_steps = state["grad_steps"], state["env_steps"]
        self.episodes = state["episodes"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        self.env.episode_index = state["env_episode_index"]
        self.eval_episode_index = state["eval_env_episode_index"]
        try:
            episodes = checkpoint.load_episodes(self.run_dir, self.episodes)
        except checkpoint.UnusableCheckpoint as err:  # a damaged online episode: start over
            raise StaleCheckpoint(str(err)) from None
        for episode in episodes:
            self.replay.add_episode(episode)
        self.metrics = CsvLog(self.run_dir / "metrics.csv", self._metrics_columns(),
                              keep_rows=state["metrics_rows"])
        self.train_log = CsvLog(self.run_dir / "train.csv", keep_rows=state["train_rows"])
        self.start = time.perf_counter() - state["wall_time"]
        self.timings = Timings(state.get("timings"))  # older checkpoints have none
        self._log(f"resumed from its checkpoint: {self.phase}, grad_steps={self.grad_steps}, "
                  f"episodes={self.episodes}")

    def checkpoint(self) -> None:
        self.status("running", message="writing a checkpoint")
        with self.timings("checkpoint"):
            checkpoint.save(self.run_dir, self._state(),
                            checkpoint.agent_leaves(self.agent.state_dict()))
        self._last_checkpoint = time.monotonic()
        self._checkpointed_episodes = self.episodes
        self.status("running")

    def _safe_point(self) -> None:
        """Between update calls, evaluations and episodes: checkpoint when due; stop if asked."""
        policy = self.spec.checkpoint
        if self.stop.reason is not None:
            self.checkpoint()
            raise Interrupted(self.stop.reason)
        episode_done = self.phase == "online" and not self.eval_due and self.grad_steps == (
            self.protocol.offline_steps + self.episodes * self.protocol.updates_per_episode)
        due_by_episodes = episode_done and (
            self.episodes - self._checkpointed_episodes >= policy.every_episodes)
        due_by_time = time.monotonic() - self._last_checkpoint >= policy.every_minutes * 60
        if due_by_episodes or due_by_time:
            self.checkpoint()

    # -- progress ----------------------------------------------------------------------------

    def _dataset_progress(self, done: int, total: int) -> None:
        self.status("running", message=f"generating the offline dataset: {done}/{total} episodes")
        self._log(f"dataset episode {done}/{total}")

    def _log(self, message: str) -> None:
        if self.show_progress:
            print(f"  {self.spec.run_id}: {message}", file=sys.stderr, flush=True)

    def _write_config(self, config, manifest: dict, dataset: list[dict]) -> None:
        from algorithms.base import source_of

        resolved = {
            "run_id": self.spec.run_id, **self.spec.as_dict(),
            "algorithm_config": {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in dataclasses.asdict(config).items()},
            "algorithm_source": source_of(self.spec.algorithm.name),
            "batch_spec": {"type": type(self.agent.batch_spec).__name__,
                           **dataclasses.asdict(self.agent.batch_spec)},
            "env": _plain(self.env.settings()),
            "dataset": {**{k: manifest.get(k) for k in ("task", "policy", "kept", "data_seed", "source")},
                        **summarize(dataset)},  # the episodes this run loaded
            "seeds": {"agent": self.spec.seed, "train_env": self.spec.seed,
                      "eval_env": EVAL_SEED_OFFSET + self.spec.seed},
            "versions": _versions(), "git_commit": _git_commit(), "host": platform.node(),
            "command": " ".join(sys.argv),
        }
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))

    def status(self, state: str, **fields) -> None:
        p = self.protocol
        progress = {"phase": self.phase, "grad_steps": self.grad_steps,
                    "offline_steps": p.offline_steps, "env_steps": self.env_steps,
                    "online_env_steps": p.online_env_steps, "episodes": self.episodes}
        with self.timings("logs"):
            self.status_file.set(state, progress=progress, **fields)

    def _bar(self, name: str, total: int, initial: int, unit: str):
        """A progress bar on a terminal; in a log file, the per-evaluation lines instead."""
        from tqdm import tqdm

        if name not in self._bars:
            label = f"{self.spec.task} {self.spec.algorithm.label} s{self.spec.seed} {name}"
            self._bars[name] = tqdm(total=total, initial=initial, unit=unit, desc=label,
                                    leave=False, file=sys.stderr,
                                    disable=not (self.show_progress and sys.stderr.isatty()))
        return self._bars[name]

    # -- the loop ----------------------------------------------------------------------------

    def _update_call(self, until: int) -> None:
        """One jitted update call: K = min(steps_per_call, until - grad_steps) gradient steps."""
        k = min(self.agent.batch_spec.steps_per_call, until - self.grad_steps)
        with self.timings("replay_sampling", k):
            batch = self.replay.sample(self.sample_rng, self.agent.batch_spec, k)
        if not self._compiled:
            self.status("running", message="compiling the update, or loading it from the cache")
        with (self.timings(f"{self.phase}_update", k) if self._compiled
              else self.timings("first_update_call")):
            result = self.agent.update(batch)
        if not self._compiled:
            self._compiled = True
            self.status("running")
        before = self.grad_steps
        self.grad_steps += k
        for key, value in result.items():
            if not math.isfinite(value):
                raise Diverged(self.grad_steps, key, value)
        every = self.protocol.train_log_every
        if self.grad_steps // every > before // every:
            self._log_train(result)
        if self.phase == "offline":
            self._bar("offline", self.protocol.offline_steps, before, "upd").update(k)
        faults.point("update")

    def _log_train(self, result: dict) -> None:
        now = time.perf_counter()
        last_time, last_steps = self._last_log
        rate = (self.grad_steps - last_steps) / max(now - last_time, 1e-9)
        self._last_log = (now, self.grad_steps)
        with self.timings("logs"):
            self.train_log.write({"phase": self.phase, "grad_steps": self.grad_steps,
                                  "env_steps": self.env_steps, "episodes": self.episodes, **result,
                                  "updates_per_second": rate, "wall_time": now - self.start})
        self.status("running")

    def _metrics_columns(self) -> list[str]:
        return MULTI_TARGET_COLUMNS if self.info.bc_targets is not None else METRICS_COLUMNS

    def evaluate(self) -> None:
        self.status("running", message="evaluating")
        start = time.perf_counter()
        episodes = self.evaluation(self.agent, self.eval_episode_index)
        part = "evaluation" if self._evaluated else "first_evaluation"  # which starts the envs
        self._evaluated = True
        self.timings.add(part, time.perf_counter() - start,
                         sum(len(e["action"]) - 1 for e in episodes))
        row = summary(episodes)
        self.eval_episode_index += self.protocol.eval_episodes
        with self.timings("logs"):
            self.metrics.write({"phase": self.phase, "grad_steps": self.grad_steps,
                                "env_steps": self.env_steps, "episodes": self.episodes, **row,
                                "wall_time": time.perf_counter() - self.start})
        self.status("running", last_eval=row)
        if not sys.stderr.isatty():  # logs get a line per evaluation
            self._log(f"{self.phase} grad_steps={self.grad_steps} env_steps={self.env_steps} "
                      f"success={row['eval_success']:.2f} return={row['eval_return']:.1f}")

    def _collect_episode(self) -> None:
        policy, rendered = AgentPolicy(self.agent, explore=True), self._render_seconds()
        start = time.perf_counter()
        episode = rollout(self.env, policy)
        seconds, agent_steps = time.perf_counter() - start, len(episode["action"]) - 1
        render = self._render_seconds() - rendered
        if self._collected:
            self.timings.add("collection", seconds, agent_steps)
            self.timings.add("collection.act", policy.act_seconds, agent_steps)
            self.timings.add("collection.render", render, agent_steps)
            self.timings.add("collection.physics_and_rest", seconds - policy.act_seconds - render,
                             agent_steps)
        else:  # compiles the exploring `act` and opens the renderer: once per process
            self.timings.add("first_collection", seconds, agent_steps)
            self._collected = True
        with self.timings("episode_file"):
            checkpoint.save_episode(self.run_dir, self.episodes, episode)
        self.replay.add_episode(episode)
        steps = (len(episode["obs"]) - 1) * self.info.action_repeat
        self._bar("online", self.protocol.online_env_steps, self.env_steps, "step").update(steps)
        self.env_steps += steps
        self.episodes += 1
        self.eval_due = (self.episodes % self.protocol.eval_every_episodes == 0
                         or self.env_steps >= self.protocol.online_env_steps)

    def memory(self) -> dict:
        """Peak resident memory of this process and of its largest evaluation worker, and the
        replay's bytes: what `harness.memory` estimates from."""
        return {"peak_rss_mb": peak_rss_mb(),
                "eval_worker_peak_rss_mb": self.evaluation.worker_peak_rss_mb(),
                "eval_workers": self.evaluation.workers,
                "replay_entries": self.replay.num_entries,
                "replay_bytes": self.replay.nbytes,
                "replay_allocated_bytes": self.replay.allocated_bytes}

    def _render_seconds(self) -> float:
        return getattr(self.env, "render_seconds", 0.0)

    def __call__(self) -> None:
        p = self.protocol
        while True:
            if self.phase == "offline":
                if self.grad_steps < p.offline_steps:
                    self._update_call(p.offline_steps)
                else:
                    self.evaluate()
                    self.phase = "online"
                    self.checkpoint()  # the offline phase is never redone
            elif self.grad_steps < p.offline_steps + self.episodes * p.updates_per_episode:
                self._update_call(p.offline_steps + self.episodes * p.updates_per_episode)
            elif self.eval_due:
                self.evaluate()
                self.eval_due = False
            elif self.env_steps >= p.online_env_steps:
                return
            else:
                self._collect_episode()
            self._safe_point()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        for log in ("metrics", "train_log"):
            if hasattr(self, log):
                getattr(self, log).close()
        self.env.close()
        if hasattr(self, "evaluation"):
            self.evaluation.close()


def _plain(value):
    """Tuples to lists, recursively, so the YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set_aside_previous_attempt(run_dir: Path) -> None:
    keep = ("previous", ".lock")
    leftovers = [p for p in run_dir.iterdir() if p.name not in keep] if run_dir.exists() else []
    if all(p.name == "status.json" for p in leftovers):
        return  # nothing but the launcher's `pending`: no attempt to keep
    previous = run_dir / "previous"
    previous.mkdir(exist_ok=True)
    numbers = [int(p.name.split("-")[1]) for p in previous.glob("attempt-*")
               if p.name.split("-")[1].isdigit()]
    target = previous / f"attempt-{max(numbers, default=0) + 1}"
    target.mkdir()
    for path in leftovers:
        shutil.move(str(path), target / path.name)


class StaleCheckpoint(Exception):
    """A checkpoint this code cannot continue from; the run starts over."""


def _spec_identity(spec: RunSpec) -> dict:
    """The spec's identity as JSON reads it back (tuples are lists), as checkpoints store it."""
    return json.loads(json.dumps(identity(spec.as_dict())))


def _resumable_checkpoint(spec: RunSpec, run_dir: Path) -> dict | None:
    """The run's checkpoint if it was made under this very spec, else None."""
    try:
        state = checkpoint.load(run_dir)
    except Exception as err:  # unreadable: start over, keeping the old files aside
        print(f"  {spec.run_id}: checkpoint unusable ({err}); starting over", file=sys.stderr)
        return None
    if state is None or state.get("spec") != _spec_identity(spec):
        return None
    return state


def _heartbeat(status: StatusFile, stop: StopRequest, done: threading.Event) -> None:
    """Keeps status.json fresh while the run works (compiles included); if the local launcher
    that started this worker is gone, asks the run to stop, and exits after a grace period."""
    launcher = int(os.environ.get(LAUNCHER_PID_ENV, "0") or 0)
    orphaned_at = None
    while not done.wait(min(HEARTBEAT_S, 1.0) if launcher else HEARTBEAT_S):
        if launcher and orphaned_at is None and not process_alive(launcher):
            orphaned_at = time.monotonic()
            stop.request(f"the launcher (pid {launcher}) is gone")
        if orphaned_at is not None and time.monotonic() - orphaned_at > ORPHAN_GRACE_S:
            status.set("interrupted", error=f"the launcher (pid {launcher}) is gone; stopped "
                                            "before reaching a safe point")
            os._exit(3)
        if time.time() - status.last_write >= HEARTBEAT_S:
            try:
                status.beat()
            except OSError:
                pass  # a full disk: the main loop meets it too and records the failure


def execute(spec: RunSpec, results_dir: Path, data_dir: Path, show_progress: bool = True,
            stop: StopRequest | None = None) -> str:
    """Run one spec to its end, resuming from its checkpoint when it has one. Returns the final
    state: `finished`, `failed`, `interrupted` (stopped at a safe point, resumable) or `busy`
    (another process holds the run).

    A failure (divergence, an exception) is recorded in status.json and does not propagate:
    the rest of the suite goes on.
    """
    run_dir = Path(results_dir) / spec.run_id
    stop = stop or StopRequest()
    try:
        refuse_links(results_dir, spec.run_id)  # again here: a SLURM job starts later
    except LinkedRunPath as err:
        print(f"  {spec.run_id}: not started: {err}", file=sys.stderr, flush=True)
        return "failed"
    try:
        lock = RunLock(run_dir).acquire()
    except RunBusy as err:
        print(f"  {spec.run_id}: {err}", file=sys.stderr, flush=True)
        return "busy"
    if (read_status(run_dir) or {}).get("state") == "finished":
        # Checked again under the lock: a second job of the same run (submitted twice, or
        # requeued after it ended) must never redo a finished run or move its results away.
        lock.release()
        print(f"  {spec.run_id}: already finished; nothing to do", file=sys.stderr, flush=True)
        return "finished"
    try:
        return _execute_locked(spec, run_dir, data_dir, show_progress, stop, lock)
    except RunDirectoryGone as err:  # nowhere left to record it: say it here
        print(f"  {spec.run_id}: failed: {err}", file=sys.stderr, flush=True)
        return "failed"


def _execute_locked(spec: RunSpec, run_dir: Path, data_dir: Path, show_progress: bool,
                    stop: StopRequest, lock: RunLock) -> str:
    status = StatusFile(run_dir, spec.run_id, lock)
    done = threading.Event()
    run = None
    try:
        resume = _resumable_checkpoint(spec, run_dir)
        if resume is None:
            _set_aside_previous_attempt(run_dir)
        status.set("running", progress={"phase": "starting"})
        threading.Thread(target=_heartbeat, args=(status, stop, done), daemon=True).start()
        try:
            run = _Run(spec, run_dir, data_dir, status, stop, resume, show_progress)
        except StaleCheckpoint as err:  # keep the old attempt, start over
            print(f"  {spec.run_id}: checkpoint unusable ({err}); starting over, the old attempt "
                  "kept in previous/", file=sys.stderr, flush=True)
            _set_aside_previous_attempt(run_dir)
            run = _Run(spec, run_dir, data_dir, status, stop, None, show_progress)
        run()
        run.status("finished", wall_time=time.perf_counter() - run.start,
                   timings=run.timings.as_dict(), memory=run.memory())
        if not spec.checkpoint.keep:
            shutil.rmtree(checkpoint.directory(run_dir), ignore_errors=True)
        return "finished"
    except Interrupted as err:
        message = f"stopped at a safe point after a checkpoint: {err}"
        run.status("interrupted", error=message, requeue=stop.requeue)
        print(f"  {spec.run_id}: {message}", file=sys.stderr, flush=True)
        return "interrupted"
    except Diverged as err:
        run.status("failed", error=str(err), failed_metric=err.metric, failed_step=err.grad_steps)
        return "failed"
    except RunDirectoryGone:
        raise
    except Exception as err:  # recorded, then the suite continues
        error = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
        try:
            if run is not None:
                run.status("failed", **error)
            else:
                status.set("failed", **error)
        except OSError as write_error:  # e.g. the disk is full: `status` will show it stale
            print(f"  {spec.run_id}: failed ({error['error']}); could not record it: "
                  f"{write_error}", file=sys.stderr, flush=True)
        return "failed"
    finally:
        done.set()
        if run is not None:
            run.close()
        lock.release()
