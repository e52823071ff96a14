"""The shared stack of docker/compose.yaml, without containers: a real PostgreSQL, an `mlflow server` on it with
served artifacts, a `prefect server` on it, and a process worker. The pipeline is triggered as a deployment; its
runs, metrics and artifacts are read back through the tracking server. Then two pipelines run at once against it."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.servers
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-3000:]}")
            time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer at {url}")


class Stack:
    """Processes started for the module, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.root = Path(tempfile.mkdtemp(prefix="tabduel-stack-"))
        os.chmod(self.root, 0o755)

    def spawn(self, cmd: list[str], log: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=open(self.root / log, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user there."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def stack(prefect_api):
    if not PG_BIN:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL (Debian's postgresql package) is not installed")
    st = Stack()
    pg = Path(PG_BIN[-1])
    data = st.root / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-U", "tabduel", "--auth=trust"]),
                   check=True, capture_output=True)
    port = _port()
    st.spawn(_as_postgres([str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
                           "-c", "listen_addresses=127.0.0.1"]), "postgres.log")
    deadline = time.time() + 60
    while subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        assert time.time() < deadline, (st.root / "postgres.log").read_text()
        time.sleep(0.3)
    for db in ("mlflow", "prefect"):
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tabduel", db], check=True)
    pg_url = f"127.0.0.1:{port}"

    st.mlflow_url = f"http://127.0.0.1:{_port()}"
    mlflow = st.spawn([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", st.mlflow_url.rsplit(":", 1)[1],
                       "--workers", "1", "--backend-store-uri", f"postgresql://tabduel@{pg_url}/mlflow",
                       "--artifacts-destination", str(st.root / "mlartifacts"), "--serve-artifacts"], "mlflow.log")
    prefect_port = _port()
    st.prefect_url = f"http://127.0.0.1:{prefect_port}/api"
    st.env = {**os.environ, "PREFECT_HOME": str(st.root / "prefect-home"), "PREFECT_API_URL": st.prefect_url,
              "MLFLOW_TRACKING_URI": st.mlflow_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server_env = {**st.env, "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://tabduel@{pg_url}/prefect",
                  "PREFECT_UI_ENABLED": "0"}
    prefect = st.spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                       "prefect.log", env=server_env)
    try:
        _wait(f"{st.mlflow_url}/health", mlflow, "mlflow server", st.root / "mlflow.log")
        _wait(f"{st.prefect_url}/health", prefect, "prefect server", st.root / "prefect.log")
        st.work = st.root / "work"
        st.work.mkdir()
        run = dict(cwd=st.work, env=st.env, capture_output=True, text=True, timeout=300)
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", "tabduel", "--type", "process"], **run)
        deploy = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
                                 str(REPO / "prefect.yaml")], **run)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        st.spawn([str(BIN / "prefect"), "worker", "start", "--pool", "tabduel"], "worker.log", cwd=st.work,
                 env=st.env)
        yield st
    finally:
        st.stop()
        shutil.rmtree(st.root, ignore_errors=True)


def test_a_deployment_triggered_pipeline_lands_in_the_tracking_server(stack, raw_csv, tmp_path):
    config = {"ingest": {"source": str(raw_csv)}, "xgboost": {"n_estimators": 300}, "evaluate": {"dpi": 40}}
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", "tabduel-pipeline/pipeline", "--params",
                              json.dumps({"config": config}), "--watch", "--watch-timeout", "400"],
                             cwd=stack.work, env=stack.env, capture_output=True, text=True, timeout=450)
    assert started.returncode == 0 and "Completed" in started.stdout, (
        started.stdout[-3000:] + started.stderr[-3000:] + (stack.root / "worker.log").read_text()[-3000:])

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.tags["prefect_flow_run_id"]
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["model"] for r in children) == ["linear", "mlp", "xgboost"]
    assert all(r.data.metrics["valid_mse"] > 0 for r in children)
    xgb = next(r for r in children if r.data.tags["model"] == "xgboost")
    plot = next(f.path for f in client.list_artifacts(xgb.info.run_id, "plots"))
    got = Path(client.download_artifacts(xgb.info.run_id, plot, str(tmp_path)))
    assert got.read_bytes()[:4] == b"\x89PNG"
    import mlflow.artifacts

    logged = client.get_logged_model(xgb.outputs.model_outputs[0].model_id)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location,
                                                     tracking_uri=stack.mlflow_url, dst_path=str(tmp_path / "m")))
    assert (local / "MLmodel").is_file()


def test_two_pipelines_at_once_against_the_server(stack, raw_csv, tmp_path):
    args = [sys.executable, "-m", "tabduel", "run", "--source", str(raw_csv), "--experiment", "concurrent",
            "--xgboost-n-estimators", "300", "--evaluate-dpi", "40"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
        assert "database is locked" not in out
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    exp = client.get_experiment_by_name("concurrent")
    parents = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'pipeline'")
    assert [r.info.status for r in parents] == ["FINISHED", "FINISHED"]
    runs = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'train'")
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
