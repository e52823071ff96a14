"""realmlp and tabm as pipeline models: trained, evaluated and logged to MLflow like the MLP (real Prefect, a real
SQLite MLflow store, generated raw data)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tabduel.cli import main

SMALL = ["--xgboost-n-estimators", "200", "--evaluate-dpi", "40",
         "--realmlp-hidden", "32,32", "--realmlp-epochs", "6", "--realmlp-batch-size", "128",
         "--tabm-k", "4", "--tabm-d-block", "32", "--tabm-epochs", "6", "--tabm-bins", "8", "--tabm-embedding-dim", "4"]


def test_the_pipeline_trains_all_five_kinds_and_logs_them(tmp_path, raw_csv, prefect_api, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--source", str(raw_csv), "--models", "mlp,realmlp,tabm,xgboost,linear", *SMALL]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("seoul-bike")
    runs = client.search_runs([exp.experiment_id])
    children = {r.data.tags["model"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"mlp", "realmlp", "tabm", "xgboost", "linear"}
    eval_dir = next((tmp_path / "data" / "evaluate").glob("*/metrics.json")).parent
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    for kind in ("realmlp", "tabm"):
        run = children[kind]
        assert run.info.status == "FINISHED" and run.outputs.model_outputs, kind
        assert run.data.metrics["test_mse"] == pytest.approx(metrics[kind]["test_mse"])
        assert len(client.get_metric_history(run.info.run_id, "valid_loss")) == 6
        assert run.data.metrics["best_epoch"] >= 1 and run.data.params["device"] == "cpu"
        plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
        assert f"plots/loss_history_{kind}.png" in plots
    assert children["realmlp"].data.params["hidden"] == "32,32" and children["tabm"].data.params["k"] == "4"

    # The MLflow models predict what tabduel's own evaluation predicted.
    import mlflow.pyfunc

    features_dir = next((tmp_path / "data" / "features").glob("*/manifest.json")).parent
    manifest = json.loads((features_dir / "manifest.json").read_text())
    test = pd.read_parquet(features_dir / "test.parquet")
    ours = pd.read_parquet(eval_dir / "predictions.parquet").query("split == 'test'")
    for kind in ("realmlp", "tabm"):
        model_id = children[kind].outputs.model_outputs[0].model_id
        pyfunc = mlflow.pyfunc.load_model(f"models:/{model_id}")
        theirs = np.asarray(pyfunc.predict(test[manifest["features"]].to_numpy(np.float32))).ravel()
        np.testing.assert_allclose(theirs, ours[f"pred_{kind}"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_train_realmlp_and_tabm_on_their_own(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--source", str(raw_csv)]) == 0
    assert main(["features"]) == 0
    assert main(["train", "realmlp", "--hidden", "16", "--epochs", "3", "--activation", "selu"]) == 0
    assert main(["train", "tabm", "--k", "2", "--d-block", "16", "--epochs", "3", "--variant", "tabm-mini",
                 "--embedding", "periodic", "--embedding-dim", "3"]) == 0
    capsys.readouterr()
    assert main(["train", "tabm", "--k", "0"]) == 2
    assert "tabm.k = 0: must be at least 1" in capsys.readouterr().err
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    by_model = {r.data.tags["model"]: r for r in runs}
    assert by_model["realmlp"].data.params["activation"] == "selu"
    assert by_model["tabm"].data.params["variant"] == "tabm-mini"
    assert all(r.info.status == "FINISHED" and r.outputs.model_outputs for r in runs)
