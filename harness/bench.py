"""`python -m harness bench`: throughput figures for this machine.

Rendered MetaWorld steps per second through our wrapper (free camera, 64x64 buffer,
no MSAA/shadows/reflections, action repeat 2: each agent step is 2 physics steps + 1 render)
next to the stock `gym.make("Meta-World/MT1", render_mode="rgb_array", width=64, height=64)`
path (each step is 1 physics step + 1 render). Ours does twice the physics per image, so the
comparison is conservative for ours. Then gradient updates per second and compile time of
every implemented algorithm at each of its presets, and replay bytes per stored step.
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


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: columns are (header, row key, format spec of the value)."""
    cells = [[header for header, _, _ in columns]]
    cells += [[format(r[key], spec) for _, key, spec in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) + 2 for i in range(len(columns))]
    return "\n".join("".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in cells)


RENDER_COLUMNS = [("task", "task", ""), ("ours (steps/s)", "ours_steps_per_s", ".1f"),
                  ("stock (steps/s)", "stock_steps_per_s", ".1f"), ("speedup", "speedup", ".1f")]
UPDATE_COLUMNS = [("algorithm", "algorithm", ""), ("preset", "preset", ""),
                  ("batch", "batch_size", "d"), ("K", "steps_per_call", "d"),
                  ("compile (s)", "compile_s", ".1f"), ("updates/s", "updates_per_s", ".3g")]


def update_bench(name: str, preset: str, calls: int, steps_per_call: int | None = None) -> dict:
    """Gradient updates/s and compile time of one algorithm, through the real replay sampler.

    The replay holds 20 random 200-step pixel episodes (MetaWorld's shape: 64x64x3 uint8,
    4-d actions); each call samples a K-step batch and runs `update`, as the run loop does.
    `steps_per_call` overrides K (a slow CPU can time `paper` sizes at K = 1: the compile of K
    unrolled steps grows with K, the cost per update hardly changes).
    """
    import gymnasium as gym

    from algorithms.base import get, make_config

    rng = np.random.default_rng(0)
    obs_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    replay = _replay_for_bench()
    cls = get(name)
    overrides = {"steps_per_call": steps_per_call} if steps_per_call else {}
    agent = cls(obs_space, action_space, make_config(cls, preset, overrides), 0, total_updates=10_000)
    spec = agent.batch_spec
    start = time.perf_counter()
    agent.update(replay.sample(rng, spec, spec.steps_per_call))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        agent.update(replay.sample(rng, spec, spec.steps_per_call))
    rate = calls * spec.steps_per_call / (time.perf_counter() - start)
    return {"algorithm": name, "preset": preset, "batch_size": spec.batch_size,
            "steps_per_call": spec.steps_per_call, "compile_s": compile_s, "updates_per_s": rate,
            "replay_bytes_per_step": replay.nbytes / replay.num_entries}


EVAL_COLUMNS = [("algorithm", "algorithm", ""), ("preset", "preset", ""), ("task", "task", ""),
                ("episodes", "episodes", "d"), ("way", "way", ""), ("workers", "workers", "d"),
                ("agent steps/s", "steps_per_s", ".3g"), ("ms per step", "ms_per_step", ".2f"),
                ("speed-up", "speed_up", ".2f")]


def eval_bench(name: str, preset: str, task: str, episodes: int, workers: int) -> list[dict]:
    """Agent steps/s of one evaluation of `episodes` deterministic episodes of an untrained
    agent, three ways (harness.evaluation): one after another with `act` at batch 1 (the
    evaluation before issue 26); in lockstep in this process; in lockstep with the
    environments in `workers` worker processes. Each way first plays a group that compiles
    `act` and starts its environments; the timings leave that out."""
    import os

    from algorithms.base import get, make_config
    from harness import evaluation
    from harness.envs import make_env

    seed = 100_000
    env = make_env(task, seed)
    cls = get(name)
    agent = cls(env.observation_space, env.action_space, make_config(cls, preset), 0,
                total_updates=10_000)
    steps = episodes * env.spec_info.episode_steps
    rows = []

    def row(way, n_workers, seconds):
        return {"algorithm": name, "preset": preset, "task": task, "episodes": episodes,
                "way": way, "workers": n_workers, "steps_per_s": steps / seconds,
                "ms_per_step": 1000 * seconds / steps,
                "speed_up": rows[0]["ms_per_step"] / (1000 * seconds / steps) if rows else 1.0}

    evaluation.evaluate_sequential(env, agent, 1)
    start = time.perf_counter()
    evaluation.evaluate_sequential(env, agent, episodes)
    rows.append(row("sequential", 0, time.perf_counter() - start))
    before = os.environ.get(evaluation.WORKERS_ENV)
    try:
        for n_workers in (0, workers) if workers > 1 else (0,):
            os.environ[evaluation.WORKERS_ENV] = str(n_workers)
            lockstep = evaluation.LockstepEvaluation(task, seed, episodes)
            try:
                lockstep(agent, 0)
                start = time.perf_counter()
                lockstep(agent, episodes)
                rows.append(row("lockstep", lockstep.workers, time.perf_counter() - start))
            finally:
                lockstep.close()
    finally:
        if before is None:
            os.environ.pop(evaluation.WORKERS_ENV, None)
        else:
            os.environ[evaluation.WORKERS_ENV] = before
    return rows


def report_bench(tasks: int = 10, labels: int = 10, seeds: int = 5) -> dict:
    """Seconds for `python -m harness report` (a fresh process, imports included) on a
    synthetic suite of tasks × labels × seeds finished runs of paper length (500k online env
    steps, an evaluation every 4,000: 126 metrics rows each)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from harness.report.synthetic import paper_suite

    names = ("moto", "dreamerv2", "lompo", "combo", "cql", "iql", "sac", "bc", "moto-no-bc",
             "moto-no-uncertainty", "moto-no-bc-no-uncertainty")
    if labels > len(names):
        raise ValueError(f"at most {len(names)} labels")
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        start = time.perf_counter()
        runs = paper_suite(results, tasks=tasks, algorithms=names[:labels], seeds=seeds)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "report", "--results", str(results),
                        "--out", str(Path(tmp) / "report")], check=True, capture_output=True)
        report_s = time.perf_counter() - start
        files = len(list((Path(tmp) / "report" / "synthetic").iterdir()))
    return {"runs": len(runs), "rows_per_run": 126, "report_s": report_s, "files": files,
            "write_s": write_s}


ENCODER_DECODER_COLUMNS = [("framework", "framework", ""), ("frames", "frames", "d"),
                           ("seconds", "seconds", ".2f"), ("GFLOP/s", "gflops", ".1f")]


def _encoder_decoder_flops(frames: int, depth: int = 48) -> float:
    """Forward multiply-adds x2 of the world model's convolutions (the MLPs are left out),
    times 3 for forward and backward."""
    flops, size, channels = 0, 64, 3
    for mult in (1, 2, 4, 8):
        out = (size - 4) // 2 + 1
        flops += out * out * 16 * channels * depth * mult
        size, channels = out, depth * mult
    size, channels = 1, 32 * depth
    for features, kernel in ((4 * depth, 5), (2 * depth, 5), (depth, 6), (3, 6)):
        flops += size * size * kernel * kernel * channels * features
        size, channels = (size - 1) * 2 + kernel, features
    return 3 * 2 * flops * frames


def jax_encoder_decoder(frames: int = 800, repeats: int = 2) -> dict:
    """Seconds for one forward and backward pass of the world model's `paper` encoder and
    decoder (depth 48, MLPs 4 x 400) on `frames` 64x64 images, as the world model trains them."""
    import jax
    import jax.numpy as jnp

    from algorithms.world_model import ConvDecoder, ConvEncoder

    encoder, decoder = ConvEncoder(48, 400, 4), ConvDecoder(48, 400, 4)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8))
    features = jnp.asarray(rng.normal(size=(frames, 2048)), jnp.float32)
    key = jax.random.PRNGKey(0)
    params = (encoder.init(key, images[:1]), decoder.init(key, features[:1]))

    def loss(params, images, features):
        embed = encoder.apply(params[0], images)
        prediction = decoder.apply(params[1], features.at[:, :embed.shape[-1]].add(embed))
        return jnp.mean((prediction - images.astype(jnp.float32) / 255.0 + 0.5) ** 2)

    grad = jax.jit(jax.grad(loss))
    jax.block_until_ready(grad(params, images, features))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(grad(params, images, features))
    seconds = (time.perf_counter() - start) / repeats
    return {"framework": f"jax {jax.__version__}", "frames": frames, "seconds": seconds,
            "gflops": _encoder_decoder_flops(frames) / seconds / 1e9}


def torch_encoder_decoder(frames: int = 800, repeats: int = 2, dtype: str = "float32") -> dict | None:
    """The same network and pass in PyTorch (None if torch is not installed: it is the
    `torch` extra): the reference a PyTorch user would get on this machine."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn

    depth, units = 48, 400

    def mlp(inputs):
        layers = []
        for i in range(4):
            layers += [nn.Linear(inputs if i == 0 else units, units), nn.ELU()]
        return layers

    encoder = nn.Sequential(
        nn.Conv2d(3, depth, 4, 2), nn.ELU(), nn.Conv2d(depth, 2 * depth, 4, 2), nn.ELU(),
        nn.Conv2d(2 * depth, 4 * depth, 4, 2), nn.ELU(), nn.Conv2d(4 * depth, 8 * depth, 4, 2),
        nn.ELU(), nn.Flatten(), *mlp(8 * depth * 4))
    decoder = nn.Sequential(
        *mlp(2048), nn.Linear(units, 32 * depth), nn.Unflatten(1, (32 * depth, 1, 1)),
        nn.ConvTranspose2d(32 * depth, 4 * depth, 5, 2), nn.ELU(),
        nn.ConvTranspose2d(4 * depth, 2 * depth, 5, 2), nn.ELU(),
        nn.ConvTranspose2d(2 * depth, depth, 6, 2), nn.ELU(), nn.ConvTranspose2d(depth, 3, 6, 2))
    kind = getattr(torch, dtype)
    encoder, decoder = encoder.to(kind), decoder.to(kind)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (frames, 3, 64, 64), dtype=np.uint8))
    features = torch.from_numpy(rng.normal(size=(frames, 2048)).astype(np.float32)).to(kind)

    def step():
        target = images.to(kind) / 255.0 - 0.5
        embed = encoder(target)
        inputs = torch.cat([features[:, :units] + embed, features[:, units:]], 1)
        loss = ((decoder(inputs) - target) ** 2).mean()
        loss.backward()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    return {"framework": f"torch {torch.__version__} {dtype}", "frames": frames,
            "seconds": seconds, "gflops": _encoder_decoder_flops(frames) / seconds / 1e9}


MODEL_FREE_COLUMNS = [("framework", "framework", ""), ("batch", "batch_size", "d"),
                      ("updates/s", "updates_per_s", ".3g"), ("encoder GFLOP/s", "gflops", ".1f")]


def _d4pg_flops(batch: int, channels=(32, 64, 128, 256), in_channels: int = 9) -> float:
    """Forward multiply-adds x2 of the D4PG encoder's convolutions on `batch` 64x64 images."""
    flops, size = 0, 64
    for width in channels:
        size = (size - 3) // 2 + 1
        flops += 2 * size * size * 9 * in_channels * width
        in_channels = width
    return flops * batch


def sac_update_flops(batch: int = 256) -> float:
    """Encoder convolution FLOPs of one SAC update: next observations through the current and
    the target encoder, observations forward and backward (the backward is twice the forward,
    less the first layer's input gradient, which nobody needs)."""
    forward = _d4pg_flops(batch)
    first_layer = _d4pg_flops(batch, channels=(32,))
    return 2 * forward + forward + (2 * forward - first_layer)


def _replay_for_bench(seed: int = 0):
    """The replay `update_bench` samples from: 20 random 200-step MetaWorld-shaped episodes."""
    from harness.replay import EpisodeReplay

    rng = np.random.default_rng(seed)
    replay = EpisodeReplay((64, 64, 3), np.uint8, 4)
    for _ in range(20):
        n = 201
        replay.add_episode({
            "obs": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
            "action": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            "reward": np.zeros(n, np.float32), "success": np.zeros(n, bool),
            "is_first": np.arange(n) == 0, "is_last": np.arange(n) == n - 1,
            "is_terminal": np.zeros(n, bool)}, offline=True)
    return replay


def sac_update_rows(calls: int) -> list[dict]:
    """SAC's `paper` update at K = 1 in JAX (`algorithms/sac.py`) and, when torch is installed,
    its PyTorch twin (`algorithms/sac_torch.py`), through the same replay: the reference a
    PyTorch user would get on this machine. Encoder GFLOP/s from `sac_update_flops`."""
    import importlib.util

    import jax

    names = [("sac", f"jax {jax.__version__} (algorithms/sac.py)")]
    if importlib.util.find_spec("torch") is not None:
        import torch

        names.append(("sac-torch", f"torch {torch.__version__} (algorithms/sac_torch.py)"))
    rows = []
    for name, framework in names:
        row = update_bench(name, "paper", calls, steps_per_call=1)
        rows.append({"framework": framework, "batch_size": row["batch_size"],
                     "updates_per_s": row["updates_per_s"],
                     "gflops": sac_update_flops(row["batch_size"]) * row["updates_per_s"] / 1e9})
    return rows
