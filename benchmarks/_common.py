"""What the benchmark scripts share: timing a child process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


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
