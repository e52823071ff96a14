"""Bench tasks: the features of a corrupted outer split, and one cell (search, refit, test) written as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tabduel.bench.cells import Cell, corrupted_features, run_cell, write_cell
from tabduel.data.dataset import load_spec
from tabduel.data.features import save_features
from tabduel.infra.config import FeaturesConfig, PipelineConfig, to_plain
from tabduel.infra.runtime import Every
from tabduel.infra.store import (
    StepResult,
    code_fingerprint,
    materialize,
    read_json,
    sha256_tree,
    step_key,
)
from tabduel.settings import Config

PROGRESS_SECONDS = 60.0  # a running cell logs its search's progress at most this often

CODE = ["tabduel.data.features", "tabduel.data.dataset", "tabduel.data.corruptions", "tabduel.bench.cells", __name__]


@task(name="corrupt-features", task_run_name="features-{corruption}-{level}", cache_policy=NO_CACHE)
def corrupt_features_task(ingested: StepResult, pipeline: PipelineConfig, cfg: FeaturesConfig, corruption: str,
                          level: float) -> StepResult:
    """Write <data_dir>/bench-features/<key>/: the features of the ingested table corrupted inside the split."""
    src = Path(ingested.path)
    key = step_key("bench-features", {"ingest": sha256_tree(src)},
                   {**to_plain(cfg), "corruption": corruption, "level": level},
                   code_fingerprint(CODE, ["pandas", "pyarrow", "numpy"]))

    def build(tmp: Path) -> dict:
        spec = load_spec(src / "dataset.toml")
        splits, manifest = corrupted_features(pd.read_parquet(src / "table.parquet"), spec, cfg, corruption, level)
        source_sha = read_json(src / "ingest.json")["source_sha256"]
        save_features(tmp, splits, {**manifest, "source_sha256": source_sha, "ingest_dir": str(src),
                                    "ingest_key": ingested.key, "config": to_plain(cfg)})
        return {"source_sha256": source_sha}

    path, reused = materialize(pipeline.data_dir, "bench-features", key, False, build)
    return StepResult("bench-features", str(path), key, reused)


@task(name="bench-cell", task_run_name="{label}", cache_policy=NO_CACHE)
def cell_task(label: str, cell: Cell, features: dict[str, str], config: dict[str, Any], journal: str, out: str,
              threads: int, inputs: str = "") -> str:
    """Run one cell (its study resumed from its journal if a killed bench left one; its search reading the features
    without their test split, under `inputs`) and write its result JSON."""
    cfg = Config.from_dict(config)
    Path(journal).parent.mkdir(parents=True, exist_ok=True)
    progress = Every(get_run_logger(), PROGRESS_SECONDS)  # Prefect's lines name the cell (its task run)
    row = run_cell(cell, features, cfg, journal, threads, log=progress, inputs=inputs or None)
    write_cell(out, row)
    return out
