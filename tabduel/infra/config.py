"""Frozen, typed settings for every step, built once and passed down."""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from tabduel.infra.errors import ConfigError

# What `tabduel run` trains when neither the settings nor the dataset spec name the models: the MLP family that
# measured best at its defaults on the dev suite (docs/results.md, "Which MLP the pipeline trains by default"), with
# XGBoost and the linear baseline. The built-in Seoul spec names its own: the original analysis's NN5 ("mlp").
DEFAULT_MODELS = ("tabm", "xgboost", "linear")
TORCH_DEVICES = "auto, cpu, cuda, cuda:N, mps"
XGBOOST_DEVICES = "auto, cpu, cuda, cuda:N"
_TORCH_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
_XGBOOST_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with help text (and allowed values) for --help."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


TIME_CLOCKS = ("wall", "cpu")  # what a time limit counts (tabduel.infra.runtime.stopwatch)


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    """Raise ConfigError naming the setting unless ok."""
    if not ok:
        raise ConfigError(f"{name} = {value!r}: {why}")


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


class ModelSettings:
    """Base of a model family's settings: `class XConfig(ModelSettings, section="x")` makes [x] a model section.

    Config has a field of that name and type; tabduel.models.registry has the family of that kind.
    """

    sections: ClassVar[dict[str, type[ModelSettings]]] = {}

    def __init_subclass__(cls, section: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not section:
            raise TypeError(f"{cls.__name__}: name its section: class {cls.__name__}(ModelSettings, section=...)")
        ModelSettings.sections[section] = cls


@dataclass(frozen=True)
class MLPConfig(ModelSettings, section="mlp"):
    """The PyTorch MLP; defaults are the original analysis's NN5."""

    hidden: tuple[int, ...] = _opt((20, 10, 5), "hidden layer widths, comma-separated")
    activation: str = _opt("sigmoid", "hidden activation", ("sigmoid", "relu", "gelu", "silu", "tanh"))
    optimizer: str = _opt("sgd", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = _opt(0.05, "learning rate")
    weight_decay: float = _opt(0.0, "weight decay")
    dropout: float = _opt(0.0, "dropout after each hidden layer")
    batch_size: int = _opt(200, "minibatch size")
    epochs: int = _opt(100, "maximum number of epochs")
    patience: int = _opt(0, "early-stopping patience in epochs (0: off, keep the last epoch)")
    seed: int = _opt(4751, "torch seed for init and batch order")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    population: int = _opt(1, "train this many seeds (seed, seed+1, ...) at once; the model is their mean")
    batch_order: str = _opt("member", "a population's batch order: each member its own permutation, or one "
                            "shared by all", ("member", "shared"))
    threads: int = _opt(0, "CPU threads (0: one for small nets, else the cores free to this process)")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def __post_init__(self) -> None:
        _check(all(h >= 1 for h in self.hidden), "mlp.hidden", self.hidden, "widths must be at least 1")
        _check(self.max_seconds >= 0, "mlp.max_seconds", self.max_seconds, "must not be negative (0: no limit)")
        check_choice("mlp.time_clock", self.time_clock, TIME_CLOCKS)
        _check(self.population >= 1, "mlp.population", self.population, "must be at least 1")
        _check(self.threads >= 0, "mlp.threads", self.threads, "must not be negative (0: automatic)")
        _check(self.lr > 0, "mlp.lr", self.lr, "must be positive")
        _check(self.weight_decay >= 0, "mlp.weight_decay", self.weight_decay, "must not be negative")
        _check(0 <= self.dropout < 1, "mlp.dropout", self.dropout, "must be in [0, 1)")
        _check(self.batch_size >= 1, "mlp.batch_size", self.batch_size, "must be at least 1")
        _check(self.epochs >= 1, "mlp.epochs", self.epochs, "must be at least 1")
        _check(self.patience >= 0, "mlp.patience", self.patience, "must not be negative")
        _check(bool(_TORCH_DEVICE.fullmatch(self.device)), "mlp.device", self.device,
               f"is not one of: {TORCH_DEVICES}")


@dataclass(frozen=True)
class XGBoostConfig(ModelSettings, section="xgboost"):
    """The XGBoost reference model (hist trees, early stopping on valid)."""

    n_estimators: int = _opt(2000, "maximum boosting rounds")
    learning_rate: float = _opt(0.05, "shrinkage per round")
    max_depth: int = _opt(6, "maximum tree depth")
    min_child_weight: float = _opt(1.0, "minimum hessian weight in a leaf")
    subsample: float = _opt(0.8, "row subsample per tree")
    colsample_bytree: float = _opt(0.8, "column subsample per tree")
    reg_lambda: float = _opt(1.0, "L2 regularisation")
    reg_alpha: float = _opt(0.0, "L1 regularisation")
    early_stopping_rounds: int = _opt(50, "stop after this many rounds without valid improvement")
    seed: int = _opt(4751, "random seed")
    device: str = _opt("auto", "auto (cuda when present), cpu, cuda or cuda:N")
    n_jobs: int = _opt(0, "threads (0: the cores free to this process; never more than those)")

    def __post_init__(self) -> None:
        _check(self.n_estimators >= 1, "xgboost.n_estimators", self.n_estimators, "must be at least 1")
        _check(self.learning_rate > 0, "xgboost.learning_rate", self.learning_rate, "must be positive")
        _check(self.max_depth >= 0, "xgboost.max_depth", self.max_depth, "must not be negative")
        _check(self.min_child_weight >= 0, "xgboost.min_child_weight", self.min_child_weight, "must not be negative")
        _check(0 < self.subsample <= 1, "xgboost.subsample", self.subsample, "must be in (0, 1]")
        _check(0 < self.colsample_bytree <= 1, "xgboost.colsample_bytree", self.colsample_bytree, "must be in (0, 1]")
        _check(self.reg_lambda >= 0, "xgboost.reg_lambda", self.reg_lambda, "must not be negative")
        _check(self.reg_alpha >= 0, "xgboost.reg_alpha", self.reg_alpha, "must not be negative")
        _check(self.early_stopping_rounds >= 0, "xgboost.early_stopping_rounds", self.early_stopping_rounds,
               "must not be negative (0: off)")
        _check(self.n_jobs >= 0, "xgboost.n_jobs", self.n_jobs, "must not be negative (0: all free cores)")
        _check(bool(_XGBOOST_DEVICE.fullmatch(self.device)), "xgboost.device", self.device,
               f"is not one of: {XGBOOST_DEVICES}")


@dataclass(frozen=True)
class LinearConfig(ModelSettings, section="linear"):
    """Ordinary least squares, the original analysis's baseline."""

    fit_intercept: bool = _opt(True, "fit an intercept")


SCHEDULES = ("constant", "cos", "flat_cos", "coslog4")


@dataclass(frozen=True)
class RealMLPConfig(ModelSettings, section="realmlp"):
    """A RealMLP-style MLP (Holzmüller et al. 2024); defaults are pytabkit's RealMLP-TD regressor's."""

    hidden: tuple[int, ...] = _opt((256, 256, 256), "hidden layer widths, comma-separated")
    activation: str = _opt("mish", "hidden activation", ("mish", "selu", "relu", "silu", "gelu"))
    parametric_activation: bool = _opt(True, "learn a per-unit mix of the activation and the identity")
    embedding: str = _opt("pbld", "numeric embedding: periodic-bias-linear-densenet, or none", ("pbld", "none"))
    frequencies: int = _opt(16, "periodic terms per numeric column")
    embedding_dim: int = _opt(4, "values per numeric column after the embedding (the column itself included)")
    embedding_scale: float = _opt(0.1, "sd of the initial frequencies")
    front_scale: bool = _opt(True, "a learned diagonal scaling layer in front of the first linear layer")
    lr: float = _opt(0.2, "base learning rate (times each parameter kind's factor and the schedule)")
    lr_schedule: str = _opt("coslog4", "learning-rate schedule over the training steps", SCHEDULES)
    weight_decay: float = _opt(0.02, "decoupled weight decay (times the learning rate, as AdamW)")
    wd_schedule: str = _opt("flat_cos", "weight-decay schedule", SCHEDULES)
    dropout: float = _opt(0.15, "dropout after each hidden layer")
    dropout_schedule: str = _opt("flat_cos", "dropout schedule", SCHEDULES)
    beta2: float = _opt(0.95, "Adam's second-moment decay")
    batch_size: int = _opt(256, "minibatch size")
    epochs: int = _opt(256, "epochs (the schedules span them all)")
    patience: int = _opt(0, "stop after this many epochs without a better valid MSE (0: run every epoch; the best "
                         "epoch's weights are kept either way)")
    seed: int = _opt(4751, "torch seed for init, batch order and dropout")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    threads: int = _opt(0, "CPU threads (0: one, measured fastest on a 2-core VM; N: at most the free cores)")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def __post_init__(self) -> None:
        _check(bool(_TORCH_DEVICE.fullmatch(self.device)), "realmlp.device", self.device,
               f"is not one of: {TORCH_DEVICES}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "realmlp.hidden", self.hidden,
               "name at least one width, each at least 1")
        _check(self.frequencies >= 1, "realmlp.frequencies", self.frequencies, "must be at least 1")
        _check(self.embedding_dim >= 2, "realmlp.embedding_dim", self.embedding_dim,
               "must be at least 2 (the column itself and one learned value)")
        _check(self.embedding_scale > 0, "realmlp.embedding_scale", self.embedding_scale, "must be positive")
        _check(self.lr > 0, "realmlp.lr", self.lr, "must be positive")
        _check(self.weight_decay >= 0, "realmlp.weight_decay", self.weight_decay, "must not be negative")
        _check(0 <= self.dropout < 1, "realmlp.dropout", self.dropout, "must be in [0, 1)")
        _check(0 <= self.beta2 < 1, "realmlp.beta2", self.beta2, "must be in [0, 1)")
        _check(self.batch_size >= 1, "realmlp.batch_size", self.batch_size, "must be at least 1")
        _check(self.epochs >= 1, "realmlp.epochs", self.epochs, "must be at least 1")
        _check(self.patience >= 0, "realmlp.patience", self.patience, "must not be negative (0: off)")
        _check(self.threads >= 0, "realmlp.threads", self.threads, "must not be negative (0: automatic)")
        _check(self.max_seconds >= 0, "realmlp.max_seconds", self.max_seconds, "must not be negative (0: no limit)")
        check_choice("realmlp.time_clock", self.time_clock, TIME_CLOCKS)


@dataclass(frozen=True)
class TabMConfig(ModelSettings, section="tabm"):
    """A TabM-style ensemble of k MLPs sharing their weights (Gorishniy et al. 2024), trained as one model."""

    k: int = _opt(32, "ensemble members")
    variant: str = _opt("tabm", "tabm: every layer has per-member adapters (BatchEnsemble); tabm-mini: only the "
                        "input adapter is per member", ("tabm", "tabm-mini"))
    d_block: int = _opt(512, "width of the hidden layers")
    n_blocks: int = _opt(0, "hidden layers (0: 3 without a numeric embedding, 2 with one)")
    dropout: float = _opt(0.1, "dropout after each hidden layer")
    embedding: str = _opt("ple", "numeric embedding: piecewise-linear (quantile bins), periodic, or none",
                          ("ple", "periodic", "none"))
    bins: int = _opt(48, "PLE: quantile bins per numeric column (fewer where quantiles coincide)")
    embedding_dim: int = _opt(16, "values per numeric column after the embedding")
    frequencies: int = _opt(16, "periodic: terms per numeric column")
    embedding_scale: float = _opt(0.1, "periodic: sd of the initial frequencies")
    lr: float = _opt(0.002, "AdamW learning rate")
    weight_decay: float = _opt(0.0, "AdamW weight decay (not on biases and adapters)")
    batch_size: int = _opt(256, "minibatch size (per member)")
    share_batches: bool = _opt(False, "all members see the same batches (default: each its own permutation)")
    epochs: int = _opt(1000, "maximum number of epochs")
    patience: int = _opt(16, "stop after this many epochs without a better valid MSE (0: run every epoch); the best "
                         "epoch's weights are kept")
    seed: int = _opt(4751, "torch seed for init, batch order and dropout")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    threads: int = _opt(0, "CPU threads (0: one, measured fastest on a 2-core VM; N: at most the free cores)")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def __post_init__(self) -> None:
        _check(bool(_TORCH_DEVICE.fullmatch(self.device)), "tabm.device", self.device,
               f"is not one of: {TORCH_DEVICES}")
        _check(self.k >= 1, "tabm.k", self.k, "must be at least 1")
        _check(self.d_block >= 1, "tabm.d_block", self.d_block, "must be at least 1")
        _check(self.n_blocks >= 0, "tabm.n_blocks", self.n_blocks, "must not be negative (0: automatic)")
        _check(0 <= self.dropout < 1, "tabm.dropout", self.dropout, "must be in [0, 1)")
        _check(self.bins >= 2, "tabm.bins", self.bins, "must be at least 2")
        _check(self.embedding_dim >= 1, "tabm.embedding_dim", self.embedding_dim, "must be at least 1")
        _check(self.embedding != "periodic" or self.embedding_dim >= 2, "tabm.embedding_dim", self.embedding_dim,
               "must be at least 2 with the periodic embedding (the column itself and one learned value)")
        _check(self.frequencies >= 1, "tabm.frequencies", self.frequencies, "must be at least 1")
        _check(self.embedding_scale > 0, "tabm.embedding_scale", self.embedding_scale, "must be positive")
        _check(self.lr > 0, "tabm.lr", self.lr, "must be positive")
        _check(self.weight_decay >= 0, "tabm.weight_decay", self.weight_decay, "must not be negative")
        _check(self.batch_size >= 1, "tabm.batch_size", self.batch_size, "must be at least 1")
        _check(self.epochs >= 1, "tabm.epochs", self.epochs, "must be at least 1")
        _check(self.patience >= 0, "tabm.patience", self.patience, "must not be negative (0: off)")
        _check(self.threads >= 0, "tabm.threads", self.threads, "must not be negative (0: automatic)")
        _check(self.max_seconds >= 0, "tabm.max_seconds", self.max_seconds, "must not be negative (0: no limit)")
        check_choice("tabm.time_clock", self.time_clock, TIME_CLOCKS)


@dataclass(frozen=True)
class PeerConfig:
    """What a published implementation (tabduel/models/peers.py, tabduel[peers]) takes besides its tuned defaults."""

    iterations: int = _opt(0, "epochs or boosting rounds (0: the tuned default)")
    seed: int = _opt(4751, "random seed (pytabkit's random_state)")
    threads: int = _opt(0, "CPU threads (pytabkit's n_threads; 0: the cores free to this process)")

    def __post_init__(self) -> None:
        section = next(k for k, v in ModelSettings.sections.items() if v is type(self))
        _check(self.iterations >= 0, f"{section}.iterations", self.iterations, "must not be negative (0: the default)")
        _check(self.seed >= 0, f"{section}.seed", self.seed, "must not be negative")
        _check(self.threads >= 0, f"{section}.threads", self.threads, "must not be negative (0: automatic)")


@dataclass(frozen=True)
class PeerRealMLPConfig(PeerConfig, ModelSettings, section="peer_realmlp"):
    """pytabkit's RealMLP-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "epochs, which its schedules span (0: the tuned default, 256); the best epoch on valid "
                           "is kept")


@dataclass(frozen=True)
class PeerTabMConfig(PeerConfig, ModelSettings, section="peer_tabm"):
    """pytabkit's TabM-D regressor (Gorishniy et al. 2024; k = 32) with its defaults, on the CPU."""

    iterations: int = _opt(0, "maximum epochs (0: the default, no limit but early stopping after 16 epochs without "
                           "a better valid score)")


@dataclass(frozen=True)
class PeerLGBMConfig(PeerConfig, ModelSettings, section="peer_lgbm"):
    """pytabkit's LightGBM-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "maximum boosting rounds (0: the tuned default, 1000; early stopping on valid after "
                           "300 rounds without improvement)")


@dataclass(frozen=True)
class PeerCatBoostConfig(PeerConfig, ModelSettings, section="peer_catboost"):
    """pytabkit's CatBoost-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "maximum boosting rounds (0: the tuned default, 1000; early stopping on valid after "
                           "300 rounds without improvement)")


# The model sections, in the order they were defined: the kinds `--models` takes.
MODEL_KINDS = tuple(ModelSettings.sections)


@dataclass(frozen=True)
class PipelineConfig:
    """Where outputs go and which models the pipeline trains."""

    data_dir: str = _opt("data", "directory for step outputs (relative to the working directory)")
    models: tuple[str, ...] = _opt((), "models to train, comma-separated; empty: the dataset spec's `models`, else "
                                   + ",".join(DEFAULT_MODELS), MODEL_KINDS)

    def __post_init__(self) -> None:
        _check(len(set(self.models)) == len(self.models), "pipeline.models", self.models, "a model is named twice")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation outputs."""

    plots: bool = _opt(True, "draw PNG plots")
    dpi: int = _opt(110, "resolution of the PNG plots")

    def __post_init__(self) -> None:
        _check(20 <= self.dpi <= 1200, "evaluate.dpi", self.dpi, "must be between 20 and 1200")


# The search families (tabduel.search.families registers each; --families takes these); a search and a bench
# tune the first two unless told otherwise: the others cost far more CPU per trial. The peers (pytabkit's tuned
# defaults) need tabduel[peers].
SEARCH_FAMILIES = ("mlp", "xgboost", "realmlp", "tabm", "peer_realmlp", "peer_tabm", "peer_lgbm", "peer_catboost")
DEFAULT_SEARCH_FAMILIES = ("mlp", "xgboost")
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
                                     "trial (see realmlp_max_seconds, tabm_max_seconds)", SEARCH_FAMILIES)
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
    tabm_k: int = _opt(32, "ensemble members of a TabM trial (not searched; fewer: faster trials on a CPU)")
    tabm_epochs: int = _opt(1000, "maximum epochs of a TabM trial (early stopping ends most sooner)")
    tabm_patience: int = _opt(16, "early-stopping patience of a TabM trial, in epochs")
    tabm_max_seconds: float = _opt(180.0, "time limit of one TabM trial's training, in seconds, keeping its best epoch "
                                   "(0: none); on a CPU one TabM fit of k = 16 takes minutes, so keep a limit there")
    peer_iterations: int = _opt(0, "epochs (RealMLP-TD, TabM) or boosting rounds (LightGBM, CatBoost) of a peer "
                                "trial (0: each one's tuned default)")
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


@dataclass(frozen=True)
class BenchConfig:
    """A benchmark of the families over a suite of datasets: outer splits, equal CPU budgets, statistics."""

    suite: str = _opt("", "suite file (TOML) listing the datasets: spec, source, sha256, overrides")
    root: str = _opt("", "folder the suite's sources are relative to (empty: the suite file's root key)")
    families: tuple[str, ...] = _opt(DEFAULT_SEARCH_FAMILIES, "families benchmarked, comma-separated; a realmlp or "
                                     "tabm trial costs minutes of CPU (capped by --search-realmlp-max-seconds, "
                                     "--search-tabm-max-seconds)", SEARCH_FAMILIES)
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
    preprocessing: tuple[str, ...] = _opt(PREPROCESSING, "MLP preprocessing variants of a --corrupt bench",
                                          PREPROCESSING)
    out: str = _opt("benchmarks/results", "folder of the result JSON, the Markdown report and its pictures")

    def __post_init__(self) -> None:
        _check(len(self.families) > 0, "bench.families", self.families, "name at least one family")
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


@dataclass(frozen=True)
class Config:
    """All settings of a pipeline run, one section per step."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    xgboost: XGBoostConfig = field(default_factory=XGBoostConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    realmlp: RealMLPConfig = field(default_factory=RealMLPConfig)
    tabm: TabMConfig = field(default_factory=TabMConfig)
    peer_realmlp: PeerRealMLPConfig = field(default_factory=PeerRealMLPConfig)
    peer_tabm: PeerTabMConfig = field(default_factory=PeerTabMConfig)
    peer_lgbm: PeerLGBMConfig = field(default_factory=PeerLGBMConfig)
    peer_catboost: PeerCatBoostConfig = field(default_factory=PeerCatBoostConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build a Config from nested mappings, rejecting unknown keys by name."""
        return build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples as lists), the inverse of from_dict."""
        return to_plain(self)

    def model(self, kind: str) -> "ModelConfig":
        """The settings section of one model kind."""
        check_choice("model", kind, MODEL_KINDS)
        return getattr(self, kind)


ModelConfig = ModelSettings  # the settings of any model family


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ConfigError unless value is one of choices."""
    if value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of: {', '.join(choices)}")


def to_plain(obj: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, recursively."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'mlp': {'lr': 1}} -> {'mlp.lr': 1}; lists become comma-separated strings."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def build(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass cls from data, checking names, types and choices."""
    return cls(**typed(cls, data, where))


def typed(cls: type, data: Mapping[str, Any] | None, where: str, construct: bool = True) -> dict[str, Any]:
    """data's values as cls's field types, names and choices checked; sub-sections built (construct) or only
    checked, recursively."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(unknown_message(where, unknown, list(fields)))
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{where}{name}' must be a section (table), got {value!r}")
            sub = typed(typ, value, f"{where}{name}.", construct)
            kwargs[name] = typ(**sub) if construct else sub
        else:
            kwargs[name] = coerce(value, typ, f"{where}{name}")
            choices = fields[name].metadata.get("choices")
            if choices:
                values = kwargs[name] if isinstance(kwargs[name], tuple) else (kwargs[name],)
                for v in values:
                    check_choice(f"{where}{name}", v, choices)
    return kwargs


def unknown_message(where: str, unknown: list[str], known: list[str]) -> str:
    """'unknown section [x]' at the top level, else "unknown setting 'mlp.x' in [mlp]", each with its closest
    known name, and the names allowed there."""
    def named(key: str) -> str:
        close = difflib.get_close_matches(key, known, n=1)
        shown = f"[{key}]" if not where else f"'{where}{key}'"
        return shown + (f" (did you mean {close[0]!r}?)" if close else "")

    names = ", ".join(named(k) for k in unknown)
    if not where:
        return f"unknown section {names}; the sections are: {', '.join(known)}"
    section = where.rstrip(".")
    return f"unknown setting {names} in [{section}]; allowed in [{section}]: {', '.join(known)}"


def check_settings_file(data: Mapping[str, Any], path: str | Path) -> None:
    """Raise ConfigError naming the settings file for an unknown section or setting, or a value of the wrong type
    or choice, in its data (ranges are checked once flags are merged in)."""
    try:
        typed(Config, data, "", construct=False)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def coerce(value: Any, typ: Any, name: str) -> Any:
    """Convert a TOML or command-line value to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' must be a list, got {value!r}")
        return tuple(coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"'{name}' must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{name}' must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"'{name}' must be an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{name}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{name}' must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{name}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported setting type {typ!r} for {name}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML settings file, naming the file (and position) of a syntax error, an unknown name or a bad type."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    check_settings_file(data, path)
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively overlay override on base (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def section_fields(section: str) -> list[dataclasses.Field]:
    """The fields of one top-level section of Config."""
    return list(dataclasses.fields(typing.get_type_hints(Config)[section]))


def field_type(section: str, name: str) -> Any:
    """The annotated type of one setting."""
    return typing.get_type_hints(typing.get_type_hints(Config)[section])[name]
