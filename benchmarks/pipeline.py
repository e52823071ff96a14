"""Time `tabduel run` cold and warm on the full Seoul Bike file; write benchmarks/results/pipeline-<host>.json.

Each run is a fresh `python -m tabduel run` process in a new working directory (its own data/ and
mlflow.db), as a user would start it. Peak memory is the child's max RSS (wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

from _common import run_child  # benchmarks/ is the script's directory, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "SeoulBikeData.csv"
GOALS = {"cold_s": 120.0, "warm_s": 15.0, "peak_rss_mib": 2048.0}


def timed_run(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one child process; exits if it fails."""
    out, wall, rss = run_child(cmd, cwd)
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1), "output": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(SHARED) if SHARED.is_file() else "",
                        help="raw CSV (default: ../shared/data/SeoulBikeData.csv if present, else download)")
    parser.add_argument("--repeats", type=int, default=2, help="cold/warm pairs to run (median reported)")
    args = parser.parse_args()

    env_note = {k: os.environ[k] for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI") if k in os.environ}
    cold, warm = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="tabduel-bench-") as tmp:
            cmd = [sys.executable, "-m", "tabduel", "run"] + (["--source", args.source] if args.source else [])
            first = timed_run(cmd, Path(tmp))
            second = timed_run(cmd, Path(tmp))
            assert "reused 6 of 6 steps" in second["output"], second["output"][-2000:]
            metrics = json.loads(next(Path(tmp, "data", "evaluate").glob("*/metrics.json")).read_text())
            cold.append(first)
            warm.append(second)
            print(f"repeat {i + 1}: cold {first['wall_s']:.1f}s ({first['peak_rss_mib']:.0f} MiB), "
                  f"warm {second['wall_s']:.1f}s ({second['peak_rss_mib']:.0f} MiB)", flush=True)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    figures = {
        "cold_s": median([r["wall_s"] for r in cold]),
        "warm_s": median([r["wall_s"] for r in warm]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in cold + warm),
    }
    result = {
        "benchmark": "pipeline", "host": socket.gethostname(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "command": "python benchmarks/pipeline.py",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "environment": env_note,
        "runs": {"cold": [{k: v for k, v in r.items() if k != "output"} for r in cold],
                 "warm": [{k: v for k, v in r.items() if k != "output"} for r in warm]},
        "figures": figures, "goals": GOALS,
        "goal_ratios": {k: round(figures[k] / GOALS[k], 3) for k in GOALS},
        "warm_over_cold": round(figures["warm_s"] / figures["cold_s"], 3),
        "valid_mse": {k: round(v["valid_mse"], 4) for k, v in metrics.items()},
        "test_mse": {k: round(v["test_mse"], 4) for k, v in metrics.items()},
    }
    out = ROOT / "benchmarks" / "results" / f"pipeline-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'figure':<14}{'measured':>10}{'goal':>10}{'ratio':>8}")
    for key, goal in GOALS.items():
        print(f"{key:<14}{figures[key]:>10.1f}{goal:>10.0f}{figures[key] / goal:>8.2f}")
    print(f"valid MSE: {result['valid_mse']}\nwrote {out}")


if __name__ == "__main__":
    main()
