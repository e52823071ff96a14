"""What the benchmark scripts share: timing a child process, the machine facts of a result, writing it, and the
features of one outer split."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB.

    Not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's peak, from before exec.
    """
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(cmd: list[str], cwd: Path | None = None) -> tuple[str, float, float]:
    """(output, wall seconds, peak RSS MiB) of one child process, from wait4; exits if it fails.

    The peak is ru_maxrss, which on Linux is at least this (parent) process's peak: keep the parent small, or
    have the child report peak_rss_mib() itself.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out[-4000:]}")
    return out, wall, usage.ru_maxrss / 1024


def machine(script: str) -> dict[str, Any]:
    """Where and when a result was measured, and the command that measured it (script: its file name)."""
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:])}


def write_result(dest: Path, doc: dict[str, Any]) -> None:
    """doc as indented JSON at dest, through a temporary file (nothing half-written at dest)."""
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, dest)
    print(f"wrote {dest}")


def outer_features(raw: str | Path, dataset: str, work: Path, bases: list[str], seed: int
                   ) -> tuple[dict[str, str], int]:
    """The features of each base on outer seed `seed` of a raw file read by data/datasets/<dataset>.toml, under
    work/<base> ({base: folder}), and the raw file's row count."""
    sys.path.insert(0, str(ROOT))
    from tabduel.data.dataset import load_spec
    from tabduel.data.features import make_features, save_features
    from tabduel.data.ingest import ingest
    from tabduel.search.space import features_config
    from tabduel.settings import load_config

    spec = load_spec(ROOT / "data" / "datasets" / f"{dataset}.toml")
    df, _ = ingest(str(raw), spec)
    cfg = load_config({}).features
    return {base: str(save_features(work / base, *make_features(df, spec, features_config(base, spec, cfg, seed))))
            for base in bases}, len(df)
