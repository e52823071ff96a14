"""Multi-fidelity pruning and batched MLP trials: the engine's stop hooks, the pruner's settings, trials reported and
pruned one by one (alone, in a population, from another process), and the loop's batches (real Optuna, real torch,
a tiny generated data set)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing

import numpy as np
import optuna
import pytest
from benchsuite import airfoil_features
from optuna.trial import TrialState

from tabduel.engine import population, single
from tabduel.engine.data import Data
from tabduel.infra.config import MLPConfig, SearchConfig
from tabduel.infra.errors import ConfigError
from tabduel.search.families import MLP_PER_MEMBER, search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.pruning import Handle, Pruning, Reporter, make_pruner, pruning_of, rungs
from tabduel.search.space import Encoding, MLPTrial
from tabduel.search.study import SIBLING_OF, counted_trials, open_storage, open_study
from tabduel.search.trials import run_mlp


def _data(seed: int = 0, n: int = 200) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=n)).astype(np.float32)
    return Data(x[:150], y[:150], x[150:], y[150:], ("a", "b", "c", "d"))


def _cfg(**more) -> MLPConfig:
    return dataclasses.replace(MLPConfig(hidden=(8,), activation="relu", optimizer="adam", lr=0.01, epochs=30,
                                         patience=30, batch_size=32, seed=3, threads=1), **more)


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("pruning"), n=150)


# ---- the engine's hooks -----------------------------------------------------------------------------------------


def test_a_single_fit_stops_where_its_callback_says_and_keeps_its_best_weights():
    seen = []

    def on_epoch(epoch, epochs, train_loss, valid_loss):
        seen.append(valid_loss)
        return epoch == 4

    fit = single.fit(_data(), _cfg(), on_epoch)
    assert fit.info["pruned_epoch"] == 4 and fit.info["epochs_run"] == 4 and len(seen) == 4
    assert fit.info["best_valid_loss"] == min(seen)
    assert single.fit(_data(), _cfg(epochs=6)).info["pruned_epoch"] == 0  # no callback: never pruned


def test_a_population_prunes_members_one_by_one_and_the_others_train_on():
    members = population.members_of(_cfg(), 3)
    calls = []

    def prune(epoch, active, best):
        calls.append((epoch, tuple(active)))
        assert best.shape == (3,)
        return (active == 1) & (epoch == 2)  # stop member 1 at epoch 2

    fit = population.fit(_data(), _cfg(epochs=5), members, prune=prune)
    assert list(fit.info["pruned_epoch"]) == [0, 2, 0]
    assert list(fit.info["epochs_run"]) == [5, 2, 5]
    assert calls[2] == (3, (0, 2))  # member 1 left the stacked tensors
    alone = population.fit(_data(), _cfg(epochs=5), members)  # pruning one member changes no other
    for k in (0, 2):
        assert np.allclose(fit.single(k).history["valid_loss"], alone.single(k).history["valid_loss"])


def test_a_population_refuses_a_prune_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(2,\), not \(3,\)"):
        population.fit(_data(), _cfg(epochs=2), population.members_of(_cfg(), 3),
                       prune=lambda epoch, active, best: np.zeros(2, dtype=bool))


def test_a_population_refuses_pruning_without_early_stopping():
    with pytest.raises(ValueError, match="patience > 0"):
        population.fit(_data(), _cfg(patience=0), population.members_of(_cfg(), 2),
                       prune=lambda epoch, active, best: np.zeros(len(active), dtype=bool))


def test_an_autograd_fit_stops_where_its_callback_says_and_keeps_its_best_epoch():
    from tabduel.infra.config import RealMLPConfig
    from tabduel.models import realmlp

    seen = []

    def on_epoch(epoch, epochs, train_loss, valid_loss):
        seen.append(valid_loss)
        return epoch == 2

    fit = realmlp.fit(_data(), RealMLPConfig(epochs=6, threads=1), on_epoch)
    assert fit.info["pruned_epoch"] == 2 and fit.info["epochs_run"] == 2 and len(seen) == 2
    assert fit.info["best_valid_loss"] == min(seen)


# ---- settings ---------------------------------------------------------------------------------------------------


def test_rungs_grow_by_three_below_the_epochs():
    assert rungs(5, 300) == (5, 15, 45, 135)
    assert rungs(1, 27) == (1, 3, 9)  # a trial at its last epoch has trained fully: never pruned there
    assert rungs(1, 1) == ()


def test_pruners_by_name():
    assert isinstance(make_pruner("none", 5, 300), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("halving", 5, 300), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner("hyperband", 5, 300), optuna.pruners.HyperbandPruner)


def test_an_unknown_pruner_is_named():
    with pytest.raises(ConfigError, match="search.pruner = 'asha' is not one of: none, halving, hyperband"):
        Pruning("j.log", "s", "asha")


def test_a_first_rung_at_or_beyond_the_epochs_is_named():
    with pytest.raises(ConfigError, match="search.prune_min_epochs = 300: must be at least 1 and below"):
        Pruning("j.log", "s", "halving", min_epochs=300, max_epochs=300)
    assert not Pruning("j.log", "s", "none", min_epochs=300, max_epochs=3).on  # no pruner: no rungs to check


def test_search_settings_check_the_pruner_the_first_rung_and_the_batch():
    with pytest.raises(ConfigError, match="search.pruner"):
        SearchConfig(pruner="asha")
    with pytest.raises(ConfigError, match=r"search.prune_min_epochs = 40: must be below search.mlp_epochs \(40\)"):
        SearchConfig(pruner="halving", prune_min_epochs=40, mlp_epochs=40)
    with pytest.raises(ConfigError, match=r"search.prune_min_epochs = 0: must be at least 1"):
        SearchConfig(prune_min_epochs=0)
    assert SearchConfig(mlp_epochs=3).prune_min_epochs == 5  # without a pruner, short trials are fine
    with pytest.raises(ConfigError, match="search.mlp_batch = 0"):
        SearchConfig(mlp_batch=0)


def test_batch_siblings_vary_exactly_what_population_members_may():
    assert set(MLP_PER_MEMBER) == {f.name for f in dataclasses.fields(population.Member)} - {"seed"}


# ---- reporting and pruning trials -------------------------------------------------------------------------------


def _study_with_a_champion(path, pruner="halving"):
    """A journal study whose one finished trial scored 0 at every rung: any trial reported there is pruned."""
    storage = open_storage(str(path))
    study = optuna.create_study(study_name="p", storage=storage, pruner=make_pruner(pruner, 1, 30))
    rung_values = {f"completed_rung_{i}": 0.0 for i in range(4)}
    study.add_trial(optuna.trial.create_trial(value=0.0, intermediate_values={1: 0.0, 3: 0.0, 9: 0.0, 27: 0.0},
                                              system_attrs=rung_values))
    return study


def _trial(prune=None, **mlp) -> MLPTrial:
    return MLPTrial(Encoding("ordinal"), _cfg(**mlp), 1, prune)


def test_a_trial_alone_is_reported_at_the_rungs_and_pruned(tmp_path, features_dir):
    study = _study_with_a_champion(tmp_path / "j.log")
    t = study.ask()
    pruning = Pruning(str(tmp_path / "j.log"), "p", "halving", 1, 30)
    row = run_mlp(features_dir, [_trial(Handle(pruning, t._trial_id))])[0]
    assert row["pruned"] and row["epochs_run"] == [1]
    frozen = study._storage.get_trial(t._trial_id)
    assert list(frozen.intermediate_values) == [1]


def test_in_a_population_only_the_reported_trial_is_pruned(tmp_path, features_dir):
    study = _study_with_a_champion(tmp_path / "j.log")
    t = study.ask()
    pruning = Pruning(str(tmp_path / "j.log"), "p", "halving", 1, 30)
    rows = run_mlp(features_dir, [_trial(Handle(pruning, t._trial_id)), _trial(lr=0.003)])
    assert [r["pruned"] for r in rows] == [True, False]
    assert rows[0]["epochs_run"] == [1] and rows[1]["epochs_run"][0] > 1
    assert list(study._storage.get_trial(t._trial_id).intermediate_values) == [1]


def test_a_trial_no_pruner_stops_is_reported_at_every_rung_it_reaches(tmp_path, features_dir):
    storage = open_storage(str(tmp_path / "j.log"))
    study = optuna.create_study(study_name="p", storage=storage, pruner=make_pruner("halving", 1, 30))
    t = study.ask()  # the first trial of a rung is always promoted
    row = run_mlp(features_dir, [_trial(Handle(Pruning(str(tmp_path / "j.log"), "p", "halving", 1, 30),
                                                t._trial_id), epochs=12)])[0]
    assert not row["pruned"] and row["epochs_run"] == [12]
    values = study._storage.get_trial(t._trial_id).intermediate_values
    assert list(values) == [1, 3, 9] and values[9] <= values[3] <= values[1]  # best so far: never worse


def _run_in_another_process(features_dir, trial):
    return run_mlp(features_dir, [trial])[0]


def test_a_pool_worker_reports_and_prunes_through_the_shared_storage(tmp_path, features_dir):
    study = _study_with_a_champion(tmp_path / "j.log")
    t = study.ask()
    trial = _trial(Handle(Pruning(str(tmp_path / "j.log"), "p", "halving", 1, 30), t._trial_id))
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        row = pool.submit(_run_in_another_process, features_dir, trial).result()
    assert row["pruned"] and row["worker"].split(":")[1] != str(multiprocessing.current_process().pid)
    assert list(study._storage.get_trial(t._trial_id).intermediate_values) == [1]


def test_a_reporter_without_handles_is_off():
    assert not Reporter([None, None]).on
    assert not Reporter([Handle(Pruning("j.log", "s", "none"), 0)]).on


# ---- the loop ---------------------------------------------------------------------------------------------------


def _search(**more) -> SearchConfig:
    return SearchConfig(**{"study": "t", "trials": 8, "mlp_epochs": 27, "mlp_patience": 27, "max_depth": 2,
                           "max_width": 32, "max_ensemble": 2, **more})


def _loop(tmp_path, features_dir, s, resume=False):
    """Run the loop on the study of tmp_path/j.log (resuming it), trials inline; (study, loop result, groups run)."""
    path = str(tmp_path / "j.log")
    study, budget = open_study(s, "mlp", open_storage(path), resume, 0)
    groups = []
    fam = search_family("mlp")

    def submit(label, base, specs):
        groups.append(specs)
        return Inline(lambda: fam.run(features_dir, specs, False))

    out = run_family("mlp", study, budget, s, 1, 1, submit, first_of, clock="cpu", encodings=("ordinal",),
                     pruning=pruning_of(s, path, study.study_name))
    return study, out, groups


def test_the_loop_tells_pruned_trials_as_pruned_and_counts_them(tmp_path, features_dir):
    s = _search(pruner="halving", prune_min_epochs=1)
    study, out, groups = _loop(tmp_path, features_dir, s)
    states = [t.state for t in study.trials]
    assert len(states) == 8 and counted_trials(study) == 8 and out.told == 8
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for t in study.trials:
        assert set(t.intermediate_values) <= {1, 3, 9}  # reported at the rungs only, never at the last epoch
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["pruned"] and t.value == t.intermediate_values[t.last_step]
    complete = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert out.best == min(complete)


def test_without_a_pruner_no_trial_is_reported(tmp_path, features_dir):
    study, _, _ = _loop(tmp_path, features_dir, _search(trials=3))
    assert all(t.state == TrialState.COMPLETE and not t.intermediate_values for t in study.trials)


def test_hyperband_prunes_each_trial_by_its_brackets_rungs_only(tmp_path, features_dir):
    s = _search(pruner="hyperband", prune_min_epochs=1, trials=24)  # past TPE's 10 random trials
    study, _, _ = _loop(tmp_path, features_dir, s)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner) and counted_trials(study) == 24
    brackets = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3)
    brackets._try_initialization(study)  # the brackets the workers' pruners used: crc32 of study name and trial
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned
    first_rung = {}
    for t in study.trials:
        b = brackets._get_bracket_id(study, t)
        first_rung[t.number] = 3 ** b  # bracket b promotes first at min_epochs x 3^b
    for t in pruned:
        assert t.last_step >= first_rung[t.number]  # never pruned before its bracket's first rung
    assert all(t.state != TrialState.PRUNED for t in study.trials if first_rung[t.number] >= 27)


def test_batched_trials_share_a_shape_and_train_as_one_population(tmp_path, features_dir):
    s = _search(trials=7, mlp_batch=3)
    study, out, groups = _loop(tmp_path, features_dir, s)
    assert [len(g) for g in groups] == [3, 3, 1]  # the trial budget caps the last batch
    trials = study.trials
    for start in (0, 3):
        leader, siblings = trials[start], trials[start + 1:start + 3]
        for sib in siblings:
            assert sib.user_attrs[SIBLING_OF] == leader.number
            assert {k: v for k, v in sib.params.items() if k not in MLP_PER_MEMBER} == \
                   {k: v for k, v in leader.params.items() if k not in MLP_PER_MEMBER}
        assert len({t.params["lr"] for t in trials[start:start + 3]}) == 3
        assert all(t.user_attrs["population_trials"] == 3 for t in trials[start:start + 3])
    assert out.told == 7 and counted_trials(study) == 7


def test_a_resumed_search_runs_its_retries_before_it_batches_again(tmp_path, features_dir):
    s = _search(trials=6, mlp_batch=2)
    study, _ = open_study(s, "mlp", open_storage(str(tmp_path / "j.log")), False, 0)
    for _ in range(2):  # a kill left two trials running
        trial = study.ask()
        search_family("mlp").suggest(trial, s, 1, ("ordinal",))
    study, out, groups = _loop(tmp_path, features_dir, s, resume=True)
    assert [len(g) for g in groups] == [1, 2, 2, 1]  # the first retry alone (the second waits), then batches
    for t in study.trials:
        if SIBLING_OF in t.user_attrs:
            assert study.trials[t.user_attrs[SIBLING_OF]].user_attrs.get(SIBLING_OF) is None
            assert t.number == t.user_attrs[SIBLING_OF] + 1
    assert counted_trials(study) == 6 and not [t for t in study.trials if t.state == TrialState.WAITING]


# ---- time limits on the budget's clock --------------------------------------------------------------------------


def test_a_cpu_stopwatch_does_not_count_waiting():
    import time

    from tabduel.infra.runtime import stopwatch

    wall, cpu = stopwatch("wall"), stopwatch("cpu")
    time.sleep(0.3)
    assert wall() >= 0.3 and cpu() < 0.15
    with pytest.raises(ConfigError, match="time clock = 'gpu' is not one of: wall, cpu"):
        stopwatch("gpu")


@pytest.mark.parametrize("clock, cut", [("wall", True), ("cpu", False)])
def test_a_time_limit_counts_its_clock(clock, cut):
    import time

    def slow(epoch, epochs, train_loss, valid_loss):  # a busy machine: the fit waits, its CPU time does not grow
        time.sleep(0.15)

    fit = single.fit(_data(), _cfg(epochs=6, max_seconds=0.4, time_clock=clock), slow)
    assert fit.info["time_limited"] is cut and (fit.info["epochs_run"] < 6) is cut


def test_time_clock_settings_are_checked():
    with pytest.raises(ConfigError, match="mlp.time_clock = 'gpu' is not one of: wall, cpu"):
        MLPConfig(time_clock="gpu")
    with pytest.raises(ConfigError, match="search.trial_clock = 'gpu' is not one of: wall, cpu"):
        SearchConfig(trial_clock="gpu")


def test_bench_cells_time_their_trials_in_cpu_seconds():
    from tabduel.bench.cells import Cell, cell_search_config
    from tabduel.search.space import suggest_mlp, suggest_realmlp, suggest_tabm
    from tabduel.settings import Config

    s = cell_search_config(Config(), Cell("d", "mlp", 4751), threads=1)
    assert s.trial_clock == "cpu"
    def ask():
        return optuna.create_study().ask()

    assert suggest_mlp(ask(), s).mlp.time_clock == "cpu"
    assert suggest_realmlp(ask(), s).time_clock == "cpu" and suggest_tabm(ask(), s).time_clock == "cpu"


def test_a_batch_of_trials_gets_the_time_of_each(monkeypatch, features_dir):
    seen = []
    real = population.fit

    def recording(data, cfg, members, *args, **kwargs):
        seen.append(cfg.max_seconds)
        return real(data, cfg, members, *args, **kwargs)

    monkeypatch.setattr(population, "fit", recording)
    trials = [_trial(epochs=3, max_seconds=7.0), _trial(epochs=3, max_seconds=7.0, lr=0.003),
              _trial(epochs=3, max_seconds=7.0, lr=0.02)]
    run_mlp(features_dir, trials)
    assert seen == [21.0]
