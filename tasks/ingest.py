"""The ingest task: raw CSV -> validated, typed Parquet."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tabduel.data.dataset import load_spec
from tabduel.data.ingest import ingest
from tabduel.data.source import resolve_source
from tabduel.infra.config import IngestConfig, PipelineConfig
from tabduel.infra.store import (
    StepResult,
    atomic_write_json,
    code_fingerprint,
    materialize,
    publish,
    sha256_file,
    step_key,
)

CODE = ["tabduel.data.ingest", "tabduel.data.dataset", __name__]


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(pipeline: PipelineConfig, cfg: IngestConfig, force: bool = False) -> StepResult:
    """Validate the raw file and write <data_dir>/ingest/<key>/table.parquet."""
    log = get_run_logger()
    spec = load_spec(cfg.dataset)
    source = resolve_source(cfg.source, spec, pipeline.data_dir, progress=log.info)
    source_sha = sha256_file(source)
    if source_sha != spec.source.sha256:
        log.info(f"{source}: sha256 {source_sha[:12]}... is not the published file's; ingesting it as given")
    key = step_key("ingest", {"source": source_sha, "spec": spec.sha256}, {},
                   code_fingerprint(CODE, ["pandas", "pyarrow", "numpy"]))

    def build(tmp: Path) -> dict:
        df, info = ingest(source, spec)
        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = {**(table.schema.metadata or {}), b"tabduel.source_sha256": source_sha.encode(),
                b"tabduel.dataset": spec.name.encode()}
        pq.write_table(table.replace_schema_metadata(meta), tmp / "table.parquet")
        (tmp / "dataset.toml").write_bytes(Path(spec.path).read_bytes())
        atomic_write_json(tmp / "ingest.json", {**info, "source_sha256": source_sha, "spec_sha256": spec.sha256})
        log.info(f"ingested {info['rows']} rows x {len(info['columns'])} columns from {source} ({info['encoding']})")
        return {"source_sha256": source_sha}

    path, reused = materialize(pipeline.data_dir, "ingest", key, force, build)
    return publish(pipeline.data_dir, "ingest", StepResult("ingest", str(path), key, reused, dataset=spec.name))
