"""The machinery of frozen, typed settings: fields with help, choices and bounds; building a section from TOML or
flags (names, types, choices checked), its bounds checked once; merging, flattening, the base of model sections.

The sections themselves are in tabduel/infra/config.py (the steps) and tabduel/infra/model_sections.py (the model
families tabduel trains itself).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import field
from typing import Any, Callable, ClassVar, Mapping

from tabduel.infra.errors import ConfigError

BOUNDS = ("gt", "ge", "lt", "le")  # the bounds a field may declare: >, >=, <, <=


def _opt(default: Any, help: str, choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None, *,
         gt: float | None = None, ge: float | None = None, lt: float | None = None, le: float | None = None,
         note: str = "") -> Any:
    """A dataclass field with help text, allowed values (a tuple, or a function giving them when asked) and bounds
    (gt, ge, lt, le; note: what the error adds), for --help and for check_bounds."""
    meta = {"help": help, "choices": choices, "gt": gt, "ge": ge, "lt": lt, "le": le, "note": note}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def choices_of(f: dataclasses.Field) -> tuple[str, ...]:
    """The allowed values of a field ((): any)."""
    choices = f.metadata.get("choices")
    return tuple(choices() if callable(choices) else choices or ())


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    """Raise ConfigError naming the setting unless ok."""
    if not ok:
        raise ConfigError(f"{name} = {value!r}: {why}")


def bound_message(meta: Mapping[str, Any]) -> str:
    """What a field's bounds require, in words: "must be positive", "must be in [0, 1)", "must be at least 2"..."""
    gt, ge, lt, le = (meta.get(b) for b in BOUNDS)
    low, high = (gt if gt is not None else ge), (lt if lt is not None else le)
    if low is not None and high is not None:
        if ge is not None and lt is not None:
            why = f"must be in [{low}, {high})"
        elif gt is not None and le is not None:
            why = f"must be in ({low}, {high}]"
        else:
            why = f"must be between {low} and {high}"
    elif low is not None:
        why = ("must be positive" if gt == 0 else "must not be negative" if ge == 0
               else f"must be above {gt}" if gt is not None else f"must be at least {ge}")
    else:
        why = f"must be below {lt}" if lt is not None else f"must be at most {le}"
    return why + (f" ({meta['note']})" if meta.get("note") else "")


def within_bounds(value: Any, meta: Mapping[str, Any]) -> bool:
    """True when value meets every bound in meta."""
    gt, ge, lt, le = (meta.get(b) for b in BOUNDS)
    return ((gt is None or value > gt) and (ge is None or value >= ge) and (lt is None or value < lt)
            and (le is None or value <= le))


def check_bounds(obj: Any, section: str) -> None:
    """Raise ConfigError "{section}.{name} = {value!r}: must be ..." for the first field of obj out of its bounds."""
    for f in dataclasses.fields(obj):
        if any(f.metadata.get(b) is not None for b in BOUNDS):
            value = getattr(obj, f.name)
            _check(within_bounds(value, f.metadata), f"{section}.{f.name}", value, bound_message(f.metadata))


def check_choices(obj: Any, section: str) -> None:
    """Raise ConfigError "{section}.{name} = {value!r} is not one of: ..." for the first field of obj whose value (or
    one of whose values) is not among its declared choices."""
    for f in dataclasses.fields(obj):
        choices = choices_of(f)
        if choices:
            value = getattr(obj, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                check_choice(f"{section}.{f.name}", v, choices)


class ModelSettings:
    """Base of a model family's settings: `class XConfig(ModelSettings, section="x")` makes [x] a model section
    (`search="x"`: the search family that tunes it, a choice of --families).

    tabduel.settings.Config has a field of that name and type; tabduel.models.registry has the family of that kind.
    """

    sections: ClassVar[dict[str, type[ModelSettings]]] = {}

    def __init_subclass__(cls, section: str = "", search: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not section:
            raise TypeError(f"{cls.__name__}: name its section: class {cls.__name__}(ModelSettings, section=...)")
        ModelSettings.sections[section] = cls
        cls.section = section
        cls.search_family = search

    section: ClassVar[str] = ""  # its [section] and kind
    search_family: ClassVar[str] = ""  # the search family that tunes it ("": none)

    def __post_init__(self) -> None:
        check_bounds(self, self.section)
        check_choices(self, self.section)
        self.check()

    def check(self) -> None:
        """What its bounds cannot say (patterns, fields that depend on each other); raise ConfigError."""


def model_kinds() -> tuple[str, ...]:
    """The model sections registered so far, in the order they were declared: the kinds --models takes."""
    return tuple(ModelSettings.sections)


# Search families that tune no model section of their own but several at once (tabduel/search/union.py)
UNION_FAMILIES = ("mlp_portfolio",)


def search_families() -> tuple[str, ...]:
    """The search families of the model sections registered so far, then the union families: the names --families
    takes."""
    return tuple(cls.search_family for cls in ModelSettings.sections.values() if cls.search_family) + UNION_FAMILIES


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless value is one of choices."""
    if value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of: {', '.join(choices)}")


def to_plain(obj: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, recursively."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'mlp': {'lr': 1}} -> {'mlp.lr': 1}; lists become comma-separated strings."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def build(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass cls from data, checking names, types and choices."""
    return cls(**typed(cls, data, where))


def typed(cls: type, data: Mapping[str, Any] | None, where: str, construct: bool = True) -> dict[str, Any]:
    """data's values as cls's field types, names and choices checked; sub-sections built (construct) or only
    checked, recursively."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(unknown_message(where, unknown, list(fields)))
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{where}{name}' must be a section (table), got {value!r}")
            sub = typed(typ, value, f"{where}{name}.", construct)
            kwargs[name] = typ(**sub) if construct else sub
        else:
            kwargs[name] = coerce(value, typ, f"{where}{name}")
            choices = choices_of(fields[name])
            if choices:
                values = kwargs[name] if isinstance(kwargs[name], tuple) else (kwargs[name],)
                for v in values:
                    check_choice(f"{where}{name}", v, choices)
    return kwargs


def unknown_message(where: str, unknown: list[str], known: list[str]) -> str:
    """'unknown section [x]' at the top level, else "unknown setting 'mlp.x' in [mlp]", each with its closest
    known name, and the names allowed there."""
    def named(key: str) -> str:
        close = difflib.get_close_matches(key, known, n=1)
        shown = f"[{key}]" if not where else f"'{where}{key}'"
        return shown + (f" (did you mean {close[0]!r}?)" if close else "")

    names = ", ".join(named(k) for k in unknown)
    if not where:
        return f"unknown section {names}; the sections are: {', '.join(known)}"
    section = where.rstrip(".")
    return f"unknown setting {names} in [{section}]; allowed in [{section}]: {', '.join(known)}"


def coerce(value: Any, typ: Any, name: str) -> Any:
    """Convert a TOML or command-line value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' must be a list, got {value!r}")
        return tuple(coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"'{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{name}' must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"'{name}' must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{name}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{name}' must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{name}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {typ!r} for {name}")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively overlay override on base (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
