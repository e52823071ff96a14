"""The published implementations as peers (tabduel[peers]): real pytabkit fits on small generated data, a real search
loop and bench cell of one, the pipeline's MLflow model, and the one-line refusal without pytabkit."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap

import messy
import numpy as np
import pandas as pd
import pytest
from benchsuite import SPECS

from tabduel.bench.cells import Cell, run_cell
from tabduel.data.dataset import load_spec
from tabduel.data.features import make_features, save_features
from tabduel.data.ingest import ingest
from tabduel.infra.config import FeaturesConfig, SearchConfig
from tabduel.infra.errors import ConfigError
from tabduel.models import training
from tabduel.models.registry import family
from tabduel.search.families import search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.space import features_config
from tabduel.search.study import open_storage, open_study
from tabduel.settings import Config

PEERS = ("peer_realmlp", "peer_tabm", "peer_lgbm", "peer_catboost")
# Few epochs or rounds, one thread: each fit takes about a second on generated data.
SMALL = {"peer_realmlp": 4, "peer_tabm": 3, "peer_lgbm": 20, "peer_catboost": 20}
MESSAGE = "needs the peers extra: pip install 'tabduel[peers]'"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    """The ordinal features of a generated airfoil file (150 rows), as the features step writes them."""
    root = tmp_path_factory.mktemp("peers")
    spec = load_spec(SPECS / "airfoil.toml")
    df, _ = ingest(str(messy.airfoil(root / "a.dat", n=150)), spec)
    return str(save_features(root / "f", *make_features(df, spec, features_config("ordinal", spec,
                                                                                  FeaturesConfig()))))


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
