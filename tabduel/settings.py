"""The settings as the entry points (the CLI, the flows) load them: Config, with what it leaves empty filled in from
the dataset spec.

It stands above tabduel.infra.config (the settings' types) and tabduel.data.dataset (the spec that fills them in),
so neither imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tabduel.data.dataset import load_spec
from tabduel.infra.config import DEFAULT_MODELS, Config


def dataset_name(cfg: Config) -> str:
    """The name of the dataset spec that cfg.ingest.dataset names (the built-in one when empty)."""
    return load_spec(cfg.ingest.dataset).name


def with_dataset_defaults(cfg: Config) -> Config:
    """cfg with what it leaves empty filled in from the dataset spec (loads it): the MLflow experiment and search
    study get the spec's name; pipeline.models the spec's `models`, else DEFAULT_MODELS."""
    if cfg.tracking.experiment and cfg.search.study and cfg.pipeline.models:
        return cfg
    spec = load_spec(cfg.ingest.dataset)
    return dataclasses.replace(
        cfg, tracking=dataclasses.replace(cfg.tracking, experiment=cfg.tracking.experiment or spec.name),
        search=dataclasses.replace(cfg.search, study=cfg.search.study or spec.name),
        pipeline=dataclasses.replace(cfg.pipeline, models=cfg.pipeline.models or spec.models or DEFAULT_MODELS))


def load_config(data: Mapping[str, Any]) -> Config:
    """Config.from_dict, then the experiment, study and models filled in from the dataset spec."""
    return with_dataset_defaults(Config.from_dict(data))
