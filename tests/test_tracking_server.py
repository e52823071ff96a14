"""Against a real `mlflow server` (SQLite store, artifacts served through the server): runs and artifacts arrive
with no shared disk, and a server that goes away mid-run gives a clear, bounded failure that a re-run recovers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_pipeline import FAST

pytestmark = pytest.mark.servers
BIN = Path(sys.executable).parent


class MlflowServer:
    """`mlflow server --serve-artifacts` on a free loopback port; stop() and start() again keep its store."""

    def __init__(self, root: Path):
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
               "--artifacts-destination", str(self.root / "served"), "--serve-artifacts"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        raise TimeoutError("mlflow server did not come up")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture()
def server(tmp_path):
    srv = MlflowServer(tmp_path / "server")
    srv.root.mkdir()
    srv.start()
    yield srv
    srv.stop()


def _tabduel(args: list[str], cwd: Path, url: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    return subprocess.Popen([sys.executable, "-m", "tabduel", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_pipeline_runs_and_artifacts_go_through_the_server(tmp_path, raw_csv, server, prefect_api):
    work = tmp_path / "work"
    work.mkdir()
    proc = _tabduel(["run", "--source", str(raw_csv), *FAST], work, server.url)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert not (work / "mlflow.db").exists() and not (work / "mlartifacts").exists()  # nothing tracked locally

    client = MlflowClient(tracking_uri=server.url)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'pipeline'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["model"] for r in children) == ["linear", "mlp", "xgboost"]
    assert all("valid_mse" in r.data.metrics for r in children)
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # served, not a path on this disk

    mlp = next(r for r in children if r.data.tags["model"] == "mlp")
    plots = [f.path for f in client.list_artifacts(mlp.info.run_id, "plots")]
    assert plots
    got = Path(client.download_artifacts(mlp.info.run_id, plots[0], str(tmp_path / "down")))
    assert got.stat().st_size > 1000 and got.read_bytes()[:4] == b"\x89PNG"
    import mlflow.artifacts
    import mlflow.pyfunc

    logged = client.get_logged_model(mlp.outputs.model_outputs[0].model_id)
    assert logged.artifact_location.startswith("mlflow-artifacts:")
    local = mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, tracking_uri=server.url,
                                                dst_path=str(tmp_path / "model"))
    model = mlflow.pyfunc.load_model(local)  # the model, downloaded through the server, loads and predicts
    assert model.metadata.signature is not None
    assert list((server.root / "served").rglob("*.png"))  # the server holds the bytes


def test_a_server_that_goes_away_fails_clearly_and_a_rerun_recovers(tmp_path, raw_csv, server, prefect_api):
    work = tmp_path / "work"
    work.mkdir()
    for step in (["ingest", "--source", str(raw_csv)], ["features"]):
        proc = _tabduel(step, work, server.url)
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    train = ["train", "mlp", "--epochs", "1000000", "--max-seconds", "6"]
    proc = _tabduel(train, work, server.url)
    client = MlflowClient(tracking_uri=server.url)
    deadline = time.time() + 120
    while time.time() < deadline:
        exp = client.get_experiment_by_name("seoul-bike")
        if exp and client.search_runs([exp.experiment_id], "tags.model = 'mlp' and attributes.status = 'RUNNING'"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the MLP run never started")
    server.stop()  # mid-training: the run cannot log its results
    stopped = time.time()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert time.time() - stopped < 150  # bounded retries, not MLflow's minutes-long default
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"tabduel: error: the MLflow tracking server at {server.url} did not answer"), err[-2000:]
    assert "Traceback" not in err
    done = [d for d in (work / "data" / "models" / "mlp").glob("*") if (d / "_done.json").is_file()]
    assert len(done) == 1  # the trained model is kept at its final path

    server.start()
    proc = _tabduel(train, work, server.url)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert any(line.split()[:2] == ["train-mlp", "reused"] for line in out.splitlines())
