"""Synthetic results trees, laid out exactly as real runs write them, for the report's tests
and for `python -m harness bench --only report` (500 runs of paper length).

Success curves rise from a per-(task, algorithm) start to a plateau, plus per-seed noise,
quantized to the evaluation's episode count like real evaluations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from harness import results as tree
from harness.log import CsvLog

COLUMNS = ["phase", "grad_steps", "env_steps", "episodes", "eval_success", "eval_return",
           "eval_episodes", "wall_time"]


def run_path(results: Path, suite: str, task: str, label: str, seed: int) -> Path:
    return Path(results) / suite / task.replace("/", ".") / label / f"seed{seed}"


def write_run(results: Path, suite: str, task: str, label: str, seed: int, steps, success,
              state: str = "finished", name: str | None = None, objects=None, success_any=None,
              episode_steps: int = 400, eval_episodes: int = 10, dataset: dict | None = None
              ) -> Path:
    """One run directory: config.yaml, status.json and a metrics.csv whose first row is the
    offline evaluation at step 0 and the others online evaluations at `steps`."""
    directory = run_path(results, suite, task, label, seed)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"run_id": str(directory.relative_to(results)), "suite": suite, "task": task,
              "seed": seed, "algorithm": {"name": name or label.split("-")[0], "preset": "paper",
                                          "config": {}, "label": label},
              "protocol": {"offline_steps": 10000, "online_env_steps": int(max(steps, default=0)),
                           "updates_per_episode": 20, "eval_every_episodes": 10,
                           "eval_episodes": eval_episodes, "dataset_episodes": 10},
              "dataset": dataset or {"task": task, "policy": "scripted", "kept": "all rollouts",
                                     "data_seed": 1000003, "episodes": 10, "steps": 2000,
                                     "average_return": 120.0, "success_rate": 1.0}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    extra = [c for c, v in (("eval_objects", objects), ("eval_success_any", success_any))
             if v is not None]
    log = CsvLog(directory / "metrics.csv", COLUMNS + extra)
    for i, (step, value) in enumerate(zip(steps, success)):
        row = {"phase": "offline" if i == 0 else "online", "grad_steps": 10000 + 20 * step // episode_steps,
               "env_steps": int(step), "episodes": int(step // episode_steps),
               "eval_success": float(value), "eval_return": float(value) * 100,
               "eval_episodes": eval_episodes, "wall_time": 1.0 + i}
        if objects is not None:
            row["eval_objects"] = float(objects[i])
        if success_any is not None:
            row["eval_success_any"] = float(success_any[i])
        log.write(row)
    log.close()
    tree.write_status(directory, state, run_id=config["run_id"])
    return directory


def paper_suite(results: Path, tasks: int = 10, algorithms=("moto", "dreamerv2", "lompo", "combo",
                "cql", "iql", "sac", "bc"), seeds: int = 5, online_steps: int = 500_000,
                eval_every_steps: int = 4000, eval_episodes: int = 10, seed: int = 0,
                suite: str = "synthetic") -> list[Path]:
    """A MetaWorld-like suite: `tasks` × `algorithms` × `seeds` finished runs of paper length
    (an evaluation every 10 episodes of 400 env steps over 500k steps: 126 rows each)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, online_steps + 1, eval_every_steps)
    written = []
    for t in range(tasks):
        task = f"metaworld/task-{t:02d}"
        for a, label in enumerate(algorithms):
            start, plateau = rng.uniform(0, 0.4), rng.uniform(0.3, 1.0)
            rate = rng.uniform(2, 8) / online_steps
            for s in range(seeds):
                clean = plateau - (plateau - start) * np.exp(-rate * steps)
                noisy = np.clip(clean + rng.normal(0, 0.1, len(steps)), 0, 1)
                success = np.round(noisy * eval_episodes) / eval_episodes
                written.append(write_run(results, suite, task, label, s, steps, success,
                                         eval_episodes=eval_episodes))
    return written
