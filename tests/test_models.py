"""The three model families on small real data: they learn, save and load exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tabduel.engine.data import Data
from tabduel.engine.net import build_mlp
from tabduel.infra.config import LinearConfig, MLPConfig, XGBoostConfig
from tabduel.models import linear, mlp, xgb


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    y = (np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.3 * x[:, 2] + rng.normal(0, 0.05, 600)).astype(np.float32)
    return Data(x[:400], y[:400], x[400:], y[400:], tuple("abcde"))


def test_mlp_learns_and_records_every_epoch(data):
    fit = mlp.fit(data, MLPConfig(hidden=(32, 16), activation="relu", optimizer="adam", lr=0.01, epochs=40,
                                  batch_size=64, device="cpu"))
    assert len(fit.history["train_loss"]) == 40 == len(fit.history["valid_loss"])
    assert fit.history["valid_loss"][-1] < 0.3 * fit.history["valid_loss"][0]
    assert fit.info["device"] == "cpu"


def test_mlp_is_reproducible_from_its_seed(data):
    cfg = MLPConfig(epochs=3, device="cpu")
    a, b = mlp.fit(data, cfg), mlp.fit(data, cfg)
    assert a.history == b.history
    c = mlp.fit(data, MLPConfig(epochs=3, device="cpu", seed=1))
    assert c.history != a.history


def test_mlp_early_stopping_keeps_the_best_weights(data):
    cfg = MLPConfig(hidden=(64,), activation="relu", optimizer="adam", lr=0.05, epochs=200, patience=5,
                    batch_size=32, device="cpu")
    fit = mlp.fit(data, cfg)
    assert fit.info["epochs_run"] < 200
    assert fit.info["epochs_run"] - fit.info["best_epoch"] == 5
    pred = mlp.predict(fit.model, data.x_valid)
    valid_mse = float(np.mean((pred - data.y_valid) ** 2))
    assert valid_mse == pytest.approx(min(fit.history["valid_loss"]), rel=1e-4)


def test_mlp_save_and_load(tmp_path, data):
    fit = mlp.fit(data, MLPConfig(epochs=2, dropout=0.1, device="cpu"))
    mlp.save(fit, tmp_path)
    loaded = mlp.load(tmp_path)
    np.testing.assert_array_equal(mlp.predict(loaded, data.x_valid), mlp.predict(fit.model, data.x_valid))


def test_mlp_architecture_matches_nn5():
    net = build_mlp(14, (20, 10, 5), "sigmoid", 0.0)
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(20, 14), (20,), (10, 20), (10,), (5, 10), (5,), (1, 5), (1,)]
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in net) == 3


def test_xgboost_stops_early_and_reloads(tmp_path, data):
    fit = xgb.fit(data, XGBoostConfig(n_estimators=500, learning_rate=0.3, early_stopping_rounds=10, device="cpu"))
    assert fit.info["rounds_run"] < 500 and fit.info["rounds_run"] == len(fit.history["round_valid_rmse"])
    best = fit.info["best_iteration"]
    assert fit.history["round_valid_rmse"][best] == min(fit.history["round_valid_rmse"])
    xgb.save(fit, tmp_path)
    np.testing.assert_allclose(xgb.predict(xgb.load(tmp_path), data.x_valid), xgb.predict(fit.model, data.x_valid))
    pred = xgb.predict(fit.model, data.x_valid)
    assert np.sqrt(np.mean((pred - data.y_valid) ** 2)) == pytest.approx(min(fit.history["round_valid_rmse"]), rel=1e-3)


def test_linear_is_least_squares(tmp_path, data):
    fit = linear.fit(data, LinearConfig())
    design = np.c_[np.ones(len(data.x_train)), data.x_train].astype(np.float64)
    coef = np.linalg.lstsq(design, data.y_train.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(fit.model.intercept_, coef[0], rtol=1e-5)
    np.testing.assert_allclose(fit.model.coef_, coef[1:], rtol=1e-5)
    linear.save(fit, tmp_path)
    np.testing.assert_allclose(linear.predict(linear.load(tmp_path), data.x_valid),
                               linear.predict(fit.model, data.x_valid))


def test_explicit_cuda_without_a_gpu_is_a_clear_error(data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from tabduel.infra.errors import ConfigError
    with pytest.raises(ConfigError, match="no CUDA device"):
        mlp.fit(data, MLPConfig(epochs=1, device="cuda"))
