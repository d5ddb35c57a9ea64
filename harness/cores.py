"""Which CPU cores this process may use, and one core set per parallel local run.

Two JAX processes left to share 2 cores each start a thread pool as wide as the machine and
fight over both. Measured on the 2-core EPYC (docs/benchmarks.md), two MOTO `cpu` runs at once:
22 updates/s each when they share the cores, 35-43 each when each has its own, as fast as one
run alone. The local executor therefore gives each run at once its own `resources.cpus` cores
when the machine has enough of them; SLURM does the same for its jobs.

Pinning needs `os.sched_setaffinity` (Linux). Elsewhere the runs share the cores, as before.
"""

from __future__ import annotations

import os
import shlex
import sys


def usable_cores() -> list[int]:
    """The cores this process may run on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_slots(cores, workers: int, per_worker: int) -> list[tuple[int, ...]]:
    """Disjoint sets of `per_worker` cores, one for each of `workers` runs at once; empty when
    there are too few cores to give every run its own, or the OS cannot pin processes."""
    cores = sorted(cores)
    if not hasattr(os, "sched_setaffinity") or workers * per_worker > len(cores):
        return []
    return [tuple(cores[i * per_worker:(i + 1) * per_worker]) for i in range(workers)]


def pin_parent_command(cores: tuple[int, ...]) -> str:
    """A shell command that pins the shell running it (and so every process that shell starts
    afterwards) to `cores`, before any of them has started a thread."""
    code = f"import os; os.sched_setaffinity(os.getppid(), {list(cores)!r})"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"
