"""A flow's run with Prefect's flow-run heartbeats (its default) and without them (tabduel on its own API server),
side by side; writes benchmarks/results/flow-heartbeat-<host>.json.

One local Prefect API server, started as `tabduel` starts it (tabduel.infra.prefect_api.LocalAPI), and one flow of
six trivial tasks (the pipeline's step count), run --repeats times per variant, the variants interleaved:
  prefect_default   Prefect's settings: a heartbeat thread per flow run (every 180 s), joined at the flow's end
  tabduel           inside LocalAPI.flow_settings(), as `tabduel` runs its flows: no heartbeats
Reported: each run's wall seconds, the medians, and tabduel / prefect_default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6


def main() -> None:
    """Parse the flags, run the two variants interleaved, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="flow runs per variant [default: 10]")
    parser.add_argument("--out", default="",
                        help="results JSON (default benchmarks/results/flow-heartbeat-<host>.json)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.path.insert(0, str(ROOT))
    from tabduel.infra.prefect_api import LocalAPI, flush_prefect_logs

    api = LocalAPI()
    api.start()
    try:
        from prefect import flow, task

        @task
        def step(i: int) -> int:
            return i

        @flow
        def steps() -> list[int]:
            return [step(i) for i in range(STEPS)]

        api.wait_ready()
        load_start = os.getloadavg()
        variants = {"prefect_default": contextlib.nullcontext, "tabduel": api.flow_settings}
        steps()  # the server's first requests are slower: not counted
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for i in range(args.repeats):
            for name, settings in variants.items():
                with settings():
                    start = time.perf_counter()
                    steps()
                    runs[name].append(round(time.perf_counter() - start, 3))
            print(f"round {i + 1}: " + ", ".join(f"{n} {r[-1]:.2f}s" for n, r in runs.items()), flush=True)
    finally:
        flush_prefect_logs()  # the runs' logs and events reach the server before it stops, as in `tabduel`
        api.stop()
    medians = {name: round(statistics.median(r), 3) for name, r in runs.items()}
    report = {"benchmark": "flow_heartbeat", "host": socket.gethostname(), "cpus": os.cpu_count(),
              "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": "python " + " ".join(sys.argv), "tasks_per_flow": STEPS, "repeats": args.repeats,
              "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
              "runs_s": runs, "median_s": medians,
              "ratio_tabduel_vs_prefect_default": round(medians["tabduel"] / medians["prefect_default"], 3),
              "saved_s": round(medians["prefect_default"] - medians["tabduel"], 3)}
    default = ROOT / "benchmarks" / "results" / f"flow-heartbeat-{socket.gethostname()}.json"
    out = Path(args.out) if args.out else default
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"medians: {medians}; tabduel / prefect_default {report['ratio_tabduel_vs_prefect_default']}; wrote {out}")


if __name__ == "__main__":
    main()
