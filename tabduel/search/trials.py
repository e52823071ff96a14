"""Run search trials as plain functions: load a features variant, embed, train, score on valid (and test).

Every run function measures `cpu_seconds` (time.process_time around load, fit and score: the budget a bench counts)
and `seconds` (the fit's wall time), and names the `device` and the `worker` that ran it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tabduel.data.embeddings import apply, fit_periodic, fit_ple
from tabduel.data.features import load_xy
from tabduel.data.numeric import fit_numeric, map_numeric
from tabduel.engine.data import Data
from tabduel.infra.config import XGBoostConfig
from tabduel.infra.errors import DivergedError
from tabduel.infra.runtime import using_threads
from tabduel.models.training import load_data, native_missing
from tabduel.search.pruning import Reporter
from tabduel.search.scores import mse, worker
from tabduel.search.space import Encoding, MLPTrial, group_key


@dataclass(frozen=True)
class Inputs:
    """Encoded train/valid arrays and, for a refit, the test split."""

    data: Data
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    manifest: dict[str, Any] | None = None
    numeric_map: Any = None  # the encoding's NumericMap fitted on train (None: standard inputs as stored)
    embedding: Any = None  # the encoding's Embedding fitted on train (None: none)


def embedded_columns(manifest: dict[str, Any]) -> tuple[int, ...]:
    """Indices of the standardized numeric inputs (the ones an embedding replaces)."""
    scaled = set(manifest["scaler"]["mean"])
    return tuple(i for i, name in enumerate(manifest["features"]) if name in scaled)


def load_inputs(features_dir: str | Path, encoding: Encoding, with_test: bool, seed: int, kind: str = "mlp"
                ) -> Inputs:
    """A features variant's splits with the encoding's numeric map and embedding fitted on train and applied to
    every split."""
    data, manifest = load_data(features_dir, kind)
    x_test = y_test = None
    if with_test:
        x_test, y_test = load_xy(str(Path(features_dir) / "test.parquet"), manifest, native_missing(kind))
    columns = embedded_columns(manifest)
    m = None
    if encoding.numeric != "standard":
        m = fit_numeric(data.x_train, columns, encoding.numeric)
        data = Data(map_numeric(m, data.x_train), data.y_train, map_numeric(m, data.x_valid), data.y_valid,
                    data.features)
        x_test = None if x_test is None else map_numeric(m, x_test)
    if encoding.name not in ("ple", "periodic"):
        return Inputs(data, x_test, y_test, manifest, m)
    if encoding.name == "ple":
        emb = fit_ple(data.x_train, columns, encoding.bins)
    else:
        emb = fit_periodic(data.x_train.shape[1], columns, encoding.frequencies, encoding.sigma, seed)
    names = tuple(n for i, n in enumerate(manifest["features"]) if i not in columns)
    names += tuple(f"{encoding.name}_{j}" for j in range(emb.width))
    data = Data(apply(emb, data.x_train), data.y_train, apply(emb, data.x_valid), data.y_valid, names)
    return Inputs(data, None if x_test is None else apply(emb, x_test), y_test, manifest, m, emb)


def torch_threads() -> int:
    """torch's intra-op threads now: what a kept model records beside the valid predictions it was scored on."""
    import torch

    return torch.get_num_threads()


def on_threads(n: int) -> contextlib.AbstractContextManager[None]:
    """torch on n threads for the block (0: as it is). A float32 net's outputs move in the last bit with the thread
    count (on an Intel Xeon VM), so a kept model predicts on the threads its trial's valid predictions were made on."""
    return using_threads(n) if n > 0 else contextlib.nullcontext()


@dataclass
class KeptMLP:
    """A trial of tabduel's MLP as it was fitted: its encoding's fitted maps, its members' weights, and which of a
    population's members are its own; it predicts any split of its features variant as the trial scored valid."""

    manifest: dict[str, Any]
    numeric_map: Any  # NumericMap fitted on train, or None (standard inputs)
    embedding: Any  # Embedding fitted on train, or None
    params: Any  # engine Params, stacked (population) or single
    members: np.ndarray  # (members in params,) bool: this trial's
    activation: str
    kind: str = "mlp"
    valid: np.ndarray | None = None  # (n_valid,) its predictions on the valid split, as the search scored it
    source: str = ""  # the features folder it read
    threads: int = 0  # torch's threads when the search predicted valid; predict uses them (0: torch's as they are)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(rows, features) of the split as load_xy reads it -> (rows,) the mean of the trial's members."""
        if self.numeric_map is not None:
            x = map_numeric(self.numeric_map, x)
        if self.embedding is not None:
            x = apply(self.embedding, x)
        with on_threads(self.threads):
            return _members_predict(self.params, x, self.activation)[self.members].mean(axis=0)

    def predict_valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, targets) of the valid split it was scored on, predicted again."""
        return predict_split(self, Path(self.source) / "valid.parquet")

    def rebased(self, root: str | Path) -> Any:
        """The same trial with its features folder found under root (its bench's inputs, wherever they now are)."""
        return dataclasses.replace(self, source=str(Path(root) / Path(self.source).name))


@dataclass
class KeptModel:
    """A trial of a registry family (realmlp, tabm, xgboost, a peer) as it was fitted, with its features' manifest."""

    kind: str
    manifest: dict[str, Any]
    model: Any
    valid: np.ndarray | None = None  # (n_valid,) its predictions on the valid split, as the search scored it
    source: str = ""  # the features folder it read
    threads: int = 0  # torch's threads when the search predicted valid; predict uses them (0: torch's as they are)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(rows, features) of the split as load_xy reads it for this family -> (rows,) predictions."""
        from tabduel.models.registry import family

        with on_threads(self.threads):
            return family(self.kind).predict(self.model, x)

    def predict_valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(predictions, targets) of the valid split it was scored on, predicted again."""
        return predict_split(self, Path(self.source) / "valid.parquet")

    def rebased(self, root: str | Path) -> Any:
        """The same trial with its features folder found under root (its bench's inputs, wherever they now are)."""
        return dataclasses.replace(self, source=str(Path(root) / Path(self.source).name))


def predict_split(kept: KeptMLP | KeptModel, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, targets) of a kept trial on one split's Parquet file, read as its family reads it."""
    x, y = load_xy(str(path), kept.manifest, native_missing(kept.kind))
    return np.asarray(kept.predict(x), dtype=np.float32).reshape(-1), y


TEST_SCORES = ("test_mse", "test_r2", "test_rmse_orig", "test_r2_orig", "test_mse_orig")  # what scores_on_test gives


def scores_on_test(pred: np.ndarray, y: np.ndarray, manifest: dict[str, Any]) -> dict[str, float]:
    """test_mse on the model's (transformed) scale; test_r2 there; test_rmse_orig and test_r2_orig on the target's
    original scale (the inverse of the transform fitted on train)."""
    from tabduel.data import target
    from tabduel.models.evaluate import regression_metrics

    on_model = regression_metrics(y, pred)
    name, params = manifest.get("target_transform", "none"), manifest.get("target_params")
    orig = regression_metrics(target.inverse(y.astype(np.float64), name, params),
                              target.inverse(pred.astype(np.float64), name, params))
    return {"test_mse": on_model["mse"], "test_r2": on_model["r2"], "test_rmse_orig": orig["rmse"],
            "test_r2_orig": orig["r2"], "test_mse_orig": orig["mse"]}


def _members_predict(params: Any, x: np.ndarray, activation: str) -> np.ndarray:
    """(rows, features) -> (members, rows) predictions of stacked (or single) engine params."""
    import torch

    from tabduel.engine.net import forward

    with torch.no_grad():
        pred = forward(params, torch.from_numpy(np.ascontiguousarray(x.T)), activation)  # (K, 1, rows) or (1, rows)
    return pred.reshape(-1, x.shape[0]).numpy()


def run_mlp(features_dir: str | Path, trials: Sequence[MLPTrial], with_test: bool = False, keep: bool = False
            ) -> list[dict[str, Any]]:
    """Train MLP trials that share inputs and shape as one population (each trial's ensemble members in it);
    returns per trial its valid (and test) MSE of the ensemble mean, and facts of the fit (with keep, the fitted
    trial as row["model"], a KeptMLP). A trial whose spec carries a pruning handle is reported at the rung epochs and
    stopped where its study's pruner says (row["pruned"])."""
    from tabduel.engine import population, single

    keys = {group_key(t) for t in trials}
    if len(keys) != 1:
        raise ValueError(f"run_mlp needs trials of one encoding and shape, got {len(keys)} groups")
    first = trials[0]
    cpu_start = time.process_time()
    inputs = load_inputs(features_dir, first.encoding, with_test, first.mlp.seed)
    data = inputs.data
    reporter = Reporter([t.prune for t in trials])
    start = time.perf_counter()
    try:
        if len(trials) == 1 and first.ensemble == 1:  # alone, the single-model path is faster
            fitted = single.fit(data, first.mlp, reporter.single() if reporter.on else None)
            params, infos = fitted.params, [fitted.info]
            owners = [0]
            time_limited = fitted.info["time_limited"]
        else:
            members, owners = [], []
            for i, t in enumerate(trials):
                members += [population.Member(t.mlp.seed + j, t.mlp.lr, t.mlp.weight_decay, t.mlp.dropout)
                            for j in range(t.ensemble)]
                owners += [i] * t.ensemble
            prune = reporter.members(np.asarray(owners)) if reporter.on else None
            # A trial's time limit is its own: a batch of n trials trains as one population for n times as long.
            shape = dataclasses.replace(population.shape_of(first.mlp), max_seconds=first.mlp.max_seconds * len(trials))
            pop = population.fit(data, shape, members, prune=prune)
            params, time_limited = pop.params, pop.info["time_limited"]
            infos = [pop.single(k).info for k in range(len(members))]
    except DivergedError as exc:  # every member diverged: each trial is a diverged (not finite) result
        return [_diverged_row(str(exc), len(trials), sum(t.ensemble for t in trials), time.perf_counter() - start,
                              time.process_time() - cpu_start, with_test) for _ in trials]
    seconds = time.perf_counter() - start
    threads = torch_threads()
    valid = _members_predict(params, data.x_valid, first.mlp.activation)  # (members, n_valid)
    test = _members_predict(params, inputs.x_test, first.mlp.activation) if with_test else None
    cpu = time.process_time() - cpu_start  # the whole process: torch's own threads count too
    owners_arr = np.asarray(owners)
    total_members = len(owners)
    out = []
    for i, t in enumerate(trials):
        mine = owners_arr == i
        # A trial with a diverged member is a diverged trial (its best weights may still be finite).
        gone = any(infos[k].get("diverged_epoch", 0) for k in np.flatnonzero(mine))
        row = {"valid_mse": math.nan if gone else mse(valid[mine].mean(axis=0), data.y_valid),
               "member_valid_mse": [mse(v, data.y_valid) for v in valid[mine]],
               "epochs_run": [int(infos[k]["epochs_run"]) for k in np.flatnonzero(mine)],
               "best_epoch": [int(infos[k]["best_epoch"]) for k in np.flatnonzero(mine)],
               "seconds": float(seconds * mine.sum() / total_members), "group_seconds": seconds,
               "cpu_seconds": float(cpu * mine.sum() / total_members), "group_cpu_seconds": cpu,
               "group_trials": len(trials), "group_members": total_members, "time_limited": bool(time_limited),
               "pruned": any(infos[k].get("pruned_epoch", 0) for k in np.flatnonzero(mine)),
               "inputs": data.x_train.shape[1], "device": infos[0]["device"], "worker": worker()}
        if keep and not gone:
            row["model"] = KeptMLP(inputs.manifest, inputs.numeric_map, inputs.embedding, params, mine,
                                   first.mlp.activation, valid=valid[mine].mean(axis=0), source=str(features_dir),
                                   threads=threads)
        if with_test:
            row.update({"test_mse": math.nan} if gone else scores_on_test(test[mine].mean(axis=0), inputs.y_test,
                                                                          inputs.manifest))
        out.append(row)
    return out


def _diverged_row(error: str, group_trials: int, group_members: int, seconds: float, cpu: float,
                  with_test: bool) -> dict[str, Any]:
    """The result of a trial whose training diverged: not finite, told to Optuna as failed."""
    row = {"valid_mse": math.nan, "member_valid_mse": [], "epochs_run": [0], "best_epoch": [0],
           "seconds": seconds / group_trials, "group_seconds": seconds, "group_trials": group_trials,
           "cpu_seconds": cpu / group_trials, "group_cpu_seconds": cpu,
           "group_members": group_members, "time_limited": False, "pruned": False, "inputs": 0, "device": "",
           "worker": worker(),
           "error": error}
    if with_test:
        row["test_mse"] = math.nan
    return row


def run_net(kind: str, features_dir: str | Path, cfg: Any, with_test: bool = False, keep: bool = False
            ) -> dict[str, Any]:
    """Fit one trial of an autograd family (realmlp, tabm) on the features as its pipeline training reads them
    (tabduel.models.training.load_data); its valid (and test) MSE at the best epoch, and facts of the fit (with
    keep, the fitted trial as row["model"], a KeptModel). A trial whose training diverged is a diverged (not finite)
    result."""
    from tabduel.models.registry import family
    from tabduel.models.training import fit_predict

    cpu_start = time.process_time()
    data, manifest = load_data(features_dir, kind)
    start = time.perf_counter()
    threads = torch_threads()  # where the fit hands back no valid predictions of its own, they are made on these
    try:
        fitted, pred = fit_predict(kind, data, cfg)
    except DivergedError as exc:
        row = {"valid_mse": math.nan, "epochs_run": 0, "best_epoch": 0, "time_limited": False,
               "seconds": time.perf_counter() - start, "inputs": data.x_train.shape[1], "device": "",
               "worker": worker(), "error": str(exc)}
        if with_test:
            row.update(dict.fromkeys(TEST_SCORES, math.nan))
        row["cpu_seconds"] = time.process_time() - cpu_start
        return row
    seconds = time.perf_counter() - start
    fam = family(kind)
    info = fitted.info
    row = {"valid_mse": mse(pred, data.y_valid),
           "epochs_run": int(info["epochs_run"]), "best_epoch": int(info["best_epoch"]),
           "time_limited": bool(info["time_limited"]), "seconds": seconds, "inputs": data.x_train.shape[1],
           "device": info["device"], "worker": worker()}
    if keep:
        scored_on = info.get("threads", threads) if getattr(fitted, "valid_pred", None) is not None else threads
        row["model"] = KeptModel(kind, manifest, fitted.model, pred, str(features_dir), threads=scored_on)
    if with_test:
        x_test, y_test = load_xy(str(Path(features_dir) / "test.parquet"), manifest, native_missing(kind))
        row.update(scores_on_test(fam.predict(fitted.model, x_test), y_test, manifest))
    row["cpu_seconds"] = time.process_time() - cpu_start  # the whole process: torch's own threads count too
    return row


def run_realmlp(features_dir: str | Path, cfgs: Sequence[Any], with_test: bool = False, keep: bool = False
                ) -> list[dict[str, Any]]:
    """RealMLP trials of one shape (a trial and its search.realmlp_batch siblings) trained as one population, each
    trial one member (engine/realmlp_population.py: each as it would train alone); per trial run_net's row, with
    the population's seconds and CPU-seconds split evenly among its trials, as run_mlp splits them. A trial alone
    is run_net's."""
    from tabduel.engine.realmlp_population import member_of, shape_of
    from tabduel.models import realmlp
    from tabduel.models.training import check_finite

    if len(cfgs) == 1:
        return [run_net("realmlp", features_dir, cfgs[0], with_test, keep)]
    if len({shape_of(c) for c in cfgs}) != 1:
        raise ValueError(f"run_realmlp needs trials of one shape, got {len({shape_of(c) for c in cfgs})}")
    n = len(cfgs)
    cpu_start = time.process_time()
    data, manifest = load_data(features_dir, "realmlp")
    start = time.perf_counter()
    # A trial's time limit is its own: a batch of n trials trains as one population for n times as long.
    shape = dataclasses.replace(shape_of(cfgs[0]), max_seconds=cfgs[0].max_seconds * n)
    fits, errors, info = realmlp.fit_population(data, shape, [member_of(c) for c in cfgs])
    threads = torch_threads()
    preds = [None if f is None else realmlp.predict(f.model, data.x_valid) for f in fits]
    seconds = time.perf_counter() - start
    x_test = y_test = None
    if with_test:
        x_test, y_test = load_xy(str(Path(features_dir) / "test.parquet"), manifest, native_missing("realmlp"))
    rows = []
    for fitted, error, pred in zip(fits, errors, preds):
        if pred is not None:
            try:
                check_finite("realmlp", pred)
            except DivergedError as exc:  # as fit_predict raises it for a trial alone
                error = str(exc)
        if error:
            row = {"valid_mse": math.nan, "epochs_run": 0, "best_epoch": 0, "time_limited": False,
                   "inputs": data.x_train.shape[1], "device": "", "worker": worker(), "error": error}
            if with_test:
                row.update(dict.fromkeys(TEST_SCORES, math.nan))
        else:
            row = {"valid_mse": mse(pred, data.y_valid), "epochs_run": int(fitted.info["epochs_run"]),
                   "best_epoch": int(fitted.info["best_epoch"]), "time_limited": bool(fitted.info["time_limited"]),
                   "inputs": data.x_train.shape[1], "device": fitted.info["device"], "worker": worker()}
            if keep:
                row["model"] = KeptModel("realmlp", manifest, fitted.model, pred, str(features_dir), threads=threads)
            if with_test:
                row.update(scores_on_test(realmlp.predict(fitted.model, x_test), y_test, manifest))
        rows.append(row)
    cpu = time.process_time() - cpu_start  # the whole process: torch's own threads count too
    for row in rows:
        row.update(seconds=seconds / n, group_seconds=seconds, cpu_seconds=cpu / n, group_cpu_seconds=cpu,
                   group_trials=n, group_members=info["members"])
    return rows


def run_xgboost(features_dir: str | Path, cfg: XGBoostConfig, with_test: bool = False, keep: bool = False
                ) -> dict[str, Any]:
    """Fit one XGBoost trial with early stopping on valid; its valid (and test) MSE at the best iteration (with
    keep, the booster as row["model"], a KeptModel)."""
    from tabduel.models import xgb

    cpu_start = time.process_time()
    inputs = load_inputs(features_dir, Encoding("ordinal"), with_test, cfg.seed, "xgboost")
    start = time.perf_counter()
    fitted = xgb.fit(inputs.data, cfg)
    seconds = time.perf_counter() - start
    pred = xgb.predict(fitted.model, inputs.data.x_valid)
    row = {"valid_mse": mse(pred, inputs.data.y_valid),
           "best_iteration": fitted.info["best_iteration"], "rounds_run": fitted.info["rounds_run"],
           "seconds": seconds, "device": fitted.info["device"], "worker": worker()}
    if keep:
        row["model"] = KeptModel("xgboost", inputs.manifest, fitted.model, pred, str(features_dir))
    if with_test:
        row.update(scores_on_test(xgb.predict(fitted.model, inputs.x_test), inputs.y_test, inputs.manifest))
    row["cpu_seconds"] = time.process_time() - cpu_start  # the whole process: XGBoost's own threads count too
    return row
