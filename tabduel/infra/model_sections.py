"""The settings sections of the model families tabduel trains itself ([mlp], [xgboost], [linear], [realmlp], [tabm])
and of the published peers ([peer_*]): each a frozen dataclass whose ranges are declared on its fields (_opt's gt,
ge, lt, le) and checked once by the machinery (tabduel/infra/settings.py).

They are here, below the engine, because the engine trains from them; a family that brings its own settings declares
them in its own module (tabduel/models/<kind>.py) with the same base, ModelSettings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tabduel.infra.settings import ModelSettings, _check, _opt

TORCH_DEVICES = "auto, cpu, cuda, cuda:N, mps"
XGBOOST_DEVICES = "auto, cpu, cuda, cuda:N"
_TORCH_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
_XGBOOST_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
TIME_CLOCKS = ("wall", "cpu")  # what a time limit counts (tabduel.infra.runtime.stopwatch)
SCHEDULES = ("constant", "cos", "flat_cos", "coslog4")
TABM_NUMERIC = ("quantile", "standard")  # TabM's numeric inputs: the paper's quantile map, or the features step's


def check_torch_device(section: str, device: str) -> None:
    """Raise ConfigError unless device is one torch takes (TORCH_DEVICES)."""
    _check(bool(_TORCH_DEVICE.fullmatch(device)), f"{section}.device", device, f"is not one of: {TORCH_DEVICES}")


@dataclass(frozen=True)
class MLPConfig(ModelSettings, section="mlp", search="mlp"):
    """The PyTorch MLP; defaults are the original analysis's NN5."""

    hidden: tuple[int, ...] = _opt((20, 10, 5), "hidden layer widths, comma-separated")
    activation: str = _opt("sigmoid", "hidden activation", ("sigmoid", "relu", "gelu", "silu", "tanh"))
    optimizer: str = _opt("sgd", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = _opt(0.05, "learning rate", gt=0)
    weight_decay: float = _opt(0.0, "weight decay", ge=0)
    dropout: float = _opt(0.0, "dropout after each hidden layer", ge=0, lt=1)
    batch_size: int = _opt(200, "minibatch size", ge=1)
    epochs: int = _opt(100, "maximum number of epochs", ge=1)
    patience: int = _opt(0, "early-stopping patience in epochs (0: off, keep the last epoch)", ge=0)
    seed: int = _opt(4751, "torch seed for init and batch order")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    population: int = _opt(1, "train this many seeds (seed, seed+1, ...) at once; the model is their mean", ge=1)
    batch_order: str = _opt("member", "a population's batch order: each member its own permutation, or one "
                            "shared by all", ("member", "shared"))
    threads: int = _opt(0, "CPU threads (0: one for small nets, else the cores free to this process)", ge=0,
                        note="0: automatic")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)",
                              ge=0, note="0: no limit")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def check(self) -> None:
        """Widths and device."""
        _check(all(h >= 1 for h in self.hidden), "mlp.hidden", self.hidden, "widths must be at least 1")
        check_torch_device("mlp", self.device)


@dataclass(frozen=True)
class XGBoostConfig(ModelSettings, section="xgboost", search="xgboost"):
    """The XGBoost reference model (hist trees, early stopping on valid)."""

    n_estimators: int = _opt(2000, "maximum boosting rounds", ge=1)
    learning_rate: float = _opt(0.05, "shrinkage per round", gt=0)
    max_depth: int = _opt(6, "maximum tree depth", ge=0)
    min_child_weight: float = _opt(1.0, "minimum hessian weight in a leaf", ge=0)
    subsample: float = _opt(0.8, "row subsample per tree", gt=0, le=1)
    colsample_bytree: float = _opt(0.8, "column subsample per tree", gt=0, le=1)
    reg_lambda: float = _opt(1.0, "L2 regularisation", ge=0)
    reg_alpha: float = _opt(0.0, "L1 regularisation", ge=0)
    early_stopping_rounds: int = _opt(50, "stop after this many rounds without valid improvement", ge=0,
                                      note="0: off")
    seed: int = _opt(4751, "random seed")
    device: str = _opt("auto", "auto (cuda when present), cpu, cuda or cuda:N")
    n_jobs: int = _opt(0, "threads (0: the cores free to this process; never more than those)", ge=0,
                       note="0: all free cores")
    max_seconds: float = _opt(0.0, "stop boosting after this many seconds, keeping the best round so far (0: no limit)",
                              ge=0, note="0: no limit")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds",
                           TIME_CLOCKS)

    def check(self) -> None:
        """Device."""
        _check(bool(_XGBOOST_DEVICE.fullmatch(self.device)), "xgboost.device", self.device,
               f"is not one of: {XGBOOST_DEVICES}")


@dataclass(frozen=True)
class LinearConfig(ModelSettings, section="linear"):
    """Ordinary least squares, the original analysis's baseline."""

    fit_intercept: bool = _opt(True, "fit an intercept")


@dataclass(frozen=True)
class RealMLPConfig(ModelSettings, section="realmlp", search="realmlp"):
    """A RealMLP-style MLP (Holzmüller et al. 2024); defaults are pytabkit's RealMLP-TD regressor's."""

    hidden: tuple[int, ...] = _opt((256, 256, 256), "hidden layer widths, comma-separated")
    activation: str = _opt("mish", "hidden activation", ("mish", "selu", "relu", "silu", "gelu"))
    parametric_activation: bool = _opt(True, "learn a per-unit mix of the activation and the identity")
    embedding: str = _opt("pbld", "numeric embedding: periodic-bias-linear-densenet, or none", ("pbld", "none"))
    frequencies: int = _opt(16, "periodic terms per numeric column", ge=1)
    embedding_dim: int = _opt(4, "values per numeric column after the embedding (the column itself included)", ge=2,
                              note="the column itself and one learned value")
    embedding_scale: float = _opt(0.1, "sd of the initial frequencies", gt=0)
    numeric: str = _opt("robust", "numeric inputs: robust (median and IQR scaling, then smooth clipping: "
                        "RealMLP-TD's), standard (as the features step standardized them), or quantile (train "
                        "quantiles to normal scores, as TabM)", ("robust", "standard", "quantile"))
    max_one_hot: int = _opt(8, "a one-hot encoded category with at most this many levels in the train split stays "
                            "one-hot; one with more is embedded (pytabkit's max_one_hot_cat_size 9, which counts "
                            "the missing code too)", ge=0)
    category_dim: int = _opt(8, "values per embedded category (pytabkit's embedding_size)", ge=1)
    front_scale: bool = _opt(True, "a learned diagonal scaling layer in front of the first linear layer")
    lr: float = _opt(0.2, "base learning rate (times each parameter kind's factor and the schedule)", gt=0)
    lr_schedule: str = _opt("coslog4", "learning-rate schedule over the training steps", SCHEDULES)
    weight_decay: float = _opt(0.02, "decoupled weight decay (times the learning rate, as AdamW)", ge=0)
    wd_schedule: str = _opt("flat_cos", "weight-decay schedule", SCHEDULES)
    dropout: float = _opt(0.15, "dropout after each hidden layer", ge=0, lt=1)
    dropout_schedule: str = _opt("flat_cos", "dropout schedule", SCHEDULES)
    beta2: float = _opt(0.95, "Adam's second-moment decay", ge=0, lt=1)
    batch_size: int = _opt(256, "minibatch size", ge=1)
    epochs: int = _opt(256, "epochs (the schedules span them all)", ge=1)
    patience: int = _opt(0, "stop after this many epochs without a better valid MSE (0: run every epoch; the best "
                         "epoch's weights are kept either way)", ge=0, note="0: off")
    seed: int = _opt(4751, "torch seed for init, batch order and dropout")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    threads: int = _opt(0, "CPU threads (0: one, measured fastest on a 2-core VM; N: at most the free cores)", ge=0,
                        note="0: automatic")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)",
                              ge=0, note="0: no limit")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def check(self) -> None:
        """Device and widths."""
        check_torch_device("realmlp", self.device)
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "realmlp.hidden", self.hidden,
               "name at least one width, each at least 1")


@dataclass(frozen=True)
class TabMConfig(ModelSettings, section="tabm", search="tabm"):
    """A TabM-style ensemble of k MLPs sharing their weights (Gorishniy et al. 2024); defaults: the tabm package's."""

    # tabm 0.0.3 README (TabM.make, "Default optimizer") + example.ipynb, tabm and tabm-mini alike: k 32, width 512,
    # depth 3 (2 with an embedding), dropout 0.1, AdamW lr 2e-3 wd 3e-4, batch 256 shared, patience 16, quantile inputs.
    k: int = _opt(32, "ensemble members", ge=1)
    variant: str = _opt("tabm", "tabm: every layer has per-member adapters (BatchEnsemble); tabm-mini: only the "
                        "input adapter is per member", ("tabm", "tabm-mini"))
    d_block: int = _opt(512, "width of the hidden layers", ge=1)
    n_blocks: int = _opt(0, "hidden layers (0: 3 without a numeric embedding, 2 with one)", ge=0, note="0: automatic")
    dropout: float = _opt(0.1, "dropout after each hidden layer", ge=0, lt=1)
    embedding: str = _opt("ple", "numeric embedding: piecewise-linear (quantile bins), periodic, or none",
                          ("ple", "periodic", "none"))
    bins: int = _opt(48, "PLE: quantile bins per numeric column (fewer where quantiles coincide)", ge=2)
    embedding_dim: int = _opt(16, "values per numeric column after the embedding", ge=1)
    frequencies: int = _opt(16, "periodic: terms per numeric column", ge=1)
    embedding_scale: float = _opt(0.1, "periodic: sd of the initial frequencies", gt=0)
    lr: float = _opt(0.002, "AdamW learning rate", gt=0)
    weight_decay: float = _opt(0.0003, "AdamW weight decay (not on biases, the PLE linear term or the periodic "
                               "frequencies, as the TabM paper's code)", ge=0)
    batch_size: int = _opt(256, "minibatch size (per member)", ge=1)
    share_batches: bool = _opt(True, "all members see the same batches (false: each its own permutation)")
    numeric: str = _opt("quantile", "numeric inputs: the TabM paper's quantile map (train quantiles to normal scores, "
                        "n_train/30 of them, 10-1000, fitted with a little noise and saved with the model), or as the "
                        "features step scaled them", TABM_NUMERIC)
    epochs: int = _opt(1000, "maximum number of epochs", ge=1)
    patience: int = _opt(16, "stop after this many epochs without a better valid MSE (0: run every epoch); the best "
                         "epoch's weights are kept", ge=0, note="0: off")
    seed: int = _opt(4751, "torch seed for init, batch order and dropout")
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    threads: int = _opt(0, "CPU threads (0: one, measured fastest on a 2-core VM; N: at most the free cores)", ge=0,
                        note="0: automatic")
    max_seconds: float = _opt(0.0, "stop training after this many seconds, keeping the best weights (0: no limit)",
                              ge=0, note="0: no limit")
    time_clock: str = _opt("wall", "what max_seconds counts: wall-clock seconds, or this process's CPU-seconds (as a "
                           "bench's budgets do, so that a busy machine cuts no trial short)", TIME_CLOCKS)

    def check(self) -> None:
        """Device and the periodic embedding's width."""
        check_torch_device("tabm", self.device)
        _check(self.embedding != "periodic" or self.embedding_dim >= 2, "tabm.embedding_dim", self.embedding_dim,
               "must be at least 2 with the periodic embedding (the column itself and one learned value)")


@dataclass(frozen=True)
class PeerConfig:
    """What a published implementation (tabduel/models/peers.py, tabduel[peers]) takes besides its tuned defaults."""

    iterations: int = _opt(0, "epochs or boosting rounds (0: the tuned default)", ge=0, note="0: the default")
    seed: int = _opt(4751, "random seed (pytabkit's random_state)", ge=0)
    threads: int = _opt(0, "CPU threads (pytabkit's n_threads; 0: the cores free to this process)", ge=0,
                        note="0: automatic")


@dataclass(frozen=True)
class PeerRealMLPConfig(PeerConfig, ModelSettings, section="peer_realmlp", search="peer_realmlp"):
    """pytabkit's RealMLP-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "epochs, which its schedules span (0: the tuned default, 256); the best epoch on valid "
                           "is kept", ge=0, note="0: the default")


@dataclass(frozen=True)
class PeerTabMConfig(PeerConfig, ModelSettings, section="peer_tabm", search="peer_tabm"):
    """pytabkit's TabM-D regressor (Gorishniy et al. 2024; k = 32) with its defaults, on the CPU."""

    iterations: int = _opt(0, "maximum epochs (0: the default, no limit but early stopping after 16 epochs without "
                           "a better valid score)", ge=0, note="0: the default")


@dataclass(frozen=True)
class PeerLGBMConfig(PeerConfig, ModelSettings, section="peer_lgbm", search="peer_lgbm"):
    """pytabkit's LightGBM-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "maximum boosting rounds (0: the tuned default, 1000; early stopping on valid after "
                           "300 rounds without improvement)", ge=0, note="0: the default")


@dataclass(frozen=True)
class PeerCatBoostConfig(PeerConfig, ModelSettings, section="peer_catboost", search="peer_catboost"):
    """pytabkit's CatBoost-TD regressor (Holzmüller et al. 2024) with its tuned defaults, on the CPU."""

    iterations: int = _opt(0, "maximum boosting rounds (0: the tuned default, 1000; early stopping on valid after "
                           "300 rounds without improvement)", ge=0, note="0: the default")
