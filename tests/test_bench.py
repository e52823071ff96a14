"""Bench building blocks without Prefect: statistics on small known tables, corruptions, suite files, the shared
search loop (real Optuna, real trials on generated features), and cells."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import messy
import numpy as np
import optuna
import pandas as pd
import pytest
from benchsuite import SPECS, airfoil_features, write_suite

from tabduel.bench import report
from tabduel.bench import stats as st
from tabduel.bench.cells import (
    BEST_MLP,
    OWN_MLPS,
    Cell,
    bases_of,
    bench_name,
    budget_label,
    cell_search_config,
    corrupted_features,
    result,
    run_cell,
    variant,
    versus,
)
from tabduel.bench.suite import check_sources, load_suite
from tabduel.data.corruptions import CORRUPTIONS, corrupt
from tabduel.data.dataset import load_spec
from tabduel.data.features import ROW, make_features, split_indices
from tabduel.data.ingest import ingest
from tabduel.data.numeric import fit_numeric, map_numeric
from tabduel.infra.config import BenchConfig, FeaturesConfig, SearchConfig
from tabduel.infra.errors import ConfigError, SourceError, TabduelError
from tabduel.infra.runtime import Every
from tabduel.search.families import search_family
from tabduel.search.loop import Inline, first_of, run_family
from tabduel.search.space import ENCODINGS
from tabduel.search.study import SPENT, open_storage, open_study
from tabduel.search.trials import run_xgboost
from tabduel.settings import Config

ROOT = Path(__file__).resolve().parents[1]

# ---- statistics -------------------------------------------------------------------------------------------------

# A hand-checkable table: 4 datasets x 3 families of test MSE (lower is better).
TABLE = pd.DataFrame({"a": [1.0, 2.0, 3.0, 1.0], "b": [2.0, 1.0, 4.0, 2.0], "c": [3.0, 3.0, 5.0, 3.0]},
                     index=["d1", "d2", "d3", "d4"])


def test_ranks_by_hand_and_ties_share_their_mean_rank():
    assert st.ranks(TABLE).to_dict(orient="list") == {"a": [1, 2, 1, 1], "b": [2, 1, 2, 2], "c": [3, 3, 3, 3]}
    assert st.mean_ranks(TABLE).to_dict() == {"a": 1.25, "b": 1.75, "c": 3.0}
    tied = pd.DataFrame({"a": [1.0], "b": [1.0], "c": [2.0]})
    assert st.ranks(tied).iloc[0].tolist() == [1.5, 1.5, 3.0]


def test_friedman_by_hand_with_and_without_ties():
    out = st.friedman(TABLE)
    # Demšar eq. 1 by hand: 12*4/(3*4) * (1.25^2 + 1.75^2 + 3^2 - 3*16/4) = 4 * (13.625 - 12) = 6.5; with 2 degrees of
    # freedom the chi-square tail is exp(-x/2); Iman-Davenport F = (4-1) * 6.5 / (4*2 - 6.5) = 13
    assert out["statistic"] == pytest.approx(6.5) and out["p"] == pytest.approx(math.exp(-6.5 / 2))
    assert out["iman_davenport_f"] == pytest.approx(13.0)
    # Tied ranks: eq. 1 gives 0.9 (the value before scipy computed it); the tie correction divides by
    # c = 1 - sum(t^3 - t) / (n k (k^2 - 1)) = 1 - 3*6 / (5*3*8) = 0.85 (three rows with a tie of two)
    tied = pd.DataFrame({"a": [1.0, 2.0, 3.0, 1.0, 2.0], "b": [1.0, 1.0, 4.0, 2.0, 2.0],
                         "c": [3.0, 3.0, 3.0, 3.0, 1.0]})
    assert st.friedman(tied)["statistic"] == pytest.approx(0.9 / 0.85)
    # two families (scipy's test needs three): eq. 1, a sign test in chi-square form: (wins - losses)^2 / n
    two = pd.DataFrame({"mlp": [2.0, 0.5, 4.0, 1.0, 3.0], "xgboost": [1.0, 1.0, 1.0, 2.0, 1.0]})
    assert st.friedman(two)["statistic"] == pytest.approx((2 - 3) ** 2 / 5)
    with pytest.raises(ValueError, match="at least 2 datasets"):
        st.friedman(TABLE.iloc[:1])


def test_iman_davenport_is_undefined_when_every_dataset_ranks_alike():
    same = pd.DataFrame({"mlp": [2.0, 3.0, 4.0], "xgboost": [1.0, 1.0, 1.0]}, index=["d1", "d2", "d3"])
    out = st.friedman(same)
    assert out["statistic"] == pytest.approx(3.0) and math.isnan(out["iman_davenport_p"])  # not a p of 0
    cells = [_cell(d, f, 1, 0.1, v) for d, row in same.iterrows() for f, v in row.items()]
    doc = result("s", BenchConfig(minutes=1), [1], cells, ["mlp", "xgboost"])
    assert math.isnan(doc["aggregate"]["iman_davenport_p"])
    assert "Iman–Davenport F undefined: every dataset ranks the families alike" in report.markdown(doc, [], "pics")


def test_nemenyi_critical_difference_uses_demsars_q_values():
    for k, q in ((2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728)):
        assert st.nemenyi_cd(k, 10) == pytest.approx(q * math.sqrt(k * (k + 1) / 60), abs=2e-3)


def test_holm_and_wilcoxon_holm():
    from scipy import stats

    # by hand: sorted p times (m - i), kept monotone, at most 1
    assert st.holm({"x": 0.01, "y": 0.04, "z": 0.03}) == pytest.approx({"x": 0.03, "y": 0.06, "z": 0.06})
    assert st.holm({"x": 0.01, "y": 0.04, "z": 0.03, "w": 0.5, "v": 0.2}) == pytest.approx(
        {"x": 0.05, "z": 0.12, "y": 0.12, "v": 0.4, "w": 0.5})
    assert st.holm({"a": 0.4, "b": 0.3}) == pytest.approx({"a": 0.6, "b": 0.6})  # 0.4 alone would break the order
    assert st.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0} and st.holm({}) == {}
    rng = np.random.default_rng(0)
    t = pd.DataFrame(rng.uniform(1, 2, size=(8, 3)), columns=["a", "b", "c"])
    t["c"] += 1  # c is worse everywhere
    got = st.wilcoxon_holm(t)
    raw = {(a, b): stats.wilcoxon(t[a], t[b]).pvalue for a, b in [("a", "b"), ("a", "c"), ("b", "c")]}
    assert got == pytest.approx(st.holm(raw))
    assert got[("a", "c")] < 0.05


def test_outcomes_at_the_two_percent_tolerance_and_wins():
    assert st.outcome(1.0, 1.019) == "tie" and st.outcome(1.0, 1.03) == "win" and st.outcome(1.03, 1.0) == "loss"
    t = pd.DataFrame({"mlp": [1.0, 1.01, 2.0], "xgboost": [1.5, 1.0, 1.0]})
    assert st.wins(t) == {"mlp": {"wins": 1, "ties": 1, "losses": 1}, "xgboost": {"wins": 1, "ties": 1, "losses": 1}}
    assert st.normalized(t)["xgboost"].tolist() == pytest.approx([1.5, 1.0, 1.0])


def test_cliques_and_the_cd_diagram(tmp_path):
    mean = pd.Series({"a": 1.2, "b": 1.9, "c": 3.4, "d": 3.5})
    assert st.cliques(mean, 1.0) == [["a", "b"], ["c", "d"]]
    assert st.cliques(mean, 2.5) == [["a", "b", "c", "d"]]
    path = st.cd_diagram(mean, 1.0, tmp_path / "cd.png")
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    summary = st.summary(TABLE)
    assert summary["mean_rank"]["a"] == 1.25 and summary["wins"]["a"] == 3 and 0 < summary["friedman_p"] < 0.05
    # overlapping cliques: the hand-written sweep's output on these ranks, captured before scikit-posthocs drew them
    five = pd.Series({"a": 1.2, "b": 1.9, "c": 3.4, "d": 3.5, "e": 4.0})
    assert st.cliques(five, 0.05) == []
    assert st.cliques(five, 0.6) == [["c", "d"], ["d", "e"]]
    assert st.cliques(five, 1.6) == [["a", "b"], ["b", "c", "d"], ["c", "d", "e"]]
    assert st.cliques(five, 2.3) == [["a", "b", "c", "d"], ["b", "c", "d", "e"]]


def test_cliques_agree_with_scikit_posthocs_nemenyi_test():
    """Two families share a clique exactly when Nemenyi's test (scikit-posthocs' p values, from the table) finds no
    difference at alpha."""
    import scikit_posthocs as sp

    rng = np.random.default_rng(3)  # families apart enough that 1 to 9 pairs differ, with overlapping cliques
    for n, k in ((6, 4), (10, 5), (12, 6), (20, 7)):
        t = pd.DataFrame(rng.normal(size=(n, k)) + np.linspace(0, 3, k), columns=[f"f{i}" for i in range(k)])
        groups = st.cliques(st.mean_ranks(t), st.nemenyi_cd(k, n))
        p = sp.posthoc_nemenyi_friedman(t.to_numpy())
        p.index = p.columns = t.columns
        for a, b in itertools.combinations(t.columns, 2):
            assert any({a, b} <= set(g) for g in groups) == (p.loc[a, b] >= 0.05), (n, k, a, b)


# ---- corruptions --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A generated wine table as ingested, its spec and the search rows (train + valid) of split seed 7."""
    root = tmp_path_factory.mktemp("wine")
    spec = load_spec(SPECS / "wine_red.toml")
    df, _ = ingest(str(messy.wine(root / "w.csv", n=200)), spec)
    parts = split_indices(len(df), 7, 0.6, 0.2)
    return df, spec, np.sort(np.concatenate([parts["train"], parts["valid"]])), parts["test"]


@pytest.mark.parametrize("name", ["missing", "outliers", "label_noise"])
def test_row_corruptions_touch_only_the_search_rows(wine, name):
    df, spec, rows, test = wine
    bad, bad_spec = corrupt(name, df, spec, rows, CORRUPTIONS[name].levels[-1], seed=1)
    changed = ~((bad == df) | (bad.isna() & df.isna())).all(axis=1).to_numpy()
    assert changed.any() and set(np.flatnonzero(changed)) <= set(rows)
    assert bad.iloc[test].equals(df.iloc[test].astype(bad.dtypes.to_dict()))
    assert len(bad) == len(df) and not df.isna().any().any()  # the input is left as it was


def test_missing_cells_are_imputed_by_the_features_step(wine):
    df, spec, rows, _ = wine
    bad, bad_spec = corrupt("missing", df, spec, rows, 0.3, seed=1)
    share = bad.loc[rows, list(spec.inputs)].isna().to_numpy().mean()
    assert 0.2 < share < 0.4
    splits, manifest = make_features(bad, bad_spec, FeaturesConfig(split_seed=7))
    assert set(manifest["imputed"]) == set(spec.inputs) and "alcohol_missing" in manifest["features"]


def test_outliers_scale_values_ten_to_a_hundredfold(wine):
    df, spec, rows, _ = wine
    bad, _ = corrupt("outliers", df, spec, rows, 0.05, seed=2)
    col = "alcohol"
    med = df.loc[rows, col].median()
    hit = bad[col] != df[col]
    ratio = ((bad[col] - med) / (df[col] - med))[hit]
    assert 0.02 < hit.mean() < 0.08 and ratio.between(10, 100).all()


def test_extra_features_are_uninformative_copies_in_every_row(wine):
    df, spec, rows, _ = wine
    bad, bad_spec = corrupt("extra", df, spec, rows, 0.5, seed=3)
    added = [n for n in bad_spec.inputs if n.startswith("noise_")]
    assert len(added) == round(0.5 * len(spec.inputs)) and bad[added].notna().all().all()
    first = spec.inputs[0]  # noise_1 is first's values shuffled within the search rows and within the rest
    assert sorted(bad.loc[rows, "noise_1"]) == sorted(df.loc[rows, first])
    assert abs(np.corrcoef(bad["noise_1"], df["quality"])[0, 1]) < 0.25


def test_exp_is_monotone_and_heavy_tailed(wine):
    df, spec, rows, _ = wine
    bad, _ = corrupt("exp", df, spec, rows, 1.0, seed=4)
    for name in spec.inputs:
        assert (np.argsort(bad[name].to_numpy(), kind="stable") == np.argsort(df[name].to_numpy(),
                                                                              kind="stable")).all()
        assert (bad[name] > 0).all()
    assert corrupt("exp", df, spec, rows, 0.0, seed=4)[0] is df  # level 0: the clean table


def test_corruption_validators_name_the_fault(wine):
    df, spec, rows, _ = wine
    with pytest.raises(ConfigError, match="corruption 'noise' is not one of: missing, outliers"):
        corrupt("noise", df, spec, rows, 0.1, seed=0)
    with pytest.raises(ConfigError, match="corruption missing: level = 1.5 must be between 0 and 1"):
        corrupt("missing", df, spec, rows, 1.5, seed=0)


def test_corrupted_features_keep_the_outer_test_rows_clean(wine):
    df, spec, _, _ = wine
    fc = FeaturesConfig(split_seed=7)
    clean, _ = make_features(df, spec, fc)
    bad, manifest = corrupted_features(df, spec, fc, "label_noise", 0.3)
    assert manifest["corruption"]["name"] == "label_noise"
    assert set(bad["test"][ROW]) == set(clean["test"][ROW])
    assert set(bad["test"][ROW]).isdisjoint(set(bad["train"][ROW]) | set(bad["valid"][ROW]))
    # the test targets are the published ones (same transform "none"); train's are not all
    assert bad["test"]["quality"].tolist() == clean["test"]["quality"].tolist()
    assert bad["train"]["quality"].tolist() != clean["train"]["quality"].tolist()


def test_the_robust_map_is_median_and_iqr_of_train():
    x = np.array([[1.0], [2.0], [3.0], [4.0], [1000.0]])
    m = fit_numeric(x, (0,), "robust")
    assert m.center[0] == 3.0 and m.scale[0] == 2.0
    assert map_numeric(m, np.array([[5.0]]))[0, 0] == pytest.approx(1.0)


# ---- suite files ---------------------------------------------------------------------------------------------------


def test_a_generated_suite_loads_and_its_sources_check(tmp_path):
    suite = load_suite(write_suite(tmp_path))
    assert [d.name for d in suite.datasets] == ["airfoil", "wine_red", "auto_mpg"]
    check_sources(suite.datasets)
    assert len(suite.pick(quick=True)) == 3
    (tmp_path / "raw" / "airfoil.dat").write_text("changed\n")
    with pytest.raises(SourceError, match="airfoil: source .*airfoil.dat has sha256 .*, the suite expects"):
        check_sources(suite.datasets)


def test_the_dev_suite_lists_every_shipped_spec():
    suite = load_suite(ROOT / "benchmarks" / "suites" / "dev.toml")
    assert {Path(d.spec).name for d in suite.datasets} == {f"{n}" for n in messy.SUITE} | {"seoul_bike.toml"}
    assert {Path(d.source).name for d in suite.datasets if "suite" in d.source} == {
        Path(f).name for f, _ in messy.SUITE.values()}
    assert len(suite.pick(quick=True)) == 3


def test_the_mess_and_seoul_suites_are_dev_suite_datasets_as_they_are_there():
    suites = ROOT / "benchmarks" / "suites"
    dev = {d.name: d for d in load_suite(suites / "dev.toml").datasets}
    mess, seoul = load_suite(suites / "mess.toml"), load_suite(suites / "seoul.toml")
    assert mess.name == "mess" and [d.name for d in mess.pick(quick=True)] == [d.name for d in mess.datasets]
    assert seoul.name == "seoul" and [d.name for d in seoul.datasets] == ["seoul_bike"]
    for d in [*mess.datasets, *seoul.datasets]:  # same spec, source and checksum as the dev suite's
        assert (d.spec, d.source, d.sha256) == (dev[d.name].spec, dev[d.name].source, dev[d.name].sha256)


@pytest.mark.parametrize("body, message", [
    ('name = "x"\n', "no \\[\\[datasets\\]\\]"),
    ('colour = 1\n[[datasets]]\nname = "a"\n', "unknown key\\(s\\) colour"),
    ('[[datasets]]\nname = "a"\nspec = "nope.toml"\nsource = "a"\nsha256 = "' + "0" * 64 + '"\n',
     "datasets\\[1\\] \\(a\\): spec = 'nope.toml': no such file"),
    ('[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\nsha256 = "abc"\n',
     "sha256 = 'abc' is not 64 lowercase hex digits"),
    ('[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\n', "datasets\\[1\\]: missing key 'sha256'"),
    ('[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\nsha256 = "' + "0" * 64 + '"\nextra = 1\n',
     "datasets\\[1\\]: unknown key\\(s\\) extra"),
    ('[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\nsha256 = "' + "0" * 64 + '"\n'
     '[datasets.overrides]\nmlp = { lr = 1 }\n', "overrides may hold only the sections features, search"),
    ('[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\nsha256 = "' + "0" * 64 + '"\n'
     '[datasets.overrides]\nsearch = { max_width = 4 }\n', "overrides: search.max_width = 4"),
    ('quick = ["b"]\n[[datasets]]\nname = "a"\nspec = "SPEC"\nsource = "a"\nsha256 = "' + "0" * 64 + '"\n',
     "quick = \\['b'\\] must list names of the suite's datasets"),
    ('name = "has space"\n[[datasets]]\nname = "a"\n', "name = 'has space'"),
])
def test_suite_validators_name_the_fault(tmp_path, body, message):
    path = tmp_path / "s.toml"
    path.write_text(body.replace("SPEC", str(SPECS / "airfoil.toml")))
    with pytest.raises(ConfigError, match=message):
        load_suite(path)


@pytest.mark.parametrize("section, message", [
    ({"outer_seeds": 1}, "bench.outer_seeds = 1: must be at least 2"),
    ({"minutes": 0, "trials": 0}, "bench.trials = 0: with no trial limit, set bench.minutes"),
    ({"runner": "dask"}, "bench.address = '': runner = dask needs the scheduler's address"),
    ({"preprocessing": "standard,zscore"}, "bench.preprocessing = 'zscore' is not one of"),
    ({"minutes": -1}, "bench.minutes = -1.0: must not be negative"),
])
def test_bench_settings_validators_name_the_fault(section, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"bench": section})


# ---- the shared search loop -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory) -> str:
    return airfoil_features(tmp_path_factory.mktemp("loop"), n=150)


def _space() -> SearchConfig:
    return SearchConfig(study="t", trials=4, xgb_rounds=30, xgb_early_stopping=5, max_width=32, max_depth=2,
                        max_ensemble=1, mlp_epochs=5, mlp_patience=2)


def test_the_loop_runs_trials_on_a_pool_to_the_trial_budget(tmp_path, features_dir):
    s = _space()
    study, budget = open_study(s, "xgboost", open_storage(str(tmp_path / "j.log")), False, 0)
    seen = []
    with ThreadPoolExecutor(2) as pool:
        out = run_family("xgboost", study, budget, s, 2, 1,
                         lambda label, base, specs: pool.submit(lambda: [run_xgboost(features_dir, specs[0])]),
                         lambda pending: next(iter(wait(pending, return_when=FIRST_COMPLETED).done)),
                         record=lambda fam, t, r, e, elapsed, best: seen.append((t.number, r is not None)))
    assert out.told == 4 and sorted(seen) == [(i, True) for i in range(4)]
    assert study.best_value == out.best and study.user_attrs[SPENT] == pytest.approx(out.spent)
    assert all(t.user_attrs["cpu_seconds"] > 0 for t in study.trials)


def test_the_cpu_clock_stops_once_the_trials_cpu_seconds_reach_the_budget(tmp_path, features_dir):
    s = dataclasses.replace(_space(), trials=0, minutes=0.3 / 60, xgb_rounds=200)  # 0.3 CPU-seconds
    study, budget = open_study(s, "xgboost", open_storage(str(tmp_path / "j.log")), False, 0)
    out = run_family("xgboost", study, budget, s, 1, 1,
                     lambda label, base, specs: Inline(lambda: [run_xgboost(features_dir, specs[0])]), first_of,
                     clock="cpu")
    cpu = [r["cpu_seconds"] for r in out.results]
    assert out.spent == pytest.approx(sum(cpu)) and out.spent >= 0.3 and sum(cpu[:-1]) < 0.3
    with pytest.raises(ValueError, match="clock 'gpu'"):
        run_family("xgboost", study, budget, s, 1, 1, None, first_of, clock="gpu")


def test_one_failure_is_survived_and_five_in_a_row_end_the_search(tmp_path, features_dir):
    s = dataclasses.replace(_space(), trials=8)
    calls = []

    def flaky(label, base, specs):
        calls.append(label)
        if len(calls) == 2 or len(calls) > 3:
            return Inline(lambda: [run_xgboost(features_dir + "-missing", specs[0])])
        return Inline(lambda: [run_xgboost(features_dir, specs[0])])

    study, budget = open_study(s, "xgboost", open_storage(str(tmp_path / "j.log")), False, 0)
    with pytest.raises(TabduelError, match="xgboost: 5 trials in a row failed"):
        run_family("xgboost", study, budget, s, 1, 1, flaky, first_of)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"] + ["FAIL"] * 5


# ---- cells -----------------------------------------------------------------------------------------------------------


def test_family_variants_and_budget_labels():
    assert variant("mlp-ple") == ("mlp", ("ple",), ("standard",))
    assert variant("mlp-robust")[2] == ("robust",) and "ple" not in variant("mlp-robust")[1]
    assert bases_of("xgboost") == ("ordinal",) and bases_of("mlp-ple") == ("onehot",)
    assert budget_label(BenchConfig(minutes=5)) == "300s" and budget_label(BenchConfig(minutes=0.1, trials=3)) == \
        "6s-3t"
    with pytest.raises(ConfigError, match=r"^bench family 'svm' is not one of: mlp, xgboost, realmlp, tabm, "
                       r"peer_realmlp, peer_tabm, peer_lgbm, peer_catboost, mlp_portfolio, mlp-<preprocessing>, "
                       r"realmlp-<robust\|standard\|quantile>$"):
        variant("svm")
    assert variant("realmlp-quantile") == ("realmlp", ENCODINGS, None)
    with pytest.raises(ConfigError, match="^bench family 'realmlp-clip' is not one of"):
        variant("realmlp-clip")


class Lines:
    """A logger that keeps its lines."""

    def __init__(self) -> None:
        self.info_lines: list[str] = []
        self.warning_lines: list[str] = []

    def info(self, msg: str) -> None:
        self.info_lines.append(msg)

    def warning(self, msg: str) -> None:
        self.warning_lines.append(msg)


def test_a_cells_progress_is_one_line_a_minute():
    now = [0.0]
    log = Lines()
    every = Every(log, 60.0, clock=lambda: now[0])
    for t, msg in [(0, "budget"), (10, "trial 0"), (59, "trial 1"), (61, "trial 2"), (100, "trial 3"), (121, "t4")]:
        now[0] = t
        every.info(msg)
    every.warning("failed")
    assert log.info_lines == ["budget", "trial 2", "t4"]
    assert log.warning_lines == ["failed"]


def test_a_cell_searches_on_train_valid_and_scores_test_once(tmp_path, features_dir):
    cfg = Config.from_dict({"bench": {"trials": 2, "minutes": 0}, "search": {"xgb_rounds": 30,
                                                                            "xgb_early_stopping": 5}})
    cell = Cell("airfoil", "xgboost", 4751)
    log = Lines()
    r = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "j.log", log=log)
    assert log.info_lines[0].startswith("xgboost: budget 2 trials;") and len(log.info_lines) == 3  # + 2 trial lines
    assert log.info_lines[-1].startswith("xgboost trial 1: valid MSE ")
    assert r["trials"] == 2 and r["tested"] == "selected"  # the selected trial's own booster, not a refit
    assert r["tested_valid_mse"] == pytest.approx(r["best_valid_mse"], abs=1e-6)
    assert r["test_mse"] > 0 and r["test_rmse_orig"] == pytest.approx(math.sqrt(r["test_mse_orig"]))
    again = run_cell(cell, {"ordinal": features_dir}, cfg, tmp_path / "j.log")  # the stored study: nothing to add
    assert again["trials"] == 2 and again["test_mse"] == pytest.approx(r["test_mse"])
    assert len(optuna.load_study(study_name="cell-xgboost", storage=open_storage(str(tmp_path / "j.log"))).trials) \
        == 2


def test_a_preprocessing_variant_tests_with_its_own_numeric_map(tmp_path, features_dir):
    # mlp-quantile's space has one map, so its trials carry no 'numeric' param: the refit must still use quantile
    cfg = Config.from_dict({"bench": {"trials": 2, "minutes": 0},
                            "search": {"mlp_epochs": 6, "mlp_max_seconds": 0, "max_width": 32, "max_ensemble": 2}})
    cell = Cell("airfoil", "mlp-quantile", 4751)
    s = cell_search_config(cfg, cell, 1)
    spec = search_family("mlp").rebuild(dict(_MLP_PARAMS), s, 1)
    assert spec.encoding.numeric == "quantile"
    r = run_cell(cell, {b: features_dir for b in bases_of("mlp-quantile")}, cfg, tmp_path / "j.log")
    assert "numeric" not in r["best_params"]
    assert r["tested"] == "selected" and r["tested_valid_mse"] == pytest.approx(r["best_valid_mse"], abs=1e-6)


_MLP_PARAMS = {"activation": "relu", "batch_size": 64, "depth": 1, "dropout": 0.0, "encoding": "ordinal",
               "ensemble": 1, "lr": 0.01, "optimizer": "adam", "weight_decay": 1e-5, "width": 16}


# ---- the best tabduel MLP, chosen by valid MSE ------------------------------------------------------------------


def _cell(dataset, family, seed, valid, test, corruption="none"):
    return {"cell": {"dataset": dataset, "family": family, "seed": seed, "corruption": corruption, "level": 0.0},
            "best_valid_mse": valid, "test_mse": test, "test_r2": 0.5, "test_r2_orig": 0.5, "test_rmse_orig": 1.0,
            "cpu_seconds": 300.0, "wall_seconds": 310.0, "trials": 10}


def test_own_mlps_are_the_core_torch_families():
    assert OWN_MLPS == ("mlp", "realmlp", "tabm")


def test_the_best_mlp_is_chosen_by_valid_mse_never_by_test():
    cells = [_cell("a", "mlp", 1, valid=0.10, test=0.50), _cell("a", "realmlp", 1, valid=0.20, test=0.05),
             _cell("a", "mlp", 2, valid=0.30, test=0.40), _cell("a", "realmlp", 2, valid=0.10, test=0.30),
             _cell("a", "xgboost", 1, valid=0.1, test=0.40), _cell("a", "xgboost", 2, valid=0.1, test=0.40),
             _cell("a", "peer_realmlp", 1, valid=0.1, test=0.44), _cell("a", "peer_realmlp", 2, valid=0.1, test=0.44),
             _cell("a", "mlp", 3, valid=0.1, test=0.1, corruption="missing")]  # corrupted cells are never chosen
    doc = result("s", BenchConfig(minutes=5), [1, 2], cells, ["mlp", "realmlp", "xgboost", "peer_realmlp"])
    best = doc["datasets"]["a"][BEST_MLP]
    assert best["test_mse"] == [0.50, 0.30] and best["chosen"] == ["mlp", "realmlp"]  # not realmlp's 0.05 on seed 1
    assert best["cpu_seconds"] == [600.0, 600.0] and best["trials"] == [20, 20]
    g = doc["best_mlp"]["datasets"]["a"]
    assert g["best_mlp"] == pytest.approx(0.40) and g["outcome_vs_xgboost"] == "tie"
    assert g["gap_vs_realmlp_td"] == pytest.approx(0.40 / 0.44 - 1) and g["within_tolerance_of_realmlp_td"]
    assert doc["best_mlp"]["half_or_more"] and doc["best_mlp"]["never_worse_than_realmlp_td_beyond_tolerance"]
    assert BEST_MLP not in doc["aggregate"]["mean_rank"]  # made of the ranked families, so not ranked with them
    text = report.markdown(doc, [], "pics")
    assert "| a | 0.4 | mlp, realmlp | 0.4 | +0.0% | tie | 0.44 | -9.1% |" in text
    assert "At or within 2% of XGBoost on 1 of 1 datasets (half or more: yes)" in text


def test_each_family_meets_xgboost_per_dataset_on_t_and_on_t_plus_e():
    def cell(dataset, family, seed, test, ens):
        return {**_cell(dataset, family, seed, 0.1, test), "ensemble_test_mse": ens}

    cells = [cell("a", "mlp_portfolio", s, 0.30 + s / 100, 0.20) for s in (1, 2, 3)]  # T above, T+E below XGBoost
    cells += [cell("a", "xgboost", s, 0.25, 0.25 + s / 100) for s in (1, 2, 3)]
    cells += [cell("b", "mlp_portfolio", s, 0.50, 0.50) for s in (1, 2, 3)]  # T ties within 2%, T+E loses
    cells += [cell("b", "xgboost", s, 0.495, 0.40) for s in (1, 2, 3)]
    doc = result("s", BenchConfig(minutes=1), [1, 2, 3], cells, ["mlp_portfolio", "xgboost"])
    a = doc["datasets"]["a"]["mlp_portfolio"]["vs_xgboost"]
    assert a["T"]["outcome"] == "loss" and a["T"]["wins"] == 0 and a["T"]["n"] == 3
    assert a["T+E"]["outcome"] == "win" and a["T+E"]["wins"] == 3 and a["T+E"]["at_or_below"]
    b = doc["datasets"]["b"]["mlp_portfolio"]["vs_xgboost"]
    assert b["T"]["outcome"] == "tie" and not b["T"]["at_or_below"] and b["T+E"]["outcome"] == "loss"
    g = doc["vs_xgboost"]["mlp_portfolio"]
    assert g["T"] == {"datasets": 2, "at_or_below": 0, "within_tolerance_or_below": 1}
    assert g["T+E"] == {"datasets": 2, "at_or_below": 1, "within_tolerance_or_below": 1}
    text = report.markdown(doc, [], "pics")
    assert "| a | mlp_portfolio | 0.07 | 0.25 | 0 of 3 | loss | -0.07 | 0.25 | 3 of 3 | win |" in text
    assert "- mlp_portfolio: mean test MSE at or below XGBoost's on 0 of 2 datasets (T), 1 of 2 (T+E" in text


def test_a_best_mlp_worse_than_the_bars_is_reported_as_such():
    cells = [_cell("a", f, s, 0.1, t) for s in (1, 2) for f, t in (("mlp", 0.5), ("tabm", 0.6), ("xgboost", 0.4),
                                                                    ("peer_realmlp", 0.45))]
    doc = result("s", BenchConfig(minutes=5), [1, 2], cells, ["mlp", "tabm", "xgboost", "peer_realmlp"])
    g = doc["best_mlp"]
    assert g["datasets"]["a"]["outcome_vs_xgboost"] == "loss" and not g["half_or_more"]
    assert g["never_worse_than_realmlp_td_beyond_tolerance"] is False


def test_one_mlp_family_makes_no_best_mlp():
    cells = [_cell("a", f, s, 0.1, 0.4) for s in (1, 2) for f in ("mlp", "xgboost")]
    doc = result("s", BenchConfig(minutes=5), [1, 2], cells, ["mlp", "xgboost"])
    assert BEST_MLP not in doc["datasets"]["a"] and "best_mlp" not in doc


def test_a_partial_report_keeps_only_the_finished_datasets(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_partial", ROOT / "benchmarks" / "bench_partial.py")
    bench_partial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_partial)
    suite = write_suite(tmp_path / "suite")  # airfoil, wine_red, auto_mpg
    first, second = tmp_path / "run" / "cells", tmp_path / "seeded" / "cells"
    for folder, d, f, s, test in [(second, "airfoil", "mlp", 1, 0.5), (second, "airfoil", "mlp", 2, 0.5),
                                  (first, "airfoil", "tabm", 1, 0.3), (first, "airfoil", "tabm", 2, 0.3),
                                  (second, "airfoil", "xgboost", 1, 0.4), (second, "airfoil", "xgboost", 2, 0.4),
                                  (first, "wine_red", "mlp", 1, 0.5), (first, "wine_red", "mlp", 2, 0.5),
                                  (first, "wine_red", "tabm", 1, 0.3), (first, "wine_red", "xgboost", 1, 0.4),
                                  (first, "wine_red", "xgboost", 2, 0.4), (second, "wine_red", "tabm", 1, 9.9)]:
        r = {**_cell(d, f, s, 0.1, test), "id": f"{d}/none/{f}-s{s}", "budget_cpu_seconds": 300.0}
        (folder / d / "none").mkdir(parents=True, exist_ok=True)
        (folder / d / "none" / f"{f}-s{s}.json").write_text(json.dumps(r))
    out = tmp_path / "partial.json"
    bench_partial.main(["--cells", str(first), str(second), "--families", "mlp,tabm,xgboost", "--suite", str(suite),
                        "--seeds", "1,2", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["partial"] and doc["datasets_finished"] == ["airfoil"] and doc["cells"] == 6
    assert doc["datasets_to_run"] == {"wine_red": ["tabm-s2"],
                                      "auto_mpg": [f"{f}-s{s}" for f in ("mlp", "tabm", "xgboost") for s in (1, 2)]}
    assert set(doc["datasets"]) == {"airfoil"} and doc["budget"]["cpu_seconds_per_family"] == pytest.approx(300)
    assert doc["best_mlp"]["datasets"]["airfoil"]["best_mlp"] == pytest.approx(0.3)  # tabm, chosen on valid
    with pytest.raises(SystemExit, match="no dataset has every family and seed finished"):
        bench_partial.main(["--cells", str(first), "--families", "mlp,tabm,xgboost", "--suite", str(suite),
                            "--seeds", "1,2", "--out", str(tmp_path / "none.json")])
    assert not (tmp_path / "none.json").exists()


def test_a_partial_report_puts_one_family_run_two_ways_side_by_side(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_partial", ROOT / "benchmarks" / "bench_partial.py")
    bench_partial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_partial)
    suite = write_suite(tmp_path / "suite", ("airfoil",))
    base, learned = tmp_path / "base" / "cells", tmp_path / "learned" / "cells"
    for folder, f, s, test in [(base, "mlp_portfolio", 1, 0.5), (base, "mlp_portfolio", 2, 0.5),
                               (base, "xgboost", 1, 0.4), (base, "xgboost", 2, 0.4),
                               (learned, "mlp_portfolio", 1, 0.3), (learned, "mlp_portfolio", 2, 0.3)]:
        r = {**_cell("airfoil", f, s, 0.1, test), "id": f"airfoil/none/{f}-s{s}", "budget_cpu_seconds": 60.0}
        (folder / "airfoil" / "none").mkdir(parents=True, exist_ok=True)
        (folder / "airfoil" / "none" / f"{f}-s{s}.json").write_text(json.dumps(r))
    out = tmp_path / "both.json"
    bench_partial.main(["--cells", str(learned), str(base), "--label", f"{learned}:mlp_portfolio=mlp_portfolio_lodo",
                        "--families", "mlp_portfolio,mlp_portfolio_lodo,xgboost", "--suite", str(suite),
                        "--seeds", "1,2", "--out", str(out)])
    fams = json.loads(out.read_text())["datasets"]["airfoil"]
    assert fams["mlp_portfolio"]["test_mse_mean"] == pytest.approx(0.5)  # the base folder's, not overwritten
    assert fams["mlp_portfolio_lodo"]["test_mse_mean"] == pytest.approx(0.3)
    with pytest.raises(SystemExit, match="is not DIR:FAMILY=LABEL"):
        bench_partial.parse_labels(["mlp_portfolio"])
    with pytest.raises(SystemExit, match="--label names .*elsewhere, which is not among --cells"):
        bench_partial.main(["--cells", str(base), "--label", f"{tmp_path / 'elsewhere'}:mlp_portfolio=x",
                            "--families", "mlp_portfolio,xgboost", "--suite", str(suite), "--seeds", "1,2",
                            "--out", str(out)])


def test_t_and_t_plus_e_are_compared_over_the_seeds_both_have():
    a = {"seeds": [1, 2, 3], "test_mse": [1.0, 1.0, 1.0], "ensemble_test_mse": [0.5, math.nan, 9.0]}
    b = {"seeds": [1, 2, 3], "test_mse": [2.0, 2.0, 2.0], "ensemble_test_mse": [1.0, 1.0, math.nan]}
    v = versus(a, b)
    assert v["T"]["n"] == 3 and v["T"]["mean"] == pytest.approx(1.0)
    assert v["T+E"]["mean"] == pytest.approx(0.5) and v["T+E"]["against"] == pytest.approx(1.0)  # seed 1 only


def test_a_named_bench_resumes_only_with_its_own_settings():
    from tabduel.flows.bench import bench_settings, check_same_bench

    cfg = Config.from_dict({"bench": {"minutes": 1, "families": ["mlp_portfolio", "xgboost"], "name": "b"}})
    check_same_bench({}, cfg, "b")  # a state from before settings were kept
    check_same_bench({"settings": bench_settings(cfg)}, cfg, "b")
    other = Config.from_dict({"bench": {"minutes": 5, "families": ["mlp_portfolio", "xgboost"], "name": "b"}})
    with pytest.raises(TabduelError, match=r"^bench 'b' began with other settings \(minutes 1.0 -> 5.0\)"):
        check_same_bench({"settings": bench_settings(cfg)}, other, "b")
    before_bagging = {k: v for k, v in bench_settings(cfg).items()  # a bench begun before these were kept
                      if k not in ("bagging", "mlp_batch", "realmlp_batch")}
    check_same_bench({"settings": before_bagging}, cfg, "b")  # resumes as unbagged
    bagged = Config.from_dict({"bench": {"minutes": 1, "families": ["mlp_portfolio", "xgboost"], "name": "b",
                                         "bagging": 5}})
    with pytest.raises(TabduelError, match=r"^bench 'b' began with other settings \(bagging 0 -> 5\)"):
        check_same_bench({"settings": before_bagging}, bagged, "b")
    batched = Config.from_dict({"bench": {"minutes": 1, "families": ["mlp_portfolio", "xgboost"], "name": "b"},
                                "search": {"realmlp_batch": 4}})
    with pytest.raises(TabduelError, match=r"\(realmlp_batch 1 -> 4\)"):
        check_same_bench({"settings": before_bagging}, batched, "b")


def test_a_bench_can_be_named():
    assert bench_name("dev", BenchConfig(minutes=1, name="bench-dev-60s-lodo")) == "bench-dev-60s-lodo"
    assert bench_name("dev", BenchConfig(minutes=1)) == "bench-dev-60s"
    with pytest.raises(ConfigError, match=r"^bench.name = 'a/b': use letters, digits"):
        BenchConfig(name="a/b")


# ---- hypothesis 2: does the gap grow, and does preprocessing shrink it? ------------------------------------------


def _mess(dataset, family, seed, corruption, level, test):
    r = _cell(dataset, family, seed, 0.1, test, corruption)
    r["cell"]["level"] = level
    return r


def test_corruption_tests_pair_the_gaps_by_dataset_and_seed():
    cells = []
    for i, (ds, seed) in enumerate([("a", 1), ("a", 2), ("b", 1), ("b", 2)]):
        cells += [_mess(ds, "xgboost", seed, "none", 0.0, 1.0), _mess(ds, "xgboost", seed, "extra", 1.0, 2.0),
                  _mess(ds, "mlp-standard", seed, "none", 0.0, 1.1),        # gap 0.1 clean
                  _mess(ds, "mlp-standard", seed, "extra", 1.0, 3.0 + i),   # gap 0.5 + i/2 at the top level
                  _mess(ds, "mlp-ple", seed, "none", 0.0, 1.2),             # gap 0.2 clean
                  _mess(ds, "mlp-ple", seed, "extra", 1.0, 2.2 if i else 4.0)]  # gap 0.1, but 1.0 on the first pair
    doc = result("s", BenchConfig(minutes=5, corrupt=("extra",)), [1, 2], cells,
                 ["mlp-standard", "mlp-ple", "xgboost"])
    t = doc["corruption_tests"]["extra"]
    assert t["level"] == 1.0 and t["reference"] == "mlp-standard"
    g = t["growth"]["mlp-standard"]  # 0.4, 0.9, 1.4, 1.9: all four up, so the exact one-sided p is 1/16
    assert g["mean"] == pytest.approx(1.15) and g["positive"] == 4 and g["pairs"] == 4
    assert g["p_greater"] == pytest.approx(1 / 16)
    ple = t["growth"]["mlp-ple"]  # 0.8, -0.1, -0.1, -0.1
    assert ple["mean"] == pytest.approx(0.125) and ple["positive"] == 1
    below = t["below_reference"]["mlp-ple"]  # standard's gap minus ple's: -0.5, 0.9, 1.4, 1.9
    assert below["mean"] == pytest.approx(0.925) and below["positive"] == 3
    assert below["p_greater"] == pytest.approx(2 / 16)
    assert "mlp-standard" not in t["below_reference"]
    text = report.markdown(doc, [], "pics")
    assert g["p_holm"] == pytest.approx(3 / 16) and below["p_holm"] == pytest.approx(2 * 2 / 16)  # Holm over 3 tests
    assert g["ci95"] == [pytest.approx(0.65), pytest.approx(1.65)]  # the bootstrap's percentiles of 4 pairs' means
    assert "| extra | 1 | mlp-ple | 0.125 | [" in text
    assert "| extra | 1 | mlp-standard | 1.15 | [0.65, 1.65] | 4/4 | 0.188 | (reference) |" in text


def test_corruption_tests_leave_out_a_pair_without_its_xgboost_cell():
    cells = [_mess("a", "xgboost", 1, "none", 0.0, 1.0), _mess("a", "mlp-standard", 1, "none", 0.0, 1.0),
             _mess("a", "mlp-standard", 1, "missing", 0.3, 2.0)]  # no xgboost cell at missing 0.3
    doc = result("s", BenchConfig(minutes=5, corrupt=("missing",)), [1], cells, ["mlp-standard", "xgboost"])
    assert "missing" not in doc["corruption_tests"]


def test_a_partial_corruption_report_needs_every_condition_of_a_dataset(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_partial", ROOT / "benchmarks" / "bench_partial.py")
    bench_partial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_partial)
    suite = write_suite(tmp_path / "suite")  # airfoil, wine_red, auto_mpg
    cells = tmp_path / "cells"
    cells.mkdir()
    rows = [(d, f, s, c, lv) for d in ("airfoil", "wine_red") for f in ("xgboost", "realmlp-robust") for s in (1, 2)
            for c, lv in (("none", 0.0), ("exp", 0.5), ("exp", 1.0))]
    rows.remove(("wine_red", "realmlp-robust", 2, "exp", 1.0))  # wine_red lacks one corrupted cell
    for i, (d, f, s, c, lv) in enumerate(rows):
        r = {**_mess(d, f, s, c, lv, 1.0 + (f != "xgboost") * lv), "id": f"{d}/{c}/{f}-s{s}-{i}",
             "budget_cpu_seconds": None, "budget_trials": 1}
        (cells / f"{i}.json").write_text(json.dumps(r))
    out = tmp_path / "partial.json"
    assert bench_partial.main(["--cells", str(cells), "--families", "xgboost,realmlp-robust", "--suite", str(suite),
                               "--seeds", "1,2", "--corrupt", "exp", "--corrupt-family", "realmlp",
                               "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["datasets_finished"] == ["airfoil"] and doc["datasets_to_run"]["wine_red"] == ["exp-1/realmlp-robust-s2"]
    assert doc["budget"]["trials"] == 1 and doc["corruption"]["exp"]["realmlp-robust"]["1"]["gap_mean"] == 1.0
