"""Command line: python -m harness {run,status,report,data,list,bench}."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import USER_ERRORS, UserError

DEFAULT_RESULTS = Path("results")
RUN_FILTER_KEYS = ("task", "algorithm", "seed")


def _writable_dir(path, flag: str) -> Path:
    """A directory checked writable before anything is written: its nearest existing ancestor
    must take a new folder (made and removed at once, so nothing is left behind). That catches
    read-only mounts and pseudo file systems such as /proc, which permissions alone do not."""
    if not str(path) or "\0" in str(path):
        raise UserError(f"{flag} {str(path)!r}: give a directory path.")
    try:
        directory = Path(path).expanduser().resolve()
        probe = directory
        while not probe.exists():
            probe = probe.parent
        if probe.is_dir():
            os.rmdir(tempfile.mkdtemp(prefix=".moto-harness-write-test-", dir=probe))
            return directory
        reason = f"{probe} is a file, not a directory"
    except OSError as err:
        reason = f"{err.strerror}" + (f": {err.filename}" if err.filename else "")
    except RuntimeError as err:  # a symlink loop, or ~user for an unknown user
        reason = str(err)
    raise UserError(f"directory {path} cannot be created or written ({reason}). Pass {flag} "
                    "with a writable path.")


def _or_default(value, default):
    """A flag's value, or `default()` when it was not given; an empty string is a value (and
    then an error), never a silent fall-back to the default."""
    return default() if value is None else value


def _filter_runs(runs, only: list[str]):
    """`--only KEY=VALUE`: conditions on one key are alternatives (algorithm=bc algorithm=sac),
    conditions on different keys must all hold."""
    wanted: dict[str, set[str]] = {}
    for condition in only:
        if "=" not in condition:
            raise UserError(f"--only {condition}: expected KEY=VALUE with KEY one of "
                            f"{', '.join(RUN_FILTER_KEYS)}.")
        key, value = condition.split("=", 1)
        if key not in RUN_FILTER_KEYS:
            raise UserError(f"--only {condition}: unknown key '{key}'; use one of "
                            f"{', '.join(RUN_FILTER_KEYS)}.")
        wanted.setdefault(key, set()).add(value)

    def keep(run) -> bool:
        values = {"task": {run.task}, "algorithm": {run.algorithm.label, run.algorithm.name},
                  "seed": {str(run.seed)}}
        return all(values[key] & choices for key, choices in wanted.items())

    runs = [r for r in runs if keep(r)]
    if not runs:
        raise UserError(f"--only {' '.join(only)} matches no run of the suite.")
    return runs


def cmd_run(args) -> int:
    from harness.data.store import default_data_dir
    from harness.launch import launch
    from harness.suite import load_suite

    suite = load_suite(args.suite, args.set)
    runs = _filter_runs(suite.runs(), args.only)
    results = _writable_dir(args.results, "--results")
    _writable_dir(results / suite.name, "--results")  # the suite's own folder, if it exists
    data_dir = _writable_dir(_or_default(args.data_dir, default_data_dir), "--data-dir")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel must be >= 1, got {args.max_parallel}.")
    if args.executor != "slurm" and args.wait:
        raise UserError("--wait is for --executor slurm (the other executors always wait).")
    return launch(runs, results, data_dir, args.executor, args.max_parallel, args.wait,
                  args.dry_run, args.retry_failed)


def cmd_status(args) -> int:
    from harness import results as tree
    from harness.launch import describe_progress

    from harness.suite import results_folder

    results = Path(args.results)
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results} is a file; give the results directory.")
    args.suite = results_folder(args.suite)
    counts: dict[str, int] = {}
    now = time.time()
    for run_dir in tree.iter_run_dirs(results, args.suite):
        status = tree.read_status(run_dir)
        state = tree.observed_state(run_dir, status, now)
        counts[state] = counts.get(state, 0) + 1
        if args.state and state not in args.state:
            continue
        status = status or {}
        age = now - (tree.number(status.get("heartbeat")) or now)
        detail = describe_progress(status)
        if state in ("running", "stale"):
            detail += f"; heartbeat {age:.0f} s ago on {status.get('host')} (pid {status.get('pid')})"
        if state == "stale":
            detail += "; its process is gone: run the suite again to resume it"
        if status.get("error") and state != "finished":
            detail += f"; {(str(status['error']).splitlines() or [''])[-1][:200]}"
        print(f"{state:<11} {run_dir.relative_to(results)}  {detail}")
    if not counts:
        print(f"no runs under {results}" + (f" for suite {args.suite}" if args.suite else ""))
        return 0
    print("total: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def cmd_report(args) -> int:
    from harness.report import report
    from harness.suite import results_folder

    results = Path(args.results)
    out = _writable_dir(_or_default(args.out, lambda: results / "_report"), "--out")
    try:
        written = report(results, out, results_folder(args.suite), args.final_evals, args.reps,
                         args.include_unfinished)
    except OSError as err:  # a full disk, a quota, a read-only mount: say so, no traceback
        writing = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or (
            err.filename is not None and Path(str(err.filename)).resolve().is_relative_to(out.resolve()))
        if not writing:
            raise
        where = f" ({err.filename})" if err.filename else ""
        raise UserError(f"cannot write the report under {out}{where}: {err.strerror or err}. "
                        "Free some space or give another --out.") from None
    for path in written:
        if path.name == "report.md":
            beside = sum(p.parent == path.parent for p in written) - 1
            print(f"wrote {path} (and {beside} figures and tables beside it)")
    return 0


def cmd_data(args) -> int:
    from harness.data.collect import ensure_dataset
    from harness.data.store import check_dataset, dataset_dir, default_data_dir
    from harness.envs import make_env, task_info
    from harness.envs.metaworld import TASKS_10
    from harness.suite import PROTOCOL_LIMITS

    if args.family == "kitchen":
        return _import_kitchen(args)
    if args.family in ("metaworld", "metaworld-state"):
        tasks = [f"{args.family}/{t}" for t in (args.tasks or TASKS_10)]
    else:
        if args.tasks:
            raise UserError("--tasks is for metaworld, metaworld-state and kitchen; toy always "
                            "makes toy/reach and toy/reach-state.")
        tasks = ["toy/reach", "toy/reach-state"]
    for task in tasks:
        task_info(task)  # validate every name before generating anything
    least, most = PROTOCOL_LIMITS["dataset_episodes"]
    if not least <= args.episodes <= most:
        raise UserError(f"--episodes must be in [{least}, {most}], got {args.episodes}.")
    data_dir = _writable_dir(_or_default(args.data_dir, default_data_dir), "--data-dir")
    print(f"{'task':<28}{'episodes':>9}{'success':>9}{'return':>9}{'attempts':>9}  directory")
    for task in tasks:
        env = make_env(task, 0)
        settings = env.settings()
        env.close()
        manifest = ensure_dataset(task, args.episodes, data_dir, settings,
                                  lambda done, total: print(f"  {task}: {done}/{total}",
                                                            file=sys.stderr, flush=True))
        # Every episode the dataset holds, not only the ones asked for, is checked here.
        check_dataset(task, dataset_dir(task, data_dir), manifest, manifest["episodes"])
        stats = [manifest.get(k) for k in ("success_rate", "average_return", "attempts")]
        cells = [f"{v:>9.2f}" if isinstance(v, float) else f"{v!s:>9}" for v in stats]
        print(f"{task:<28}{manifest['episodes']:>9}{''.join(cells)}  {dataset_dir(task, data_dir)}",
              flush=True)
    return 0


def _import_kitchen(args) -> int:
    from harness.data import kitchen
    from harness.data.store import dataset_dir, default_data_dir

    names = args.tasks or ["mixed", "partial"]
    tasks = [name if name.startswith("kitchen/") else f"kitchen/{name}" for name in names]
    for task in tasks:
        if task not in kitchen.SOURCES:
            raise UserError(f"--tasks {task}: Kitchen tasks are mixed and partial.")
    if args.minari_dir == "":
        raise UserError("--minari-dir '': give the directory holding the Minari datasets.")
    minari_dir = Path(args.minari_dir).expanduser() if args.minari_dir else kitchen.default_minari_dir()
    data_dir = _writable_dir(_or_default(args.data_dir, default_data_dir), "--data-dir")

    def progress(task, done, total):
        if done == total or done % 10 == 0:
            print(f"  {task}: {done}/{total} episodes re-rendered", file=sys.stderr, flush=True)

    manifests = kitchen.import_tasks(tasks, minari_dir, data_dir, progress)
    print(f"{'task':<18}{'source':<26}{'episodes':>9}{'steps':>9}{'success':>9}{'bc eps':>8}  directory")
    for task, m in manifests.items():
        print(f"{task:<18}{m['source']:<26}{m['episodes']:>9}{m['steps']:>9}{m['success_rate']:>9.2f}"
              f"{m['bc_episodes']:>8}  {dataset_dir(task, data_dir)}")
    return 0


def cmd_list(args) -> int:
    from algorithms.base import (ENTRY_POINT_GROUP, MODULES, PLANNED, ConfigError, get,
                                 plugin_entry_points)
    from harness.envs import list_tasks
    from harness.suite import SUITES_DIR

    print("algorithms:")
    for name in MODULES:
        print(f"  {name:<10} presets: {', '.join(get(name).Config.PRESETS)}")
    for name, where in PLANNED.items():
        print(f"  {name:<10} not implemented yet ({where})")
    entry_points = plugin_entry_points()
    print(f"plugins (installed packages' entry points, group {ENTRY_POINT_GROUP}):"
          + ("" if entry_points else " none"))
    for name, ep in sorted(entry_points.items()):
        dist = f"{ep.dist.metadata['Name']} {ep.dist.version}" if ep.dist is not None else "?"
        if name in MODULES:
            print(f"  {name:<10} {ep.value} from {dist}: not used, the built-in '{name}' has "
                  "this name")
            continue
        try:
            presets = f"presets: {', '.join(get(name).Config.PRESETS)}"
        except ConfigError as err:
            presets = f"unusable: {err}"
        print(f"  {name:<10} {ep.value} from {dist}; {presets}")
    print("  (a suite can also name any class as package.module:ClassName)")
    print("tasks:")
    for family, tasks in list_tasks().items():
        print(f"  {family}: {', '.join(tasks)}")
    print("suites:")
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        print(f"  {path.stem:<14} {path}")
    return 0


def cmd_bench(args) -> int:
    import jax

    from algorithms.base import get, implemented
    from harness import bench
    from harness.envs import task_info

    for flag, value, most in (("--steps", args.steps, 1_000_000), ("--frames", args.frames, 100_000),
                              ("--update-calls", args.update_calls, 100_000),
                              ("--steps-per-call", args.steps_per_call, 1000),
                              ("--eval-episodes", args.eval_episodes, 1000),
                              ("--eval-workers", None if args.eval_workers in (None, 0)
                               else args.eval_workers, 256)):
        if value is not None and not 1 <= value <= most:
            raise UserError(f"{flag} must be in [1, {most}], got {value}.")
    for task in args.tasks:
        task_info(f"metaworld/{task}")  # names a MetaWorld task, or says which are
    for name in args.algorithms or ():
        get(name)
    figures = {"machine": bench.machine(), "jax_backend": jax.default_backend()}
    print(f"machine: {figures['machine']}; JAX backend: {figures['jax_backend']}", flush=True)
    if args.only in (None, "render"):
        figures["render"] = bench.render_bench(args.tasks, args.steps)
        print(f"rendered MetaWorld steps/s ({figures['render'][0]['gl']}), ours (2 physics steps "
              "+ 1 render) vs stock (1 physics step + 1 render):")
        print(bench.table(figures["render"], bench.RENDER_COLUMNS), flush=True)
    if args.only in (None, "updates"):
        rows = []
        for name in args.algorithms or implemented():
            for preset in get(name).Config.PRESETS:
                if args.presets and preset not in args.presets:
                    continue
                rows.append(bench.update_bench(name, preset, args.update_calls, args.steps_per_call))
                print(bench.table(rows[-1:], bench.UPDATE_COLUMNS), flush=True)
        figures["updates"] = rows
        if not rows:
            raise UserError("no algorithm has the presets asked for with --presets")
        print("gradient updates/s on 64x64 pixel batches (replay sampling included):")
        print(bench.table(rows, bench.UPDATE_COLUMNS))
        print(f"replay: {rows[0]['replay_bytes_per_step']:.0f} bytes per stored step")
    if args.only in (None, "network"):
        rows = [bench.jax_encoder_decoder(args.frames)]
        for dtype in ("float32", "bfloat16"):
            row = bench.torch_encoder_decoder(args.frames, dtype=dtype)
            if row is None:
                print("torch is not installed (pip install -e '.[torch]'): no PyTorch reference")
                break
            rows.append(row)
        figures["network"] = rows
        print(f"world model `paper` encoder + decoder, forward and backward on {args.frames} "
              "64x64 frames (convolution GFLOP/s):")
        print(bench.table(rows, bench.ENCODER_DECODER_COLUMNS), flush=True)
        rows = bench.sac_update_rows(args.update_calls)
        if len(rows) == 1:
            print("torch is not installed (pip install -e '.[torch]'): no PyTorch reference")
        figures["sac_update"] = rows
        print("SAC `paper` update (K = 1, replay sampling included), ours against its PyTorch twin "
              "sac-torch:")
        print(bench.table(rows, bench.MODEL_FREE_COLUMNS), flush=True)
    if args.only == "eval":  # not in the default bench: minutes of rendering per algorithm
        from harness.cores import usable_cores

        rows = []
        for name in args.algorithms or implemented():
            for preset in get(name).Config.PRESETS:
                if args.presets and preset not in args.presets:
                    continue
                for task in args.tasks:
                    workers = (len(usable_cores()) if args.eval_workers is None
                               else args.eval_workers)
                    new = bench.eval_bench(name, preset, f"metaworld/{task}",
                                           args.eval_episodes, workers)
                    print(bench.table(new, bench.EVAL_COLUMNS), flush=True)
                    rows += new
        if not rows:
            raise UserError("no algorithm has the presets asked for with --presets")
        figures["eval"] = rows
        print("evaluation agent steps/s (act, step, render), MetaWorld from pixels: one "
              "episode after another at batch 1, against all of them in lockstep:")
        print(bench.table(rows, bench.EVAL_COLUMNS))
    if args.only == "run":  # not in the default bench: minutes per family at `paper` size
        figures["run"] = _bench_run(args, jax.default_backend())
    if args.only in (None, "report"):
        figures["report"] = bench.report_bench()
        r = figures["report"]
        print(f"report of {r['runs']} finished runs of paper length ({r['rows_per_run']} "
              f"evaluations each): {r['report_s']:.1f} s, {r['files']} files", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def _bench_run(args, backend: str) -> dict:
    from harness import bench, profile
    from harness.data.store import default_data_dir
    from harness.envs import task_info
    from harness.suite import load_suite

    suite = load_suite(args.suite)  # first: a bad suite is refused before minutes of runs
    names = args.algorithms or list(profile.FAMILIES)
    unknown = [n for n in names if n not in profile.FAMILY_OF]
    if unknown:
        raise UserError(f"bench --only run profiles built-in algorithms ("
                        f"{', '.join(profile.FAMILY_OF)}), not {', '.join(unknown)}.")
    preset = (args.presets or ["paper"])[0]
    # On a CPU, K = 1: compiling K unrolled `paper` updates takes minutes, and the cost per
    # gradient step does not depend on K at this size (docs/benchmarks.md).
    k = args.steps_per_call or (1 if backend == "cpu" else None)
    task = f"metaworld/{args.tasks[0]}"
    profiles, out = {}, {"profiles": [], "projection": None}
    spec = suite.runs()[0]
    units = profile.schedule_units(spec.protocol, spec.checkpoint, task_info(spec.task))
    steps = task_info(spec.task).episode_steps
    for name in names:
        print(f"profiling {name} ({preset}) on {task}: a short run ...", flush=True)
        result = profile.profile_in_fresh_process(name, preset, task, k, _or_default(
            args.data_dir, default_data_dir))
        profiles[profile.FAMILY_OF[name]] = result
        rows = profile.project(result, units)
        out["profiles"].append({**result, "projection": rows})
        print(f"{name} ({preset}, K = {result['steps_per_call']}): one run of {suite.name}'s "
              f"schedule ({spec.protocol.offline_steps} offline updates, "
              f"{units['online_update']} online, {units['collection.act'] + steps} agent steps "
              f"collected, {units['evaluation'] // steps + spec.protocol.eval_episodes} "
              "evaluation episodes):")
        print(bench.table(rows, profile.PROJECTION_COLUMNS))
        print(f"  total: {sum(r['hours'] for r in rows):.1f} h per run", flush=True)
        m = result["memory"]
        print(f"  peak RSS {m['peak_rss_mb']:,.0f} MiB (the replay's arrays "
              f"{m['replay_allocated_bytes'] / 2**20:,.0f} MiB); {m['eval_workers']} evaluation "
              f"workers, the largest {m['eval_worker_peak_rss_mb']:,.0f} MiB", flush=True)
    projection = profile.suite_projection(suite, profiles, backend)
    out["projection"] = projection
    device = "CPU" if backend == "cpu" else "GPU"
    print(f"suite {suite.name}: {projection['runs']} runs, {projection['device_hours']:,.0f} "
          f"{device}-hours; hours per run: " + ", ".join(
              f"{label} {hours:.1f}" for label, hours in projection["hours_per_run"].items()))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite (default: the smoke suite)")
    run.add_argument("suite", nargs="?", default="smoke",
                     help="a suite file, or the name of one in suites/ (default: smoke)")
    run.add_argument("--executor", choices=["local", "slurm", "debug"], default="local",
                     help="local: runs in parallel worker processes on this machine; slurm: "
                          "submit job arrays and return (see --wait); debug: one after another "
                          "in this process")
    run.add_argument("--max-parallel", type=int,
                     help="local: runs at once (default: this machine's cores / each run's cpus)")
    run.add_argument("--wait", action="store_true",
                     help="slurm: follow the runs until they end instead of returning once queued")
    run.add_argument("--retry-failed", action="store_true",
                     help="run failed runs again (from their last checkpoint when they have one)")
    run.add_argument("--results", default=str(DEFAULT_RESULTS), help="results directory")
    run.add_argument("--data-dir", help="dataset directory (default: $MOTO_HARNESS_DATA or "
                                        "~/.cache/moto-harness/datasets)")
    run.add_argument("--only", action="append", default=[], metavar="KEY=VAL",
                     help="keep runs with task=, algorithm= or seed= (repeatable: one key's values are "
                          "alternatives, different keys must all match)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VAL",
                     help="override a suite value, e.g. protocol.offline_steps=100 (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="list the runs and what would happen to each, check datasets, and exit")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="state and progress of runs, from status.json: "
                                           "pending, running, stale, interrupted, finished, failed")
    status.add_argument("suite", nargs="?", help="a suite file, a shipped suite's name, or "
                        "the folder of its runs under --results (default: every suite)")
    status.add_argument("--results", default=str(DEFAULT_RESULTS))
    status.add_argument("--state", nargs="+", help="only runs in these states",
                        choices=["pending", "running", "stale", "interrupted", "finished",
                                 "failed", "damaged"])
    status.set_defaults(func=cmd_status)

    rep = sub.add_parser("report", help="figures, tables and aggregate statistics of finished "
                                        "runs, in RESULTS/_report/<suite>/report.md")
    rep.add_argument("--results", default=str(DEFAULT_RESULTS))
    rep.add_argument("--suite", help="only this suite (a suite file, or its name)")
    rep.add_argument("--out", help="output directory (default: RESULTS/_report)")
    rep.add_argument("--final-evals", type=int, default=3,
                     help="a run's final score is the mean of its last N evaluations (default 3)")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    rep.add_argument("--include-unfinished", action="store_true",
                     help="draw unfinished runs in the curves too (never in the tables)")
    rep.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="generate offline datasets")
    data.add_argument("family", choices=["metaworld", "metaworld-state", "toy", "kitchen"])
    data.add_argument("--tasks", nargs="+", help="MetaWorld task names (default: the 10 of the "
                      "paper), or Kitchen tasks mixed/partial (default: both)")
    data.add_argument("--minari-dir", help="kitchen: the directory holding D4RL/kitchen/*-v2 "
                      "Minari datasets (default: $MINARI_DATASETS_PATH, else ~/.minari/datasets)")
    data.add_argument("--episodes", type=int, default=10)
    data.add_argument("--data-dir")
    data.set_defaults(func=cmd_data)

    lst = sub.add_parser("list", help="algorithms, presets, tasks and suites")
    lst.set_defaults(func=cmd_list)

    bench = sub.add_parser("bench", help="throughput figures for this machine")
    bench.add_argument("--tasks", nargs="+", default=["door-open"])
    bench.add_argument("--steps", type=int, default=400, help="rendered steps per measurement")
    bench.add_argument("--only", choices=["render", "updates", "network", "report", "eval", "run"],
                       help="one part of the bench")
    bench.add_argument("--frames", type=int, default=800,
                       help="network: frames per pass (DreamerV2's batch: 16 x 50 = 800)")
    bench.add_argument("--algorithms", nargs="+", help="algorithms to time (default: all)")
    bench.add_argument("--update-calls", type=int, default=5,
                       help="timed update calls per algorithm and preset")
    bench.add_argument("--presets", nargs="+", help="presets to time (default: all)")
    bench.add_argument("--steps-per-call", type=int,
                       help="override K, the gradient steps per update call, for every algorithm")
    bench.add_argument("--eval-episodes", type=int, default=10,
                       help="eval: episodes per timed evaluation (the paper's: 10)")
    bench.add_argument("--eval-workers", type=int, default=None,
                       help="eval: worker processes for the lockstep evaluation's environments "
                            "(default: one per usable core; 0 or 1: lockstep in-process only)")
    bench.add_argument("--suite", default="metaworld10",
                       help="run: the suite whose schedule the profile is projected to "
                            "(default: suites/metaworld10.yaml)")
    bench.add_argument("--data-dir", help="run: where the offline datasets are (default: "
                                          "the harness's data directory)")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from harness.allocator import keep_freed_memory

    keep_freed_memory()  # before JAX starts its threads
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `status | head -1`: the reader has what it wanted
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the broken pipe would
