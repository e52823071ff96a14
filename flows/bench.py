"""The bench flow: every (dataset, family, outer seed) cell searched, refitted and tested on its outer split,
cells spread over the task runner's workers; statistics, pictures and the report on the bench's MLflow run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run

from tabduel.bench import report as bench_report
from tabduel.bench.cells import CLEAN, Cell, bases_of, bench_families, bench_name, check_device, result
from tabduel.bench.suite import check_sources, dataset_config, load_suite, local_source
from tabduel.data.corruptions import CORRUPTIONS
from tabduel.data.dataset import load_spec
from tabduel.flows.pipeline import close_stale_runs
from tabduel.infra.config import IngestConfig, flatten
from tabduel.infra.errors import TabduelError
from tabduel.infra.runtime import free_cores
from tabduel.infra.store import atomic_write_bytes, atomic_write_json, read_json
from tabduel.infra.tracking import Tracker, git_commit
from tabduel.search.portfolio import read_cell
from tabduel.search.space import features_config
from tabduel.settings import Config
from tabduel.tasks.bench import cell_task, corrupt_features_task
from tabduel.tasks.features import features_task
from tabduel.tasks.ingest import ingest_task


def conditions(cfg: Config) -> list[tuple[str, float]]:
    """The clean data, then each corruption at each of its levels above 0."""
    return [(CLEAN, 0.0)] + [(c, lv) for c in cfg.bench.corrupt for lv in CORRUPTIONS[c].levels if lv > 0]


def _run(tracker: Tracker, state: dict[str, Any], key: str, name: str, parent: str | None, tags: dict[str, Any],
         state_path: Path) -> str:
    """The run recorded under key in the bench's state (reopened), else a new one, recorded at once."""
    known = state.get(key)
    if known and tracker.reopen(known):
        return known
    run_id = tracker.start_run(name, parent=parent, tags=tags)
    state[key] = run_id
    atomic_write_json(state_path, state)
    return run_id


def _log_cell(tracker: Tracker, parent: str, bench: str, r: dict[str, Any]) -> None:
    """The cell's MLflow run (a grandchild of the bench's): its best params, test scores and search curve."""
    c = r["cell"]
    run_id = tracker.start_run(f"{c['family']}-s{c['seed']}" + ("" if c["corruption"] == CLEAN else
                                                               f"-{c['corruption']}-{c['level']:g}"),
                               parent=parent, tags={"tabduel.step": "bench-cell", "tabduel.bench": bench,
                                                    "tabduel.cell": r["id"], "family": c["family"],
                                                    "dataset": c["dataset"], "outer_seed": c["seed"],
                                                    "corruption": c["corruption"], "level": c["level"],
                                                    "worker": r["worker"],
                                                    "tabduel.tested": r.get("tested", "refit")})
    tracker.log_params(run_id, {**r["best_params"], "outer_seed": c["seed"], "features": r["features_read"]})
    tracker.log_metrics(run_id, {k: r[k] for k in ("test_mse", "test_r2", "test_r2_orig", "test_rmse_orig",
                                                   "cpu_seconds", "wall_seconds", "trials", "best_valid_mse",
                                                   "tested_valid_mse", "refit_valid_mse", "budget_cpu_seconds",
                                                   "ensemble_test_mse", "ensemble_valid_mse")
                                 if r.get(k) is not None})
    values = [v for _, v in r["curve"]]
    best = [min(values[:i + 1]) for i in range(len(values))]
    tracker.log_series(run_id, {"trial_valid_mse": values, "best_so_far": best,
                                "cpu_seconds_at": [x for x, _ in r["curve"]]})
    tracker.finish(run_id)


def _logged_cells(tracker: Tracker, bench: str) -> set[str]:
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`tabduel.bench` = '{bench}' and "
                                                               "tags.`tabduel.step` = 'bench-cell'", max_results=50000)
    return {r.data.tags["tabduel.cell"] for r in runs if r.info.status == "FINISHED"}


def bench_settings(cfg: Config) -> dict[str, Any]:
    """What makes a bench's cells comparable: families, budget, outer seeds, device, corruptions, portfolio, bagging
    and the trials' batches."""
    b = cfg.bench
    return {"families": list(bench_families(cfg)), "minutes": b.minutes, "trials": b.trials,
            "outer_seeds": b.outer_seeds, "first_seed": b.first_seed, "device": b.device, "corrupt": list(b.corrupt),
            "portfolio": cfg.search.portfolio, "bagging": b.bagging, "mlp_batch": cfg.search.mlp_batch,
            "realmlp_batch": cfg.search.realmlp_batch}


# what a setting was in a bench that began before the setting was kept (its default then)
SETTINGS_BEFORE = {"bagging": 0, "mlp_batch": 1, "realmlp_batch": 1}


def check_same_bench(state: dict[str, Any], cfg: Config, name: str) -> None:
    """TabduelError in one line when a resumed bench is asked with other settings than it began with (a bench's
    --name no longer tells its budget); a state from before settings were kept is not checked."""
    before, now = state.get("settings"), bench_settings(cfg)
    if before is None:
        return
    was = {k: before.get(k, SETTINGS_BEFORE.get(k)) for k in now}
    changed = [f"{k} {was[k]!r} -> {now[k]!r}" for k in now if was[k] != now[k]]
    if changed:
        raise TabduelError(f"bench {name!r} began with other settings ({'; '.join(changed)}): resume it with its "
                           "own, or give this one another --name")


@flow(name="tabduel-bench")
def bench_flow(config: dict[str, Any], quick: bool = False, resume: bool = False, force: bool = False
               ) -> dict[str, Any]:
    """Search, refit and test every cell of the suite on its outer split; then statistics, plots and the report."""
    cfg = Config.from_dict(config)
    b = cfg.bench
    check_device(b.device, bench_families(cfg))  # before anything slow
    log = get_run_logger()
    suite = load_suite(b.suite, b.root)
    datasets = suite.pick(quick)
    check_sources(datasets)
    name = bench_name(suite.name, b)
    data_dir = Path(cfg.pipeline.data_dir).resolve()
    work = data_dir / "bench" / name
    state_path = work / "state.json"
    if state_path.is_file() and not resume:
        raise TabduelError(f"bench {name!r} already exists ({work}); --resume continues it, or remove that folder "
                           "to start again")
    if resume and not state_path.is_file():
        raise TabduelError(f"no bench {name!r} to resume ({state_path} not found); run without --resume first")
    work.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = read_json(state_path) if state_path.is_file() else {}
    check_same_bench(state, cfg, name)
    state.setdefault("settings", bench_settings(cfg))
    atomic_write_json(state_path, state)
    seeds = [b.first_seed + i for i in range(b.outer_seeds)]
    families = bench_families(cfg)
    workers = b.workers or free_cores()
    threads = b.threads or max(1, free_cores() // workers)

    tracker = Tracker.shared(cfg.tracking)
    close_stale_runs(tracker)
    parent = _run(tracker, state, "parent", name, None, {"tabduel.step": "bench", "tabduel.bench": name,
                                                          "git_commit": git_commit(), "suite": suite.name,
                                                          "prefect_flow_run_id": flow_run.id}, state_path)
    if not resume:
        tracker.log_params(parent, {**flatten({"bench": cfg.to_dict()["bench"], "search": cfg.to_dict()["search"]}),
                                    "datasets": ",".join(d.name for d in datasets), "quick": quick})
    with tracker.failing(parent, children=True):
        cells: list[tuple[Cell, dict[str, str], Config, str]] = []  # (cell, features dirs, settings, dataset run)
        for d in datasets:
            dcfg = dataset_config(cfg, d)
            spec = load_spec(d.spec)
            raw = ingest_task(dcfg.pipeline, IngestConfig(source=local_source(d, data_dir), dataset=d.spec), force)
            run = _run(tracker, state, f"dataset:{d.name}", d.name, parent,
                       {"tabduel.step": "bench-dataset", "tabduel.bench": name, "dataset": d.name}, state_path)
            bases = sorted({base for f in families for base in bases_of(f)})
            for seed in seeds:
                for corruption, level in conditions(cfg):
                    features = {}
                    for base in bases:
                        fc = features_config(base, spec, dcfg.features, seed)
                        task = (features_task(raw, dcfg.pipeline, fc, force) if corruption == CLEAN else
                                corrupt_features_task(raw, dcfg.pipeline, fc, corruption, level))
                        features[base] = task.path
                    cells += [(Cell(d.name, f, seed, corruption, level), features, dcfg, run) for f in families]
        logged = _logged_cells(tracker, name)
        out_of = {cell.id: work / "cells" / f"{cell.id}.json" for cell, *_ in cells}
        results: dict[str, dict[str, Any]] = {}
        pending = {}
        for cell, features, dcfg, run in cells:
            path = out_of[cell.id]
            if path.is_file():
                results[cell.id] = read_cell(path)
                if cell.id not in logged:  # a kill between the result and its run
                    _log_cell(tracker, run, name, results[cell.id])
                continue
            journal = work / "journals" / f"{cell.id}.log"
            future = cell_task.with_options(task_run_name=cell.id).submit(
                cell.id, cell, features, dcfg.to_dict(), str(journal), str(path), threads, str(work / "inputs"))
            pending[future] = (cell, run)
        log.info(f"bench {name}: {len(cells)} cells ({len(datasets)} datasets x {len(families)} families x "
                 f"{len(seeds)} outer seeds x {len(conditions(cfg))} conditions); {len(results)} done before, "
                 f"{len(pending)} to run, {workers} at a time, {threads} thread(s) each")
        for future in as_completed(list(pending)):
            cell, run = pending[future]
            r = read_cell(future.result())
            results[cell.id] = r
            _log_cell(tracker, run, name, r)
            log.info(f"{cell.id}: test MSE {r['test_mse']:.5f} after {r['trials']} trials, "
                     f"{r['cpu_seconds']:.1f} CPU-s ({len(results)}/{len(cells)})")
        ordered = [results[c.id] for c, *_ in cells]
        doc = {"name": name, **result(suite.name, b, seeds, ordered, families),
               "quick": quick, "suite_file": suite.path, "workers": workers, "threads_per_cell": threads,
               "runner": b.runner, "bagging": b.bagging}
        out = Path(b.out).resolve()
        pictures = bench_report.draw(doc, ordered, out / name)
        report = bench_report.markdown(doc, pictures, name)
        atomic_write_bytes(out / f"{name}.md", report.encode())
        atomic_write_json(out / f"{name}.json", doc)
        for p in [out / f"{name}.json", out / f"{name}.md", *pictures]:
            tracker.log_artifact(parent, p)
        agg = doc["aggregate"]
        metrics = {f"mean_rank_{f}": v for f, v in agg.get("mean_rank", {}).items()}
        metrics.update({f"wins_{f}": v for f, v in agg.get("wins", {}).items()})
        if agg.get("friedman_p") is not None and math.isfinite(agg["friedman_p"]):
            metrics["friedman_p"] = agg["friedman_p"]
        metrics["cpu_seconds_total"] = doc["cpu_seconds_total"]
        tracker.log_metrics(parent, metrics)
        for d in datasets:
            run = state[f"dataset:{d.name}"]
            fams = doc["datasets"].get(d.name, {})
            metrics = {f"{f}_test_mse_mean": fams[f]["test_mse_mean"] for f in families if f in fams}
            metrics.update({f"{f}_ensemble_test_mse_mean": fams[f]["ensemble_test_mse_mean"] for f in families
                            if f in fams and math.isfinite(fams[f].get("ensemble_test_mse_mean", math.nan))})
            tracker.log_metrics(run, metrics)
            tracker.finish(run)
        tracker.finish(parent)
    return {"bench": name, "result": str(out / f"{name}.json"), "report": str(out / f"{name}.md"),
            "tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent,
            "work": str(work), "doc": doc}
