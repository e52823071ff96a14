"""Stopping a run on the user's word (Ctrl-C, SIGTERM): one process-wide request that every fit checks.

Light on purpose (no numpy, no torch): the CLI and the tracking layer import it before anything slow.
"""

from __future__ import annotations

import contextlib
import signal
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
    """Within the block, SIGINT (Ctrl-C) and SIGTERM set STOP and raise KeyboardInterrupt in the main thread, so that
    fits in other threads end at their next step too; the handlers before are restored after. Off the main thread, a
    no-op (signals reach only the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        STOP.set(signum)
        raise KeyboardInterrupt

    before = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def check_stop(what: str) -> None:
    """Raise Interrupted if the user stopped the process (STOP is set); fits call it once per epoch or round."""
    if STOP.is_set():
        raise Interrupted(f"{what}: stopped by the user")
