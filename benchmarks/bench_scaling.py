"""How a bench scales with workers: the same quick bench on a local Dask cluster of 1 and of 2 workers.

Each run is a fresh `tabduel bench --quick` (its own data dir and MLflow store) over a generated suite of three
small datasets (tests/messy.py's writers), so the cells, trials and budgets are identical; the wall time of the
whole command, of the cell phase (first cell submitted to last cell done, from the cells' own timings), and the
CPU-seconds spent in the searches are recorded side by side in benchmarks/results/bench-scaling.json.

    python benchmarks/bench_scaling.py [--workers 1,2] [--out benchmarks/results/bench-scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def run(workers: int, root: Path) -> dict:
    """One quick bench on a fresh local cluster of `workers` single-threaded worker processes."""
    import distributed
    from benchsuite import write_suite

    work = root / f"w{workers}"
    work.mkdir()
    suite = write_suite(work)
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "tabduel", "bench", "--quick", "--suite", str(suite), "--out",
                               str(work / "results"), "--runner", "dask", "--address", cluster.scheduler_address,
                               "--threads", "1"], cwd=work, capture_output=True, text=True,
                              env={**os.environ, "PREFECT_HOME": str(work / "prefect")})
        wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"bench with {workers} worker(s) failed:\n{proc.stderr[-3000:]}")
    (result,) = (work / "results").glob("*.json")
    doc = json.loads(result.read_text())
    cells = [json.loads(p.read_text()) for p in (work / "data" / "bench").rglob("cells/**/*.json")]
    return {"workers": workers, "wall_seconds": round(wall, 1), "cells": len(cells),
            "cell_wall_seconds_sum": round(sum(c["wall_seconds"] for c in cells), 1),
            "search_cpu_seconds": round(doc["cpu_seconds_total"], 1),
            "workers_used": len({c["worker"] for c in cells})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", default=str(HERE / "results" / "bench-scaling.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tabduel-bench-scaling-") as tmp:
        rows = [run(int(w), Path(tmp)) for w in args.workers.split(",")]
    base = rows[0]["wall_seconds"]
    for r in rows:
        r["speedup_vs_first"] = round(base / r["wall_seconds"], 2)
    out = {"what": "tabduel bench --quick on a generated 3-dataset suite (12 cells), local Dask cluster",
           "machine": f"{os.cpu_count()} CPUs", "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
