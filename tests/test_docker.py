"""docker/compose.yaml's stack in real containers: the images built without a registry (docker/build-images.sh: a
Debian base from debootstrap, PostgreSQL from Debian's packages, tabduel's image), then PostgreSQL, the MLflow server
with basic auth, the Prefect server with its auth string and the worker, up under docker-compose. A deployment run
lands in the MLflow server; the ports answer on 127.0.0.1 only; requests without credentials get 401; `down` then
`up` keeps every run. Needs a running Docker engine (.ci/run starts one): without it the tests skip, or fail under
CI=true."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
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

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
TABDUEL_IMAGE = "tabduel-bookworm"  # docker/build-images.sh's defaults
POSTGRES_IMAGE = "tabduel/postgres:bookworm"


def _engine_problem() -> str | None:
    """Why no stack can run here, or None."""
    for tool, package in (("docker", "docker.io"), ("docker-compose", "docker-compose")):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"{tool} is not installed (Debian's {package})"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          timeout=60)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers (`docker info`: {last}); start dockerd as root, as .ci/run does"
    return None




class Stack:
    """One compose project of docker/compose.yaml, with its own env file, secrets, ports and volumes."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tabduel-docker-"))
        self.project = f"tabduel-test-{secrets.token_hex(3)}"
        self.user, self.password = "admin", secrets.token_urlsafe(16)
        self.prefect_auth = f"admin:{secrets.token_urlsafe(16)}"
        self.mlflow_port, self.prefect_port = free_port(), free_port()
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        self.prefect_url = f"http://127.0.0.1:{self.prefect_port}/api"
        settings = {
            "POSTGRES_USER": "tabduel", "POSTGRES_PASSWORD": secrets.token_urlsafe(16), "POSTGRES_DB": "tabduel",
            "MLFLOW_DB": "mlflow", "PREFECT_DB": "prefect", "MLFLOW_BASIC_AUTH": "1",
            "MLFLOW_ALLOWED_HOSTS": f"localhost:5000,127.0.0.1:{self.mlflow_port},mlflow,mlflow:5000",
            "MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password,
            "MLFLOW_SECRET_KEY": secrets.token_hex(16), "PREFECT_AUTH_STRING": self.prefect_auth,
            "MLFLOW_PORT": str(self.mlflow_port), "PREFECT_PORT": str(self.prefect_port), "TORCH_VARIANT": "cpu",
            "TABDUEL_IMAGE": TABDUEL_IMAGE, "POSTGRES_IMAGE": POSTGRES_IMAGE, "MLFLOW_WORKERS": "1",
        }
        self.env_file = self.root / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.env = {**os.environ, "PREFECT_API_URL": self.prefect_url, "PREFECT_API_AUTH_STRING": self.prefect_auth,
                    "PREFECT_HOME": str(self.root / "prefect-home"), "MLFLOW_TRACKING_URI": self.mlflow_url,
                    "MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password}

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file",
                               str(self.env_file), *args], capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def logs(self) -> str:
        return subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file",
                               str(self.env_file), "logs", "--tail", "150"], capture_output=True, text=True).stdout

    def up(self, timeout: float = 300) -> None:
        """`up -d` with the built images, then wait until every service's health check passes."""
        self.compose("up", "-d", "--no-build")
        deadline = time.time() + timeout
        services = ("postgres", "mlflow", "prefect-server", "worker")
        while True:
            health = {s: subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", self.container(s)],
                                        capture_output=True, text=True).stdout.strip() for s in services}
            if all(h == "healthy" for h in health.values()):
                return
            assert time.time() < deadline, (health, self.logs()[-6000:])
            time.sleep(3)


@pytest.fixture(scope="module")
def images() -> float:
    """The stack's images, built by docker/build-images.sh (seconds it took: minutes first, seconds cached)."""
    problem = _engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    start = time.time()
    proc = subprocess.run([str(REPO / "docker" / "build-images.sh")], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "TABDUEL_IMAGE": TABDUEL_IMAGE, "POSTGRES_IMAGE": POSTGRES_IMAGE})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return time.time() - start


@pytest.fixture(scope="module")
def stack(images):
    st = Stack()
    try:
        st.up()
        yield st
    finally:
        subprocess.run(["docker-compose", "-p", st.project, "-f", str(COMPOSE_FILE), "--env-file", str(st.env_file),
                        "down", "-v", "--remove-orphans"], capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def pipeline_run(stack, tmp_path_factory) -> str:
    """One pipeline triggered as the worker's deployment, on a generated raw file in the worker's /work volume;
    the id of its MLflow parent run."""
    from rawdata import write_raw

    raw = write_raw(tmp_path_factory.mktemp("raw") / "raw.csv")
    worker = stack.container("worker")
    with raw.open("rb") as f:  # written by the container's user, into the workdata volume
        subprocess.run(["docker", "exec", "-i", worker, "sh", "-c", "cat > /work/raw.csv"], stdin=f, check=True)
    config = {"ingest": {"source": "/work/raw.csv"}, "xgboost": {"n_estimators": 300}, "evaluate": {"dpi": 40}}
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", "tabduel-pipeline/pipeline", "--params",
                              json.dumps({"config": config}), "--watch", "--watch-timeout", "600"],
                             env=stack.env, capture_output=True, text=True, timeout=650, cwd=stack.root)
    assert started.returncode == 0 and "Completed" in started.stdout, (
        started.stdout[-3000:] + started.stderr[-3000:] + stack.logs()[-12000:])
    with pytest.MonkeyPatch.context() as mp:  # log in as the stack's admin
        mp.setenv("MLFLOW_TRACKING_USERNAME", stack.user)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", stack.password)
        client = MlflowClient(tracking_uri=stack.mlflow_url)
        exp = client.get_experiment_by_name("seoul-bike")
        (parent,) = client.search_runs([exp.experiment_id], "tags.`tabduel.step` = 'pipeline'")
    return parent.info.run_id


@pytest.fixture()
def credentials(stack, monkeypatch):
    """This process' MLflow clients log in as the stack's admin."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack.user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.password)


def _check_run(stack, parent_id: str, dst: Path) -> None:
    """The parent run finished, with three children (metrics), an XGBoost plot and logged model to download."""
    import mlflow.artifacts

    client = MlflowClient(tracking_uri=stack.mlflow_url)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["prefect_flow_run_id"]
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.tags["model"] for r in children) == ["linear", "mlp", "xgboost"]
    assert all(r.data.metrics["valid_mse"] > 0 and r.data.metrics["test_mse"] > 0 for r in children)
    xgb = next(r for r in children if r.data.tags["model"] == "xgboost")
    plot = next(f.path for f in client.list_artifacts(xgb.info.run_id, "plots"))
    assert Path(client.download_artifacts(xgb.info.run_id, plot, str(dst))).read_bytes()[:4] == b"\x89PNG"
    logged = client.get_logged_model(xgb.outputs.model_outputs[0].model_id)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location,
                                                     tracking_uri=stack.mlflow_url, dst_path=str(dst / "model")))
    assert (local / "MLmodel").is_file()


def test_a_deployment_run_lands_in_the_mlflow_server(stack, pipeline_run, credentials, tmp_path):
    _check_run(stack, pipeline_run, tmp_path)
    # the artifacts went through the server into the mlartifacts volume, not onto this machine's disk
    listing = subprocess.run(["docker", "exec", stack.container("mlflow"), "find", "/mlartifacts", "-name", "MLmodel"],
                             capture_output=True, text=True, check=True).stdout
    assert listing.count("MLmodel") >= 3


def _host_addresses(stack) -> list[str]:
    """Addresses of this machine other than loopback: the stack network's gateway, and the default route's."""
    network = f"{stack.project}_default"
    gateway = subprocess.run(["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                              network], capture_output=True, text=True, check=True).stdout.strip()
    addresses = [gateway] if gateway else []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            addresses.append(s.getsockname()[0])
        except OSError:
            pass
    return [a for a in addresses if not a.startswith("127.")]


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_the_ports_answer_on_loopback_only(stack):
    published = {s: subprocess.run(["docker", "port", stack.container(s)], capture_output=True, text=True,
                                   check=True).stdout.split() for s in ("postgres", "mlflow", "prefect-server",
                                                                        "worker")}
    assert published["postgres"] == [] and published["worker"] == []
    assert published["mlflow"] == ["5000/tcp", "->", f"127.0.0.1:{stack.mlflow_port}"]
    assert published["prefect-server"] == ["4200/tcp", "->", f"127.0.0.1:{stack.prefect_port}"]
    addresses = _host_addresses(stack)
    assert addresses, "no address of this machine besides loopback to try"
    for port in (stack.mlflow_port, stack.prefect_port):
        assert _connects("127.0.0.1", port)
        for address in addresses:
            assert not _connects(address, port), f"{address}:{port} answers"


def test_requests_without_credentials_get_401(stack):
    basic = "Basic " + base64.b64encode(f"{stack.user}:{stack.password}".encode()).decode()
    api = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(api) == 401
    assert http_status(api, Authorization="Basic " + base64.b64encode(b"admin:wrong").decode()) == 401
    assert http_status(api, Authorization=basic) == 200
    assert http_status(api, Authorization=basic, Host="evil.example") == 403  # not in MLFLOW_ALLOWED_HOSTS
    flows = f"{stack.prefect_url}/flows/filter"
    auth = "Basic " + base64.b64encode(stack.prefect_auth.encode()).decode()
    assert http_status(flows, b"{}", **{"Content-Type": "application/json"}) == 401
    assert http_status(flows, b"{}", **{"Content-Type": "application/json", "Authorization": auth}) == 200


def _flow_runs(stack) -> list[dict]:
    auth = "Basic " + base64.b64encode(stack.prefect_auth.encode()).decode()
    req = urllib.request.Request(f"{stack.prefect_url}/flow_runs/filter", data=b"{}",
                                 headers={"Content-Type": "application/json", "Authorization": auth})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def test_down_then_up_keeps_every_run(stack, pipeline_run, credentials, tmp_path):
    client = MlflowClient(tracking_uri=stack.mlflow_url)
    runs_before = sorted(r.info.run_id for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=1000))
    flow_runs_before = sorted((r["id"], r["state_type"]) for r in _flow_runs(stack))
    assert pipeline_run in runs_before and ("COMPLETED" in {s for _, s in flow_runs_before})
    old = {s: stack.container(s) for s in ("postgres", "mlflow", "prefect-server", "worker")}

    stack.compose("down")  # the containers and network go; the named volumes stay
    assert all(subprocess.run(["docker", "inspect", c], capture_output=True).returncode != 0 for c in old.values())
    stack.up()
    assert all(stack.container(s) != c for s, c in old.items())  # new containers on the same volumes

    runs_after = sorted(r.info.run_id for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=1000))
    assert runs_after == runs_before
    _check_run(stack, pipeline_run, tmp_path)  # metrics in PostgreSQL, artifacts in the mlartifacts volume
    assert sorted((r["id"], r["state_type"]) for r in _flow_runs(stack)) == flow_runs_before
    worker = stack.container("worker")
    kept = subprocess.run(["docker", "exec", worker, "sh", "-c", "test -f /work/raw.csv && ls /work/data"],
                          capture_output=True, text=True)
    assert kept.returncode == 0 and kept.stdout.split(), kept.stderr  # the workdata volume
