"""Search tasks: train a group of trials (or refit a best config) and return their scores; no MLflow here."""

from __future__ import annotations

from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from tabduel.infra.config import XGBoostConfig
from tabduel.search.space import MLPTrial
from tabduel.search.trials import run_mlp, run_xgboost


@task(name="trial", task_run_name="{label}", cache_policy=NO_CACHE)
def trial_task(label: str, features_dir: str, trials: Sequence[MLPTrial | XGBoostConfig],
               with_test: bool = False) -> list[dict[str, Any]]:
    """Train MLP trials of one shape as one population, or one XGBoost trial; one score dict per trial."""
    if isinstance(trials[0], XGBoostConfig):
        return [run_xgboost(features_dir, cfg, with_test) for cfg in trials]
    return run_mlp(features_dir, list(trials), with_test)
