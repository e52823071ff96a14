"""`tabduel spec draft`: sniff a raw tabular file and write a commented, runnable dataset spec (TOML).

Plain functions only (no torch, MLflow or Prefect): each sniffer takes text or cells and returns its guess with a
line saying how sure it is. `draft_spec` ties them together; `render_toml` writes the spec.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tabduel.data.dataset import header_key, parse_spec
from tabduel.infra.errors import ConfigError, DataError

DELIMITERS = (",", ";", "\t", "|", "whitespace")
# Cell values that often mean "missing". Punctuation ones are missing wherever they occur; word ones are missing in
# numeric columns but kept as a level in text columns (Ames: "NA" = no alley, "None" = no veneer).
PUNCT_MARKERS = ("", "?", "-", "--", ".", "#N/A", "#NA")
WORD_MARKERS = ("NA", "N/A", "na", "n/a", "NaN", "nan", "null", "NULL", "Null", "None", "none", "missing",
                "Missing", "MISSING", "NONE", "N.A.", "n.a.")
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
_INT = re.compile(r"[+-]?\d+\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_ZERO_PADDED = re.compile(r"0\d+\Z")


@dataclass
class Guess:
    """One sniffed setting, the value chosen and how sure the sniffer is (a line for stderr)."""

    value: object
    why: str
    sure: bool = True

    def line(self, what: str) -> str:
        """'delimiter ';' (sure: ...)' for the report."""
        shown = self.value if isinstance(self.value, bool) else repr(self.value)
        return f"{what} {shown} ({'sure' if self.sure else 'unsure'}: {self.why})"


@dataclass
class Column:
    """What the draft says about one raw column."""

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


@dataclass
class Draft:
    """A drafted spec: the TOML text and the report lines (what was guessed, how sure)."""

    toml: str
    report: list[str]


# ---------------------------------------------------------------- decoding and splitting


def decode_bytes(raw: bytes) -> tuple[str, Guess]:
    """Decode like the reader's encoding = "auto" (UTF-8 with or without BOM, else cp1252); else name the codec."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), Guess("utf-16", "byte order mark of UTF-16")
    try:
        text = raw.decode("utf-8-sig")
        kind = "UTF-8 with BOM" if raw.startswith(b"\xef\xbb\xbf") else ("ASCII" if raw.isascii() else "UTF-8")
        return text, Guess("auto", f"{kind}; auto reads it")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), Guess("auto", "not UTF-8; cp1252 decodes it, which auto falls back to",
                                           sure=False)
    except UnicodeDecodeError:
        return raw.decode("latin-1"), Guess("latin-1", "neither UTF-8 nor cp1252; latin-1 decodes any bytes",
                                            sure=False)


def split_line(line: str, delimiter: str, quote: str) -> list[str]:
    """Split one line into cells (quotes removed, spaces stripped); used for sniffing."""
    if delimiter == "whitespace":
        if quote:
            q = re.escape(quote)
            cells = re.findall(rf"{q}((?:[^{q}]|{q}{q})*){q}|(\S+)", line)
            return [(a.replace(quote * 2, quote) if a or not b else b).strip() for a, b in cells]
        return line.split()
    reader = csv.reader([line], delimiter=delimiter, quotechar=quote or '"',
                        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)
    return [c.strip() for c in next(reader, [])]


def split_rows(text: str, delimiter: str, quote: str) -> list[list[str]]:
    """All records of the text as stripped cells; blank and separator-only rows are dropped."""
    if delimiter == "whitespace":
        rows = (split_line(line, delimiter, quote) for line in text.splitlines())
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote or '"',
                            quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)
        rows = ([c.strip() for c in rec] for rec in reader)
    return [row for row in rows if any(row)]


def sample_lines(text: str, limit: int = 1000) -> list[str]:
    """The first non-blank lines of the text (separator-only lines included)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(line)
            if len(out) >= limit:
                break
    return out


def _is_separator_only(line: str, delimiter: str) -> bool:
    if delimiter == "whitespace":
        return not line.strip()
    return not line.replace(delimiter, "").strip()


def sniff_quote(lines: Sequence[str]) -> Guess:
    """'"' unless cells are wrapped in single quotes only."""
    double = sum(line.count('"') for line in lines)
    single = sum(len(re.findall(r"(?:^|[,;\t| ])'[^']*'(?=$|[,;\t| ])", line)) for line in lines)
    if single and not double:
        return Guess("'", f"{single} cells wrapped in single quotes")
    if double:
        return Guess('"', f"{double} double quotes in the first {len(lines)} lines")
    return Guess('"', "no quotes seen; the default does no harm")


def _count_fields(lines: Sequence[str], delimiter: str, quote: str) -> list[int]:
    counts = []
    for line in lines:
        if _is_separator_only(line, delimiter):
            continue
        cells = split_line(line, delimiter, quote)
        while len(cells) > 1 and not cells[-1]:  # trailing empty columns
            cells.pop()
        counts.append(len(cells))
    return counts


def sniff_delimiter(lines: Sequence[str], quote: str) -> Guess:
    """The delimiter that splits (almost) every line into the same number of fields, the most fields on ties."""
    best: tuple[float, int, int, str] | None = None
    facts: dict[str, tuple[int, int, int]] = {}
    for delim in DELIMITERS:
        counts = _count_fields(lines, delim, quote)
        if not counts:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        facts[delim] = (hits, len(counts), mode)
        if mode < 2:
            continue
        consistency = hits / len(counts)
        key = (round(consistency, 2), mode, delim != "whitespace", delim)
        if best is None or key[:3] > best[:3]:
            best = key
    if best is None:
        return Guess(",", "no delimiter splits the lines into 2 or more fields; one column?", sure=False)
    delim = best[3]
    hits, total, mode = facts[delim]
    return Guess(delim, f"{hits:,} of {total:,} sampled rows split into {mode} fields", sure=hits == total)


# ---------------------------------------------------------------- numbers


def sniff_number_format(cells: Sequence[str], delimiter: str) -> tuple[Guess, Guess]:
    """Decimal mark and thousands separator from the shapes of number-like cells."""
    comma_dec = dot_dec = comma_groups = dot_groups = 0
    for c in cells:
        if not c or not (c[0].isdigit() or c[0] in "+-."):
            continue
        if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", c):
            comma_groups += 1
            if "." in c:
                dot_dec += 1
        elif re.fullmatch(r"[+-]?\d{1,3}(\.\d{3}){2,}(,\d*)?|[+-]?\d{1,3}(\.\d{3})+,\d*", c):
            dot_groups += 1
            if "," in c:
                comma_dec += 1
        elif re.fullmatch(r"[+-]?\d*,\d+([eE][+-]?\d+)?", c):
            comma_dec += 1
        elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", c):
            dot_dec += 1
    if delimiter == "," or dot_dec > comma_dec or (comma_dec == 0 and comma_groups):
        decimal = Guess(".", f"{dot_dec:,} cells with a decimal point, {comma_dec:,} with a decimal comma",
                        sure=comma_dec == 0)
        thousands = Guess(",", f"{comma_groups:,} cells like 1,234") if comma_groups and comma_dec == 0 \
            else Guess("", "no digit groups seen")
        return decimal, thousands
    if comma_dec:
        decimal = Guess(",", f"{comma_dec:,} cells with a decimal comma, {dot_dec:,} with a decimal point",
                        sure=dot_dec == 0)
        thousands = Guess(".", f"{dot_groups:,} cells like 1.234.567") if dot_groups else \
            Guess("", "no digit groups seen")
        return decimal, thousands
    return Guess(".", "no decimal numbers seen; the default"), Guess("", "no digit groups seen")


def to_number(cell: str, decimal: str, thousands: str) -> float | None:
    """The cell as a number under this format (trailing period and exponents allowed), or None."""
    s = cell
    if thousands and thousands in s:
        if not re.fullmatch(rf"[+-]?\d{{1,3}}({re.escape(thousands)}\d{{3}})+([{re.escape(decimal)}]\d*)?", s):
            return None
        s = s.replace(thousands, "")
    if decimal != ".":
        if "." in s:
            return None
        s = s.replace(decimal, ".")
    if not _NUMBER.match(s):
        return None
    x = float(s)
    return x if math.isfinite(x) else None


def is_int_text(cell: str, thousands: str) -> bool:
    """True when the cell is written as a whole number without a decimal mark or exponent."""
    return bool(_INT.match(cell.replace(thousands, "") if thousands else cell))


# ---------------------------------------------------------------- header and layout


def sniff_header(rows: Sequence[Sequence[str]], decimal: str, thousands: str) -> Guess:
    """True when the first row names the columns (text above numbers, or text unlike every value below)."""
    if len(rows) < 2:
        return Guess(True, "only one row; taken as a header", sure=False)
    first, rest = rows[0], rows[1:201]
    numeric_cols = text_over_numbers = 0
    for j, top in enumerate(first):
        below = [r[j] for r in rest if j < len(r) and r[j] and r[j] not in PUNCT_MARKERS + WORD_MARKERS]
        if not below:
            continue
        share = sum(to_number(v, decimal, thousands) is not None for v in below) / len(below)
        if share >= 0.9:
            numeric_cols += 1
            if to_number(top, decimal, thousands) is None and top not in PUNCT_MARKERS + WORD_MARKERS:
                text_over_numbers += 1
    if text_over_numbers:
        return Guess(True, f"{text_over_numbers} of {numeric_cols} numeric columns have text in the first row")
    if numeric_cols:
        return Guess(False, f"the first row has numbers in all {numeric_cols} numeric columns")
    unseen = all(top and all(top != (r[j] if j < len(r) else None) for r in rest) for j, top in enumerate(first))
    if unseen:
        return Guess(True, "no numeric columns; every first-row value is absent below it", sure=False)
    return Guess(False, "no numeric columns and first-row values repeat below; taken as data", sure=False)


def trailing_empty(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> int:
    """How many columns to keep: trailing columns that are empty in every row (and header) are dropped."""
    width = max([len(r) for r in rows] + [len(header) if header else 0])
    keep = width
    while keep > 1:
        j = keep - 1
        if (header and j < len(header) and header[j]) or any(j < len(r) and r[j] for r in rows):
            break
        keep -= 1
    return keep


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
    if not values or not any(ch.isdigit() for ch in values[0]) or all(_NUMBER.match(v) for v in values[:50]):
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
        return Guess("log", f"all values above 0 ({_fmt(lo)} .. {_fmt(max(values))}), right-skewed "
                            f"(skewness {skew:.2f})")
    if skew > SKEWED and lo >= 0:
        return Guess("log1p", f"values from 0 ({_fmt(lo)} .. {_fmt(max(values))}), right-skewed "
                              f"(skewness {skew:.2f})")
    why = f"skewness {skew:.2f}" + ("" if skew <= SKEWED else f", but values go down to {_fmt(lo)}")
    return Guess("none", why, sure=abs(skew) < 0.5)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:.6g}"


# ---------------------------------------------------------------- columns


def _id_like_name(raw: str) -> bool:
    key = header_key(raw)
    words = re.split(r"[^0-9a-z]+", raw.lower())
    return key in ID_NAMES or words[-1:] == ["id"] or (len(words) > 1 and words[0] == "id")


def guess_column(col: Column, cells: Sequence[str], decimal: str, thousands: str, is_target: bool) -> set[str]:
    """Type one column from its cells; returns the missing markers it uses (to be listed in [read])."""
    n = len(cells)
    counts = Counter(cells)
    punct = {v for v in counts if v in PUNCT_MARKERS}
    words = {v for v in counts if v in WORD_MARKERS}
    others = [v for v in counts if v not in punct and v not in words]
    numbers = {v: to_number(v, decimal, thousands) for v in others}
    bad = [v for v in others if numbers[v] is None]
    numeric_cells = sum(counts[v] for v in others if numbers[v] is not None)
    if not others:
        col.type, col.n_missing = "ignore", n
        col.notes.append("every value is a missing marker")
        return set()
    if not bad or (len(bad) <= 3 and numeric_cells >= 0.9 * sum(counts[v] for v in others) and numeric_cells):
        markers = punct | words
        if bad:  # a few odd tokens in a numeric column: treat them as missing, say so
            col.missing = sorted(bad)
            markers |= set(bad)
            col.notes.append("check: non-numbers " + ", ".join(f"{b!r} ({counts[b]})" for b in sorted(bad))
                             + " taken as missing in this column")
        col.n_missing = sum(counts[v] for v in markers)
        texts = [v for v in others if numbers[v] is not None]
        padded = [v for v in texts if _ZERO_PADDED.match(v.lstrip("+-"))]
        col.values = [numbers[v] for v in texts for _ in range(counts[v])]
        if padded and not is_target:
            distinct = len(texts)
            if distinct == len(col.values) or distinct > MAX_LEVELS:
                col.type = "ignore"
                col.notes.append(f"leading-zero codes like {padded[0]!r}, {distinct:,} distinct: an id, ignored")
            else:
                col.type, col.levels = "category", sorted(texts)
                col.notes.append(f"zero-padded codes like {padded[0]!r}: a category, not a number")
            return markers
        if re.search(r"zip|code", col.raw, re.I) and not is_target and len(texts) <= MAX_LEVELS:
            col.type, col.levels = "category", sorted(texts, key=lambda v: numbers[v] or 0.0)
            col.notes.append(f"named like a code, {len(texts)} distinct values: a category, not a number")
            return markers
        if re.search(r"zip|code", col.raw, re.I) and not is_target:
            col.notes.append(f"check: named like a code but {len(texts):,} distinct values; kept as a number")
        whole = all(is_int_text(v, thousands) for v in texts)
        col.type = "int" if whole else "float"
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
    # text: date/time, or category
    markers = set(punct)
    col.n_missing = sum(counts[v] for v in punct)
    values = sorted(others)
    stamp = sniff_datetime(values)
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
        kind = "all distinct: an id or free text" if len(levels) == n - col.n_missing else "an id or free text?"
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


# ---------------------------------------------------------------- the draft


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _toml_list(items: Sequence[str], indent: int = 0, width: int = 110) -> str:
    parts = [_toml_str(i) for i in items]
    one = "[" + ", ".join(parts) + "]"
    if len(one) + indent <= width:
        return one
    lines, line = [], "    "
    for p in parts:
        if len(line) + len(p) + 2 > width and line.strip():
            lines.append(line.rstrip())
            line = "    "
        line += p + ", "
    lines.append(line.rstrip())
    return "[\n" + "\n".join(lines) + "\n]"


def _dataset_name(path: Path) -> str:
    stem = path.name.split(".")[0] or "dataset"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return name if name and name[0].isalnum() else "dataset"


def draft_spec(path: str | Path, target: str, ignore: Sequence[str] = ()) -> Draft:
    """Sniff the file and return a runnable commented spec with its report; bad input raises one clear error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    if raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or raw[:4] == b"PK\x03\x04":
        raise DataError(f"{path}: a spreadsheet or archive, not a text table; export it as CSV first")
    text, encoding = decode_bytes(raw)
    if "\x00" in text[:10000]:
        raise DataError(f"{path}: holds NUL bytes; not a text table")
    lines = sample_lines(text)
    quote = sniff_quote(lines)
    delim = sniff_delimiter(lines, quote.value)
    d, q = str(delim.value), str(quote.value)
    rows = split_rows(text, d, q)
    all_lines = [ln for ln in text.splitlines() if ln.strip()]
    separator_only = sum(_is_separator_only(ln, d) for ln in all_lines) if d != "whitespace" else 0
    blank = sum(1 for ln in text.splitlines() if not ln.strip())
    cells = [c for r in rows[:2000] for c in r]
    decimal, thousands = sniff_number_format(cells, d)
    dec, thou = str(decimal.value), str(thousands.value)
    header = sniff_header(rows, dec, thou)
    has_header = bool(header.value)
    head = rows[0] if has_header else None
    data = rows[1:] if has_header else rows
    if not data:
        raise DataError(f"{path}: has a header but no data rows")
    width = trailing_empty(head, data)
    dropped_tail = max(len(r) for r in rows) - width
    counts = Counter(min(len(r), width) if len(r) > width and not any(r[width:]) else len(r) for r in data)
    ragged = {k: v for k, v in counts.items() if k != width}
    if ragged:
        k, v = sorted(ragged.items(), key=lambda kv: -kv[1])[0]
        line_no = next(i for i, r in enumerate(data) if len(r) == k)
        raise DataError(f"{path}: rows have different numbers of fields: {counts[width]:,} have {width}, {v:,} have "
                        f"{k} (e.g. data row {line_no + 1}: {data[line_no][:6]!r}); check the delimiter and quotes")
    data = [r[:width] for r in data]
    delim = Guess(delim.value, f"{len(data):,} of {len(data):,} rows split into {width} fields"
                  + (f" (+{dropped_tail} trailing empty)" if dropped_tail else ""), sure=delim.sure)
    raws = [(head[j] if head and j < len(head) else "") for j in range(width)] if has_header \
        else [f"col{j + 1}" for j in range(width)]
    keys = Counter(header_key(r) for r in raws)
    clash = [r for r in raws if keys[header_key(r)] > 1]
    if clash:
        raise DataError(f"{path}: header names {', '.join(map(repr, clash))} are the same once cleaned (case, spaces, "
                        "_ and non-ASCII are ignored); rename them in the file")
    t_index = resolve_column(target, raws, has_header, "--target")
    ignored = {resolve_column(r.strip(), raws, has_header, "--ignore") for r in ignore if r.strip()}
    if t_index in ignored:
        raise ConfigError(f"--ignore names the target {target!r}")

    taken: set[str] = set()
    columns = [Column(j, raws[j], short_name(raws[j], j, taken)) for j in range(width)]
    markers_global: set[str] = {""}
    word_levels: dict[int, set[str]] = {}
    for col in columns:
        if col.index in ignored:
            col.type = "ignore"
            col.notes.append("ignored (--ignore)")
            continue
        values = [r[col.index] for r in data]
        used = guess_column(col, values, dec, thou, col.index == t_index)
        if col.type in ("int", "float", "category") and col.missing is None:
            markers_global |= used
        if col.type == "category":
            word_levels[col.index] = set(col.levels) & set(WORD_MARKERS)
    report = [delim.line("delimiter"), quote.line("quote"), decimal.line("decimal"), thousands.line("thousands"),
              encoding.line("encoding"), header.line("header")]
    if separator_only or blank:
        report.append(f"skipped rows: {blank:,} blank, {separator_only:,} separator-only (the reader skips them)")
    if dropped_tail:
        report.append(f"trailing empty columns: {dropped_tail} (the reader ignores them)")

    # sentinels such as -200 in many numeric columns
    sentinel_cols: dict[float, list[tuple[Column, int, set[str]]]] = {}
    numeric = [c for c in columns if c.type in ("int", "float") and c.values]
    for col in numeric:
        hit = isolated_extreme(col.values)
        if hit:
            v, k = hit
            texts = {x for x in {r[col.index] for r in data} if to_number(x, dec, thou) == v}
            sentinel_cols.setdefault(v, []).append((col, k, texts))
    sentinel_note: list[str] = []
    for v, hits in sentinel_cols.items():
        elsewhere = [c for c in numeric if c not in [h[0] for h in hits] and v in set(c.values)]
        clear = len(hits) >= 2 and not elsewhere and (len(hits) >= 3 or 2 * len(hits) >= len(numeric))
        where = ", ".join(f"{h[0].raw} ({h[1]:,})" for h in hits)
        texts = sorted(set().union(*(h[2] for h in hits)))
        if clear:
            markers_global |= set(texts)
            for col, k, _ in hits:
                col.values = [x for x in col.values if x != v]
                col.n_missing += k
                if col.missing is not None:
                    col.missing = sorted(set(col.missing) | set(texts))
                col.notes.append(f"{_fmt(v)} ({k:,} rows) taken as missing")
            sentinel_note.append(f"{_fmt(v)} is an isolated extreme in {len(hits)} numeric columns ({where}): "
                                 "applied as a missing marker")
            report.append(f"missing marker {texts} (sure: isolated extreme in {len(hits)} of {len(numeric)} numeric "
                          f"columns)")
        else:
            sentinel_note.append(f"{_fmt(v)} may mean missing in {where}; add {texts} to missing if it does "
                                 "(not applied: not clear)")
            report.append(f"possible missing marker {texts} (unsure: {where}); not applied")
            for col, k, _ in hits:
                col.notes.append(f"check: {_fmt(v)} in {k:,} rows may mean missing")

    target_col = columns[t_index]
    if target_col.type not in ("int", "float"):
        sample = next((r[t_index] for r in data if to_number(r[t_index], dec, thou) is None and r[t_index]), "")
        raise DataError(f"{path}: the target {target!r} is not numeric (values like {sample!r}); the target must be "
                        "a number")

    # missing policies, per-column markers, id-like and mostly-missing columns
    n = len(data)
    for col in columns:
        if col.type == "ignore":
            continue
        if col.missing is not None:  # a numeric column with odd tokens: the file's markers and its own
            col.missing = sorted(markers_global | set(col.missing), key=lambda m: (m != "", m))
        if col.type == "category" and word_levels.get(col.index):
            col.missing = sorted(markers_global - word_levels[col.index], key=lambda m: (m != "", m))
        if col.index == t_index:
            if col.n_missing:
                col.on_missing = "drop_row"
                col.notes.append(f"{col.n_missing:,} missing: the target cannot be imputed, rows dropped")
            continue
        if col.type in ("int", "category") and _id_like_name(col.raw):
            distinct = len(set(r[col.index] for r in data))
            col.type = "ignore"
            col.notes.append(f"named like an id ({distinct:,} distinct of {n:,}): ignored")
            continue
        if col.type == "int" and len(set(col.values)) == len(col.values) == n and n >= 20:
            in_sequence = max(col.values) - min(col.values) + 1 == n or col.values == sorted(col.values)
            if in_sequence and not re.search(r"year|yr|date|time|month|day|hour", col.raw, re.I):
                col.type = "ignore"
                col.notes.append(f"all {n:,} values distinct and in sequence: a row number or id, ignored")
                continue
            col.notes.append("check: all values distinct (an id?)")
        if col.type == "category" and len(col.levels) == n - col.n_missing and n >= 20:
            col.type = "ignore"
            col.notes.append(f"all {len(col.levels):,} values distinct: an id or free text, ignored")
            continue
        if col.n_missing > MOSTLY_MISSING * n:
            col.type = "ignore"
            col.notes.append(f"{col.n_missing:,} of {n:,} missing: ignored")
            continue
        if col.n_missing:
            if col.type in ("date", "time"):
                col.on_missing = "drop_row"
                col.notes.append(f"{col.n_missing:,} missing: a {col.type} cannot be imputed, rows dropped")
            else:
                col.on_missing = "impute"
                stat = "mode" if col.type == "category" else "median"
                col.notes.append(f"{col.n_missing:,} missing: imputed ({stat} of train, plus a _missing flag); "
                                 "drop_row is the other choice")

    # dates: one date (the first), one time combined into it
    dates = [c for c in columns if c.type == "date"]
    times = [c for c in columns if c.type == "time"]
    date_parts: list[str] = []
    if dates:
        date = dates[0]
        for other in dates[1:]:
            other.type = "ignore"
            other.notes.append(f"a second date ({other.format}); tabduel keeps one date ({date.raw}): ignored")
        has_clock = any(k in date.format for k in ("%H", "%I"))
        if times and not has_clock:
            date.time = times[0].name
            date.notes.append(f"combined with the time column {times[0].raw!r}")
            times = times[1:]
        for t in times:
            t.type = "ignore"
            t.notes.append("a time of day with no date to combine it with: ignored")
        tcol = next((c for c in columns if c.name == date.time), None)
        ok = [i for i, r in enumerate(data) if r[date.index] and (tcol is None or r[tcol.index])]
        date_parts = date_parts_of([data[i][date.index] for i in ok], date.format,
                                   [data[i][tcol.index] for i in ok] if tcol else (),
                                   tcol.format if tcol else "")
    else:
        for t in times:
            t.type = "ignore"
            t.notes.append("a time of day with no date to combine it with: ignored")
    names = {c.name for c in columns}
    parts = {(p if p not in names else f"date_{p}"): p for p in date_parts}
    periods = {name: {"month": 12, "isoweekday": 7, "hour": 24}[p] for name, p in parts.items() if p != "year"}

    inputs = [c.name for c in columns if c.type in ("int", "float", "category") and c.index != t_index]
    inputs += list(parts)
    if not inputs:
        raise DataError(f"{path}: no usable input columns besides the target {target!r} (all ignored: "
                        + "; ".join(f"{c.raw}: {c.notes[-1] if c.notes else c.type}" for c in columns
                                    if c.index != t_index)[:400] + ")")
    transform = choose_transform(target_col.values)
    report.append(f"target {target_col.raw!r} -> {target_col.name} ({target_col.type}): " + transform.line("transform"))
    for col in columns:
        kind = col.type + (f" {col.format}" if col.format else "") + (
            f" ({len(col.levels)} levels)" if col.levels else "")
        report.append(f"  {col.raw or '(no name)'!r:<32} -> {col.name:<22} {kind}"
                      + (f"; {'; '.join(col.notes)}" if col.notes else ""))

    spec_text = render_toml(path, target_col, transform, columns, parts, periods, inputs,
                            {"delimiter": delim, "quote": quote, "decimal": decimal, "thousands": thousands,
                             "encoding": encoding, "header": header},
                            sorted(markers_global, key=lambda m: (m != "", m)), sentinel_note,
                            n, separator_only, blank, dropped_tail)
    _check(spec_text, path)
    return Draft(spec_text, report)


def _check(text: str, path: Path) -> None:
    import tomllib

    try:
        parse_spec(tomllib.loads(text), f"<draft of {path}>")
    except (ConfigError, tomllib.TOMLDecodeError) as exc:  # a bug in the drafter, not in the file
        raise AssertionError(f"the drafted spec does not load: {exc}\n{text}") from exc


def render_toml(path: Path, target: Column, transform: Guess, columns: Sequence[Column], parts: dict[str, str],
                periods: dict[str, int], inputs: Sequence[str], read: dict[str, Guess], missing: Sequence[str],
                sentinel_note: Sequence[str], rows: int, separator_only: int, blank: int, tail: int) -> str:
    """The commented TOML of a drafted spec."""
    def sure(g: Guess) -> str:
        return f"# {'' if g.sure else 'unsure, check: '}{g.why}"

    out = [f"# Drafted by `tabduel spec draft {path.name} --target {target.raw}`: check each guess, above all the",
           "# ones marked 'check' or 'unsure'. Every key is described in docs/spec-format.md.",
           f"# {rows:,} data rows" + (f"; {blank:,} blank and {separator_only:,} separator-only rows are skipped"
                                      if blank or separator_only else "")
           + (f"; {tail} trailing empty column(s) are ignored" if tail else "") + ".",
           f"name = {_toml_str(_dataset_name(path))}",
           f"description = {_toml_str('Drafted from ' + path.name)}",
           "",
           "[source]",
           f"member = {_toml_str(path.name)}",
           "",
           "[read]"]
    d = read["delimiter"]
    out.append(f"delimiter = {_toml_str(str(d.value))}  {sure(d)}")
    out.append(f"decimal = {_toml_str(str(read['decimal'].value))}  {sure(read['decimal'])}")
    out.append(f"thousands = {_toml_str(str(read['thousands'].value))}  {sure(read['thousands'])}")
    out.append(f"quote = {_toml_str(str(read['quote'].value))}  {sure(read['quote'])}")
    out.append(f"encoding = {_toml_str(str(read['encoding'].value))}  {sure(read['encoding'])}")
    h = read["header"]
    out.append(f"header = {'true' if h.value else 'false'}  {sure(h)}"
               + ("" if h.value else "; columns are named col1, col2, ... by position"))
    for note in sentinel_note:
        out.append(f"# {note}")
    out.append(f"missing = {_toml_list(missing)}  # markers seen in the file ('' = empty cell)")
    out += ["", "[target]", f"column = {_toml_str(target.name)}",
            f"transform = {_toml_str(str(transform.value))}  {sure(transform)}",
            f"label = {_toml_str(target.raw)}", "", "[features]"]
    if parts:
        out.append("date_parts = { " + ", ".join(f"{k} = {_toml_str(v)}" for k, v in parts.items())
                   + " }  # computed from the date")
        if periods:
            out.append("periods = { " + ", ".join(f"{k} = {v}" for k, v in periods.items()) + " }")
    out.append(f"inputs = {_toml_list(inputs, 9)}")
    for col in columns:
        out += ["", "[[columns]]"]
        out += [f"# {note}" for note in col.notes]
        out.append(f"raw = {_toml_str(col.raw)}")
        out.append(f"name = {_toml_str(col.name)}")
        out.append(f"type = {_toml_str(col.type)}" + (_range_note(col) if col.type in ("int", "float") else ""))
        if col.type == "ignore":
            continue
        if col.format:
            out.append(f"format = {_toml_str(col.format)}")
        if col.time:
            out.append(f"time = {_toml_str(col.time)}")
        if col.levels:
            out.append(f"levels = {_toml_list(col.levels, 9)}")
            if col.ordered:
                out.append("ordered = true")
        if col.missing is not None:
            out.append(f"missing = {_toml_list(col.missing)}")
        if col.on_missing:
            out.append(f"on_missing = {_toml_str(col.on_missing)}")
    return "\n".join(out) + "\n"


def _range_note(col: Column) -> str:
    if not col.values:
        return ""
    return f"  # {_fmt(min(col.values))} .. {_fmt(max(col.values))} in the file; add min/max to enforce a range"


def draft_command(file: str, target: str, ignore: str, output: str = "") -> int:
    """`tabduel spec draft`: the spec to stdout (or atomically to output), the report to stderr; exit status."""
    import sys

    try:
        draft = draft_spec(file, target, [i for i in ignore.split(",") if i.strip()])
    except (ConfigError, DataError) as exc:
        print(f"tabduel: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    for line in draft.report:
        print(line, file=sys.stderr)
    if output:
        from tabduel.infra.store import atomic_write_bytes

        atomic_write_bytes(output, draft.toml.encode("utf-8"))
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(draft.toml)
    return 0
