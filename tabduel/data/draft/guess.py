"""Part 2 of drafting: what each column holds (type, levels, range, dates, missing markers, sentinels), and the target.

`guess_column` types one column from its cells; `guess_columns` types all of a `Layout`'s columns, then looks across
them (sentinels such as -200, missing policies, ids, one date with its time) and returns one frozen `ColumnGuesses`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tabduel.data.dataset import header_key
from tabduel.data.draft.sniff import NUMBER, PUNCT_MARKERS, WORD_MARKERS, Guess, Layout, is_int_text, to_number
from tabduel.infra.errors import ConfigError, DataError

MAX_LEVELS = 50
MOSTLY_MISSING = 0.6
SKEWED = 0.75
ID_NAMES = {"id", "pid", "order", "index", "rowid", "row", "rownum", "rownumber", "uid", "uuid", "guid", "key",
            "serial", "no", "nr", "unnamed0", "recordid", "obs", "observation"}
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%m-%d-%Y", "%Y.%m.%d",
                "%d/%m/%y", "%m/%d/%y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y", "%Y%m%dT%H%M%S", "%Y%m%dT%H%M",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
                "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")
TIME_FORMATS = ("%H:%M:%S", "%H:%M", "%H.%M.%S", "%H%M%S")  # fields the reader knows
# Known rank scales (worst to best): a category whose levels all belong to one is drafted as ordered.
ORDINAL_SCALES = (
    ("Po", "Fa", "TA", "Gd", "Ex"),
    ("Fair", "Good", "Very Good", "Premium", "Ideal"),
    ("Low", "Medium", "High"), ("low", "medium", "high"),
    ("Very Low", "Low", "Medium", "High", "Very High"),
    ("Poor", "Fair", "Average", "Good", "Excellent"),
)
_ZERO_PADDED = re.compile(r"0\d+\Z")
PERIODS = {"month": 12, "isoweekday": 7, "hour": 24}


@dataclass
class Column:
    """What the draft says about one raw column (filled in step by step while guessing)."""

    index: int
    raw: str
    name: str
    type: str = "float"
    levels: list[str] = field(default_factory=list)
    ordered: bool = False
    format: str = ""
    time: str = ""
    missing: list[str] | None = None
    on_missing: str = ""
    notes: list[str] = field(default_factory=list)
    n_missing: int = 0
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Sentinel:
    """A sentinel-looking value (-200, -999) at one end of some numeric columns: applied as missing, or suggested."""

    value: float
    hits: tuple[tuple[str, int], ...]  # (raw column, rows with the value)
    texts: tuple[str, ...]  # how the value is written in the file
    applied: bool
    n_numeric: int  # numeric columns looked at


@dataclass(frozen=True)
class ColumnGuesses:
    """What every column is, the target and its transform, and what the spec's [read] and [features] list."""

    columns: tuple[Column, ...]
    target: Column
    transform: Guess
    missing: tuple[str, ...]  # the file's missing markers, '' first
    sentinels: tuple[Sentinel, ...]
    parts: dict[str, str]  # date part feature name -> part
    periods: dict[str, int]  # cyclic date part feature name -> period
    inputs: tuple[str, ...]


def fmt_number(x: float) -> str:
    """A number as short text: 12 for 12.0, else 6 significant digits."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


# ---------------------------------------------------------------- names


def short_name(raw: str, index: int, taken: set[str]) -> str:
    """A spec name from a header: lower case, letters/digits/_ only, starting with a letter, unique."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", "".join(ch for ch in raw if ord(ch) < 128)).strip("_").lower()
    if not s:
        s = f"col{index + 1}"
    elif not s[0].isalpha():
        s = "x" + s
    name, k = s, 2
    while name in taken:
        name, k = f"{s}_{k}", k + 1
    taken.add(name)
    return name


def resolve_column(ref: str, raws: Sequence[str], header: bool, what: str) -> int:
    """The index of the column a user names: its header (exact, then as the reader matches), or a 1-based position."""
    if ref in raws:
        return list(raws).index(ref)
    keyed = [i for i, r in enumerate(raws) if header_key(r) == header_key(ref)]
    if len(keyed) == 1:
        return keyed[0]
    if ref.strip().isdigit() and 1 <= int(ref) <= len(raws):
        return int(ref) - 1
    shown = ", ".join(repr(r) for r in raws[:40]) + (" ..." if len(raws) > 40 else "")
    pos = "" if header else " (the file has no header: give a position 1.." + str(len(raws)) + ")"
    raise ConfigError(f"{what} {ref!r} is not a column of the file{pos}; columns: {shown}")


def _id_like_name(raw: str) -> bool:
    key = header_key(raw)
    words = re.split(r"[^0-9a-z]+", raw.lower())
    return key in ID_NAMES or words[-1:] == ["id"] or (len(words) > 1 and words[0] == "id")


# ---------------------------------------------------------------- dates


def _parses(values: Sequence[str], fmt: str) -> bool:
    try:
        for v in values:
            dt.datetime.strptime(v, fmt)
    except ValueError:
        return False
    return True


def sniff_datetime(values: Sequence[str]) -> tuple[str, str, bool] | None:
    """(kind, format, sure) when every value parses as one date ('date') or time of day ('time') format."""
    if not values or not any(ch.isdigit() for ch in values[0]) or all(NUMBER.match(v) for v in values[:50]):
        return None
    for kind, formats in (("date", DATE_FORMATS), ("time", TIME_FORMATS)):
        fits = [f for f in formats if _parses(values, f)]
        if fits:
            return kind, fits[0], len(fits) == 1
    return None


def date_parts_of(values: Sequence[str], fmt: str, time_values: Sequence[str] = (), time_fmt: str = "") \
        -> list[str]:
    """The date parts worth adding: year (several years), month, isoweekday, hour (when the time varies)."""
    stamps = [dt.datetime.strptime(v, fmt) for v in set(values)]
    hours = {s.hour for s in stamps}
    if time_values:
        hours = {dt.datetime.strptime(v, time_fmt).hour for v in set(time_values)}
    parts = []
    if len({s.year for s in stamps}) > 1:
        parts.append("year")
    if len({s.month for s in stamps}) > 1:
        parts.append("month")
    if len({s.isoweekday() for s in stamps}) > 1:
        parts.append("isoweekday")
    if len(hours) > 1:
        parts.append("hour")
    return parts


# ---------------------------------------------------------------- sentinels, skew, transform


def _sentinel_like(x: float) -> bool:
    """-99, -200, -999, -9999 or 999, 9999: the round or all-nines numbers files use for 'missing'."""
    if not x.is_integer() or abs(x) < 99:
        return False
    digits = str(abs(int(x)))
    return set(digits) == {"9"} or (x < 0 and bool(re.fullmatch(r"[1-9]0+", digits)))


def isolated_extreme(numbers: Sequence[float]) -> tuple[float, int] | None:
    """A sentinel-looking value (-200, -999, 9999) at one end of a column, far from the rest, and how often."""
    counts = Counter(numbers)
    lo, hi = min(counts), max(counts)
    for v in (lo, hi):
        if not _sentinel_like(v) or counts[v] < max(3, 0.002 * len(numbers)):
            continue
        rest = [x for x in counts if x != v]
        if not rest:
            continue
        r_lo, r_hi = min(rest), max(rest)
        gap = max(0.25 * (r_hi - r_lo), 0.25 * abs(r_lo), 1.0)
        if (v == lo and (v < r_lo - gap or (v < 0 <= r_lo))) or (v == hi and v > r_hi + gap):
            return v, counts[v]
    return None


def skewness(values: Sequence[float]) -> float:
    """Sample skewness (0 for constant values)."""
    n = len(values)
    if n < 3:
        return 0.0
    mean = sum(values) / n
    m2 = sum((x - mean) ** 2 for x in values) / n
    if m2 <= 0:
        return 0.0
    m3 = sum((x - mean) ** 3 for x in values) / n
    return m3 / m2 ** 1.5


def choose_transform(values: Sequence[float]) -> Guess:
    """log for a positive right-skewed target, log1p when it has zeros, none otherwise."""
    if not values:
        return Guess("none", "no values", sure=False)
    skew, lo = skewness(values), min(values)
    if skew > SKEWED and lo > 0:
        return Guess("log", f"all values above 0 ({fmt_number(lo)} .. {fmt_number(max(values))}), right-skewed "
                            f"(skewness {skew:.2f})")
    if skew > SKEWED and lo >= 0:
        return Guess("log1p", f"values from 0 ({fmt_number(lo)} .. {fmt_number(max(values))}), right-skewed "
                              f"(skewness {skew:.2f})")
    why = f"skewness {skew:.2f}" + ("" if skew <= SKEWED else f", but values go down to {fmt_number(lo)}")
    return Guess("none", why, sure=abs(skew) < 0.5)


# ---------------------------------------------------------------- one column


def guess_column(col: Column, cells: Sequence[str], decimal: str, thousands: str, is_target: bool) -> set[str]:
    """Type one column from its cells; returns the missing markers it uses (to be listed in [read])."""
    counts = Counter(cells)
    punct = {v for v in counts if v in PUNCT_MARKERS}
    words = {v for v in counts if v in WORD_MARKERS}
    others = [v for v in counts if v not in punct and v not in words]
    numbers = {v: to_number(v, decimal, thousands) for v in others}
    bad = [v for v in others if numbers[v] is None]
    numeric_cells = sum(counts[v] for v in others if numbers[v] is not None)
    if not others:
        col.type, col.n_missing = "ignore", len(cells)
        col.notes.append("every value is a missing marker")
        return set()
    if not bad or (len(bad) <= 3 and numeric_cells >= 0.9 * sum(counts[v] for v in others) and numeric_cells):
        return _guess_number(col, counts, punct | words, numbers, bad, decimal, thousands, is_target)
    return _guess_text(col, counts, punct, words, others)


def _guess_number(col: Column, counts: Counter[str], markers: set[str], numbers: dict[str, float | None],
                  bad: Sequence[str], decimal: str, thousands: str, is_target: bool) -> set[str]:
    """A (mostly) numeric column: int, float, a coded category, or ignored; a few odd tokens count as missing."""
    if bad:  # a few odd tokens in a numeric column: treat them as missing, say so
        col.missing = sorted(bad)
        markers = markers | set(bad)
        col.notes.append("check: non-numbers " + ", ".join(f"{b!r} ({counts[b]})" for b in sorted(bad))
                         + " taken as missing in this column")
    col.n_missing = sum(counts[v] for v in markers)
    texts = [v for v, x in numbers.items() if x is not None]
    col.values = [x for v, x in numbers.items() if x is not None for _ in range(counts[v])]
    if _as_code(col, texts, numbers, is_target):
        return markers
    col.type = "int" if all(is_int_text(v, thousands) for v in texts) else "float"
    shapes = []
    if any(v.endswith(decimal) for v in texts):
        shapes.append("with a trailing decimal mark (3504.)")
    if any("e" in v.lower() for v in texts):
        shapes.append("in scientific notation (1.2e+006)")
    if shapes:
        col.type = "float"
        col.notes.append("written " + " and ".join(shapes) + ": read as float")
    if len(counts) - len(markers) == 1 and not is_target:
        col.type = "ignore"
        col.notes.append(f"constant ({texts[0]!r}): ignored")
    return markers


def _as_code(col: Column, texts: Sequence[str], numbers: dict[str, float | None], is_target: bool) -> bool:
    """True when number-like texts are codes (zero-padded, or few and named zip/code): a category or ignored."""
    if is_target:
        return False
    padded = [v for v in texts if _ZERO_PADDED.match(v.lstrip("+-"))]
    if padded:
        distinct = len(texts)
        if distinct == len(col.values) or distinct > MAX_LEVELS:
            col.type = "ignore"
            col.notes.append(f"leading-zero codes like {padded[0]!r}, {distinct:,} distinct: an id, ignored")
        else:
            col.type, col.levels = "category", sorted(texts)
            col.notes.append(f"zero-padded codes like {padded[0]!r}: a category, not a number")
        return True
    if re.search(r"zip|code", col.raw, re.I):
        if len(texts) <= MAX_LEVELS:
            col.type, col.levels = "category", sorted(texts, key=lambda v: numbers[v] or 0.0)
            col.notes.append(f"named like a code, {len(texts)} distinct values: a category, not a number")
            return True
        col.notes.append(f"check: named like a code but {len(texts):,} distinct values; kept as a number")
    return False


def _guess_text(col: Column, counts: Counter[str], punct: set[str], words: set[str], others: Sequence[str]) \
        -> set[str]:
    """A text column: a date or time of day, a category (ordered on a known scale), or ignored."""
    markers = set(punct)
    col.n_missing = sum(counts[v] for v in punct)
    stamp = sniff_datetime(sorted(others))
    if stamp:
        markers |= words
        col.n_missing += sum(counts[v] for v in words)
        col.type, col.format = stamp[0], stamp[1]
        col.notes.append(f"every value parses as {stamp[1]!r}" + ("" if stamp[2] else " (check: other formats "
                                                                                      "fit too)"))
        return markers
    if words:
        col.notes.append("keeps " + ", ".join(repr(w) for w in sorted(words)) + " as a level (in a text column "
                         "it is usually a value of its own, such as 'no alley'); only " +
                         ", ".join(repr(p) for p in sorted(punct | {""})) + " means missing here")
    levels = sorted(others) + sorted(words)
    if len(levels) > MAX_LEVELS:
        col.type = "ignore"
        all_distinct = len(levels) == sum(counts.values()) - col.n_missing
        kind = "all distinct: an id or free text" if all_distinct else "an id or free text?"
        col.notes.append(f"{len(levels):,} distinct strings ({kind}), e.g. {levels[0]!r}: ignored")
        return markers
    if len(levels) == 1:
        col.type = "ignore"
        col.notes.append(f"constant ({levels[0]!r}): ignored")
        return markers
    col.type, col.levels = "category", levels
    for scale in ORDINAL_SCALES:
        if set(levels) <= set(scale):
            col.levels, col.ordered = [s for s in scale if s in set(levels)], True
            col.notes.append("levels fit the rank scale " + " < ".join(scale) + ": ordered")
            break
    return markers


# ---------------------------------------------------------------- all columns


def _markers_order(m: str) -> tuple[bool, str]:
    """Sort key for missing markers: '' first, then alphabetical."""
    return m != "", m


def _type_columns(columns: Sequence[Column], layout: Layout, t_index: int, ignored: set[int]) \
        -> tuple[set[str], dict[int, set[str]]]:
    """Run `guess_column` on each column; the file's missing markers and each category's word-marker levels."""
    markers: set[str] = {""}
    word_levels: dict[int, set[str]] = {}
    for col in columns:
        if col.index in ignored:
            col.type = "ignore"
            col.notes.append("ignored (--ignore)")
            continue
        values = [r[col.index] for r in layout.data]
        used = guess_column(col, values, layout.dec, layout.thou, col.index == t_index)
        if col.type in ("int", "float", "category") and col.missing is None:
            markers |= used
        if col.type == "category":
            word_levels[col.index] = set(col.levels) & set(WORD_MARKERS)
    return markers, word_levels


def _apply_sentinels(columns: Sequence[Column], layout: Layout, markers: set[str]) -> list[Sentinel]:
    """Find isolated extremes such as -200; where clear (in several columns only) add them to markers."""
    found: dict[float, list[tuple[Column, int, set[str]]]] = {}
    numeric = [c for c in columns if c.type in ("int", "float") and c.values]
    for col in numeric:
        hit = isolated_extreme(col.values)
        if hit:
            v, k = hit
            texts = {x for x in {r[col.index] for r in layout.data} if to_number(x, layout.dec, layout.thou) == v}
            found.setdefault(v, []).append((col, k, texts))
    sentinels = []
    for v, hits in found.items():
        elsewhere = [c for c in numeric if c not in [h[0] for h in hits] and v in set(c.values)]
        clear = len(hits) >= 2 and not elsewhere and (len(hits) >= 3 or 2 * len(hits) >= len(numeric))
        texts = sorted(set().union(*(h[2] for h in hits)))
        for col, k, _ in hits:
            if clear:
                col.values = [x for x in col.values if x != v]
                col.n_missing += k
                if col.missing is not None:
                    col.missing = sorted(set(col.missing) | set(texts))
                col.notes.append(f"{fmt_number(v)} ({k:,} rows) taken as missing")
            else:
                col.notes.append(f"check: {fmt_number(v)} in {k:,} rows may mean missing")
        if clear:
            markers |= set(texts)
        sentinels.append(Sentinel(v, tuple((h[0].raw, h[1]) for h in hits), tuple(texts), clear, len(numeric)))
    return sentinels


def _drop_id(col: Column, data: Sequence[Sequence[str]]) -> bool:
    """True (and the column ignored) when it looks like an id or row number; may add a 'check' note."""
    n = len(data)
    if col.type in ("int", "category") and _id_like_name(col.raw):
        distinct = len(set(r[col.index] for r in data))
        col.type = "ignore"
        col.notes.append(f"named like an id ({distinct:,} distinct of {n:,}): ignored")
        return True
    if col.type == "int" and len(set(col.values)) == len(col.values) == n and n >= 20:
        in_sequence = max(col.values) - min(col.values) + 1 == n or col.values == sorted(col.values)
        if in_sequence and not re.search(r"year|yr|date|time|month|day|hour", col.raw, re.I):
            col.type = "ignore"
            col.notes.append(f"all {n:,} values distinct and in sequence: a row number or id, ignored")
            return True
        col.notes.append("check: all values distinct (an id?)")
    if col.type == "category" and len(col.levels) == n - col.n_missing and n >= 20:
        col.type = "ignore"
        col.notes.append(f"all {len(col.levels):,} values distinct: an id or free text, ignored")
        return True
    return False


def _missing_policy(col: Column, data: Sequence[Sequence[str]], markers: set[str], word_levels: dict[int, set[str]],
                    is_target: bool) -> None:
    """The column's own missing list and on_missing; ids and mostly-missing columns are ignored."""
    n = len(data)
    if col.missing is not None:  # a numeric column with odd tokens: the file's markers and its own
        col.missing = sorted(markers | set(col.missing), key=_markers_order)
    if col.type == "category" and word_levels.get(col.index):
        col.missing = sorted(markers - word_levels[col.index], key=_markers_order)
    if is_target:
        if col.n_missing:
            col.on_missing = "drop_row"
            col.notes.append(f"{col.n_missing:,} missing: the target cannot be imputed, rows dropped")
        return
    if _drop_id(col, data):
        return
    if col.n_missing > MOSTLY_MISSING * n:
        col.type = "ignore"
        col.notes.append(f"{col.n_missing:,} of {n:,} missing: ignored")
        return
    if col.n_missing:
        if col.type in ("date", "time"):
            col.on_missing = "drop_row"
            col.notes.append(f"{col.n_missing:,} missing: a {col.type} cannot be imputed, rows dropped")
        else:
            col.on_missing = "impute"
            stat = "mode" if col.type == "category" else "median"
            col.notes.append(f"{col.n_missing:,} missing: imputed ({stat} of train, plus a _missing flag); "
                             "drop_row is the other choice")


def _ignore_times(times: Sequence[Column]) -> None:
    """Ignore time-of-day columns that have no date to combine with."""
    for t in times:
        t.type = "ignore"
        t.notes.append("a time of day with no date to combine it with: ignored")


def _date_parts(columns: Sequence[Column], data: Sequence[Sequence[str]]) -> tuple[dict[str, str], dict[str, int]]:
    """Keep one date (the first), combine one time column into it; its parts worth adding, and their periods."""
    dates = [c for c in columns if c.type == "date"]
    times = [c for c in columns if c.type == "time"]
    date_parts: list[str] = []
    if dates:
        date = dates[0]
        for other in dates[1:]:
            other.type = "ignore"
            other.notes.append(f"a second date ({other.format}); tabduel keeps one date ({date.raw}): ignored")
        if times and not any(k in date.format for k in ("%H", "%I")):
            date.time = times[0].name
            date.notes.append(f"combined with the time column {times[0].raw!r}")
            times = times[1:]
        _ignore_times(times)
        tcol = next((c for c in columns if c.name == date.time), None)
        ok = [i for i, r in enumerate(data) if r[date.index] and (tcol is None or r[tcol.index])]
        date_parts = date_parts_of([data[i][date.index] for i in ok], date.format,
                                   [data[i][tcol.index] for i in ok] if tcol else (),
                                   tcol.format if tcol else "")
    else:
        _ignore_times(times)
    names = {c.name for c in columns}
    parts = {(p if p not in names else f"date_{p}"): p for p in date_parts}
    periods = {name: PERIODS[p] for name, p in parts.items() if p != "year"}
    return parts, periods


def guess_columns(path: Path, layout: Layout, target: str, ignore: Sequence[str] = ()) -> ColumnGuesses:
    """Every column of the layout typed, the target resolved and checked, missing policies, dates and the inputs."""
    raws, has_header = layout.raws, layout.has_header
    t_index = resolve_column(target, raws, has_header, "--target")
    ignored = {resolve_column(r.strip(), raws, has_header, "--ignore") for r in ignore if r.strip()}
    if t_index in ignored:
        raise ConfigError(f"--ignore names the target {target!r}")
    taken: set[str] = set()
    columns = [Column(j, raws[j], short_name(raws[j], j, taken)) for j in range(len(raws))]
    markers, word_levels = _type_columns(columns, layout, t_index, ignored)
    sentinels = _apply_sentinels(columns, layout, markers)
    target_col = columns[t_index]
    if target_col.type not in ("int", "float"):
        sample = next((r[t_index] for r in layout.data
                       if to_number(r[t_index], layout.dec, layout.thou) is None and r[t_index]), "")
        raise DataError(f"{path}: the target {target!r} is not numeric (values like {sample!r}); the target must be "
                        "a number")
    for col in columns:
        if col.type != "ignore":
            _missing_policy(col, layout.data, markers, word_levels, col.index == t_index)
    parts, periods = _date_parts(columns, layout.data)
    inputs = [c.name for c in columns if c.type in ("int", "float", "category") and c.index != t_index] + list(parts)
    if not inputs:
        raise DataError(f"{path}: no usable input columns besides the target {target!r} (all ignored: "
                        + "; ".join(f"{c.raw}: {c.notes[-1] if c.notes else c.type}" for c in columns
                                    if c.index != t_index)[:400] + ")")
    return ColumnGuesses(columns=tuple(columns), target=target_col, transform=choose_transform(target_col.values),
                         missing=tuple(sorted(markers, key=_markers_order)), sentinels=tuple(sentinels),
                         parts=parts, periods=periods, inputs=tuple(inputs))
