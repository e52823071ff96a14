"""`tabduel spec draft`: sniff a raw tabular file and write a commented, runnable dataset spec (TOML).

Plain functions only (no torch, MLflow or Prefect), in three parts: `sniff.sniff_layout` reads how the file is written
(a `Layout`), `guess.guess_columns` what each column holds and which is the target (`ColumnGuesses`), and
`render.render_toml` writes the spec. `draft_spec` ties them together; `draft_command` is the CLI entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tabduel.data.dataset import parse_spec
from tabduel.data.draft.guess import (
    DATE_FORMATS,
    ID_NAMES,
    MAX_LEVELS,
    MOSTLY_MISSING,
    ORDINAL_SCALES,
    SKEWED,
    TIME_FORMATS,
    Column,
    ColumnGuesses,
    Sentinel,
    choose_transform,
    date_parts_of,
    guess_column,
    guess_columns,
    isolated_extreme,
    resolve_column,
    short_name,
    skewness,
    sniff_datetime,
)
from tabduel.data.draft.render import render_column, render_report, render_toml
from tabduel.data.draft.sniff import (
    DELIMITERS,
    PUNCT_MARKERS,
    WORD_MARKERS,
    Guess,
    Layout,
    decode_bytes,
    is_int_text,
    read_text,
    sample_lines,
    sniff_delimiter,
    sniff_header,
    sniff_layout,
    sniff_number_format,
    sniff_quote,
    split_line,
    split_rows,
    to_number,
    trailing_empty,
)
from tabduel.infra.errors import ConfigError, DataError

__all__ = [
    "DATE_FORMATS", "DELIMITERS", "ID_NAMES", "MAX_LEVELS", "MOSTLY_MISSING", "ORDINAL_SCALES", "PUNCT_MARKERS",
    "SKEWED", "TIME_FORMATS", "WORD_MARKERS", "Column", "ColumnGuesses", "Draft", "Guess", "Layout", "Sentinel",
    "choose_transform", "date_parts_of", "decode_bytes", "draft_command", "draft_spec", "guess_column",
    "guess_columns", "is_int_text", "isolated_extreme", "read_text", "render_column", "render_report", "render_toml",
    "resolve_column", "sample_lines", "short_name", "skewness", "sniff_datetime", "sniff_delimiter", "sniff_header",
    "sniff_layout", "sniff_number_format", "sniff_quote", "split_line", "split_rows", "to_number", "trailing_empty",
]


@dataclass(frozen=True)
class Draft:
    """A drafted spec: the TOML text and the report lines (what was guessed, how sure)."""

    toml: str
    report: list[str]


def draft_spec(path: str | Path, target: str, ignore: Sequence[str] = ()) -> Draft:
    """Sniff the file and return a runnable commented spec with its report; bad input raises one clear error."""
    path = Path(path)
    layout = sniff_layout(path)
    guesses = guess_columns(path, layout, target, ignore)
    spec_text = render_toml(path, layout, guesses)
    _check(spec_text, path)
    return Draft(spec_text, render_report(layout, guesses))


def _check(text: str, path: Path) -> None:
    import tomllib

    try:
        parse_spec(tomllib.loads(text), f"<draft of {path}>")
    except (ConfigError, tomllib.TOMLDecodeError) as exc:  # a bug in the drafter, not in the file
        raise AssertionError(f"the drafted spec does not load: {exc}\n{text}") from exc


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
