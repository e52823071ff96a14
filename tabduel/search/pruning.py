"""Multi-fidelity pruning of MLP trials: Optuna's successive halving or Hyperband, fed by the engine's per-epoch
valid scores.

The loop gives each MLP trial's spec a Handle (plain data: it travels to pool processes and Dask workers). Where the
trial trains, a Reporter opens the study from its storage (a journal file or a database the workers can reach),
reports each trial's valid MSE at the rung epochs (min_epochs, 3 x min_epochs, 9 x ..., below max_epochs), and asks
the study's pruner whether to stop it. A population's trials are reported and pruned one by one: a pruned trial's
members leave the population, the others train on. A trial's score at an epoch is the mean, over its ensemble
members, of each member's best valid MSE so far. The loop tells Optuna a pruned trial as PRUNED (its last reported
score is its value); only complete trials can be the search's best.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tabduel.infra.config import PRUNERS, check_choice
from tabduel.infra.errors import ConfigError
from tabduel.search.storage import open_storage

REDUCTION = 3  # each rung keeps the best third


@dataclass(frozen=True)
class Pruning:
    """How a study's trials are pruned, and where the workers find the study."""

    storage: str  # as open_storage takes it: a journal file path or a database URL
    study: str  # the study's name in that storage
    pruner: str = "none"  # one of PRUNERS
    min_epochs: int = 5  # the first rung
    max_epochs: int = 300  # the most epochs a trial trains (Hyperband's largest budget)

    def __post_init__(self) -> None:
        check_choice("search.pruner", self.pruner, PRUNERS)
        if self.min_epochs < 1 or (self.on and self.max_epochs <= self.min_epochs):
            raise ConfigError(f"search.prune_min_epochs = {self.min_epochs}: must be at least 1 and below the "
                              f"epochs of a trial ({self.max_epochs})")

    @property
    def on(self) -> bool:
        """True when trials are pruned at all."""
        return self.pruner != "none"

    def rungs(self) -> tuple[int, ...]:
        """The epochs at which a trial's score is reported and its fate decided."""
        return rungs(self.min_epochs, self.max_epochs)


@dataclass(frozen=True)
class Handle:
    """What a trial's spec carries so that the process training it can report it: the study and the trial's id."""

    pruning: Pruning
    trial_id: int


def pruning_of(s: Any, storage: str, study: str) -> Pruning:
    """The pruning of a search's settings (search.pruner, search.prune_min_epochs, search.mlp_epochs) for a study
    that the workers open from `storage`."""
    if "://" not in storage:  # a journal file: the same file from whatever directory a worker runs in
        storage = str(Path(storage).resolve())
    return Pruning(storage, study, s.pruner, s.prune_min_epochs, s.mlp_epochs)


def rungs(min_epochs: int, max_epochs: int) -> tuple[int, ...]:
    """min_epochs x 3^i for i = 0, 1, ... below max_epochs (a trial at its last epoch has trained fully: it is
    never pruned there)."""
    out, epoch = [], min_epochs
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= REDUCTION
    return tuple(out)


def make_pruner(name: str, min_epochs: int, max_epochs: int) -> Any:
    """The Optuna pruner of a name: NopPruner, SuccessiveHalvingPruner or HyperbandPruner (reduction factor 3)."""
    import optuna

    check_choice("search.pruner", name, PRUNERS)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=REDUCTION)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=max_epochs,
                                              reduction_factor=REDUCTION)
    return optuna.pruners.NopPruner()


def _inode(url: str) -> int:
    """A journal file's inode (a new file at the same path is another storage); 0 for a database URL."""
    if "://" in url:
        return 0
    try:
        return os.stat(url).st_ino
    except OSError:
        return -1


@functools.lru_cache(maxsize=None)
def _storage(url: str, inode: int) -> Any:
    """The storage of a URL or journal file, opened once per process: a worker replays a journal once, not per
    trial."""
    return open_storage(url)


def open_for_worker(pruning: Pruning) -> Any:
    """The study as a worker sees it: the shared storage, the pruner; a random sampler (a worker samples nothing)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=pruning.study, storage=_storage(pruning.storage, _inode(pruning.storage)),
                             sampler=optuna.samplers.RandomSampler(),
                             pruner=make_pruner(pruning.pruner, pruning.min_epochs, pruning.max_epochs))


class Reporter:
    """Reports the trials of one group (a population, or one trial) and says which the pruner stops."""

    def __init__(self, handles: Sequence[Handle | None]):
        self._handles = list(handles)
        self._trials: dict[int, Any] = {}
        self._studies: dict[Pruning, Any] = {}  # opened at the first rung, once per group
        self._rungs = {h.pruning: set(h.pruning.rungs()) for h in handles if h is not None and h.pruning.on}

    @property
    def on(self) -> bool:
        """True when any trial of the group may be pruned."""
        return bool(self._rungs)

    def report(self, i: int, epoch: int, value: float) -> bool:
        """Report trial i's score at an epoch (at rung epochs only); True when the pruner stops it."""
        handle = self._handles[i]
        if handle is None or epoch not in self._rungs.get(handle.pruning, ()):
            return False
        if i not in self._trials:
            import optuna

            if handle.pruning not in self._studies:
                self._studies[handle.pruning] = open_for_worker(handle.pruning)
            self._trials[i] = optuna.trial.Trial(self._studies[handle.pruning], handle.trial_id)
        trial = self._trials[i]
        trial.report(value if math.isfinite(value) else math.nan, epoch)
        return bool(trial.should_prune())

    def single(self) -> Callable[[int, int, float, float], bool]:
        """An engine on_epoch for one trial trained alone: its best valid MSE so far, at the rungs."""
        best = math.inf

        def on_epoch(epoch: int, epochs: int, train_loss: float, valid_loss: float) -> bool:
            nonlocal best
            best = min(best, valid_loss)
            return self.report(0, epoch, best)
        return on_epoch

    def members(self, owners: np.ndarray) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray]:
        """An engine prune for a population: owners[k] is the trial of member k."""
        def prune(epoch: int, active: np.ndarray, best: np.ndarray) -> np.ndarray:
            stop: set[int] = set()
            for i in np.unique(owners[active]):
                if self.report(int(i), epoch, float(np.mean(best[owners == i]))):
                    stop.add(int(i))
            return np.isin(owners[active], sorted(stop))
        return prune
