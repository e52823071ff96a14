"""Ingest: decode a raw CSV, map its header to short names, validate, and type it."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tabduel.dataset import ColumnSpec, DatasetSpec, clean_header, header_key
from tabduel.errors import DataError

MISSING = {"", "na", "n/a", "nan", "null", "none"}
_DATE_TOKENS = {"%d": r"\d{1,2}", "%m": r"\d{1,2}", "%Y": r"\d{4}", "%H": r"\d{1,2}", "%M": r"\d{2}",
                "%S": r"\d{2}"}


@dataclass(frozen=True)
class RawTable:
    """A raw file split into header and string cells, with the line number of each row."""

    path: str
    encoding: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]


def decode(raw: bytes) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM), else cp1252, else latin-1; return (text, encoding)."""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig" and not raw.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8"
        return text, encoding
    raise AssertionError("latin-1 decodes any bytes")


def read_table(path: str | Path) -> RawTable:
    """Read a CSV file's cells; empty files, header-only files and ragged rows are errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    text, encoding = decode(raw)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # blank line
        if header is None:
            header = record
            continue
        if len(record) != len(header):
            raise DataError(f"{path}:{reader.line_num}: expected {len(header)} fields, found {len(record)}")
        rows.append([cell.strip() for cell in record])
        lines.append(reader.line_num)
    assert header is not None
    if not rows:
        raise DataError(f"{path}: has a header but no data rows")
    return RawTable(str(path), encoding, header, rows, lines)


def match_header(table: RawTable, spec: DatasetSpec) -> list[ColumnSpec]:
    """Map each file column to its spec column; missing, extra or repeated columns are errors."""
    by_key = {header_key(col.raw): col for col in spec.columns}
    matched: list[ColumnSpec] = []
    seen: dict[str, str] = {}
    extra: list[str] = []
    for name in table.header:
        key = header_key(name)
        if key in seen:
            raise DataError(f"{table.path}:1: column {clean_header(name)!r} appears twice")
        seen[key] = name
        if key in by_key:
            matched.append(by_key[key])
        else:
            extra.append(clean_header(name))
    missing = [col.raw for key, col in by_key.items() if key not in seen]
    problems = []
    if missing:
        problems.append("missing column(s) " + ", ".join(repr(m) for m in missing))
    if extra:
        problems.append("unexpected column(s) " + ", ".join(repr(e) for e in extra))
    if problems:
        raise DataError(f"{table.path}:1: " + "; ".join(problems))
    return matched


def _fail(table: RawTable, row: int, col: ColumnSpec, value: str, why: str) -> DataError:
    return DataError(f"{table.path}:{table.lines[row]}: column {col.name!r} ({col.raw}): value {value!r} {why}")


def _check_missing(table: RawTable, col: ColumnSpec, values: list[str]) -> None:
    for i, v in enumerate(values):
        if v.lower() in MISSING:
            raise _fail(table, i, col, v, "is missing")


def _check_numeric(table: RawTable, col: ColumnSpec, values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            x = float(v)
        except ValueError:
            raise _fail(table, i, col, v, "is not a number") from None
        if not math.isfinite(x):
            raise _fail(table, i, col, v, "is not a finite number")
        if col.type == "int" and not x.is_integer():
            raise _fail(table, i, col, v, "is not a whole number")
        out[i] = x
    return out


def _check_range(table: RawTable, col: ColumnSpec, values: list[str], numbers: np.ndarray) -> None:
    lo = -np.inf if col.min is None else col.min
    hi = np.inf if col.max is None else col.max
    bad = np.flatnonzero((numbers < lo) | (numbers > hi))
    if bad.size:
        i = int(bad[0])
        rng = f"{'' if col.min is None else col.min}..{'' if col.max is None else col.max}"
        raise _fail(table, i, col, values[i], f"is outside the allowed range {rng}")


def _date_pattern(fmt: str) -> re.Pattern[str]:
    parts = re.split(r"(%[a-zA-Z])", fmt)
    return re.compile("".join(_DATE_TOKENS.get(p, re.escape(p)) for p in parts) + r"\Z")


def _readable_format(fmt: str) -> str:
    return fmt.replace("%d", "dd").replace("%m", "mm").replace("%Y", "yyyy")


def _check_dates(table: RawTable, col: ColumnSpec, values: list[str]) -> pd.Series:
    pattern = _date_pattern(col.format)
    for i, v in enumerate(values):
        if not pattern.match(v):
            raise _fail(table, i, col, v, f"is not a date in the form {_readable_format(col.format)}")
    parsed = pd.to_datetime(pd.Series(values), format=col.format, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise _fail(table, i, col, values[i], "is not a real calendar date")
    return parsed.astype("datetime64[ns]")


def _check_levels(table: RawTable, col: ColumnSpec, values: list[str]) -> pd.Categorical:
    allowed = set(col.levels)
    for i, v in enumerate(values):
        if v not in allowed:
            raise _fail(table, i, col, v, f"is not a known level (expected one of {', '.join(col.levels)})")
    return pd.Categorical(values, categories=list(col.levels), ordered=True)


def validate(table: RawTable, spec: DatasetSpec) -> pd.DataFrame:
    """Check every cell against the spec and return a typed frame with short column names."""
    columns = match_header(table, spec)
    frame: dict[str, object] = {}
    for j, col in enumerate(columns):
        values = [row[j] for row in table.rows]
        _check_missing(table, col, values)
        if col.type in ("int", "float"):
            numbers = _check_numeric(table, col, values)
            _check_range(table, col, values, numbers)
            frame[col.name] = numbers.astype(np.int64) if col.type == "int" else numbers
        elif col.type == "date":
            frame[col.name] = _check_dates(table, col, values)
        else:
            frame[col.name] = _check_levels(table, col, values)
    order = [col.name for col in spec.columns]
    return pd.DataFrame(frame)[order]


def ingest(path: str | Path, spec: DatasetSpec) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read, validate and type a raw file; return the table and facts about the source."""
    table = read_table(path)
    df = validate(table, spec)
    info = {"source": str(Path(path).resolve()), "encoding": table.encoding, "rows": len(df),
            "columns": list(df.columns), "dataset": spec.name}
    return df, info
