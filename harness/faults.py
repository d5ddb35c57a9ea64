"""Fault injection for the resume tests: kill this process at a chosen point, as SIGKILL would.

`MOTO_HARNESS_FAULT=POINT:N` makes the N-th pass through `point(POINT)` send SIGKILL to the
process itself. Points: `update` (after an update call), `env-step` (before an online env
step), `checkpoint-write` (half-way through writing the checkpoint's state.json). Unset, a
point costs one dict lookup. A value that is not POINT or POINT:N (N a positive integer) is a
UserError naming the variable, not a ValueError in the middle of a run.
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
    if not (count or "1").isdigit() or int(count or 1) < 1:
        from harness.errors import UserError

        raise UserError(f"MOTO_HARNESS_FAULT={wanted!r}: write POINT:N with N a positive "
                        "integer (e.g. update:4), or unset it.")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
