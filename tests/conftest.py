"""Test set-up: a private Prefect home and one real local Prefect API for the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect: its settings are read at import time.
_PREFECT_HOME = tempfile.mkdtemp(prefix="tabduel-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

from rawdata import write_raw  # noqa: E402
from tabduel.infra.prefect_api import LocalAPI, flush_prefect_logs  # noqa: E402

_API = LocalAPI()  # a real Prefect API server on loopback, shared by the in-process flow tests


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's Prefect API, except in pytest-xdist's controller, which runs no test (its workers each
    start their own)."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", default=None):
        _API.start()

SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "SeoulBikeData.csv"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    flush_prefect_logs()  # the flows' buffered logs and events go out while their server still answers
    _API.stop()
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch):
    """MLflow exports MLFLOW_TRACKING_URI when a run sets it; each test starts without it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def prefect_api() -> str:
    """URL of the session's Prefect API, once it answers."""
    _API.wait_ready()
    return _API.url


@pytest.fixture(scope="session")
def local_api() -> LocalAPI:
    """The session's own Prefect API server (as `tabduel` starts one), once it answers."""
    _API.wait_ready()
    return _API


@pytest.fixture()
def raw_csv(tmp_path: Path) -> Path:
    """A generated 60-day raw file: cp1252 header with the degree sign, CRLF, dd/mm/yyyy."""
    return write_raw(tmp_path / "raw.csv")


@pytest.fixture()
def shared_csv() -> Path:
    """The full UCI file beside the checkout, or skip."""
    if not SHARED_CSV.is_file():
        pytest.skip(f"{SHARED_CSV} not present")
    return SHARED_CSV
