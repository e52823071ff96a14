"""The published implementations as peers (tabduel[peers]): real pytabkit fits on small generated data, a real search
loop and bench cell of one, the pipeline's MLflow model, and the one-line refusal without pytabkit."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from benchsuite import airfoil_features

from tabduel.bench.cells import Cell, run_cell
from tabduel.infra.config import SearchConfig
from tabduel.infra.errors import ConfigError
from tabduel.models import training
from tabduel.models.registry import family
from tabduel.search.families import search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.study import open_storage, open_study
from tabduel.settings import Config

PEERS = ("peer_realmlp", "peer_tabm", "peer_lgbm", "peer_catboost")
# Few epochs or rounds, one thread: each fit takes about a second on generated data.
SMALL = {"peer_realmlp": 4, "peer_tabm": 3, "peer_lgbm": 20, "peer_catboost": 20}
MESSAGE = "needs the peers extra: pip install 'tabduel[peers]'"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    """The ordinal features of a generated airfoil file (150 rows), as the features step writes them."""
    return airfoil_features(tmp_path_factory.mktemp("peers"), n=150)


def small(kind: str, **kw):
    return dataclasses.replace(Config().model(kind), iterations=SMALL[kind], threads=1, **kw)


@pytest.mark.parametrize("kind", PEERS)
def test_a_peer_fits_predicts_finite_values_and_reloads_to_the_same_predictions(kind, features_dir, tmp_path):
    data, _ = training.load_data(features_dir, kind)
    result = training.fit(kind, data, small(kind, seed=7))  # refuses predictions on valid that are not finite
    fam = family(kind)
    pred = fam.predict(result.model, data.x_valid)
    assert pred.shape == (len(data.y_valid),) and pred.dtype == np.float32 and np.isfinite(pred).all()
    assert result.info["device"] == "cpu" and result.info["threads"] == 1 and result.model.n_threads_ == 1
    if kind in ("peer_lgbm", "peer_catboost"):  # early stopping on valid keeps at most the rounds asked for
        assert 1 <= result.info["best_iteration"] <= SMALL[kind]
    fam.save(result, tmp_path)
    again = training.predictor(kind, tmp_path)
    np.testing.assert_array_equal(again(data.x_valid), pred)
    assert float(np.mean((pred - data.y_valid) ** 2)) < 10 * float(np.var(data.y_valid))


def test_the_iterations_setting_reaches_pytabkit_and_zero_keeps_the_tuned_default():
    from tabduel.models import peers

    assert peers.estimator(small("peer_lgbm")).get_params()["n_estimators"] == 20
    assert peers.estimator(small("peer_realmlp")).get_params()["n_epochs"] == 4
    default = peers.estimator(Config().peer_catboost).get_params()
    assert default["n_estimators"] is None and default["device"] == "cpu"  # None: pytabkit's tuned default
    assert default["random_state"] == 4751


def test_a_peer_search_fits_its_defaults_with_a_new_seed_per_trial_and_refits_the_best(features_dir, tmp_path):
    s = SearchConfig(study="t", trials=2, peer_iterations=20, seed=11)
    fam = search_family("peer_lgbm")
    study, budget = open_study(s, "peer_lgbm", open_storage(str(tmp_path / "j.log")), False, 0)
    out = run_family("peer_lgbm", study, budget, s, 1, 1,
                     lambda label, base, specs: Inline(lambda: fam.run(features_dir, specs, False)), first_of,
                     clock="cpu")
    assert out.told == 2 and out.failed == 0
    for r in out.results:
        assert math.isfinite(r["valid_mse"]) and r["seconds"] > 0 and r["cpu_seconds"] > 0
        assert r["device"] == "cpu" and r["worker"] and r["threads"] == 1 and "test_mse" not in r
    assert out.spent == pytest.approx(sum(r["cpu_seconds"] for r in out.results))
    seeds = [t.params["seed"] for t in study.trials]
    assert [set(t.params) for t in study.trials] == [{"seed"}, {"seed"}] and seeds[0] != seeds[1]
    assert all(t.user_attrs["device"] == "cpu" and t.user_attrs["threads"] == 1 for t in study.trials)

    best = study.best_trial
    spec = fam.rebuild(best.params, s, 1)
    assert spec.cfg.seed == best.params["seed"] and spec.cfg.iterations == 20 and fam.base(spec) == "ordinal"
    refit = fam.run(features_dir, [spec], True)[0]
    assert refit["valid_mse"] == pytest.approx(best.value, rel=1e-6)  # one thread, the same seed: the same model
    assert {"test_mse", "test_r2", "test_rmse_orig", "test_r2_orig", "test_mse_orig"} <= set(refit)
    assert math.isfinite(refit["test_mse"])


def test_a_bench_cell_of_a_peer_scores_its_selected_model_on_the_outer_test_once(features_dir, tmp_path):
    cfg = Config.from_dict({"bench": {"trials": 2, "minutes": 0}, "search": {"peer_iterations": 20}})
    cell = Cell("airfoil", "peer_catboost", 4751)
    row = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "cell.log", threads=1)
    assert row["trials"] == 2 and row["trials_failed"] == 0 and set(row["best_params"]) == {"seed"}
    assert row["tested"] == "selected" and row["tested_valid_mse"] == pytest.approx(row["best_valid_mse"], abs=1e-6)
    assert math.isfinite(row["test_mse"]) and row["features_read"] == features_dir
    assert row["cpu_seconds"] > 0 and row["test_cpu_seconds"] > 0


# ---- a peer's fit in a child process, stopped at its trial's cap (tabduel/infra/child.py) -------------------------

SLACK = (1.02, 2.0)  # a cell's cpu_seconds stays within 2% + 2 s of its budget: so does one capped trial's charge


def test_the_child_helper_returns_raises_and_stops_at_a_cpu_or_wall_cap():
    from tabduel.infra import child

    done = child.run(sum, range(10))
    assert done.value == 45 and done.cpu_seconds >= 0 and done.seconds > 0
    with pytest.raises(ValueError, match="invalid literal") as info:  # raised in the child, raised here
        child.run(int, "x")
    assert getattr(info.value, child.CHILD_CPU) >= 0
    began = time.perf_counter()
    with pytest.raises(child.Cut, match=r"^spin: stopped at its cap of 0.50 CPU-s after") as info:
        child.run(sum, range(10**12), cap=0.5, clock="cpu", what="spin")  # C-level work: it cannot stop itself
    spent = getattr(info.value, child.CHILD_CPU)
    assert 0.5 <= spent <= 0.5 * SLACK[0] + SLACK[1] and time.perf_counter() - began < 60
    began = time.perf_counter()
    with pytest.raises(child.Cut, match=r"^nap: stopped at its cap of 0.50 s after"):
        child.run(time.sleep, 600, cap=0.5, clock="wall", what="nap")  # no CPU spent: the wall clock stops it
    assert 0.5 <= time.perf_counter() - began < 30


def _start_a_child(queue) -> None:
    from tabduel.infra import child
    from tabduel.infra.errors import one_line

    try:
        child.start()
        queue.put("started")
    except Exception as exc:
        queue.put(one_line(exc))


def test_a_daemonic_process_is_refused_a_child_in_one_line():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # a worker under a Dask nanny is daemonic
    queue = ctx.Queue()
    p = ctx.Process(target=_start_a_child, args=(queue,), daemon=True)
    p.start()
    said = queue.get(timeout=60)
    p.join(60)
    assert said.startswith("a peer's trials run in a child process, which a daemonic process may not start (a Dask "
                           "worker under a nanny): start the workers with --no-nanny"), said


def test_a_capped_peer_trial_is_stopped_at_its_cap_and_charged_the_cpu_its_child_spent(features_dir):
    from tabduel.infra.child import CHILD_CPU, Cut
    from tabduel.search import peers
    from tabduel.search.families import CPU_SPENT, run_trials

    fam = search_family("peer_realmlp")  # RealMLP-TD trains every epoch asked for: 100,000 would take hours
    s = SearchConfig(study="t", peer_iterations=100_000, trial_clock="cpu", seed=3)
    spec = fam.suggest(optuna_trial({"seed": 5}), s, 1, ())
    cap = 1.0
    capped = fam.cap(spec, cap)
    assert capped.max_seconds == cap and capped.clock == "cpu" and fam.cap(capped, 9.0).max_seconds == cap
    peers.preload("peer_realmlp")  # before the clock, as a cell does
    began = time.perf_counter()
    with pytest.raises(Cut, match=r"^peer_realmlp trial \(seed 5\): stopped at its cap of 1.00 CPU-s after ") as info:
        run_trials("peer_realmlp", features_dir, [capped])
    wall = time.perf_counter() - began
    child, charged = getattr(info.value, CHILD_CPU), getattr(info.value, CPU_SPENT)
    # the child's CPU counts (this process's own clock sees none of it: it alone would be a few hundredths), and the
    # child was not stopped before its cap, nor long after it
    assert cap <= child <= charged <= cap * SLACK[0] + SLACK[1], (child, charged)
    assert wall < 120


def test_a_peer_trial_fitted_in_its_child_predicts_as_an_in_process_fit_of_its_seed(features_dir):
    from tabduel.search.peers import PeerTrial, run_peer

    data, _ = training.load_data(features_dir, "peer_lgbm")
    cfg = small("peer_lgbm", seed=7)
    row = run_peer("peer_lgbm", features_dir, PeerTrial("peer_lgbm", cfg), keep=True)  # no cap: it runs to its end
    here = training.fit("peer_lgbm", data, cfg)
    np.testing.assert_array_equal(row["model"].predict(data.x_valid), family("peer_lgbm").predict(here.model,
                                                                                                   data.x_valid))
    assert row["valid_mse"] == pytest.approx(float(np.mean((row["model"].valid - data.y_valid) ** 2)), rel=1e-6)
    assert 0 < row["child_cpu_seconds"] < row["cpu_seconds"] and row["threads"] == 1  # the child's CPU is charged


def test_a_peer_cell_whose_only_trial_is_cut_fails_in_one_line_charged_within_its_budget(features_dir, tmp_path):
    import optuna

    from tabduel.search.study import SPENT

    cfg = Config.from_dict({"bench": {"minutes": 0.02, "trials": 0}, "search": {"peer_iterations": 100_000}})
    cell = Cell("airfoil", "peer_realmlp", 4751)
    with pytest.raises(RuntimeError, match=r"^airfoil/none/peer_realmlp-s4751: no trial finished within the budget; "
                                           r"the last failed: peer_realmlp trial \(seed \d+\): stopped at its cap of "
                                           r"1.20 CPU-s after "):
        run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "cell.log", threads=1)
    study = optuna.load_study(study_name="cell-peer_realmlp", storage=open_storage(str(tmp_path / "cell.log")))
    (trial,) = study.trials  # the budget went on it: no second trial
    assert trial.state.name == "FAIL" and "stopped at its cap" in trial.user_attrs["error"]
    assert 1.2 <= trial.user_attrs["cpu_seconds"] <= 1.2 * SLACK[0] + SLACK[1]
    assert study.user_attrs[SPENT] == pytest.approx(trial.user_attrs["cpu_seconds"])


def optuna_trial(params):
    import optuna

    return optuna.trial.FixedTrial(params)


def test_peers_are_search_and_bench_families_but_no_default():
    cfg = Config()
    from tabduel.infra.settings import choices_of

    choices = choices_of({f.name: f for f in dataclasses.fields(SearchConfig)}["families"])
    assert set(PEERS) <= set(choices)
    assert not set(PEERS) & set(cfg.search.families) and not set(PEERS) & set(cfg.bench.families)
    assert Config.from_dict({"bench": {"families": ["xgboost", "peer_lgbm"]}}).bench.families == ("xgboost",
                                                                                                 "peer_lgbm")
    with pytest.raises(ConfigError, match="search.peer_iterations = -1: must not be negative"):
        SearchConfig(peer_iterations=-1)


def test_the_pipeline_logs_a_peer_whose_mlflow_model_predicts_as_tabduel_does(tmp_path, raw_csv, prefect_api,
                                                                              monkeypatch):
    from mlflow import MlflowClient

    from tabduel.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--source", str(raw_csv)]) == 0
    assert main(["features"]) == 0
    assert main(["train", "peer_lgbm", "--iterations", "30", "--threads", "1", "--seed", "3"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "peer_lgbm"
    assert run.data.params["iterations"] == "30" and run.data.params["seed"] == "3"
    assert 1 <= run.data.metrics["best_iteration"] <= 30 and run.data.metrics["threads"] == 1

    import mlflow.pyfunc

    model_dir = next((tmp_path / "data" / "models" / "peer_lgbm").glob("*/meta.json")).parent
    features_dir = next((tmp_path / "data" / "features").glob("*/manifest.json")).parent
    manifest = json.loads((features_dir / "manifest.json").read_text())
    x = pd.read_parquet(features_dir / "test.parquet")[manifest["features"]].to_numpy(np.float32)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{run.outputs.model_outputs[0].model_id}")
    assert pyfunc.metadata.flavors.keys() >= {"sklearn", "python_function"}
    ours = training.predictor("peer_lgbm", model_dir)(x)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(x)).ravel(), ours, rtol=1e-6)


# Without pytabkit: a finder that refuses it (and its submodules), as if the peers extra were not installed.
BLOCK = textwrap.dedent("""
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
""")


def _without_pytabkit(code: str, cwd, blocked: str = "pytabkit") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_without_pytabkit_the_cli_refuses_a_peer_in_one_line_and_the_core_registries_load(tmp_path):
    done = _without_pytabkit("""
        from tabduel.cli import main
        for argv in (["train", "peer_tabm"], ["run", "--models", "mlp,peer_catboost"],
                     ["search", "--families", "xgboost,peer_realmlp"], ["bench", "--families", "peer_lgbm"]):
            print(main(argv), file=sys.stderr)
        from tabduel.models.registry import FAMILIES
        from tabduel.search.families import names
        for fam in FAMILIES:
            if not fam.extra:
                fam.require()  # the core's families need no extra
        print(*names())
    """, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"tabduel: error: peer_tabm {MESSAGE} (No module named 'pytabkit')", "2",
        f"tabduel: error: peer_catboost {MESSAGE} (No module named 'pytabkit')", "2",
        f"tabduel: error: peer_realmlp {MESSAGE} (No module named 'pytabkit')", "2",
        f"tabduel: error: peer_lgbm {MESSAGE} (No module named 'pytabkit')", "2"], done.stderr
    assert {"mlp", "xgboost", *PEERS} <= set(done.stdout.split())


def test_without_pytabkit_fitting_loading_or_a_search_trial_of_a_peer_is_one_tabduel_error(tmp_path, features_dir):
    done = _without_pytabkit(f"""
        from tabduel.settings import Config
        from tabduel.infra.errors import TabduelError, one_line
        from tabduel.models import training
        from tabduel.models.registry import family
        from tabduel.search.families import run_trials, search_family
        import optuna

        data, _ = training.load_data({features_dir!r}, "peer_lgbm")
        spec = search_family("peer_catboost").suggest(optuna.trial.FixedTrial({{"seed": 1}}), Config().search, 1, ())
        for call in (lambda: training.fit("peer_lgbm", data, Config().peer_lgbm),
                     lambda: family("peer_realmlp").load({str(tmp_path)!r}),
                     lambda: run_trials("peer_catboost", {features_dir!r}, [spec])):
            try:
                call()
            except TabduelError as exc:
                print(one_line(exc))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"peer_lgbm {MESSAGE} (No module named 'pytabkit')",
        f"the peer model in {tmp_path} {MESSAGE} (No module named 'pytabkit')",
        f"peer_catboost {MESSAGE} (No module named 'pytabkit')"]


def test_a_peer_whose_own_library_is_missing_is_refused_naming_it_and_the_others_are_not(tmp_path):
    done = _without_pytabkit("""
        from tabduel.infra.errors import ConfigError
        from tabduel.models.registry import family
        for kind in ("peer_realmlp", "peer_tabm", "peer_lgbm", "peer_catboost"):
            try:
                family(kind).require()
                print(kind, "ok")
            except ConfigError as exc:
                print(exc)
    """, tmp_path, blocked="catboost")
    assert done.stdout.splitlines() == ["peer_realmlp ok", "peer_tabm ok", "peer_lgbm ok",
                                        f"peer_catboost {MESSAGE} (No module named 'catboost')"], done.stderr


def test_the_core_commands_import_no_peer_library():
    probe = textwrap.dedent("""
        import sys
        from tabduel.cli import build_parser
        from tabduel.models import registry, training
        from tabduel.search import families
        build_parser()
        print(sorted(m for m in ("pytabkit", "lightgbm", "catboost", "tabm") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
