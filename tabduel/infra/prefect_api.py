"""A local Prefect API for one CLI call, started at once so it boots while torch and MLflow import.

Prefect's own ephemeral mode starts the same server (uvicorn on prefect.server.api.server:create_app)
only when the first flow runs, and on exit waits up to 5 s for it to stop. Starting it ourselves
overlaps its ~5 s boot with our imports and lets us stop it promptly. With PREFECT_API_URL set (a
real `prefect server`), nothing is started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tabduel.infra.errors import TabduelError, status_in_chain


def _end_with_parent() -> None:
    """In the server's child process: its own session, so that a Ctrl-C at the terminal reaches tabduel alone (which
    then stops its flows cleanly while the server still answers); SIGTERM when tabduel ends, however it ends (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: api.stop() still ends it on every exit but SIGKILL
        pass


class LocalAPI:
    """A Prefect API server subprocess on a free loopback port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        """Launch the server and point PREFECT_API_URL at it (returns at once; call before importing Prefect)."""
        if os.environ.get("PREFECT_API_URL") or _profile_api_url():
            return
        import importlib.util

        spec = importlib.util.find_spec("prefect")
        if spec is None or not spec.origin:
            return
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_end_with_parent)
        self.url = f"http://127.0.0.1:{port}/api"
        os.environ["PREFECT_API_URL"] = self.url

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the server answers /health, or raise TabduelError."""
        if self.process is None:
            return
        import urllib.request  # here, not at the top: `tabduel --help` imports this module

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        code = self.process.poll()
        self.stop()
        raise TabduelError(f"the local Prefect API server did not start (exit code {code}); set "
                           "PREFECT_API_URL to a running `prefect server start` instead")

    def flow_settings(self) -> contextlib.AbstractContextManager[Any]:
        """Prefect settings for the flows this process runs: no flow-run heartbeats when the server is ours.

        A heartbeat (every 180 s) lets a lasting server's automations mark a crashed flow run. This server lives for
        one call and runs no such automation, and with heartbeats a flow of six trivial tasks took 2.09 s (median, up to
        7.8 s) against 0.28 s without (benchmarks/flow_heartbeat.py).
        """
        if self.process is None:
            return contextlib.nullcontext()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})

    def stop(self, grace: float = 2.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after grace seconds) and unset the URL start() set."""
        if self.process is None:
            return
        if os.environ.get("PREFECT_API_URL") == self.url:  # start() only runs when it was unset
            del os.environ["PREFECT_API_URL"]
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def flush_prefect_logs() -> None:
    """Send this process's buffered run logs and events to the Prefect API (before its server stops, or we exit)."""
    if "prefect" not in sys.modules:  # nothing was logged
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
    except Exception:  # logs are best effort; the run's result does not depend on them
        pass


def _profile_api_url() -> str:
    """PREFECT_API_URL from the active Prefect profile (~/.prefect/profiles.toml), if any."""
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    active = os.environ.get("PREFECT_PROFILE") or data.get("active", "ephemeral")
    return str(data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL", ""))


def prefect_refused(exc: BaseException | None) -> int | None:
    """The status (401 or 403) with which the Prefect API turned a request in exc's chain away, else None."""
    return status_in_chain(exc, r"Client error '(40[13]) ")


def prefect_refusal_message(status: int) -> str:
    """What to tell a user whose Prefect server answered 401 or 403."""
    url = os.environ.get("PREFECT_API_URL", "") or _profile_api_url()
    return (f"the Prefect server at {url} refused the request ({status}): set PREFECT_API_AUTH_STRING to the auth "
            "string its PREFECT_SERVER_API_AUTH_STRING names (\"user:password\")")
