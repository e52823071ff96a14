"""What the benchmark scripts share: timing a child process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_child(cmd: list[str], cwd: Path | None = None) -> tuple[str, float, float]:
    """(output, wall seconds, peak RSS MiB) of one child process, from wait4; exits if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{out[-4000:]}")
    return out, wall, usage.ru_maxrss / 1024
