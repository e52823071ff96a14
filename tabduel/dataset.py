"""Dataset specs: the per-dataset knowledge (URL, sha256, columns, levels) read from TOML."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from tabduel.errors import ConfigError

COLUMN_TYPES = ("int", "float", "date", "category")
DATE_PARTS = ("isoweekday", "month", "day_of_month", "year")
TRANSFORMS = ("log10p1", "none")
BUILTIN = "seoul_bike.toml"


@dataclass(frozen=True)
class ColumnSpec:
    """One raw column: its header, short name, type and allowed values."""

    raw: str
    name: str
    type: str
    format: str = ""
    min: float | None = None
    max: float | None = None
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceSpec:
    """Where the raw file is published and the sha256 it must have."""

    url: str
    member: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything tabduel knows about one dataset."""

    name: str
    description: str
    source: SourceSpec
    target: str
    transform: str
    date_parts: tuple[tuple[str, str], ...]
    periods: tuple[tuple[str, int], ...]
    inputs: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    path: str
    sha256: str

    def column(self, name: str) -> ColumnSpec:
        """The spec of the column with this short name."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def period(self, name: str) -> int | None:
        """The cycle length of a column (hour: 24), if the spec gives one."""
        return dict(self.periods).get(name)


def clean_header(name: str) -> str:
    """Drop non-ASCII characters and replace runs of spaces with '_'."""
    ascii_only = "".join(ch for ch in name if ord(ch) < 128)
    return re.sub(r"\s+", "_", ascii_only.strip())


def header_key(name: str) -> str:
    """The form in which a file header and a spec's raw name are compared."""
    return clean_header(name).replace("_", "").casefold()


def builtin_spec_path() -> Path:
    """Path of the Seoul Bike spec shipped with the package."""
    return Path(str(resources.files("tabduel.datasets").joinpath(BUILTIN)))


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and check a dataset spec; None or '' means the built-in one."""
    path = Path(path) if path else builtin_spec_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"dataset spec not found: {path}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_spec(data, str(path), hashlib.sha256(raw).hexdigest())


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")


def parse_spec(data: Mapping[str, Any], path: str = "<spec>", sha256: str = "") -> DatasetSpec:
    """Check a parsed spec mapping and build a DatasetSpec, naming what is wrong."""
    _check_keys(path, data, {"name", "description", "source", "target", "features", "columns"},
                {"name", "source", "target", "features", "columns"})
    src = data["source"]
    _check_keys(f"{path} [source]", src, {"url", "member", "sha256"}, {"url", "member", "sha256"})
    if not re.fullmatch(r"[0-9a-f]{64}", src["sha256"]):
        raise ConfigError(f"{path} [source]: sha256 must be 64 lowercase hex digits, got {src['sha256']!r}")
    columns = []
    for i, col in enumerate(data["columns"]):
        where = f"{path} [[columns]] #{i + 1}"
        _check_keys(where, col, {"raw", "name", "type", "format", "min", "max", "levels"}, {"raw", "name", "type"})
        if col["type"] not in COLUMN_TYPES:
            raise ConfigError(f"{where}: type {col['type']!r} is not one of {', '.join(COLUMN_TYPES)}")
        if col["type"] == "category" and not col.get("levels"):
            raise ConfigError(f"{where}: a category column needs levels")
        if col["type"] == "date" and not col.get("format"):
            raise ConfigError(f"{where}: a date column needs a format")
        columns.append(ColumnSpec(raw=col["raw"], name=col["name"], type=col["type"],
                                  format=col.get("format", ""), min=col.get("min"), max=col.get("max"),
                                  levels=tuple(col.get("levels", ()))))
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate column name(s) {', '.join(dupes)}")
    keys = [header_key(c.raw) for c in columns]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{path}: two raw headers are the same once cleaned")

    tgt = data["target"]
    _check_keys(f"{path} [target]", tgt, {"column", "transform"}, {"column"})
    if tgt["column"] not in names:
        raise ConfigError(f"{path} [target]: column {tgt['column']!r} is not a column of the spec")
    transform = tgt.get("transform", "none")
    if transform not in TRANSFORMS:
        raise ConfigError(f"{path} [target]: transform {transform!r} is not one of {', '.join(TRANSFORMS)}")

    feat = data["features"]
    _check_keys(f"{path} [features]", feat, {"date_parts", "periods", "inputs"}, {"inputs"})
    date_parts = dict(feat.get("date_parts", {}))
    for part_name, part in date_parts.items():
        if part not in DATE_PARTS:
            raise ConfigError(f"{path} [features]: date part {part_name} = {part!r} "
                              f"is not one of {', '.join(DATE_PARTS)}")
        if part_name in names:
            raise ConfigError(f"{path} [features]: date part {part_name!r} clashes with a column name")
    if date_parts and not any(c.type == "date" for c in columns):
        raise ConfigError(f"{path} [features]: date_parts need a date column")
    known = set(names) | set(date_parts)
    for name in feat["inputs"]:
        if name not in known:
            raise ConfigError(f"{path} [features]: input {name!r} is neither a column nor a date part")
        if name == tgt["column"]:
            raise ConfigError(f"{path} [features]: the target {name!r} cannot be an input")
    inputs = tuple(feat["inputs"])
    for name, col in ((c.name, c) for c in columns):
        if name in inputs and col.type == "date":
            raise ConfigError(f"{path} [features]: the date column {name!r} cannot be an input; use date_parts")
    periods = {str(k): int(v) for k, v in feat.get("periods", {}).items()}

    return DatasetSpec(
        name=data["name"], description=data.get("description", ""),
        source=SourceSpec(url=src["url"], member=src["member"], sha256=src["sha256"]),
        target=tgt["column"], transform=transform,
        date_parts=tuple(date_parts.items()), periods=tuple(periods.items()),
        inputs=inputs, columns=tuple(columns), path=path, sha256=sha256,
    )
