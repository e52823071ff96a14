"""Search building blocks without Prefect: embeddings, spaces, trials, studies and the paired comparison."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from rawdata import write_raw
from tabduel.data.dataset import load_spec
from tabduel.data.embeddings import Embedding, apply, fit_periodic, fit_ple, ple
from tabduel.data.features import make_features, save_features
from tabduel.data.ingest import ingest
from tabduel.data.numeric import fit_numeric, map_numeric
from tabduel.infra.config import FeaturesConfig, MLPConfig, SearchConfig, TrackingConfig
from tabduel.infra.errors import ConfigError, TabduelError
from tabduel.infra.tracking import Tracker
from tabduel.search import compare
from tabduel.search.loop import backfill, mlflow_recorder, search_parent
from tabduel.search.report import rebuild, refit_row
from tabduel.search.space import (
    Encoding,
    MLPTrial,
    categorical_inputs,
    features_config,
    suggest_mlp,
    suggest_xgboost,
    trial_threads,
)
from tabduel.search.storage import _redact
from tabduel.search.study import (
    PARENT_RUN,
    RETRY_OF,
    counted_trials,
    open_storage,
    open_study,
    search_dir,
    storage_url,
)
from tabduel.search.trials import run_mlp, run_xgboost
from tabduel.settings import Config

# ---- embeddings ------------------------------------------------------------------------------------------------


def test_ple_is_the_papers_encoding():
    edges = np.array([0.0, 1.0, 3.0, 4.0])  # three bins
    x = np.array([-1.0, 0.5, 2.0, 3.5, 5.0])
    expected = np.array([
        [-1.0, 0.0, 0.0],   # below the first edge: the first bin extends left, unclipped
        [0.5, 0.0, 0.0],
        [1.0, 0.5, 0.0],
        [1.0, 1.0, 0.5],
        [1.0, 1.0, 2.0],    # above the last edge: the last bin extends right, unclipped
    ])
    np.testing.assert_allclose(ple(x, edges), expected)


def test_ple_edges_come_from_train_only_and_apply_to_other_splits():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 3)).astype(np.float32)
    emb = fit_ple(train, (0, 2), bins=8)
    assert [len(e) for e in emb.edges] == [9, 9]
    assert emb.edges[0][0] == pytest.approx(train[:, 0].min()) and emb.edges[0][-1] == pytest.approx(train[:, 0].max())
    valid = train[:4] * 10  # far outside train's range
    out = apply(emb, valid)
    assert out.shape == (4, 1 + 16) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], valid[:, 1])  # the column left alone passes through first


def test_ple_gives_a_column_of_few_values_fewer_bins():
    x = np.column_stack([np.r_[np.zeros(90), np.ones(10)], np.full(100, 3.0)])
    emb = fit_ple(x, (0, 1), bins=16)
    assert [len(e) - 1 for e in emb.edges] == [1, 1]
    assert np.isfinite(apply(emb, x)).all()


def test_periodic_embedding_is_sin_and_cos_of_fixed_frequencies():
    x = np.array([[0.5, 2.0], [-1.0, 0.0]], dtype=np.float32)
    emb = fit_periodic(2, (1,), k=3, sigma=1.0, seed=7)
    again = fit_periodic(2, (1,), k=3, sigma=1.0, seed=7)
    np.testing.assert_array_equal(emb.frequencies, again.frequencies)
    out = apply(emb, x)
    angle = 2 * np.pi * x[:, 1:2] * emb.frequencies[0]
    np.testing.assert_allclose(out, np.column_stack([x[:, 0], np.sin(angle), np.cos(angle)]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: fit_ple(np.zeros((5, 2)), (0,), bins=1), "ple bins = 1: must be at least 2"),
    (lambda: fit_ple(np.zeros((5, 2)), (2,), bins=4), "column index 2 is outside x's 2 columns"),
    (lambda: fit_ple(np.zeros(5), (0,), bins=4), "x must be (rows, features)"),
    (lambda: fit_periodic(2, (0,), k=0, sigma=1.0, seed=0), "periodic frequencies = 0: must be at least 1"),
    (lambda: fit_periodic(2, (0,), k=2, sigma=0.0, seed=0), "periodic sigma = 0.0: must be positive"),
    (lambda: apply(Embedding("fourier", (0,)), np.zeros((2, 2))), "embedding kind 'fourier' is not one of"),
    (lambda: Encoding("binary"), "encoding 'binary' is not one of"),
    (lambda: Encoding("ple", bins=1), "encoding ple: bins = 1, must be at least 2"),
    (lambda: Encoding("periodic", frequencies=0, sigma=1.0), "frequencies = 0 must be at least 1"),
    (lambda: Encoding("onehot", numeric="log"), "encoding numeric = 'log' is not one of: standard, clip, quantile"),
    (lambda: fit_numeric(np.zeros((5, 2)), (0,), "log"), "numeric map 'log' is not one of"),
    (lambda: fit_numeric(np.zeros((5, 2)), (2,), "clip"), "columns (2,) do not all index x's shape (5, 2)"),
])
def test_embedding_validators_name_the_fault(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


# ---- settings and spaces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("section, message", [
    ({"trials": 0, "minutes": 0}, "search.trials = 0: with no trial limit, set search.minutes"),
    ({"minutes": -1}, "search.minutes = -1.0: must not be negative"),
    ({"runner": "dask"}, "search.address = '': runner = dask needs the scheduler's address"),
    ({"runner": "spark"}, "search.runner = 'spark' is not one of: process, thread, dask"),
    ({"families": "mlp,lightgbm"}, "search.families = 'lightgbm' is not one of: mlp, xgboost"),
    ({"max_width": 2048}, "search.max_width = 2048: must be between 16 and 1024"),
    ({"max_depth": 0}, "search.max_depth = 0: must be between 1 and 6"),
    ({"refit_seeds": 1}, "search.refit_seeds = 1: must be at least 2"),
    ({"workers": -1}, "search.workers = -1: must not be negative"),
    ({"mlp_max_seconds": -5}, "search.mlp_max_seconds = -5.0: must not be negative"),
    ({"numeric": "standard,log"}, "search.numeric = 'log' is not one of: standard, clip, quantile"),
    ({"numeric": ""}, "search.numeric = (): name at least one map"),
    ({"budget": 3}, "unknown setting 'search.budget'"),
])
def test_search_settings_validators_name_the_fault(section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config.from_dict({"search": section})


def test_mlp_max_seconds_must_not_be_negative():
    with pytest.raises(ConfigError, match="mlp.max_seconds = -1.0"):
        MLPConfig(max_seconds=-1.0)


def test_spaces_stay_inside_their_bounds():
    s = SearchConfig(max_depth=3, max_width=64, max_ensemble=4, mlp_epochs=7, mlp_patience=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        t = suggest_mlp(trial, s, threads=1)
        assert 1 <= len(t.mlp.hidden) <= 3 and set(t.mlp.hidden) <= {16, 32, 64} and len(set(t.mlp.hidden)) == 1
        assert t.ensemble in (1, 2, 4) and t.mlp.epochs == 7 and t.mlp.patience == 3 and t.mlp.seed == s.seed
        seen.add(t.encoding.name)
        x = suggest_xgboost(trial, s, threads=1)
        assert 2 <= x.max_depth <= 12 and x.n_estimators == s.xgb_rounds and x.n_jobs == 1
        study.tell(trial, 1.0)
    assert seen == {"ordinal", "onehot", "cyclic", "ple", "periodic"}


def test_numeric_maps_bound_every_split_to_the_train_range():
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.exponential(1.0, 500), rng.normal(size=500), np.arange(500.0)])  # (rows, 3)
    far = np.array([[50.0, -40.0, 7.0], [-3.0, 40.0, 8.0]])  # past train's range in columns 0 and 1
    clip = fit_numeric(train, (0, 1), "clip")
    out = map_numeric(clip, far)
    assert out[:, 0].tolist() == pytest.approx([train[:, 0].max(), train[:, 0].min()])
    assert out[:, 1].tolist() == pytest.approx([train[:, 1].min(), train[:, 1].max()])
    assert out[:, 2].tolist() == [7.0, 8.0] and far[0, 0] == 50.0  # other columns and the input untouched
    q = fit_numeric(train, (0, 1), "quantile")
    mapped = map_numeric(q, train)
    assert abs(np.median(mapped[:, 0])) < 0.05 and abs(mapped[:, 0].std() - 1) < 0.2  # skewed -> about N(0, 1)
    ends = map_numeric(q, far)
    assert ends[0, 0] == pytest.approx(mapped[:, 0].max()) and ends[0, 1] == pytest.approx(mapped[:, 1].min())
    assert map_numeric(fit_numeric(train, (0, 1), "standard"), far) is far


def test_the_numeric_map_is_searched_only_when_offered():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert suggest_mlp(trial, SearchConfig()).encoding.numeric == "standard" and "numeric" not in trial.params
    wide = SearchConfig(numeric=("standard", "clip", "quantile"))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        seen.add(suggest_mlp(trial, wide).encoding.numeric)
        assert trial.params["numeric"] == suggest_mlp(optuna.trial.FixedTrial(trial.params), wide).encoding.numeric
        study.tell(trial, 1.0)
    assert seen == {"standard", "clip", "quantile"}


def test_a_refit_keeps_the_trials_numeric_map():
    params = {"encoding": "onehot", "depth": 1, "width": 16, "activation": "relu", "dropout": 0.0,
              "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 64, "ensemble": 1}
    assert rebuild("mlp", params, SearchConfig(), 1).encoding.numeric == "standard"  # a study from before the map
    assert rebuild("mlp", {**params, "numeric": "clip"}, SearchConfig(), 1).encoding.numeric == "clip"


def test_threads_per_trial_never_exceed_the_free_cores(monkeypatch):
    import tabduel.infra.runtime as runtime
    import tabduel.search.space as space

    for module in (runtime, space):
        monkeypatch.setattr(module, "free_cores", lambda: 4)
    assert trial_threads(SearchConfig(), workers=4) == 1
    assert trial_threads(SearchConfig(), workers=2) == 2
    assert trial_threads(SearchConfig(), workers=8) == 1
    assert trial_threads(SearchConfig(threads=16), workers=1) == 4


def test_encoding_variants_of_the_seoul_spec():
    spec = load_spec("")
    assert categorical_inputs(spec) == ("hour", "season", "day", "month")
    base = FeaturesConfig(split_seed=9)
    assert features_config("ordinal", spec, base) == dataclasses.replace(base, onehot=(), cyclic=())
    assert features_config("onehot", spec, base).onehot == ("hour", "season", "day", "month")
    assert features_config("cyclic", spec, base, split_seed=11) == dataclasses.replace(
        base, split_seed=11, cyclic=("hour", "day", "month"))
    assert Encoding("ple", bins=8).base == Encoding("periodic", frequencies=2, sigma=1).base == "onehot"


# ---- trials ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, Path]:
    """Ordinal and onehot features of a generated raw file, written as the features step writes them."""
    root = tmp_path_factory.mktemp("variants")
    raw = write_raw(root / "raw.csv")
    spec = load_spec("")
    df, _ = ingest(str(raw), spec)
    out = {}
    for base in ("ordinal", "onehot"):
        cfg = features_config(base, spec, FeaturesConfig())
        out[base] = save_features(root / base, *make_features(df, spec, cfg))
    return out


def _trial(encoding: Encoding, ensemble: int = 1, **kw) -> MLPTrial:
    cfg = MLPConfig(hidden=(16, 16), activation="relu", optimizer="adamw", lr=3e-3, epochs=8, patience=0, seed=5)
    return MLPTrial(encoding, dataclasses.replace(cfg, **kw), ensemble)


def test_trials_of_one_shape_train_as_one_population_and_score_as_if_alone(variants):
    a = _trial(Encoding("onehot"), ensemble=2, lr=3e-3)
    b = _trial(Encoding("onehot"), ensemble=1, lr=1e-2, weight_decay=1e-3)
    together = run_mlp(variants["onehot"], [a, b])
    assert [r["group_trials"] for r in together] == [2, 2] and together[0]["group_members"] == 3
    alone = [run_mlp(variants["onehot"], [t])[0] for t in (a, b)]
    for t, r in zip(together, alone):
        assert t["valid_mse"] == pytest.approx(r["valid_mse"], rel=1e-4)
        assert t["member_valid_mse"] == pytest.approx(r["member_valid_mse"], rel=1e-4)
    # An ensemble's score is its mean prediction's, no worse than its average member.
    assert together[0]["valid_mse"] <= np.mean(together[0]["member_valid_mse"]) + 1e-9


def test_trials_of_different_shapes_are_refused_as_one_group(variants):
    with pytest.raises(ValueError, match="2 groups"):
        run_mlp(variants["onehot"], [_trial(Encoding("onehot")), _trial(Encoding("onehot"), hidden=(32,))])


@pytest.mark.parametrize("encoding", [Encoding("ple", bins=4), Encoding("periodic", frequencies=3, sigma=0.5)])
def test_embedded_trials_train_on_wider_inputs(variants, encoding):
    plain = run_mlp(variants["onehot"], [_trial(Encoding("onehot"))], with_test=True)[0]
    embedded = run_mlp(variants["onehot"], [_trial(encoding)], with_test=True)[0]
    assert embedded["inputs"] > plain["inputs"]
    assert math.isfinite(embedded["valid_mse"]) and math.isfinite(embedded["test_mse"])


def test_a_clipped_trial_sees_no_input_past_the_train_range(variants):
    from tabduel.search.trials import embedded_columns, load_inputs

    plain = load_inputs(variants["onehot"], Encoding("onehot"), True, 0)
    clipped = load_inputs(variants["onehot"], Encoding("onehot", numeric="clip"), True, 0)
    cols = list(embedded_columns(json.loads((variants["onehot"] / "manifest.json").read_text())))
    lo, hi = plain.data.x_train[:, cols].min(axis=0), plain.data.x_train[:, cols].max(axis=0)
    for x in (clipped.data.x_valid, clipped.x_test):
        assert (x[:, cols] >= lo).all() and (x[:, cols] <= hi).all()
    assert np.array_equal(clipped.data.x_train, plain.data.x_train)  # train is inside its own range
    other = [c for c in range(plain.x_test.shape[1]) if c not in cols]
    assert np.array_equal(clipped.x_test[:, other], plain.x_test[:, other])
    r = run_mlp(variants["onehot"], [_trial(Encoding("ple", bins=4, numeric="quantile"))], with_test=True)[0]
    assert math.isfinite(r["valid_mse"]) and math.isfinite(r["test_mse"])


def test_xgboost_trial_scores_valid_and_test(variants):
    s = SearchConfig(xgb_rounds=60, xgb_early_stopping=10)
    cfg = suggest_xgboost(optuna.trial.FixedTrial({"max_depth": 3, "learning_rate": 0.2, "min_child_weight": 1.0,
                                                   "subsample": 0.9, "colsample_bytree": 0.9, "lambda": 1.0,
                                                   "alpha": 0.01}), s)
    r = run_xgboost(variants["ordinal"], cfg, with_test=True)
    assert 0 < r["valid_mse"] < 1 and 0 < r["test_mse"] < 1 and r["best_iteration"] < 60


def test_an_mlp_trial_stops_at_its_time_limit(variants):
    slow = _trial(Encoding("onehot"), epochs=100000, max_seconds=0.5)
    r = run_mlp(variants["onehot"], [slow])[0]
    assert r["time_limited"] and r["epochs_run"][0] < 100000
    assert run_mlp(variants["onehot"], [dataclasses.replace(slow, ensemble=2)])[0]["time_limited"]


# ---- studies ------------------------------------------------------------------------------------------------------


def test_a_new_search_refuses_an_existing_study_and_resume_needs_one(tmp_path):
    s = SearchConfig(study="t", trials=3)
    storage = open_storage(storage_url(s, tmp_path))
    assert storage_url(s, tmp_path) == str(tmp_path.resolve() / "search" / "t" / "journal.log")
    with pytest.raises(TabduelError, match="no study 't-mlp' to resume"):
        open_study(s, "mlp", storage, resume=True, more_trials=0)
    study, budget = open_study(s, "mlp", storage, resume=False, more_trials=0)
    assert budget.trials == 3 and math.isinf(budget.seconds)
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(TabduelError, match="study 't-mlp' already exists .*--resume continues it"):
        open_study(s, "mlp", storage, resume=False, more_trials=0)


def test_a_study_that_no_trial_began_is_started_afresh(tmp_path):
    """A search that stopped before its first trial (a failed download) left its queued defaults: no refusal."""
    s = SearchConfig(study="t", trials=3)
    storage = open_storage(storage_url(s, tmp_path))
    study, _ = open_study(s, "xgboost", storage, resume=False, more_trials=0)
    assert [t.state.name for t in study.trials] == ["WAITING"]
    study, _ = open_study(s, "xgboost", storage, resume=False, more_trials=0)
    assert [t.state.name for t in study.trials] == ["WAITING"]  # queued once, not twice


def test_resume_fails_stale_running_trials_and_queues_them_again(tmp_path):
    s = SearchConfig(study="t", trials=4)
    storage = open_storage(storage_url(s, tmp_path))
    study, _ = open_study(s, "xgboost", storage, resume=False, more_trials=0)
    for value in (0.3, 0.2):
        t = study.ask()
        suggest_xgboost(t, s)
        study.tell(t, value)
    killed = study.ask()  # a trial left RUNNING, as by a killed search
    suggest_xgboost(killed, s)

    study, budget = open_study(s, "xgboost", storage, resume=True, more_trials=0)
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed.number] == "FAIL"
    (retry,) = [t for t in study.trials if t.state.name == "WAITING"]
    assert retry.system_attrs["fixed_params"] == killed.params and retry.user_attrs[RETRY_OF] == killed.number
    assert counted_trials(study) == 2 and budget.trials == 4  # the interrupted trial does not count

    study, budget = open_study(s, "xgboost", storage, resume=False, more_trials=5)
    assert budget.trials == 2 + 5


def test_sqlite_storage_and_bad_storage_urls(tmp_path):
    s = SearchConfig(study="q", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study, _ = open_study(s, "mlp", open_storage(s.storage), resume=False, more_trials=0)
    assert study.study_name == "q-mlp" and (tmp_path / "optuna.db").is_file()
    with pytest.raises(ConfigError, match="not a journal file path, sqlite"):
        open_storage("redis://localhost/0")


def test_a_storage_url_in_a_message_hides_its_password_only():
    # the hand-written splitter's output on the first four, captured before SQLAlchemy parsed them
    assert _redact("postgresql://user:s3cret@db:5432/optuna") == "postgresql://user:***@db:5432/optuna"
    assert _redact("postgresql+psycopg://u:p%40ss@h/db") == "postgresql+psycopg://u:***@h/db"
    assert _redact("mysql://a:b:c@h/db") == "mysql://a:***@h/db"
    assert _redact("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"  # an unescaped @ in the password
    assert _redact("sqlite:///x.db") == "sqlite:///x.db"
    assert _redact("postgresql://user@h/db") == "postgresql://user@h/db"  # no password (the splitter added :***)
    assert _redact("bad url://u:pw@h") == "bad url://***"  # SQLAlchemy cannot read it: only the scheme
    # every message of open_storage that names the URL: a scheme it does not take, a missing driver (no MySQLdb),
    # a server that refuses
    with pytest.raises(ConfigError, match=r"'postgres://u:\*\*\*@h/db': not a journal") as bad:
        open_storage("postgres://u:s3cret@h/db")
    with pytest.raises(ConfigError, match=r"'mysql://u:\*\*\*@h/db': its database driver") as driver:
        open_storage("mysql://u:s3cret@h/db")
    with pytest.raises(TabduelError, match=r"postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db: cannot open") as refused:
        open_storage("postgresql+psycopg://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(bad.value) + str(driver.value) + str(refused.value)


def test_a_search_parent_is_new_unless_a_resumed_search_finds_the_one_its_studies_recorded(tmp_path):
    tracker = Tracker(TrackingConfig(experiment="s", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    s = SearchConfig(study="t", trials=3)
    storage = open_storage(storage_url(s, tmp_path))
    studies = {f: open_study(s, f, storage, resume=False, more_trials=0)[0] for f in ("mlp", "xgboost")}
    first = search_parent(tracker, studies, False, {"tabduel.step": "search"}, {"search.trials": 3})
    run = tracker.client.get_run(first)
    assert run.data.params == {"search.trials": "3"} and run.data.tags["tabduel.step"] == "search"
    assert [st.user_attrs[PARENT_RUN] for st in studies.values()] == [first, first]
    tracker.finish(first)
    assert search_parent(tracker, studies, True, {}, {}) == first  # resumed: the same run, RUNNING again
    assert tracker.client.get_run(first).info.status == "RUNNING"
    second = search_parent(tracker, studies, False, {}, {})  # a new search (e.g. --more-trials off): a new run
    assert second != first and [st.user_attrs[PARENT_RUN] for st in studies.values()] == [second, second]
    studies["mlp"].set_user_attr(PARENT_RUN, "0" * 32)  # the studies disagree: a new run
    assert search_parent(tracker, studies, True, {}, {}) not in (first, second)


def test_backfill_records_the_complete_trials_that_have_no_run_once(tmp_path):
    tracker = Tracker(TrackingConfig(experiment="s", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    s = SearchConfig(study="t", trials=3)
    study, _ = open_study(s, "xgboost", open_storage(storage_url(s, tmp_path)), resume=False, more_trials=0)
    parent = tracker.start_run("search")
    assert backfill("xgboost", study, tracker, parent) == 0  # a fresh study
    for value in (0.3, 0.2):
        t = study.ask()
        suggest_xgboost(t, s)
        t.set_user_attr("seconds", 1.5)
        study.tell(t, value)
    mlflow_recorder(tracker, parent, study.study_name)("xgboost", study.trials[0], {
        "valid_mse": 0.3, "seconds": 1.5, "device": "cpu", "worker": "w", "best_iteration": 7}, None, 2.0, 0.3)
    assert backfill("xgboost", study, tracker, parent) == 1  # trial 1 was told but never logged (a kill)
    assert backfill("xgboost", study, tracker, parent) == 0
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    by_trial = {r.data.tags["optuna.trial"]: r for r in runs}
    assert set(by_trial) == {"0", "1"} and by_trial["1"].data.tags["tabduel.backfilled"] == "true"
    assert by_trial["0"].data.metrics["best_iteration"] == 7 and by_trial["1"].data.metrics["valid_mse"] == 0.2


def test_the_search_folder_holds_the_default_journal_and_a_refit_row_its_plan_and_scores(tmp_path):
    s = SearchConfig(study="t")
    assert search_dir(s, tmp_path) == tmp_path.resolve() / "search" / "t"
    assert storage_url(s, tmp_path) == str(search_dir(s, tmp_path) / "journal.log")
    item = {"label": "refit-mlp-seed1", "family": "mlp", "seed": 1, "trial": 4, "spec": None, "base": "onehot"}
    result = {"valid_mse": 0.1, "test_mse": 0.2, "seconds": 3.0, "device": "cpu"}
    assert refit_row(item, result) == {"label": "refit-mlp-seed1", "family": "mlp", "seed": 1, "trial": 4,
                                       "valid_mse": 0.1, "test_mse": 0.2, "seconds": 3.0}


# ---- evidence -----------------------------------------------------------------------------------------------------


def test_paired_comparison_matches_scipy():
    from scipy import stats

    mlp = [0.020, 0.018, 0.022, 0.019, 0.021]
    xgb = [0.017, 0.018, 0.019, 0.016, 0.018]
    rows = [{"family": f, "seed": s, "test_mse": v} for f, values in (("mlp", mlp), ("xgboost", xgb))
            for s, v in zip(range(5), values)]
    out = compare.paired_comparison(rows)
    assert out["n"] == 5 and out["mlp_wins"] == 0
    assert out["mlp_test_mse_mean"] == pytest.approx(np.mean(mlp))
    assert out["xgboost_test_mse_sd"] == pytest.approx(np.std(xgb, ddof=1))
    assert out["t_p_value"] == pytest.approx(stats.ttest_rel(mlp, xgb).pvalue)
    assert out["wilcoxon_p_value"] == pytest.approx(stats.wilcoxon(mlp, xgb).pvalue)
    assert "xgboost is lower on average" in compare.verdict(out)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare.paired_comparison(rows[:1] + rows[5:6])


def test_best_so_far_and_first_crossing():
    class T:
        def __init__(self, n, v, at):
            self.number, self.value, self.user_attrs, self.params = n, v, {"elapsed_seconds": at}, {"x": n}

    trials = [T(0, 0.5, 10.0), T(2, 0.3, 25.0), T(1, 0.4, 20.0), T(3, 0.35, 30.0)]
    curve = compare.best_so_far(trials)
    assert list(curve["trial"]) == [0, 1, 2, 3]  # in the order they finished
    assert list(curve["best_valid_mse"]) == [0.5, 0.4, 0.3, 0.3]
    assert compare.first_crossing(curve, 0.4) == {"trials": 2, "seconds": 20.0}
    assert compare.first_crossing(curve, 0.1) is None
    pruned = [T(4, 0.9, 15.0), T(5, 0.9, 22.0)]  # pruned or failed trials finish too, and count against budgets
    curve = compare.best_so_far(trials, trials + pruned)
    assert list(curve["finished"]) == [1, 3, 5, 6]
    assert compare.first_crossing(curve, 0.4) == {"trials": 3, "seconds": 20.0}
    board = compare.leaderboard({"mlp": trials}, top=2)
    assert list(board["trial"]) == [2, 3] and isinstance(board, pd.DataFrame)
