"""Launching a suite's runs: `debug` (in this process), `local` (parallel processes on this
machine) and `slurm` (job arrays), the last two through submitit. The CLI only parses.

Before anything is submitted: each run is classified through the results tree (finished and
skipped, failed and skipped unless `--retry-failed`, busy in another process, to run), and the
offline dataset of every task to run is checked, or generated once here, so parallel runs
never race to make it and a dataset made under other settings stops the launch.

Every executor runs `RunJob`, which resumes a run from its checkpoint when it has one. A run
asked to stop (Ctrl-C, SIGTERM, SLURM's USR2 before a time limit or a preemption) stops at its
next safe point after a checkpoint and says `interrupted`; on SLURM it is then requeued
(submitit's requeue, at most `max_requeues` times for time limits). Re-running the same
command resumes whatever is unfinished.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from harness import results as tree
from harness.cores import core_slots, pin_parent_command, usable_cores
from harness.errors import UserError
from harness.run import LAUNCHER_PID_ENV

STOP_GRACE_S = 30.0  # local: how long stopped workers get to checkpoint before they are killed
PROGRESS_EVERY_S = 60.0  # a summary line this often while waiting
LOCAL_TIMEOUT_MIN = 365 * 24 * 60  # local runs have no time limit
SLURM_SIGNAL_DELAY_S = 120  # USR2 this long before the time limit: time to reach a safe point


def jobs_dir(results: Path, suite: str) -> Path:
    """submitit's pickles and the workers' logs (outside the runs' tree)."""
    return Path(results) / "_jobs" / suite


class RunJob(submitit.helpers.Checkpointable):
    """One run, as submitit runs it in a worker: resume or start, stop cleanly when asked."""

    def __init__(self, spec: dict, results: str, data_dir: str):
        self.spec, self.results, self.data_dir = spec, results, data_dir

    def __call__(self) -> str:
        from harness.run import StopRequest

        stop = StopRequest()
        submitit_usr2 = signal.getsignal(signal.SIGUSR2)

        def on_signal(signum, frame):
            preempted = signum == signal.SIGUSR2
            stop.request(("preempted or at the time limit" if preempted
                          else f"received {signal.Signals(signum).name}"), requeue=preempted)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
            signal.signal(signum, on_signal)
        state = execute_spec(self.spec, self.results, self.data_dir, stop)
        if state == "interrupted" and stop.requeue and callable(submitit_usr2):
            submitit_usr2(signal.SIGUSR2, None)  # submitit: checkpoint(), requeue, exit
        return state


def execute_spec(spec: dict, results, data_dir, stop=None, show_progress: bool = True) -> str:
    from harness import jaxcache
    from harness.allocator import keep_freed_memory
    from harness.run import execute
    from harness.suite import RunSpec

    keep_freed_memory()  # a fresh worker process: before JAX starts its threads
    jaxcache.enable()
    return execute(RunSpec.from_dict(spec), Path(results), Path(data_dir), show_progress, stop)


@dataclass
class Plan:
    """The suite's runs, sorted by what the launcher will do with them."""

    todo: list = field(default_factory=list)
    finished: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # skipped; run with --retry-failed
    busy: list = field(default_factory=list)  # another process is working on them


def plan(runs, results: Path, retry_failed: bool) -> Plan:
    """One status read per run (and one `squeue` for runs submitted to SLURM): linear in the
    number of runs. A run whose SLURM job is still queued or running is busy, not to run: a
    second submission of the same suite must not queue it twice."""
    result, submitted, checked = Plan(), {}, set()
    for spec in runs:
        tree.refuse_links(results, spec.run_id, checked)
        if tree.is_finished(results, spec):
            result.finished.append(spec)
            continue
        directory = tree.run_dir(results, spec.run_id)
        status = tree.read_status(directory)
        state = tree.observed_state(directory, status) if status else "pending"
        if state == "damaged":
            raise UserError(status["error"])
        if state == "failed" and not retry_failed:
            result.failed.append(spec)
        elif state == "running":
            result.busy.append(spec)
        else:
            result.todo.append(spec)
            if status and status.get("slurm_job") and state in ("pending", "interrupted", "stale"):
                submitted[spec.run_id] = str(status["slurm_job"])  # checked with squeue below
    if submitted:
        alive = slurm_jobs_alive()
        queued = {run_id for run_id, job in submitted.items() if job in alive}
        result.busy += [spec for spec in result.todo if spec.run_id in queued]
        result.todo = [spec for spec in result.todo if spec.run_id not in queued]
    return result


def slurm_jobs_alive() -> set[str]:
    """The ids of this user's SLURM jobs that are queued, running or being requeued, array
    tasks as `<array>_<task>`; empty where SLURM is not installed (nothing can be queued)."""
    import getpass
    import shutil
    import subprocess

    if shutil.which("squeue") is None:
        return set()
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"cannot tell which runs are still queued on SLURM: squeue failed "
                        f"({err}); run again once `squeue` answers.") from None
    if out.returncode != 0:
        raise UserError(f"cannot tell which runs are still queued on SLURM: squeue says "
                        f"{out.stderr.strip()!r}; run again once it answers.")
    return set(out.stdout.split())


def prepare_datasets(runs, data_dir: Path, generate: bool = True) -> None:
    """Every task's dataset exists with enough episodes and this code's env settings, and the
    episodes the runs will load are whole (shapes, dtypes, finite values): checked here, once,
    so a damaged dataset stops the launch with exit 2 before any run starts."""
    from harness.data.collect import ensure_dataset
    from harness.envs import env_settings

    needed: dict[str, int] = {}
    for spec in runs:
        needed[spec.task] = max(needed.get(spec.task, 0), spec.protocol.dataset_episodes)
    for task, episodes in needed.items():
        if episodes >= 100:
            print(f"  checking dataset {task}: {episodes} episodes", flush=True)
        ensure_dataset(task, episodes, data_dir, env_settings(task), generate_missing=generate,
                       progress=lambda done, total, task=task: print(
                           f"  dataset {task}: {done}/{total} episodes", flush=True))


def memory_short(todo) -> list[tuple]:
    """(spec, estimate) of each run whose `resources.memory_gb` is below its estimated peak
    memory (harness.memory; GPU runs have no estimate)."""
    from harness.memory import estimate

    estimates = {}
    short = []
    for spec in todo:
        key = (spec.task, spec.algorithm.name, spec.protocol, spec.resources.cpus,
               spec.resources.gpus)
        if key not in estimates:
            estimates[key] = estimate(spec)
        if estimates[key] and estimates[key]["total_gb"] > spec.resources.memory_gb:
            short.append((spec, estimates[key]))
    return short


def launch(runs, results: Path, data_dir: Path, executor: str = "local",
           max_parallel: int | None = None, wait: bool = False, dry_run: bool = False,
           retry_failed: bool = False) -> int:
    suite = runs[0].suite
    p = plan(runs, results, retry_failed)
    print(f"suite {suite}: {len(runs)} runs: {len(p.finished)} finished, {len(p.failed)} failed"
          f"{'' if retry_failed else ' (skipped; --retry-failed runs them again)'}, "
          f"{len(p.busy)} running elsewhere, {len(p.todo)} to run; results in {results / suite}",
          flush=True)
    for spec in p.busy:
        status = tree.read_status(tree.run_dir(results, spec.run_id)) or {}
        if status.get("state") != "running" and status.get("slurm_job"):
            print(f"  skipped, queued on SLURM as job {status['slurm_job']}: {spec.run_id}")
        else:
            print(f"  skipped, running in another process (host {status.get('host')}, pid "
                  f"{status.get('pid')}): {spec.run_id}")
    short = memory_short(p.todo)
    if short and executor == "slurm":
        spec, needed = short[0]
        raise UserError(
            f"{len(short)} runs ask SLURM for less memory than they are estimated to need, e.g. "
            f"{spec.run_id}: resources.memory_gb is {spec.resources.memory_gb:g}, the estimate "
            f"{needed['total_gb']:g} GB (the process {needed['process_mb']:.0f} MiB, the replay "
            f"{needed['replay_mb']:.0f} MiB, the evaluation's environments "
            f"{needed['evaluation_mb']:.0f} MiB; harness/memory.py). A job over its --mem is "
            "killed. Raise memory_gb in the suite's resources (for all runs, or per algorithm).")
    if dry_run:
        for spec, needed in short[:3]:
            print(f"  note: {spec.run_id} is estimated to need {needed['total_gb']:g} GB, more "
                  f"than its resources.memory_gb ({spec.resources.memory_gb:g})")
        prepare_datasets(p.todo, data_dir, generate=False)  # refuses mismatched datasets
        todo = {spec.run_id for spec in p.todo}
        lines = [f"  {spec.run_id}{'' if spec.run_id in todo else '  (skipped)'}" for spec in runs]
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
    if not p.todo:
        return 1 if p.failed else 0
    if any(spec.task.startswith("metaworld/") for spec in p.todo):
        from harness.envs.render import ensure_backend

        ensure_backend()  # choose the GL backend once; child processes inherit it
    prepare_datasets(p.todo, data_dir)
    if executor == "debug":
        states = _run_debug(p.todo, results, data_dir)
    elif executor == "local":
        states = _run_local(p.todo, results, data_dir, max_parallel)
    elif executor == "slurm":
        jobs = _submit_slurm(p.todo, results, data_dir)
        print(f"follow them with: python -m harness status {suite} --results {results}", flush=True)
        if not wait:
            return 0
        states = _wait_slurm(p.todo, results, jobs)
    else:
        raise UserError(f"unknown executor '{executor}'; use local, slurm or debug.")
    return _summary(states, results, has_failed=bool(p.failed))


def _summary(states: dict, results: Path, has_failed: bool) -> int:
    counts = Counter(states.values())
    print("done: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())), flush=True)
    for run_id, state in states.items():
        if state == "failed":
            print(f"failed: {run_id} (see {results / run_id / 'status.json'})", file=sys.stderr)
        elif state == "busy":
            print(f"busy: {run_id} (another process runs it; `python -m harness status` shows "
                  "its progress)", file=sys.stderr)
        elif state != "finished":
            print(f"{state}: {run_id} (run the same command again to resume it)", file=sys.stderr)
    return 0 if set(counts) <= {"finished"} and not has_failed else 1


class _StopSignals:
    """SIGINT and SIGTERM are counted (`count`) instead of killing the launcher in the middle of
    its bookkeeping: the first stops the runs at a safe point, a second kills them."""

    def __init__(self):
        self.count = 0

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.count += 1
        print(f"\n{signal.Signals(signum).name}: stopping the runs at their next safe point "
              f"(again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _run_debug(todo, results: Path, data_dir: Path) -> dict:
    """In this process, one run after another. Ctrl-C stops the current run at its next safe
    point (after a checkpoint); a second Ctrl-C stops it at once."""
    from harness.run import StopRequest

    states, stop = {}, StopRequest()

    def handle(signum, frame):
        if stop.reason is not None:
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping at the next safe point (again to stop "
              "at once)", file=sys.stderr, flush=True)
        stop.request(f"received {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    current = None
    try:
        for i, spec in enumerate(todo, 1):
            if stop.reason is not None:
                states[spec.run_id] = "not started"
                continue
            current = spec.run_id
            print(f"[{i}/{len(todo)}] {spec.run_id}", flush=True)
            states[spec.run_id] = execute_spec(spec.as_dict(), results, data_dir, stop)
            print(f"[{i}/{len(todo)}] {spec.run_id}: {states[spec.run_id]}", flush=True)
    except KeyboardInterrupt:
        tree.mark_interrupted_if_gone(tree.run_dir(results, current), "stopped by a second Ctrl-C")
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return states


def default_parallel(todo) -> int:
    cores = len(usable_cores())
    return max(1, cores // max(spec.resources.cpus for spec in todo))


def _run_local(todo, results: Path, data_dir: Path, max_parallel: int | None) -> dict:
    suite = todo[0].suite
    limit = max_parallel or default_parallel(todo)
    executor = submitit.LocalExecutor(folder=jobs_dir(results, suite) / "%j")
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    slots = core_slots(usable_cores(), limit, max(spec.resources.cpus for spec in todo))
    free_slots = list(range(len(slots)))
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # workers stop if this process dies
    pinning = (f"each on its own {len(slots[0])} core(s)" if slots
               else "sharing this machine's cores")
    print(f"local executor: {len(todo)} runs, at most {limit} at once, {pinning}; worker logs "
          f"in {jobs_dir(results, suite)}", flush=True)
    pending, active, states = list(todo), {}, {}
    watcher = _Progress(results)
    with _StopSignals() as signals:
        while pending or active:
            while pending and len(active) < limit and not signals.count:
                spec = pending.pop(0)
                try:
                    tree.write_status(tree.run_dir(results, spec.run_id), "pending",
                                      run_id=spec.run_id)
                except OSError as err:  # a full disk: say so, start nothing that cannot write
                    print(f"not started: {spec.run_id}: {err}", file=sys.stderr, flush=True)
                    states[spec.run_id] = "not started"
                    continue
                # The controllers ignore SIGINT (inherited by the shell's `trap`): Ctrl-C in a
                # terminal reaches the workers, which checkpoint and stop, instead of the
                # controllers killing them.
                setup, slot = ["trap '' INT"], None
                if slots:
                    slot = free_slots.pop(0)
                    setup.append(pin_parent_command(slots[slot]))
                executor.update_parameters(setup=setup)
                job = executor.submit(RunJob(spec.as_dict(), str(results), str(data_dir)))
                active[spec.run_id] = (spec, job, slot)
                print(f"started  {spec.run_id}", flush=True)
            for run_id, (spec, job, slot) in list(active.items()):
                if job.done():
                    states[run_id] = _settle(results, run_id, job)
                    print(f"{states[run_id]:<8} {run_id}", flush=True)
                    del active[run_id]
                    if slot is not None:
                        free_slots.append(slot)
            if signals.count:
                _stop_local(results, active, signals)
                for run_id, (spec, job, _) in active.items():
                    states[run_id] = _settle(results, run_id, job)
                for spec in pending:
                    states[spec.run_id] = "not started"
                break
            watcher.maybe_print([spec for spec, _, _ in active.values()], len(states), len(todo))
            time.sleep(0.2)
    return states


def _settle(results: Path, run_id: str, job) -> str:
    """The run's state once its worker has ended; a worker that died without recording one
    (killed, out of memory) leaves an `interrupted` run that resumes on the next launch."""
    directory = tree.run_dir(results, run_id)
    if not (directory / "status.json").exists():
        print(f"{run_id}: its directory {directory} was deleted or moved while it ran; its "
              f"results are lost (worker log: {job.paths.stderr})", file=sys.stderr, flush=True)
        return "failed"
    try:
        tree.mark_interrupted_if_gone(
            directory, "the worker process ended without recording a result (killed, or out "
                       f"of memory?); its log: {job.paths.stderr}")
    except OSError as err:  # a full disk: `status` shows the run stale (its process is gone)
        print(f"{run_id}: could not record that its worker ended: {err}", file=sys.stderr)
    return tree.observed_state(directory)


def _stop_local(results: Path, active: dict, signals: _StopSignals) -> None:
    """SIGTERM each worker (it checkpoints at its next safe point), wait, then kill."""
    for run_id in active:
        status = tree.read_status(tree.run_dir(results, run_id)) or {}
        if status.get("state") == "running" and status.get("pid"):
            try:
                os.kill(int(status["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    print(f"waiting up to {STOP_GRACE_S:.0f} s for {len(active)} runs to checkpoint",
          file=sys.stderr, flush=True)
    first = signals.count
    while any(not job.done() for _, job, _ in active.values()):
        if time.monotonic() > deadline or signals.count > first:
            for run_id, (_, job, _) in active.items():
                status = tree.read_status(tree.run_dir(results, run_id)) or {}
                for pid in (status.get("pid"), getattr(job._process, "pid", None)):
                    if pid and pid != os.getpid():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            break
        time.sleep(0.2)
    for _, job, _ in active.values():
        if job._process is not None:
            job._process.wait()


class _Progress:
    """A summary line every PROGRESS_EVERY_S: counts and each running run's progress."""

    def __init__(self, results: Path):
        self.results, self.last = results, time.monotonic()

    def maybe_print(self, running_specs, done: int, total: int, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < PROGRESS_EVERY_S:
            return
        self.last = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} {done}/{total} done, {len(running_specs)} running",
              flush=True)
        for spec in running_specs:
            status = tree.read_status(tree.run_dir(self.results, spec.run_id)) or {}
            print(f"    {spec.run_id}: {describe_progress(status)}", flush=True)


def describe_progress(status: dict) -> str:
    p = status.get("progress")
    p = p if isinstance(p, dict) else {}
    if p.get("phase") == "offline":
        text = f"offline {p.get('grad_steps', 0)}/{p.get('offline_steps', '?')} updates"
    elif p.get("phase") == "online":
        text = (f"online {p.get('env_steps', 0)}/{p.get('online_env_steps', '?')} steps, "
                f"{p.get('episodes', 0)} episodes")
    else:
        text = p.get("phase") or status.get("state", "")
    last = status.get("last_eval")
    if isinstance(last, dict) and isinstance(last.get("eval_success"), (int, float)):
        text += f", success {last['eval_success']:.2f}"
    if status.get("message"):
        text += f" ({status['message']})"
    return text


# -- SLURM ---------------------------------------------------------------------------------


def slurm_parameters(resources, job_name: str) -> dict:
    """submitit SlurmExecutor parameters for one group of runs with the same resources."""
    params = {"job_name": job_name, "cpus_per_task": resources.cpus, "ntasks_per_node": 1,
              "time": resources.time_min, "mem": f"{int(resources.memory_gb * 1024)}M",
              "array_parallelism": resources.array_parallelism,
              "signal_delay_s": SLURM_SIGNAL_DELAY_S,
              "additional_parameters": {"requeue": True, **dict(resources.sbatch)}}
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(resources, key):
            params[key] = getattr(resources, key)
    return params


def _submit_slurm(todo, results: Path, data_dir: Path) -> dict:
    import logging

    logging.getLogger("submitit").setLevel(logging.ERROR)  # no sacct chatter without accounting
    suite = todo[0].suite
    groups: dict = {}
    for spec in todo:
        groups.setdefault(spec.resources, []).append(spec)
    jobs = {}
    for resources, specs in groups.items():
        executor = submitit.SlurmExecutor(folder=jobs_dir(results, suite) / "%j",
                                          max_num_timeout=resources.max_requeues)
        executor.update_parameters(**slurm_parameters(resources, f"harness-{suite}"))
        try:
            with executor.batch():
                submitted = [executor.submit(RunJob(spec.as_dict(), str(results), str(data_dir)))
                             for spec in specs]
        except submitit.core.utils.FailedJobError as err:  # sbatch said no: nothing was queued
            reason = str(err).strip().splitlines()
            raise UserError(f"sbatch refused the {len(specs)} runs that ask for {resources.cpus} "
                            f"cpus, {resources.gpus} gpus, {resources.memory_gb:g} GB and "
                            f"{resources.time_min} min: "
                            f"{reason[-1] if reason else err}. Fix the suite's resources (or "
                            f"the cluster's limits) and run again; {len(jobs)} runs were queued "
                            "before it.") from None
        for spec, job in zip(specs, submitted):
            jobs[spec.run_id] = job
            tree.write_status(tree.run_dir(results, spec.run_id), "pending", run_id=spec.run_id,
                              slurm_job=job.job_id)
        array = submitted[0].job_id.split("_")[0]
        print(f"submitted job array {array}: {len(specs)} runs ({resources.cpus} cpus, "
              f"{resources.gpus} gpus, {resources.memory_gb:g} GB, {resources.time_min} min"
              f"{', partition ' + resources.partition if resources.partition else ''})", flush=True)
    return jobs


def _wait_slurm(todo, results: Path, jobs: dict) -> dict:
    """`--wait`: follow the runs through their status files until each is finished, failed,
    or out of SLURM's queue without a live process (interrupted with no requeue to come)."""
    states, watcher = {}, _Progress(results)
    remaining = {spec.run_id: spec for spec in todo}
    arrays = sorted({job.job_id.split("_")[0] for job in jobs.values()})
    while remaining:
        queued = _queued_job_ids(arrays)
        for run_id in list(remaining):
            directory = tree.run_dir(results, run_id)
            state = tree.observed_state(directory)
            gone = queued is not None and jobs[run_id].job_id not in queued
            if state in ("finished", "failed") or (gone and state != "running"):
                states[run_id] = state
                print(f"{state:<8} {run_id}", flush=True)
                del remaining[run_id]
        watcher.maybe_print(list(remaining.values()), len(states), len(todo))
        time.sleep(2.0)
    return states


def _queued_job_ids(arrays: list[str]) -> set[str] | None:
    """The ids (123 or 123_4) SLURM still holds, pending, running or requeued, in one squeue
    call; None when squeue does not answer."""
    import subprocess

    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)],
                         capture_output=True, text=True)
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        print(f"warning: squeue failed: {out.stderr.strip()}", file=sys.stderr, flush=True)
        return None
    return set(out.stdout.split())
