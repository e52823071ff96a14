"""The whole pipeline through real Prefect and a real MLflow SQLite store, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from rawdata import raw_rows, write_raw
from tabduel.cli import main

FAST = ["--xgboost-n-estimators", "300", "--evaluate-dpi", "40"]


def run_cli(*args: str) -> int:
    return main(list(args))


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    """SIGKILL proc's process group as soon as ready() holds (polled twice a second); fail if it never does."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            if ready():
                return
        pytest.fail(f"{what} never happened")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def statuses(tmp_path: Path, capsys) -> dict[str, bool]:
    """step -> reused, from the CLI's summary of the last run."""
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ") and len(line.split()) == 3]
    return {step: state == "reused" for step, state, _ in rows if state in ("reused", "computed")}


def test_pipeline_end_to_end(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("run", "--source", str(raw_csv), *FAST) == 0
    assert not any(statuses(tmp_path, capsys).values())

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")  # the built-in spec's name
    assert exp is not None and exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(parent.data.tags["source_sha256"]) == 64 and parent.data.tags["prefect_flow_run_id"]
    assert parent.data.params["mlp.lr"] == "0.05" and parent.data.params["mlp.hidden"] == "20,10,5"
    assert parent.data.params["xgboost.n_estimators"] == "300"

    eval_dir = next((tmp_path / "data" / "evaluate").glob("*/_done.json")).parent
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    by_model = {r.data.tags["model"]: r for r in children}
    assert set(by_model) == {"mlp", "xgboost", "linear"}
    for kind, run in by_model.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for split in ("valid", "test"):
            for name in ("mse", "rmse", "mae", "r2"):
                assert run.data.metrics[f"{split}_{name}"] == pytest.approx(metrics[kind][f"{split}_{name}"])
        assert parent.data.metrics[f"{kind}_valid_mse"] == pytest.approx(metrics[kind]["valid_mse"])
        plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
        assert {f"plots/residuals_{kind}.png", f"plots/predicted_vs_observed_{kind}.png"} <= plots
        assert run.outputs.model_outputs, f"{kind} run has no logged model"

    mlp_run = by_model["mlp"]
    assert mlp_run.data.params["hidden"] == "20,10,5" and mlp_run.data.params["features.split_seed"] == "4751"
    assert len(client.get_metric_history(mlp_run.info.run_id, "train_loss")) == 100
    assert len(client.get_metric_history(mlp_run.info.run_id, "valid_loss")) == 100
    xgb_history = client.get_metric_history(by_model["xgboost"].info.run_id, "round_valid_rmse")
    assert 10 < len(xgb_history) <= 300
    assert "plots/loss_history_mlp.png" in {f.path for f in client.list_artifacts(mlp_run.info.run_id, "plots")}

    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.csv", "comparison.md", "manifest.json", "config.json", "plots"} <= parent_files
    assert mlp_run.data.tags["prefect_flow_run_id"] == parent.data.tags["prefect_flow_run_id"]
    data_files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert all(p.stat().st_mode & 0o044 for p in data_files)  # readable by others under a usual umask
    assert "plots/daily_totals.png" in {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}

    import pyarrow.parquet as pq

    table_path = next((tmp_path / "data" / "ingest").glob("*/table.parquet"))
    schema = pq.read_schema(table_path)
    assert schema.metadata[b"tabduel.source_sha256"].decode() == parent.data.tags["source_sha256"]
    table = pd.read_parquet(table_path)
    assert str(table["date"].dtype) == "datetime64[ns]" and str(table["season"].dtype) == "category"

    # The MLflow model of the MLP predicts what tabduel's own evaluation predicted.
    import mlflow.pyfunc

    model_id = mlp_run.outputs.model_outputs[0].model_id
    logged = client.get_logged_model(model_id)
    assert logged.experiment_id == exp.experiment_id
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert pyfunc.metadata.signature is not None
    features_dir = next((tmp_path / "data" / "features").glob("*/_done.json")).parent
    manifest = json.loads((features_dir / "manifest.json").read_text())
    test = pd.read_parquet(features_dir / "test.parquet")
    ours = pd.read_parquet(eval_dir / "predictions.parquet").query("split == 'test'")
    theirs = np.asarray(pyfunc.predict(test[manifest["features"]].to_numpy(np.float32))).ravel()
    np.testing.assert_allclose(theirs, ours["pred_mlp"].to_numpy(), rtol=1e-5, atol=1e-6)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_reruns_reuse_and_changes_invalidate(tmp_path, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    source = write_raw(tmp_path / "raw.csv", raw_rows(days=30, seed=3))
    args = ["run", "--source", str(source), *FAST]
    steps = ["ingest", "features", "train-mlp", "train-xgboost", "train-linear", "evaluate"]

    assert run_cli(*args) == 0
    assert statuses(tmp_path, capsys) == dict.fromkeys(steps, False)
    assert run_cli(*args) == 0
    assert statuses(tmp_path, capsys) == dict.fromkeys(steps, True)

    # A changed setting recomputes its step and what follows, nothing before.
    assert run_cli(*args, "--mlp-epochs", "7") == 0
    assert statuses(tmp_path, capsys) == {"ingest": True, "features": True, "train-mlp": False,
                                          "train-xgboost": True, "train-linear": True, "evaluate": False}
    assert run_cli(*args, "--features-split-seed", "5") == 0
    assert statuses(tmp_path, capsys) == {"ingest": True, **dict.fromkeys(steps[1:], False)}

    # Bad input: one error, and every earlier output stays as it was.
    before = snapshot(tmp_path / "data")
    bad = raw_rows(days=30, seed=3)
    bad[17][2] = "25"
    assert run_cli("run", "--source", str(write_raw(tmp_path / "bad.csv", bad)), *FAST) == 1
    assert "bad.csv:19: column 'hour' (Hour): value '25'" in capsys.readouterr().err
    assert snapshot(tmp_path / "data") == before

    # One changed byte of the source recomputes everything.
    data = source.read_bytes()
    rows = raw_rows(days=30, seed=3)
    rows[0][3] = rows[0][3][:-1] + str((int(rows[0][3][-1]) + 1) % 10)  # last digit of one temperature
    write_raw(source, rows)
    assert sum(a != b for a, b in zip(source.read_bytes(), data)) == 1
    assert run_cli(*args) == 0
    assert statuses(tmp_path, capsys) == dict.fromkeys(steps, False)

    assert run_cli(*args, "--force") == 0
    assert statuses(tmp_path, capsys) == dict.fromkeys(steps, False)

    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED", "FAILED"}
    assert sum(r.info.status == "FAILED" for r in runs) == 1  # the bad-input pipeline's parent run


def test_failing_step_marks_runs_failed(tmp_path, raw_csv, prefect_api, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import tabduel.models.xgb as xgb_module

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(xgb_module, "fit", broken)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_cli("run", "--source", str(raw_csv), *FAST)
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    status = {r.data.tags.get("model", "parent"): r.info.status for r in runs}
    assert status == {"parent": "FAILED", "mlp": "FAILED", "xgboost": "FAILED"}
    why = {r.data.tags.get("model", "parent"): r.data.tags.get("tabduel.error") for r in runs}
    assert why["parent"] == why["xgboost"] == "RuntimeError: injected failure"
    assert why["mlp"] == "its parent run failed: RuntimeError: injected failure"
    assert all(r.data.tags["mlflow.note.content"] == r.data.tags["tabduel.error"] for r in runs)
    assert not list((tmp_path / "data" / "models").glob("xgboost/*/model.json"))


def test_steps_on_their_own(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("train", "mlp") == 1
    assert "no features output" in capsys.readouterr().err
    assert run_cli("ingest", "--source", str(raw_csv)) == 0
    assert run_cli("features") == 0
    for kind in ("mlp", "xgboost", "linear"):
        assert run_cli("train", kind, *(FAST[:2] if kind == "xgboost" else [])) == 0
    assert run_cli("train", "mlp", "--mlp-epochs", "5", "--mlp-optimizer", "adam") == 0
    assert run_cli("features", "--features-split-seed", "9") == 0
    capsys.readouterr()
    assert run_cli("evaluate") == 1  # the models were trained on the previous features
    assert "was trained on features" in capsys.readouterr().err
    assert run_cli("features") == 0  # back to the features the models were trained on
    capsys.readouterr()
    assert run_cli("evaluate", "--evaluate-dpi", "40") == 0
    assert "| mlp |" in capsys.readouterr().out

    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    evaluate_parent = next(r for r in runs if r.data.tags.get("tabduel.step") == "evaluate"
                           and "mlflow.parentRunId" not in r.data.tags)
    evaluated = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == evaluate_parent.info.run_id]
    mlp_child = next(r for r in evaluated if r.data.tags["model"] == "mlp")
    assert mlp_child.data.params["epochs"] == "5" and mlp_child.data.params["optimizer"] == "adam"
    assert "valid_mse" in mlp_child.data.metrics
    assert mlp_child.data.tags["tabduel.reused_from_run"]  # links to the run that trained it
    assert all(r.info.status == "FINISHED" for r in runs)  # the refused evaluation opened no run


def test_cli_bad_input_is_one_line_without_traceback(tmp_path, prefect_api):
    bad = raw_rows(days=2)
    bad[3][0] = "31/02/2018"
    path = write_raw(tmp_path / "bad.csv", bad)
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-m", "tabduel", "ingest", "--source", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "31/02/2018" in line]
    assert errors == [f"tabduel: error: {path}:5: column 'date' (Date): value '31/02/2018' is not a real calendar "
                      "date or time"]
    assert not list((tmp_path / "data").glob("ingest/*/table.parquet"))


def test_cli_config_error_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tabduel", "run", "--mlp-dropout", "1.5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "tabduel: error: mlp.dropout = 1.5: must be in [0, 1)"
    assert not (tmp_path / "data").exists()
