"""Commands that only parse flags stay light: `--help` of every command imports none of the heavy libraries."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tabduel.infra.config import TrackingConfig
from tabduel.infra.tracking import Tracker, seed_sqlite_store, store_template_path

HEAVY = ("numpy", "pandas", "torch", "mlflow", "prefect", "xgboost", "sklearn", "matplotlib", "pyarrow", "optuna",
         "pytabkit", "lightgbm", "catboost")

PROBE = f"""
import argparse, contextlib, io, json, sys
from tabduel.cli import build_parser, main

def commands(parser, prefix=()):
    yield list(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*prefix, name))

seen = []
for argv in commands(build_parser()):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*argv, "--help"])
        except SystemExit:
            pass
    seen.append(argv)
print(json.dumps({{"commands": seen, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def test_help_of_every_command_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert ["run"] in found["commands"] and ["train", "mlp"] in found["commands"], found["commands"]
    assert found["heavy"] == [], f"--help imported {found['heavy']}"


def _schema(db: Path) -> dict[str, Any]:
    """Tables and indexes as SQL, the alembic revision and the experiments (name, artifact location) of a store."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        # MLflow's table rebuilds list a table's constraints in no fixed order: compare each statement's lines as a set
        return {"sql": sorted(sorted(line.strip().rstrip(",") for line in r[0].splitlines())
                              for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")),
                "revision": conn.execute("SELECT version_num FROM alembic_version").fetchall(),
                "experiments": conn.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage "
                                            "FROM experiments ORDER BY experiment_id").fetchall(),
                "workspaces": conn.execute("SELECT * FROM workspaces").fetchall()}


def test_a_seeded_store_is_the_store_mlflow_creates(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # MLflow puts the Default experiment's artifacts under the working directory
    made = TrackingConfig(experiment="exp", tracking_uri=f"sqlite:///{tmp_path / 'made' / 'mlflow.db'}")
    (tmp_path / "made").mkdir()
    MlflowClient(tracking_uri=made.tracking_uri).get_experiment_by_name("exp")  # MLflow creates it, migrations and all
    seeded = TrackingConfig(experiment="exp", tracking_uri=f"sqlite:///{tmp_path / 'seeded' / 'mlflow.db'}")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the template is made here: none of its paths may reach the seeded store
    assert seed_sqlite_store(seeded.tracking_uri)
    monkeypatch.chdir(tmp_path)
    template = store_template_path()
    assert template.is_file() and template.is_relative_to(tmp_path / "cache")
    built = template.stat().st_mtime_ns
    MlflowClient(tracking_uri=seeded.tracking_uri).get_experiment_by_name("exp")
    assert _schema(tmp_path / "seeded" / "mlflow.db") == _schema(tmp_path / "made" / "mlflow.db")

    again = f"sqlite:///{tmp_path / 'again.db'}"
    assert seed_sqlite_store(again) and template.stat().st_mtime_ns == built  # the template is made once
    assert not seed_sqlite_store(again)  # an existing store is left alone
    assert not seed_sqlite_store("postgresql://u:p@localhost/db")


def test_a_tracker_on_a_new_store_logs_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = TrackingConfig(experiment="exp", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = Tracker(cfg)
    run_id = tracker.record_run("r", None, {"t": "x"}, {"p": 1}, {"m": 0.5, "bad": float("nan")})
    run = tracker.client.get_run(run_id)
    assert run.data.metrics == {"m": 0.5} and run.data.params == {"p": "1"}
    assert store_template_path().is_file()


LIGHTNING_PROBE = """
import json, sys
from tabduel.infra.tracking import mlflow_pytorch
module = mlflow_pytorch()
after = {"log_model": hasattr(module, "log_model"), "lightning": "pytorch_lightning" in sys.modules,
         "blocked_left": "mlflow.pytorch._lightning_autolog" in sys.modules}
import mlflow.pytorch._lightning_autolog  # autologging can still import it later
after["autolog_later"] = "pytorch_lightning" in sys.modules
print(json.dumps(after))
"""


def test_logging_a_torch_model_does_not_import_pytorch_lightning():
    """tabduel[peers] installs pytorch-lightning (for pytabkit); mlflow.pytorch would import it: seconds per run."""
    if importlib.util.find_spec("pytorch_lightning") is None:
        pytest.skip("pytorch-lightning is not installed (it comes with tabduel[peers])")
    out = subprocess.run([sys.executable, "-c", LIGHTNING_PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"log_model": True, "lightning": False, "blocked_left": False,
                                                        "autolog_later": True}


def test_flows_on_tabduels_own_prefect_server_send_no_heartbeats(local_api):
    """Heartbeats serve a lasting server's crash detection; on the server a call starts for itself they are off."""
    from prefect import flow
    from prefect.settings import get_current_settings

    from tabduel.infra.prefect_api import LocalAPI

    @flow
    def heartbeat_seconds() -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    with local_api.flow_settings():
        assert heartbeat_seconds() is None
    with LocalAPI().flow_settings():  # not started: a user's own server (PREFECT_API_URL), whose setting stands
        assert heartbeat_seconds() == get_current_settings().flows.heartbeat_frequency is not None
