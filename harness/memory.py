"""How much memory a run needs: an estimate to hold `resources.memory_gb` against.

A run's peak resident memory is about

    the process (Python, JAX, the simulator, the agent at its preset, XLA's buffers)
    + the replay's arrays (every stored step, in capacity that doubles as episodes come)
    + the evaluation's environments, in the process or in its worker processes.

The process's part at `paper` size was measured per algorithm family on the 2-core CPU
(`bench --only run`: each family in a fresh process, which records `memory` in its
status.json; docs/benchmarks.md, "Memory"). On the CPU the update's temporaries, our
convolutions' patch matrices above all, are host memory. That is why LOMPO, with 64 sequences
of 50 frames per model batch, peaks near 16 GB. Smaller presets get the smallest process
measured among the `debug` runs of the smoke suite, so their estimate is a lower bound. A run
is refused only for what it is sure to need. On a GPU the temporaries live on the device,
and the host memory of a GPU run has not been measured, so runs with `gpus` > 0 get no
estimate.

The replay's part is computed: every stored step costs the observation plus 34 bytes (action
4 x 4, reward 4, two flags, the episode's success 4 and its first entry 8), and the arrays
hold room for the next power of two times 1,024 steps. An algorithm from outside the
repository is given the largest measured figure at `paper` and the floor otherwise.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from harness.profile import FAMILY_OF as PROFILED_FAMILY_OF

# Peak RSS minus the replay's allocation, MiB: the `bench --only run --presets paper` runs on
# 2-core AMD EPYC, JAX 0.10.2 on the CPU, 2026-12-07 (docs/benchmarks.md, "A paper run, end
# to end"). SAC's and BC's at their paper K = 10 gradient steps per call (at K = 1: 1,565 and
# 1,244); MOTO's and LOMPO's at K = 1, so for their paper K = 4 these are lower bounds.
PAPER_PROCESS_MB = {"moto": 9036, "lompo": 16259, "sac": 3922, "bc": 2478}
# The profiled families (harness.profile), and the PyTorch twins with their JAX originals'.
FAMILY_OF = {**PROFILED_FAMILY_OF, "sac-torch": "sac", "bc-torch": "bc"}
# A floor for smaller presets: the smallest `debug` run process of the smoke suite, bc-torch's
# (955.6 MiB peak, less its replay's 24 and its 2 evaluation environments; the JAX runs'
# were 1,430 to 2,466 MiB), 2026-12-07.
SMALL_PROCESS_MB = 749
# The evaluation's environments (harness.evaluation), VmHWM of LocalEnvs on metaworld/door-open
# with 1, 5 and 10 environments stepped in a fresh interpreter: 313, 675 and 1,130 MiB. Each
# environment with its renderer costs 91 MiB, and a worker process 222 MiB before its first.
# A paper profile's workers (5 environments each) peaked at 677 MiB.
EVAL_ENV_MB = 91
EVAL_WORKER_MB = 222
INITIAL_CAPACITY = 1024  # harness.replay.EpisodeReplay's


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program, MiB. Linux's VmHWM,
    not `ru_maxrss`: a child's ru_maxrss keeps the RSS its parent had when it forked."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource  # elsewhere: ru_maxrss, KiB on Linux and bytes on macOS

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(maxrss / (2**20 if sys.platform == "darwin" else 1024), 1)


def replay_bytes_per_step(obs_shape: tuple, obs_dtype, action_dim: int) -> int:
    return (int(np.prod(obs_shape)) * np.dtype(obs_dtype).itemsize + 4 * action_dim
            + 4 + 1 + 1 + 4 + 8)


def replay_steps(protocol, info) -> int:
    """Stored steps at the end of a run: the dataset's episodes and the online ones, each
    episode_steps + 1 entries (its first observation included)."""
    online = math.ceil(protocol.online_env_steps / info.episode_sim_steps)
    return (protocol.dataset_episodes + online) * (info.episode_steps + 1)


def replay_allocated_bytes(steps: int, bytes_per_step: int) -> int:
    capacity = INITIAL_CAPACITY
    while capacity < steps:
        capacity *= 2
    return capacity * bytes_per_step


def process_mb(algorithm: str, preset: str) -> float:
    if preset != "paper":
        return SMALL_PROCESS_MB
    family = FAMILY_OF.get(algorithm)
    return PAPER_PROCESS_MB[family] if family else max(PAPER_PROCESS_MB.values())


def estimate(spec) -> dict | None:
    """The parts (MiB) and the total (GB) of one run's peak memory; None for a GPU run."""
    from harness.envs import task_info
    from harness.evaluation import MAX_LOCKSTEP, eval_workers

    if spec.resources.gpus > 0:
        return None
    info = task_info(spec.task)
    dtype = np.uint8 if info.pixels else np.float32
    per_step = replay_bytes_per_step(info.obs_shape, dtype, info.action_dim)
    replay = replay_allocated_bytes(replay_steps(spec.protocol, info), per_step) / 2**20
    process = process_mb(spec.algorithm.name, spec.algorithm.preset)
    width = min(spec.protocol.eval_episodes, MAX_LOCKSTEP)
    workers = eval_workers(spec.task, width, cores=spec.resources.cpus)
    # The evaluation's rendering environments, in the run's process or in its workers; the
    # toy task's and state vectors' cost next to nothing.
    renders = info.pixels and info.family != "toy"
    evaluation = (width * EVAL_ENV_MB + workers * EVAL_WORKER_MB) if renders else 0
    total_mb = process + replay + evaluation
    return {"process_mb": process, "replay_mb": round(replay, 1), "eval_workers": workers,
            "evaluation_mb": evaluation, "total_gb": round(total_mb / 1024, 2)}
