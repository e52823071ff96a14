"""A new user's first run: progress a person can follow, a time limit per fit, models side by side, clean Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tabduel.engine.data import Data
from tabduel.infra.config import LinearConfig, RealMLPConfig, XGBoostConfig
from tabduel.infra.errors import Interrupted
from tabduel.infra.progress import FitProgress, clock_text, time_left
from tabduel.infra.runtime import core_share, free_cores
from tabduel.infra.stop import STOP
from tabduel.models.training import lane_cores, time_limit_message, training_lanes, with_time_limit


class Lines:
    """A logger that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str) -> None:
        self.lines.append(msg)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_logs_the_first_step_then_at_most_every_interval_and_the_last_with_the_time_left():
    log, clock = Lines(), Clock()
    with FitProgress("realmlp", "epoch", ("train_loss", "valid_loss"), log, every=15, clock=clock,
                     early_stopping=False) as progress:
        for epoch in range(1, 101):  # 2 s an epoch
            clock.now = 2.0 * epoch
            progress(epoch, 100, 0.5, 0.25)
    # epoch 1, then each epoch 15 s or more after the last line (8 s apart: 1, 9, 17, ...), and the last
    assert log.lines[0] == ("realmlp epoch 1/100 train_loss=0.50000 valid_loss=0.25000, 0:02 so far, "
                            "about 3:18 left")
    steps = [int(line.split()[2].split("/")[0]) for line in log.lines]
    assert steps[:3] == [1, 9, 17] and steps[-1] == 100
    assert all(b - a <= 8 for a, b in zip(steps, steps[1:]))
    assert log.lines[-1].endswith("3:20 so far")  # the last step: no time left to estimate


def test_the_time_left_is_capped_by_the_time_limit_and_an_upper_bound_under_early_stopping():
    assert time_left(10, 100, 20.0) == 180.0
    assert time_left(10, 100, 20.0, limit=60.0) == 40.0
    assert time_left(0, 100, 1.0) == float("inf")
    assert clock_text(3725) == "1:02:05" and clock_text(59.6) == "1:00"
    log, clock = Lines(), Clock()
    progress = FitProgress("tabm", "epoch", ("train_loss", "valid_loss"), log, limit=60.0, clock=clock)
    clock.now = 20.0
    progress(10, 1000, 1.0, 2.0)
    progress.close()
    assert log.lines[0].endswith("0:20 so far, at most 0:40 left (time limit)")


def test_a_step_longer_than_the_interval_still_gets_a_line_from_the_watchdog():
    log = Lines()
    with FitProgress("tabm", "epoch", ("train_loss", "valid_loss"), log, every=0.1, limit=60) as progress:
        progress(1, 10, 1.0, 1.0)
        deadline = time.monotonic() + 10  # epoch 2 runs on (a loaded machine may wake the watchdog late)
        while len(log.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        progress(2, 10, 0.5, 0.5)  # the next epoch is logged again: the watchdog's line does not hold it back
    assert log.lines[0].startswith("tabm epoch 1/10")
    assert log.lines[1].startswith("tabm: still in epoch 2 of 10, ") and log.lines[1].endswith("left (time limit)")
    assert log.lines[-1].startswith("tabm epoch 2/10 train_loss=0.50000"), log.lines


def test_a_fit_that_stops_early_logs_its_last_step_when_closed():
    log, clock = Lines(), Clock()
    with FitProgress("tabm", "epoch", ("train_loss", "valid_loss"), log, every=15, clock=clock) as progress:
        for epoch in range(1, 6):  # early stopping after epoch 5 of 1000, 1 s an epoch
            clock.now = float(epoch)
            progress(epoch, 1000, 1.0, 1.0)
    assert [line.split()[2] for line in log.lines] == ["1/1000", "5/1000"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_a_log_file_only_lines():
    term, plain = Terminal(), io.StringIO()
    for stream in (term, plain):
        with FitProgress("realmlp", "epoch", ("train_loss", "valid_loss"), Lines(), stream=stream) as progress:
            for epoch in range(1, 4):
                progress(epoch, 3, 0.5, 0.25)
    assert "realmlp" in term.getvalue() and "\r" in term.getvalue()  # tqdm redraws its line
    assert plain.getvalue() == ""


def test_a_stop_request_ends_a_fit_at_its_next_step():
    progress = FitProgress("xgboost", "round", ("valid_rmse",), Lines())
    progress(1, 10, 1.0)
    STOP.set()
    try:
        with pytest.raises(Interrupted, match="xgboost at round 2: stopped by the user"):
            progress(2, 10, 1.0)
    finally:
        STOP.clear()
        progress.close()


def _data(rows: int = 400, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=rows)).astype(np.float32)
    n = rows * 3 // 4
    return Data(x[:n], y[:n], x[n:], y[n:], ("a", "b", "c", "d"), ("a", "b", "c", "d"))


def test_xgboost_stops_at_its_time_limit_and_keeps_its_best_round():
    from tabduel.models import xgb

    # a tiny learning rate: every round is better than the one before, so the last round run is the best
    cfg = XGBoostConfig(n_estimators=200_000, learning_rate=0.001, early_stopping_rounds=50, max_seconds=0.5, n_jobs=1)
    result = xgb.fit(_data(), cfg)
    info = result.info
    assert info["time_limited"] and 1 < info["rounds_run"] < cfg.n_estimators
    assert info["best_iteration"] == info["rounds_run"] - 1  # early stopping saw the last round too
    assert np.isfinite(xgb.predict(result.model, _data().x_valid)).all()
    message = time_limit_message("xgboost", cfg, info)
    assert message.startswith(f"xgboost: reached its time limit of 0.5s at round {info['rounds_run']} of 200000; ")
    unlimited = xgb.fit(_data(), XGBoostConfig(n_estimators=20, n_jobs=1))
    assert not unlimited.info["time_limited"] and time_limit_message("xgboost", cfg, unlimited.info) == ""


def test_the_run_s_time_limit_fills_in_only_a_family_s_unset_limit():
    assert with_time_limit(RealMLPConfig(), 240).max_seconds == 240
    assert with_time_limit(RealMLPConfig(max_seconds=30), 240).max_seconds == 30  # its own limit wins
    assert with_time_limit(XGBoostConfig(), 0).max_seconds == 0  # 0: no limit
    assert with_time_limit(LinearConfig(), 240) == LinearConfig()  # nothing to limit


def test_torch_models_train_in_one_lane_and_the_others_beside_them():
    lanes = training_lanes(["realmlp", "xgboost", "linear"])
    assert lanes == [("realmlp",), ("xgboost", "linear")]
    assert training_lanes(["mlp", "xgboost", "tabm", "peer_lgbm"]) == [("mlp", "tabm", "peer_lgbm"), ("xgboost",)]
    assert training_lanes(["xgboost", "linear"]) == [("xgboost", "linear")]
    assert lane_cores(lanes, lanes[0]) == 0  # the torch lane: uncapped (one thread by default)
    assert lane_cores(lanes, lanes[1]) == max(1, free_cores() - 1)
    assert lane_cores([("xgboost",)], ("xgboost",)) == 0


def test_a_core_share_caps_automatic_threads_in_its_own_thread_only():
    seen: dict[str, int] = {}

    def other() -> None:
        seen["other"] = free_cores()

    with core_share(1):
        seen["inside"] = free_cores()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["inside"] == 1 and seen["other"] == free_cores()


# --- the whole command -------------------------------------------------------------------------------------------


def _tabduel(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "tabduel", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _runs(db: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stopped_run_ends_in_one_line_saying_what_it_kept(tmp_path, raw_csv, prefect_api, sig, name):
    log = tmp_path / "run.log"
    proc = _tabduel("run", "--source", str(raw_csv), "--models", "realmlp,linear", "--realmlp-epochs", "100000",
                    "--time-limit", "0", cwd=tmp_path, log=log)
    try:
        deadline = time.time() + 180
        while "realmlp epoch 1/" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert proc.returncode == 128 + sig, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"tabduel: {name}: stopped; kept ingest (data/ingest/"), out[-3000:]
    assert "features (data/features/" in last and "marked KILLED" in last
    assert "Traceback" not in out and "EventsWorker" not in out
    runs = _runs(tmp_path / "mlflow.db")
    # linear's fit may have finished first: its run stays open until evaluate, so it is KILLED with its parent
    assert {r.info.run_name: r.info.status for r in runs} == {"pipeline": "KILLED", "realmlp": "KILLED",
                                                              "linear": "KILLED"}
    assert not [d for d in (tmp_path / "data" / "models" / "realmlp").glob("*") if not d.name.startswith(".")]


def test_a_fit_cut_by_the_time_limit_says_so_and_is_tagged(tmp_path, raw_csv, prefect_api, monkeypatch):
    from tabduel.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--source", str(raw_csv), "--models", "realmlp,xgboost", "--realmlp-epochs", "100000",
                 "--xgboost-n-estimators", "200000", "--xgboost-learning-rate", "0.0001", "--time-limit", "2",
                 "--evaluate-plots", "false"]) == 0
    runs = {r.info.run_name: r for r in _runs(tmp_path / "mlflow.db")}
    for kind in ("realmlp", "xgboost"):
        assert runs[kind].data.tags["tabduel.time_limited"] == "stopped at 2s"
        meta = json.loads(next((tmp_path / "data" / "models" / kind).glob("*/meta.json")).read_text())
        assert meta["info"]["time_limited"] and meta["config"]["max_seconds"] == 2
        if kind == "xgboost":  # trained beside realmlp: the cores but the torch lane's one
            assert meta["info"]["n_jobs"] == max(1, free_cores() - 1)


def test_an_ignored_signal_stays_ignored_and_nested_blocks_go_on_to_the_first_handler_once():
    from tabduel.infra.stop import stop_on_signals

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a shell's background job
    try:
        with stop_on_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    # Python's own handler, whatever this process inherited (a background job's pytest starts with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # the CLI's block around the pipeline's: one Ctrl-C stops, it is not taken for a second one (which exits)
        with pytest.raises(KeyboardInterrupt), stop_on_signals(), stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert STOP.is_set() and STOP.signal == signal.SIGINT
    finally:
        STOP.clear()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    signal.signal(signal.SIGINT, before)
