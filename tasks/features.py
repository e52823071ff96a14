"""The features task: ingested table -> scaled train/valid/test Parquet plus a manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tabduel.data.dataset import load_spec
from tabduel.data.features import make_features, save_features
from tabduel.infra.config import FeaturesConfig, PipelineConfig, to_plain
from tabduel.infra.store import (
    StepResult,
    code_fingerprint,
    materialize,
    publish,
    read_json,
    sha256_tree,
    step_key,
)

CODE = ["tabduel.data.features", "tabduel.data.dataset", __name__]


@task(name="features", cache_policy=NO_CACHE)
def features_task(ingested: StepResult, pipeline: PipelineConfig, cfg: FeaturesConfig,
                  force: bool = False) -> StepResult:
    """Write <data_dir>/features/<key>/{train,valid,test}.parquet and manifest.json."""
    log = get_run_logger()
    src = Path(ingested.path)
    spec = load_spec(src / "dataset.toml")
    key = step_key("features", {"ingest": sha256_tree(src)}, to_plain(cfg),
                   code_fingerprint(CODE, ["pandas", "pyarrow", "numpy"]))

    def build(tmp: Path) -> dict:
        splits, manifest = make_features(pd.read_parquet(src / "table.parquet"), spec, cfg)
        source_sha = read_json(src / "ingest.json")["source_sha256"]
        save_features(tmp, splits, {**manifest, "source_sha256": source_sha, "ingest_dir": str(src),
                                    "ingest_key": ingested.key, "config": to_plain(cfg)})
        log.info(f"features: {len(manifest['features'])} inputs, rows {manifest['rows']}")
        return {"source_sha256": source_sha}

    path, reused = materialize(pipeline.data_dir, "features", key, force, build)
    return publish(pipeline.data_dir, "features", StepResult("features", str(path), key, reused, dataset=spec.name))
