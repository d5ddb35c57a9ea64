"""The `Algorithm` interface every method implements, batch specs, config presets, registry.

The run loop talks to an algorithm only through the members of `Algorithm`. An algorithm is a
module with a frozen `Config` dataclass (one doc line per field, named presets) and a class
registered with `@register`.

Batches handed to `update` carry a leading axis K: the update runs K gradient steps in one
jitted call with `lax.scan`, so the host syncs once per call, not once per step.

- `Transitions(frame_stack=S)` batch: `obs` (K, B, S+1, *obs_shape) in the stored dtype
  (uint8 images), where `obs[:, :, :S]` is the stacked observation and `obs[:, :, 1:]` the
  stacked next observation; `action` (K, B, A); `reward` (K, B); `terminal` (K, B), 1.0 only
  for a true environment termination (never for a time-limit end); `episode_success` (K, B),
  1.0 when the transition's episode reached success at some step.
- `Sequences(length=L)` batch: `obs` (K, B, L, *obs_shape); `action` (K, B, L, A), the action
  that led to each step (zeros at an episode's first step); `reward`, `is_first`, `is_terminal`,
  `episode_success` (K, B, L).

`act(obs, state, explore)` takes a batch of N observations shaped like one training
observation: (N, S, *obs_shape) for `Transitions`, (N, *obs_shape) for `Sequences`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import difflib
import importlib

import numpy as np


class ConfigError(ValueError):
    """A bad algorithm name, preset or config value; the message says how to fix it."""


def closest(name: str, choices) -> str:
    """' Did you mean X?' for the nearest of `choices`, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


@dataclass(frozen=True)
class Transitions:
    """Train on single transitions with `frame_stack` stacked frames."""

    frame_stack: int
    batch_size: int
    steps_per_call: int
    offline_only: bool = False  # sample only the offline dataset, never online episodes


@dataclass(frozen=True)
class Sequences:
    """Train on sub-sequences of `length` consecutive steps of one episode."""

    length: int
    batch_size: int
    steps_per_call: int
    offline_only: bool = False  # sample only the offline dataset, never online episodes


BatchSpec = Transitions | Sequences


class Algorithm(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type]
    batch_spec: BatchSpec

    def __init__(self, obs_space, action_space, config, seed: int, total_updates: int): ...

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """K gradient steps (K = the batch's leading axis); returns metrics averaged over the K steps."""

    def initial_state(self, n: int) -> Any: ...

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TrainStateMixin:
    """`state_dict` / `load_state_dict` for agents that keep every learnable and random piece
    of state in two attributes: `_train` (a pytree of parameters, optimizer states, counters)
    and `_rng` (a JAX key). Saving copies them to host NumPy arrays; loading puts them back
    as device arrays, so training continues bit for bit."""

    def state_dict(self) -> dict:
        import jax

        return jax.device_get({"train": self._train, "rng": self._rng})

    def load_state_dict(self, state: dict) -> None:
        import jax
        import jax.numpy as jnp

        self._train = jax.tree.map(jnp.asarray, state["train"])
        self._rng = jnp.asarray(state["rng"])


_REGISTRY: dict[str, type] = {}

# name -> module that defines (and registers) it. A new algorithm adds one line here.
MODULES = {
    "bc": "algorithms.bc",
    "combo": "algorithms.combo",
    "cql": "algorithms.cql",
    "dreamerv2": "algorithms.dreamerv2",
    "iql": "algorithms.iql",
    "lompo": "algorithms.lompo",
    "moto": "algorithms.moto",
    "sac": "algorithms.sac",
}

# Algorithms the suites may name before they exist, and where their work is tracked.
PLANNED: dict[str, str] = {}


def register(cls: type) -> type:
    _REGISTRY[cls.name] = cls
    return cls


def implemented() -> list[str]:
    return sorted(MODULES)


def get(name: str) -> type:
    if name in MODULES:
        importlib.import_module(MODULES[name])
        return _REGISTRY[name]
    if name in PLANNED:
        raise ConfigError(
            f"algorithm '{name}' is not implemented yet (tracked in {PLANNED[name]}); "
            f"remove it from the suite for now. Implemented: {', '.join(implemented())}."
        )
    raise ConfigError(
        f"unknown algorithm '{name}'.{closest(name, list(MODULES) + list(PLANNED))} "
        f"Implemented: {', '.join(implemented())}."
    )


def make_config(cls: type, preset: str = "paper", overrides: dict | None = None):
    """Build `cls.Config` from a named preset plus overrides, checking names and types."""
    config_cls = cls.Config
    presets: dict[str, dict] = config_cls.PRESETS
    if preset not in presets:
        raise ConfigError(
            f"algorithm '{cls.name}' has no preset '{preset}'.{closest(preset, presets)} "
            f"Presets: {', '.join(presets)}."
        )
    values = dict(presets[preset])
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    for key, value in (overrides or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"algorithm '{cls.name}': config keys must be field names, got "
                              f"{key!r} ({type(key).__name__}); quote it if YAML read it as a "
                              "number or boolean.")
        if key not in fields:
            raise ConfigError(
                f"algorithm '{cls.name}' has no config field '{key}'.{closest(key, fields)} "
                f"Fields: {', '.join(fields)}."
            )
        values[key] = _coerce(value, hints[key], f"{cls.name}.config.{key}")
    config = config_cls(**values)
    minimums = getattr(config_cls, "MINIMUMS", {})  # ints that may be 0, e.g. a horizon
    for f in dataclasses.fields(config_cls):  # counts and sizes must be positive
        value = getattr(config, f.name)
        least = minimums.get(f.name, 1)
        if hints[f.name] is int and value < least:
            raise ConfigError(f"{cls.name}.config.{f.name} must be >= {least}, got {value}.")
        if typing.get_origin(hints[f.name]) is tuple and any(
                isinstance(v, int) and v < 1 for v in value):
            raise ConfigError(f"{cls.name}.config.{f.name} must hold positive sizes, got {value}.")
    return config


def _coerce(value, hint, where: str):
    """Check a YAML value against a config field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        ok = isinstance(value, (list, tuple))
        if ok:
            value = tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    else:
        ok = True
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{where}: expected {name}, got {value!r} ({type(value).__name__}).")
    return value
