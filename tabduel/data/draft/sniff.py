"""Part 1 of drafting: the file's layout (encoding, quoting, delimiter, number format, header, table shape).

Each sniffer takes text or cells and returns its `Guess`; `sniff_layout` ties them into one frozen `Layout`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tabduel.data.dataset import header_key
from tabduel.infra.errors import DataError

DELIMITERS = (",", ";", "\t", "|", "whitespace")
# Cell values that often mean "missing". Punctuation ones are missing wherever they occur; word ones are missing in
# numeric columns but kept as a level in text columns (Ames: "NA" = no alley, "None" = no veneer).
PUNCT_MARKERS = ("", "?", "-", "--", ".", "#N/A", "#NA")
WORD_MARKERS = ("NA", "N/A", "na", "n/a", "NaN", "nan", "null", "NULL", "Null", "None", "none", "missing",
                "Missing", "MISSING", "NONE", "N.A.", "n.a.")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INT = re.compile(r"[+-]?\d+\Z")


@dataclass(frozen=True)
class Guess:
    """One sniffed setting, the value chosen and how sure the sniffer is (a line for stderr)."""

    value: object
    why: str
    sure: bool = True

    def line(self, what: str) -> str:
        """'delimiter ';' (sure: ...)' for the report."""
        shown = self.value if isinstance(self.value, bool) else repr(self.value)
        return f"{what} {shown} ({'sure' if self.sure else 'unsure'}: {self.why})"


@dataclass(frozen=True)
class Layout:
    """How the file is written, and its data rows cut to the table's width."""

    encoding: Guess
    quote: Guess
    delimiter: Guess
    decimal: Guess
    thousands: Guess
    header: Guess
    raws: tuple[str, ...]  # the column headers, or col1, col2, ... without a header
    data: list[list[str]]  # the data rows, stripped cells, exactly len(raws) each
    separator_only: int = 0  # rows of only delimiters (skipped by the reader)
    blank: int = 0  # blank lines (skipped by the reader)
    dropped_tail: int = 0  # trailing columns empty in every row (ignored by the reader)

    @property
    def dec(self) -> str:
        """The decimal mark as text."""
        return str(self.decimal.value)

    @property
    def thou(self) -> str:
        """The thousands separator as text ('' for none)."""
        return str(self.thousands.value)

    @property
    def has_header(self) -> bool:
        """True when the first row names the columns."""
        return bool(self.header.value)


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


def _number_shapes(cells: Sequence[str]) -> tuple[int, int, int, int]:
    """(comma decimals, dot decimals, 1,234 groups, 1.234.567 groups) among number-like cells."""
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
    return comma_dec, dot_dec, comma_groups, dot_groups


def sniff_number_format(cells: Sequence[str], delimiter: str) -> tuple[Guess, Guess]:
    """Decimal mark and thousands separator from the shapes of number-like cells."""
    comma_dec, dot_dec, comma_groups, dot_groups = _number_shapes(cells)
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
    if not NUMBER.match(s):
        return None
    x = float(s)
    return x if math.isfinite(x) else None


def is_int_text(cell: str, thousands: str) -> bool:
    """True when the cell is written as a whole number without a decimal mark or exponent."""
    return bool(_INT.match(cell.replace(thousands, "") if thousands else cell))


# ---------------------------------------------------------------- header and table shape


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


def _check_ragged(path: Path, data: Sequence[Sequence[str]], width: int) -> None:
    """Raise when data rows (ignoring empty cells past the width) have another number of fields than width."""
    counts = Counter(min(len(r), width) if len(r) > width and not any(r[width:]) else len(r) for r in data)
    ragged = {k: v for k, v in counts.items() if k != width}
    if ragged:
        k, v = sorted(ragged.items(), key=lambda kv: -kv[1])[0]
        line_no = next(i for i, r in enumerate(data) if len(r) == k)
        raise DataError(f"{path}: rows have different numbers of fields: {counts[width]:,} have {width}, {v:,} have "
                        f"{k} (e.g. data row {line_no + 1}: {data[line_no][:6]!r}); check the delimiter and quotes")


def _column_raws(path: Path, head: Sequence[str] | None, width: int) -> tuple[str, ...]:
    """The header text of each kept column (col1, col2, ... without a header); raise when two clean alike."""
    raws = tuple((head[j] if j < len(head) else "") for j in range(width)) if head is not None \
        else tuple(f"col{j + 1}" for j in range(width))
    keys = Counter(header_key(r) for r in raws)
    clash = [r for r in raws if keys[header_key(r)] > 1]
    if clash:
        raise DataError(f"{path}: header names {', '.join(map(repr, clash))} are the same once cleaned (case, spaces, "
                        "_ and non-ASCII are ignored); rename them in the file")
    return raws


# ---------------------------------------------------------------- the whole layout


def read_text(path: Path) -> tuple[str, Guess]:
    """The file's text and its encoding guess; raise one clear DataError when it is no text table."""
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
    return text, encoding


def sniff_layout(path: Path) -> Layout:
    """Read and sniff the file: its `Layout`, with data rows cut to the table's width; bad input raises DataError."""
    text, encoding = read_text(path)
    lines = sample_lines(text)
    quote = sniff_quote(lines)
    delim = sniff_delimiter(lines, str(quote.value))
    d, q = str(delim.value), str(quote.value)
    rows = split_rows(text, d, q)
    all_lines = [ln for ln in text.splitlines() if ln.strip()]
    separator_only = sum(_is_separator_only(ln, d) for ln in all_lines) if d != "whitespace" else 0
    blank = sum(1 for ln in text.splitlines() if not ln.strip())
    decimal, thousands = sniff_number_format([c for r in rows[:2000] for c in r], d)
    header = sniff_header(rows, str(decimal.value), str(thousands.value))
    head = rows[0] if header.value else None
    data = rows[1:] if header.value else rows
    if not data:
        raise DataError(f"{path}: has a header but no data rows")
    width = trailing_empty(head, data)
    dropped_tail = max(len(r) for r in rows) - width
    _check_ragged(path, data, width)
    data = [r[:width] for r in data]
    delim = Guess(delim.value, f"{len(data):,} of {len(data):,} rows split into {width} fields"
                  + (f" (+{dropped_tail} trailing empty)" if dropped_tail else ""), sure=delim.sure)
    return Layout(encoding=encoding, quote=quote, delimiter=delim, decimal=decimal, thousands=thousands,
                  header=header, raws=_column_raws(path, head, width), data=data, separator_only=separator_only,
                  blank=blank, dropped_tail=dropped_tail)
