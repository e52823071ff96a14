"""The RealMLP and TabM search families: their spaces, their defaults as trial 0, the shared loop running them (real
Optuna, real torch, a tiny generated data set and a few epochs), rebuilds, and a bench cell."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from benchsuite import airfoil_features

from tabduel.bench.cells import Cell, bases_of, run_cell, variant
from tabduel.infra.config import RealMLPConfig, SearchConfig, TabMConfig, build, to_plain
from tabduel.infra.errors import ConfigError
from tabduel.search.families import search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.space import (
    REALMLP_HIDDEN,
    realmlp_defaults,
    suggest_realmlp,
    suggest_tabm,
    tabm_defaults,
    xgboost_defaults,
)
from tabduel.search.study import FIRST, open_storage, open_study
from tabduel.search.trials import TEST_SCORES, run_net
from tabduel.settings import SEARCH_FAMILIES, Config

NEW = ("realmlp", "tabm")
SECTION = {"realmlp": RealMLPConfig, "tabm": TabMConfig}


def _tiny(**more) -> SearchConfig:
    """A search space of a few epochs and members: each trial trains in about a second."""
    return SearchConfig(study="t", trials=2, realmlp_epochs=2, realmlp_max_seconds=30, tabm_k=2, tabm_epochs=3,
                        tabm_patience=2, tabm_max_seconds=30, **more)


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("families"), n=120)


# ---- spaces -----------------------------------------------------------------------------------------------------


def test_realmlp_configs_from_many_random_trials_are_valid_and_cover_the_space():
    s = _tiny()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {"embedding": set(), "hidden": set(), "activation": set(), "dropout": set(),
                            "weight_decay": set(), "front_scale": set()}
    for _ in range(150):
        trial = study.ask()
        cfg = suggest_realmlp(trial, s, threads=1)
        assert build(RealMLPConfig, to_plain(cfg), "realmlp.") == cfg  # the settings' own checks, choices included
        assert 0.02 <= cfg.lr <= 0.3 and cfg.epochs == 2 and cfg.max_seconds == 30 and cfg.seed == s.seed
        if cfg.embedding == "pbld":
            assert 0.05 <= cfg.embedding_scale <= 0.5
        else:
            assert "embedding_scale" not in trial.params
        for name in seen:
            seen[name].add(getattr(cfg, name))
        study.tell(trial, 1.0)
    assert seen == {"embedding": {"none", "pbld"}, "hidden": set(REALMLP_HIDDEN.values()),
                    "activation": {"relu", "selu", "mish"}, "dropout": {0.0, 0.15, 0.3}, "weight_decay": {0.0, 0.02},
                    "front_scale": {True, False}}


def test_tabm_configs_from_many_random_trials_are_valid_and_cover_the_space():
    s = _tiny()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    blocks = {"ple": set(), "none": set()}
    zero_dropout = zero_decay = 0
    for _ in range(150):
        trial = study.ask()
        cfg = suggest_tabm(trial, s, threads=1)
        assert build(TabMConfig, to_plain(cfg), "tabm.") == cfg
        assert cfg.k == 2 and cfg.epochs == 3 and cfg.patience == 2 and cfg.max_seconds == 30
        assert 64 <= cfg.d_block <= 1024 and cfg.d_block % 16 == 0 and 1e-4 <= cfg.lr <= 5e-3
        assert 0 <= cfg.dropout <= 0.5 and (cfg.weight_decay == 0 or 1e-4 <= cfg.weight_decay <= 0.1)
        if cfg.embedding == "ple":
            assert 2 <= cfg.bins <= 128 and 8 <= cfg.embedding_dim <= 32 and cfg.embedding_dim % 4 == 0
        else:
            assert "bins" not in trial.params and "embedding_dim" not in trial.params
        blocks[cfg.embedding].add(cfg.n_blocks)
        zero_dropout += cfg.dropout == 0
        zero_decay += cfg.weight_decay == 0
        study.tell(trial, 1.0)
    assert blocks == {"ple": {1, 2, 3, 4}, "none": {1, 2, 3, 4, 5}}
    assert 0 < zero_dropout < 150 and 0 < zero_decay < 150


# ---- the defaults first -----------------------------------------------------------------------------------------


def test_a_new_realmlp_study_tries_realmlp_td_first(tmp_path):
    s = _tiny()
    storage = open_storage(str(tmp_path / "j.log"))
    study, _ = open_study(s, "realmlp", storage, False, 0)
    trial = study.ask()
    assert trial.number == 0 and trial.params == {} and study.trials[0].user_attrs == {FIRST: "defaults"}
    cfg = search_family("realmlp").suggest(trial, s, 1, ())
    assert trial.params == realmlp_defaults()
    assert cfg == dataclasses.replace(RealMLPConfig(), epochs=2, max_seconds=30, seed=s.seed, threads=1)
    study.tell(trial, 1.0)
    again, _ = open_study(s, "realmlp", storage, True, 0)  # a resumed study queues nothing more
    assert len(again.trials) == 1
    again.ask()
    assert again.trials[-1].user_attrs == {} and "fixed_params" not in again.trials[-1].system_attrs


def test_a_new_tabm_study_tries_the_engines_defaults_first(tmp_path, features_dir):
    from tabduel.engine import tabm
    from tabduel.models.training import load_data

    s = _tiny()
    study, _ = open_study(s, "tabm", open_storage(str(tmp_path / "j.log")), False, 0)
    trial = study.ask()
    cfg = search_family("tabm").suggest(trial, s, 1, ())
    assert trial.number == 0 and trial.params == tabm_defaults()
    default = dataclasses.replace(TabMConfig(), k=2, epochs=3, patience=2, max_seconds=30, seed=s.seed, threads=1)
    assert cfg == dataclasses.replace(default, n_blocks=cfg.n_blocks)
    data, _ = load_data(features_dir, "tabm")
    from tabduel.models.tabm import train_quantiles

    quantiles = train_quantiles(data, default)  # n_blocks as the engine resolves 0:
    assert tabm.architecture(data, cfg, quantiles) == tabm.architecture(data, default, quantiles)


def test_the_mlp_study_queues_nothing_and_xgboost_its_defaults(tmp_path):
    storage = open_storage(str(tmp_path / "j.log"))
    assert open_study(_tiny(), "mlp", storage, False, 0)[0].trials == []
    study, _ = open_study(_tiny(), "xgboost", storage, False, 0)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == [xgboost_defaults()]


# ---- the shared loop, rebuilds, runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_the_loop_runs_a_family_and_rebuilds_the_specs_that_ran(tmp_path, features_dir, name):
    s = _tiny()
    fam = search_family(name)
    study, budget = open_study(s, name, open_storage(str(tmp_path / "j.log")), False, 0)
    ran: dict[int, object] = {}

    def submit(label, base, specs):
        assert base == "ordinal" and len(specs) == 1  # each alone, on the features its pipeline training reads
        ran[int(label.rsplit("-", 1)[1])] = specs[0]
        return Inline(lambda: fam.run(features_dir, specs, False))

    out = run_family(name, study, budget, s, 1, 1, submit, first_of, clock="cpu")
    assert out.told == 2 and out.failed == 0 and sorted(ran) == [0, 1]
    for t in study.trials:
        assert t.state.name == "COMPLETE" and math.isfinite(t.value) and t.value > 0
        assert t.user_attrs["cpu_seconds"] > 0 and t.user_attrs["device"] == "cpu"
        assert 1 <= t.user_attrs["best_epoch"] <= t.user_attrs["epochs_run"] <= SECTION[name]().epochs
        assert fam.rebuild(t.params, s, 1) == ran[t.number]
    assert out.spent == pytest.approx(sum(r["cpu_seconds"] for r in out.results))
    assert isinstance(ran[0], SECTION[name]) and ran[0] != ran[1]


def test_a_diverged_trial_is_a_result_that_is_not_finite(features_dir):
    r = run_net("tabm", features_dir, TabMConfig(k=2, epochs=3, lr=1e30, threads=1), with_test=True)
    assert math.isnan(r["valid_mse"]) and "diverged" in r["error"] and r["cpu_seconds"] > 0
    assert all(math.isnan(r[k]) for k in TEST_SCORES)


def test_a_realmlp_bench_cell_scores_its_selected_model_on_test_once(tmp_path, features_dir):
    search = {f.name: getattr(_tiny(), f.name) for f in dataclasses.fields(SearchConfig)
              if f.name.startswith(("realmlp_", "tabm_"))}
    cfg = Config.from_dict({"bench": {"trials": 2, "minutes": 0, "families": "realmlp"}, "search": search})
    assert variant("realmlp")[0] == "realmlp" and bases_of("realmlp") == ("ordinal",)
    r = run_cell(Cell("airfoil", "realmlp", 4751), {"ordinal": features_dir}, cfg, tmp_path / "j.log")
    assert r["trials"] == 2 and r["trials_failed"] == 0 and r["features_read"] == features_dir
    assert r["tested"] == "selected" and r["tested_valid_mse"] == pytest.approx(r["best_valid_mse"], abs=1e-6)
    assert r["test_mse"] > 0 and r["test_rmse_orig"] == pytest.approx(math.sqrt(r["test_mse_orig"]))


# ---- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["search", "bench"])
def test_an_unknown_family_is_one_line_naming_the_known_ones(section):
    with pytest.raises(ConfigError) as err:
        Config.from_dict({section: {"families": "mlp,tabpfn"}})
    assert str(err.value) == f"{section}.families = 'tabpfn' is not one of: {', '.join(SEARCH_FAMILIES)}"
    assert set(NEW) <= set(SEARCH_FAMILIES)
    with pytest.raises(ConfigError, match=r"^bench family 'tabpfn' is not one of: mlp, xgboost, realmlp, tabm, "):
        variant("tabpfn")


@pytest.mark.parametrize("section, message", [
    ({"tabm_k": 0}, "search.tabm_k = 0: must be at least 1"),
    ({"tabm_max_seconds": -1}, "search.tabm_max_seconds = -1.0: must not be negative"),
    ({"realmlp_epochs": 0}, "search.realmlp_epochs = 0: must be at least 1"),
    ({"realmlp_max_seconds": -2}, "search.realmlp_max_seconds = -2.0: must not be negative"),
    ({"tabm_patience": -1}, "search.tabm_patience = -1: must not be negative"),
])
def test_the_new_search_settings_name_their_fault(section, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"search": section})
