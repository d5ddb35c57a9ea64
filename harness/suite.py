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
    checkpoint:                      # optional (these are the defaults)
      every_episodes: 10             # online episodes between checkpoints
      every_minutes: 10              # and at the first safe point after this long (0: at every one)
      keep: false                    # keep checkpoint/ (with the online episodes) once finished
    resources:                       # optional: per run, for the launcher (see docs/cluster.md)
      cpus: 1                        # an algorithm entry may override any of these:
      gpus: 0                        #   - {name: moto, resources: {gpus: 1, time_min: 2880}}
      memory_gb: 32                  # above each built-in algorithm's estimate (harness/memory.py)
      time_min: 1440                 # SLURM time limit; a run that reaches it checkpoints and requeues
      partition: null                # SLURM partition, account, qos, constraint
      sbatch: {}                     # extra sbatch flags, e.g. {exclude: node7, mail-type: FAIL}
      array_parallelism: 256         # SLURM: at most this many runs of one job array at once
      max_requeues: 3                # SLURM: time-limit requeues before a run is given up

Resources and checkpointing do not change results: a run is the same run (skipped when
finished, resumed when not) whatever they are.

Every problem is reported as a `UserError` naming the file, the field and the fix, before
anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import USER_ERRORS, UserError, closest, float_hint

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
# Evaluation envs use seed + 100000 and datasets seed 1000003 (harness.run, harness.data):
# run seeds stay below, so no two of these streams coincide.
MAX_SEED = 100_000
MAX_SUITE_BYTES = 16 * 2**20
# Names that become folder names (the suite's name, algorithm labels): at most this many bytes
# of UTF-8, well under the 255 a file name may have, so a run directory can always be made.
MAX_NAME_BYTES = 100
# Each protocol value's range, (least, most). The upper bounds are far above the paper's
# values (10,000 offline steps, 500,000 online steps, 10 demonstrations): past them a value is
# a typo that would run for weeks or fill the memory, not an experiment.
# Resource values: (least, most); past the upper bounds a value is a typo (SLURM would queue it
# forever or refuse it after the datasets were made).
RESOURCE_LIMITS = {"cpus": (1, 1024), "gpus": (0, 64), "memory_gb": (0.1, 100_000),
                   "time_min": (1, 527_040), "array_parallelism": (1, 100_000),
                   "max_requeues": (0, 1000)}
# sbatch flags the launcher sets itself (from resources, or for checkpointing and arrays).
HARNESS_SBATCH_FLAGS = {"job-name", "cpus-per-task", "ntasks-per-node", "ntasks", "time", "mem",
                        "gpus-per-node", "partition", "account", "qos", "constraint",
                        "requeue", "array", "signal", "output", "error", "open-mode", "wrap"}
# What an sbatch value may hold. sbatch reads `#SBATCH` lines with its own quoting rules: a
# backslash escapes even inside the quotes submitit adds, so a value with `\`, quotes, `#` or
# spaces could end its flag and start others (--hold, --array, --output anywhere). Node lists,
# mail addresses, gres and constraint expressions need none of those.
SLURM_VALUE = re.compile(r"[A-Za-z0-9_.,:;=@%+/*&|!()\[\]{}^~-]+")
PROTOCOL_LIMITS = {
    "offline_steps": (0, 10_000_000),
    "online_env_steps": (1, 100_000_000),
    "updates_per_episode": (0, 100_000),
    "eval_every_episodes": (1, 1_000_000),
    "eval_episodes": (1, 10_000),
    "dataset_episodes": (1, 100_000),
    "train_log_every": (1, 10_000_000),
}


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
class CheckpointPolicy:
    every_episodes: int = 10  # online episodes between checkpoints
    every_minutes: float = 10.0  # also at the first safe point after this long; 0: at every one
    keep: bool = False  # keep checkpoint/ (with the online episodes) after the run finishes


@dataclass(frozen=True)
class Resources:
    """What one run asks of the machine or the cluster."""

    cpus: int = 1  # CPU cores per run (SLURM cpus-per-task; the local executor's default
    #                --max-parallel is the machine's cores divided by this)
    gpus: int = 0  # GPUs per run (SLURM gpus-per-node)
    memory_gb: float = 32.0  # SLURM mem; LOMPO at `paper` on a CPU: at least 20 (harness.memory)
    time_min: int = 1440  # SLURM time limit, minutes
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    sbatch: tuple[tuple[str, object], ...] = ()  # extra sbatch flags, as sorted (flag, value)
    array_parallelism: int = 256  # SLURM: runs of one job array running at once
    max_requeues: int = 3  # SLURM: requeues after reaching the time limit

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "sbatch": dict(self.sbatch)}


@dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    preset: str = "paper"
    config: tuple[tuple[str, object], ...] = ()  # overrides, as sorted (key, value) pairs
    label: str = ""
    # This algorithm's resource overrides: merged into each RunSpec's `resources`, not part of
    # what makes a run the same run.
    resources: tuple[tuple[str, object], ...] = field(default=(), compare=False)

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
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    resources: Resources = Resources()

    @property
    def run_id(self) -> str:
        """Stable id, also the run's path under the results dir."""
        return f"{self.suite}/{self.task.replace('/', '.')}/{self.algorithm.label}/seed{self.seed}"

    def as_dict(self) -> dict:
        return {"suite": self.suite, "task": self.task, "seed": self.seed,
                "algorithm": {"name": self.algorithm.name, "preset": self.algorithm.preset,
                              "config": self.algorithm.overrides, "label": self.algorithm.label},
                "protocol": dataclasses.asdict(self.protocol),
                "checkpoint": dataclasses.asdict(self.checkpoint),
                "resources": self.resources.as_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        a = d["algorithm"]
        entry = AlgorithmEntry(a["name"], a["preset"], tuple(sorted(a["config"].items())), a["label"])
        resources = dict(d.get("resources", {}))
        resources["sbatch"] = tuple(sorted(resources.get("sbatch", {}).items()))
        return cls(d["suite"], d["task"], entry, d["seed"], Protocol(**d["protocol"]),
                   CheckpointPolicy(**d.get("checkpoint", {})), Resources(**resources))


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[str, ...]
    algorithms: tuple[AlgorithmEntry, ...]
    seeds: tuple[int, ...]
    protocol: Protocol
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    resources: Resources = Resources()
    source: str = field(default="", compare=False)

    def resources_for(self, entry: AlgorithmEntry) -> Resources:
        return dataclasses.replace(self.resources, **dict(entry.resources))

    def runs(self) -> list[RunSpec]:
        # Entries are not hashable (config values may be lists or mappings): pair, don't key.
        entries = [(algo, self.resources_for(algo)) for algo in self.algorithms]
        return [RunSpec(self.name, task, algo, seed, self.protocol, self.checkpoint, resources)
                for task in self.tasks for algo, resources in entries for seed in self.seeds]


def resolve_path(suite: str) -> Path:
    """A path, or the name of a shipped suite ('smoke' -> suites/smoke.yaml)."""
    if not suite or "\0" in suite:
        raise UserError(f"suite {suite!r}: give a suite file, or the name of a shipped suite "
                        "such as 'smoke'.")
    path = Path(suite)
    try:
        exists = path.exists()
    except OSError as err:  # e.g. a name too long for the file system
        raise UserError(f"suite '{suite}': cannot be looked up ({err.strerror}).") from None
    if exists:
        if path.is_dir():
            raise UserError(f"suite '{suite}' is a directory; give the YAML file in it, e.g. "
                            f"{path / 'suite.yaml'}.")
        if not path.is_file():
            raise UserError(f"suite '{suite}' is not a regular file (a device, pipe or socket); "
                            "give a YAML file.")
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise UserError(f"suite '{suite}' is {path.stat().st_size / 2**20:.0f} MiB; a suite "
                            f"file is a few KB (at most {MAX_SUITE_BYTES // 2**20} MiB). Is it "
                            "the right file?")
        return path
    shipped = SUITES_DIR / f"{suite}.yaml"
    if "/" not in suite and shipped.exists():
        return shipped
    names = [p.stem for p in sorted(SUITES_DIR.glob("*.yaml"))]
    raise UserError(f"suite '{suite}' is neither a file nor a shipped suite.{closest(suite, names)} "
                    f"Shipped suites: {', '.join(names)}.")


def results_folder(suite: str | None) -> str | None:
    """The results folder a suite writes to, from what `status` and `report` were given: a
    suite file (its `name`), a shipped suite's name, or the folder's name itself."""
    if suite is None or suite.endswith("/"):
        return suite
    path = Path(suite)
    is_file = suite.endswith((".yaml", ".yml")) or (path.is_file() if "\0" not in suite else False)
    if not is_file:
        return suite
    raw = parse_yaml(resolve_path(suite).read_text(errors="replace"), suite)
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name:
        raise UserError(f"suite '{suite}' has no 'name'; its runs are under "
                        "RESULTS/<name>/, so give that folder's name instead.")
    return name


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    would silently keep the last one, so `seeds: 5` further down would win unnoticed)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports unhashable keys
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice in one mapping (lines "
                        f"{first_line[key]} and {line}); keep one", key_node.start_mark)
                first_line[key] = line
        return super().construct_mapping(node, deep)


# A suite is at most a few thousand values; aliases (`*name`) may repeat a node, and ten nested
# aliases of ten make a 600-byte file of 10^9 values (a "billion laughs"), so the values a
# document stands for, aliases expanded, are counted before it is built.
MAX_YAML_VALUES = 1_000_000


def parse_yaml(text: str, where: str):
    """`text` as YAML (with `StrictLoader`), or a UserError naming `where`."""
    try:
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
                raise UserError(f"{where}: the YAML stands for more than {MAX_YAML_VALUES} values "
                                "once its aliases (*name) are expanded; a suite is far smaller.")
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        message = " ".join(str(err).split())
        raise UserError(f"{where}: not valid YAML ({message}). Fix the syntax and run again.") from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{where}: a value cannot be read ({err}).") from None
    except RecursionError:
        raise UserError(f"{where}: the YAML is nested too deeply to be a suite.") from None


def _expanded_size(node, sizes: dict) -> int:
    """How many values `node` stands for with every alias expanded (shared nodes counted once
    per use, each computed once)."""
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a recursive alias counts once
        if isinstance(node, yaml.SequenceNode):
            sizes[id(node)] += sum(_expanded_size(child, sizes) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            sizes[id(node)] += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes)
                                   for k, v in node.value)
    return sizes[id(node)]


def load_suite(suite: str, sets: list[str] = ()) -> Suite:
    path = resolve_path(suite)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start]:#x}); "
                        "save the suite as UTF-8.") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}).") from None
    raw = parse_yaml(text, str(path))
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
    if not all(parts):
        raise UserError(f"--set {assignment}: '{key}' is not a field; write KEY=VALUE with KEY "
                        "like protocol.offline_steps.")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise UserError(f"--set {assignment}: '{part}' is not a section of the suite")
        node = node[part]
    node[parts[-1]] = parse_yaml(value, f"--set {assignment}")


def _field(where: str, raw: dict, key: str, kind, *, required=True, default=None):
    if key not in raw:
        if required:
            raise UserError(f"{where}: missing field '{key}'. Add it (see suites/smoke.yaml).")
        return default
    value = raw[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        want = "a number" if kind == (int, float) else f"{kind.__name__}"
        raise UserError(f"{where}: field '{key}' must be {want}, got {value!r}.{float_hint(value)}")
    return value


def check_folder_name(where: str, key: str, value: str) -> None:
    """`value` can be one folder name on any file system a run may write to."""
    problem = None
    if not value or value.startswith((".", "_")):
        problem = "is empty or starts with . or _"
    elif "/" in value or "\\" in value:
        problem = "contains a slash"
    elif any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value):
        problem = "contains a control character"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise UserError(f"{where}: '{key}' becomes a folder name and {problem}: {value[:120]!r}. "
                        f"Use letters, digits, '-' and '.', e.g. 'moto-no-bc'.")


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
        least, most = PROTOCOL_LIMITS[f.name]
        if not least <= value <= most:
            raise UserError(f"{where}: protocol.{f.name} must be in [{least}, {most}], got "
                            f"{value}.")
        values[f.name] = value
    return Protocol(**values)


def parse_algorithm(where: str, raw) -> AlgorithmEntry:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: each algorithm is a name or a mapping with name, preset, "
                        f"config, label; got {raw!r}.")
    _check_keys(where, raw, ("name", "preset", "config", "label", "resources"))
    name = _field(where, raw, "name", str)
    preset = _field(where, raw, "preset", str, required=False, default="paper")
    config = _field(where, raw, "config", dict, required=False, default={}) or {}
    # 'my_pkg.bc:MyBC' is labelled 'MyBC' unless the suite says otherwise (a colon is not
    # allowed in Windows folder names).
    label = _field(where, raw, "label", str, required=False, default=name.rpartition(":")[2])
    check_folder_name(where, "label", label)
    bad_keys = [k for k in config if not isinstance(k, str)]
    if bad_keys:
        raise UserError(f"{where}: config keys must be field names, got {bad_keys!r}; quote "
                        "them if YAML read them as numbers or booleans.")
    resources = parse_resources(f"{where}: resources", raw.get("resources", {}), partial=True)
    return AlgorithmEntry(name, preset, tuple(sorted(config.items())), label, resources)


def parse_resources(where: str, raw, partial: bool = False):
    """The `resources` section (or an algorithm's overrides of it, when `partial`)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: must be a mapping such as {{cpus: 2, gpus: 1, time_min: 720}}.")
    fields = {f.name: f for f in dataclasses.fields(Resources)}
    _check_keys(where, raw, list(fields))
    values = {}
    for key, value in raw.items():
        if key == "sbatch":
            if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
                raise UserError(f"{where}: 'sbatch' must map flag names to values, e.g. "
                                "{exclude: node7, mail-type: FAIL}.")
            bad = [k for k, v in value.items() if not isinstance(v, (str, int, float, bool))
                   or not str(v).isprintable() or isinstance(v, float) and not math.isfinite(v)]
            flags = [k for k in value if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", k)]
            if flags:
                raise UserError(f"{where}: sbatch flag name(s) {flags} are not flag names; write "
                                "them without dashes, e.g. {mail-type: FAIL}.")
            ours = [k for k in value if k.replace("_", "-") in HARNESS_SBATCH_FLAGS]
            if ours:
                raise UserError(f"{where}: sbatch flag(s) {ours} are set by the harness from "
                                "resources (cpus, gpus, memory_gb, time_min, partition, account, "
                                "qos, constraint, array_parallelism); set those instead.")
            if bad:
                raise UserError(f"{where}: sbatch flag(s) {bad} need a plain value (a string, "
                                "number or true, on one line).")
            unsafe = {k: v for k, v in value.items()
                      if not isinstance(v, bool) and not SLURM_VALUE.fullmatch(str(v))}
            if unsafe:
                raise UserError(f"{where}: sbatch value(s) {unsafe} hold characters sbatch could "
                                "read as the end of the flag (spaces, quotes, backslashes, '#', "
                                "'$' or '`'); write the value without them.")
            values[key] = tuple(sorted(value.items()))
        elif key in ("partition", "account", "qos", "constraint"):
            if value is not None and not (isinstance(value, str) and SLURM_VALUE.fullmatch(value)):
                raise UserError(f"{where}: '{key}' must be a name with no spaces, quotes, "
                                f"backslashes, '#', '$' or '`', got {value!r}.")
            values[key] = value
        elif key == "memory_gb":
            least, most = RESOURCE_LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not least <= value <= most:
                raise UserError(f"{where}: 'memory_gb' must be a number in [{least}, {most}], got "
                                f"{value!r}.{float_hint(value)}")
            values[key] = float(value)
        else:
            least, most = RESOURCE_LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise UserError(f"{where}: '{key}' must be an integer in [{least}, {most}], got "
                                f"{value!r}.")
            values[key] = value
    return tuple(sorted(values.items())) if partial else Resources(**values)


def parse_checkpoint(where: str, raw) -> CheckpointPolicy:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: 'checkpoint' must be a mapping with every_episodes, "
                        "every_minutes, keep.")
    _check_keys(f"{where}: checkpoint", raw, [f.name for f in dataclasses.fields(CheckpointPolicy)])
    episodes = _field(f"{where}: checkpoint", raw, "every_episodes", int, required=False, default=10)
    minutes = _field(f"{where}: checkpoint", raw, "every_minutes", (int, float), required=False,
                     default=10.0)
    keep = _field(f"{where}: checkpoint", raw, "keep", bool, required=False, default=False)
    if episodes < 1 or isinstance(minutes, bool) or not 0 <= minutes < 10**9:
        raise UserError(f"{where}: checkpoint.every_episodes must be >= 1 and every_minutes a "
                        f"number in [0, 1e9), got {episodes} and {minutes!r}.")
    return CheckpointPolicy(episodes, float(minutes), keep)


def parse_seeds(where: str, raw) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= MAX_SEED:
            raise UserError(f"{where}: 'seeds: N' needs 1 <= N <= {MAX_SEED} (seeds 0 .. N-1 must "
                            f"stay below {MAX_SEED}, where evaluation seeds begin), got {raw}.")
        return tuple(range(raw))
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: 'seeds' must be a non-empty list of integers or a count.")
    for seed in raw:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED:
            raise UserError(f"{where}: seeds must be integers in [0, {MAX_SEED}), got {seed!r} "
                            "(larger seeds would share episodes with evaluation or datasets).")
    duplicates = sorted(s for s, n in Counter(raw).items() if n > 1)
    if duplicates:
        raise UserError(f"{where}: duplicate seeds {duplicates[:10]}; each seed may appear once.")
    return tuple(raw)


def parse_suite(raw: dict, where: str) -> Suite:
    _check_keys(where, raw, ("name", "tasks", "algorithms", "seeds", "protocol", "checkpoint",
                             "resources"))
    name = _field(where, raw, "name", str)
    check_folder_name(where, "name", name)
    tasks = _field(where, raw, "tasks", list)
    algorithms = _field(where, raw, "algorithms", list)
    if not tasks or not algorithms:
        raise UserError(f"{where}: 'tasks' and 'algorithms' must each list at least one entry.")
    twice = [t for t, n in Counter(map(str, tasks)).items() if n > 1]
    if twice:
        raise UserError(f"{where}: task '{twice[0]}' is listed twice in 'tasks'.")
    entries = tuple(parse_algorithm(f"{where}: algorithms[{i}]", a) for i, a in enumerate(algorithms))
    for label, n in Counter(e.label for e in entries).items():
        if n > 1:
            raise UserError(f"{where}: two algorithms share the label '{label}'; give each a "
                            "distinct 'label' (e.g. 'moto-no-bc').")
    # Folders named 'MOTO' and 'moto', or 'é' composed and decomposed, are one folder on a
    # case-insensitive or normalizing file system (macOS, Windows): their runs would mix.
    folded: dict[str, str] = {}
    for entry in entries:
        key = unicodedata.normalize("NFC", entry.label).casefold()
        if key in folded:
            raise UserError(f"{where}: the labels {folded[key]!r} and {entry.label!r} differ only "
                            "by case or Unicode normalization, so they would share one folder "
                            "on some file systems; give them labels that differ in letters.")
        folded[key] = entry.label
    suite = Suite(name, tuple(tasks), entries, parse_seeds(where, raw.get("seeds")),
                  parse_protocol(where, raw.get("protocol")),
                  parse_checkpoint(where, raw.get("checkpoint")),
                  parse_resources(f"{where}: resources", raw.get("resources")), where)
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
            config = make_config(get(entry.name), entry.preset, entry.overrides)
        except USER_ERRORS as err:
            raise UserError(f"{where}: algorithms: {err}") from None
        # One compiled update program per run: every update call runs exactly K steps.
        k = getattr(config, "steps_per_call", 1)
        for key in ("offline_steps", "updates_per_episode"):
            value = getattr(suite.protocol, key)
            if value % k:
                raise UserError(
                    f"{where}: protocol.{key} = {value} is not a multiple of {entry.label}'s "
                    f"steps_per_call = {k} (gradient steps per jitted call), so a second "
                    f"program would be compiled for the remainder. Use "
                    f"{max(k, value - value % k)} or {value + k - value % k}, or set "
                    f"steps_per_call in that algorithm's config.")
