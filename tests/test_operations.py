"""Operations through real Prefect and MLflow: a served cron deployment, prefect.yaml deployments run by a process
worker, a pipeline killed mid-training and re-run, two pipelines at once on a fresh store, reproducibility, and the
Docker files' static checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_pipeline import FAST, client_for, kill_when, run_cli, statuses

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tabduel(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    # Ctrl-C as at a terminal: a shell's background job inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt (a test run launched with `cmd &` left `tabduel serve` deaf to it)
    return subprocess.Popen([sys.executable, "-m", "tabduel", *args], cwd=cwd, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_default_sigint, **kw)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _prefect(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_serve_runs_the_pipeline_as_a_cron_deployment(tmp_path, raw_csv, prefect_api):
    from prefect import get_client
    from prefect.deployments import run_deployment

    # serve runs until stopped and streams its flow runs' logs: into a file, as an unread pipe fills and blocks it
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        serve = _tabduel("serve", "--cron", "0 3 * * *", "--name", "nightly", "--source", str(raw_csv), *FAST,
                         cwd=tmp_path, stdout=out)
    try:
        deployment, deadline = None, time.time() + 120
        with get_client(sync_client=True) as client:
            while deployment is None and time.time() < deadline:
                time.sleep(1)
                try:
                    deployment = client.read_deployment_by_name("tabduel-pipeline/nightly")
                except Exception:
                    assert serve.poll() is None, log.read_text()
        assert deployment is not None, "the deployment never appeared"
        assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
        flow_run = run_deployment("tabduel-pipeline/nightly", timeout=300)
        assert flow_run.state.is_completed(), flow_run.state
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            pytest.fail("serve did not stop within 60 s of Ctrl-C; its output ends:\n" + log.read_text()[-3000:])
    client = client_for(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id],
                              "tags.`tabduel.step` = 'pipeline'")
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_serve_refuses_a_bad_cron_expression(tmp_path, prefect_api, capsys):
    assert run_cli("serve", "--cron", "every night") == 2  # a setting: refused before the API server starts
    assert "--cron 'every night' is not a valid cron expression" in capsys.readouterr().err


def test_prefect_yaml_deploys_every_step_to_a_process_pool(tmp_path, raw_csv, prefect_api):
    _prefect("work-pool", "create", "tabduel", "--type", "process", cwd=tmp_path)  # fails harmlessly if it exists
    deploy = _prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(REPO / "prefect.yaml"), cwd=tmp_path)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    for name in ("tabduel-pipeline/pipeline", "tabduel-ingest/ingest", "tabduel-features/features",
                 "tabduel-train/train", "tabduel-evaluate/evaluate"):
        assert name in deploy.stdout, deploy.stdout
    params = json.dumps({"config": {"ingest": {"source": str(raw_csv)}}})
    trigger = _prefect("deployment", "run", "tabduel-ingest/ingest", "--params", params, cwd=tmp_path)
    assert trigger.returncode == 0, trigger.stdout + trigger.stderr
    worker = _prefect("worker", "start", "--pool", "tabduel", "--run-once", cwd=tmp_path, timeout=300)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    latest = json.loads((tmp_path / "data" / "ingest" / "latest" / "seoul-bike.json").read_text())
    assert (Path(latest["path"]) / "table.parquet").is_file()


def test_a_pipeline_killed_in_mlp_training_reruns_cleanly(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    proc = _tabduel("run", "--source", str(raw_csv), "--mlp-epochs", "1000000", *FAST, cwd=tmp_path)
    db = tmp_path / "mlflow.db"
    kill_when(proc, lambda: db.is_file() and bool(_runs(db, "tags.model = 'mlp' and attributes.status = 'RUNNING'")),
              "MLP training starting", timeout=180)
    assert {r.info.status for r in _runs(db, "")} == {"RUNNING"}  # what a kill leaves behind
    # No step output at a final path is partial: every one has its done marker; the MLP has none.
    data = tmp_path / "data"
    finals = [d for d in [*data.glob("*/*"), *data.glob("models/*/*")]
              if d.is_dir() and not d.name.startswith(".") and d.parent.name != "models" and d.name != "latest"]
    assert all((d / "_done.json").is_file() for d in finals)
    assert not [d for d in (tmp_path / "data" / "models" / "mlp").glob("*") if not d.name.startswith(".")]

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run_cli("run", "--source", str(raw_csv), *FAST) == 0
    reused = statuses(tmp_path, capsys)
    assert reused["ingest"] and reused["features"] and not reused["train-mlp"]
    by_status: dict[str, list[str]] = {}
    for r in _runs(db, ""):
        by_status.setdefault(r.info.status, []).append(r.info.run_name)
    assert "RUNNING" not in by_status
    assert {"pipeline", "mlp"} <= set(by_status["KILLED"])  # the killed run's, marked by the re-run


def test_two_pipelines_at_once_on_a_fresh_sqlite_store(tmp_path, raw_csv, prefect_api):
    procs = [_tabduel("run", "--source", str(raw_csv), *FAST, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
        assert "database is locked" not in out
    db = tmp_path / "mlflow.db"
    parents = _runs(db, "tags.`tabduel.step` = 'pipeline'")
    assert [r.info.status for r in parents] == ["FINISHED", "FINISHED"]
    for parent in parents:
        children = _runs(db, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert sorted(r.data.tags["model"] for r in children) == ["linear", "mlp", "xgboost"]
        assert all(r.info.status == "FINISHED" and "valid_mse" in r.data.metrics for r in children)


def test_two_fresh_runs_give_identical_metrics(tmp_path, raw_csv, prefect_api):
    metrics = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        proc = _tabduel("run", "--source", str(raw_csv), *FAST, cwd=tmp_path / name)
        out = proc.communicate(timeout=400)[0]
        assert proc.returncode == 0, out[-3000:]
        latest = json.loads((tmp_path / name / "data" / "evaluate" / "latest" / "seoul-bike.json").read_text())
        metrics.append(json.loads((Path(latest["path"]) / "metrics.json").read_text()))
    assert metrics[0] == metrics[1]


def _runs(db: Path, query: str) -> list:
    from tabduel.infra.tracking import sqlite_init_lock

    with sqlite_init_lock(f"sqlite:///{db}"):  # the store may be new, and being created by the run watched
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("seoul-bike")
    return [] if exp is None else client.search_runs([exp.experiment_id], query, max_results=1000)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) not installed")
def test_compose_file_is_valid(tmp_path):
    env = tmp_path / ".env"
    shutil.copy(REPO / "docker" / "env.example", env)
    out = subprocess.run(["docker-compose", "-f", str(REPO / "docker" / "compose.yaml"), "--env-file", str(env),
                          "config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "127.0.0.1:5000:5000" in out.stdout.replace('"', "") or "host_ip: 127.0.0.1" in out.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "postgres.Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or str(BIN / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed")
    out = subprocess.run([hadolint, str(REPO / "docker" / dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr

