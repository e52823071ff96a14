"""RealMLP populations (engine/realmlp_population.py, search.realmlp_batch): each member trains exactly as it would
alone, and a search's batch siblings train as one population that is charged like an MLP population."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from benchsuite import airfoil_features

from tabduel.engine import realmlp, realmlp_population
from tabduel.engine.data import Data
from tabduel.engine.realmlp_population import Member, member_config
from tabduel.engine.torchfit import TrainingDiverged
from tabduel.infra.config import ConfigError, RealMLPConfig, SearchConfig
from tabduel.models import realmlp as realmlp_family
from tabduel.search.families import REALMLP_PER_MEMBER, search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.study import SIBLING_OF, counted_trials, open_storage, open_study
from tabduel.search.trials import TEST_SCORES, run_realmlp
from tabduel.settings import Config

FAST = dict(hidden=(16, 16), epochs=5, batch_size=64, device="cpu", threads=1)


@pytest.fixture(scope="module")
def data():
    """Three numeric columns (one heavy-tailed), a one-hot pair, and a 10-level category that gets embedded."""
    rng = np.random.default_rng(0)
    n = 500
    num = rng.normal(size=(n, 3))
    num[:, 2] = rng.standard_t(2, size=n)
    big = rng.integers(1, 11, n)
    level = rng.integers(0, 2, n)
    x = np.column_stack([num, level == 0, level == 1, big[:, None] == np.arange(1, 11)]).astype(np.float32)
    y = (np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.8 * x[:, 3] + 0.1 * big + rng.normal(0, 0.05, n))
    names = ("a", "b", "c", "g_1", "g_2", *(f"big_{i}" for i in range(1, 11)))
    cats = (("big", names[5:], ""),)
    return Data(x[:350], y[:350].astype(np.float32), x[350:], y[350:].astype(np.float32), names, ("a", "b", "c"),
                cats)


def _assert_as_alone(data, cfg, members, pop):
    """Member k of the population against realmlp.fit of its own settings: predictions, histories, best epoch."""
    for m, fit in zip(members, pop.fits):
        alone = realmlp.fit(data, member_config(cfg, m))
        np.testing.assert_allclose(realmlp_family.predict(fit.model, data.x_valid),
                                   realmlp_family.predict(alone.model, data.x_valid), rtol=1e-4, atol=1e-4)
        assert fit.info["best_epoch"] == alone.info["best_epoch"]
        assert fit.info["epochs_run"] == alone.info["epochs_run"]
        assert fit.info["steps"] == alone.info["steps"]
        np.testing.assert_allclose(fit.history["valid_loss"], alone.history["valid_loss"], rtol=1e-4)
        np.testing.assert_allclose(fit.history["train_loss"], alone.history["train_loss"], rtol=1e-4)


@pytest.mark.parametrize("shape", [
    {},  # RealMLP-TD: PBLD, front scale, parametric mish, flat_cos dropout and weight decay, coslog4 lr
    {"embedding": "none", "front_scale": False, "activation": "relu", "hidden": (8, 8, 8)},
])
def test_each_member_trains_as_it_would_alone(data, shape):
    """Three members of one seed (a search's batch) with their own lr, weight decay and dropout, dropout 0 among
    them: the same predictions as three single fits, up to float rounding."""
    cfg = RealMLPConfig(**{**FAST, **shape})
    members = [Member(cfg.seed, 0.2, 0.02, 0.15), Member(cfg.seed, 0.05, 0.0, 0.3), Member(cfg.seed, 0.1, 0.02, 0.0)]
    pop = realmlp_population.fit(data, cfg, members)
    assert pop.errors == ["", "", ""] and pop.info["shared_batches"] and pop.info["members"] == 3
    _assert_as_alone(data, cfg, members, pop)
    assert pop.fits[0].model.categories is not None  # the 10-level category went through its embedding


def test_members_of_other_seeds_early_stopping_and_a_diverged_member(data):
    """Other seeds: each member's own batches, masks and init; patience: a member that stops leaves the others to
    train on; lr 1e30: that member diverges with realmlp.fit's message, the others are unaffected."""
    cfg = RealMLPConfig(**{**FAST, "epochs": 40, "patience": 2})
    members = [Member(1, 0.05, 0.02, 0.15), Member(2, 0.2, 0.0, 0.0), Member(3, 1e30, 0.0, 0.1)]
    pop = realmlp_population.fit(data, dataclasses.replace(cfg, lr_schedule="constant"), members)
    assert not pop.info["shared_batches"]
    assert pop.fits[2] is None and pop.errors[2].endswith(
        "after epoch 1: training diverged (lower the learning rate)")
    const = dataclasses.replace(cfg, lr_schedule="constant")
    with pytest.raises(TrainingDiverged, match=r"after epoch 1: training diverged"):
        realmlp.fit(data, member_config(const, members[2]))
    _assert_as_alone(data, const, members[:2], dataclasses.replace(pop, fits=pop.fits[:2]))
    runs = [f.info["epochs_run"] for f in pop.fits[:2]]
    assert min(runs) < 40 and runs[0] != runs[1]  # both stopped early, at their own epochs


def test_a_population_time_limit_keeps_every_members_best_epoch(data):
    cfg = RealMLPConfig(**{**FAST, "epochs": 10_000, "max_seconds": 0.5})
    pop = realmlp_population.fit(data, cfg, [Member(cfg.seed, 0.1), Member(cfg.seed, 0.05)])
    for fit in pop.fits:
        assert fit.info["time_limited"] and 1 <= fit.info["best_epoch"] <= fit.info["epochs_run"] < 10_000
        pred = realmlp_family.predict(fit.model, data.x_valid)
        assert float(np.mean((pred - data.y_valid) ** 2)) == pytest.approx(fit.info["best_valid_loss"], rel=1e-5)


# ---- the search -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("rpop"), n=120)


def test_batch_siblings_vary_exactly_what_population_members_may():
    assert set(REALMLP_PER_MEMBER) == set(realmlp_population.PER_MEMBER) - {"seed"}


@pytest.mark.parametrize("value, message", [(0, "search.realmlp_batch = 0: must be at least 1"),
                                            (-3, "search.realmlp_batch = -3: must be at least 1")])
def test_the_batch_setting_names_its_fault_in_one_line(value, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Config.from_dict({"search": {"realmlp_batch": value}})
    with pytest.raises(ConfigError, match="realmlp_batch"):
        Config.from_dict({"search": {"realmlp_batch": "four"}})


def _loop(tmp_path, features_dir, s):
    study, budget = open_study(s, "realmlp", open_storage(str(tmp_path / "j.log")), False, 0)
    fam = search_family("realmlp")
    groups = []

    def submit(label, base, specs):
        groups.append(specs)
        return Inline(lambda: fam.run(features_dir, specs, False))

    out = run_family("realmlp", study, budget, s, 1, 1, submit, first_of, clock="cpu")
    return study, out, groups


def test_batched_realmlp_trials_share_a_shape_and_train_as_one_population(tmp_path, features_dir):
    s = SearchConfig(study="t", trials=5, realmlp_epochs=2, realmlp_max_seconds=30, threads=1, realmlp_batch=3)
    study, out, groups = _loop(tmp_path, features_dir, s)
    assert [len(g) for g in groups] == [3, 2]  # the trial budget caps the last batch
    trials = study.trials
    assert trials[0].user_attrs["first"] == "defaults"  # RealMLP-TD leads the first population
    for start, size in ((0, 3), (3, 2)):
        leader, siblings = trials[start], trials[start + 1:start + size]
        for sib in siblings:
            assert sib.user_attrs[SIBLING_OF] == leader.number
            assert {k: v for k, v in sib.params.items() if k not in REALMLP_PER_MEMBER} == \
                   {k: v for k, v in leader.params.items() if k not in REALMLP_PER_MEMBER}
        assert all(t.user_attrs["population_trials"] == size for t in trials[start:start + size])
        assert all(t.state.name == "COMPLETE" and math.isfinite(t.value) for t in trials[start:start + size])
    assert out.told == 5 and counted_trials(study) == 5
    # the population's CPU-seconds are split evenly among its trials, and the budget counts them once
    first = [r for r in out.results if r["trial"] < 3]
    assert len({r["cpu_seconds"] for r in first}) == 1
    assert first[0]["cpu_seconds"] * 3 == pytest.approx(first[0]["group_cpu_seconds"])
    assert out.spent == pytest.approx(sum(r["cpu_seconds"] for r in out.results))


def test_without_a_batch_each_realmlp_trial_trains_alone(tmp_path, features_dir):
    s = SearchConfig(study="t", trials=2, realmlp_epochs=2, realmlp_max_seconds=30, threads=1)
    study, out, groups = _loop(tmp_path, features_dir, s)
    assert [len(g) for g in groups] == [1, 1] and out.told == 2
    assert all("population_trials" not in t.user_attrs for t in study.trials)


def test_a_population_row_is_a_trial_alone_row_and_a_diverged_member_is_not_finite(features_dir):
    good = RealMLPConfig(epochs=2, threads=1, device="cpu", lr_schedule="constant")
    bad = dataclasses.replace(good, lr=1e30)
    rows = run_realmlp(features_dir, [good, bad], with_test=True, keep=True)
    alone = run_realmlp(features_dir, [good], with_test=True, keep=True)[0]
    assert rows[0]["valid_mse"] == pytest.approx(alone["valid_mse"], rel=1e-4)
    assert rows[0]["test_mse"] == pytest.approx(alone["test_mse"], rel=1e-4)
    assert set(alone) <= set(rows[0]) and rows[0]["group_trials"] == 2 and "model" in rows[0]
    assert math.isnan(rows[1]["valid_mse"]) and "diverged" in rows[1]["error"] and "model" not in rows[1]
    assert all(math.isnan(rows[1][k]) for k in TEST_SCORES)
    assert rows[0]["cpu_seconds"] == rows[1]["cpu_seconds"] > 0
