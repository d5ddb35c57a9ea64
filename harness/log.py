"""Append-only CSV logs and the run's status file, written so a crash never leaves a torn file.

Each CSV row is written and flushed whole; the header is fixed by the first row. `status.json`
is replaced atomically (write a temporary file, then rename).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path


class CsvLog:
    def __init__(self, path: Path, columns: list[str] | None = None):
        self.path = Path(path)
        self._columns = columns
        self._file = None

    def write(self, row: dict) -> None:
        if self._file is None:
            if self._columns is None:
                self._columns = list(row)
            self._file = open(self.path, "w", newline="")
            csv.writer(self._file).writerow(self._columns)
        unknown = set(row) - set(self._columns)
        if unknown:
            raise ValueError(f"{self.path.name}: row has columns {sorted(unknown)} not in the header")
        csv.writer(self._file).writerow([_format(row.get(c, "")) for c in self._columns])
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _format(value):
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "status.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_status(run_dir: Path, state: str, **fields) -> None:
    write_json_atomic(Path(run_dir) / "status.json",
                      {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields})
