"""`tabduel search` through real Prefect (process pool, and a real local Dask cluster), a real MLflow SQLite
store and a real Optuna journal: trials, MLflow runs, evidence, extension, refusal, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from test_pipeline import client_for, kill_when, run_cli

from tabduel.cli import build_parser
from tabduel.search.study import RETRY_OF, counted_trials, open_storage

QUICK = ["search", "--quick", "--refit-seeds", "5"]


def _study(tmp_path: Path, name: str) -> optuna.Study:
    storage = open_storage(str(tmp_path / "data" / "search" / name.rsplit("-", 1)[0] / "journal.log"))
    return optuna.load_study(study_name=name, storage=storage)


def _runs(client, exp_id: str, step: str) -> list:
    return client.search_runs([exp_id], f"tags.`tabduel.step` = '{step}'", max_results=1000)


def test_quick_search_end_to_end_then_extend_and_refuse(tmp_path, raw_csv, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    maps = ["--numeric", "standard,clip,quantile"]  # the numeric map searched too
    assert run_cli(*QUICK, "--source", str(raw_csv), *maps) == 0
    out = capsys.readouterr().out
    assert "best mlp" in out and "best xgboost" in out and "paired t" in out

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = _runs(client, exp.experiment_id, "search")
    assert parent.info.status == "FINISHED"
    trials = _runs(client, exp.experiment_id, "search-trial")
    assert sorted(r.data.tags["family"] for r in trials) == ["mlp"] * 6 + ["xgboost"] * 6
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    for family in ("mlp", "xgboost"):
        values = [r.data.metrics["valid_mse"] for r in trials
                  if r.data.tags["family"] == family and "valid_mse" in r.data.metrics]
        assert parent.data.metrics[f"{family}_best_valid_mse"] == pytest.approx(min(values))
        assert _study(tmp_path, f"seoul-bike-{family}").best_value == pytest.approx(min(values))
    mlp_trials = [r for r in trials if r.data.tags["family"] == "mlp"]
    assert {"encoding", "numeric", "depth", "width", "activation", "lr", "ensemble"} <= set(mlp_trials[0].data.params)
    assert {r.data.params["numeric"] for r in mlp_trials} <= {"standard", "clip", "quantile"}
    refits = _runs(client, exp.experiment_id, "search-refit")
    assert len(refits) == 10 and all("test_mse" in r.data.metrics for r in refits)
    assert 0 <= parent.data.metrics["t_p_value"] <= 1
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.md", "leaderboard.csv", "best_so_far.png", "final.md", "final.png", "final.json",
            "best.json"} <= files

    evidence = tmp_path / "data" / "search" / "seoul-bike"
    assert (evidence / "journal.log").is_file()
    board = (evidence / "leaderboard.md").read_text()
    assert "| mlp |" in board and "| xgboost |" in board
    final = json.loads((evidence / "final.json").read_text())
    best = json.loads((evidence / "best.json").read_text())
    assert final["seeds"] == [4751, 4752, 4753, 4754, 4755] and final["test_rows_unseen_by_search"] == [4751]
    assert (evidence / "final.md").read_text().startswith("> refits on split seeds 4752-4755 test on rows that the "
                                                          "search trained and validated on")
    for family in ("mlp", "xgboost"):
        own_split = next(r for r in final["rows"] if r["family"] == family and r["seed"] == 4751)
        # Refitting the best config on the search's own split reproduces the best trial exactly.
        assert own_split["valid_mse"] == pytest.approx(best[family]["valid_mse"], rel=1e-6)
    assert not list(evidence.glob(".*"))  # no temp files left behind

    # Extend the stored studies by 2 trials each: same parent run, 2 more child runs per family.
    assert run_cli(*QUICK, "--source", str(raw_csv), *maps, "--more-trials", "2", "--refit-seeds", "2") == 0
    assert [r.info.run_id for r in _runs(client, exp.experiment_id, "search")] == [parent.info.run_id]
    assert len(_runs(client, exp.experiment_id, "search-trial")) == 16
    assert counted_trials(_study(tmp_path, "seoul-bike-mlp")) == 8
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"

    # A new search under the same name is refused, naming the way out.
    capsys.readouterr()
    assert run_cli(*QUICK, "--source", str(raw_csv)) == 1
    assert "study 'seoul-bike-mlp' already exists (8 trials); --resume continues it" in capsys.readouterr().err


def test_a_quick_search_of_realmlp_and_tabm_starts_from_their_defaults(tmp_path, raw_csv, prefect_api, monkeypatch,
                                                                       capsys):
    """The autograd families through the whole flow (process pool, MLflow, refits): trial 0 of each study is the
    family's defaults, every trial and refit is recorded, and each refit on the search's own split reproduces it."""
    from tabduel.search.space import realmlp_defaults, tabm_defaults
    from tabduel.search.study import FIRST

    monkeypatch.chdir(tmp_path)
    # No time limits: a trial cut by the clock is not reproduced by its refit on a busier machine.
    assert run_cli(*QUICK[:2], "--source", str(raw_csv), "--families", "realmlp,tabm", "--trials", "2",
                   "--refit-seeds", "2", "--realmlp-max-seconds", "0", "--tabm-max-seconds", "0",
                   "--tabm-epochs", "20") == 0
    out = capsys.readouterr().out
    assert "best realmlp" in out and "best tabm" in out
    for family, defaults in (("realmlp", realmlp_defaults()), ("tabm", tabm_defaults())):
        first = _study(tmp_path, f"seoul-bike-{family}").trials[0]
        assert first.params == defaults and first.user_attrs[FIRST] == "defaults" and first.state.name == "COMPLETE"
        assert first.user_attrs["epochs_run"] >= first.user_attrs["best_epoch"] >= 1
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    trials = _runs(client, exp.experiment_id, "search-trial")
    assert sorted(r.data.tags["family"] for r in trials) == ["realmlp"] * 2 + ["tabm"] * 2
    assert all({"valid_mse", "cpu_seconds", "epochs_run", "best_epoch"} <= set(r.data.metrics) for r in trials)
    refits = _runs(client, exp.experiment_id, "search-refit")
    assert sorted(r.data.tags["family"] for r in refits) == ["realmlp"] * 2 + ["tabm"] * 2
    evidence = tmp_path / "data" / "search" / "seoul-bike"
    final, best = (json.loads((evidence / f"{n}.json").read_text()) for n in ("final", "best"))
    for family in ("realmlp", "tabm"):
        own_split = next(r for r in final["rows"] if r["family"] == family and r["seed"] == 4751)
        assert own_split["valid_mse"] == pytest.approx(best[family]["valid_mse"], rel=1e-5)
        assert own_split["test_mse"] > 0


def test_a_killed_search_resumes_where_it_stopped(tmp_path, raw_csv, prefect_api, monkeypatch):
    """SIGKILL a search in the middle of its trials, then --resume: stale trials are failed and run again, the
    budget is met, and the MLflow run of the search ends FINISHED."""
    flags = ["--quick", "--source", str(raw_csv), "--families", "mlp", "--trials", "5", "--refit-seeds", "2",
             "--mlp-epochs", "100000", "--mlp-patience", "100000", "--mlp-max-seconds", "2", "--study", "k"]
    proc = subprocess.Popen([sys.executable, "-m", "tabduel", "search", *flags], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = tmp_path / "data" / "search" / "k" / "journal.log"

    def finished_and_running() -> bool:
        try:  # the journal file exists a moment before the study is written to it
            states = [t.state.name for t in _study(tmp_path, "k-mlp").trials] if journal.is_file() else []
        except KeyError:
            return False
        return "COMPLETE" in states and "RUNNING" in states

    kill_when(proc, finished_and_running, "a finished and a running trial at once")
    monkeypatch.chdir(tmp_path)
    before = _study(tmp_path, "k-mlp")
    stale = [t.number for t in before.trials if t.state.name == "RUNNING"]
    assert stale

    assert run_cli("search", *flags, "--resume") == 0
    after = _study(tmp_path, "k-mlp")
    for n in stale:
        assert after.trials[n].state.name == "FAIL"
    retried = {t.user_attrs[RETRY_OF] for t in after.trials if RETRY_OF in t.user_attrs}
    assert retried == set(stale)
    assert counted_trials(after) == 5
    assert sum(t.state.name == "COMPLETE" for t in after.trials) == 5

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("seoul-bike")
    (parent,) = _runs(client, exp.experiment_id, "search")  # the killed search's run, reopened and finished
    assert parent.info.status == "FINISHED"
    assert len([r for r in _runs(client, exp.experiment_id, "search-trial") if r.info.status == "FINISHED"]) == 5


def test_search_trials_run_batched_and_pruned_on_a_dask_cluster(tmp_path, raw_csv, prefect_api, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        assert run_cli("search", "--quick", "--source", str(raw_csv), "--trials", "3", "--refit-seeds", "2",
                       "--runner", "dask", "--address", cluster.scheduler_address, "--workers", "1",
                       "--mlp-batch", "2", "--pruner", "halving", "--prune-min-epochs", "1") == 0
    ran_on = set()
    for family in ("mlp", "xgboost"):
        for t in _study(tmp_path, f"seoul-bike-{family}").trials:
            assert t.state.name in (("COMPLETE", "PRUNED") if family == "mlp" else ("COMPLETE",))
            ran_on.add(int(t.user_attrs["worker"].rsplit(":", 1)[1]))
    assert ran_on <= worker_pids and os.getpid() not in ran_on
    mlp = _study(tmp_path, "seoul-bike-mlp").trials
    assert [t.user_attrs["population_trials"] for t in mlp] == [2, 2, 1]  # a batch of 2, then the budget's last
    assert all(1 in t.intermediate_values for t in mlp)  # reported by the workers, through the study's journal


def test_search_help_explains_the_actions():
    parser = build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    text = search.format_help()
    for flag in ("--resume", "--more-trials", "--quick", "--runner", "--address", "--trials", "--minutes",
                 "--storage", "--refit-seeds"):
        assert flag in text
