"""`python -m harness bench`: throughput figures for this machine.

For now: rendered MetaWorld steps per second through our wrapper (free camera, 64x64 buffer,
no MSAA/shadows/reflections, action repeat 2: each agent step is 2 physics steps + 1 render)
next to the stock `gym.make("Meta-World/MT1", render_mode="rgb_array", width=64, height=64)`
path (each step is 1 physics step + 1 render). Ours does twice the physics per image, so the
comparison is conservative for ours.
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np


def _time_steps(step, n: int) -> float:
    step()  # warm-up: first render allocates the GL context and buffers
    start = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - start)


def ours_steps_per_second(task: str, steps: int) -> float:
    from harness.envs import make_env

    env = make_env(f"metaworld/{task}", 0)
    env.reset()
    rng = np.random.default_rng(0)
    try:
        return _time_steps(lambda: env.step(rng.uniform(-1, 1, 4)), steps)
    finally:
        env.close()


def stock_steps_per_second(task: str, steps: int) -> float:
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World ids)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("Meta-World/MT1", env_name=f"{task}-v3", render_mode="rgb_array",
                       width=64, height=64)
        env.reset(seed=0)

        def step():
            env.step(env.action_space.sample())
            env.render()

        try:
            return _time_steps(step, steps)
        finally:
            env.close()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform(terse=True)}"


def render_bench(tasks: list[str], steps: int) -> list[dict]:
    from harness.envs.render import ensure_backend

    backend = ensure_backend()
    rows = []
    for task in tasks:
        ours = ours_steps_per_second(task, steps)
        stock = stock_steps_per_second(task, max(steps // 10, 10))
        rows.append({"task": task, "ours_steps_per_s": ours, "stock_steps_per_s": stock,
                     "speedup": ours / stock, "gl": f"{backend['backend']}: {backend['gl_renderer']}"})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'task':<16}{'ours (steps/s)':>16}{'stock (steps/s)':>17}{'speedup':>10}"]
    for r in rows:
        lines.append(f"{r['task']:<16}{r['ours_steps_per_s']:>16.1f}{r['stock_steps_per_s']:>17.1f}"
                     f"{r['speedup']:>9.1f}x")
    return "\n".join(lines)
