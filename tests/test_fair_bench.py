"""A bench a reviewer cannot fault: every trial capped at the budget left, failed trials charged, the tested model the
selected one, and the test rows out of the search's reach (real cells: Optuna, torch, XGBoost, Parquet)."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from benchsuite import airfoil_features

from tabduel.bench.cells import (
    HELD_OUT,
    TRIALS_DIR,
    Cell,
    TrialLibrary,
    bases_of,
    bench_families,
    bench_name,
    check_device,
    one_cell_per_process,
    run_cell,
    search_inputs,
)
from tabduel.infra.config import SearchConfig, XGBoostConfig
from tabduel.infra.errors import ConfigError, TabduelError
from tabduel.search.ensemble import caruana_weights
from tabduel.search.families import CPU_SPENT, capped, run_trials, search_family
from tabduel.search.loop import Inline, capped_group, first_of, run_family
from tabduel.search.study import Budget, open_storage, open_study
from tabduel.settings import Config

_OPENED: list[str] = []  # every file opened while a test below listens (the hook stays; the list is cleared)
_LISTENING = [False]


def _hook(event: str, args: tuple) -> None:
    if event == "open" and _LISTENING[0] and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("fair"), n=600)


def _bench(minutes: float = 0.0, trials: int = 0, **search) -> Config:
    return Config.from_dict({"bench": {"minutes": minutes, "trials": trials}, "search": search})


def test_no_search_trial_opens_the_test_split(tmp_path, features_dir):
    sys.addaudithook(_hook)
    test_file = str(Path(features_dir) / HELD_OUT)
    _OPENED.clear()
    _LISTENING[0] = True
    try:
        r = run_cell(Cell("airfoil", "mlp", 4751), {b: features_dir for b in bases_of("mlp")},
                     _bench(trials=3, mlp_epochs=4, max_width=16, max_ensemble=2), tmp_path / "j.log")
    finally:
        _LISTENING[0] = False
    reads = [p for p in _OPENED if p.endswith(".parquet")]
    trained = [i for i, p in enumerate(reads) if p.endswith("train.parquet")]
    assert r["trials"] == 3 and len(trained) == 3  # the hook saw every trial read its inputs
    assert reads.count(test_file) == 1 and reads.index(test_file) > trained[-1]  # once, after the search
    assert not any(p.endswith(HELD_OUT) for p in reads if p != test_file)
    assert all(not p.startswith(str(Path(features_dir))) for p in reads[:trained[-1] + 1])  # the copies, not these


def test_the_search_copies_hold_no_test_rows(tmp_path, features_dir):
    view = search_inputs(features_dir, tmp_path / "inputs")
    assert sorted(p.name for p in view.iterdir()) == sorted(p.name for p in Path(features_dir).iterdir()
                                                            if p.name != HELD_OUT)
    assert search_inputs(features_dir, tmp_path / "inputs") == view  # made once


@pytest.mark.parametrize("family", ["mlp", "realmlp", "tabm", "xgboost"])
def test_a_cell_spends_at_most_its_budget_with_trials_that_would_run_far_longer(tmp_path, features_dir, family):
    """Each trial alone would train for up to 60 CPU-s; the cell's budget is 3: capped trials keep it (tabm's
    predictions of valid, seconds on a wide ensemble, included)."""
    long = dict(mlp_epochs=100_000, mlp_patience=100_000, mlp_max_seconds=60, realmlp_epochs=100_000,
                realmlp_max_seconds=60, tabm_epochs=100_000, tabm_patience=100_000, tabm_max_seconds=60,
                xgb_rounds=10_000_000, xgb_early_stopping=10_000_000, max_width=64)
    r = run_cell(Cell("airfoil", family, 4751), {b: features_dir for b in bases_of("mlp")},
                 _bench(minutes=0.05, **long), tmp_path / "j.log")
    assert r["budget_cpu_seconds"] == pytest.approx(3.0)
    assert r["trials"] >= 1 and r["cpu_seconds"] <= 3.0 * 1.02 + 2
    assert r["tested"] == "selected" and r["tested_valid_mse"] == pytest.approx(r["best_valid_mse"], abs=1e-6)


def test_a_trial_is_capped_at_the_budget_left_split_among_a_population():
    fam = search_family("mlp")
    s = SearchConfig(study="t", trials=4, mlp_max_seconds=50)
    import optuna

    spec = fam.suggest(optuna.trial.FixedTrial({"activation": "relu", "batch_size": 64, "depth": 1, "dropout": 0.0,
                                                "encoding": "ordinal", "ensemble": 1, "lr": 0.01,
                                                "optimizer": "adam", "weight_decay": 1e-5, "width": 16}), s, 1,
                       ("ordinal",))
    budget = Budget(trials=math.inf, seconds=100.0, spent=10.0)
    assert [x.mlp.max_seconds for x in capped_group(fam, [spec], budget, 30.0, 1, "cpu")] == [50]  # its own limit
    assert [x.mlp.max_seconds for x in capped_group(fam, [spec, spec], budget, 80.0, 1, "cpu")] == [10, 10]
    assert [x.mlp.max_seconds for x in capped_group(fam, [spec], budget, 80.0, 2, "cpu")] == [10]  # two in flight
    assert capped_group(fam, [spec], Budget(4, math.inf, 0.0), 0.0, 1, "cpu") == [spec]  # no seconds budget
    assert capped(0.0, 7.0) == 7.0 and capped(5.0, 7.0) == 5.0 and capped(5.0, -1.0) > 0  # 0 is no limit


def test_a_failing_run_says_what_it_spent(tmp_path):
    s = SearchConfig(study="t", trials=1, xgb_rounds=5)
    spec = search_family("xgboost").rebuild(dict(_XGB), s, 1)
    with pytest.raises(FileNotFoundError) as info:  # a real trial on a features folder that is not there
        run_trials("xgboost", str(tmp_path / "missing"), [spec])
    assert getattr(info.value, CPU_SPENT) >= 0.0


def test_a_failed_trial_is_charged_the_cpu_it_spent(tmp_path):
    s = SearchConfig(study="t", trials=2, minutes=10, xgb_rounds=5)
    study, budget = open_study(s, "xgboost", open_storage(str(tmp_path / "j.log")), False, 0)

    def fail(label, base, specs):
        def work():
            exc = RuntimeError("out of memory")
            setattr(exc, CPU_SPENT, 0.25)  # as run_trials says what a trial spent before it raised
            raise exc
        return Inline(work)

    out = run_family("xgboost", study, budget, s, 1, 1, fail, first_of, clock="cpu")
    assert out.failed == 2 and out.told == 0 and out.spent == pytest.approx(0.5)


_XGB = {"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
        "lambda": 1.0, "alpha": 0.001}


def test_a_resumed_cell_tests_the_model_its_search_kept(tmp_path, features_dir):
    cfg = _bench(trials=2, xgb_rounds=30, xgb_early_stopping=5)
    cell = Cell("airfoil", "xgboost", 4751)
    first = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "j.log")
    assert (tmp_path / ("j.log" + TRIALS_DIR)).is_dir()
    again = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "j.log")  # nothing to add: test the kept one
    assert again["tested"] == "selected" and again["test_mse"] == first["test_mse"]
    shutil.rmtree(tmp_path / ("j.log" + TRIALS_DIR))  # as after a kill between a trial's tell and its model's file
    lost = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "j.log")
    assert lost["tested"] == "refit" and math.isfinite(lost["test_mse"])


def test_a_second_cell_in_one_process_is_refused_in_one_line(tmp_path, features_dir):
    cell = Cell("airfoil", "xgboost", 4751)
    with one_cell_per_process(Cell("airfoil", "mlp", 4751)):  # as a Dask worker's other thread would hold it
        with pytest.raises(TabduelError, match=r"^airfoil/none/xgboost-s4751: another bench cell is running in this "
                                               r"process.*--nthreads 1$"):
            run_cell(cell, {"ordinal": features_dir}, _bench(trials=1, xgb_rounds=5), tmp_path / "j.log")
    assert run_cell(cell, {"ordinal": features_dir}, _bench(trials=1, xgb_rounds=5), tmp_path / "j.log")["trials"] == 1


def test_a_cuda_bench_without_cuda_is_one_line():
    with pytest.raises(ConfigError, match=r"^bench.device = 'cuda': torch sees no CUDA device on this machine$"):
        check_device("cuda", ["realmlp", "xgboost"], cuda=False)


def test_a_cuda_bench_of_a_cpu_only_peer_is_one_line():
    with pytest.raises(ConfigError, match=r"^bench.device = 'cuda': peer_lgbm train\(s\) only on the CPU"):
        check_device("cuda", ["xgboost", "peer_lgbm"], cuda=True)
    check_device("cuda", ["xgboost", "mlp-robust", "realmlp", "tabm"], cuda=True)  # every own family can


def test_an_unknown_bench_device_is_one_line():
    with pytest.raises(ConfigError, match=r"bench.device"):
        Config.from_dict({"bench": {"device": "tpu"}})


def test_a_cpu_bench_trains_every_family_on_the_cpu_even_where_a_gpu_is_seen(tmp_path, features_dir):
    r = run_cell(Cell("airfoil", "realmlp", 4751), {"ordinal": features_dir},
                 _bench(trials=1, realmlp_epochs=2), tmp_path / "j.log")
    assert r["device"] == "cpu" and r["budget_clock"] == "cpu"
    spec = search_family("xgboost").on_device(search_family("xgboost").rebuild(dict(_XGB), SearchConfig(study="t"),
                                                                               1), "cpu")
    assert spec.device == "cpu"


def test_xgboost_starts_from_its_defaults_as_the_mlp_families_do(tmp_path):
    s = SearchConfig(study="t", trials=1)
    study, _ = open_study(s, "xgboost", open_storage(str(tmp_path / "j.log")), False, 0)
    trial = study.ask()
    spec = search_family("xgboost").suggest(trial, s, 1, ())
    d = XGBoostConfig()
    assert (spec.max_depth, spec.learning_rate, spec.subsample, spec.reg_lambda) == (
        d.max_depth, d.learning_rate, d.subsample, d.reg_lambda)


@pytest.mark.parametrize("numeric", ["robust", "standard", "quantile"])
def test_a_realmlp_preprocessing_cell_trains_realmlp_with_that_input_map(tmp_path, features_dir, numeric):
    r = run_cell(Cell("airfoil", f"realmlp-{numeric}", 4751), {"ordinal": features_dir},
                 _bench(trials=1, realmlp_epochs=3), tmp_path / "j.log")
    library = TrialLibrary(tmp_path / ("j.log" + TRIALS_DIR))
    kept = library.entries[library.best()][1]
    assert kept.model.arch["numeric_map"] == numeric and (kept.model.quantile is not None) == (numeric == "quantile")
    # the same model on the same threads predicts valid to the bit (on 2 threads, Intel's did not: 2e-6 off at 9)
    assert r["tested"] == "selected" and r["tested_valid_mse"] == r["best_valid_mse"]


@pytest.fixture(scope="module")
def features_1500(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("fair1500"), n=1500)  # 300 valid rows: two passes of 256


@pytest.mark.parametrize("family, search", [("mlp", {"mlp_epochs": 3}),
                                            ("realmlp", {"realmlp_epochs": 3, "realmlp_batch": 2})])
def test_a_cell_retests_its_selected_model_to_the_bit_whatever_threads_its_trials_predicted_on(
        tmp_path, features_1500, family, search):
    """mlp trials and RealMLP populations predict valid on torch's threads as they are, single RealMLP fits on their
    own: each kept model predicts again on the threads its valid predictions were made on."""
    r = run_cell(Cell("airfoil", family, 4751), {b: features_1500 for b in bases_of(family)},
                 _bench(trials=2, **search), tmp_path / "j.log", threads=1)
    assert r["tested"] == "selected" and r["tested_valid_mse"] == r["best_valid_mse"]


def test_a_realmlp_corruption_bench_takes_only_realmlps_preprocessings():
    with pytest.raises(ConfigError, match=r"^bench.preprocessing = 'standard,robust,quantile,clip,ple': clip, ple: not "
                                          r"a preprocessing of realmlp \(it takes robust, standard, quantile\)$"):
        Config.from_dict({"bench": {"corrupt_family": "realmlp", "corrupt": ["missing"]}})
    cfg = Config.from_dict({"bench": {"corrupt_family": "realmlp", "corrupt": ["missing"],
                                      "preprocessing": ["robust", "standard", "quantile"]}})
    assert bench_families(cfg) == ["xgboost", "realmlp-robust", "realmlp-standard", "realmlp-quantile"]
    assert bench_name("dev", cfg.bench) == "bench-dev-300s-corrupt-realmlp"
    with pytest.raises(ConfigError, match=r"^bench.corrupt_family = 'tabm' is not one of: mlp, realmlp$"):
        Config.from_dict({"bench": {"corrupt_family": "tabm"}})


# ---- post-hoc ensembles (Caruana et al. 2004) ---------------------------------------------------------------------


def test_caruana_takes_a_perfect_member_alone():
    y = np.array([1.0, 2.0, 3.0])
    w = caruana_weights(np.stack([y + 1, y, y - 0.5]), y)
    assert w.tolist() == [0.0, 1.0, 0.0]


def test_caruana_mixes_members_whose_errors_cancel():
    y = np.zeros(4)
    w = caruana_weights(np.stack([y + 1, y - 1, y + 3]), y)
    assert w.tolist() == [0.5, 0.5, 0.0]  # each error +1 and -1: their mean is exact


def test_caruana_never_does_worse_on_valid_than_its_best_member():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    preds = y + rng.normal(size=(8, 50)) * np.linspace(0.1, 2, 8)[:, None]
    w = caruana_weights(preds, y)
    assert w.sum() == pytest.approx(1) and ((w @ preds - y) ** 2).mean() <= ((preds - y) ** 2).mean(axis=1).min()


def test_caruana_refuses_predictions_that_do_not_match_the_targets():
    with pytest.raises(ValueError, match=r"valid predictions of shape \(2, 3\) do not match 4 targets"):
        caruana_weights(np.zeros((2, 3)), np.zeros(4))


@pytest.mark.parametrize("family", ["mlp", "xgboost"])
def test_a_cell_scores_the_ensemble_of_its_trials_once_on_test(tmp_path, features_dir, family):
    r = run_cell(Cell("airfoil", family, 4751), {b: features_dir for b in bases_of("mlp")},
                 _bench(trials=6, mlp_epochs=6, max_width=32, max_ensemble=2, xgb_rounds=50, xgb_early_stopping=5),
                 tmp_path / "j.log")
    assert r["ensemble_valid_mse"] <= r["best_valid_mse"] + 1e-9 and math.isfinite(r["ensemble_test_mse"])
    assert sum(r["ensemble_weights"].values()) == pytest.approx(1) and r["ensemble_library"] >= 1
    assert set(r["ensemble_weights"]) <= {str(t) for t in range(6)}
    library = TrialLibrary(tmp_path / ("j.log" + TRIALS_DIR))
    assert library.best() == r["best_trial"] and len(library.entries) == r["ensemble_library"]


def test_the_library_keeps_the_best_trials_and_drops_the_one_a_better_displaces(tmp_path):
    from tabduel.search.trials import KeptModel

    lib = TrialLibrary(tmp_path / "lib", size=2)
    for number, value in [(0, 0.5), (1, 0.3), (2, 0.4), (3, 0.9)]:
        lib(number, {"valid_mse": value}, KeptModel("xgboost", {}, None, np.zeros(1)))
    lib(4, {"valid_mse": 0.1, "pruned": True}, KeptModel("xgboost", {}, None, np.zeros(1)))  # pruned: never kept
    assert sorted(lib.entries) == [1, 2] and lib.best() == 1
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["000001.pkl", "000002.pkl"]
    assert sorted(TrialLibrary(tmp_path / "lib").entries) == [1, 2]  # a resumed cell finds them


def test_the_bench_ranks_t_and_t_plus_e_together():
    from tabduel.bench import report
    from tabduel.bench.cells import result
    from tabduel.infra.config import BenchConfig

    def cell(ds, fam, seed, t, e):
        return {"cell": {"dataset": ds, "family": fam, "seed": seed, "corruption": "none", "level": 0.0},
                "best_valid_mse": t, "test_mse": t, "ensemble_test_mse": e, "test_r2": 0.5, "test_r2_orig": 0.5,
                "test_rmse_orig": 1.0, "cpu_seconds": 60.0, "wall_seconds": 61.0, "trials": 5, "tested": "selected",
                "budget_cpu_seconds": 60.0}

    cells = [cell(ds, f, s, t + s / 100, e + s / 100) for ds in "abc" for s in (1, 2)
             for f, t, e in (("realmlp", 1.0, 0.8), ("xgboost", 0.9, 0.85))]
    doc = result("s", BenchConfig(minutes=1), [1, 2], cells, ["realmlp", "xgboost"])
    ens = doc["aggregate_ensemble"]
    assert ens["mean_rank"] == {"realmlp": 4.0, "xgboost": 3.0, "realmlp+E": 1.0, "xgboost+E": 2.0}
    assert doc["datasets"]["a"]["realmlp"]["ensemble_test_mse_mean"] == pytest.approx(0.815)
    assert doc["over_budget_cells"] == [] and doc["tested_not_selected"] == []
    text = report.markdown(doc, [], "pics")
    assert "## Post-hoc ensembles: T (the selected model) and T+E" in text and "| realmlp+E | 1.00 |" in text


def test_a_stopped_bench_names_the_cells_it_kept(tmp_path):
    from tabduel.cli import kept_message

    cfg = Config.from_dict({"pipeline": {"data_dir": str(tmp_path)}})
    since = time.time() - 1
    assert kept_message(cfg, since, "bench").startswith("kept no cell finished in this run;")
    cell = tmp_path / "bench" / "bench-dev-60s" / "cells" / "wine_red" / "none" / "xgboost-s4751.json"
    cell.parent.mkdir(parents=True)
    cell.write_text("{}")
    text = kept_message(cfg, since, "bench")
    assert text.startswith("kept 1 cell(s) finished in this run (under ") and "--resume continues it" in text
