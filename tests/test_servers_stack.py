"""The shared stack of docker/compose.yaml, without containers: a real PostgreSQL, an `mlflow server` on it with
served artifacts, a `prefect server` on it, and a process worker. The pipeline is triggered as a deployment; its
runs, metrics and artifacts are read back through the tracking server. Then two pipelines run at once against it."""

from __future__ import annotations

import base64
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from netutil import free_port, http_status

pytestmark = pytest.mark.servers
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))



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
    port = free_port()
    st.spawn(_as_postgres([str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
                           "-c", "listen_addresses=127.0.0.1"]), "postgres.log")
    deadline = time.time() + 60
    while subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        assert time.time() < deadline, (st.root / "postgres.log").read_text()
        time.sleep(0.3)
    for db in ("mlflow", "prefect", "optuna"):
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tabduel", db], check=True)
    pg_url = f"127.0.0.1:{port}"
    st.optuna_url = f"postgresql://tabduel@{pg_url}/optuna"

    # As docker/compose.yaml runs them with MLFLOW_BASIC_AUTH=1: MLflow's basic-auth app (its users in the
    # backend's database), the host allow-list on, and Prefect's API auth string required.
    mlflow_port = free_port()
    st.mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    st.user, st.password = "admin", secrets.token_urlsafe(16)
    st.prefect_auth = f"admin:{secrets.token_urlsafe(16)}"
    (st.root / "basic_auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = postgresql://tabduel@{pg_url}/mlflow\n"
        f"admin_username = {st.user}\nadmin_password = {st.password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    mlflow_env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(st.root / "basic_auth.ini"),
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
                  "MLFLOW_SERVER_ALLOWED_HOSTS": f"localhost,127.0.0.1,127.0.0.1:{mlflow_port}"}
    mlflow = st.spawn([str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port",
                       str(mlflow_port), "--workers", "1", "--backend-store-uri", f"postgresql://tabduel@{pg_url}/mlflow",
                       "--artifacts-destination", str(st.root / "mlartifacts"), "--serve-artifacts"], "mlflow.log",
                      env=mlflow_env)
    prefect_port = free_port()
    st.prefect_url = f"http://127.0.0.1:{prefect_port}/api"
    st.env = {**os.environ, "PREFECT_HOME": str(st.root / "prefect-home"), "PREFECT_API_URL": st.prefect_url,
              "PREFECT_API_AUTH_STRING": st.prefect_auth, "MLFLOW_TRACKING_URI": st.mlflow_url,
              "MLFLOW_TRACKING_USERNAME": st.user, "MLFLOW_TRACKING_PASSWORD": st.password,
              "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    os.environ.update(MLFLOW_TRACKING_USERNAME=st.user, MLFLOW_TRACKING_PASSWORD=st.password)  # this process' clients
    server_env = {**st.env, "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://tabduel@{pg_url}/prefect",
                  "PREFECT_SERVER_API_AUTH_STRING": st.prefect_auth, "PREFECT_UI_ENABLED": "0"}
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
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(name, None)
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



def test_the_stack_turns_away_requests_without_credentials(stack, raw_csv, tmp_path):
    """Basic auth and the host allow-list on MLflow, the auth string on Prefect; tabduel names what to set."""
    basic = "Basic " + base64.b64encode(f"{stack.user}:{stack.password}".encode()).decode()
    api = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(api) == 401
    assert http_status(api, Authorization=basic) == 200
    assert http_status(api, Authorization=basic, Host="evil.example") == 403  # not in MLFLOW_SERVER_ALLOWED_HOSTS
    flows = f"{stack.prefect_url}/flows/filter"
    auth = "Basic " + base64.b64encode(stack.prefect_auth.encode()).decode()
    assert http_status(flows, b"{}", **{"Content-Type": "application/json"}) == 401
    assert http_status(flows, b"{}", **{"Content-Type": "application/json", "Authorization": auth}) == 200

    def tabduel_run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tabduel", "run", "--source", str(raw_csv), "--experiment",
                               "refused"], cwd=tmp_path, env={**stack.env, **env}, capture_output=True, text=True,
                              timeout=300)

    cases = [({"MLFLOW_TRACKING_PASSWORD": "wrong"}, "(401: not authenticated): set MLFLOW_TRACKING_USERNAME"),
             ({"MLFLOW_TRACKING_URI": stack.mlflow_url.replace("127.0.0.1", "localhost")},
              "(403: forbidden): the host name in the URI must be in the server's MLFLOW_SERVER_ALLOWED_HOSTS"),
             ({"PREFECT_API_AUTH_STRING": "admin:wrong"}, "(401): set PREFECT_API_AUTH_STRING")]
    for env, message in cases:
        proc = tabduel_run(**env)
        assert proc.returncode == 1 and message in proc.stderr, (env, proc.stdout[-2000:], proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr


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


def test_a_search_stores_its_studies_in_postgresql(stack, raw_csv, tmp_path):
    import optuna

    proc = subprocess.run([sys.executable, "-m", "tabduel", "search", "--quick", "--source", str(raw_csv),
                           "--families", "xgboost", "--trials", "3", "--refit-seeds", "2", "--storage",
                           stack.optuna_url, "--experiment", "search-pg"], cwd=tmp_path, env=stack.env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    study = optuna.load_study(study_name="seoul-bike-xgboost", storage=stack.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert not (tmp_path / "data" / "search" / "seoul-bike" / "journal.log").exists()  # nothing stored locally


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_mlflow_ui_compares_the_three_models_in_headless_chromium(stack, raw_csv, tmp_path):
    """Open the experiment page, then the compare view of the pipeline's three child runs; save a screenshot."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed")
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    exp = client.get_experiment_by_name("ui")
    if exp is None:  # a pipeline of its own, sent straight to the tracking server
        proc = subprocess.run([sys.executable, "-m", "tabduel", "run", "--source", str(raw_csv), "--experiment", "ui",
                               "--xgboost-n-estimators", "300", "--evaluate-dpi", "40"], cwd=tmp_path, env=stack.env,
                              capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        exp = client.get_experiment_by_name("ui")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'pipeline'")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    ids = [r.info.run_id for r in children]
    names = {r.info.run_name for r in children}
    assert names == {"mlp", "xgboost", "linear"}

    shot = tmp_path / "mlflow-compare.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1600, "height": 1400},
                                      http_credentials={"username": stack.user, "password": stack.password})
        page = context.new_page()
        page.goto(f"{stack.mlflow_url}/#/experiments/{exp.experiment_id}/runs")  # the runs table
        # The parent run is listed. The first load parses MLflow's whole UI bundle: on 2 cores busy with a bench
        # that took over 60 s, so this one wait is longer.
        page.get_by_text("pipeline", exact=True).first.wait_for(timeout=240_000)
        runs = quote(json.dumps(ids))
        page.goto(f"{stack.mlflow_url}/#/compare-runs?runs={runs}&experiments={quote(json.dumps([exp.experiment_id]))}")
        page.get_by_text("Comparing 3 Runs").first.wait_for(timeout=60_000)
        page.get_by_text("Run details").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)  # let the charts draw
        page.screenshot(path=str(shot))
        # The metrics table scrolls on its own and renders only the rows in view; valid_* sort last, so scroll
        # every scrollable box to its end until valid_mse shows.
        for _ in range(40):
            page.evaluate("""() => document.querySelectorAll('*').forEach(e => {
                if (e.scrollHeight > e.clientHeight + 4) e.scrollTop = e.scrollHeight; })""")
            if page.locator(":text-is('valid_mse'):visible").count():
                break
            page.wait_for_timeout(250)
        page.locator(":text-is('valid_mse'):visible").first.wait_for(timeout=5_000)
        text = page.inner_text("body")
        browser.close()
    assert "valid_mse" in text
    for name in names:
        assert name in text
    metrics = text.split("\nMetrics\n", 1)[1].split("\nArtifacts", 1)[0]  # the compare view's metrics table
    for run in children:  # each run's valid MSE as the UI shows it: 3 decimals (its rounding may differ by one)
        v = run.data.metrics["valid_mse"]
        shown = {f"{v + d:.3f}" for d in (-0.0005, 0.0, 0.0005)}
        assert shown & set(metrics.split("\n")), (run.info.run_name, v)
    assert shot.stat().st_size > 20_000
