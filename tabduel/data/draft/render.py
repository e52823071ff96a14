"""Part 3 of drafting: the commented TOML spec and the report, from a `Layout` and its `ColumnGuesses`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from tabduel.data.draft.guess import Column, ColumnGuesses, Sentinel, fmt_number
from tabduel.data.draft.sniff import Guess, Layout


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


def _sure(g: Guess) -> str:
    return f"# {'' if g.sure else 'unsure, check: '}{g.why}"


def _where(s: Sentinel) -> str:
    return ", ".join(f"{raw} ({k:,})" for raw, k in s.hits)


def sentinel_note(s: Sentinel) -> str:
    """The spec comment on a sentinel: applied, or a suggestion."""
    if s.applied:
        return (f"{fmt_number(s.value)} is an isolated extreme in {len(s.hits)} numeric columns ({_where(s)}): "
                "applied as a missing marker")
    return f"{fmt_number(s.value)} may mean missing in {_where(s)}; add {list(s.texts)} to missing if it does " \
           "(not applied: not clear)"


def sentinel_report(s: Sentinel) -> str:
    """The report line on a sentinel."""
    if s.applied:
        return (f"missing marker {list(s.texts)} (sure: isolated extreme in {len(s.hits)} of {s.n_numeric} numeric "
                "columns)")
    return f"possible missing marker {list(s.texts)} (unsure: {_where(s)}); not applied"


def render_report(layout: Layout, guesses: ColumnGuesses) -> list[str]:
    """The report lines for stderr: each layout guess, skipped rows, sentinels, the target and every column."""
    report = [layout.delimiter.line("delimiter"), layout.quote.line("quote"), layout.decimal.line("decimal"),
              layout.thousands.line("thousands"), layout.encoding.line("encoding"), layout.header.line("header")]
    if layout.separator_only or layout.blank:
        report.append(f"skipped rows: {layout.blank:,} blank, {layout.separator_only:,} separator-only "
                      "(the reader skips them)")
    if layout.dropped_tail:
        report.append(f"trailing empty columns: {layout.dropped_tail} (the reader ignores them)")
    report += [sentinel_report(s) for s in guesses.sentinels]
    target = guesses.target
    report.append(f"target {target.raw!r} -> {target.name} ({target.type}): " + guesses.transform.line("transform"))
    for col in guesses.columns:
        kind = col.type + (f" {col.format}" if col.format else "") + (
            f" ({len(col.levels)} levels)" if col.levels else "")
        report.append(f"  {col.raw or '(no name)'!r:<32} -> {col.name:<22} {kind}"
                      + (f"; {'; '.join(col.notes)}" if col.notes else ""))
    return report


def _render_head(path: Path, layout: Layout, target: Column) -> list[str]:
    """The opening comment, name, description and [source]."""
    rows, blank, separator_only, tail = len(layout.data), layout.blank, layout.separator_only, layout.dropped_tail
    return [f"# Drafted by `tabduel spec draft {path.name} --target {target.raw}`: check each guess, above all the",
            "# ones marked 'check' or 'unsure'. Every key is described in docs/spec-format.md.",
            f"# {rows:,} data rows" + (f"; {blank:,} blank and {separator_only:,} separator-only rows are skipped"
                                       if blank or separator_only else "")
            + (f"; {tail} trailing empty column(s) are ignored" if tail else "") + ".",
            f"name = {_toml_str(_dataset_name(path))}",
            f"description = {_toml_str('Drafted from ' + path.name)}",
            "",
            "[source]",
            f"member = {_toml_str(path.name)}",
            ""]


def _render_read(layout: Layout, guesses: ColumnGuesses) -> list[str]:
    """The [read] table: each layout guess with its reason, sentinel notes and the missing markers."""
    out = ["[read]"]
    for key in ("delimiter", "decimal", "thousands", "quote", "encoding"):
        g: Guess = getattr(layout, key)
        out.append(f"{key} = {_toml_str(str(g.value))}  {_sure(g)}")
    h = layout.header
    out.append(f"header = {'true' if h.value else 'false'}  {_sure(h)}"
               + ("" if h.value else "; columns are named col1, col2, ... by position"))
    out += [f"# {sentinel_note(s)}" for s in guesses.sentinels]
    out.append(f"missing = {_toml_list(guesses.missing)}  # markers seen in the file ('' = empty cell)")
    return out


def _render_features(guesses: ColumnGuesses) -> list[str]:
    """The [target] and [features] tables."""
    target, transform = guesses.target, guesses.transform
    out = ["", "[target]", f"column = {_toml_str(target.name)}",
           f"transform = {_toml_str(str(transform.value))}  {_sure(transform)}",
           f"label = {_toml_str(target.raw)}", "", "[features]"]
    if guesses.parts:
        out.append("date_parts = { " + ", ".join(f"{k} = {_toml_str(v)}" for k, v in guesses.parts.items())
                   + " }  # computed from the date")
        if guesses.periods:
            out.append("periods = { " + ", ".join(f"{k} = {v}" for k, v in guesses.periods.items()) + " }")
    out.append(f"inputs = {_toml_list(guesses.inputs, 9)}")
    return out


def _range_note(col: Column) -> str:
    if not col.values:
        return ""
    return (f"  # {fmt_number(min(col.values))} .. {fmt_number(max(col.values))} in the file; add min/max to "
            "enforce a range")


def render_column(col: Column) -> list[str]:
    """One [[columns]] entry: its notes as comments, then its keys."""
    out = ["", "[[columns]]"]
    out += [f"# {note}" for note in col.notes]
    out.append(f"raw = {_toml_str(col.raw)}")
    out.append(f"name = {_toml_str(col.name)}")
    out.append(f"type = {_toml_str(col.type)}" + (_range_note(col) if col.type in ("int", "float") else ""))
    if col.type == "ignore":
        return out
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
    return out


def render_toml(path: Path, layout: Layout, guesses: ColumnGuesses) -> str:
    """The commented TOML of a drafted spec."""
    out = _render_head(path, layout, guesses.target) + _render_read(layout, guesses) + _render_features(guesses)
    for col in guesses.columns:
        out += render_column(col)
    return "\n".join(out) + "\n"
