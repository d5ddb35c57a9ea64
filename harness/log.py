"""Append-only CSV logs, written so a crash never leaves a torn or duplicated row.

Each row is written and flushed whole; the header is fixed by the first row. A resumed run
reopens a log with `keep_rows=N`, the row count its checkpoint recorded: rows past N (written
after that checkpoint, and written again by the resumed run) are dropped first, by an atomic
rewrite of the file. If the resumed run names columns the old header lacks (a run started by
an older version), that rewrite appends them to the header, empty in the old rows.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path


class CsvLog:
    def __init__(self, path: Path, columns: list[str] | None = None, keep_rows: int | None = None):
        self.path = Path(path)
        self._columns = columns
        self._file = None
        self.rows = 0
        if keep_rows is not None:
            self._truncate(keep_rows)

    def _truncate(self, keep_rows: int) -> None:
        try:
            with open(self.path, newline="") as f:
                lines = list(csv.reader(f))
        except FileNotFoundError:
            lines = []
        if not lines:
            if keep_rows:
                raise RuntimeError(f"{self.path}: the checkpoint counts {keep_rows} rows but the "
                                   "file is missing or empty")
            return
        header, rows = lines[0], lines[1:]
        header += [c for c in self._columns or () if c not in header]
        if len(rows) < keep_rows:
            raise RuntimeError(f"{self.path}: the checkpoint counts {keep_rows} rows but the "
                               f"file holds {len(rows)}")
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *(r + [""] * (len(header) - len(r))
                                               for r in rows[:keep_rows])])
        os.replace(tmp, self.path)
        self._columns = header
        self._file = open(self.path, "a", newline="")
        self.rows = keep_rows

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
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _format(value):
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value
