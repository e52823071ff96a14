"""Dataset specs: how to read one raw file and what its columns are, read from TOML (docs/spec-format.md)."""

from __future__ import annotations

import codecs
import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from tabduel.data.target import TRANSFORMS
from tabduel.infra.errors import ConfigError
from tabduel.infra.settings import model_kinds

COLUMN_TYPES = ("int", "float", "category", "date", "time", "ignore")
DATE_PARTS = ("hour", "minute", "isoweekday", "weekend", "day_of_month", "day_of_year", "month", "year")
ON_MISSING = ("reject", "drop_row", "impute")
IMPUTE_NUMERIC = ("median", "mean", "mode")
REJECT_OR_MISSING = ("reject", "missing")
DEFAULT_MISSING = ("", "NA", "N/A", "na", "n/a", "NaN", "nan", "null", "NULL", "None", "none")
BUILTIN = "seoul_bike.toml"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ReadSpec:
    """How the raw file is laid out: delimiter, number format, quoting, encoding, header, missing markers."""

    delimiter: str = ","
    decimal: str = "."
    thousands: str = ""
    quote: str = '"'
    encoding: str = "auto"
    header: bool = True
    missing: tuple[str, ...] = DEFAULT_MISSING
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class ColumnSpec:
    """One raw column: its header, short name, type, allowed values and missing-value policy."""

    raw: str
    name: str
    type: str
    format: str = ""
    min: float | None = None
    max: float | None = None
    out_of_range: str = "reject"
    levels: tuple[str, ...] = ()
    numeric_levels: bool = False
    ordered: bool = False
    unknown: str = "reject"
    time: str = ""
    missing: tuple[str, ...] | None = None
    on_missing: str = "reject"
    impute: str = ""

    def markers(self, read: ReadSpec) -> tuple[str, ...]:
        """The cell values that mean missing in this column."""
        return read.missing if self.missing is None else self.missing


@dataclass(frozen=True)
class SourceSpec:
    """Where the raw file is published and the sha256 it must have (all optional)."""

    url: str = ""
    member: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything tabduel knows about one dataset."""

    name: str
    description: str
    source: SourceSpec
    read: ReadSpec
    target: str
    transform: str
    target_label: str
    target_unit: str
    date_parts: tuple[tuple[str, str], ...]
    periods: tuple[tuple[str, int], ...]
    inputs: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    path: str
    sha256: str
    models: tuple[str, ...] = ()  # what `tabduel run` trains on it unless the settings say (empty: the default)

    def column(self, name: str) -> ColumnSpec:
        """The spec of the column with this short name."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def period(self, name: str) -> int | None:
        """The cycle length of a column (hour: 24), if the spec gives one."""
        return dict(self.periods).get(name)

    @property
    def kept(self) -> tuple[ColumnSpec, ...]:
        """The columns of the ingested table: all but ignored ones and times merged into their date."""
        return tuple(c for c in self.columns if c.type not in ("ignore", "time"))

    @property
    def date_column(self) -> str | None:
        """The short name of the date column, or None when the data has no date."""
        return next((c.name for c in self.columns if c.type == "date"), None)

    @property
    def target_title(self) -> str:
        """The target as a label with its unit: 'rented bikes (bikes per hour)'."""
        return f"{self.target_label} ({self.target_unit})" if self.target_unit else self.target_label


def clean_header(name: str) -> str:
    """Drop non-ASCII characters and replace runs of spaces with '_'."""
    ascii_only = "".join(ch for ch in name if ord(ch) < 128)
    return re.sub(r"\s+", "_", ascii_only.strip())


def header_key(name: str) -> str:
    """The form in which a file header and a spec's raw name are compared."""
    return clean_header(name).replace("_", "").casefold()


def builtin_spec_path(file: str = BUILTIN) -> Path:
    """Path of a spec shipped with the package (default: Seoul Bike)."""
    return Path(str(resources.files("tabduel.datasets").joinpath(file)))


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and check a dataset spec; None or '' means the built-in one."""
    path = Path(path) if path else builtin_spec_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"dataset spec not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"dataset spec {path} is a directory, not a TOML file") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_spec(data, str(path), hashlib.sha256(raw).hexdigest())


def _check_keys(where: str, data: Any, allowed: set[str], required: set[str] = frozenset()) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")


def _typed(where: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: {key} = {value!r} must be {what}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} = {value!r} must be {what}")
    return value


def _choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {key} = {value!r} is not one of {', '.join(choices)}")
    return value


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    _typed(where, key, value, list, "a list of strings")
    for item in value:
        _typed(where, key, item, str, "a list of strings")
    return tuple(value)


def _check_read(data: Mapping[str, Any], where: str) -> ReadSpec:
    _check_keys(where, data, {"delimiter", "decimal", "thousands", "quote", "encoding", "header", "missing",
                              "ignore"})
    read = ReadSpec()
    delimiter = _typed(where, "delimiter", data.get("delimiter", read.delimiter), str, "one character or "
                       "'whitespace'")
    if delimiter != "whitespace" and len(delimiter) != 1:
        raise ConfigError(f"{where}: delimiter = {delimiter!r} must be one character or 'whitespace'")
    if delimiter in ("\n", "\r"):
        raise ConfigError(f"{where}: delimiter = {delimiter!r} cannot be a line break")
    decimal = _choice(where, "decimal", data.get("decimal", read.decimal), (".", ","))
    thousands = _choice(where, "thousands", data.get("thousands", read.thousands), ("", ",", ".", " ", "'", "_"))
    if thousands == decimal:
        raise ConfigError(f"{where}: thousands = {thousands!r} is the same as the decimal mark")
    if decimal == delimiter:
        raise ConfigError(f"{where}: decimal = {decimal!r} is the same as the delimiter")
    quote = _typed(where, "quote", data.get("quote", read.quote), str, "one character or ''")
    if len(quote) > 1 or (quote and quote == delimiter):
        raise ConfigError(f"{where}: quote = {quote!r} must be one character other than the delimiter, or ''")
    encoding = _typed(where, "encoding", data.get("encoding", read.encoding), str, "a codec name or 'auto'")
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"{where}: encoding = {encoding!r} is not a codec Python knows (try utf-8, "
                              "cp1252, latin-1, or auto)") from None
    header = _typed(where, "header", data.get("header", read.header), bool, "true or false")
    missing = _strings(where, "missing", data["missing"]) if "missing" in data else read.missing
    ignore = _strings(where, "ignore", data.get("ignore", []))
    return ReadSpec(delimiter, decimal, thousands, quote, encoding, header, missing, ignore)


_COLUMN_KEYS = {"raw", "name", "type", "format", "min", "max", "out_of_range", "levels", "ordered", "unknown",
                "time", "missing", "on_missing", "impute"}
_KEYS_OF_TYPE = {
    "int": {"min", "max", "out_of_range"}, "float": {"min", "max", "out_of_range"},
    "category": {"levels", "ordered", "unknown"}, "date": {"format", "time"}, "time": {"format"}, "ignore": set(),
}
_COMMON = {"raw", "name", "type", "missing", "on_missing", "impute"}


def _level_text(value: float | int | str) -> str:
    """A level as the ingested table stores it: 1 and 1.0 are '1', 2.5 is '2.5', strings as they are."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_column(col: Any, where: str) -> ColumnSpec:
    _check_keys(where, col, _COLUMN_KEYS, {"raw", "name", "type"})
    raw = _typed(where, "raw", col["raw"], str, "a string")
    name = _typed(where, "name", col["name"], str, "a string")
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name = {name!r} must start with a letter and hold only letters, digits and _")
    kind = _choice(where, "type", col["type"], COLUMN_TYPES)
    misplaced = sorted(set(col) - _COMMON - _KEYS_OF_TYPE[kind])
    if misplaced:
        raise ConfigError(f"{where}: key(s) {', '.join(misplaced)} do not apply to a {kind} column")
    bounds = {}
    for key in ("min", "max"):
        if key in col:
            bounds[key] = float(_typed(where, key, col[key], (int, float), "a number"))
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise ConfigError(f"{where}: min = {col['min']!r} is above max = {col['max']!r}")
    out_of_range = _choice(where, "out_of_range", col.get("out_of_range", "reject"), REJECT_OR_MISSING)
    levels: tuple[str, ...] = ()
    numeric_levels = False
    if kind == "category":
        if not col.get("levels"):
            raise ConfigError(f"{where}: a category column needs levels")
        _typed(where, "levels", col["levels"], list, "a list of strings or numbers")
        for level in col["levels"]:
            _typed(where, "levels", level, (str, int, float), "a list of strings or numbers")
        kinds = {isinstance(level, str) for level in col["levels"]}
        if len(kinds) > 1:
            raise ConfigError(f"{where}: levels = {col['levels']!r} mixes strings and numbers")
        numeric_levels = kinds == {False}
        levels = tuple(_level_text(level) for level in col["levels"])
        dupes = sorted({lv for lv in levels if levels.count(lv) > 1})
        if dupes:
            raise ConfigError(f"{where}: level(s) {', '.join(map(repr, dupes))} listed twice")
    ordered = _typed(where, "ordered", col.get("ordered", False), bool, "true or false")
    unknown = _choice(where, "unknown", col.get("unknown", "reject"), REJECT_OR_MISSING)
    fmt = _typed(where, "format", col.get("format", ""), str, "a strptime format")
    if kind in ("date", "time") and not fmt:
        raise ConfigError(f"{where}: a {kind} column needs a format")
    if fmt and not re.search(r"%[dmYyHMSjbB]", fmt):
        raise ConfigError(f"{where}: format = {fmt!r} has no date or time field (%Y, %m, %d, %H, %M, %S)")
    time = _typed(where, "time", col.get("time", ""), str, "the name of a time column")
    missing = _strings(where, "missing", col["missing"]) if "missing" in col else None
    on_missing = _choice(where, "on_missing", col.get("on_missing", "reject"), ON_MISSING)
    impute = col.get("impute", "")
    if impute:
        if on_missing != "impute":
            raise ConfigError(f"{where}: impute = {impute!r} needs on_missing = \"impute\"")
        _choice(where, "impute", impute, ("mode",) if kind == "category" else IMPUTE_NUMERIC)
    if on_missing == "impute":
        if kind in ("date", "time"):
            raise ConfigError(f"{where}: on_missing = \"impute\" does not apply to a {kind} column")
        impute = impute or ("mode" if kind == "category" else "median")
    return ColumnSpec(raw=raw, name=name, type=kind, format=fmt, min=bounds.get("min"), max=bounds.get("max"),
                      out_of_range=out_of_range, levels=levels, numeric_levels=numeric_levels, ordered=ordered,
                      unknown=unknown, time=time, missing=missing, on_missing=on_missing, impute=impute)


def _check_columns(data: Any, path: str, read: ReadSpec) -> tuple[ColumnSpec, ...]:
    _typed(path, "columns", data, list, "a list of [[columns]] tables")
    if not data:
        raise ConfigError(f"{path}: [[columns]] is empty")
    columns = tuple(_check_column(col, f"{path} [[columns]] #{i + 1}") for i, col in enumerate(data))
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate column name(s) {', '.join(dupes)}")
    keys = [header_key(c.raw) for c in columns] + [header_key(r) for r in read.ignore]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"{path}: two raw headers are the same once cleaned ({', '.join(repeated)})")
    if not read.header and read.ignore:
        raise ConfigError(f"{path} [read]: ignore needs header = true; without a header, give the column a "
                          "[[columns]] entry with type = \"ignore\"")
    by_name = {c.name: c for c in columns}
    for i, col in enumerate(columns):
        where = f"{path} [[columns]] #{i + 1}"
        if col.time:
            other = by_name.get(col.time)
            if other is None or other.type != "time":
                raise ConfigError(f"{where}: time = {col.time!r} is not the name of a time column")
    times = {c.time for c in columns if c.time}
    for i, col in enumerate(columns):
        if col.type == "time" and col.name not in times:
            raise ConfigError(f"{path} [[columns]] #{i + 1}: the time column {col.name!r} is not named by any "
                              "date's time key")
    if sum(c.type == "date" for c in columns) > 1:
        raise ConfigError(f"{path}: more than one date column; keep one and ignore the others")
    return columns


def parse_spec(data: Mapping[str, Any], path: str = "<spec>", sha256: str = "") -> DatasetSpec:
    """Check a parsed spec mapping and build a DatasetSpec, naming what is wrong."""
    _check_keys(path, data, {"name", "description", "models", "source", "read", "target", "features", "columns"},
                {"name", "target", "features", "columns"})
    name = _typed(path, "name", data["name"], str, "a string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"{path}: name = {name!r} must hold only letters, digits, '.', '_' and '-'")
    src = data.get("source", {})
    _check_keys(f"{path} [source]", src, {"url", "member", "sha256"})
    sha = src.get("sha256", "")
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ConfigError(f"{path} [source]: sha256 must be 64 lowercase hex digits, got {sha!r}")
    if src.get("url") and not (src.get("member") and sha):
        raise ConfigError(f"{path} [source]: a url needs member and sha256, so the download can be checked")
    read = _check_read(data.get("read", {}), f"{path} [read]")
    columns = _check_columns(data["columns"], path, read)
    names = [c.name for c in columns]
    by_name = {c.name: c for c in columns}

    tgt = data["target"]
    _check_keys(f"{path} [target]", tgt, {"column", "transform", "label", "unit"}, {"column"})
    target = tgt["column"]
    if target not in names:
        raise ConfigError(f"{path} [target]: column {target!r} is not a column of the spec")
    if by_name[target].type not in ("int", "float"):
        raise ConfigError(f"{path} [target]: column {target!r} is a {by_name[target].type} column; the target must "
                          "be int or float")
    if by_name[target].on_missing == "impute":
        raise ConfigError(f"{path} [target]: the target {target!r} cannot be imputed; use on_missing = "
                          "\"drop_row\" or \"reject\"")
    transform = _choice(f"{path} [target]", "transform", tgt.get("transform", "none"), tuple(TRANSFORMS))
    label = _typed(f"{path} [target]", "label", tgt.get("label", target), str, "a string")
    unit = _typed(f"{path} [target]", "unit", tgt.get("unit", ""), str, "a string")

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
    kept = {c.name for c in columns if c.type not in ("ignore", "time")}
    inputs = _strings(f"{path} [features]", "inputs", feat["inputs"])
    if not inputs:
        raise ConfigError(f"{path} [features]: inputs is empty")
    for inp in inputs:
        if inp == target:
            raise ConfigError(f"{path} [features]: the target {inp!r} cannot be an input")
        if inp in by_name and by_name[inp].type == "date":
            raise ConfigError(f"{path} [features]: the date column {inp!r} cannot be an input; use date_parts")
        if inp in by_name and by_name[inp].type in ("ignore", "time"):
            raise ConfigError(f"{path} [features]: input {inp!r} is a {by_name[inp].type} column")
        if inp not in kept and inp not in date_parts:
            raise ConfigError(f"{path} [features]: input {inp!r} is neither a column nor a date part")
    if len(set(inputs)) != len(inputs):
        raise ConfigError(f"{path} [features]: an input is listed twice")
    periods = {}
    for key, value in feat.get("periods", {}).items():
        _typed(f"{path} [features]", f"periods.{key}", value, int, "a whole number")
        if value < 2:
            raise ConfigError(f"{path} [features]: periods.{key} = {value} must be at least 2")
        periods[str(key)] = int(value)

    return DatasetSpec(
        name=name, description=str(data.get("description", "")),
        source=SourceSpec(url=src.get("url", ""), member=src.get("member", ""), sha256=sha), read=read,
        target=target, transform=transform, target_label=label, target_unit=unit,
        date_parts=tuple(date_parts.items()), periods=tuple(periods.items()),
        inputs=inputs, columns=columns, path=path, sha256=sha256,
        models=_check_models(path, data["models"]) if "models" in data else (),
    )


def _check_models(path: str, value: Any) -> tuple[str, ...]:
    """The spec's `models`: known model kinds, none twice, at least one when the key is there."""
    models = _strings(path, "models", value)
    if not models:
        raise ConfigError(f"{path}: models = [] names no model; leave the key out for the default models")
    kinds = model_kinds()  # the registered ones (tabduel.settings registers every family)
    for kind in models:
        if kind not in kinds:
            raise ConfigError(f"{path}: models: {kind!r} is not a model kind; one of: {', '.join(kinds)}")
    if len(set(models)) != len(models):
        raise ConfigError(f"{path}: models: a model is named twice")
    return models
