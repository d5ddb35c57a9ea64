"""Suites: YAML -> validated, frozen dataclasses -> run specs (task x algorithm x seed).

A suite file:

    name: smoke                      # results go to <results>/<name>/...
    tasks: [toy/reach, metaworld/door-open]
    algorithms:
      - bc                           # a registered name: the `paper` preset
      - name: bc                     # or a name with a preset, config overrides and a label
        preset: debug
        config: {lr: 0.001}
        label: bc-fast               # defaults to the name; labels must be unique
    seeds: [0, 1, 2]                 # or a count: `seeds: 3` means [0, 1, 2]
    protocol:
      offline_steps: 10000           # gradient steps before any online interaction
      online_env_steps: 500000       # simulator steps (action repeat counted) of online data
      updates_per_episode: 20        # gradient steps after each online episode
      eval_every_episodes: 10        # evaluate after every N online episodes
      eval_episodes: 10              # deterministic-policy episodes per evaluation
      dataset_episodes: 10           # offline episodes loaded (generated if missing)
      train_log_every: 100           # optional: gradient steps between train.csv rows

Every problem is reported as a `UserError` naming the file, the field and the fix, before
anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import USER_ERRORS, UserError, closest

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
# Evaluation envs use seed + 100000 and datasets seed 1000003 (harness.run, harness.data):
# run seeds stay below, so no two of these streams coincide.
MAX_SEED = 100_000


@dataclass(frozen=True)
class Protocol:
    offline_steps: int
    online_env_steps: int
    updates_per_episode: int
    eval_every_episodes: int
    eval_episodes: int
    dataset_episodes: int
    train_log_every: int = 100


@dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    preset: str = "paper"
    config: tuple[tuple[str, object], ...] = ()  # overrides, as sorted (key, value) pairs
    label: str = ""

    @property
    def overrides(self) -> dict:
        return dict(self.config)


@dataclass(frozen=True)
class RunSpec:
    suite: str
    task: str
    algorithm: AlgorithmEntry
    seed: int
    protocol: Protocol

    @property
    def run_id(self) -> str:
        """Stable id, also the run's path under the results dir."""
        return f"{self.suite}/{self.task.replace('/', '.')}/{self.algorithm.label}/seed{self.seed}"

    def as_dict(self) -> dict:
        return {"suite": self.suite, "task": self.task, "seed": self.seed,
                "algorithm": {"name": self.algorithm.name, "preset": self.algorithm.preset,
                              "config": self.algorithm.overrides, "label": self.algorithm.label},
                "protocol": dataclasses.asdict(self.protocol)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        a = d["algorithm"]
        entry = AlgorithmEntry(a["name"], a["preset"], tuple(sorted(a["config"].items())), a["label"])
        return cls(d["suite"], d["task"], entry, d["seed"], Protocol(**d["protocol"]))


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[str, ...]
    algorithms: tuple[AlgorithmEntry, ...]
    seeds: tuple[int, ...]
    protocol: Protocol
    source: str = field(default="", compare=False)

    def runs(self) -> list[RunSpec]:
        return [RunSpec(self.name, task, algo, seed, self.protocol)
                for task in self.tasks for algo in self.algorithms for seed in self.seeds]


def resolve_path(suite: str) -> Path:
    """A path, or the name of a shipped suite ('smoke' -> suites/smoke.yaml)."""
    path = Path(suite)
    if path.exists():
        return path
    shipped = SUITES_DIR / f"{suite}.yaml"
    if shipped.exists():
        return shipped
    names = [p.stem for p in sorted(SUITES_DIR.glob("*.yaml"))]
    raise UserError(f"suite '{suite}' is neither a file nor a shipped suite.{closest(suite, names)} "
                    f"Shipped suites: {', '.join(names)}.")


def load_suite(suite: str, sets: list[str] = ()) -> Suite:
    path = resolve_path(suite)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({err}). Fix the syntax and run again.") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a suite is a YAML mapping with keys name, tasks, algorithms, "
                        "seeds, protocol.")
    for assignment in sets:
        _apply_set(raw, assignment)
    return parse_suite(raw, str(path))


def _apply_set(raw: dict, assignment: str) -> None:
    """`--set protocol.offline_steps=100`: override one value of the suite before validation."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment}: expected KEY=VALUE, e.g. --set protocol.offline_steps=100")
    key, value = assignment.split("=", 1)
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise UserError(f"--set {assignment}: '{part}' is not a section of the suite")
        node = node[part]
    node[parts[-1]] = yaml.safe_load(value)


def _field(where: str, raw: dict, key: str, kind, *, required=True, default=None):
    if key not in raw:
        if required:
            raise UserError(f"{where}: missing field '{key}'. Add it (see suites/smoke.yaml).")
        return default
    value = raw[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        want = getattr(kind, "__name__", str(kind))
        raise UserError(f"{where}: field '{key}' must be {want}, got {value!r}.")
    return value


def _check_keys(where: str, raw: dict, allowed) -> None:
    for key in raw:
        if key not in allowed:
            raise UserError(f"{where}: unknown field '{key}'.{closest(str(key), allowed)} "
                            f"Allowed: {', '.join(allowed)}.")


def parse_protocol(where: str, raw) -> Protocol:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: 'protocol' must be a mapping of schedule settings.")
    fields = [f.name for f in dataclasses.fields(Protocol)]
    _check_keys(f"{where}: protocol", raw, fields)
    values = {}
    for f in dataclasses.fields(Protocol):
        required = f.default is dataclasses.MISSING
        value = _field(f"{where}: protocol", raw, f.name, int, required=required, default=f.default)
        minimum = 0 if f.name in ("offline_steps", "updates_per_episode") else 1
        if value < minimum:
            raise UserError(f"{where}: protocol.{f.name} must be >= {minimum}, got {value}.")
        values[f.name] = value
    return Protocol(**values)


def parse_algorithm(where: str, raw) -> AlgorithmEntry:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: each algorithm is a name or a mapping with name, preset, "
                        f"config, label; got {raw!r}.")
    _check_keys(where, raw, ("name", "preset", "config", "label"))
    name = _field(where, raw, "name", str)
    preset = _field(where, raw, "preset", str, required=False, default="paper")
    config = _field(where, raw, "config", dict, required=False, default={}) or {}
    label = _field(where, raw, "label", str, required=False, default=name)
    if not label or "/" in label or label.startswith((".", "_")):
        raise UserError(f"{where}: 'label' must be a plain folder name (no '/', not starting "
                        f"with . or _), got {label!r}.")
    bad_keys = [k for k in config if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"{where}: config keys must be field names, got {bad_keys!r}; quote "
                        "them if YAML read them as numbers or booleans.")
    return AlgorithmEntry(name, preset, tuple(sorted(config.items())), label)


def parse_seeds(where: str, raw) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise UserError(f"{where}: 'seeds: N' needs N >= 1, got {raw}.")
        return tuple(range(raw))
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: 'seeds' must be a non-empty list of integers or a count.")
    for seed in raw:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED:
            raise UserError(f"{where}: seeds must be integers in [0, {MAX_SEED}), got {seed!r} "
                            "(larger seeds would share episodes with evaluation or datasets).")
    duplicates = sorted({s for s in raw if raw.count(s) > 1})
    if duplicates:
        raise UserError(f"{where}: duplicate seeds {duplicates}; each seed may appear once.")
    return tuple(raw)


def parse_suite(raw: dict, where: str) -> Suite:
    _check_keys(where, raw, ("name", "tasks", "algorithms", "seeds", "protocol"))
    name = _field(where, raw, "name", str)
    if not name or "/" in name or name.startswith((".", "_")):
        raise UserError(f"{where}: 'name' must be a plain folder name (not starting with . or _), got {name!r}.")
    tasks = _field(where, raw, "tasks", list)
    algorithms = _field(where, raw, "algorithms", list)
    if not tasks or not algorithms:
        raise UserError(f"{where}: 'tasks' and 'algorithms' must each list at least one entry.")
    if len(set(map(str, tasks))) != len(tasks):
        raise UserError(f"{where}: a task is listed twice in 'tasks'.")
    entries = tuple(parse_algorithm(f"{where}: algorithms[{i}]", a) for i, a in enumerate(algorithms))
    labels = [e.label for e in entries]
    for label in labels:
        if labels.count(label) > 1:
            raise UserError(f"{where}: two algorithms share the label '{label}'; give each a "
                            "distinct 'label' (e.g. 'moto-no-bc').")
    suite = Suite(name, tuple(tasks), entries, parse_seeds(where, raw.get("seeds")),
                  parse_protocol(where, raw.get("protocol")), where)
    validate(suite)
    return suite


def validate(suite: Suite) -> None:
    """Tasks and algorithms exist, configs parse, budgets fit: all before anything runs."""
    from algorithms.base import get, make_config
    from harness.envs import task_info

    where = suite.source
    for task in suite.tasks:
        try:
            info = task_info(task)
        except USER_ERRORS as err:
            raise UserError(f"{where}: tasks: {err}") from None
        if suite.protocol.online_env_steps < info.episode_sim_steps:
            raise UserError(
                f"{where}: protocol.online_env_steps = {suite.protocol.online_env_steps} is less "
                f"than one episode of {task} ({info.episode_sim_steps} simulator steps); raise it "
                f"to at least {info.episode_sim_steps}.")
    for entry in suite.algorithms:
        try:
            make_config(get(entry.name), entry.preset, entry.overrides)
        except USER_ERRORS as err:
            raise UserError(f"{where}: algorithms: {err}") from None
