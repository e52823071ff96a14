"""Ingest: read a raw file as its spec's [read] section describes, map its header, validate and type every cell."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.data.dataset import ColumnSpec, DatasetSpec, ReadSpec, clean_header, header_key
from tabduel.infra.errors import DataError

_DATE_TOKENS = {"%d": r"\d{1,2}", "%m": r"\d{1,2}", "%Y": r"\d{4}", "%y": r"\d{2}", "%H": r"\d{1,2}",
                "%M": r"\d{1,2}", "%S": r"\d{1,2}", "%j": r"\d{1,3}", "%b": r"[A-Za-z]{3}", "%B": r"[A-Za-z]+"}


@dataclass(frozen=True)
class RawTable:
    """A raw file split into header and string cells, with the line number of each row."""

    path: str
    encoding: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    blank_rows: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


def decode(raw: bytes, encoding: str = "auto", path: str = "") -> tuple[str, str]:
    """Decode with the given codec, or auto: UTF-8 (with or without BOM), else cp1252, else latin-1."""
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: byte {raw[exc.start:exc.start + 1]!r} is not valid {encoding} "
                            "(set [read] encoding in the spec, or 'auto')") from None
    for codec in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if codec == "utf-8-sig" and not raw.startswith(b"\xef\xbb\xbf"):
            codec = "utf-8"
        return text, codec
    raise AssertionError("latin-1 decodes any bytes")


def _whitespace_records(text: str, quote: str) -> list[tuple[int, list[str]]]:
    """Split each line on runs of spaces and tabs, keeping quoted fields whole (quotes removed)."""
    token = re.compile(rf"{re.escape(quote)}([^{re.escape(quote)}]*){re.escape(quote)}|(\S+)") if quote \
        else re.compile(r"()(\S+)")
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        out.append((number, [m.group(1) if m.group(2) is None else m.group(2) for m in token.finditer(line)]))
    return out


def _delimited_records(text: str, read: ReadSpec) -> list[tuple[int, list[str]]]:
    """csv.reader records with the file line each record starts on."""
    kwargs: dict[str, Any] = {"delimiter": read.delimiter, "skipinitialspace": False}
    kwargs.update({"quotechar": read.quote} if read.quote else {"quoting": csv.QUOTE_NONE})
    reader = csv.reader(io.StringIO(text, newline=""), **kwargs)
    out = []
    start = 1
    for record in reader:
        out.append((start, record))
        start = reader.line_num + 1
    return out


def records(text: str, read: ReadSpec, path: str = "") -> list[tuple[int, list[str]]]:
    """(line, fields) of every record of a decoded file, split as [read] says."""
    try:
        if read.delimiter == "whitespace":
            return _whitespace_records(text, read.quote)
        return _delimited_records(text, read)
    except csv.Error as exc:
        raise DataError(f"{path}: cannot split the file with delimiter {read.delimiter!r} and quote "
                        f"{read.quote!r}: {exc}") from None


def _trailing_empty(header: list[str]) -> int:
    n = 0
    for name in reversed(header):
        if name.strip():
            break
        n += 1
    return n


def read_table(path: str | Path, read: ReadSpec = ReadSpec(), width: int | None = None) -> RawTable:
    """Split a raw file into cells; blank rows are counted and skipped, trailing empty columns dropped.

    Without a header, `width` is the number of columns the spec declares; the header is then empty.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    text, encoding = decode(path.read_bytes(), read.encoding, str(path))
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    header: list[str] | None = None if read.header else []
    rows: list[list[str]] = []
    lines: list[int] = []
    blank = 0
    drop = 0
    for number, record in records(text, read, str(path)):
        if all(not cell.strip() for cell in record):
            blank += 1
            continue  # a blank or separator-only row
        if header is None:
            drop = _trailing_empty(record)
            header = [cell.strip() for cell in record[: len(record) - drop]]
            continue
        if not read.header and not rows:  # the first data row of a file without a header sets the width
            drop = _trailing_empty(record)
            expected = len(record) - drop if width is None else width
            drop = len(record) - expected if len(record) - drop <= expected < len(record) else 0
        elif read.header:
            expected = len(header)
        cells = record
        if drop and len(record) == expected + drop:
            extra = [i for i, c in enumerate(record[expected:]) if c.strip()]
            if extra:
                col = expected + extra[0] + 1
                raise DataError(f"{path}:{number}: field {col} holds {record[col - 1]!r} in a column with no "
                                "header")
            cells = record[:expected]
        if len(cells) != expected:
            raise DataError(f"{path}:{number}: expected {expected} fields, found {len(cells)}")
        rows.append([cell.strip() for cell in cells])
        lines.append(number)
    if header is None:
        raise DataError(f"{path}: file has no rows")
    if not rows:
        raise DataError(f"{path}: has a header but no data rows" if read.header else f"{path}: has no data rows")
    return RawTable(str(path), encoding, header, rows, lines, blank, {"trailing_empty_columns": drop})


def match_header(table: RawTable, spec: DatasetSpec) -> list[ColumnSpec | None]:
    """The spec column of each file column (None for an ignored one); missing or extra columns are errors."""
    if not spec.read.header:
        if len(table.rows[0]) != len(spec.columns):
            raise DataError(f"{table.path}:{table.lines[0]}: the file has {len(table.rows[0])} columns, the spec "
                            f"declares {len(spec.columns)} (without a header, [[columns]] lists every column in "
                            "file order)")
        return [None if col.type == "ignore" else col for col in spec.columns]
    by_key = {header_key(col.raw): col for col in spec.columns}
    ignored = {header_key(name) for name in spec.read.ignore}
    matched: list[ColumnSpec | None] = []
    seen: dict[str, str] = {}
    extra: list[str] = []
    for name in table.header:
        key = header_key(name)
        if key in seen:
            raise DataError(f"{table.path}:1: column {clean_header(name)!r} appears twice")
        seen[key] = name
        if key in ignored:
            matched.append(None)
        elif key in by_key:
            col = by_key[key]
            matched.append(None if col.type == "ignore" else col)
        else:
            extra.append(clean_header(name))
    missing = [col.raw for key, col in by_key.items() if key not in seen]
    missing += [name for name in spec.read.ignore if header_key(name) not in seen]
    problems = []
    if missing:
        problems.append("missing column(s) " + ", ".join(repr(m) for m in missing))
    if extra:
        problems.append("unexpected column(s) " + ", ".join(repr(e) for e in extra)
                        + " (declare them in [[columns]], or list them in [read] ignore)")
    if problems:
        raise DataError(f"{table.path}:1: " + "; ".join(problems))
    return matched


def _number(x: float | None) -> str:
    """A bound as written in a spec: 23.0 -> '23', None -> ''."""
    return "" if x is None else str(int(x)) if float(x).is_integer() else str(x)


class _Column:
    """The cells of one column while they are checked: values, the missing mask and rows to drop."""

    def __init__(self, table: RawTable, col: ColumnSpec, values: list[str], read: ReadSpec):
        self.table, self.col, self.read = table, col, read
        self.values = np.array(values, dtype=object)
        markers = set(col.markers(read))
        self.missing = np.array([v in markers for v in values], dtype=bool)

    def fail(self, i: int, why: str) -> DataError:
        """An error naming file, line, column and value."""
        t, c = self.table, self.col
        return DataError(f"{t.path}:{t.lines[i]}: column {c.name!r} ({c.raw}): value {self.values[i]!r} {why}")

    def numbers(self) -> np.ndarray:
        """The non-missing cells as float64 (missing: NaN), in the spec's number format."""
        text = pd.Series(self.values[~self.missing], dtype=object).astype(str)
        if self.read.thousands:
            text = text.str.replace(self.read.thousands, "", regex=False)
        if self.read.decimal != ".":
            text = text.str.replace(self.read.decimal, ".", regex=False)
        parsed = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        out = np.full(len(self.values), np.nan)
        out[~self.missing] = parsed
        bad = np.flatnonzero(~self.missing & ~np.isfinite(out))
        if bad.size:
            raise self.fail(int(bad[0]), "is not a finite number" if self.values[bad[0]].lower().lstrip("+-") in
                            ("inf", "infinity", "nan") else "is not a number")
        if self.col.type == "int":
            frac = np.flatnonzero(~self.missing & (out != np.round(out)))
            if frac.size:
                raise self.fail(int(frac[0]), "is not a whole number")
        lo = -np.inf if self.col.min is None else self.col.min
        hi = np.inf if self.col.max is None else self.col.max
        outside = ~self.missing & ((out < lo) | (out > hi))
        if outside.any():
            if self.col.out_of_range == "reject":
                rng = f"{_number(self.col.min)}..{_number(self.col.max)}"
                raise self.fail(int(np.flatnonzero(outside)[0]), f"is outside the allowed range {rng} "
                                "(or set out_of_range = \"missing\")")
            self.missing |= outside
            out[outside] = np.nan
        return out

    def levels(self) -> pd.Categorical:
        """The cells as a categorical with the spec's levels in spec order (missing: NaN)."""
        levels = list(self.col.levels)
        if self.col.numeric_levels:
            as_number = {float(lv): lv for lv in levels}
            text = self.values.copy()
            for i in np.flatnonzero(~self.missing):
                v = str(self.values[i]).replace(self.read.decimal, ".") if self.read.decimal != "." else self.values[i]
                try:
                    text[i] = as_number.get(float(v), self.values[i])
                except ValueError:
                    pass
        else:
            text = self.values
        allowed = set(levels)
        known = np.array([t in allowed for t in text], dtype=bool)
        unknown = ~self.missing & ~known
        if unknown.any():
            if self.col.unknown == "reject":
                shown = ", ".join(levels[:12]) + (", ..." if len(levels) > 12 else "")
                raise self.fail(int(np.flatnonzero(unknown)[0]), f"is not a known level (expected one of {shown}; "
                                "or set unknown = \"missing\")")
            self.missing |= unknown
        cells = np.where(self.missing, None, text)
        return pd.Categorical(cells, categories=levels, ordered=self.col.ordered)

    def dates(self, times: "_Column | None") -> pd.Series:
        """The cells as datetime64 (with the time column's cells appended when the date has one)."""
        fmt, values = self.col.format, self.values
        if times is not None:
            fmt, values = f"{fmt} {times.col.format}", np.array([f"{d} {t}" for d, t in zip(values, times.values)],
                                                                dtype=object)
            self.missing = self.missing | times.missing
        parts = re.split(r"(%[a-zA-Z])", fmt)
        pattern = re.compile("".join(_DATE_TOKENS.get(p, re.escape(p)) for p in parts) + r"\Z")
        for i in np.flatnonzero(~self.missing):
            if not pattern.match(values[i]):
                raise self._date_fail(i, values[i], fmt, times)
        parsed = pd.to_datetime(pd.Series(np.where(self.missing, None, values)), format=fmt, errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy() & ~self.missing)
        if bad.size:
            raise self._date_fail(int(bad[0]), values[bad[0]], fmt, times, "is not a real calendar date or time")
        return parsed.astype("datetime64[ns]")

    def _date_fail(self, i: int, value: str, fmt: str, times: "_Column | None", why: str = "") -> DataError:
        t, c = self.table, self.col
        cols = f"columns {c.name!r} ({c.raw}) and {times.col.name!r} ({times.col.raw})" if times else \
            f"column {c.name!r} ({c.raw})"
        return DataError(f"{t.path}:{t.lines[i]}: {cols}: value {value!r} "
                         f"{why or f'does not match the format {fmt!r}'}")


def validate(table: RawTable, spec: DatasetSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check every cell against the spec; return a typed frame (short names) and per-column missing counts."""
    matched = match_header(table, spec)
    position = {col.name: j for j, col in enumerate(matched) if col is not None}
    cells = {name: _Column(table, spec.column(name), [row[j] for row in table.rows], spec.read)
             for name, j in position.items()}
    frame: dict[str, Any] = {}
    for col in spec.kept:
        c = cells[col.name]
        if col.type in ("int", "float"):
            frame[col.name] = c.numbers()
        elif col.type == "category":
            frame[col.name] = c.levels()
        else:
            frame[col.name] = c.dates(cells[col.time] if col.time else None)
    report: dict[str, Any] = {}
    drop = np.zeros(len(table.rows), dtype=bool)
    for col in spec.kept:
        c = cells[col.name]
        n = int(c.missing.sum())
        if n and col.on_missing == "reject":
            raise c.fail(int(np.flatnonzero(c.missing)[0]), "is missing (on_missing = \"reject\"; set on_missing = "
                         "\"drop_row\" or \"impute\" for this column in the spec)")
        if n:
            report[col.name] = {"cells": n, "policy": col.on_missing}
            if col.on_missing == "drop_row":
                drop |= c.missing
    df = pd.DataFrame(frame)[[c.name for c in spec.kept]]
    if drop.any():
        df = df.loc[~drop].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{table.path}: every row has a missing value in a drop_row column; nothing is left")
    for col in spec.kept:  # whole numbers stay int64 when nothing in the column is missing any more
        if col.type == "int" and not df[col.name].isna().any():
            df[col.name] = df[col.name].astype(np.int64)
    return df, {"missing": report, "dropped_rows": int(drop.sum())}


def ingest(path: str | Path, spec: DatasetSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read, validate and type a raw file; return the table and facts about the source."""
    width = None if spec.read.header else len(spec.columns)
    table = read_table(path, spec.read, width)
    df, counts = validate(table, spec)
    info = {"source": str(Path(path).resolve()), "encoding": table.encoding, "rows": len(df),
            "rows_read": len(table.rows), "blank_rows": table.blank_rows, **counts,
            "trailing_empty_columns": table.facts.get("trailing_empty_columns", 0),
            "columns": list(df.columns), "dataset": spec.name}
    return df, info
