"""Run one call in a child process under a time cap that the parent enforces: for a fit that cannot stop itself.

The peers (pytabkit's estimators) take no time limit and no callback, so a search stops one at its cap from outside.
The child is forked from a server process (multiprocessing's forkserver) that imported the libraries once, before
any clock, and never ran a thread pool: a fork of the caller itself can hang in its first parallel region (GNU
OpenMP's thread pool does not survive a fork once the caller has run one, as torch, LightGBM and XGBoost do). The
call and its arguments travel to the child pickled (with the caller's warning filters), and its result back through
a pipe. As any child of multiprocessing's, it first runs its caller's main script as `__mp_main__` (a script that
starts children keeps its work under `if __name__ == "__main__":`; `python -m` mains are skipped).

The parent watches the child: on the `cpu` clock its CPU time (every thread's, and any child's it waited for, read
by psutil), on the `wall` clock the seconds since it started. At the cap it stops the child (SIGSTOP), reads the CPU
time it spent, and kills it: `Cut` says so and carries those CPU-seconds. A child that finishes reports its own CPU
time after pickling its result. Either way the CPU-seconds are the child's, which the caller's time.process_time()
does not see: the caller adds them to its own.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

from tabduel.infra.errors import ConfigError, TabduelError
from tabduel.infra.model_sections import TIME_CLOCKS
from tabduel.infra.settings import check_choice

__all__ = ["CHILD_CPU", "Cut", "ChildDied", "ChildResult", "start", "run"]

CHILD_CPU = "child_cpu_seconds"  # on an exception of a call run here: the CPU-seconds its child spent
MIN_POLL, MAX_POLL = 0.01, 0.2  # seconds between two looks at a running child's CPU time


class Cut(TabduelError):
    """The call reached its cap and its child was killed: it returned nothing."""


class ChildDied(TabduelError):
    """The child ended (a signal, the kernel's OOM killer) without returning or raising."""


@dataclass(frozen=True)
class ChildResult:
    """What a call returned, and what its child spent."""

    value: Any
    cpu_seconds: float  # the child's CPU time: every thread's, from its fork to its result's pickling
    seconds: float  # wall-clock seconds from the call to its result


def _context() -> Any:
    """The forkserver context where the platform has one, else spawn (each child then imports what it needs)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


_STARTED: set[int] = set()  # the processes whose server is up (a fork of one has none of its own)


def start(preload: Sequence[str] = ()) -> None:
    """Start the server that children fork from, importing `preload` there, and wait until it forks one (so that no
    call's clock counts its imports); once per process. ConfigError in one line in a daemonic process, which may start
    no child (a Dask nanny's worker)."""
    if multiprocessing.current_process().daemon:
        raise ConfigError("a peer's trials run in a child process, which a daemonic process may not start (a Dask "
                          "worker under a nanny): start the workers with --no-nanny, or set "
                          "DASK_DISTRIBUTED__WORKER__DAEMON=False")
    if os.getpid() in _STARTED:
        return
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(list(preload))  # ignored when this process's server already runs
    p = ctx.Process(target=_nothing, name="tabduel-child-warm-up")
    p.start()
    p.join()
    _STARTED.add(os.getpid())


def _nothing() -> None:
    return None


def _cpu(proc: Any) -> float:
    """A process's CPU-seconds: its threads' user and system time, and its waited-for children's."""
    t = proc.cpu_times()
    return float(t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0))


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...], filters: list[Any]) -> None:
    """In the child: call fn, pickle its result (or its exception), then send it and the CPU time spent."""
    import psutil

    warnings.filters[:] = filters
    try:
        ok, payload = True, pickle.dumps(fn(*args), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # sent to the parent, which raises it there
        try:
            exc.add_note(f"(raised in the child process:)\n{traceback.format_exc()}")
            ok, payload = False, pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle: its text
            ok, payload = False, pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
    conn.send_bytes(payload)
    conn.send((ok, _cpu(psutil.Process())))
    conn.close()


def run(fn: Callable[..., Any], *args: Any, cap: float = 0.0, clock: str = "cpu", what: str = "the call"
        ) -> ChildResult:
    """fn(*args) in a child process, stopped at `cap` seconds on `clock` (cpu: the child's CPU-seconds; wall: the
    seconds since the call; 0: no cap). Cut when it reached the cap; an exception fn raised is raised here; either
    carries the child's CPU-seconds as attribute CHILD_CPU."""
    import psutil

    check_choice("time clock", clock, TIME_CLOCKS)
    ctx = _context()
    began = time.perf_counter()
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(send, fn, args, _filters()), name="tabduel-child")
    p.start()
    send.close()
    proc, spent = None, 0.0
    try:
        while True:
            elapsed = time.perf_counter() - began
            if clock == "wall":
                timeout = cap - elapsed if cap else None
            else:  # the time the child needs at its pace to reach the cap, shared out over a few looks
                pace = max(1.0, spent / max(elapsed, 1e-3))  # CPU-seconds per second: its busy threads
                timeout = min(MAX_POLL, max(MIN_POLL, (cap - spent) / pace / 2)) if cap else MAX_POLL
            ready = wait([recv, p.sentinel], timeout=None if timeout is None else max(timeout, 0.0))
            if recv in ready:
                try:
                    payload = recv.recv_bytes()  # the child blocks on a full pipe until this reads it
                    ok, spent = recv.recv()
                except EOFError:  # it ended without a result: below
                    ready = [p.sentinel]
                else:
                    p.join()
                    if not ok:
                        raise _with_cpu(_exception(payload), spent)
                    return ChildResult(pickle.loads(payload), spent, time.perf_counter() - began)
            if p.sentinel in ready:
                p.join()
                raise _with_cpu(ChildDied(f"{what}: its child process ended (exit code {p.exitcode}) before it "
                                          f"returned, after {spent:.2f} CPU-s"), spent)
            try:
                proc = proc or psutil.Process(p.pid)
                spent = _cpu(proc)
            except psutil.NoSuchProcess:  # it ended since the wait: the next wait sees its result or its end
                continue
            over = (time.perf_counter() - began >= cap) if clock == "wall" else spent >= cap
            if cap and over and not recv.poll():  # (a result sent since the wait is taken)
                spent = _stop(proc, spent)
                p.join()
                unit = "s" if clock == "wall" else "CPU-s"
                raise _with_cpu(Cut(f"{what}: stopped at its cap of {cap:.2f} {unit} after {spent:.2f} CPU-s "
                                    f"(it cannot keep a partial fit: no model)"), spent)
    finally:
        if p.is_alive():  # an exception here (KeyboardInterrupt): leave no child running
            p.kill()
        p.join()
        p.close()
        recv.close()


def _filters() -> list[Any]:
    """The caller's warning filters that pickle (a category class of a script's own may not)."""
    out = []
    for f in warnings.filters:
        try:
            pickle.dumps(f)
        except Exception:
            continue
        out.append(f)
    return out


def _stop(proc: Any, spent: float) -> float:
    """Stop the child, read what it spent, kill it: its CPU-seconds (the last look's when it ended meanwhile)."""
    import psutil

    try:
        proc.suspend()
        spent = _cpu(proc)
        proc.kill()
    except psutil.NoSuchProcess:
        pass
    return spent


def _exception(payload: bytes) -> BaseException:
    """The exception a child sent; its text in a RuntimeError when it cannot be rebuilt here."""
    try:
        return pickle.loads(payload)
    except Exception as exc:
        return RuntimeError(f"an exception in the child process that cannot be rebuilt here ({exc})")


def _with_cpu(exc: BaseException, cpu: float) -> BaseException:
    setattr(exc, CHILD_CPU, cpu if math.isfinite(cpu) else 0.0)
    return exc
