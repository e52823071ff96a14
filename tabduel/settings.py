"""The settings as the entry points (the CLI, the flows) load them: Config, one section per step and per registered
model family, with what it leaves empty filled in from the dataset spec.

Config is built here, from the step sections (tabduel/infra/config.py) and the model families of the registry
(tabduel/models/registry.py: a family's settings section becomes Config's field of its kind, `cfg.xgboost`); so are
the kinds --models takes (MODEL_KINDS) and the search families --families takes (SEARCH_FAMILIES). It stands above
tabduel.infra.config (the settings' types), tabduel.data.dataset (the spec that fills them in) and the registry, so
none of those imports another's way up.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

from tabduel.infra.config import (
    BenchConfig,
    EvaluateConfig,
    FeaturesConfig,
    IngestConfig,
    ModelConfig,
    PipelineConfig,
    SearchConfig,
    TrackingConfig,
    default_models,
)
from tabduel.infra.errors import ConfigError
from tabduel.infra.settings import build, check_choice, search_families, to_plain, typed
from tabduel.models.registry import FAMILIES

# The step sections before and after the model sections, in Config's order.
BEFORE = (("pipeline", PipelineConfig), ("tracking", TrackingConfig), ("ingest", IngestConfig),
          ("features", FeaturesConfig))
AFTER = (("evaluate", EvaluateConfig), ("search", SearchConfig), ("bench", BenchConfig))
MODEL_KINDS = tuple(f.kind for f in FAMILIES)  # the kinds --models takes, in registry order
SEARCH_FAMILIES = search_families()  # the search families --families takes, in registry order


class _Settings:
    """What Config does besides holding its sections."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build a Config from nested mappings, rejecting unknown keys by name."""
        return build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples as lists), the inverse of from_dict."""
        return to_plain(self)

    def model(self, kind: str) -> ModelConfig:
        """The settings section of one model kind."""
        check_choice("model", kind, MODEL_KINDS)
        return getattr(self, kind)


Config = dataclasses.make_dataclass(
    "Config", [(name, typ, dataclasses.field(default_factory=typ))
               for name, typ in (*BEFORE, *((f.kind, f.config) for f in FAMILIES), *AFTER)],
    bases=(_Settings,), frozen=True)
Config.__module__ = __name__
Config.__doc__ = "All settings of a pipeline run, one section per step and per model family."


def check_settings_file(data: Mapping[str, Any], path: str | Path) -> None:
    """Raise ConfigError naming the settings file for an unknown section or setting, or a value of the wrong type
    or choice, in its data (ranges are checked once flags are merged in)."""
    try:
        typed(Config, data, "", construct=False)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML settings file, naming the file (and position) of a syntax error, an unknown name or a bad type."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    check_settings_file(data, path)
    return data


def section_fields(section: str) -> list[dataclasses.Field]:
    """The fields of one top-level section of Config."""
    return list(dataclasses.fields(typing.get_type_hints(Config)[section]))


def field_type(section: str, name: str) -> Any:
    """The annotated type of one setting."""
    return typing.get_type_hints(typing.get_type_hints(Config)[section])[name]


def dataset_name(cfg: Config) -> str:
    """The name of the dataset spec that cfg.ingest.dataset names (the built-in one when empty)."""
    from tabduel.data.dataset import load_spec  # here: `tabduel --help` reads this module, and the spec needs numpy

    return load_spec(cfg.ingest.dataset).name


def with_dataset_defaults(cfg: Config) -> Config:
    """cfg with what it leaves empty filled in from the dataset spec (loads it): the MLflow experiment and search
    study get the spec's name; pipeline.models the spec's `models`, else default_models()."""
    if cfg.tracking.experiment and cfg.search.study and cfg.pipeline.models:
        return cfg
    from tabduel.data.dataset import load_spec

    spec = load_spec(cfg.ingest.dataset)
    models = cfg.pipeline.models or spec.models or default_models()
    return dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, experiment=cfg.tracking.experiment or spec.name),
        search=dataclasses.replace(cfg.search, study=cfg.search.study or spec.name),
        pipeline=dataclasses.replace(cfg.pipeline, models=models))


def load_config(data: Mapping[str, Any]) -> Config:
    """Config.from_dict, then the experiment, study and models filled in from the dataset spec."""
    return with_dataset_defaults(Config.from_dict(data))
