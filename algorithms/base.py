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


def float_hint(value) -> str:
    """YAML 1.1 reads 1e-3 (no dot) as a string: a hint on how to write it as a number."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" YAML reads {value!r} as text; write it with a dot, e.g. 1.0e-3."


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

# name -> module that defines (and registers) it. A new built-in algorithm adds one line here;
# an algorithm from another package needs no line here (see `get` and
# docs/adding-an-algorithm.md).
MODULES = {
    "bc": "algorithms.bc",
    "bc-torch": "algorithms.bc_torch",  # needs the torch extra
    "combo": "algorithms.combo",
    "cql": "algorithms.cql",
    "dreamerv2": "algorithms.dreamerv2",
    "iql": "algorithms.iql",
    "lompo": "algorithms.lompo",
    "moto": "algorithms.moto",
    "sac": "algorithms.sac",
    "sac-torch": "algorithms.sac_torch",  # needs the torch extra
}

# Algorithms the suites may name before they exist, and where their work is tracked.
PLANNED: dict[str, str] = {}

# An installed package makes its algorithms known under this entry point group, e.g. in its
# pyproject.toml: [project.entry-points."moto_harness.algorithms"] my-bc = "my_pkg.bc:MyBC".
ENTRY_POINT_GROUP = "moto_harness.algorithms"
METHODS = ("update", "initial_state", "act", "state_dict", "load_state_dict")
_PLUGINS: dict[str, type] = {}  # suite name ("my-bc" or "my_pkg.bc:MyBC") -> checked class


def register(cls: type) -> type:
    _REGISTRY[cls.name] = cls
    return cls


def implemented() -> list[str]:
    return sorted(MODULES)


def plugin_entry_points() -> dict:
    """name -> importlib.metadata.EntryPoint, for every installed plugin algorithm."""
    import importlib.metadata

    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def is_plugin(name: str) -> bool:
    """A suite's algorithm name that is not a built-in: 'package.module:Class' or an entry point."""
    return name not in MODULES


def get(name: str) -> type:
    """The class of the algorithm a suite names: a built-in ('moto'), an installed plugin's
    entry point name, or 'package.module:ClassName'. A plugin is imported and checked against
    the interface on first use; a ConfigError says what is wrong and how to fix it."""
    if name in MODULES:
        if name not in _REGISTRY:
            import_module(MODULES[name], f"algorithm '{name}'")  # registers it
        return _REGISTRY[name]
    if name in _PLUGINS:
        return _PLUGINS[name]
    if ":" in name:
        cls = load_class(name, f"algorithm '{name}'")
    else:
        entry_points = plugin_entry_points()
        if name in PLANNED:
            raise ConfigError(
                f"algorithm '{name}' is not implemented yet (tracked in {PLANNED[name]}); "
                f"remove it from the suite for now. Implemented: {', '.join(implemented())}."
            )
        if name not in entry_points:
            known = list(MODULES) + list(entry_points) + list(PLANNED)
            plugins = f" Installed plugins: {', '.join(sorted(entry_points))}." if entry_points else ""
            raise ConfigError(
                f"unknown algorithm '{name}'.{closest(name, known)} "
                f"Implemented: {', '.join(implemented())}.{plugins} An algorithm from your own "
                f"package is named 'package.module:ClassName', or registered under the entry "
                f"point group '{ENTRY_POINT_GROUP}' (docs/adding-an-algorithm.md)."
            )
        ep = entry_points[name]
        where = f"algorithm '{name}' (entry point {ep.value!r} of {_dist_name(ep)})"
        cls = load_class(ep.value, where)
    check_interface(cls, f"algorithm '{name}'")
    _PLUGINS[name] = cls
    return cls


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"package {dist.metadata['Name']} {dist.version}" if dist is not None else "an unknown package"


def load_class(target: str, where: str) -> type:
    """Import 'package.module:ClassName' (the class may be dotted: 'module:Outer.Inner')."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr or not all(
            part.isidentifier() for part in module_name.split(".") + attr.split(".")):
        raise ConfigError(f"{where}: {target!r} is not 'package.module:ClassName' (dotted "
                          "Python names on each side of one colon).")
    module = import_module(module_name, where)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            classes = [n for n, v in vars(module).items() if isinstance(v, type)
                       and all(hasattr(v, m) for m in METHODS)]
            raise ConfigError(
                f"{where}: module '{module_name}' ({getattr(module, '__file__', '?')}) has no "
                f"'{attr}'.{closest(attr, classes)} Classes in it with the Algorithm methods: "
                f"{', '.join(classes) or 'none'}.")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ConfigError(f"{where}: '{target}' is a {type(obj).__name__}, not a class.")
    return obj


def import_module(module_name: str, where: str):
    """importlib.import_module, with a ConfigError that says what to install when it fails."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"{where}: no module named '{missing}'. Install the package that provides "
                f"'{module_name}' (pip install -e path/to/your/package) or add its folder to "
                "PYTHONPATH, and check the spelling.") from None
        hint = (" PyTorch algorithms need the torch extra: pip install -e '.[torch]'."
                if missing.split(".")[0] == "torch" else f" Install it: pip install {missing.split('.')[0]}.")
        raise ConfigError(f"{where}: importing '{module_name}' needs the module '{missing}', "
                          f"which is not installed.{hint}") from None
    except Exception as err:  # the plugin's own import-time error, shown without our traceback
        raise ConfigError(f"{where}: importing '{module_name}' failed: "
                          f"{type(err).__name__}: {err}") from None
    return module


def check_interface(cls: type, where: str) -> None:
    """What the run loop needs of an algorithm class before anything runs, all problems in one
    ConfigError: a `name`; a frozen dataclass `Config` whose fields all have defaults, with a
    non-empty `PRESETS` of which each builds and has its values in range; the `Algorithm`
    methods; and a constructor taking (obs_space, action_space, config, seed, total_updates).
    The `batch_spec` is an instance attribute, checked when the run builds the agent."""
    import inspect

    problems = []
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        problems.append("it needs a class attribute `name` (a non-empty string)")
    for method in METHODS:
        if not callable(getattr(cls, method, None)):
            problems.append(f"it has no method `{method}`")
    try:
        inspect.signature(cls).bind("obs_space", "action_space", "config", 0, 1)
    except TypeError:
        problems.append(f"its constructor {cls.__name__}{inspect.signature(cls)} cannot take "
                        "(obs_space, action_space, config, seed, total_updates)")
    except ValueError:
        pass  # no signature to inspect (a C type): the run will say if it cannot be built
    config_cls = getattr(cls, "Config", None)
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        problems.append("it needs a `Config` class attribute that is a dataclass")
    elif not config_cls.__dataclass_params__.frozen:
        problems.append("its Config must be frozen: @dataclass(frozen=True)")
    else:
        missing = [f.name for f in dataclasses.fields(config_cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        presets = getattr(config_cls, "PRESETS", None)
        if missing:
            problems.append(f"its Config fields {', '.join(missing)} need defaults (presets "
                            "change only some fields)")
        elif not (isinstance(presets, dict) and presets
                  and all(isinstance(v, dict) for v in presets.values())):
            problems.append("its Config needs `PRESETS: ClassVar[dict]`, a non-empty mapping of "
                            "preset names to field values, e.g. {'paper': {}}")
        else:
            for preset in presets:
                try:
                    make_config(cls, preset, presets[preset])
                except (ConfigError, TypeError, ValueError) as err:
                    problems.append(f"its preset '{preset}' does not build: {err}")
    if problems:
        raise ConfigError(f"{where}: {cls.__module__}.{cls.__qualname__} does not implement the "
                          f"Algorithm interface: " + "; ".join(problems) + ". See "
                          "docs/adding-an-algorithm.md.")


def source_of(name: str) -> dict:
    """Where an algorithm's code comes from, for config.yaml: its module, file, and for a
    plugin the installed distribution and its version (None when it is only on PYTHONPATH)."""
    import importlib.metadata
    import sys

    cls = get(name)
    module = sys.modules[cls.__module__]
    source = {"class": f"{cls.__module__}:{cls.__qualname__}",
              "file": getattr(module, "__file__", None), "builtin": name in MODULES}
    if name in MODULES:
        return source
    top = cls.__module__.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    ep = plugin_entry_points().get(name)
    if ep is not None and getattr(ep, "dist", None) is not None:
        dists = [ep.dist.metadata["Name"]]
    source["distribution"] = dists[0] if dists else None
    source["version"] = importlib.metadata.version(dists[0]) if dists else None
    return source


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
    check_ranges(cls.name, config)
    return config


# Ranges of the fields every config may have, by name, as intervals: "(0, 1]" excludes 0 and
# includes 1. A value outside is a typo or a run that cannot learn (a negative or NaN learning
# rate, a discount above 1). Every float must be finite. Every int field not named here is a
# count or size in [1, MAX_COUNT] (a config's `MINIMUMS` lets some be 0); every entry of a
# tuple of sizes too. The bounds on batch sizes and capacities are far above the paper's
# values: past them a run would only fail later, out of memory.
FIELD_RANGES = {
    "lr": "(0, 1]", "actor_lr": "(0, 1]", "critic_lr": "(0, 1]",
    "eps": "(0, 1)", "clip": "(0, inf)", "weight_decay": "[0, 1)",
    "discount": "(0, 1]", "lambda_": "[0, 1]", "tau": "(0, 1]",
    "entropy": "[0, inf)", "init_temperature": "(0, inf)", "min_std": "(0, inf)",
    "actor_min_std": "(0, inf)", "kl_balance": "[0, 1]", "kl_scale": "[0, inf)",
    "free_nats": "[0, inf)", "cql_alpha": "[0, inf)", "inverse_temperature": "[0, inf)",
    "max_weight": "(0, inf)", "alpha": "[0, inf)", "beta": "[0, inf)", "penalty": "[0, inf)",
    "conservative_weight": "[0, inf)", "exploration_noise": "[0, inf)",
    "batch_size": "[1, 16384]", "agent_batch_size": "[1, 65536]", "steps_per_call": "[1, 1000]",
    "sequence_length": "[1, 1000]", "horizon": "[1, 1000]", "frame_stack": "[1, 64]",
    "real_capacity": "[1, 10000000]", "imagined_capacity": "[1, 10000000]",
}
MAX_COUNT = 1_000_000


def _interval(text: str) -> tuple[float, float, bool, bool]:
    """"(0, 1]" -> (0.0, 1.0, low included False, high included True)."""
    low, high = text[1:-1].split(",")
    return float(low), float(high), text[0] == "[", text[-1] == "]"


def check_ranges(name: str, config) -> None:
    """Every field of `config` is in its range (see FIELD_RANGES), and bounds given as a
    pair (`log_std_min`, `log_std_max`) are in order; a ConfigError names the field."""
    hints = typing.get_type_hints(type(config))
    minimums = getattr(type(config), "MINIMUMS", {})  # ints that may be 0, e.g. a horizon
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        is_tuple = typing.get_origin(hint) is tuple
        values = value if is_tuple else (value,)
        item = typing.get_args(hint)[0] if is_tuple else hint
        if item not in (int, float):
            continue
        text = FIELD_RANGES.get(f.name, f"[1, {MAX_COUNT}]" if item is int else "(-inf, inf)")
        low, high, low_in, high_in = _interval(text)
        if f.name in minimums:
            low, low_in = minimums[f.name], True
            text = f"[{low}, {text.split(',')[1].strip()}"
        for v in values:
            inside = ((v > low or low_in and v == low) and (v < high or high_in and v == high)
                      and np.isfinite(v))
            if not inside:
                what = "hold values in" if is_tuple else "be in"
                raise ConfigError(f"{name}.config.{f.name} must {what} {text}, got {value!r}.")
    low, high = getattr(config, "log_std_min", None), getattr(config, "log_std_max", None)
    if low is not None and high is not None and not low < high:
        raise ConfigError(f"{name}.config.log_std_min ({low}) must be below log_std_max ({high}).")


def _coerce(value, hint, where: str):
    """Check a YAML value against a config field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and isinstance(value, int) and abs(value) > 1e300:
            raise ConfigError(f"{where}: {value} is too large for a float.")
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif origin is tuple:
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        ok = isinstance(value, (list, tuple))
        if ok:
            value = tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    else:
        ok = True
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        hint_text = float_hint(value) if hint is float else ""
        if hint is dict:
            name = "a mapping of field names to values"
        raise ConfigError(f"{where}: expected {name}, got {value!r} ({type(value).__name__})."
                          f"{hint_text}")
    return value
