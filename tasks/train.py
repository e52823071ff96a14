"""Training tasks: fit (or reuse) one model, save it, and record it in its own MLflow run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run

from tabduel.data.dataset import load_spec
from tabduel.data.labels import scale_label
from tabduel.infra.config import ModelConfig, PipelineConfig, TrackingConfig
from tabduel.infra.runtime import core_share
from tabduel.infra.stop import check_stop, stop_on_signals
from tabduel.infra.store import (
    StepResult,
    atomic_write_json,
    code_fingerprint,
    materialize,
    publish,
    read_json,
    sha256_tree,
    step_key,
)
from tabduel.infra.tracking import Tracker, git_commit
from tabduel.models.registry import family
from tabduel.models.training import (
    fit,
    lane_cores,
    load_data,
    progress_logger,
    settings_in_effect,
    time_limit_message,
    training_lanes,
    with_time_limit,
)
from tabduel.reporting import log_model_run
from tabduel.settings import Config


def run_tags(kind: str, step: str) -> dict[str, str]:
    """Tags of a model run: the model kind, the step, the git commit and the Prefect flow run."""
    return {"model": kind, "tabduel.step": step, "git_commit": git_commit(), "prefect_flow_run_id": flow_run.id}


def model_key(kind: str, features: StepResult, cfg: ModelConfig) -> str:
    """Cache key of a model: the features' bytes, the settings in effect and the training code."""
    fam = family(kind)
    fam.require()  # a family of an extra that is not installed: one line, before its packages' versions are read
    return step_key(f"train-{kind}", {"features": sha256_tree(features.path)}, settings_in_effect(kind, cfg),
                    code_fingerprint([*fam.code_modules, "tabduel.data.features", __name__], fam.packages))


def target_title(manifest: dict[str, Any]) -> str:
    """The target's label and unit from the dataset spec the features were made from."""
    return load_spec(Path(manifest["ingest_dir"]) / "dataset.toml").target_title


@task(name="train", task_run_name="train-{kind}", cache_policy=NO_CACHE)
def train_task(kind: str, features: StepResult, cfg: ModelConfig, pipeline: PipelineConfig,
               tracking: TrackingConfig, parent_run_id: str | None = None, force: bool = False,
               cores: int = 0) -> StepResult:
    """Fit or reuse <data_dir>/models/<kind>/<key>/ and log it to a new MLflow run (child of parent); with cores > 0,
    its thread settings take at most that many cores (models training side by side share the machine)."""
    log = get_run_logger()
    check_stop(f"train-{kind}")  # a lane's next fit does not start after Ctrl-C
    cfg = with_time_limit(cfg, pipeline.time_limit)
    key = model_key(kind, features, cfg)
    tracker = Tracker.shared(tracking)
    run_id = tracker.start_run(kind, parent=parent_run_id, tags=run_tags(kind, "train"))
    with tracker.failing(run_id):
        def build(tmp: Path) -> dict:
            data, manifest = load_data(features.path, kind)
            with progress_logger(kind, cfg, log, sys.stderr) as progress, core_share(cores):
                result = fit(kind, data, cfg, progress)
            if message := time_limit_message(kind, cfg, result.info):
                log.warning(message)
            family(kind).save(result, tmp)
            atomic_write_json(tmp / "history.json", result.history)
            meta = {"kind": kind, "key": key, "config": settings_in_effect(kind, cfg), "features_dir": features.path,
                    "features_key": features.key, "features_config": manifest["config"],
                    "feature_names": list(data.features), "source_sha256": manifest["source_sha256"],
                    "info": result.info, "run_id": run_id}
            atomic_write_json(tmp / "meta.json", meta)
            log.info(f"{kind}: trained in {result.info['train_seconds']:.2f}s")
            if getattr(result, "members", None):  # a population: members.csv is saved with the model; plot it
                from tabduel.infra.plots import population_members

                info = result.info
                population_members(result.members, info["ensemble_valid_mse"], tmp / "members.png", 110,
                                   scale_label(target_title(manifest), manifest.get("target_transform", "none"),
                                               manifest.get("target_params")))
                if info["members_diverged"]:
                    log.warning(f"{kind}: {info['members_diverged']} of {info['population']} population members "
                                "diverged (their loss became NaN or infinite) and are left out of the ensemble; a "
                                "lower --mlp-lr avoids that")
                log.info(f"{kind}: population of {info['population']}: ensemble valid MSE "
                         f"{info['ensemble_valid_mse']:.5f}; members {info['members_valid_mse_mean']:.5f} "
                         f"+- {info['members_valid_mse_sd']:.5f} (best {info['members_valid_mse_min']:.5f})")
            return {"run_id": run_id}

        path, reused = materialize(pipeline.data_dir, f"models/{kind}", key, force, build)
        if reused:
            log.info(f"{kind}: reusing {path}")
            if message := time_limit_message(kind, cfg, read_json(path / "meta.json")["info"]):
                log.warning(f"{message.replace('reached', 'had reached', 1)}; --force trains it again")
        log_model_run(tracker, run_id, kind, path, reused)
        if parent_run_id is None:  # on its own, the run is complete now; in a pipeline, evaluate ends it
            tracker.finish(run_id)
    return publish(pipeline.data_dir, f"models/{kind}", StepResult(f"train-{kind}", str(path), key, reused, run_id,
                                                                   features.dataset))


def train_models(kinds: Sequence[str], features: StepResult, cfg: Config, parent_run_id: str | None,
                 force: bool = False) -> dict[str, StepResult]:
    """Train the models in lanes side by side (training_lanes: each lane in order, the lanes at once, the cores
    shared); their results in the order of kinds. When one fails or the user stops the run, every fit has ended
    before the error is raised, so none goes on writing to a closed MLflow run."""
    lanes, futures = training_lanes(kinds), {}
    for lane in lanes:
        before: list[PrefectFuture] = []
        for kind in lane:
            futures[kind] = train_task.submit(kind, features, cfg.model(kind), cfg.pipeline, cfg.tracking,
                                              parent_run_id, force, cores=lane_cores(lanes, lane), wait_for=before)
            before = [futures[kind]]
    with stop_on_signals():  # Ctrl-C or SIGTERM while waiting: the fits in the lanes stop at their next step
        try:
            return {kind: futures[kind].result() for kind in kinds}
        except BaseException:
            wait(list(futures.values()))
            raise


@task(name="attach-model", task_run_name="attach-{kind}", cache_policy=NO_CACHE)
def attach_task(kind: str, model: StepResult, tracking: TrackingConfig, parent_run_id: str) -> StepResult:
    """Record an already trained model in a new child run, for an evaluation run on its own."""
    tracker = Tracker.shared(tracking)
    run_id = tracker.start_run(kind, parent=parent_run_id, tags=run_tags(kind, "evaluate"))
    with tracker.failing(run_id):
        log_model_run(tracker, run_id, kind, model.path, reused=True)
    meta = read_json(Path(model.path) / "meta.json")
    return StepResult(model.step, model.path, meta["key"], True, run_id, model.dataset)
