"""The ask/tell loop of one family's search, shared by `tabduel search` and `tabduel bench`, without Prefect.

The loop asks Optuna for trials while the budget allows, hands groups of them to `submit` (a Prefect task runner,
a thread pool, or a plain call), tells Optuna each result, and reports every finished or failed trial to `record`
(MLflow child runs in the search flow; a list in the bench). One failing trial does not end a search; five in a
row do. The budget is counted on a clock: `wall` (seconds since the loop began, the search's default) or `cpu`
(the CPU-seconds that the workers measured around each trial, the bench's: equal whatever the runner).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tabduel.infra.config import TIME_CLOCKS
from tabduel.infra.errors import TabduelError, one_line
from tabduel.search.families import CPU_SPENT, SearchFamily, search_family
from tabduel.search.pruning import Handle, Pruning
from tabduel.search.space import ENCODINGS
from tabduel.search.study import ELAPSED, PARENT_RUN, SIBLING_OF, SPENT, Budget, completed

MAX_FAILURES_IN_ROW = 5

# (label, features base, trial specs[, seconds each trial may spend: only for bagged trials]) -> a future (anything
# `first_done` understands)
Submit = Callable[[str, str, list[Any]], Any]
# pending futures -> the first of them that is done
FirstDone = Callable[[list[Any]], Any]
# (family, trial, result or None, error or None, elapsed, best so far)
Record = Callable[[str, Any, dict[str, Any] | None, BaseException | None, float, float], None]
# (trial number, its result, the fitted trial a run function kept as row["model"]), before the trial is told
Keep = Callable[[int, dict[str, Any], Any], None]


@dataclass
class LoopResult:
    """What one call of the loop did: trials told, failures, and the budget clock's seconds spent in total."""

    told: int = 0
    failed: int = 0
    spent: float = 0.0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: float = math.inf
    results: list[dict[str, Any]] = field(default_factory=list)


def fail_state() -> Any:
    """Optuna's FAIL state."""
    from optuna.trial import TrialState

    return TrialState.FAIL


def trial_attrs(family: str, result: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """User attributes of a finished trial: its time, CPU time, where it ran, and its family's facts."""
    attrs = {"seconds": result["seconds"], "cpu_seconds": result.get("cpu_seconds", math.nan), ELAPSED: elapsed,
             "device": result["device"], "worker": result["worker"]}
    return {**attrs, **search_family(family).facts(result)}


def ask(study: Any, fam: SearchFamily, s: Any, threads: int, encodings: Sequence[str], room: float,
        pruning: Pruning | None = None) -> list[tuple[Any, Any]]:
    """Ask Optuna for one trial and, for a family with batch siblings (fam.batch(s) > 1: s.mlp_batch,
    s.realmlp_batch) when no queued trial waits, up to fam.batch(s) - 1 more that keep its shared params (the rest
    sampled): at most `room` trials, with specs."""
    from optuna.trial import TrialState

    trial = study.ask()
    out = [(trial, fam.suggest(trial, s, threads, encodings))]
    batch = fam.batch(s)
    # Optuna hands out queued trials oldest first: siblings only when nothing else waits (a resume's retries do)
    if fam.shared is not None and batch > 1 and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        fixed = fam.shared(trial.params)
        for _ in range(int(min(batch - 1, room - 1))):
            study.enqueue_trial(fixed, user_attrs={SIBLING_OF: trial.number})
            sibling = study.ask()
            out.append((sibling, fam.suggest(sibling, s, threads, encodings)))
    if pruning is not None and pruning.on and fam.with_pruning is not None:
        out = [(t, fam.with_pruning(spec, Handle(pruning, t._trial_id))) for t, spec in out]
    return out


def capped_group(fam: SearchFamily, specs: list[Any], budget: Budget, spent: float, in_flight: int, clock: str,
                 folds: int = 1) -> list[Any]:  # spent: the seconds spent in all, earlier invocations' included
    """A group's specs with their training capped at the budget left: on the CPU clock its share among the groups
    in flight, split among the group's trials (a population trains them together) and among a bagged trial's
    `folds` fits (each fit's own time limit holds too); unchanged without a seconds budget or for a family that
    cannot be stopped mid-fit."""
    if fam.cap is None or math.isinf(budget.seconds):
        return specs
    seconds = trial_seconds(budget, spent, in_flight, clock, len(specs))
    return [fam.cap(spec, seconds / folds) for spec in specs]


def trial_seconds(budget: Budget, spent: float, in_flight: int, clock: str, trials: int) -> float:
    """The seconds each trial of a group may spend: the budget left (on the CPU clock its share among the groups in
    flight) split among the group's trials; inf without a seconds budget."""
    if math.isinf(budget.seconds):
        return math.inf
    left = budget.seconds - spent
    return (left / in_flight if clock == "cpu" else left) / trials


def run_family(family: str, study: Any, budget: Budget, s: Any, workers: int, threads: int, submit: Submit,
               first_done: FirstDone, record: Record | None = None, log: Any = None, clock: str = "wall",
               encodings: Sequence[str] = ENCODINGS, pruning: Pruning | None = None, keep: Keep | None = None,
               folds: int = 1) -> LoopResult:
    """Ask, train and tell trials of one family until its budget is spent, `workers` groups at a time, each
    trial's training capped at the budget left and a failed trial charged what it spent; with pruning, the workers
    report MLP trials at the rung epochs and the study's pruner may stop them; `keep` gets every finished trial's
    fitted model where the run functions kept one; `folds` > 1: `submit` runs each trial as that many bagged fits
    (search/bagging.py), among which the cap is split, and gets the seconds each trial may spend in all."""
    fam = search_family(family)
    if clock not in TIME_CLOCKS:
        raise ValueError(f"clock {clock!r} is not one of: {', '.join(TIME_CLOCKS)}")
    from tabduel.search.study import counted_trials

    out = LoopResult(best=min((t.value for t in completed(study)), default=math.inf))
    start = time.perf_counter()
    started = counted_trials(study)
    pending: dict[Any, list[Any]] = {}
    failures_in_row = 0

    def spent_now() -> float:
        return budget.spent + (time.perf_counter() - start if clock == "wall" else out.cpu_seconds)

    if log:
        log.info(f"{family}: budget {budget_text(budget, clock)}; {started} trials done before; {workers} at a "
                 f"time, {threads} thread(s) each")
    while True:
        asked: list[tuple[Any, Any]] = []
        batches = 0
        while len(pending) + batches < workers and budget.allows(started, spent_now() - budget.spent):
            batch = ask(study, fam, s, threads, encodings, budget.trials - started, pruning)
            asked += batch
            started += len(batch)
            batches += 1
        groups = fam.groups(asked, lambda t: t.user_attrs.get(SIBLING_OF, t.number))
        for i, group in enumerate(groups):
            trials = [t for t, _ in group]
            flight = len(pending) + len(groups) - i
            specs = capped_group(fam, [spec for _, spec in group], budget, spent_now(), flight, clock, folds)
            base = fam.base(specs[0])
            label = f"{family}-" + "+".join(str(t.number) for t in trials)
            if folds > 1:  # a bagged trial re-caps each fit at what its earlier fits left (search/bagging.py)
                seconds = trial_seconds(budget, spent_now(), flight, clock, len(specs)) if fam.cap else math.inf
                pending[submit(label, base, specs, seconds)] = trials
            else:
                pending[submit(label, base, specs)] = trials
        if not pending:
            break
        done = first_done(list(pending))
        trials = pending.pop(done)
        try:
            results = done.result()
        except Exception as exc:  # one failing trial does not end the search; many in a row do
            failures_in_row += 1
            out.failed += len(trials)
            charged = float(getattr(exc, CPU_SPENT, 0.0))  # what it spent before it raised (or was cut)
            out.cpu_seconds += charged
            for t in trials:
                t.set_user_attr(ELAPSED, spent_now())  # where it ended, for the curves' trial counts
                t.set_user_attr("cpu_seconds", charged / len(trials))
                t.set_user_attr("error", one_line(exc)[:1000])
                study.tell(t, state=fail_state())
                if record:
                    record(family, t, None, exc, spent_now(), out.best)
            if log:
                log.warning(f"{family}: trial(s) {[t.number for t in trials]} failed: {exc}")
            if failures_in_row >= MAX_FAILURES_IN_ROW:
                raise TabduelError(f"{family}: {failures_in_row} trials in a row failed; the last: {exc}") from exc
            continue
        failures_in_row = 0
        out.cpu_seconds += sum(r.get("cpu_seconds", 0.0) for r in results)
        elapsed = spent_now()
        for t, result in zip(trials, results):
            model = result.pop("model", None)
            if keep is not None and model is not None:
                keep(t.number, result, model)
            out.best = tell(family, study, t, result, elapsed, out.best)
            out.told += 1
            out.results.append({"trial": t.number, **result, ELAPSED: elapsed})
            if record:
                record(family, t, result, None, elapsed, out.best)
            if log:
                log.info(trial_line(family, t.number, result, elapsed, out.best, clock))
        study.set_user_attr(SPENT, elapsed)
    out.wall_seconds = time.perf_counter() - start
    out.spent = spent_now()
    study.set_user_attr(SPENT, out.spent)
    return out


def tell(family: str, study: Any, trial: Any, result: dict[str, Any], elapsed: float, best: float) -> float:
    """Record one finished trial in the study (a pruned one as PRUNED, a non-finite score as FAIL); return the best
    value so far."""
    value = result["valid_mse"]
    for k, v in trial_attrs(family, result, elapsed).items():
        trial.set_user_attr(k, v)
    if result.get("pruned"):  # Optuna takes its last reported score as its value; it cannot be the best
        from optuna.trial import TrialState

        study.tell(trial, state=TrialState.PRUNED)
        return best
    if math.isfinite(value):
        study.tell(trial, value)
        return min(best, value)
    study.tell(trial, state=fail_state())
    return best


def trial_line(family: str, number: int, result: dict[str, Any], elapsed: float, best: float, clock: str) -> str:
    """One log line of a finished trial."""
    value = result["valid_mse"]
    shown = f"{value:.5f}" if math.isfinite(value) else "diverged (not finite)"
    extra = search_family(family).note(result)
    unit = "min" if clock == "wall" else "CPU-min"
    return (f"{family} trial {number}: valid MSE {shown} in {result['seconds']:.1f}s{extra}; best {best:.5f}; "
            f"{elapsed / 60:.1f} {unit}")


def budget_text(b: Budget, clock: str = "wall") -> str:
    """'40 trials and 5.0 min (1.2 min spent before)'."""
    unit = "min" if clock == "wall" else "CPU-min"
    parts = [] if math.isinf(b.trials) else [f"{int(b.trials)} trials"]
    if not math.isinf(b.seconds):
        parts.append(f"{b.seconds / 60:.1f} {unit}")
    return " and ".join(parts) + (f" ({b.spent / 60:.1f} {unit} spent before)" if b.spent else "")


def search_parent(tracker: Any, studies: dict[str, Any], resuming: bool, tags: dict[str, Any],
                  params: dict[str, Any]) -> str:
    """The search's MLflow run: when resuming, the one its studies recorded (reopened); else a new one with these
    tags and params, recorded in every study."""
    known = {st.user_attrs.get(PARENT_RUN) for st in studies.values()} - {None}
    if resuming and len(known) == 1 and tracker.reopen(next(iter(known))):
        return next(iter(known))
    parent = tracker.start_run("search", tags=tags)
    tracker.log_params(parent, params)
    for st in studies.values():
        st.set_user_attr(PARENT_RUN, parent)
    return parent


def unlogged(study: Any, logged: set[str]) -> list[Any]:
    """The complete trials whose number is not among `logged` (a kill between tell and logging leaves some)."""
    return [t for t in completed(study) if str(t.number) not in logged]


def backfill(family: str, study: Any, tracker: Any, parent: str) -> int:
    """Record in MLflow the complete trials that have no run under parent; returns how many were added."""
    if not completed(study):  # a fresh study: nothing to look up
        return 0
    # Only finished runs count as logged: a kill while a run was being recorded leaves it RUNNING (then KILLED).
    logged = {r.data.tags.get("optuna.trial") for r in tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`optuna.study` = '{study.study_name}' and tags.`mlflow.parentRunId` = "
                                 f"'{parent}' and attributes.status = 'FINISHED'", max_results=50000)}
    missing = unlogged(study, logged - {None})
    for t in missing:
        tags = {"tabduel.step": "search-trial", "family": family, "model": family, "optuna.study": study.study_name,
                "optuna.trial": t.number, "tabduel.backfilled": "true"}
        metrics = {"valid_mse": t.value, "seconds": t.user_attrs.get("seconds", math.nan),
                   "elapsed_seconds": t.user_attrs.get(ELAPSED, math.nan)}
        tracker.record_run(f"{family}-{t.number:03d}", parent, tags, t.params, metrics)
    return len(missing)


def mlflow_recorder(tracker: Any, parent: str, study_name: str) -> Record:
    """A `record` that makes each trial an MLflow child run of parent (FAILED for a failed or diverged trial)."""
    def record(family: str, trial: Any, result: dict[str, Any] | None, error: BaseException | None,
               elapsed: float, best: float) -> None:
        tags = {"tabduel.step": "search-trial", "family": family, "model": family, "optuna.study": study_name,
                "optuna.trial": trial.number}
        if result is None:
            tracker.record_run(f"{family}-{trial.number:03d}", parent, {**tags, "error": str(error)[:5000]},
                               trial.params, {}, "FAILED")
            return
        value = result["valid_mse"]
        metrics = {"valid_mse": value, "seconds": result["seconds"], "elapsed_seconds": elapsed, "best_so_far": best}
        if "cpu_seconds" in result:
            metrics["cpu_seconds"] = result["cpu_seconds"]
        metrics.update(search_family(family).metrics(result))
        tags.update(device=result["device"], worker=result["worker"], error=result.get("error", "")[:5000])
        if result.get("pruned"):
            tags["optuna.state"] = "PRUNED"
        tracker.record_run(f"{family}-{trial.number:03d}", parent, tags, trial.params, metrics,
                           "FINISHED" if math.isfinite(value) else "FAILED")
    return record


class Inline:
    """A finished 'future' of a call run right here: the bench's cells run their trials one at a time."""

    def __init__(self, fn: Callable[[], Any]):
        try:
            self._value, self._error = fn(), None
        except Exception as exc:  # kept, re-raised by result() as a pool's future would
            self._value, self._error = None, exc

    def result(self) -> Any:
        """The call's value, or its exception raised again."""
        if self._error is not None:
            raise self._error
        return self._value


def first_of(futures: list[Any]) -> Any:
    """first_done for Inline futures (all are done): the first."""
    return futures[0]
