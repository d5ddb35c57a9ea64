"""Fault injection for the resume tests: kill this process at a chosen point, as SIGKILL would.

`MOTO_HARNESS_FAULT=POINT:N` makes the N-th pass through `point(POINT)` send SIGKILL to the
process itself. Points: `update` (after an update call), `env-step` (before an online env
step), `checkpoint-write` (half-way through writing the checkpoint's state.json). Unset, a point costs one dict
lookup.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get("MOTO_HARNESS_FAULT")
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
