"""The search flow: tune MLP and XGBoost with one budget, then refit the best of each on several split seeds."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run

from tabduel.config import Config, SearchConfig, flatten, load_config
from tabduel.dataset import load_spec
from tabduel.errors import TabduelError
from tabduel.flows.pipeline import close_stale_runs
from tabduel.labels import scale_label
from tabduel.search_report import final_comparison, refit_plan, write_evidence
from tabduel.search_space import (
    BASES,
    features_config,
    group_key,
    suggest_mlp,
    suggest_xgboost,
    trial_threads,
    workers_of,
)
from tabduel.store import StepResult
from tabduel.study import (
    ELAPSED,
    PARENT_RUN,
    SPENT,
    Budget,
    completed,
    counted_trials,
    open_storage,
    open_study,
    storage_url,
    study_dir,
    study_name,
)
from tabduel.tasks.features import features_task
from tabduel.tasks.ingest import ingest_task
from tabduel.tasks.search import trial_task
from tabduel.tracking import Tracker, git_commit

SUGGEST: dict[str, Callable[..., Any]] = {"mlp": suggest_mlp, "xgboost": suggest_xgboost}
MAX_FAILURES_IN_ROW = 5


def search_dir(cfg: Config) -> Path:
    """<data_dir>/search/<study>/: the journal, leaderboard, plots and final comparison of a search."""
    return Path(cfg.pipeline.data_dir).resolve() / "search" / study_dir(cfg.search)


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
    """The search's MLflow run: the one recorded in the studies when resuming, else a new one."""
    known = {st.user_attrs.get(PARENT_RUN) for st in studies.values()} - {None}
    if resuming and len(known) == 1 and tracker.reopen(next(iter(known))):
        return next(iter(known))
    parent = tracker.start_run("search", tags={"tabduel.step": "search", "git_commit": git_commit(),
                                               "prefect_flow_run_id": flow_run.id, "optuna.study": cfg.search.study})
    tracker.log_params(parent, flatten({k: v for k, v in cfg.to_dict().items()
                                        if k in ("search", "features", "ingest", "tracking")}))
    for st in studies.values():
        st.set_user_attr(PARENT_RUN, parent)
    return parent


def search_family(family: str, study: Any, budget: Budget, cfg: Config, features: dict[str, str], workers: int,
                  tracker: Tracker, parent: str) -> None:
    """Ask, train and tell trials of one family until its budget is spent, `workers` trials at a time."""
    log = get_run_logger()
    s = cfg.search
    threads = trial_threads(s, workers)
    suggest = SUGGEST[family]
    start = time.perf_counter()
    started = counted_trials(study)
    pending: dict[Any, list[Any]] = {}
    failures_in_row = 0
    best = min((t.value for t in completed(study)), default=math.inf)
    log.info(f"{family}: budget {_budget_text(budget)}; {started} trials done before; {workers} at a time, "
             f"{threads} thread(s) each")
    while True:
        asked: list[tuple[Any, Any]] = []
        while len(pending) + len(asked) < workers and budget.allows(started, time.perf_counter() - start):
            trial = study.ask()
            asked.append((trial, suggest(trial, s, threads)))
            started += 1
        for group in _groups(family, asked):
            trials = [t for t, _ in group]
            specs = [spec for _, spec in group]
            base = specs[0].encoding.base if family == "mlp" else "ordinal"
            label = f"{family}-" + "+".join(str(t.number) for t in trials)
            future = trial_task.with_options(task_run_name=label).submit(label, features[base], specs)
            pending[future] = trials
        if not pending:
            break
        done = next(iter(as_completed(list(pending))))
        trials = pending.pop(done)
        elapsed = budget.spent + time.perf_counter() - start
        try:
            results = done.result()
        except Exception as exc:  # one failing trial does not end the search; many in a row do
            failures_in_row += 1
            for t in trials:
                study.tell(t, state=_fail_state())
                tracker.record_run(f"{family}-{t.number:03d}", parent,
                                   {"tabduel.step": "search-trial", "family": family, "model": family,
                                    "optuna.study": study.study_name, "optuna.trial": t.number,
                                    "error": str(exc)[:5000]}, t.params, {}, "FAILED")
            log.warning(f"{family}: trial(s) {[t.number for t in trials]} failed: {exc}")
            if failures_in_row >= MAX_FAILURES_IN_ROW:
                raise TabduelError(f"{family}: {failures_in_row} trials in a row failed; the last: {exc}") from exc
            continue
        failures_in_row = 0
        for t, result in zip(trials, results):
            best = _tell(family, study, t, result, elapsed, best, tracker, parent, log)
        study.set_user_attr(SPENT, elapsed)
    study.set_user_attr(SPENT, budget.spent + time.perf_counter() - start)


def _fail_state() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


def _groups(family: str, asked: list[tuple[Any, Any]]) -> list[list[tuple[Any, Any]]]:
    """MLP trials of one encoding and shape go together (one population); every XGBoost trial alone."""
    if family != "mlp":
        return [[a] for a in asked]
    groups: dict[Any, list[tuple[Any, Any]]] = defaultdict(list)
    for trial, spec in asked:
        groups[group_key(spec)].append((trial, spec))
    return list(groups.values())


def _tell(family: str, study: Any, trial: Any, result: dict[str, Any], elapsed: float, best: float,
          tracker: Tracker, parent: str, log: Any) -> float:
    """Record one finished trial in the study and as an MLflow child run; return the best value so far."""
    value = result["valid_mse"]
    ok = math.isfinite(value)
    attrs = {"seconds": result["seconds"], ELAPSED: elapsed, "device": result["device"], "worker": result["worker"]}
    if family == "mlp":
        attrs.update(population_trials=result["group_trials"], population_members=result["group_members"],
                     time_limited=result["time_limited"], epochs_run=max(result["epochs_run"]),
                     member_valid_mse=result["member_valid_mse"])
    else:
        attrs.update(best_iteration=result["best_iteration"])
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    if ok:
        study.tell(trial, value)
        best = min(best, value)
    else:
        study.tell(trial, state=_fail_state())
    metrics = {"valid_mse": value, "seconds": result["seconds"], "elapsed_seconds": elapsed, "best_so_far": best}
    if family == "mlp":
        metrics.update(epochs_run=max(result["epochs_run"]), population_members=result["group_members"])
    else:
        metrics["best_iteration"] = result["best_iteration"]
    tags = {"tabduel.step": "search-trial", "family": family, "model": family, "optuna.study": study.study_name,
            "optuna.trial": trial.number, "device": result["device"], "worker": result["worker"],
            "error": result.get("error", "")[:5000]}
    tracker.record_run(f"{family}-{trial.number:03d}", parent, tags, trial.params, metrics,
                       "FINISHED" if ok else "FAILED")
    shown = f"{value:.5f}" if ok else "diverged (not finite)"
    extra = f", population of {result['group_members']}" if family == "mlp" and result["group_members"] > 1 else ""
    log.info(f"{family} trial {trial.number}: valid MSE {shown} in {result['seconds']:.1f}s{extra}; best {best:.5f}; "
             f"{elapsed / 60:.1f} min")
    return best


def _backfill(family: str, study: Any, tracker: Tracker, parent: str) -> None:
    """Record in MLflow the complete trials that have no run there: a search killed between telling Optuna and
    logging the run leaves one behind."""
    done = completed(study)
    if not done:  # a fresh study: nothing to look up
        return
    logged = {r.data.tags.get("optuna.trial") for r in tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`optuna.study` = '{study.study_name}' and tags.`mlflow.parentRunId` = "
                                 f"'{parent}'", max_results=50000)}
    for t in done:
        if str(t.number) in logged:
            continue
        tags = {"tabduel.step": "search-trial", "family": family, "model": family, "optuna.study": study.study_name,
                "optuna.trial": t.number, "tabduel.backfilled": "true"}
        metrics = {"valid_mse": t.value, "seconds": t.user_attrs.get("seconds", math.nan),
                   "elapsed_seconds": t.user_attrs.get(ELAPSED, math.nan)}
        tracker.record_run(f"{family}-{t.number:03d}", parent, tags, t.params, metrics)


def _budget_text(b: Budget) -> str:
    parts = [] if math.isinf(b.trials) else [f"{int(b.trials)} trials"]
    if not math.isinf(b.seconds):
        parts.append(f"{b.seconds / 60:.1f} min")
    return " and ".join(parts) + (f" ({b.spent / 60:.1f} min spent before)" if b.spent else "")


def refit(plan: list[dict[str, Any]], features_of: Callable[[str, int], str]) -> list[dict[str, Any]]:
    """Run the planned refits as trial tasks through the flow's task runner; one row of scores each."""
    futures = []
    for item in plan:
        features = features_of(item["base"], item["seed"])
        futures.append((item, trial_task.with_options(task_run_name=item["label"]).submit(
            item["label"], features, [item["spec"]], True)))
    rows = []
    for item, future in futures:
        result = future.result()[0]
        rows.append({k: item[k] for k in ("label", "family", "seed", "trial")}
                    | {k: result[k] for k in ("valid_mse", "test_mse", "seconds")})
    return rows


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
    bases = set(BASES) if "mlp" in s.families else {"ordinal"}
    features = {base: _features(raw, cfg, base, force=force) for base in sorted(bases | {"ordinal"})}
    tracker = Tracker.shared(cfg.tracking)
    close_stale_runs(tracker)
    parent = _parent(tracker, cfg, studies, resume or bool(more_trials))
    for family, study in studies.items():
        _backfill(family, study, tracker, parent)
    workers = workers_of(s)
    with tracker.failing(parent):
        for family in s.families:
            search_family(family, studies[family], budgets[family], cfg, features, workers, tracker, parent)
        out = search_dir(cfg)
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
