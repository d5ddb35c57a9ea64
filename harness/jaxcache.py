"""JAX's persistent compilation cache, on by default, one directory per kind of host CPU.

Every run process compiles the same update and act programs for the same algorithm and
shapes; with the cache, only the first one pays XLA's compile time (tracing remains). XLA:CPU
compiles for the host's instruction set, so the cache is split by CPU model and flags: a
cluster whose nodes differ, sharing one home directory, never loads a program built for
another CPU.

`MOTO_HARNESS_JAX_CACHE` = a directory to use instead of the default
(`$XDG_CACHE_HOME/moto-harness/jax-cache`, else `~/.cache/...`), or `off`.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

ENV = "MOTO_HARNESS_JAX_CACHE"
MIN_COMPILE_S = 0.2  # programs that compile faster than this are not worth a file


def host_key() -> str:
    """<machine>-<hash of the CPU model and flags>, e.g. x86_64-3f2a9c1b."""
    fields = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                fields.append(line.split(":", 1)[1].strip())
                if len(fields) >= 2:
                    break
    except OSError:
        fields.append(platform.processor())
    digest = hashlib.sha256("\n".join(fields).encode()).hexdigest()[:8]
    return f"{platform.machine()}-{digest}"


def cache_dir() -> Path | None:
    setting = os.environ.get(ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        base = Path(setting).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "moto-harness" / "jax-cache"
    return base / host_key()


def enable() -> Path | None:
    """Point JAX at the cache directory (call before the first compile). Returns it, or None
    when the cache is off or its directory cannot be created (then JAX compiles as usual)."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
