"""Every run of the results tree in one tidy table, whatever state its files are in.

A run whose files cannot be trusted (metrics.csv or config.yaml missing, empty, cut short,
not text, with a non-numeric value) is skipped with a warning that names the file and the
problem; the report lists it. A run that has not finished is kept apart and listed with its
state and progress. Nothing is dropped without a word.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness import results as tree

# metrics.csv columns the report needs, and those it reads as numbers when they are present.
REQUIRED_COLUMNS = ("phase", "grad_steps", "env_steps", "eval_success")
NUMERIC_COLUMNS = ("grad_steps", "env_steps", "episodes", "eval_success", "eval_return",
                   "eval_episodes", "wall_time", "eval_objects", "eval_success_any")
PHASES = ("offline", "online")
IDENTITY = ("suite", "task", "algorithm", "seed")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class BadFile(Exception):
    """A run file the report cannot use; the message says what is wrong with it."""


@dataclass
class Run:
    path: str                      # relative to the results dir
    suite: str
    task: str
    algorithm: str                 # the suite's label (moto-no-bc), which the report compares
    name: str                      # the algorithm's registry name (moto)
    seed: int
    state: str                     # finished, running, stale, interrupted, failed, pending
    progress: str
    evaluations: pd.DataFrame      # metrics.csv rows, in the order they were written
    dataset: dict | None = None    # the dataset block of config.yaml (Table 1)


@dataclass
class Loaded:
    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, why)
    not_started: list[str] = field(default_factory=list)            # run dirs with no files yet
    ignored: list[tuple[str, str]] = field(default_factory=list)    # (entry, why): symlinks, stray files
    warnings: list[str] = field(default_factory=list)

    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.state == "finished"]

    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.state != "finished"]

    def evaluations(self, runs: list[Run] | None = None) -> pd.DataFrame:
        """One row per evaluation: the identity columns, `state`, then metrics.csv's columns."""
        runs = self.finished() if runs is None else runs
        runs = [r for r in runs if len(r.evaluations)]
        if not runs:
            return pd.DataFrame(columns=[*IDENTITY, "state", "run", *REQUIRED_COLUMNS])
        lengths = [len(r.evaluations) for r in runs]
        identity = pd.DataFrame({key: np.repeat([getattr(r, attribute) for r in runs], lengths)
                                 for key, attribute in (("suite", "suite"), ("task", "task"),
                                                        ("algorithm", "algorithm"), ("seed", "seed"),
                                                        ("state", "state"), ("run", "path"))})
        metrics = pd.concat([r.evaluations for r in runs], ignore_index=True)
        return pd.concat([identity, metrics], axis=1)


def load(results: Path, suite: str | None = None, warn=None) -> Loaded:
    """Every run under `results` (one suite's with `suite`). `warn(message)` is called once
    per problem; by default it prints to stderr."""
    results = Path(results)
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    loaded = Loaded()

    def skip(path: Path, why: str) -> None:
        shown = _shown(path, results)
        loaded.skipped.append((shown, why))
        loaded.warnings.append(f"{shown}: {why}; run skipped")
        warn(loaded.warnings[-1])

    loaded.ignored = tree.ignored_entries(results, suite)
    for path, why in loaded.ignored:
        loaded.warnings.append(f"{path}: {why}")
        warn(loaded.warnings[-1])
    for run_dir in tree.iter_run_dirs(results, suite):
        status = tree.read_status(run_dir)
        state = tree.observed_state(run_dir, status)
        config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.csv"
        if state == "pending" and not config_path.exists() and not metrics_path.exists():
            loaded.not_started.append(str(run_dir.relative_to(results)))  # submitted, not begun
            continue
        try:
            config = read_config(config_path)
            _check_folder(config, run_dir.relative_to(results).parts)
        except BadFile as err:
            skip(config_path, str(err))
            continue
        try:
            evaluations, notes = read_metrics(metrics_path, finished=state == "finished")
        except BadFile as err:
            skip(metrics_path, str(err))
            continue
        for note in notes:
            loaded.warnings.append(f"{_shown(metrics_path, results)}: {note}")
            warn(loaded.warnings[-1])
        if state == "finished" and evaluations.empty:
            skip(metrics_path, "the run is marked finished but has no evaluation with a number")
            continue
        loaded.runs.append(Run(
            path=str(run_dir.relative_to(results)), suite=config["suite"], task=config["task"],
            algorithm=config["algorithm"]["label"], name=config["algorithm"]["name"],
            seed=config["seed"], state=state, progress=_progress(status),
            evaluations=evaluations, dataset=config.get("dataset")))
    return loaded


def _check_folder(config: dict, parts: tuple[str, ...]) -> None:
    """The run's folder (<suite>/<task>/<label>/seed<k>) is the one its config.yaml names. A
    value read from a results tree is never used as a path (a `suite: ../..` would write the
    report elsewhere), and one run moved or copied into another's place would count twice."""
    expected = {"suite": config["suite"], "task": config["task"].replace("/", "."),
                "algorithm.label": config["algorithm"]["label"], "seed": f"seed{config['seed']}"}
    for (key, value), folder in zip(expected.items(), parts):
        if value != folder:
            raise BadFile(f"config.yaml says {key} {value!r}, but the run's folder is {folder!r} "
                          f"(expected {value!r}): a moved or edited run")


def _regular_file(path: Path, name: str) -> None:
    """BadFile unless `path` is a regular file (a FIFO would block the read forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    except OSError as err:
        raise BadFile(f"{name} cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        raise BadFile(f"{name} is not a regular file (a directory, FIFO or device); not read")


def read_config(path: Path) -> dict:
    try:
        _regular_file(path, "config.yaml")
        text = path.read_text().removeprefix("\ufeff")
    except FileNotFoundError:
        raise BadFile("config.yaml is missing (the run's task, algorithm and seed are unknown)") from None
    except UnicodeDecodeError:
        raise BadFile("config.yaml is not text") from None
    except OSError as err:
        raise BadFile(f"config.yaml cannot be read ({err.strerror})") from None
    try:
        config = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise BadFile(f"config.yaml is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise BadFile("config.yaml is empty or not a mapping")
    missing = [k for k in ("suite", "task", "seed", "algorithm") if k not in config]
    algorithm = config.get("algorithm")
    if not isinstance(algorithm, dict) or not {"name", "label"} <= set(algorithm):
        missing.append("algorithm.name/label")
    if missing:
        raise BadFile(f"config.yaml lacks {', '.join(dict.fromkeys(missing))}")
    names = {"suite": config["suite"], "task": config["task"], "algorithm.name": algorithm["name"],
             "algorithm.label": algorithm["label"]}
    for key, value in names.items():
        if not isinstance(value, str):
            raise BadFile(f"config.yaml: {key} {value!r} is not a string")
        separators = "\\\x00" if key == "task" else "/\\\x00"
        if any(c in value for c in separators) or not value.strip("."):
            raise BadFile(f"config.yaml: {key} {value[:60]!r} is not a name the harness writes "
                          "(it holds a path separator or NUL, or is empty or dots)")
    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool):
        raise BadFile(f"config.yaml: seed {config['seed']!r} is not an integer")
    return config


def read_metrics(path: Path, finished: bool) -> tuple[pd.DataFrame, list[str]]:
    """metrics.csv as a DataFrame, checked cell by cell, and notes on rows left out.

    The harness writes whole rows, each ending in a line break, so a last line without one
    was cut: for a finished run that makes the file untrustworthy; for a running one it is the
    row being written, and it is dropped with a note. Rows whose
    `eval_success` or `env_steps` is NaN are dropped with a note; any other bad cell makes the
    whole file untrustworthy (BadFile).
    """
    try:
        _regular_file(path, "metrics.csv")
        raw = path.read_bytes()
    except FileNotFoundError:
        if finished:
            raise BadFile("metrics.csv is missing") from None
        return _empty(), []
    except OSError as err:
        raise BadFile(f"metrics.csv cannot be read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is no column name
    except UnicodeDecodeError as err:
        raise BadFile(f"metrics.csv is not text (undecodable byte at offset {err.start})") from None
    if "\x00" in text:
        raise BadFile(f"metrics.csv holds NUL bytes (at offset {text.index(chr(0))}): garbage, "
                      "not CSV")
    notes = []
    # Any line ending (CR LF, LF, or an old Mac's CR alone), then CSV; a cell past the csv
    # module's field limit (128 KiB) is no metric.
    try:
        lines = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    except csv.Error as err:
        raise BadFile(f"metrics.csv is not CSV the harness writes ({err})") from None
    if not lines or not any(lines[0]):
        if finished:
            raise BadFile("metrics.csv is empty")
        return _empty(), []
    header, rows = lines[0], lines[1:]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise BadFile(f"metrics.csv has no column {', '.join(missing)} (header: "
                      f"{','.join(header)[:120]})")
    if rows and not text.endswith(("\n", "\r")):
        if finished:  # a finished run's file was cut afterwards (a copy, a full disk)
            raise BadFile(f"metrics.csv is cut short: its last line (line {len(rows) + 1}) has "
                          "no line break, so evaluations may be missing")
        rows = rows[:-1]  # a running run's row being written
        notes.append(f"the last line of metrics.csv is being written or was cut (no line "
                     f"break); {len(rows)} complete rows kept")
    torn = next((i for i, row in enumerate(rows) if len(row) != len(header)), None)
    if torn is not None:
        raise BadFile(f"metrics.csv line {torn + 2} has {len(rows[torn])} fields, the header "
                      f"{len(header)}: the file is cut or torn")
    cells = list(zip(*rows)) if rows else [()] * len(header)
    frame = pd.DataFrame({column: _numbers(column, values) if column in NUMERIC_COLUMNS
                          else np.array(values, dtype=object)
                          for column, values in zip(header, cells)})
    bad_phase = sorted(set(frame["phase"]) - set(PHASES))
    if bad_phase:
        raise BadFile(f"metrics.csv: phase {bad_phase[0]!r} is neither offline nor online")
    frame.index = pd.RangeIndex(2, len(frame) + 2)  # line numbers in the file
    unusable = frame["eval_success"].isna() | frame["env_steps"].isna()
    if unusable.any():
        notes.append(f"{int(unusable.sum())} of {len(frame)} rows have no eval_success or "
                     "env_steps (NaN) and are left out")
        frame = frame[~unusable]
    _check_values(frame)
    duplicated = frame.duplicated(keep="first")
    if duplicated.any():
        notes.append(f"{int(duplicated.sum())} rows repeat an earlier row exactly (lines "
                     f"{', '.join(map(str, frame.index[duplicated][:5]))}) and are counted once")
        frame = frame[~duplicated]
    _check_order(frame)
    if len(raw) > LARGE_METRICS_BYTES:
        notes.append(f"metrics.csv is {len(raw) / 2**20:.0f} MiB, where a run writes a few KiB; "
                     "it was read whole, which takes time and memory")
    return frame.reset_index(drop=True), notes


# What each column may hold: (least, most) of the finite values; NaN is checked elsewhere.
VALUE_RANGES = {"eval_success": (0.0, 1.0), "eval_success_any": (0.0, 1.0),
                "eval_objects": (0.0, math.inf), "env_steps": (0.0, math.inf),
                "grad_steps": (0.0, math.inf), "episodes": (0.0, math.inf)}
LARGE_METRICS_BYTES = 32 * 2**20


def _check_values(frame: pd.DataFrame) -> None:
    """BadFile at the first value outside its column's range (success on a 0-100 scale,
    negative steps, inf): a score that is no success rate must not reach a table."""
    for column, (least, most) in VALUE_RANGES.items():
        if column not in frame:
            continue
        values = frame[column]
        bad = values.notna() & ~((values >= least) & (values <= most) & np.isfinite(values))
        if bad.any():
            line = bad.idxmax()
            raise BadFile(f"metrics.csv line {line}, column {column}: {float(values[line])!r} "
                          f"is outside [{least:g}, {most:g}]")


def _check_order(frame: pd.DataFrame) -> None:
    """Rows are in the order a run writes them: offline before online, steps never going
    back. The final score is the mean of the last rows, so rows out of order would score an
    earlier evaluation as the final one."""
    online = (frame["phase"] == "online").to_numpy()
    for column in ("env_steps", "grad_steps"):
        if column not in frame:
            continue
        steps = frame[column].to_numpy()
        back = np.flatnonzero(np.diff(steps) < 0)
        if len(back):
            line = frame.index[back[0] + 1]
            raise BadFile(f"metrics.csv line {line}: {column} {steps[back[0] + 1]:g} comes after "
                          f"{steps[back[0]]:g}; rows are out of order")
    if len(online) and (np.diff(online.astype(int)) < 0).any():
        line = frame.index[int(np.flatnonzero(np.diff(online.astype(int)) < 0)[0]) + 1]
        raise BadFile(f"metrics.csv line {line}: an offline row after an online one; rows are "
                      "out of order")


def _numbers(column: str, values: tuple) -> np.ndarray:
    """A column's cells as floats ('' and 'nan' are NaN); BadFile naming the first bad cell."""
    try:
        return np.array([v or "nan" for v in values], dtype=float)
    except ValueError:
        for line, value in enumerate(values, start=2):
            try:
                float(value or "nan")
            except ValueError:
                raise BadFile(f"metrics.csv line {line}, column {column}: {value[:40]!r} is not "
                              "a number") from None
        raise


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c == "phase" else float)
                         for c in REQUIRED_COLUMNS})


def _progress(status: dict | None) -> str:
    if not status:
        return "no status.json"
    progress = status.get("progress") or {}
    if not isinstance(progress, dict):
        return ""
    if progress.get("phase") == "offline":
        return f"offline {progress.get('grad_steps', '?')}/{progress.get('offline_steps', '?')} updates"
    if "env_steps" in progress:
        return f"online {progress['env_steps']}/{progress.get('online_env_steps', '?')} env steps"
    return ""


def _shown(path: Path, results: Path) -> str:
    try:
        return str(path.relative_to(results))
    except ValueError:
        return str(path)
