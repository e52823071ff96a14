"""The search flow: tune MLP and XGBoost with one budget, then refit the best of each on several split seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run

from tabduel.data.dataset import load_spec
from tabduel.data.labels import scale_label
from tabduel.flows.pipeline import close_stale_runs
from tabduel.infra.config import SearchConfig, flatten
from tabduel.infra.errors import TabduelError
from tabduel.infra.store import StepResult
from tabduel.infra.tracking import Tracker, git_commit
from tabduel.search.families import bases_of
from tabduel.search.loop import backfill, mlflow_recorder, run_family, search_parent
from tabduel.search.pruning import pruning_of
from tabduel.search.report import final_comparison, refit_plan, refit_row, write_evidence
from tabduel.search.space import features_config, trial_threads, workers_of
from tabduel.search.study import Budget, open_storage, open_study, search_dir, storage_url, study_name
from tabduel.settings import Config, load_config
from tabduel.tasks.features import features_task
from tabduel.tasks.ingest import ingest_task
from tabduel.tasks.search import trial_task


def task_runner(s: SearchConfig, workers: int) -> Any:
    """The Prefect task runner that runs the trials: a process or thread pool of `workers`, or a Dask cluster."""
    if s.runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise TabduelError("--runner dask needs prefect-dask: pip install 'tabduel[dask]'") from None
        return DaskTaskRunner(address=s.address)
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    return (ProcessPoolTaskRunner if s.runner == "process" else ThreadPoolTaskRunner)(max_workers=workers)


def _features(raw: StepResult, cfg: Config, base: str, split_seed: int | None = None, force: bool = False) -> str:
    spec = load_spec(Path(raw.path) / "dataset.toml")
    fc = features_config(base, spec, cfg.features, split_seed)
    return features_task.with_options(task_run_name=f"features-{base}-{fc.split_seed}")(
        raw, cfg.pipeline, fc, force).path


def _parent(tracker: Tracker, cfg: Config, studies: dict[str, Any], resuming: bool) -> str:
    """The search's MLflow run, reopened when resuming, else new with this flow run's tags and the settings."""
    tags = {"tabduel.step": "search", "git_commit": git_commit(), "prefect_flow_run_id": flow_run.id,
            "optuna.study": cfg.search.study}
    params = flatten({k: v for k, v in cfg.to_dict().items() if k in ("search", "features", "ingest", "tracking")})
    return search_parent(tracker, studies, resuming, tags, params)


def tune_family(family: str, study: Any, budget: Budget, cfg: Config, features: dict[str, str], workers: int,
                  tracker: Tracker, parent: str) -> None:
    """Ask, train and tell trials of one family until its budget is spent, `workers` trials at a time."""
    def submit(label: str, base: str, specs: list[Any]) -> Any:
        return trial_task.with_options(task_run_name=label).submit(label, family, features[base], specs)

    pruning = pruning_of(cfg.search, storage_url(cfg.search, cfg.pipeline.data_dir), study.study_name)
    run_family(family, study, budget, cfg.search, workers, trial_threads(cfg.search, workers), submit,
               lambda pending: next(iter(as_completed(pending))), mlflow_recorder(tracker, parent, study.study_name),
               get_run_logger(), pruning=pruning)


def refit(plan: list[dict[str, Any]], features_of: Callable[[str, int], str]) -> list[dict[str, Any]]:
    """Run the planned refits as trial tasks through the flow's task runner; one row of scores each."""
    futures = []
    for item in plan:
        features = features_of(item["base"], item["seed"])
        futures.append((item, trial_task.with_options(task_run_name=item["label"]).submit(
            item["label"], item["family"], features, [item["spec"]], True)))
    return [refit_row(item, future.result()[0]) for item, future in futures]


@flow(name="tabduel-search")
def search_flow(config: dict[str, Any], resume: bool = False, more_trials: int = 0,
                force: bool = False) -> dict[str, Any]:
    """Tune each family with the same budget on train/valid; then refit each best on several split seeds.

    force recomputes the ingest and features outputs the search reads (trials are never cached: the study is).
    """
    cfg = load_config(config)
    s = cfg.search
    log = get_run_logger()
    storage = open_storage(storage_url(s, cfg.pipeline.data_dir))
    studies, budgets = {}, {}
    for family in s.families:  # refuse a clash of names before any work
        studies[family], budgets[family] = open_study(s, family, storage, resume, more_trials)
    raw = ingest_task(cfg.pipeline, cfg.ingest, force)
    features = {base: _features(raw, cfg, base, force=force) for base in bases_of(s.families)}
    tracker = Tracker.shared(cfg.tracking)
    close_stale_runs(tracker)
    parent = _parent(tracker, cfg, studies, resume or bool(more_trials))
    for family, study in studies.items():
        backfill(family, study, tracker, parent)
    workers = workers_of(s)
    with tracker.failing(parent):
        for family in s.families:
            tune_family(family, studies[family], budgets[family], cfg, features, workers, tracker, parent)
        out = search_dir(s, cfg.pipeline.data_dir)
        spec = load_spec(Path(raw.path) / "dataset.toml")
        scale = scale_label(spec.target_title, spec.transform)  # no fitted params: they differ per split seed
        evidence = write_evidence(studies, out, tracker, parent, scale)
        seeds = [cfg.features.split_seed + i for i in range(s.refit_seeds)]  # the search's own split first
        rows = refit(refit_plan(cfg, studies, seeds, log), lambda base, seed: _features(raw, cfg, base, seed))
        final = final_comparison(rows, seeds, out, tracker, parent, log, scale)
        tracker.finish(parent)
    return {"study": s.study, "storage": storage_url(s, cfg.pipeline.data_dir), "dir": str(out),
            "studies": {f: study_name(s, f) for f in s.families}, "tracking_uri": tracker.uri,
            "experiment_id": tracker.experiment_id, "parent_run_id": parent, **evidence, **final}
