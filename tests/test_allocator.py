"""harness/allocator.py: freed memory stays in the process, so XLA:CPU's per-call buffers are
not page-faulted in again on every call."""

import json
import os
import platform
import subprocess
import sys

import pytest

PROGRAM = """
import json, resource, sys
from harness.allocator import keep_freed_memory
applied = keep_freed_memory()
import jax, jax.numpy as jnp
x = jnp.ones((10_000_000,), jnp.float32)  # 40 MB: above glibc's largest mmap threshold
double = jax.jit(lambda v: 2 * v)
for _ in range(20):  # the heap grows to its working size over the first calls
    double(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    double(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"applied": applied, "faults_per_call": faults}))
"""


def run(keep: str) -> dict:
    env = {**os.environ, "MOTO_HARNESS_KEEP_FREED_MEMORY": keep, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                    reason="mallopt is glibc's")
def test_kept_memory_removes_the_page_faults_of_each_call():
    default, kept = run("0"), run("1")
    assert not default["applied"] and kept["applied"]
    pages = 40e6 / 4096
    # By default every call maps its 40 MB output in anew (one fault per 4 KiB page);
    # with the setting, the freed buffer is reused.
    assert default["faults_per_call"] > 0.8 * pages, default
    assert kept["faults_per_call"] < 0.2 * pages, kept
