"""Stopping a run on the user's word (Ctrl-C, SIGTERM): one process-wide request that every fit checks.

Light on purpose (no numpy, no torch): the CLI and the tracking layer import it before anything slow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from tabduel.infra.errors import Interrupted


class StopRequest:
    """Set once when the user stops the process (Ctrl-C, SIGTERM), with the signal that came: fits running in other
    threads stop at their next epoch or round."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal = 0

    def set(self, signum: int = 0) -> None:
        """Ask every fit to stop (signum: the signal that asked, if any)."""
        self.signal = self.signal or signum
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def clear(self) -> None:
        """Forget a stop (tests)."""
        self.signal = 0
        self._event.clear()


STOP = StopRequest()  # one per process, as signals are


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT (Ctrl-C) and SIGTERM set STOP, so that fits in other threads end at their next step,
    then go on to the handler before (Python's raises KeyboardInterrupt, Prefect's TerminationSignal); a signal that
    was ignored stays ignored. A second Ctrl-C while stopping ends the process at once. The handlers before are
    restored after. (A second SIGTERM is Prefect's own: its engine sends the signal again to the handler it found.) Off
    the main thread, a no-op (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # nested blocks: go on to what the outermost one found, not through our own handler a second time
    chained = {sig: getattr(h, "tabduel_previous", h) for sig, h in before.items()}

    def handle(signum: int, frame: Any) -> None:
        if STOP.is_set() and signum == signal.SIGINT:  # Ctrl-C twice: the clean stop takes too long for the user
            print("tabduel: stopped at once (Ctrl-C again); finished step outputs are kept", file=sys.stderr,
                  flush=True)
            os._exit(128 + signum)
        STOP.set(signum)
        previous = chained[signum]
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt  # the default action (SIG_DFL), as an exception the callers clean up after

    for sig, handler in before.items():
        if handler is not signal.SIG_IGN:  # e.g. a background job's SIGINT
            signal.signal(sig, _marked(handle, chained[sig]))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _marked(handler: Any, previous: Any) -> Any:
    """handler, marked as tabduel's with the handler it goes on to."""
    def marked(signum: int, frame: Any) -> None:
        handler(signum, frame)
    marked.tabduel_previous = previous  # type: ignore[attr-defined]
    return marked


def check_stop(what: str) -> None:
    """Raise Interrupted if the user stopped the process (STOP is set); fits call it once per epoch or round."""
    if STOP.is_set():
        raise Interrupted(f"{what}: stopped by the user")
