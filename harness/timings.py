"""Where a run's time goes: seconds and units of work per part of the run loop.

The run loop times each part as it does it (`harness.run`); a finished run's status.json
holds the totals under `timings`, checkpoints carry them across a resume, and `bench --only
run` turns them into a cost per unit and a projection to a whole schedule. Parts and their
units:

    offline_update, online_update   gradient steps (the jitted update calls, after the first)
    first_update_call               calls: compiling, or loading from JAX's cache, plus K steps
    replay_sampling                 gradient steps' batches
    first_collection                agent steps of the first episode collected in the process
                                    (compiling the exploring `act`, the renderer's first frames)
    collection                      agent steps of the others, split into act, physics, render
                                    and the rest
    first_evaluation                agent steps of the process's first evaluation (starting its
                                    environments and workers, compiling the batched `act`)
    evaluation                      agent steps of the others (all N episodes in lockstep)
    checkpoint                      checkpoints written
    episode_file                    online episodes written (checkpoint/online/)
    logs                            CSV rows and status.json writes
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict


class Timings:
    def __init__(self, saved: dict | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.units: dict[str, int] = defaultdict(int)
        for part, entry in (saved or {}).items():
            self.seconds[part] = entry["seconds"]
            self.units[part] = entry["units"]

    @contextlib.contextmanager
    def __call__(self, part: str, units: int = 1):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - start, units)

    def add(self, part: str, seconds: float, units: int = 0) -> None:
        self.seconds[part] += seconds
        self.units[part] += units

    def as_dict(self) -> dict:
        return {part: {"seconds": round(self.seconds[part], 6), "units": self.units[part]}
                for part in sorted(self.seconds)}


def per_unit(timings: dict) -> dict:
    """Seconds per unit of each part that did any units."""
    return {part: entry["seconds"] / entry["units"] for part, entry in timings.items()
            if entry["units"]}
