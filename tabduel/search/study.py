"""Optuna studies of a search: storage, creation, resume and extension, and the budget left."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabduel.infra.config import SearchConfig
from tabduel.infra.errors import TabduelError
from tabduel.search.storage import open_storage  # noqa: F401  (callers open a search's storage from here)

BUDGET_TRIALS = "tabduel.trials_budget"  # study user attributes
BUDGET_SECONDS = "tabduel.seconds_budget"
SPENT = "tabduel.seconds_spent"
PARENT_RUN = "tabduel.mlflow_parent_run_id"
ELAPSED = "elapsed_seconds"  # trial user attributes
RETRY_OF = "retry_of"
SIBLING_OF = "sibling_of"  # a trial asked with another's shape, to train in one population with it (search.mlp_batch)
PORTFOLIO = "tabduel.portfolio"  # a union family's study: the portfolio it queued (search/portfolio.py describe)
FIRST = "first"  # a trial a new study queued before any sampled one: "defaults" (the family's default settings)


def search_dir(s: SearchConfig, data_dir: str | Path) -> Path:
    """<data_dir>/search/<study>/: the journal, leaderboard, plots and final comparison of a search."""
    return Path(data_dir).resolve() / "search" / study_dir(s)


def storage_url(s: SearchConfig, data_dir: str | Path) -> str:
    """The storage as given, or the default journal file <data_dir>/search/<study>/journal.log."""
    if s.storage:
        return s.storage
    return str(search_dir(s, data_dir) / "journal.log")


@dataclass
class Budget:
    """How far one family's search may go: a trial count and seconds, each math.inf when unlimited."""

    trials: float
    seconds: float
    spent: float  # seconds spent by earlier invocations

    def allows(self, trials_started: int, seconds_now: float) -> bool:
        """True while another trial may start."""
        return trials_started < self.trials and self.spent + seconds_now < self.seconds


def study_name(s: SearchConfig, family: str) -> str:
    """Optuna keeps one study per family."""
    return f"{study_dir(s)}-{family}"


def study_dir(s: SearchConfig) -> str:
    """The study's name, as its folder under <data_dir>/search/ (raises if it was left empty)."""
    if not s.study:
        raise ValueError("SearchConfig.study is empty: fill it in with tabduel.settings.with_dataset_defaults first")
    return s.study


def open_study(s: SearchConfig, family: str, storage: Any, resume: bool, more_trials: int) -> tuple[Any, Budget]:
    """Create the family's study, or (resume / more_trials) load it; fail stale RUNNING trials and queue them again.

    A new search refuses a study that already exists, so that no one extends a study by accident. A new study queues
    the family's first params (its default settings, where the search family names them) before any sampled trial.
    """
    import optuna
    from optuna.trial import TrialState

    name = study_name(s, family)
    exists = name in optuna.get_all_study_names(storage)
    if exists and not (resume or more_trials):
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        if any(t.state != TrialState.WAITING for t in trials):
            raise TabduelError(f"study {name!r} already exists ({len(trials)} trials); --resume continues it, "
                               f"--more-trials N extends it, --study NAME starts another")
        # Only its queued first trials: a search that stopped before any trial began (a failed download, say)
        optuna.delete_study(study_name=name, storage=storage)
        exists = False
    if not exists and (resume or more_trials):
        raise TabduelError(f"no study {name!r} to resume in the storage; run without --resume / --more-trials first")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = optuna.load_study(study_name=name, storage=storage) if exists else None
    n_before = len(probe.trials) if probe else 0
    # A resumed sampler gets a seed of its own: the original seed would replay the first session's random trials.
    from tabduel.search.families import search_family

    # A union family's space is conditional on its member: TPE's group decomposition samples each member's params
    # from the trials of that member (Optuna calls it experimental; its warning is silenced here).
    union = bool(search_family(family).members)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar would count a running trial of one member as a bad point of every member's group
        sampler = optuna.samplers.TPESampler(seed=s.seed + n_before, n_startup_trials=10, multivariate=True,
                                             constant_liar=not union, group=union)
    from tabduel.search.pruning import make_pruner

    # Only a family whose trials report per-epoch scores is pruned. The pruner acts where trials train (a worker
    # opens the study with it: search/pruning.py); here it is the study's record of what prunes its trials.
    pruner = make_pruner(s.pruner if search_family(family).prunable else "none", s.prune_min_epochs, s.mlp_epochs)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="minimize", load_if_exists=True)
    if not exists:
        for params in search_family(family).first(s):
            study.enqueue_trial(params, user_attrs={FIRST: "defaults"})
        if search_family(family).members:  # the portfolio as it was queued, whatever its file becomes
            from tabduel.search.portfolio import describe

            study.set_user_attr(PORTFOLIO, describe(s.portfolio))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # left by a killed search
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={RETRY_OF: t.number, **({FIRST: t.user_attrs[FIRST]}
                                                                           if FIRST in t.user_attrs else {})})
    attrs = study.user_attrs
    spent = float(attrs.get(SPENT, 0.0))
    if more_trials:
        trials = counted_trials(study) + more_trials
        seconds = spent + s.minutes * 60 if s.minutes else math.inf
    elif resume:
        trials = attrs.get(BUDGET_TRIALS, s.trials) or math.inf
        seconds = attrs.get(BUDGET_SECONDS, s.minutes * 60) or math.inf
    else:
        trials, seconds = s.trials or math.inf, s.minutes * 60 or math.inf
    study.set_user_attr(BUDGET_TRIALS, 0 if math.isinf(trials) else int(trials))
    study.set_user_attr(BUDGET_SECONDS, 0 if math.isinf(seconds) else float(seconds))
    return study, Budget(float(trials), float(seconds), spent)


def budgeted_trials(study: Any) -> list[Any]:
    """Trials that count against the budget: complete, pruned and failed ones, not those failed by an interruption."""
    from optuna.trial import TrialState

    ended = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    interrupted = {t.user_attrs[RETRY_OF] for t in study.get_trials(deepcopy=False) if RETRY_OF in t.user_attrs}
    return [t for t in ended if t.number not in interrupted]


def counted_trials(study: Any) -> int:
    """How many trials count against the budget (budgeted_trials)."""
    return len(budgeted_trials(study))


def completed(study: Any) -> list[Any]:
    """The complete trials, in trial-number order."""
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
