"""`tabduel bench` through the real CLI: real Prefect (a process pool, and a local 2-worker Dask cluster), a real
MLflow SQLite store, Optuna journals and generated suites: the result's keys, outer test rows kept from every
search (by row id), the MLflow hierarchy, refusal, resume after SIGKILL, corruptions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from benchsuite import write_suite
from test_pipeline import client_for, kill_when, run_cli

from tabduel.cli import build_parser
from tabduel.data.features import ROW
from tabduel.search.study import counted_trials, open_storage


def _rows(features_dir: str) -> dict[str, set[int]]:
    return {s: set(pd.read_parquet(Path(features_dir) / f"{s}.parquet", columns=[ROW])[ROW])
            for s in ("train", "valid", "test")}


def _check_outer_splits(cells: list[dict]) -> None:
    """Every features variant a cell's search read keeps its outer test rows out of train and valid, and was split
    with the cell's outer seed."""
    for r in cells:
        for path in r["features"].values():
            rows = _rows(path)
            assert rows["test"] and rows["test"].isdisjoint(rows["train"] | rows["valid"]), r["id"]
            manifest = json.loads((Path(path) / "manifest.json").read_text())
            assert manifest["split"]["seed"] == r["cell"]["seed"]
        assert r["features_read"] in r["features"].values()


def _cells(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (tmp_path / "data" / "bench").rglob("cells/**/*.json")]


def _runs(client, exp_id: str, step: str) -> list:
    return client.search_runs([exp_id], f"tags.`tabduel.step` = '{step}'", max_results=1000)


def test_quick_bench_end_to_end_then_refuses_a_rerun(tmp_path, prefect_api, monkeypatch,
                                                                           capsys):
    monkeypatch.chdir(tmp_path)
    suite = write_suite(tmp_path)
    flags = ["bench", "--quick", "--suite", str(suite), "--out", "results", "--workers", "2"]
    assert run_cli(*flags) == 0
    out = capsys.readouterr().out
    assert "mean rank" in out and "report:" in out

    (result,) = (tmp_path / "results").glob("bench-gen-*.json")
    doc = json.loads(result.read_text())
    assert doc["suite"] == "gen" and doc["budget"] == {"cpu_seconds_per_family": 6.0, "trials": 3, "clock": "cpu"}
    assert doc["device"] == "cpu" and doc["devices_seen"] == ["cpu"] and doc["over_budget_cells"] == []
    assert doc["tested_not_selected"] == [] and "aggregate_ensemble" in doc
    assert doc["outer_seeds"] == [4751, 4752] and sorted(doc["datasets"]) == ["airfoil", "auto_mpg", "wine_red"]
    for fams in doc["datasets"].values():
        for f in ("mlp", "xgboost"):
            x = fams[f]
            assert len(x["test_mse"]) == 2 and len(x["cpu_seconds"]) == 2 and x["trials"] == [3, 3]
            assert {"test_mse_mean", "test_mse_sd", "test_r2_mean", "test_r2_orig_mean",
                    "test_rmse_orig_mean"} <= set(x)
        assert fams["outcome_mlp_vs_xgboost"] in ("win", "tie", "loss") and 0 <= fams["paired"]["t_p_value"] <= 1
    agg = doc["aggregate"]
    assert set(agg["mean_rank"]) == {"mlp", "xgboost"} and sum(agg["mean_rank"].values()) == pytest.approx(3.0)
    assert 0 < agg["friedman_p"] <= 1 and set(agg["wins"]) == {"mlp", "xgboost"} and agg["nemenyi_cd"] > 0
    report = result.with_suffix(".md").read_text()
    assert "| wine_red | mlp |" in report and "Friedman" in report and "cd.png" in report
    pictures = {p.name for p in (tmp_path / "results" / result.stem).iterdir()}
    assert pictures == {"best_so_far.png", "normalized.png", "cd.png", "cd_ensemble.png"}

    cells = _cells(tmp_path)
    assert len(cells) == 12
    _check_outer_splits(cells)
    assert all(c["cpu_seconds"] > 0 and c["budget_cpu_seconds"] == 6.0 for c in cells)

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = _runs(client, exp.experiment_id, "bench")
    assert parent.info.status == "FINISHED" and 0 < parent.data.metrics["friedman_p"] <= 1
    children = _runs(client, exp.experiment_id, "bench-dataset")
    assert sorted(r.data.tags["dataset"] for r in children) == ["airfoil", "auto_mpg", "wine_red"]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    by_id = {r.info.run_id: r.data.tags["dataset"] for r in children}
    grand = _runs(client, exp.experiment_id, "bench-cell")
    assert len(grand) == 12 and all(by_id[r.data.tags["mlflow.parentRunId"]] == r.data.tags["dataset"] for r in grand)
    assert {(r.data.tags["family"], r.data.tags["outer_seed"]) for r in grand} == {
        (f, s) for f in ("mlp", "xgboost") for s in ("4751", "4752")}
    assert all("test_mse" in r.data.metrics for r in grand)
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {result.name, result.with_suffix(".md").name, "cd.png", "normalized.png", "best_so_far.png"} <= files

    # The same bench again is refused, naming the way out (a killed one resumes: the next test).
    capsys.readouterr()
    assert run_cli(*flags) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume continues it" in err


def test_a_killed_bench_resumes_where_it_stopped(tmp_path, prefect_api, monkeypatch):
    """SIGKILL a bench between cells, then --resume: the finished cell is kept as it was, the killed one resumes its
    study, and the MLflow runs end FINISHED with one run per cell."""
    suite = write_suite(tmp_path, ("airfoil",), name="one")
    flags = ["bench", "--suite", str(suite), "--out", "results", "--families", "mlp", "--trials", "3",
             "--minutes", "0", "--outer-seeds", "2", "--workers", "1", "--search-max-width", "16",
             "--search-max-depth", "1", "--search-max-ensemble", "1", "--search-mlp-epochs", "100000",
             "--search-mlp-patience", "100000", "--search-mlp-max-seconds", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "tabduel", *flags], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    work = tmp_path / "data" / "bench" / "bench-one-3t"

    def one_done_one_started() -> bool:
        done = list(work.glob("cells/**/*.json"))
        started = list(work.glob("journals/**/*.log"))
        return len(done) == 1 and len(started) == 2

    kill_when(proc, one_done_one_started, "one finished cell and one started")
    (first,) = work.glob("cells/**/*.json")
    before = first.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert run_cli(*flags, "--resume") == 0
    assert first.read_bytes() == before
    cells = _cells(tmp_path)
    assert sorted(c["cell"]["seed"] for c in cells) == [4751, 4752] and all(c["trials"] == 3 for c in cells)
    assert all(c["trials"] - c["trials_failed"] >= 1 for c in cells)  # a diverged trial counts, as it cost budget
    for journal in work.glob("journals/**/*.log"):
        study = optuna.load_study(study_name="cell-mlp", storage=open_storage(str(journal)))
        assert counted_trials(study) == 3  # complete or diverged; not the ones the kill interrupted
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = _runs(client, exp.experiment_id, "bench")
    assert parent.info.status == "FINISHED"
    assert len(_runs(client, exp.experiment_id, "bench-cell")) == 2
    doc = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert doc["datasets"]["airfoil"]["mlp"]["trials"] == [3, 3]


def test_a_corruption_bench_on_a_two_worker_dask_cluster(tmp_path, prefect_api, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    suite = write_suite(tmp_path, ("wine_red",), name="dask")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        assert run_cli("bench", "--quick", "--suite", str(suite), "--out", "results", "--trials", "2",
                       "--corrupt", "missing", "--preprocessing", "standard", "--runner", "dask", "--address",
                       cluster.scheduler_address) == 0
    cells = _cells(tmp_path)
    assert len(cells) == 2 * 2 * 3  # families (xgboost, mlp-standard) x outer seeds x levels 0, 0.1, 0.3
    ran_on = {int(c["worker"].rsplit(":", 1)[1]) for c in cells}
    assert ran_on <= worker_pids and os.getpid() not in ran_on
    _check_outer_splits(cells)
    for c in cells:
        manifest = json.loads((Path(c["features_read"]) / "manifest.json").read_text())
        if c["cell"]["level"] > 0:
            assert manifest["corruption"]["name"] == "missing" and manifest["imputed"]
    doc = json.loads(next((tmp_path / "results").glob("*-corrupt.json")).read_text())
    gaps = doc["corruption"]["missing"]["mlp-standard"]
    assert sorted(gaps, key=float) == ["0", "0.1", "0.3"] and all(g["datasets"] == 1 for g in gaps.values())
    assert (tmp_path / "results" / Path(doc["name"]) / "corruption_gaps.png").is_file()


def test_bench_help_and_early_refusals(tmp_path, capsys):
    text = build_parser()._subparsers._group_actions[0].choices["bench"].format_help()
    for flag in ("--suite", "--families", "--minutes", "--trials", "--outer-seeds", "--runner", "--address",
                 "--resume", "--quick", "--corrupt", "--preprocessing", "--root"):
        assert flag in text
    assert run_cli("bench", "--quick") == 2
    assert "bench.suite = '': name the suite file with --suite FILE" in capsys.readouterr().err
    suite = write_suite(tmp_path, ("airfoil",))
    assert run_cli("bench", "--suite", str(suite), "--corrupt", "noise") == 2
    assert "corruption 'noise' is not one of" in capsys.readouterr().err
    (tmp_path / "raw" / "airfoil.dat").write_text("x\n")
    assert run_cli("bench", "--suite", str(suite)) == 2
    err = capsys.readouterr().err
    assert "airfoil: source" in err and "the suite expects" in err and "Traceback" not in err
