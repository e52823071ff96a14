"""hgb, the family that is one module (tabduel/models/hgb.py): it learns, stops on valid, saves without pickle, loads
exactly; it is registered, configured and trained by the CLI and logged to MLflow like the built-in families."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tabduel.cli import main
from tabduel.engine.data import Data
from tabduel.infra.errors import ConfigError
from tabduel.models import hgb, registry
from tabduel.settings import MODEL_KINDS, Config

SMALL = ["--hgb-max-iter", "60", "--hgb-learning-rate", "0.2", "--hgb-early-stopping-rounds", "5",
         "--hgb-threads", "1", "--evaluate-dpi", "40"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.3 * x[:, 2] + rng.normal(0, 0.05, 600)).astype(np.float32)
    x[::9, 1] = np.nan  # taken natively
    return Data(x[:400], y[:400], x[400:], y[400:], tuple("abcde"))


@pytest.fixture(scope="module")
def fitted(data):
    return hgb.fit(data, hgb.HGBConfig(max_iter=300, learning_rate=0.1, early_stopping_rounds=10, threads=1))


def test_hgb_learns_and_keeps_the_round_of_the_best_valid_loss(data, fitted):
    valid = hgb.predict(fitted.model, data.x_valid)
    mse = float(np.mean((valid.astype(np.float64) - data.y_valid) ** 2))
    assert mse < 0.2 * float(np.var(data.y_valid))
    rmse = fitted.history["round_valid_rmse"]
    assert len(rmse) == fitted.info["rounds_run"] == len(fitted.history["round_train_rmse"])
    assert fitted.info["best_iteration"] == int(np.argmin(rmse)) + 1 == fitted.model.n_iter_
    assert fitted.info["rounds_run"] - fitted.info["best_iteration"] == 10  # stopped 10 rounds after the best
    assert mse == pytest.approx(min(rmse) ** 2, rel=1e-4)


def test_hgb_without_early_stopping_keeps_every_round(data):
    fit = hgb.fit(data, hgb.HGBConfig(max_iter=7, early_stopping_rounds=0, threads=1))
    assert fit.model.n_iter_ == fit.info["best_iteration"] == 7 and fit.history == {}


def test_hgb_saves_without_pickle_and_loads_exactly(tmp_path, data, fitted):
    hgb.save(fitted, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.npz"]
    with np.load(tmp_path / "model.npz", allow_pickle=False) as arrays:
        assert len([k for k in arrays.files if k.startswith("nodes_")]) == fitted.model.n_iter_
    json.loads((tmp_path / "model.json").read_text())
    loaded = hgb.load(tmp_path)
    from sklearn.ensemble import HistGradientBoostingRegressor

    assert isinstance(loaded, HistGradientBoostingRegressor)  # a real estimator: MLflow's sklearn flavour logs it
    for x in (data.x_valid, data.x_train):
        np.testing.assert_array_equal(hgb.predict(loaded, x), hgb.predict(fitted.model, x))


def test_hgb_is_registered_from_its_module_alone():
    fam = registry.family("hgb")
    assert fam is hgb.FAMILY and fam in registry.declared_families()
    assert fam.config is hgb.HGBConfig and fam.search == "" and fam.flavour == "sklearn" and fam.native_missing
    assert MODEL_KINDS[-1] == "hgb" and Config().hgb == hgb.HGBConfig()
    cfg = Config.from_dict({"hgb": {"max_iter": 5, "learning_rate": 0.3}, "pipeline": {"models": ["hgb", "linear"]}})
    assert cfg.hgb.max_iter == 5 and cfg.model("hgb").learning_rate == 0.3


@pytest.mark.parametrize("data, message", [
    ({"hgb": {"max_iters": 5}}, "unknown setting 'hgb.max_iters' (did you mean 'max_iter'?) in [hgb]"),
    ({"hgb": {"learning_rate": 0}}, "hgb.learning_rate = 0.0: must be positive"),
    ({"hgb": {"max_features": 1.5}}, "hgb.max_features = 1.5: must be in (0, 1]"),
    ({"hgb": {"max_bins": 256}}, "hgb.max_bins = 256: must be between 2 and 255"),
    ({"hgb": {"early_stopping_rounds": -1}}, "hgb.early_stopping_rounds = -1: must not be negative (0: off)"),
])
def test_hgb_settings_are_checked_by_name_and_bounds(data, message):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(data)
    assert str(err.value).startswith(message)


def test_train_hgb_and_run_hgb_beside_linear(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--source", str(raw_csv)]) == 0
    assert main(["features"]) == 0
    assert main(["train", "hgb", "--max-iter", "20", "--learning-rate", "0.3", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "hgb", "--max-bins", "1"]) == 2
    assert "hgb.max_bins = 1: must be between 2 and 255" in capsys.readouterr().err
    assert main(["run", "--source", str(raw_csv), "--models", "hgb,linear", *SMALL]) == 0

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    trained = [r for r in runs if r.data.tags.get("model") == "hgb" and "mlflow.parentRunId" not in r.data.tags]
    assert trained and trained[0].data.params["max_iter"] == "20" and trained[0].info.status == "FINISHED"
    children = {r.data.tags["model"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"hgb", "linear"}
    run = children["hgb"]
    assert run.info.status == "FINISHED" and run.outputs.model_outputs
    assert run.data.params["max_iter"] == "60" and run.data.metrics["best_iteration"] >= 1
    assert client.get_metric_history(run.info.run_id, "round_valid_rmse")

    # The MLflow model, logged in the sklearn flavour, predicts what tabduel's own evaluation predicted.
    import mlflow.pyfunc

    from tabduel.data.features import load_xy

    model_id = run.outputs.model_outputs[0].model_id
    flavours = mlflow.models.get_model_info(f"models:/{model_id}").flavors
    assert "sklearn" in flavours
    eval_dir = next((tmp_path / "data" / "evaluate").glob("*/metrics.json")).parent
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert run.data.metrics["test_mse"] == pytest.approx(metrics["hgb"]["test_mse"])
    features_dir = next((tmp_path / "data" / "features").glob("*/manifest.json")).parent
    manifest = json.loads((features_dir / "manifest.json").read_text())
    x_test, _ = load_xy(str(features_dir / "test.parquet"), manifest, True)
    ours = pd.read_parquet(eval_dir / "predictions.parquet").query("split == 'test'")
    theirs = np.asarray(mlflow.pyfunc.load_model(f"models:/{model_id}").predict(x_test)).ravel()
    np.testing.assert_allclose(theirs, ours["pred_hgb"].to_numpy(), rtol=1e-5, atol=1e-6)
