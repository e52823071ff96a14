"""MLflow layer: every call names its run id explicitly (MLflow's active run is thread-local)."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from tabduel.infra.config import TrackingConfig
from tabduel.infra.errors import Interrupted, exception_chain, one_line, status_in_chain
from tabduel.infra.stop import STOP
from tabduel.infra.store import file_lock

if TYPE_CHECKING:  # numpy is not imported at run time: the CLI imports this module before parsing its flags
    import numpy as np

PARENT_TAG = "mlflow.parentRunId"
OWNER_TAG = "tabduel.owner"  # host:pid:start-time of the process that opened a run, to find runs left by a kill
MODEL_KEY_TAG = "tabduel.model_key"
# MLflow 3's UI opens an experiment without this tag on its GenAI overview, not on its runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
ERROR_TAG = "tabduel.error"  # the one-line error of a FAILED run
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI
MAX_TAG = 5000  # characters of a tag value kept (MLflow refuses longer ones)
BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


# Against a tracking server, a failing request is retried a bounded number of times (MLflow's own defaults wait
# minutes). Each is the default only: the environment variable, when set, wins.
SERVER_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def bound_server_retries(uri: str) -> None:
    """For an http(s) tracking URI, set MLflow's retry settings to SERVER_RETRIES unless already set."""
    if uri.startswith(("http://", "https://")):
        for name, value in SERVER_RETRIES.items():
            os.environ.setdefault(name, value)


def server_unreachable(exc: BaseException | None) -> bool:
    """True when exc (or what caused it) is a tracking server that did not answer: refused, timed out, retried out."""
    return any(any(s in f"{type(e).__name__}: {e}" for s in (
        "Max retries exceeded", "Connection refused", "Failed to establish a new connection", "ConnectionError",
        "Read timed out", "RemoteDisconnected")) for e in exception_chain(exc))


def server_refused(exc: BaseException | None) -> int | None:
    """The status (401 or 403) with which a tracking server turned a request in exc's chain away, else None."""
    return status_in_chain(exc, r"failed with error code (40[13]) != 200|\b(40[13]) Client Error")


def refusal_message(status: int, uri: str) -> str:
    """What to tell a user whose tracking server answered 401 or 403."""
    if status == 401:
        return (f"the MLflow tracking server at {uri} refused the request (401: not authenticated): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of its basic-auth app")
    return (f"the MLflow tracking server at {uri} refused the request (403: forbidden): the host name in the URI "
            "must be in the server's MLFLOW_SERVER_ALLOWED_HOSTS, and the account needs permission on the experiment")


def resolve_tracking_uri(cfg: TrackingConfig, cwd: str | Path | None = None) -> str:
    """The setting, else $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(cwd or os.getcwd()) / 'mlflow.db').resolve()}"


def default_artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (<dir>/mlartifacts); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


@functools.lru_cache(maxsize=None)
def git_commit(path: str | Path | None = None) -> str:
    """The current git commit of the tabduel checkout, or '' outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _start_ticks(pid: int) -> str:
    """The start time of a process (clock ticks since boot), which tells a pid's reuse apart; '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def process_owner() -> str:
    """host:pid:start of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def owner_gone(owner: str) -> bool:
    """True when owner (host:pid:start) is a process of this host that no longer runs; False if alive or unknown."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's run: its process cannot be checked from here
    now = _start_ticks(int(pid))
    return now == "" or (start != "" and now != start)


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """For a SQLite store, an exclusive lock on <db>.lock for the block: two processes that open a store which
    does not exist yet would otherwise both create its tables. Other stores need no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with file_lock(uri[len("sqlite:///"):] + ".lock"):
        yield


def store_template_path() -> Path:
    """Where the blank SQLite store of this MLflow version is kept: $XDG_CACHE_HOME (or ~/.cache)/tabduel/."""
    import importlib.metadata

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tabduel" / f"mlflow-{importlib.metadata.version('mlflow')}-blank.db"


def _make_store_template(template: Path) -> None:
    """A store as MLflow creates it (tables, then every migration), without its Default experiment."""
    import sqlite3

    from mlflow import MlflowClient

    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # creates and migrates the tables
        with contextlib.closing(sqlite3.connect(tmp)) as db, db:
            db.execute("DELETE FROM experiments")  # MLflow makes the Default experiment when it opens a copy
        os.replace(tmp, template)
    finally:
        tmp.unlink(missing_ok=True)


def seed_sqlite_store(uri: str) -> bool:
    """Create a missing local SQLite store as a copy of a blank one made once per MLflow version.

    MLflow creates a store by running its ~60 migrations one by one (about 2 CPU-seconds); a copy takes
    milliseconds, and MLflow adds the Default experiment (with this directory's artifact root) when it opens it.
    Returns False, leaving MLflow to create the store itself, when uri is no missing SQLite file or seeding fails.
    Call it under sqlite_init_lock(uri).
    """
    if not uri.startswith("sqlite:///") or "?" in uri or uri.startswith("sqlite:///:memory:"):
        return False
    target = Path(uri[len("sqlite:///"):])
    if target.exists():
        return False
    try:
        template = store_template_path()
        with file_lock(template.with_name(template.name + ".lock")):
            if not template.is_file():
                _make_store_template(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(template, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except Exception as exc:  # an unwritable cache or a failed copy: MLflow creates the store as usual
        logging.getLogger(__name__).debug("no store template (%s); MLflow creates %s", exc, target)
        return False
    return True


_SHARED: dict[tuple[str, str], "Tracker"] = {}
_SHARED_LOCK = threading.Lock()


class Tracker:
    """Runs, params, metrics and artifacts of one experiment, logged to explicit run ids."""

    def __init__(self, cfg: TrackingConfig):
        import mlflow
        from mlflow import MlflowClient

        if not cfg.experiment:
            raise ValueError("TrackingConfig.experiment is empty: fill it in with "
                             "tabduel.settings.with_dataset_defaults first")
        self.uri = resolve_tracking_uri(cfg)
        bound_server_retries(self.uri)
        mlflow.set_tracking_uri(self.uri)  # flavours' log_model resolve the store from here
        with sqlite_init_lock(self.uri):  # a fresh store is created (migrated) by its first user only
            seed_sqlite_store(self.uri)
            self.client = MlflowClient(tracking_uri=self.uri)  # opens the store: creates its tables if new
            self.experiment_id = self._experiment(cfg.experiment)

    @classmethod
    def shared(cls, cfg: TrackingConfig) -> Tracker:
        """One Tracker per (tracking URI, experiment) in this process: each costs a store connection and a lookup."""
        key = (resolve_tracking_uri(cfg), cfg.experiment)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls(cfg)
            return _SHARED[key]

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        for attempt in range(5):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                for key, value in EXPERIMENT_KIND.items():  # an experiment made before tabduel set the tag
                    if found.tags.get(key) != value:
                        self.client.set_experiment_tag(found.experiment_id, key, value)
                return found.experiment_id
            try:
                return self.client.create_experiment(name, artifact_location=default_artifact_location(self.uri),
                                                     tags=EXPERIMENT_KIND)
            except MlflowException:  # created meanwhile by a concurrent run
                time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"could not get or create MLflow experiment {name!r}")

    def start_run(self, name: str, parent: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
        """Create a RUNNING run (nested under parent when given) and return its id."""
        all_tags = {k: str(v) for k, v in (tags or {}).items() if v not in (None, "")}
        all_tags[OWNER_TAG] = process_owner()
        if parent:
            all_tags[PARENT_TAG] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params in batches (values as strings)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags in one batch; empty values are skipped."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v not in (None, "")]
        if items:
            self.client.log_batch(run_id, tags=items, synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log scalar metrics in one batch."""
        self.log_series(run_id, {k: [v] for k, v in metrics.items()}, first_step=step)

    def log_series(self, run_id: str, series: Mapping[str, list[float]], first_step: int = 1) -> None:
        """Log per-epoch or per-round values, at most 1000 per call."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(name, float(v), now, first_step + i)
                 for name, values in series.items() for i, v in enumerate(values) if math.isfinite(v)]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + BATCH], synchronous=True)

    def log_dict(self, run_id: str, data: Mapping[str, Any], name: str) -> None:
        """Store a mapping as a JSON artifact."""
        self.client.log_dict(run_id, dict(data), name)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def record_run(self, name: str, parent: str | None, tags: Mapping[str, Any], params: Mapping[str, Any],
                   metrics: Mapping[str, float], status: str = "FINISHED") -> str:
        """A complete run in three calls (create, one batch of params, metrics and tags, end); returns its id."""
        from mlflow.entities import Metric, Param

        run_id = self.start_run(name, parent=parent, tags=tags)
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                              metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)],
                              synchronous=True)
        self.finish(run_id, status)
        return run_id

    def reopen(self, run_id: str) -> bool:
        """Set an existing run of this store RUNNING again (a resumed search); False if there is no such run."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return False
        self.set_tags(run_id, {OWNER_TAG: process_owner()})  # this process owns it now
        return True

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run with FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def close_stale_runs(self) -> list[str]:
        """Mark KILLED the RUNNING runs of this experiment whose process on this host is gone (killed, crashed).

        Runs opened on other hosts are left alone: whether their process lives cannot be seen from here.
        """
        query = f"attributes.status = 'RUNNING' and tags.`{OWNER_TAG}` LIKE '{socket.gethostname()}:%'"
        stale = [r for r in self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000)
                 if owner_gone(r.data.tags.get(OWNER_TAG, ""))]
        for run in stale:
            self.set_tags(run.info.run_id, {"tabduel.stale": f"its process ({run.data.tags[OWNER_TAG]}) was gone; "
                                                              f"marked KILLED by {process_owner()}"})
            self.finish(run.info.run_id, "KILLED")
        return [r.info.run_id for r in stale]

    def fail_open_children(self, parent: str, error: str = "", status: str = "FAILED") -> None:
        """Mark every still-RUNNING child of parent FAILED, or `status` (with error, the parent's, as why)."""
        query = f"tags.`{PARENT_TAG}` = '{parent}' and attributes.status = 'RUNNING'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query)
        why = "was stopped" if status == "KILLED" else "failed"
        for run in runs:
            if error:
                self.record_error(run.info.run_id, f"its parent run {why}: {error}")
            self.client.set_terminated(run.info.run_id, status)

    def record_error(self, run_id: str, error: str) -> None:
        """Put a failed run's one-line error on it: as a tag and as its description in the MLflow UI."""
        self.set_tags(run_id, {ERROR_TAG: error[:MAX_TAG], NOTE_TAG: error[:MAX_TAG]})

    @contextlib.contextmanager
    def failing(self, run_id: str, children: bool = False) -> Iterator[str]:
        """Yield run_id; if the body raises, mark the run (and its open children) FAILED, with the error's line, or
        KILLED when the user stopped it (Ctrl-C, SIGTERM)."""
        try:
            yield run_id
        except BaseException as exc:
            stopped = isinstance(exc, (KeyboardInterrupt, Interrupted)) or STOP.is_set()
            status = "KILLED" if stopped else "FAILED"
            error = "stopped by the user (Ctrl-C or SIGTERM)" if stopped else one_line(exc)
            with contextlib.suppress(Exception):
                self.record_error(run_id, error)
            with contextlib.suppress(Exception):
                if children:
                    self.fail_open_children(run_id, error, status)
                self.finish(run_id, status)
            raise

    def find_logged_model(self, key: str) -> str | None:
        """The id of a READY logged model of this experiment tagged with this tabduel model key."""
        found = self.client.search_logged_models([self.experiment_id], max_results=5,
                                                 filter_string=f"tags.`{MODEL_KEY_TAG}` = '{key}'")
        ready = [m for m in found if str(m.status).endswith("READY")]
        return ready[0].model_id if ready else None

    def link_model(self, run_id: str, model_id: str) -> None:
        """Record an already logged model as an output of run_id (no upload)."""
        from mlflow.entities import LoggedModelOutput

        self.client.log_outputs(run_id, [LoggedModelOutput(model_id, 0)])

    def log_model(self, run_id: str, kind: str, flavour: str, key: str, model: Any, example: np.ndarray,
                  prediction: np.ndarray) -> None:
        """Log a model of family `kind` in an MLflow flavour (of FLAVOURS), with signature and input example."""
        from mlflow.models import infer_signature

        # Create the logged model ourselves: left to log_model, it lands in the fluent active
        # experiment (Default), not in the experiment of run_id.
        logged = self.client.create_logged_model(self.experiment_id, name="model", source_run_id=run_id,
                                                 tags={MODEL_KEY_TAG: key, "model": kind})
        signature = infer_signature(example, prediction)
        common = {"name": "model", "signature": signature, "input_example": example, "run_id": run_id,
                  "model_id": logged.model_id}
        log_flavour(flavour, model, common)
        if not str(self.client.get_logged_model(logged.model_id).status).endswith("READY"):
            self.client.finalize_logged_model(logged.model_id, "READY")


LIGHTNING_CALLBACK = "mlflow.pytorch._lightning_autolog"


def mlflow_pytorch() -> Any:
    """mlflow.pytorch, imported without its pytorch-lightning checkpoint callback.

    With pytorch-lightning installed (pytabkit, of tabduel[peers], brings it), `import mlflow.pytorch` imports it and
    torchmetrics for that callback: seconds, for autologging tabduel never uses. A None in sys.modules makes that one
    import fail with ImportError, which mlflow.pytorch expects when lightning is missing; the entry is removed after,
    so mlflow's autologging can still import the module later. Once mlflow.pytorch is loaded, the import returns it.
    """
    blocked = LIGHTNING_CALLBACK not in sys.modules
    if blocked:
        sys.modules[LIGHTNING_CALLBACK] = None  # type: ignore[assignment]
    try:
        import mlflow.pytorch
    finally:
        if blocked and sys.modules.get(LIGHTNING_CALLBACK, False) is None:
            del sys.modules[LIGHTNING_CALLBACK]
    return mlflow.pytorch


def _log_pytorch(model: Any, common: dict[str, Any]) -> None:
    # Pickle, not MLflow's default pt2 format: that runs torch.export (importing torch._dynamo costs ~2 s).
    from importlib.metadata import version

    torch_version = version("torch").split("+")[0]
    with _quiet(logging.getLogger("mlflow.pytorch"), "Saving pytorch model by Pickle"):
        mlflow_pytorch().log_model(model, pip_requirements=[f"torch=={torch_version}"],
                                   serialization_format="pickle", **common)


def _log_xgboost(model: Any, common: dict[str, Any]) -> None:
    from importlib.metadata import version

    import mlflow.xgboost

    mlflow.xgboost.log_model(model, pip_requirements=[f"xgboost=={version('xgboost')}"], model_format="json",
                             **common)


def _log_sklearn(model: Any, common: dict[str, Any]) -> None:
    # Cloudpickle, not skops: skops imports ~2.8 s of type scans.
    from importlib.metadata import version

    import mlflow.sklearn

    with _quiet(logging.getLogger("mlflow.sklearn"), "Saving scikit-learn models in the pickle"):
        mlflow.sklearn.log_model(model, pip_requirements=[f"scikit-learn=={version('scikit-learn')}"],
                                 serialization_format="cloudpickle", **common)


def _log_pytabkit(model: Any, common: dict[str, Any]) -> None:
    # A pytabkit estimator is a scikit-learn one: MLflow's sklearn flavour, cloudpickled, with pytabkit and the
    # torch it was fitted with as its requirements (tabduel/models/peers.py).
    from importlib.metadata import version

    import mlflow.sklearn

    with _quiet(logging.getLogger("mlflow.sklearn"), "Saving scikit-learn models in the pickle"):
        mlflow.sklearn.log_model(model, pip_requirements=[f"pytabkit[models]=={version('pytabkit')}",
                                                          f"torch=={version('torch').split('+')[0]}",
                                                          f"scikit-learn=={version('scikit-learn')}"],
                                 serialization_format="cloudpickle", **common)


# How a model is logged in each MLflow flavour that a family may name (tabduel.models.registry.Family.flavour).
FLAVOURS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "pytorch": _log_pytorch, "xgboost": _log_xgboost, "sklearn": _log_sklearn, "pytabkit": _log_pytabkit}


def log_flavour(flavour: str, model: Any, common: dict[str, Any]) -> None:
    """Log model with MLflow's log_model of a flavour; common: its name, signature, example, run and model ids."""
    if flavour not in FLAVOURS:
        raise ValueError(f"MLflow flavour {flavour!r} is not one of: {', '.join(FLAVOURS)}")
    FLAVOURS[flavour](model, common)


@contextlib.contextmanager
def _quiet(logger: logging.Logger, prefix: str) -> Iterator[None]:
    """Drop the logger's records that start with prefix for the block (a warning tabduel has answered)."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
