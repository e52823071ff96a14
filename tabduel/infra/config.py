"""Frozen, typed settings for every step, built once and passed down: the step sections.

Config, which holds them and every registered model family's section, is tabduel/settings.py. The machinery (fields
with help, choices and bounds; build, typed, coerce, merge...) is tabduel/infra/settings.py, the model sections of
the built-in families tabduel/infra/model_sections.py; both are re-exported here, so `from tabduel.infra.config
import MLPConfig, merge` keeps working.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tabduel.infra.errors import ConfigError  # noqa: F401  (re-exported)
from tabduel.infra.model_sections import (  # noqa: F401  (re-exported)
    SCHEDULES,
    TIME_CLOCKS,
    TORCH_DEVICES,
    XGBOOST_DEVICES,
    LinearConfig,
    MLPConfig,
    PeerCatBoostConfig,
    PeerConfig,
    PeerLGBMConfig,
    PeerRealMLPConfig,
    PeerTabMConfig,
    RealMLPConfig,
    TabMConfig,
    XGBoostConfig,
)
from tabduel.infra.settings import (  # noqa: F401  (re-exported)
    UNION_FAMILIES,
    ModelSettings,
    _check,
    _opt,
    build,
    check_choice,
    coerce,
    flatten,
    merge,
    model_kinds,
    search_families,
    to_plain,
    typed,
    unknown_message,
)

# What `tabduel run` trains when neither the settings nor the dataset spec name the models, by device (docs/results.md,
# "Which MLP the pipeline trains by default"): on a CPU the RealMLP-style MLP, whose default fit of a 20,000-row file
# takes minutes on 2 cores; on CUDA TabM, the family with the best valid MSE at its defaults on the dev suite, whose
# fits take 5-20x longer than RealMLP's on a CPU. Each with XGBoost and the linear baseline. The built-in Seoul spec
# names its own: the original analysis's NN5 ("mlp").
DEFAULT_MODELS = {"cpu": ("realmlp", "xgboost", "linear"), "cuda": ("tabm", "xgboost", "linear")}
# The default of `--time-limit`: seconds of training per model fit. Two fits that reach it, plus a run's other steps,
# keep `tabduel run` on a 50,000-row file under 10 minutes on 2 cores (docs/results.md, "The first run").
DEFAULT_TIME_LIMIT = 240.0


@dataclass(frozen=True)
class TrackingConfig:
    """Where MLflow runs go."""

    experiment: str = _opt("", "MLflow experiment name; empty: the dataset spec's name")
    tracking_uri: str = _opt(
        "", "MLflow tracking URI; empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db"
    )


@dataclass(frozen=True)
class IngestConfig:
    """Which raw file and which dataset spec to ingest."""

    source: str = _opt("", "local raw CSV; empty: download the spec's URL into <data_dir>/raw/")
    dataset: str = _opt("", "dataset spec TOML; empty: the built-in Seoul Bike spec")


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature encodings and the seeded train/valid/test split."""

    split_seed: int = _opt(4751, "seed of the train/valid/test permutation")
    train_frac: float = _opt(0.6, "fraction of rows in the train split")
    valid_frac: float = _opt(0.2, "fraction of rows in the valid split (test gets the rest)")
    onehot: tuple[str, ...] = _opt((), "columns to one-hot encode instead of ordinal codes")
    cyclic: tuple[str, ...] = _opt((), "columns to add as sin/cos of their period (e.g. hour)")

    def __post_init__(self) -> None:
        _check(0 < self.train_frac < 1, "features.train_frac", self.train_frac, "must be between 0 and 1")
        _check(0 < self.valid_frac < 1, "features.valid_frac", self.valid_frac, "must be between 0 and 1")
        _check(self.train_frac + self.valid_frac < 1, "features.valid_frac", self.valid_frac,
               f"train_frac + valid_frac must leave rows for test (train_frac = {self.train_frac})")


@dataclass(frozen=True)
class PipelineConfig:
    """Where outputs go and which models the pipeline trains."""

    data_dir: str = _opt("data", "directory for step outputs (relative to the working directory)")
    models: tuple[str, ...] = _opt((), "models to train, comma-separated; empty: the dataset spec's `models`, else "
                                   + ",".join(DEFAULT_MODELS["cpu"]) + " on a CPU and "
                                   + ",".join(DEFAULT_MODELS["cuda"]) + " where torch sees a CUDA device", model_kinds)
    time_limit: float = _opt(DEFAULT_TIME_LIMIT, "seconds of training per model fit, for every model whose own "
                             "max_seconds is 0: a fit that reaches it stops and keeps its best epoch or round so far, "
                             "and says so (0: no limit)")

    def __post_init__(self) -> None:
        _check(len(set(self.models)) == len(self.models), "pipeline.models", self.models, "a model is named twice")
        _check(self.time_limit >= 0, "pipeline.time_limit", self.time_limit, "must not be negative (0: no limit)")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation outputs."""

    plots: bool = _opt(True, "draw PNG plots")
    dpi: int = _opt(110, "resolution of the PNG plots")

    def __post_init__(self) -> None:
        _check(20 <= self.dpi <= 1200, "evaluate.dpi", self.dpi, "must be between 20 and 1200")


# The search families (tabduel.search.families registers each; --families takes these: search_families(), each model
# section's `search`); a search and a bench tune the first two unless told otherwise: the others cost far more CPU
# per trial. The peers (pytabkit's tuned defaults) need tabduel[peers].
DEFAULT_SEARCH_FAMILIES = ("mlp", "xgboost")
MLP_PORTFOLIO = UNION_FAMILIES[0]  # a union family (tabduel/search/union.py): tabduel's MLP families in one budget
MLP_PORTFOLIO_MEMBERS = ("realmlp", "tabm", "mlp")  # the families it searches, in the order its space offers them
RUNNERS = ("process", "thread", "dask")
NUMERIC_MAPS = ("standard", "clip", "quantile", "robust")
PRUNERS = ("none", "halving", "hyperband")  # tabduel/search/pruning.py


@dataclass(frozen=True)
class SearchConfig:
    """An Optuna search of each family's settings (MLP, XGBoost, RealMLP, TabM) with one budget per family."""

    study: str = _opt("", "study name (empty: the dataset spec's name); Optuna keeps one study per family: "
                      "<study>-mlp, <study>-xgboost, ...")
    storage: str = _opt("", "Optuna storage: empty: a journal file <data_dir>/search/<study>/journal.log; "
                        "a .log path (journal file), sqlite:///FILE or postgresql://USER:PASS@HOST/DB")
    families: tuple[str, ...] = _opt(DEFAULT_SEARCH_FAMILIES, "model families to tune, comma-separated; realmlp and "
                                     "tabm start from their papers' defaults (trial 0) and cost minutes of CPU per "
                                     "trial (see realmlp_max_seconds, tabm_max_seconds)", search_families)
    trials: int = _opt(40, "trials per family (0: no limit; then set minutes)")
    minutes: float = _opt(0.0, "wall-clock minutes per family, counted over resumes (0: no limit)")
    seed: int = _opt(4751, "seed of the TPE sampler and of every trial's model")
    workers: int = _opt(0, "trials run at once (0: the cores free to this process)")
    runner: str = _opt("process", "where trials run: a process pool, a thread pool, or a Dask cluster", RUNNERS)
    address: str = _opt("", "Dask scheduler address (tcp://HOST:PORT) for runner = dask")
    threads: int = _opt(0, "threads per trial (0: free cores / workers, at least 1)")
    mlp_epochs: int = _opt(300, "maximum epochs of an MLP trial (early stopping ends most sooner)")
    mlp_patience: int = _opt(16, "early-stopping patience of an MLP trial, in epochs")
    mlp_max_seconds: float = _opt(180.0, "time limit of one MLP trial's training, in seconds (0: none)")
    trial_clock: str = _opt("wall", "what the trials' time limits count: wall-clock seconds, or CPU-seconds (a bench's "
                            "cells use cpu, as their budgets do)", TIME_CLOCKS)
    mlp_batch: int = _opt(1, "MLP trials trained together as one population: TPE suggests the first, the others keep "
                          "its inputs and shape and get their own lr, weight decay and dropout (1: each alone)")
    pruner: str = _opt("none", "multi-fidelity pruning of MLP trials by their valid MSE at epochs prune_min_epochs x "
                       "3^i: successive halving, Hyperband (Optuna's), or none", PRUNERS)
    prune_min_epochs: int = _opt(5, "the first epoch at which the pruner may stop an MLP trial")
    max_depth: int = _opt(6, "deepest MLP searched (hidden layers, from 1)")
    max_width: int = _opt(1024, "widest MLP layer searched (powers of two from 16)")
    max_ensemble: int = _opt(8, "largest ensemble of seeds searched (powers of two from 1)")
    numeric: tuple[str, ...] = _opt(("standard",), "maps of the MLP's numeric inputs searched, comma-separated: "
                                    "standard (as the features step scaled them), clip (to the train range), "
                                    "quantile (train quantiles to normal scores)", NUMERIC_MAPS)
    xgb_rounds: int = _opt(4000, "maximum boosting rounds of an XGBoost trial")
    xgb_early_stopping: int = _opt(100, "XGBoost early-stopping rounds on valid")
    realmlp_epochs: int = _opt(256, "epochs of a RealMLP trial (its schedules span them all; the best epoch is kept)")
    realmlp_max_seconds: float = _opt(180.0, "time limit of one RealMLP trial's training, in seconds, keeping its best "
                                      "epoch (0: none); a cut trial ends before its schedules do")
    realmlp_batch: int = _opt(1, "RealMLP trials trained together as one population: TPE suggests the first, the "
                              "others keep its embedding, front scale, activation and hidden layers and get their own "
                              "lr, weight decay and dropout (1: each alone)")
    tabm_k: int = _opt(32, "ensemble members of a TabM trial (not searched; fewer: faster trials on a CPU)")
    tabm_epochs: int = _opt(1000, "maximum epochs of a TabM trial (early stopping ends most sooner)")
    tabm_patience: int = _opt(16, "early-stopping patience of a TabM trial, in epochs")
    tabm_max_seconds: float = _opt(180.0, "time limit of one TabM trial's training, in seconds, keeping its best epoch "
                                   "(0: none); on a CPU one TabM fit of k = 16 takes minutes, so keep a limit there")
    peer_iterations: int = _opt(0, "epochs (RealMLP-TD, TabM) or boosting rounds (LightGBM, CatBoost) of a peer "
                                "trial (0: each one's tuned default)")
    portfolio: str = _opt("", "the configs that mlp_portfolio tries first: a portfolio JSON (tabduel portfolio "
                          "build); in a bench, {dataset} in it is each cell's dataset (build --lodo's files); empty: "
                          "the one shipped in tabduel/search/portfolios/")
    refit_seeds: int = _opt(5, "split seeds on which the best config of each family is refitted and tested")

    def __post_init__(self) -> None:
        _check(len(self.families) > 0, "search.families", self.families, "name at least one family")
        _check(self.trials >= 0, "search.trials", self.trials, "must not be negative (0: no limit)")
        _check(self.minutes >= 0, "search.minutes", self.minutes, "must not be negative (0: no limit)")
        _check(self.trials > 0 or self.minutes > 0, "search.trials", self.trials,
               "with no trial limit, set search.minutes, or the search never ends")
        _check(self.workers >= 0, "search.workers", self.workers, "must not be negative (0: free cores)")
        _check(self.threads >= 0, "search.threads", self.threads, "must not be negative (0: automatic)")
        _check(self.runner != "dask" or bool(self.address), "search.address", self.address,
               "runner = dask needs the scheduler's address (tcp://HOST:PORT)")
        _check(self.mlp_epochs >= 1, "search.mlp_epochs", self.mlp_epochs, "must be at least 1")
        _check(self.mlp_patience >= 1, "search.mlp_patience", self.mlp_patience, "must be at least 1")
        check_choice("search.trial_clock", self.trial_clock, TIME_CLOCKS)
        _check(self.mlp_max_seconds >= 0, "search.mlp_max_seconds", self.mlp_max_seconds, "must not be negative")
        _check(self.pruner in PRUNERS, "search.pruner", self.pruner, f"is not one of: {', '.join(PRUNERS)}")
        _check(self.mlp_batch >= 1, "search.mlp_batch", self.mlp_batch, "must be at least 1")
        _check(self.prune_min_epochs >= 1, "search.prune_min_epochs", self.prune_min_epochs, "must be at least 1")
        _check(self.pruner == "none" or self.prune_min_epochs < self.mlp_epochs, "search.prune_min_epochs",
               self.prune_min_epochs, f"must be below search.mlp_epochs ({self.mlp_epochs}) for a pruner to act")
        _check(1 <= self.max_depth <= 6, "search.max_depth", self.max_depth, "must be between 1 and 6")
        _check(16 <= self.max_width <= 1024, "search.max_width", self.max_width, "must be between 16 and 1024")
        _check(self.max_ensemble >= 1, "search.max_ensemble", self.max_ensemble, "must be at least 1")
        _check(len(self.numeric) > 0, "search.numeric", self.numeric, "name at least one map")
        _check(self.xgb_rounds >= 1, "search.xgb_rounds", self.xgb_rounds, "must be at least 1")
        _check(self.xgb_early_stopping >= 1, "search.xgb_early_stopping", self.xgb_early_stopping,
               "must be at least 1")
        _check(self.realmlp_epochs >= 1, "search.realmlp_epochs", self.realmlp_epochs, "must be at least 1")
        _check(self.realmlp_batch >= 1, "search.realmlp_batch", self.realmlp_batch, "must be at least 1")
        _check(self.realmlp_max_seconds >= 0, "search.realmlp_max_seconds", self.realmlp_max_seconds,
               "must not be negative (0: no limit)")
        _check(self.tabm_k >= 1, "search.tabm_k", self.tabm_k, "must be at least 1")
        _check(self.tabm_epochs >= 1, "search.tabm_epochs", self.tabm_epochs, "must be at least 1")
        _check(self.tabm_patience >= 0, "search.tabm_patience", self.tabm_patience, "must not be negative (0: off)")
        _check(self.tabm_max_seconds >= 0, "search.tabm_max_seconds", self.tabm_max_seconds,
               "must not be negative (0: no limit)")
        _check(self.peer_iterations >= 0, "search.peer_iterations", self.peer_iterations,
               "must not be negative (0: the tuned defaults)")
        _check(self.refit_seeds >= 2, "search.refit_seeds", self.refit_seeds,
               "must be at least 2 (a paired test needs pairs)")


PREPROCESSING = ("standard", "robust", "quantile", "clip", "ple")


BENCH_DEVICES = ("cpu", "cuda")
# the MLP families of a --corrupt bench and their preprocessing variants (mlp: search.numeric maps or ple; realmlp:
# its numeric setting)
CORRUPT_FAMILIES = {"mlp": PREPROCESSING, "realmlp": ("robust", "standard", "quantile")}


@dataclass(frozen=True)
class BenchConfig:
    """A benchmark of the families over a suite of datasets: outer splits, equal CPU budgets, statistics."""

    suite: str = _opt("", "suite file (TOML) listing the datasets: spec, source, sha256, overrides")
    root: str = _opt("", "folder the suite's sources are relative to (empty: the suite file's root key)")
    families: tuple[str, ...] = _opt(DEFAULT_SEARCH_FAMILIES, "families benchmarked, comma-separated; a realmlp or "
                                     "tabm trial costs minutes of CPU (capped by --search-realmlp-max-seconds, "
                                     "--search-tabm-max-seconds)", search_families)
    minutes: float = _opt(5.0, "CPU-minutes of search per family, per dataset and outer seed (0: no limit)")
    trials: int = _opt(0, "trials per family, per dataset and outer seed (0: no limit; then set minutes)")
    outer_seeds: int = _opt(3, "outer splits per dataset (split seeds first_seed, first_seed + 1, ...)")
    first_seed: int = _opt(4751, "split seed of the first outer split")
    workers: int = _opt(0, "cells (dataset x family x outer seed) run at once (0: the free cores)")
    threads: int = _opt(0, "threads per cell (0: free cores / workers, at least 1)")
    runner: str = _opt("process", "where cells run: a process pool, or a Dask cluster", ("process", "dask"))
    address: str = _opt("", "Dask scheduler address (tcp://HOST:PORT) for runner = dask")
    corrupt: tuple[str, ...] = _opt((), "corruptions to run (missing, outliers, extra, exp, label_noise), each at "
                                    "its levels, MLP preprocessing variants against XGBoost")
    preprocessing: tuple[str, ...] = _opt(PREPROCESSING, "MLP preprocessing variants of a --corrupt bench (realmlp: "
                                          "robust, standard, quantile)", PREPROCESSING)
    corrupt_family: str = _opt("mlp", "the MLP family whose preprocessing variants a --corrupt bench runs against "
                               "XGBoost: tabduel's mlp (standard, robust, quantile, clip, ple: searched) or realmlp "
                               "(robust: RealMLP-TD's own scaling and smooth clipping, standard, quantile)",
                               tuple(CORRUPT_FAMILIES))
    name: str = _opt("", "the bench's name: its folder under <data_dir>/bench/ and its result files (empty: "
                     "bench-<suite>-<budget>[-corrupt])")
    out: str = _opt("benchmarks/results", "folder of the result JSON, the Markdown report and its pictures")
    device: str = _opt("cpu", "where every family trains: cpu (budgets in CPU-seconds) or cuda (budgets in "
                       "synchronized GPU wall-clock seconds; XGBoost too)", BENCH_DEVICES)
    bagging: int = _opt(0, "K-fold bagging (TabArena's): each trial is K fits on train + valid, fit k stopped early "
                        "on fold k; trials are selected and ensembled on their out-of-fold predictions and tested as "
                        "the mean of their K fits (0: off; a trial's cap is split among its fits)")

    def __post_init__(self) -> None:
        _check(len(self.families) > 0, "bench.families", self.families, "name at least one family")
        check_choice("bench.device", self.device, BENCH_DEVICES)
        _check(self.minutes >= 0, "bench.minutes", self.minutes, "must not be negative (0: no limit)")
        _check(self.trials >= 0, "bench.trials", self.trials, "must not be negative (0: no limit)")
        _check(self.trials > 0 or self.minutes > 0, "bench.trials", self.trials,
               "with no trial limit, set bench.minutes, or the bench never ends")
        _check(self.outer_seeds >= 2, "bench.outer_seeds", self.outer_seeds,
               "must be at least 2 (a paired test needs pairs)")
        _check(self.workers >= 0, "bench.workers", self.workers, "must not be negative (0: free cores)")
        _check(self.threads >= 0, "bench.threads", self.threads, "must not be negative (0: automatic)")
        _check(self.runner != "dask" or bool(self.address), "bench.address", self.address,
               "runner = dask needs the scheduler's address (tcp://HOST:PORT)")
        _check(len(self.preprocessing) > 0, "bench.preprocessing", self.preprocessing, "name at least one")
        _check(not self.name or bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name)), "bench.name",
               self.name, "use letters, digits, '.', '_' and '-' only (it names a folder and files)")
        _check(self.bagging == 0 or 2 <= self.bagging <= 20, "bench.bagging", self.bagging,
               "must be 0 (off) or 2 to 20 folds")
        check_choice("bench.corrupt_family", self.corrupt_family, tuple(CORRUPT_FAMILIES))
        other = [p for p in self.preprocessing if p not in CORRUPT_FAMILIES[self.corrupt_family]]
        _check(not other, "bench.preprocessing", ",".join(self.preprocessing),
               f"{', '.join(other)}: not a preprocessing of {self.corrupt_family} (it takes "
               f"{', '.join(CORRUPT_FAMILIES[self.corrupt_family])})")


ModelConfig = ModelSettings  # the settings of any model family


def default_models(cuda: bool | None = None) -> tuple[str, ...]:
    """The models `tabduel run` trains when nothing names them: DEFAULT_MODELS of this machine's device (cuda: None
    asks runtime.cuda_available)."""
    if cuda is None:
        from tabduel.infra.runtime import cuda_available

        cuda = cuda_available()
    return DEFAULT_MODELS["cuda" if cuda else "cpu"]
