"""Progress of a long fit that a person can follow: a line at least every few seconds in a log, a bar on a terminal.

A fit reports each epoch (or boosting round) to a FitProgress. It logs the first step, then a line at most every
`every` seconds, and the last: the step, its losses, the time so far and an estimate of the time left. The estimate
is an upper bound where early stopping may end the fit sooner ("at most"), and never past the fit's time limit. While
a single step takes longer than `every` (a large epoch on a CPU), a watchdog thread logs that the fit is still in
that step, so a log never stays silent for long. When `stream` is a terminal, a tqdm bar is drawn on it as well.
"""

from __future__ import annotations

import math
import threading
import time
from typing import IO, Any, Callable, Sequence

from tabduel.infra.stop import check_stop

EVERY_SECONDS = 15.0  # a line at most this often; with one step's time on top, at least every 30 s for steps < 15 s


def clock_text(seconds: float) -> str:
    """Seconds as 'M:SS', or 'H:MM:SS' from an hour."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_left(step: int, total: int, elapsed: float, limit: float = 0.0) -> float:
    """Seconds left at the pace so far if the fit runs all `total` steps, capped by a time limit (0: none)."""
    if step <= 0:
        return math.inf
    left = elapsed / step * max(0, total - step)
    return min(left, max(0.0, limit - elapsed)) if limit else left


class FitProgress:
    """Callable (step, total, *values) that logs a fit's progress; close() ends its watchdog and bar. A fit without
    steps (unit "") gets only the watchdog's lines."""

    def __init__(self, label: str, unit: str, names: Sequence[str], log: Any, *, limit: float = 0.0,
                 early_stopping: bool = True, every: float = EVERY_SECONDS, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.unit, self.names, self.log = label, unit, tuple(names), log
        self.limit, self.early_stopping, self.every, self.clock = limit, early_stopping, every, clock
        self.start = clock()
        self.last_line = -math.inf  # when a step was last logged
        self.last_heard = self.start  # when anything was last logged (a step, or the watchdog)
        self.step, self.logged_step, self.total, self.values = 0, 0, 0, ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = _bar(label, unit, stream)
        self._watchdog = threading.Thread(target=self._watch, name=f"tabduel-progress-{label}", daemon=True)
        self._watchdog.start()

    def __call__(self, step: int, total: int, *values: float) -> None:
        check_stop(f"{self.label} at {self.unit} {step}")  # Ctrl-C or SIGTERM: the fit ends here, nothing is saved
        now = self.clock()
        with self._lock:
            self.step, self.total, self.values = step, total, values
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(" ".join(f"{n}={v:.4g}" for n, v in zip(self.names, values)), refresh=False)
        if step == 1 or step == total or now - self.last_line >= self.every:
            self._log_step(now)

    def _log_step(self, now: float) -> None:
        with self._lock:
            step, total, values = self.step, self.total, self.values
            self.last_line = self.last_heard = now
            self.logged_step = step
        self.log.info(self.line(step, total, values, now - self.start))

    def line(self, step: int, total: int, values: Sequence[float], elapsed: float) -> str:
        """'realmlp epoch 37/256 train_loss=0.01234 valid_loss=0.01500, 0:30 so far, at most 3:10 left'."""
        shown = " ".join(f"{n}={v:.5f}" for n, v in zip(self.names, values))
        text = f"{self.label} {self.unit} {step}/{total} {shown}, {clock_text(elapsed)} so far"
        if step < total:
            left = time_left(step, total, elapsed, self.limit)
            capped = self.limit and left >= self.limit - elapsed
            bound = "at most " if self.early_stopping or capped else "about "
            text += f", {bound}{clock_text(left)} left" + (" (time limit)" if capped else "")
        return text

    def _watch(self) -> None:
        # wakes 6 times an interval: a silence lasts at most 2 intervals and a sixth
        while not self._stop.wait(self.every / 6):
            now = self.clock()
            with self._lock:
                quiet = now - self.last_heard
                step, total = self.step, self.total
                if quiet >= self.every * 2 - self.every / 6:
                    self.last_heard = now
                else:
                    continue
            left = f", at most {clock_text(self.limit - (now - self.start))} left (time limit)" if self.limit else ""
            where = f"in {self.unit} {step + 1}" + (f" of {total}" if total else "") if self.unit else "fitting"
            self.log.info(f"{self.label}: still {where}, {clock_text(now - self.start)} so far{left}")

    def close(self) -> None:
        """Stop the watchdog, log the last step reported if it was not (a fit that stopped early), close the bar."""
        self._stop.set()
        self._watchdog.join(timeout=1.0)
        if self.step and self.logged_step != self.step:
            self._log_step(self.clock())
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> FitProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bar(label: str, unit: str, stream: IO[str] | None) -> Any:
    """A tqdm bar on stream when it is a terminal and the fit has steps, else None (logs get plain lines)."""
    if not unit or stream is None or not getattr(stream, "isatty", lambda: False)():
        return None
    from tqdm import tqdm

    return tqdm(total=None, desc=label, unit=unit, file=stream, leave=False, dynamic_ncols=True, mininterval=0.5)
