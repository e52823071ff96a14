"""What a search tries: input encodings, MLP, XGBoost, RealMLP and TabM settings, suggested from an Optuna trial.

The RealMLP space is RealMLP-HPO's (Holzmüller et al. 2024, "Better by Default", pytabkit's RealMLP_HPO), the TabM
space the TabM paper's (Gorishniy et al. 2024, "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
Ensembling", its tuning configs), each where the engine builds what it names; `realmlp_defaults` and `tabm_defaults`
are the params of each family's default settings (its paper's), the first trial of a new study.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tabduel.data.dataset import DatasetSpec
from tabduel.data.numeric import NUMERIC
from tabduel.infra.config import FeaturesConfig, MLPConfig, RealMLPConfig, SearchConfig, TabMConfig, XGBoostConfig
from tabduel.infra.errors import ConfigError
from tabduel.infra.runtime import cpu_threads, free_cores
from tabduel.search.pruning import Handle

# ordinal: the original analysis's codes; onehot: one-hot calendar columns; cyclic: ordinal + sin/cos of each
# periodic column (hour, day, month); ple / periodic: the onehot inputs with their numeric columns embedded.
ENCODINGS = ("ordinal", "onehot", "cyclic", "ple", "periodic")
BASES = ("ordinal", "onehot", "cyclic")  # encodings that are a features step of their own
ACTIVATIONS = ("relu", "gelu", "silu", "sigmoid")
OPTIMIZERS = ("adamw", "adam", "sgd")
BATCH_SIZES = (64, 128, 256, 512)


@dataclass(frozen=True)
class Encoding:
    """An input encoding: a features variant (base) and, for ple/periodic, the embedding's settings."""

    name: str = "ordinal"
    bins: int = 0  # ple
    frequencies: int = 0  # periodic
    sigma: float = 0.0  # periodic
    numeric: str = "standard"  # the map of the numeric inputs, fitted on train, before any embedding

    def __post_init__(self) -> None:
        if self.name not in ENCODINGS:
            raise ConfigError(f"encoding {self.name!r} is not one of: {', '.join(ENCODINGS)}")
        if self.numeric not in NUMERIC:
            raise ConfigError(f"encoding numeric = {self.numeric!r} is not one of: {', '.join(NUMERIC)}")
        if self.name == "ple" and self.bins < 2:
            raise ConfigError(f"encoding ple: bins = {self.bins}, must be at least 2")
        if self.name == "periodic" and (self.frequencies < 1 or self.sigma <= 0):
            raise ConfigError(f"encoding periodic: frequencies = {self.frequencies} must be at least 1 and "
                              f"sigma = {self.sigma} positive")

    @property
    def base(self) -> str:
        """The features variant it is built on."""
        return encoding_base(self.name)


def encoding_base(name: str) -> str:
    """The features variant an encoding is built on: ple and periodic embed the onehot variant's numeric inputs."""
    return "onehot" if name in ("ple", "periodic") else name


@dataclass(frozen=True)
class MLPTrial:
    """One MLP trial: its input encoding, its settings, how many seeds its ensemble averages, and (in a pruned
    search) where the process that trains it reports it."""

    encoding: Encoding
    mlp: MLPConfig
    ensemble: int
    prune: Handle | None = None


def categorical_inputs(spec: DatasetSpec) -> tuple[str, ...]:
    """Inputs one-hot encoded by the onehot variant: periodic columns and categories of more than two levels."""
    out = []
    for name in spec.inputs:
        if spec.period(name) is not None:
            out.append(name)
        elif any(c.name == name for c in spec.columns) and spec.column(name).type == "category" \
                and len(spec.column(name).levels) > 2:
            out.append(name)
    return tuple(out)


def features_config(base: str, spec: DatasetSpec, cfg: FeaturesConfig, split_seed: int | None = None
                    ) -> FeaturesConfig:
    """The features settings of an encoding's base variant (and of another split seed, when given)."""
    if base not in BASES:
        raise ConfigError(f"encoding base {base!r} is not one of: {', '.join(BASES)}")
    periodic = tuple(name for name in spec.inputs if spec.period(name) is not None)
    variant = {"ordinal": {"onehot": (), "cyclic": ()},
               "onehot": {"onehot": categorical_inputs(spec), "cyclic": ()},
               "cyclic": {"onehot": (), "cyclic": periodic}}[base]
    seed = cfg.split_seed if split_seed is None else split_seed
    return dataclasses.replace(cfg, split_seed=seed, **variant)


def workers_of(s: SearchConfig) -> int:
    """Trials at once: search.workers, else the free cores."""
    return s.workers or free_cores()


def trial_threads(s: SearchConfig, workers: int) -> int:
    """Threads of one trial: search.threads, else the free cores shared among the workers; never above them."""
    return cpu_threads(s.threads) if s.threads else max(1, free_cores() // max(1, workers))


def _powers(lo: int, hi: int) -> list[int]:
    out, v = [], lo
    while v <= hi:
        out.append(v)
        v *= 2
    return out


def suggest_mlp(trial: Any, s: SearchConfig, threads: int = 1, encodings: tuple[str, ...] = ENCODINGS) -> MLPTrial:
    """An MLP trial from the search space: encoding (of `encodings`), numeric map, depth 1-6, width 16-1024,
    activation, dropout, optimizer, lr, weight decay, batch size and ensemble size."""
    name = trial.suggest_categorical("encoding", encodings)
    numeric = trial.suggest_categorical("numeric", s.numeric) if len(s.numeric) > 1 else s.numeric[0]
    if name == "ple":
        encoding = Encoding(name, bins=trial.suggest_int("ple_bins", 4, 64, log=True), numeric=numeric)
    elif name == "periodic":
        encoding = Encoding(name, frequencies=trial.suggest_int("periodic_frequencies", 4, 48, log=True),
                            sigma=trial.suggest_float("periodic_sigma", 0.01, 10.0, log=True), numeric=numeric)
    else:
        encoding = Encoding(name, numeric=numeric)
    depth = trial.suggest_int("depth", 1, s.max_depth)
    width = trial.suggest_categorical("width", _powers(16, s.max_width))
    mlp = MLPConfig(
        hidden=(width,) * depth,
        activation=trial.suggest_categorical("activation", ACTIVATIONS),
        dropout=trial.suggest_float("dropout", 0.0, 0.5, step=0.05),
        optimizer=trial.suggest_categorical("optimizer", OPTIMIZERS),
        lr=trial.suggest_float("lr", 1e-4, 0.3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-7, 1e-2, log=True),
        batch_size=trial.suggest_categorical("batch_size", BATCH_SIZES),
        epochs=s.mlp_epochs, patience=s.mlp_patience, max_seconds=s.mlp_max_seconds, time_clock=s.trial_clock,
        seed=s.seed, threads=threads,
    )
    ensemble = trial.suggest_categorical("ensemble", _powers(1, s.max_ensemble))
    return MLPTrial(encoding, mlp, ensemble)


def suggest_xgboost(trial: Any, s: SearchConfig, threads: int = 1) -> XGBoostConfig:
    """An XGBoost trial: max_depth, learning_rate, min_child_weight, subsample, colsample_bytree, lambda, alpha;
    n_estimators is found by early stopping on valid."""
    return XGBoostConfig(
        max_depth=trial.suggest_int("max_depth", 2, 12),
        learning_rate=trial.suggest_float("learning_rate", 0.005, 0.3, log=True),
        min_child_weight=trial.suggest_float("min_child_weight", 0.1, 100.0, log=True),
        subsample=trial.suggest_float("subsample", 0.4, 1.0),
        colsample_bytree=trial.suggest_float("colsample_bytree", 0.3, 1.0),
        reg_lambda=trial.suggest_float("lambda", 1e-3, 100.0, log=True),
        reg_alpha=trial.suggest_float("alpha", 1e-4, 10.0, log=True),
        n_estimators=s.xgb_rounds, early_stopping_rounds=s.xgb_early_stopping, seed=s.seed, n_jobs=threads,
    )


def xgboost_defaults() -> dict[str, Any]:
    """The params of XGBoostConfig's defaults in suggest_xgboost's space (alpha 0 is outside its log range: its
    lowest value, 1e-4, stands for it)."""
    d = XGBoostConfig()
    return {"max_depth": d.max_depth, "learning_rate": d.learning_rate, "min_child_weight": d.min_child_weight,
            "subsample": d.subsample, "colsample_bytree": d.colsample_bytree, "lambda": d.reg_lambda,
            "alpha": max(d.reg_alpha, 1e-4)}


# RealMLP-HPO's choices. Its numeric embeddings are none, pbld, pl and plr; the engine builds none and pbld.
REALMLP_EMBEDDINGS = ("none", "pbld")
REALMLP_ACTIVATIONS = ("relu", "selu", "mish")
REALMLP_HIDDEN = {"256x3": (256, 256, 256), "64x5": (64,) * 5, "512x1": (512,)}  # as Optuna stores a choice: text
REALMLP_DROPOUTS = (0.0, 0.15, 0.3)
REALMLP_WEIGHT_DECAYS = (0.0, 0.02)
# The TabM paper tunes TabM without embeddings and with piecewise-linear ones (its "tabm" and
# "tabm-piecewiselinear" runs); here one study chooses between them.
TABM_EMBEDDINGS = ("ple", "none")


def hidden_name(hidden: tuple[int, ...]) -> str:
    """The choice that names hidden layer widths: (256, 256, 256) -> '256x3'."""
    name = f"{hidden[0]}x{len(hidden)}"
    if REALMLP_HIDDEN.get(name) != tuple(hidden):
        raise ConfigError(f"hidden layers {hidden} are not one of the RealMLP space's: {', '.join(REALMLP_HIDDEN)}")
    return name


def suggest_realmlp(trial: Any, s: SearchConfig, threads: int = 1) -> RealMLPConfig:
    """A RealMLP trial from RealMLP-HPO's space: numeric embedding (none or pbld) and, with pbld, the sd of its
    initial frequencies (log-uniform 0.05-0.5), front scale layer on or off, lr log-uniform 0.02-0.3, dropout 0, 0.15
    or 0.3, activation relu, selu or mish, hidden layers 256x3, 64x5 or 512x1, weight decay 0 or 0.02; the rest of
    the recipe is RealMLP-TD's (RealMLPConfig's defaults), its epochs and time limit the search settings'."""
    default = RealMLPConfig()
    embedding = trial.suggest_categorical("embedding", REALMLP_EMBEDDINGS)
    scale = (trial.suggest_float("embedding_scale", 0.05, 0.5, log=True) if embedding == "pbld"
             else default.embedding_scale)
    return RealMLPConfig(
        embedding=embedding, embedding_scale=scale,
        front_scale=trial.suggest_categorical("front_scale", (True, False)),
        lr=trial.suggest_float("lr", 0.02, 0.3, log=True),
        dropout=trial.suggest_categorical("dropout", REALMLP_DROPOUTS),
        activation=trial.suggest_categorical("activation", REALMLP_ACTIVATIONS),
        hidden=REALMLP_HIDDEN[trial.suggest_categorical("hidden", tuple(REALMLP_HIDDEN))],
        weight_decay=trial.suggest_categorical("weight_decay", REALMLP_WEIGHT_DECAYS),
        epochs=s.realmlp_epochs, max_seconds=s.realmlp_max_seconds, time_clock=s.trial_clock, seed=s.seed,
        threads=threads,
    )


def realmlp_defaults() -> dict[str, Any]:
    """The params of RealMLPConfig's defaults (RealMLP-TD's) in suggest_realmlp's space."""
    d = RealMLPConfig()
    params: dict[str, Any] = {"embedding": d.embedding}
    if d.embedding == "pbld":
        params["embedding_scale"] = d.embedding_scale
    return {**params, "front_scale": d.front_scale, "lr": d.lr, "dropout": d.dropout, "activation": d.activation,
            "hidden": hidden_name(d.hidden), "weight_decay": d.weight_decay}


def suggest_tabm(trial: Any, s: SearchConfig, threads: int = 1) -> TabMConfig:
    """A TabM trial from the TabM paper's space: numeric embedding (ple or none), hidden layers 1-5 (1-4 with ple),
    width 64-1024 in steps of 16, dropout 0 or uniform 0-0.5, lr log-uniform 1e-4 to 5e-3, weight decay 0 or
    log-uniform 1e-4 to 0.1, and with ple its bins 2-128 and values per feature 8-32 in steps of 4; k, epochs,
    patience and time limit are the search settings', the rest TabMConfig's defaults."""
    default = TabMConfig()
    embedding = trial.suggest_categorical("embedding", TABM_EMBEDDINGS)
    n_blocks = trial.suggest_int("n_blocks", 1, 4 if embedding == "ple" else 5)
    d_block = trial.suggest_int("d_block", 64, 1024, step=16)
    dropout = trial.suggest_float("dropout", 0.0, 0.5) if trial.suggest_categorical("use_dropout", (True, False)) \
        else 0.0
    lr = trial.suggest_float("lr", 1e-4, 5e-3, log=True)
    weight_decay = (trial.suggest_float("weight_decay", 1e-4, 0.1, log=True)
                    if trial.suggest_categorical("use_weight_decay", (True, False)) else 0.0)
    if embedding == "ple":
        bins, dim = trial.suggest_int("bins", 2, 128), trial.suggest_int("embedding_dim", 8, 32, step=4)
    else:
        bins, dim = default.bins, default.embedding_dim
    return TabMConfig(
        k=s.tabm_k, embedding=embedding, n_blocks=n_blocks, d_block=d_block, dropout=dropout, lr=lr,
        weight_decay=weight_decay, bins=bins, embedding_dim=dim, epochs=s.tabm_epochs, patience=s.tabm_patience,
        max_seconds=s.tabm_max_seconds, time_clock=s.trial_clock, seed=s.seed, threads=threads,
    )


def tabm_defaults() -> dict[str, Any]:
    """The params of TabMConfig's defaults in suggest_tabm's space (n_blocks 0, automatic, as the engine resolves
    it: 3 without an embedding, 2 with one)."""
    d = TabMConfig()
    params: dict[str, Any] = {"embedding": d.embedding, "n_blocks": d.n_blocks or (3 if d.embedding == "none" else 2),
                              "d_block": d.d_block, "use_dropout": d.dropout > 0}
    if d.dropout > 0:
        params["dropout"] = d.dropout
    params.update(lr=d.lr, use_weight_decay=d.weight_decay > 0)
    if d.weight_decay > 0:
        params["weight_decay"] = d.weight_decay
    if d.embedding == "ple":
        params.update(bins=d.bins, embedding_dim=d.embedding_dim)
    return params


def group_key(t: MLPTrial) -> tuple:
    """Trials with equal keys train as one population: same inputs and the same network shape."""
    from tabduel.engine.population import shape_of

    return (t.encoding, shape_of(t.mlp))


def realmlp_group_key(cfg: RealMLPConfig) -> RealMLPConfig:
    """RealMLP trials with equal keys may train as one population: the same settings but lr, weight decay, dropout
    and seed."""
    from tabduel.engine.realmlp_population import shape_of

    return shape_of(cfg)
