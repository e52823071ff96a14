"""`tabduel train mlp --population N` through real Prefect and MLflow: members logged, ensemble evaluated."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from test_pipeline import client_for, run_cli


def test_train_a_population_and_evaluate_its_ensemble(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("ingest", "--source", str(raw_csv)) == 0
    assert run_cli("features") == 0
    assert run_cli("train", "mlp", "--population", "4", "--epochs", "6", "--lr", "0.2") == 0

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    (run,) = client.search_runs([exp.experiment_id], "tags.model = 'mlp'")
    assert run.data.params["population"] == "4"
    history = client.get_metric_history(run.info.run_id, "member_valid_mse")
    assert [m.step for m in history] == [0, 1, 2, 3]
    ensemble = run.data.metrics["ensemble_valid_mse"]
    members = [m.value for m in history]
    assert ensemble <= sum(members) / 4 + 1e-9  # the mean prediction is no worse than the average member
    assert run.data.metrics["members_valid_mse_min"] == pytest.approx(min(members))
    files = {f.path for f in client.list_artifacts(run.info.run_id, "population")}
    assert files == {"population/members.csv", "population/members.png"}
    table = client.download_artifacts(run.info.run_id, "population/members.csv", str(tmp_path))
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seed"]) for r in rows] == [4751, 4752, 4753, 4754]

    # The logged MLflow model is the ensemble: it predicts the members' mean, as tabduel's own files do.
    import mlflow.pyfunc
    import numpy as np

    from tabduel.models import mlp
    from tabduel.models.training import load_data

    model_dir = run.data.tags["tabduel.model_dir"]
    data, _ = load_data(json.loads((tmp_path / "data" / "features" / "latest" / "seoul-bike.json").read_text())["path"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    np.testing.assert_allclose(np.asarray(pyfunc.predict(data.x_valid)).ravel(),
                               mlp.predict(mlp.load(model_dir), data.x_valid), rtol=1e-5, atol=1e-6)

    assert run_cli("train", "linear") == 0
    assert run_cli("train", "xgboost", "--n-estimators", "50") == 0
    capsys.readouterr()
    assert run_cli("evaluate", "--evaluate-dpi", "40") == 0
    evaluated = client.search_runs([exp.experiment_id], "tags.model = 'mlp' and tags.`tabduel.step` = 'evaluate'")
    assert evaluated[0].data.metrics["valid_mse"] == pytest.approx(ensemble, rel=1e-5)


def test_a_population_too_large_for_memory_is_refused(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("ingest", "--source", str(raw_csv)) == 0
    assert run_cli("features") == 0
    proc = subprocess.run([sys.executable, "-m", "tabduel", "train", "mlp", "--population", "100000000"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tabduel: error:")]
    assert len(errors) == 1 and errors[0].startswith("tabduel: error: a population of 100000000 MLPs 14-20-10-5-1")
    assert "members fit" in errors[0] and "Traceback" not in proc.stderr
    assert not list((tmp_path / "data" / "models").glob("mlp/*/model.pt"))
