"""Search tasks: train a group of trials (or refit a best config) and return their scores; no MLflow here."""

from __future__ import annotations

from typing import Any, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from tabduel.search.families import run_trials


@task(name="trial", task_run_name="{label}", cache_policy=NO_CACHE)
def trial_task(label: str, family: str, features_dir: str, trials: Sequence[Any],
               with_test: bool = False) -> list[dict[str, Any]]:
    """Train a group of one search family's trials (MLPs of one shape as one population, or one XGBoost); one
    score dict per trial."""
    return run_trials(family, features_dir, list(trials), with_test)
