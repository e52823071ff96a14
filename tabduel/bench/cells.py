"""A bench's units of work and its numbers, as plain functions (the flow only wires them).

A cell is one (dataset, family, outer seed) (and, with --corrupt, one corruption and level): its family is searched
on the outer split's train and valid rows with the shared ask/tell loop, trials one after another in the process
that runs the cell, the budget counted in the CPU-seconds measured around each trial and every trial's training
capped at the budget left. The search reads copies of the features without their test split; the selected trial's
own fitted model (kept as the search ran) is then scored once on the test rows, which nothing before has opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import math
import os
import pickle
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from tabduel.bench import stats as bench_stats
from tabduel.infra.config import CORRUPT_FAMILIES, BenchConfig, SearchConfig
from tabduel.infra.errors import ConfigError, TabduelError
from tabduel.infra.store import atomic_write_bytes, atomic_write_json
from tabduel.models.registry import FAMILIES
from tabduel.search import compare
from tabduel.search.bagging import make_folds, run_bagged
from tabduel.search.families import names, preload, run_trials, search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.pruning import pruning_of
from tabduel.search.space import ENCODINGS, encoding_base
from tabduel.search.study import ELAPSED, PORTFOLIO, completed, counted_trials, open_storage, open_study
from tabduel.search.trials import TEST_SCORES
from tabduel.settings import Config

CLEAN = "none"
# tabduel's own MLP families (the torch families of the core install: mlp, realmlp, tabm) and the one chosen among
# them per outer split by its search's valid MSE
OWN_MLPS = tuple(f.kind for f in FAMILIES if f.device == "torch" and not f.extra)
BEST_MLP = "best_mlp"
PLAIN_ENCODINGS = tuple(e for e in ENCODINGS if e not in ("ple", "periodic"))


@dataclass(frozen=True)
class Cell:
    """One unit of work: a family searched and tested on one outer split of one (possibly corrupted) dataset."""

    dataset: str
    family: str  # a search family (mlp, xgboost, realmlp, tabm, peer_*), or <mlp|realmlp>-<preprocessing> (--corrupt)
    seed: int
    corruption: str = CLEAN
    level: float = 0.0

    @property
    def condition(self) -> str:
        """'none', or the corruption and its level: 'missing-0.1'."""
        return CLEAN if self.corruption == CLEAN else f"{self.corruption}-{self.level:g}"

    @property
    def id(self) -> str:
        """A path-safe unique name: dataset/condition/family-s<seed>."""
        return f"{self.dataset}/{self.condition}/{self.family}-s{self.seed}"


def variant(family: str) -> tuple[str, tuple[str, ...], tuple[str, ...] | None]:
    """(base family, MLP encodings searched, numeric maps searched or None for the settings' own) of a family:
    mlp-ple searches the PLE embedding only; mlp-robust the plain encodings with the robust map only;
    realmlp-quantile is realmlp with its numeric setting quantile (variant_spec)."""
    if family in names():
        return family, ENCODINGS, None
    base, _, prep = family.partition("-")
    if base not in CORRUPT_FAMILIES or prep not in CORRUPT_FAMILIES[base]:
        raise ConfigError(f"bench family {family!r} is not one of: {', '.join(names())}, mlp-<preprocessing>, "
                          f"realmlp-<{'|'.join(CORRUPT_FAMILIES['realmlp'])}>")
    if base == "realmlp":
        return "realmlp", ENCODINGS, None
    if prep == "ple":
        return "mlp", ("ple",), ("standard",)
    return "mlp", PLAIN_ENCODINGS, (prep,)


def variant_spec(family: str, spec: Any) -> Any:
    """A trial's spec as a bench family runs it: a realmlp-<numeric> variant's settings take its numeric input map."""
    base, _, prep = family.partition("-")
    return dataclasses.replace(spec, numeric=prep) if base == "realmlp" and prep else spec


def bases_of(family: str) -> tuple[str, ...]:
    """The features variants a family's trials read."""
    base, encodings, _ = variant(family)
    return tuple(sorted({encoding_base(e) for e in encodings} & set(search_family(base).bases)))


def budget_label(b: BenchConfig) -> str:
    """The budget as a file-name part: '300s' (CPU-seconds per family), '6s-3t', or '5t'."""
    parts = []
    if b.minutes:
        parts.append(f"{b.minutes * 60:g}s")
    if b.trials:
        parts.append(f"{b.trials}t")
    if b.bagging:
        parts.append(f"bag{b.bagging}")
    return "-".join(parts)


def bench_name(suite: str, b: BenchConfig) -> str:
    """bench.name, else bench-<suite>-<budget>[-corrupt[-realmlp]]."""
    if b.name:
        return b.name
    corrupt = ("-corrupt" + ("" if b.corrupt_family == "mlp" else f"-{b.corrupt_family}")) if b.corrupt else ""
    return f"bench-{suite}-{budget_label(b)}{corrupt}"


def bench_families(cfg: Config) -> list[str]:
    """The families compared: the settings' own, or with --corrupt xgboost against each preprocessing of
    bench.corrupt_family."""
    b = cfg.bench
    return ["xgboost"] + [f"{b.corrupt_family}-{p}" for p in b.preprocessing] if b.corrupt else list(b.families)


def budget_clock(device: str) -> str:
    """What a bench's budgets count on a device: CPU-seconds on the CPU (a busy machine cuts no trial shorter), wall
    seconds on a GPU (each trial ends by copying its predictions to the host, which waits for the GPU)."""
    return "cpu" if device == "cpu" else "wall"


def check_device(device: str, families: list[str], cuda: bool | None = None) -> None:
    """ConfigError in one line unless every family can train on the bench's device and, for cuda, torch sees one
    (cuda: None asks runtime.cuda_available)."""
    if device == "cpu":
        return
    stuck = [f for f in families if search_family(variant(f)[0]).on_device is None]
    if stuck:
        raise ConfigError(f"bench.device = 'cuda': {', '.join(stuck)} train(s) only on the CPU; bench them without "
                          f"--device cuda")
    if cuda is None:
        from tabduel.infra.runtime import cuda_available

        cuda = cuda_available()
    if not cuda:
        raise ConfigError("bench.device = 'cuda': torch sees no CUDA device on this machine")


def cell_search_config(cfg: Config, cell: Cell, threads: int) -> SearchConfig:
    """The search settings of a cell: the bench's budget, the outer seed as the sampler's and models' seed, the
    variant's numeric maps, and trial time limits on the budget's clock (budget_clock)."""
    _, _, numeric = variant(cell.family)
    from tabduel.search.portfolio import portfolio_of

    s = dataclasses.replace(cfg.search, study="cell", families=(variant(cell.family)[0],), trials=cfg.bench.trials,
                            portfolio=portfolio_of(cfg.search.portfolio, cell.dataset),
                            minutes=cfg.bench.minutes, seed=cell.seed, workers=1, threads=threads, runner="process",
                            address="", storage="", trial_clock=budget_clock(cfg.bench.device))
    return dataclasses.replace(s, numeric=numeric) if numeric else s


TRIALS_DIR = ".trials"  # beside a cell's journal: the fitted models of its best trials
LIBRARY_SIZE = 50  # trials a cell keeps for its test and its post-hoc ensemble (Caruana picks among the best)
HELD_OUT = "test.parquet"  # the split that only score_on_test reads


class TrialLibrary:
    """The fitted models of a cell's best complete trials (its `size` lowest valid MSEs), kept as trials finish: each
    in a file of a folder beside the cell's journal, so that a resumed cell tests the model its search selected and
    ensembles the trials its search fitted. The selected trial is the library's best (first of ties)."""

    def __init__(self, folder: str | Path, size: int = LIBRARY_SIZE, inputs: str | Path | None = None):
        self.folder, self.size = Path(folder), size
        self.entries: dict[int, tuple[float, Any]] = {}  # trial number -> (valid MSE, kept model)
        for f in sorted(self.folder.glob("*.pkl")) if self.folder.is_dir() else []:
            with f.open("rb") as fh:
                number, value, model = pickle.load(fh)  # tabduel's own files, written below
            # inputs: the cell's search inputs now (a bench folder moved since keeps its kept models' features)
            self.entries[number] = (value, model if inputs is None else model.rebased(inputs))

    def __call__(self, number: int, result: dict[str, Any], model: Any) -> None:
        """loop.Keep: keep a complete trial's model while it is among the `size` best; drop the one it displaces."""
        value = result["valid_mse"]
        if result.get("pruned") or not math.isfinite(value):
            return
        worst = max(self.entries, key=lambda n: (self.entries[n][0], n)) if len(self.entries) >= self.size else None
        if worst is not None and (value, number) >= (self.entries[worst][0], worst):
            return
        self.entries[number] = (value, model)
        atomic_write_bytes(self.folder / f"{number:06d}.pkl",
                           pickle.dumps((number, value, model), protocol=pickle.HIGHEST_PROTOCOL))
        if worst is not None:
            del self.entries[worst]
            (self.folder / f"{worst:06d}.pkl").unlink(missing_ok=True)

    def best(self) -> int:
        """The selected trial's number (-1 when the library is empty)."""
        return min(self.entries, key=lambda n: (self.entries[n][0], n)) if self.entries else -1

    def ordered(self) -> list[tuple[int, Any]]:
        """(trial number, kept model) of every trial with valid predictions, by trial number."""
        return [(n, self.entries[n][1]) for n in sorted(self.entries) if self.entries[n][1].valid is not None]


def search_inputs(features_dir: str | Path, root: str | Path) -> Path:
    """<root>/<features dir's name>/: the features variant without its test split (hard links, copies where the
    file system refuses them), made once: what a cell's search reads, so that no trial can open the test rows."""
    src = Path(features_dir)
    dest = Path(root) / src.name
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{src.name}-", dir=dest.parent))
    for f in src.iterdir():
        if f.name == HELD_OUT or not f.is_file():
            continue
        try:
            os.link(f, tmp / f.name)
        except OSError:
            shutil.copy2(f, tmp / f.name)
    try:
        os.rename(tmp, dest)
    except OSError:  # another cell made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def score_on_test(library: TrialLibrary, selected: int, seen: dict[str, str], features: dict[str, str]
                  ) -> dict[str, Any]:
    """The selected trial's model, and the post-hoc (Caruana) ensemble of the library's trials fitted on their valid
    predictions, scored once on the held-out test split (each features variant's test file read once, here and
    nowhere else): tested_valid_mse (the selected model's valid MSE, predicted again), its test scores, and the
    ensemble's valid and test scores and weights. Each kept model predicts on the threads its trial's valid
    predictions were made on (a float32 net's outputs move in the last bit with them)."""
    from tabduel.data.features import load_xy
    from tabduel.models.training import native_missing
    from tabduel.search.ensemble import caruana_weights, mix
    from tabduel.search.scores import mse
    from tabduel.search.trials import scores_on_test

    cpu = time.process_time()
    held_out = {view: Path(features[base]) / HELD_OUT for base, view in seen.items()}
    kept = library.entries[selected][1]
    valid, y_valid = kept.predict_valid()  # a bagged trial's: its out-of-fold predictions
    members = library.ordered()
    weights = caruana_weights(np.stack([m.valid for _, m in members]), y_valid)
    used = [(n, m, w) for (n, m), w in zip(members, weights) if w > 0]
    tests: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # source -> (x_test, y_test), each file read once
    for _, m, _ in [(selected, kept, 1.0), *used]:
        if m.source not in tests:
            tests[m.source] = load_xy(str(held_out[m.source]), m.manifest, native_missing(m.kind))
    x_test, y_test = tests[kept.source]
    out = {"tested_valid_mse": mse(valid, y_valid), **scores_on_test(kept.predict(x_test), y_test, kept.manifest)}
    ensemble_test = mix(np.stack([m.predict(tests[m.source][0]) for _, m, _ in used]),
                        np.array([w for *_, w in used]))
    ensemble = scores_on_test(ensemble_test.astype(np.float32), y_test, kept.manifest)
    out.update({f"ensemble_{k}": v for k, v in ensemble.items()},
               ensemble_valid_mse=mse(mix(np.stack([m.valid for _, m, _ in used]), np.array([w for *_, w in used])),
                                      y_valid),
               ensemble_weights={str(n): float(w) for n, _, w in used}, ensemble_library=len(members),
               test_cpu_seconds=time.process_time() - cpu)
    return out


# A process-wide fact, so process-wide state: CPU time is the process's, so one cell at a time may count it.
_CELL_RUNNING = threading.Lock()


@contextlib.contextmanager
def one_cell_per_process(cell: Cell) -> Iterator[None]:
    """Hold the process's one cell slot while a cell's search runs; TabduelError in one line when another cell
    holds it (a Dask worker with several threads runs cells side by side in one process, and each would be charged
    the others' CPU-seconds)."""
    if not _CELL_RUNNING.acquire(blocking=False):
        raise TabduelError(f"{cell.id}: another bench cell is running in this process, and a cell's budget counts "
                           "the process's CPU-seconds; start Dask workers with --nthreads 1")
    try:
        yield
    finally:
        _CELL_RUNNING.release()


def run_cell(cell: Cell, features: dict[str, str], cfg: Config, journal: str | Path, threads: int = 1,
             log: Any = None, inputs: str | Path | None = None) -> dict[str, Any]:
    """Search the cell's family on its split's train/valid within the budget (resuming the cell's study when its
    journal has one), reading copies of the features without their test split (under `inputs`, by default an
    `inputs` folder beside the journal); then score the selected trial's own fitted model once on test. `log`
    (info, warning) gets the search's budget line and its trial lines."""
    family, encodings, _ = variant(cell.family)
    fam = search_family(family)
    s = cell_search_config(cfg, cell, threads)
    journal = Path(journal)
    root = Path(inputs) if inputs else journal.parent / "inputs"
    seen = {base: str(search_inputs(path, root)) for base, path in features.items()}
    bag = cfg.bench.bagging  # the same folds for every family of an outer split
    folds = {base: make_folds(view, root, bag, cell.seed) for base, view in seen.items()} if bag else {}
    storage = open_storage(str(journal))
    import optuna
    from optuna.trial import TrialState

    exists = f"cell-{family}" in optuna.get_all_study_names(storage)
    study, budget = open_study(s, family, storage, resume=exists, more_trials=0)
    device = cfg.bench.device
    preload(family, threads)  # before the clock: no family is charged for loading its libraries
    library = TrialLibrary(journal.with_name(journal.name + TRIALS_DIR), inputs=root)
    wall = time.perf_counter()

    def submit(label: str, base: str, specs: list[Any], seconds: float = math.inf) -> Inline:
        specs = [variant_spec(cell.family, spec) for spec in specs]
        if fam.on_device is not None:
            specs = [fam.on_device(spec, device) for spec in specs]
        if bag:
            return Inline(lambda: run_bagged(family, folds[base], specs, True, seen[base], seconds))
        return Inline(lambda: run_trials(family, seen[base], specs, False, True))

    with one_cell_per_process(cell):
        loop = run_family(family, study, budget, s, 1, threads, submit, first_of, log=log, clock=budget_clock(device),
                          encodings=encodings, keep=library, folds=bag or 1,  # a bagged trial's fits are not pruned
                          pruning=None if bag else pruning_of(s, str(journal), study.study_name))
    done = completed(study)
    if not done:  # e.g. a peer whose one fit would outlast the budget, stopped at its cap
        why = [t.user_attrs["error"] for t in study.get_trials(deepcopy=False) if "error" in t.user_attrs]
        raise RuntimeError(f"{cell.id}: no trial finished within the budget"
                           + (f"; the last failed: {why[-1]}" if why else ""))
    best = min(done, key=lambda t: t.value)
    spec = variant_spec(cell.family, fam.rebuild(best.params, s, threads))
    base = fam.base(spec)
    if library.best() == best.number:
        tested = {"tested": "selected", **score_on_test(library, best.number, seen, features)}
    elif bag:  # a kill between a trial's tell and the file that keeps its model: the best config bagged again
        tested = refit_bagged(family, folds[base], fam.on_device(spec, device) if fam.on_device else spec,
                              seen[base], features[base])
    else:  # a kill between a trial's tell and the file that keeps its model: the best config fitted again
        refit = fam.run(features[base], [fam.on_device(spec, device) if fam.on_device else spec], True)[0]
        tested = {"tested": "refit", "tested_valid_mse": refit["valid_mse"], "test_cpu_seconds": refit["cpu_seconds"],
                  **{k: refit.get(k, math.nan) for k in TEST_SCORES}}
    if tested["tested"] == "refit" and log:
        log.warning(f"{cell.id}: the selected trial {best.number}'s model was not kept (a resumed cell); its "
                    f"config was fitted again for the test")
    curve = sorted(((t.user_attrs.get(ELAPSED, math.nan), t.value) for t in done), key=lambda p: p[0])
    counted = counted_trials(study)  # pruned, diverged or failed trials cost budget; ones a kill interrupted do not
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    return {"cell": dataclasses.asdict(cell), "id": cell.id, "trials": counted,
            "trials_failed": counted - len(done) - pruned, "trials_pruned": pruned,
            "cpu_seconds": loop.spent, "wall_seconds": time.perf_counter() - wall,
            "budget_cpu_seconds": None if math.isinf(budget.seconds) else budget.seconds,
            "budget_trials": None if math.isinf(budget.trials) else int(budget.trials),
            "best_trial": best.number, "best_valid_mse": best.value, "best_params": best.params, **tested,
            "features": {b: features[b] for b in bases_of(cell.family)}, "features_read": features[base],
            "curve": [[float(x), float(v)] for x, v in curve], "worker": best.user_attrs.get("worker", ""),
            "device": best.user_attrs.get("device", ""), "budget_clock": budget_clock(device), "bagging": bag,
            "trial_log": trial_log(study), **({"portfolio": study.user_attrs.get(PORTFOLIO)} if fam.members else {})}


TRIAL_LOG_INLINE_BYTES = 1 << 20  # a cell's trial log above this goes beside it, gzipped (thousands of XGBoost trials)


def write_cell(path: str | Path, row: dict[str, Any]) -> None:
    """Atomically write a cell's result JSON; a trial log of more than 1 MiB is written first, gzipped, beside it
    (<cell>.trial_log.json.gz, named by 'trial_log_file'), so that committed cells stay small."""
    from tabduel.search.portfolio import TRIAL_LOG_SUFFIX

    path = Path(path)
    log = json.dumps(row.get("trial_log", []), default=str).encode()
    if len(log) > TRIAL_LOG_INLINE_BYTES:
        name = path.name.removesuffix(".json") + TRIAL_LOG_SUFFIX
        atomic_write_bytes(path.parent / name, gzip.compress(log, mtime=0))
        row = {k: v for k, v in row.items() if k != "trial_log"} | {"trial_log_file": name}
    atomic_write_json(path, row)


def refit_bagged(family: str, folds: Any, spec: Any, view: str, features: str) -> dict[str, Any]:
    """The test scores of a config bagged again on the cell's folds (its out-of-fold MSE as tested_valid_mse)."""
    from tabduel.data.features import load_xy
    from tabduel.models.training import native_missing
    from tabduel.search.trials import scores_on_test

    row = run_bagged(family, folds, [spec], True, view)[0]
    out = {"tested": "refit", "tested_valid_mse": row["valid_mse"], "test_cpu_seconds": row["cpu_seconds"]}
    kept = row.get("model")
    if kept is None:  # a fit diverged this time: no model to test, as an unbagged refit that diverged
        return {**out, **dict.fromkeys(TEST_SCORES, math.nan)}
    x, y = load_xy(str(Path(features) / HELD_OUT), kept.manifest, native_missing(kept.kind))
    return {**out, **scores_on_test(np.asarray(kept.predict(x), dtype=np.float32), y, kept.manifest)}


def trial_log(study: Any) -> list[dict[str, Any]]:
    """Every finished trial of a cell's study: number, params, state, valid MSE (None unless complete), CPU-seconds,
    'first' for a config the study queued before any sampled one (defaults, a portfolio's): what `tabduel
    portfolio build` learns from; and for a failed trial, why (a peer stopped at its cap, an exception)."""
    from optuna.trial import TrialState

    from tabduel.search.study import FIRST

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        value = t.value if t.state == TrialState.COMPLETE else None
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.params, "valid_mse": value,
                     "cpu_seconds": t.user_attrs.get("cpu_seconds"), "first": bool(t.user_attrs.get(FIRST)),
                     **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})})
    return rows


# ---- the numbers of a bench ---------------------------------------------------------------------------------------


def over_budget(r: dict[str, Any]) -> bool:
    """Whether a cell spent more than its budget allows: 2% + 2 seconds over budget_cpu_seconds."""
    budget = r.get("budget_cpu_seconds")
    return budget is not None and r["cpu_seconds"] > budget * 1.02 + 2.0


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def dataset_table(results: list[dict[str, Any]], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """{dataset: {family: per-seed lists and their means}} of the clean cells, plus each dataset's paired test of
    mlp against xgboost over the outer seeds and its outcome at the 2% tolerance."""
    out: dict[str, dict[str, Any]] = {}
    clean = [r for r in results if r["cell"]["corruption"] == CLEAN]
    for r in sorted(clean, key=lambda r: (r["cell"]["dataset"], r["cell"]["family"], r["cell"]["seed"])):
        c = r["cell"]
        fam = out.setdefault(c["dataset"], {}).setdefault(c["family"], {
            "seeds": [], "test_mse": [], "test_r2": [], "test_r2_orig": [], "test_rmse_orig": [], "cpu_seconds": [],
            "wall_seconds": [], "trials": []})
        fam["seeds"].append(c["seed"])
        for k in ("test_mse", "test_r2", "test_r2_orig", "test_rmse_orig", "cpu_seconds", "wall_seconds", "trials"):
            fam[k].append(r[k])
        fam.setdefault("ensemble_test_mse", []).append(r.get("ensemble_test_mse", math.nan))
    for name, families in out.items():
        for fam in families.values():
            for k in ("test_mse", "test_r2", "test_r2_orig", "test_rmse_orig", "cpu_seconds"):
                fam[f"{k}_mean"] = float(np.mean(fam[k]))
            fam["test_mse_sd"] = _sd(fam["test_mse"])
            # T+E: the post-hoc ensemble of each cell's trials (NaN for cells made before ensembles)
            fam["ensemble_test_mse_mean"] = float(np.mean(fam["ensemble_test_mse"]))
        if {"mlp", "xgboost"} <= set(families):
            rows = [{"family": f, "seed": s, "test_mse": v} for f in ("mlp", "xgboost")
                    for s, v in zip(families[f]["seeds"], families[f]["test_mse"])]
            try:
                families["paired"] = compare.paired_comparison(rows)
            except ValueError:  # fewer than 2 seeds with both families finished
                pass
            families["outcome_mlp_vs_xgboost"] = bench_stats.outcome(families["mlp"]["test_mse_mean"],
                                                                     families["xgboost"]["test_mse_mean"])
        for f in [f for f in families if f not in ("xgboost", "paired") and isinstance(families[f], dict)
                  and "seeds" in families[f] and "xgboost" in families]:
            families[f]["vs_xgboost"] = versus(families[f], families["xgboost"])
    return out


def versus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A family's cells against another's (XGBoost's) on one dataset, for T (the selected models) and for T+E (the
    post-hoc ensembles, each against the other's): the paired tests over their common outer seeds, and the outcome of
    the means at the 2% tolerance, all over the seeds where both have the score (none: its key is left out)."""
    out: dict[str, Any] = {}
    for label, key in (("T", "test_mse"), ("T+E", "ensemble_test_mse")):
        scores = [{s: v for s, v in zip(x["seeds"], x[key]) if math.isfinite(v)} for x in (a, b)]
        common = sorted(set(scores[0]) & set(scores[1]))  # means over the same seeds as the paired test
        if not common:
            continue
        rows = [{"family": fam, "seed": s, "test_mse": score[s]} for fam, score in zip("ab", scores) for s in common]
        row: dict[str, Any] = {"mean": float(np.mean([scores[0][s] for s in common])),
                               "against": float(np.mean([scores[1][s] for s in common]))}
        row["outcome"] = bench_stats.outcome(row["mean"], row["against"])
        row["at_or_below"] = row["mean"] <= row["against"]
        try:
            p = compare.paired_comparison(rows, "a", "b")
            row.update(diff_mean=p["diff_mean"], wins=p["a_wins"], n=p["n"], t_p_value=p["t_p_value"],
                       wilcoxon_p_value=p["wilcoxon_p_value"])
        except ValueError:  # fewer than 2 common seeds
            pass
        out[label] = row
    return out


def goal_vs_xgboost(datasets: dict[str, dict[str, Any]], families: list[str]) -> dict[str, Any]:
    """Per family: on how many datasets its mean test MSE is at or below XGBoost's, and within 2% of it or better,
    for T and for T+E (T+E against XGBoost's T+E)."""
    out: dict[str, Any] = {}
    for f in families:
        rows = [fams[f]["vs_xgboost"] for fams in datasets.values() if f in fams and "vs_xgboost" in fams[f]]
        if not rows:
            continue
        out[f] = {label: {"datasets": sum(label in r for r in rows),
                          "at_or_below": sum(r[label]["at_or_below"] for r in rows if label in r),
                          "within_tolerance_or_below": sum(r[label]["outcome"] != "loss" for r in rows if label in r)}
                  for label in ("T", "T+E")}
    return out


def best_mlp_cells(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per clean dataset and outer seed with two or more of tabduel's own MLP families (OWN_MLPS): the one whose
    search found the lowest valid MSE, as the cell of family BEST_MLP (its refit's test scores: the choice never saw
    the test rows). Its CPU-seconds and trials are those of all the families it chose among."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        c = r["cell"]
        if c["corruption"] == CLEAN and c["family"] in OWN_MLPS:
            by.setdefault((c["dataset"], c["seed"]), []).append(r)
    out = []
    for _, rows in sorted(by.items()):
        if len(rows) < 2:
            continue
        best = min(rows, key=lambda r: r["best_valid_mse"])
        out.append({**best, "cell": {**best["cell"], "family": BEST_MLP}, "chosen_family": best["cell"]["family"],
                    "chosen_among": sorted(r["cell"]["family"] for r in rows),
                    "cpu_seconds": float(sum(r["cpu_seconds"] for r in rows)),
                    "wall_seconds": float(sum(r["wall_seconds"] for r in rows)),
                    "trials": int(sum(r["trials"] for r in rows))})
    return out


def best_mlp_goal(datasets: dict[str, dict[str, Any]], tolerance: float = bench_stats.TOLERANCE) -> dict[str, Any]:
    """Per dataset, BEST_MLP's mean test MSE against XGBoost's (its outcome at the tolerance) and, where the bench
    ran it, the reference RealMLP-TD's (peer_realmlp); and how many datasets meet each bar."""
    rows: dict[str, Any] = {}
    for name, fams in datasets.items():
        if BEST_MLP not in fams or "xgboost" not in fams:
            continue
        m, x = fams[BEST_MLP]["test_mse_mean"], fams["xgboost"]["test_mse_mean"]
        row = {"best_mlp": m, "xgboost": x, "gap_vs_xgboost": (m - x) / x, "outcome_vs_xgboost":
               bench_stats.outcome(m, x, tolerance), "chosen": fams[BEST_MLP]["chosen"]}
        if "peer_realmlp" in fams:
            p = fams["peer_realmlp"]["test_mse_mean"]
            row.update(realmlp_td=p, gap_vs_realmlp_td=(m - p) / p,
                       within_tolerance_of_realmlp_td=m <= p * (1 + tolerance))
        rows[name] = row
    met = sum(r["outcome_vs_xgboost"] != "loss" for r in rows.values())
    with_peer = [r for r in rows.values() if "realmlp_td" in r]
    return {"tolerance": tolerance, "datasets": rows, "at_or_within_tolerance_of_xgboost": met,
            "half_or_more": bool(rows) and met * 2 >= len(rows),
            "never_worse_than_realmlp_td_beyond_tolerance": (all(r["within_tolerance_of_realmlp_td"]
                                                                 for r in with_peer) if with_peer else None)}


def loss_table(datasets: dict[str, dict[str, Any]], families: list[str], key: str = "test_mse_mean"
               ) -> pd.DataFrame:
    """Datasets x families of mean test MSE over the outer seeds (key: of the selected models, or
    ensemble_test_mse_mean of the post-hoc ensembles); datasets missing a family, or its score, left out."""
    rows = {name: {f: fams[f][key] for f in families} for name, fams in datasets.items()
            if all(f in fams and math.isfinite(fams[f].get(key, math.nan)) for f in families)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=families)


def ensemble_table(datasets: dict[str, dict[str, Any]], families: list[str]) -> pd.DataFrame:
    """Datasets x (each family's T and T+E) of mean test MSE: the selected models ("<family>") beside the post-hoc
    ensembles ("<family>+E"), on the datasets where every family has both; empty when no cell has an ensemble."""
    single = loss_table(datasets, families)
    ensembled = loss_table(datasets, families, "ensemble_test_mse_mean")
    common = single.index.intersection(ensembled.index)
    if not len(common):
        return pd.DataFrame()
    return pd.concat([single.loc[common], ensembled.loc[common].add_suffix("+E")], axis=1)


def corruption_table(results: list[dict[str, Any]], corruptions: list[str]) -> dict[str, Any]:
    """Per corruption, level and MLP variant: the relative gap (mlp - xgboost) / xgboost of mean test MSE, averaged
    over the datasets (each dataset's gap from its outer-seed means); level 0 is the clean cells."""
    means: dict[tuple[str, str, float, str], list[float]] = {}
    for r in results:
        c = r["cell"]
        means.setdefault((c["dataset"], c["corruption"], c["level"], c["family"]), []).append(r["test_mse"])
    out: dict[str, Any] = {}
    for corruption in corruptions:
        gaps: dict[str, dict[str, list[float]]] = {}
        for (dataset, corr, level, family), values in means.items():
            if family == "xgboost" or corr not in (CLEAN, corruption):
                continue
            ref = means.get((dataset, corr, level, "xgboost"))
            if not ref:
                continue
            gap = (float(np.mean(values)) - float(np.mean(ref))) / float(np.mean(ref))
            gaps.setdefault(family, {}).setdefault(f"{level:g}", []).append(gap)
        out[corruption] = {fam: {lvl: {"gap_mean": float(np.mean(v)), "datasets": len(v)}
                                 for lvl, v in sorted(levels.items(), key=lambda kv: float(kv[0]))}
                           for fam, levels in sorted(gaps.items())}
    return out


def _seed_gaps(results: list[dict[str, Any]]) -> dict[tuple[str, int, str, float, str], float]:
    """{(dataset, seed, corruption, level, mlp variant): (mlp - xgboost) / xgboost test MSE on that very outer split
    and condition}: both families saw the same corrupted rows, so the pair is matched."""
    mse = {(r["cell"]["dataset"], r["cell"]["seed"], r["cell"]["corruption"], r["cell"]["level"], r["cell"]["family"]):
           r["test_mse"] for r in results}
    return {key: (v - mse[ref]) / mse[ref] for key, v in mse.items()
            if key[4] != "xgboost" and (ref := (*key[:4], "xgboost")) in mse}


def corruption_tests(results: list[dict[str, Any]], corruptions: list[str], reference: str | None = None
                     ) -> dict[str, Any]:
    """Hypothesis 2, per corruption at its top level, over the matched (dataset, outer seed) pairs: does each MLP
    variant's gap to XGBoost grow from level 0 ('growth', one-sided Wilcoxon), and is each variant's gap at the top
    level smaller than the reference preprocessing's ('below_reference', one-sided Wilcoxon; the reference: the
    '-standard' variant by default)? Each test's mean difference has a 95% bootstrap interval over the pairs, and its
    p value a Holm adjustment over every test of the document (p_holm)."""
    gaps = _seed_gaps(results)
    if reference is None:
        standard = sorted({k[4] for k in gaps if k[4].endswith("-standard")})
        reference = standard[0] if standard else "mlp-standard"
    out: dict[str, Any] = {}
    for corruption in corruptions:
        levels = sorted({k[3] for k in gaps if k[2] == corruption})
        if not levels:
            continue
        top = levels[-1]
        pairs = sorted({(k[0], k[1]) for k in gaps if k[2] == corruption and k[3] == top})
        variants = sorted({k[4] for k in gaps if k[2] == corruption})
        growth, below = {}, {}
        for v in variants:
            d = [gaps[(ds, s, corruption, top, v)] - gaps[(ds, s, CLEAN, 0.0, v)] for ds, s in pairs
                 if (ds, s, corruption, top, v) in gaps and (ds, s, CLEAN, 0.0, v) in gaps]
            growth[v] = _diffs(d)
            if v != reference:
                d = [gaps[(ds, s, corruption, top, reference)] - gaps[(ds, s, corruption, top, v)] for ds, s in pairs
                     if (ds, s, corruption, top, v) in gaps and (ds, s, corruption, top, reference) in gaps]
                below[v] = _diffs(d)
        out[corruption] = {"level": top, "reference": reference, "growth": growth, "below_reference": below}
    tests = {(c, kind, v): row for c, t in out.items() for kind in ("growth", "below_reference")
             for v, row in t[kind].items()}
    adjusted = bench_stats.holm({k: row["p_greater"] for k, row in tests.items() if math.isfinite(row["p_greater"])})
    for k, row in tests.items():
        row["p_holm"] = adjusted.get(k, math.nan)
    return out


def _diffs(d: list[float]) -> dict[str, Any]:
    low, high = bench_stats.bootstrap_mean_ci(d)
    return {"mean": float(np.mean(d)) if d else math.nan, "pairs": len(d), "positive": int(sum(x > 0 for x in d)),
            "p_greater": bench_stats.wilcoxon_greater(d), "ci95": [low, high]}


def result(suite: str, b: BenchConfig, seeds: list[int], results: list[dict[str, Any]], families: list[str]
           ) -> dict[str, Any]:
    """The bench's result document (the issue's keys and more)."""
    best = best_mlp_cells(results)
    datasets = dataset_table(results + best, seeds)
    for r in best:  # which family each outer seed's choice fell on
        datasets[r["cell"]["dataset"]][BEST_MLP].setdefault("chosen", []).append(r["chosen_family"])
    table = loss_table(datasets, families)  # BEST_MLP is not ranked: it is made of the families ranked
    aggregate = bench_stats.summary(table) if len(table) else {}
    if len(table):
        aggregate["normalized"] = {d: {f: float(v) for f, v in row.items()}
                                   for d, row in bench_stats.normalized(table).iterrows()}
    both = ensemble_table(datasets, families)  # T and T+E ranked together: does ensembling change the order?
    ensembled = bench_stats.summary(both) if len(both) else {}
    doc = {"suite": suite, "budget": {"cpu_seconds_per_family": b.minutes * 60 if b.minutes else None,
                                      "trials": b.trials or None, "clock": budget_clock(b.device)},
           "device": b.device, "devices_seen": sorted({r.get("device", "") for r in results} - {""}),
           "over_budget_cells": [Cell(**r["cell"]).id for r in results if over_budget(r)],
           "tested_not_selected": [Cell(**r["cell"]).id for r in results if r.get("tested", "") != "selected"],
           "outer_seeds": seeds, "families": families, "datasets": datasets, "aggregate": aggregate,
           "cells": len(results), "cpu_seconds_total": float(sum(r["cpu_seconds"] for r in results)),
           "wall_seconds_cells_total": float(sum(r["wall_seconds"] for r in results))}
    if ensembled:
        doc["aggregate_ensemble"] = ensembled
    if goal := goal_vs_xgboost(datasets, families):
        doc["vs_xgboost"] = goal
    if best:
        doc["best_mlp"] = best_mlp_goal(datasets)
    if b.corrupt:
        doc["corruption"] = corruption_table(results, list(b.corrupt))
        doc["corruption_tests"] = corruption_tests(results, list(b.corrupt))
    return doc


def corrupted_features(table: pd.DataFrame, spec: Any, fcfg: Any, corruption: str, level: float
                       ) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The features of a table corrupted inside its outer split: the corruption touches the split's train and
    valid rows (seeded by the split seed, so every family sees the same corruption), then the features step fits
    its imputation, scaling and target transform on the corrupted train rows."""
    from tabduel.data.corruptions import corrupt
    from tabduel.data.features import make_features, split_indices

    parts = split_indices(len(table), fcfg.split_seed, fcfg.train_frac, fcfg.valid_frac)
    rows = np.sort(np.concatenate([parts["train"], parts["valid"]]))
    bad, bad_spec = corrupt(corruption, table.reset_index(drop=True), spec, rows, level, fcfg.split_seed)
    splits, manifest = make_features(bad, bad_spec, fcfg)
    manifest["corruption"] = {"name": corruption, "level": level, "rows_corrupted": int(len(rows))}
    return splits, manifest
