"""Every search family in one place: how `tabduel search` and `tabduel bench` suggest, group, run and record its trials.

A search family tunes one model family (tabduel.models.registry: its Family.search names the search family). Its
record below says how a trial's spec is suggested from an Optuna trial (search/space.py) and rebuilt from a finished
trial's params, which features variant a spec reads, which specs train together, how a group of specs is run
(search/trials.py), which facts of a result go on the Optuna trial, its MLflow run and its log line, and which params
a new study tries first. The loop, the study, the report, the bench and the flows ask the record, never the family's
name. Adding one: its suggest function (search/space.py), its run function (search/trials.py; an autograd model
family shares run_net), its record here (for an autograd family, one net_family line), and its name as the `search`
of its model family's settings (`class XConfig(ModelSettings, section="x", search="x")`): --families offers those.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

from tabduel.infra.child import CHILD_CPU
from tabduel.infra.config import MLP_PORTFOLIO, MLP_PORTFOLIO_MEMBERS, NUMERIC_MAPS, SearchConfig
from tabduel.infra.errors import ConfigError
from tabduel.models.registry import FAMILIES
from tabduel.search import peers, union
from tabduel.search.pruning import Handle
from tabduel.search.space import (
    BASES,
    ENCODINGS,
    group_key,
    realmlp_defaults,
    realmlp_group_key,
    suggest_mlp,
    suggest_realmlp,
    suggest_tabm,
    suggest_xgboost,
    tabm_defaults,
    xgboost_defaults,
)
from tabduel.search.trials import run_mlp, run_net, run_realmlp, run_xgboost

Result = dict[str, Any]  # one trial's scores and facts (search/trials.py)
MLP_PER_MEMBER = ("lr", "weight_decay", "dropout")  # what differs between the members of one population
REALMLP_PER_MEMBER = ("lr", "weight_decay", "dropout")  # the same of a RealMLP population


@dataclass(frozen=True)
class SearchFamily:
    """One search family: what its trials are and how they run."""

    name: str  # as --families names it; the Optuna study <study>-<name>; the trials' MLflow run names
    model: str  # the model family (registry kind) whose settings it searches
    bases: tuple[str, ...]  # the features variants its trials may read
    suggest: Callable[[Any, SearchConfig, int, Sequence[str]], Any]  # (trial, settings, threads, encodings) -> spec
    # (features dir, a group of specs, with test, keep the fitted models as row["model"]) -> results
    run: Callable[[str, list[Any], bool, bool], list[Result]]
    base: Callable[[Any], str]  # the features variant a spec reads
    group: Callable[[Any], Hashable] | None  # specs of equal keys train together (one population); None: each alone
    facts: Callable[[Result], dict[str, Any]]  # what a finished trial records besides its time and place
    metrics: Callable[[Result], dict[str, float]]  # what its MLflow run logs besides its score and time
    note: Callable[[Result], str]  # what its log line adds
    replay: Callable[[SearchConfig, dict[str, Any]], tuple[SearchConfig, dict[str, Any]]] = (
        lambda s, params: (s, params))  # the space and params that rebuild a finished trial's spec
    # params a new study tries before any sampled (its defaults; a union family's portfolio)
    first: Callable[[SearchConfig], list[dict[str, Any]]] = lambda s: []
    # a spec that carries a pruning handle (search/pruning.py); None: the family's trials are never pruned
    with_pruning: Callable[[Any, Handle], Any] | None = None
    # the params a trial's batch siblings keep (search.mlp_batch); None: every trial is sampled alone
    shared: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # the trials asked at a time, a trial and its siblings (search.mlp_batch, search.realmlp_batch); with `shared`
    batch: Callable[[SearchConfig], int] = lambda s: 1
    # True: only a trial and its batch siblings train together (trials asked apart train apart, whatever their key)
    siblings_only: bool = False
    # a spec whose training stops after at most these seconds (its own limit when smaller; a peer's fit is killed
    # there, tabduel/infra/child.py); None: a trial runs to its end and is charged in full
    cap: Callable[[Any, float], Any] | None = None
    # a spec that trains on this device ("cpu", "cuda"); None: its trials always train on the CPU (a peer)
    on_device: Callable[[Any, str], Any] | None = None
    members: tuple[str, ...] = ()  # a union family (search/union.py): the families it searches within one budget

    @property
    def prunable(self) -> bool:
        """True when its trials report per-epoch scores that a pruner can act on."""
        return self.with_pruning is not None

    def groups(self, asked: list[tuple[Any, Any]], leader: Callable[[Any], int] = lambda trial: trial.number
               ) -> list[list[tuple[Any, Any]]]:
        """(trial, spec) pairs in the groups that train together; leader(trial): the number of the trial whose batch
        sibling it is (its own if none), which only a siblings_only family's groups use."""
        if self.group is None:
            return [[a] for a in asked]
        grouped: dict[Hashable, list[tuple[Any, Any]]] = defaultdict(list)
        for trial, spec in asked:
            key = self.group(spec)
            if self.siblings_only:
                key = (key, leader(trial))
            grouped[key].append((trial, spec))
        return list(grouped.values())

    def rebuild(self, params: dict[str, Any], s: SearchConfig, threads: int) -> Any:
        """The spec of a finished trial's params."""
        import optuna

        s, params = self.replay(s, params)
        return self.suggest(optuna.trial.FixedTrial(params), s, threads, ENCODINGS)


def capped(limit: float, seconds: float) -> float:
    """A time limit of at most `seconds` (> 0): the smaller of the two, where a limit of 0 means none."""
    seconds = max(float(seconds), 1e-3)
    return min(limit, seconds) if limit else seconds


def cap_settings(cfg: Any, seconds: float) -> Any:
    """Model settings with max_seconds capped at `seconds`."""
    return dataclasses.replace(cfg, max_seconds=capped(cfg.max_seconds, seconds))


def on_device(cfg: Any, device: str) -> Any:
    """Model settings that train on `device`."""
    return dataclasses.replace(cfg, device=device)


def _mlp_replay(s: SearchConfig, params: dict[str, Any]) -> tuple[SearchConfig, dict[str, Any]]:
    # The trial's own numeric map, whatever the space offers now. A space of one map suggests none, so a trial without
    # the param used the space's only map (a bench's mlp-robust: robust; studies older than the maps: standard).
    only = s.numeric[0] if len(s.numeric) == 1 else "standard"
    return dataclasses.replace(s, numeric=NUMERIC_MAPS), {"numeric": only, **params}


def _epochs(r: Result) -> dict[str, Any]:
    """The epochs a net trained and its best one."""
    return {"epochs_run": r["epochs_run"], "best_epoch": r["best_epoch"]}


def _population(r: Result) -> dict[str, Any]:
    """The trials of the population a net trial trained in (run_realmlp's rows); none for a trial alone."""
    return {"population_trials": r["group_trials"]} if "group_trials" in r else {}


def _time_note(r: Result) -> str:
    return (f", stopped by its time limit after {r['epochs_run']} epochs" if r["time_limited"] else "") + (
        f", population of {r['group_trials']}" if r.get("group_trials", 1) > 1 else "")


def net_family(name: str, suggest: Callable[[Any, SearchConfig, int], Any],
               defaults: Callable[[], dict[str, Any]], **more: Any) -> SearchFamily:
    """The record of an autograd family (trials/run_net): each trial trains alone on the ordinal variant, the
    features step's defaults, which its pipeline training reads too; a new study tries its defaults first. `more`:
    fields that differ (realmlp's populations of batch siblings)."""
    fields: dict[str, Any] = dict(
        suggest=lambda trial, s, threads, encodings: suggest(trial, s, threads),
        run=lambda features_dir, specs, with_test, keep=False: [run_net(name, features_dir, spec, with_test, keep)
                                                                for spec in specs],
        base=lambda spec: "ordinal", group=None,
        facts=lambda r: {**_epochs(r), "time_limited": r["time_limited"], **_population(r)},
        metrics=lambda r: {**_epochs(r), **_population(r)}, note=_time_note, first=lambda s: [defaults()],
        cap=cap_settings, on_device=on_device)
    return SearchFamily(name, model=name, bases=("ordinal",), **{**fields, **more})


SEARCH_FAMILIES = (
    SearchFamily(
        "mlp", model="mlp", bases=BASES,
        suggest=lambda trial, s, threads, encodings: suggest_mlp(trial, s, threads, tuple(encodings)),
        run=run_mlp, base=lambda spec: spec.encoding.base, group=group_key,
        facts=lambda r: {"population_trials": r["group_trials"], "population_members": r["group_members"],
                         "time_limited": r["time_limited"], "pruned": r.get("pruned", False),
                         "epochs_run": max(r["epochs_run"]),
                         "member_valid_mse": r["member_valid_mse"]},
        metrics=lambda r: {"epochs_run": max(r["epochs_run"]), "population_members": r["group_members"]},
        note=lambda r: (f", population of {r['group_members']}" if r["group_members"] > 1 else "")
        + (f", pruned after {max(r['epochs_run'])} epochs" if r.get("pruned") else ""),
        replay=_mlp_replay, with_pruning=lambda spec, handle: dataclasses.replace(spec, prune=handle),
        shared=lambda params: {k: v for k, v in params.items() if k not in MLP_PER_MEMBER},
        batch=lambda s: s.mlp_batch,
        cap=lambda spec, seconds: dataclasses.replace(spec, mlp=cap_settings(spec.mlp, seconds)),
        on_device=lambda spec, device: dataclasses.replace(spec, mlp=on_device(spec.mlp, device))),
    SearchFamily(
        "xgboost", model="xgboost", bases=("ordinal",),
        suggest=lambda trial, s, threads, encodings: suggest_xgboost(trial, s, threads),
        run=lambda features_dir, specs, with_test, keep=False: [run_xgboost(features_dir, spec, with_test, keep)
                                                                for spec in specs],
        base=lambda spec: "ordinal", group=None,
        facts=lambda r: {"best_iteration": r["best_iteration"]},
        metrics=lambda r: {"best_iteration": r["best_iteration"]},
        note=lambda r: "", cap=cap_settings, on_device=on_device, first=lambda s: [xgboost_defaults()]),
    # search.realmlp_batch: a trial and its siblings (their own lr, weight decay, dropout) train as one population
    net_family("realmlp", suggest_realmlp, realmlp_defaults, run=run_realmlp, group=realmlp_group_key,
               siblings_only=True, batch=lambda s: s.realmlp_batch,
               shared=lambda params: {k: v for k, v in params.items() if k not in REALMLP_PER_MEMBER}),
    net_family("tabm", suggest_tabm, tabm_defaults),
)



def _portfolio(s: SearchConfig) -> list[dict[str, Any]]:
    """A union family's first trials: its portfolio's configs (search.portfolio, else the shipped one), in order."""
    from tabduel.search.portfolio import load_portfolio

    return [union.joined(c["family"], c["params"]) for c in load_portfolio(s.portfolio)["configs"]]


def union_family(name: str, members: tuple[str, ...]) -> SearchFamily:
    """The record of a union family (search/union.py): one search over `members` within one budget, starting from
    its portfolio (search.portfolio), each trial run, capped and described by its member's own record."""
    recs = {m: _BY_NAME[m] for m in members}
    bound = {f: functools.partial(getattr(union, f), recs) for f in (
        "suggest", "run", "base", "group", "facts", "metrics", "note", "replay", "cap", "on_device")}
    return SearchFamily(
        name, model="", bases=tuple(sorted({b for r in recs.values() for b in r.bases})),
        suggest=bound["suggest"], run=bound["run"], base=bound["base"], group=bound["group"], facts=bound["facts"],
        metrics=bound["metrics"], note=bound["note"], replay=bound["replay"], first=_portfolio,
        cap=bound["cap"] if all(r.cap for r in recs.values()) else None,
        on_device=bound["on_device"] if all(r.on_device for r in recs.values()) else None, members=members)


# The peers (tabduel/search/peers.py): pytabkit's tuned defaults, one fit per trial with a new seed.
SEARCH_FAMILIES += tuple(
    SearchFamily(
        kind, model=kind, bases=(peers.BASE,),
        suggest=functools.partial(peers.suggest_peer, kind),
        run=functools.partial(peers.run_peers, kind), base=lambda spec: peers.BASE, group=None,
        facts=peers.facts, metrics=peers.facts, note=lambda r: "",
        cap=lambda spec, seconds: dataclasses.replace(spec, max_seconds=capped(spec.max_seconds, seconds)))
    for kind in (f.kind for f in FAMILIES if f.extra == "peers"))
_BY_NAME = {f.name: f for f in SEARCH_FAMILIES}
# tabduel's MLP families searched together within ONE budget: "the best MLP tabduel finds in N CPU-minutes"
SEARCH_FAMILIES += (union_family(MLP_PORTFOLIO, MLP_PORTFOLIO_MEMBERS),)
_BY_NAME[MLP_PORTFOLIO] = SEARCH_FAMILIES[-1]


def names() -> tuple[str, ...]:
    """The names of every search family, in registry order."""
    return tuple(_BY_NAME)


def search_family(name: str) -> SearchFamily:
    """The search family of a name; ConfigError (one line, naming the known ones) for any other."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"search family {name!r} is not one of: {', '.join(_BY_NAME)}") from None


def members_of(name: str) -> dict[str, SearchFamily]:
    """A union family's members' records, by name (empty for any other family)."""
    return {m: search_family(m) for m in search_family(name).members}


def bases_of(names: Sequence[str]) -> list[str]:
    """The features variants that the trials of these search families may read, sorted."""
    return sorted({base for name in names for base in search_family(name).bases})


@functools.lru_cache(maxsize=None)  # once per process: a bench worker runs many cells of one family
def preload(name: str, threads: int = 1, seed: int = 0) -> None:
    """Import what a search family's trials train with (its model module, code and libraries) and warm it up with
    one 2-step fit on 64 random rows, so that a budget's clock counts no import and no first-use set-up (the first
    torch fit of a process spends ~1.5 CPU-s on its own): each family alike is charged none."""
    import importlib

    import numpy as np

    from tabduel.engine.data import Data
    from tabduel.models.family import IMPORT_NAMES
    from tabduel.models.registry import family

    if search_family(name).members:  # a union family: its members, each once
        for member in search_family(name).members:
            preload(member, threads, seed)
        return
    fam = family(search_family(name).model)
    fam.require()
    for module in (*fam.code_modules, *(IMPORT_NAMES.get(p, p) for p in fam.packages), "tabduel.search.trials"):
        importlib.import_module(module)
    if fam.extra == "peers":  # pytabkit's estimators take no 2-step settings alike: imports (and their server) only
        peers.preload(fam.kind)
        return
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=64).astype(np.float32)
    names = ("a", "b", "c")
    fields = {f.name for f in dataclasses.fields(fam.config)}
    short = {k: 2 for k in ("epochs", "n_estimators") if k in fields}
    fam.fit(Data(x[:48], y[:48], x[48:], y[48:], names, names), fam.config(**short, **(
        {"threads": threads} if "threads" in fields else {})))


CPU_SPENT = "cpu_seconds"  # on an exception a trial raised: the CPU-seconds it spent before, which its budget pays


def run_trials(name: str, features_dir: str, specs: list[Any], with_test: bool = False, keep: bool = False
               ) -> list[Result]:
    """Train one group of a search family's trials in this process; one result per spec. An exception it raises
    carries the CPU-seconds spent on the group (attribute CPU_SPENT), so that a failed trial is charged: the
    process's, and those of the child process that a peer's fit ran in (attribute CHILD_CPU, which the process's
    clock does not see)."""
    start = time.process_time()
    try:
        return search_family(name).run(features_dir, specs, with_test, keep)
    except Exception as exc:  # pickled with the exception's __dict__
        setattr(exc, CPU_SPENT, time.process_time() - start + float(getattr(exc, CHILD_CPU, 0.0)))
        raise
