"""`bench --only run`: where a paper run's time goes, and what a whole suite would cost.

One short real run per algorithm family (`harness.run.execute`, the loop every run uses, on
`metaworld/door-open` from pixels at the `paper` preset), each in a fresh process so that its
peak memory is its own, records its timings (`harness.timings`): 2 offline update calls, 3
online episodes of 1 update call each, the paper's 10-episode evaluations after the offline
phase and after the online episodes, a checkpoint after every episode. Their cost per unit
(per gradient step, agent step, checkpoint) times the units a suite's schedule asks for is
the projection: hours per run, and device-hours for the suite (CPU-hours on a CPU; on a GPU
node, the same figure is GPU-hours).

The first update call (compiling, or loading from JAX's cache), the first episode collected
(compiling the exploring `act`) and the first evaluation (starting its environments and
compiling the batched `act`) happen once per process, and are projected once per run.
Checkpoints are projected per `every_episodes` episodes; those taken every `every_minutes`
(at most 6 an hour by default) come on top. Logs are projected per write (CSV rows and
status.json writes, as the loop makes them; the heartbeat thread's are left out).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FAMILIES = {  # a representative per family; the others cost about what it costs
    "moto": "world model, imagined actor-critic (MOTO; DreamerV2 alike)",
    "lompo": "world model, latent replay (LOMPO; COMBO alike)",
    "sac": "model-free actor-critic (SAC; CQL and IQL alike)",
    "bc": "behaviour cloning (BC)",
}
FAMILY_OF = {"moto": "moto", "dreamerv2": "moto", "lompo": "lompo", "combo": "lompo",
             "sac": "sac", "cql": "sac", "iql": "sac", "bc": "bc"}
PARTS = [  # (part, what one unit is)
    ("first_update_call", "per run"), ("offline_update", "gradient step"),
    ("online_update", "gradient step"), ("replay_sampling", "gradient step"),
    ("first_collection", "per run"), ("collection.act", "agent step"),
    ("collection.physics_and_rest", "agent step"), ("collection.render", "agent step"), ("first_evaluation", "per run"),
    ("evaluation", "agent step"), ("checkpoint", "checkpoint"), ("episode_file", "episode"),
    ("logs", "write"),
]

PROJECTION_COLUMNS = [("part", "part", ""), ("unit", "unit", ""), ("ms per unit", "ms_per_unit", ".3g"),
                      ("units per run", "units", ",d"), ("hours per run", "hours", ".2f")]


def profile_run(name: str, preset: str, task: str, steps_per_call: int | None,
                data_dir: Path, results: Path | None = None) -> dict:
    """The timings of one short run of `name` at `preset` (see the module's docstring)."""
    import yaml

    from harness.envs import task_info
    from harness.results import read_status
    from harness.run import execute
    from harness.suite import load_suite

    config = {"steps_per_call": steps_per_call} if steps_per_call else {}
    info = task_info(task)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(results or tmp) / "results"
        k = steps_per_call or _default_steps_per_call(name, preset)
        suite = Path(tmp) / "profile.yaml"
        suite.write_text(textwrap.dedent(f"""\
            name: profile-{name}
            tasks: [{task}]
            algorithms: [{{name: {name}, preset: {preset}, config: {yaml.safe_dump(config,
                                                                               default_flow_style=True).strip()}}}]
            seeds: [0]
            protocol:
              offline_steps: {2 * k}
              online_env_steps: {3 * info.episode_sim_steps}
              updates_per_episode: {k}
              eval_every_episodes: 3
              eval_episodes: 10
              dataset_episodes: 10
              train_log_every: {k}
            checkpoint: {{every_episodes: 1}}
            """))
        spec = load_suite(str(suite)).runs()[0]
        state = execute(spec, results, data_dir, show_progress=False)
        status = read_status(results / spec.run_id) or {}
        if state != "finished":
            raise RuntimeError(f"the profile run of {name} did not finish: {state}: "
                               f"{status.get('error')}")
    return {"algorithm": name, "preset": preset, "task": task, "steps_per_call": k,
            "wall_time": status["wall_time"], "timings": status["timings"],
            "memory": status["memory"]}


def profile_in_fresh_process(name: str, preset: str, task: str, steps_per_call: int | None,
                             data_dir: Path) -> dict:
    """`profile_run` in a new interpreter: its peak RSS is this family's alone, not the peak
    of every family profiled before it in one process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.json"
        done = subprocess.run([sys.executable, "-m", "harness.profile", name, preset, task,
                               str(steps_per_call or 0), str(data_dir), str(out)])
        if done.returncode != 0:
            how = (f"was killed by signal {-done.returncode}"
                   + (" (SIGKILL: out of memory? see dmesg)" if done.returncode == -9 else "")
                   if done.returncode < 0 else f"exited with status {done.returncode}")
            raise RuntimeError(f"the profile run of {name} ({preset}) {how}")
        return json.loads(out.read_text())


def _default_steps_per_call(name: str, preset: str) -> int:
    from algorithms.base import get, make_config

    return make_config(get(name), preset).steps_per_call


def schedule_units(protocol, checkpoint_policy, info) -> dict:
    """The units of work one run of `protocol` does, per part (see PARTS)."""
    episodes = math.ceil(protocol.online_env_steps / info.episode_sim_steps)
    online_updates = episodes * protocol.updates_per_episode
    updates = protocol.offline_steps + online_updates
    evaluations = 1 + math.ceil(episodes / protocol.eval_every_episodes)
    agent_steps = (episodes - 1) * info.episode_steps  # after the first episode
    checkpoints = 1 + episodes // checkpoint_policy.every_episodes
    return {
        "first_update_call": 1, "offline_update": protocol.offline_steps,
        "online_update": online_updates, "replay_sampling": updates,
        "first_collection": 1, "collection.act": agent_steps, "collection.physics_and_rest": agent_steps,
        "collection.render": agent_steps, "first_evaluation": 1,
        "evaluation": (evaluations - 1) * protocol.eval_episodes * info.episode_steps,
        "checkpoint": checkpoints, "episode_file": episodes,
        # A train.csv row and a status write every `train_log_every` steps; a metrics row and
        # two status writes per evaluation; two status writes per checkpoint.
        "logs": 2 * math.ceil(updates / protocol.train_log_every) + 3 * evaluations
                + 2 * checkpoints,
    }


def project(profile: dict, units: dict) -> list[dict]:
    """Rows (part, unit, seconds per unit, units, hours) for one run of a schedule."""
    timings = profile["timings"]
    per_unit = {part: e["seconds"] / e["units"] for part, e in timings.items() if e["units"]}
    for once in ("first_collection", "first_evaluation"):  # their units are agent steps
        per_unit[once] = timings[once]["seconds"] if once in timings else 0.0
    rows = []
    for part, unit in PARTS:
        seconds = per_unit.get(part, 0.0)
        rows.append({"part": part, "unit": unit, "ms_per_unit": 1000 * seconds,
                     "units": units[part], "hours": seconds * units[part] / 3600})
    return rows


def suite_projection(suite, profiles: dict, backend: str) -> dict:
    """Hours per run for each algorithm of `suite` (from its family's profile) and the suite's
    device-hours: runs x hours x the cores each asks for (`resources.cpus`) on a CPU, x its
    GPUs (`resources.gpus`, at least 1) on a GPU."""
    from harness.envs import task_info

    per_algorithm, total = {}, 0.0
    runs = suite.runs()
    for spec in runs:
        family = FAMILY_OF.get(spec.algorithm.name)
        if family not in profiles:
            continue
        units = schedule_units(spec.protocol, spec.checkpoint, task_info(spec.task))
        hours = sum(r["hours"] for r in project(profiles[family], units))
        per_algorithm.setdefault(spec.algorithm.label, hours)
        total += hours * (spec.resources.cpus if backend == "cpu" else max(spec.resources.gpus, 1))
    return {"suite": suite.name, "runs": len(runs), "hours_per_run": per_algorithm,
            "device_hours": total, "backend": backend}


if __name__ == "__main__":  # profile_in_fresh_process's child: NAME PRESET TASK K DATA_DIR OUT
    name, preset, task, k, data_dir, out = sys.argv[1:]
    result = profile_run(name, preset, task, int(k) or None, Path(data_dir))
    Path(out).write_text(json.dumps(result))
