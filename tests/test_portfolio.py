"""mlp_portfolio: tabduel's MLP families searched within one budget from a portfolio, and the portfolio learned from
bench cells (real cells: Optuna, torch, Parquet)."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from benchsuite import airfoil_features

from tabduel.bench.cells import TRIAL_LOG_INLINE_BYTES, Cell, bases_of, cell_search_config, run_cell, write_cell
from tabduel.cli import main
from tabduel.infra.config import MLP_PORTFOLIO, SearchConfig
from tabduel.infra.errors import ConfigError
from tabduel.infra.store import sha256_file
from tabduel.search import portfolio
from tabduel.search.families import members_of, search_family
from tabduel.search.space import realmlp_defaults, tabm_defaults
from tabduel.search.union import FAMILY, MemberSpec, joined, split
from tabduel.settings import Config

SMALL = dict(realmlp_epochs=6, tabm_epochs=6, tabm_k=2, mlp_epochs=6, max_width=32, max_ensemble=2)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("portfolio")
    return {b: airfoil_features(root, 500, b) for b in bases_of(MLP_PORTFOLIO)}


def _bench(minutes: float = 0.0, trials: int = 0, **search) -> Config:
    return Config.from_dict({"bench": {"minutes": minutes, "trials": trials, "families": [MLP_PORTFOLIO, "xgboost"]},
                             "search": {**SMALL, **search}})


def test_a_cell_tries_the_portfolio_first_then_any_member_and_tests_what_it_selected(tmp_path, features):
    r = run_cell(Cell("airfoil", MLP_PORTFOLIO, 4751), features, _bench(trials=5), tmp_path / "j.log")
    log = r["trial_log"]
    assert [t["params"] for t in log[:2]] == [joined("realmlp", realmlp_defaults()), joined("tabm", tabm_defaults())]
    assert [t["first"] for t in log] == [True, True, False, False, False]
    assert all(t["params"][FAMILY] in ("realmlp", "tabm", "mlp") for t in log)
    assert r["tested"] == "selected" and r["tested_valid_mse"] == pytest.approx(r["best_valid_mse"], abs=1e-6)
    assert r["best_params"][FAMILY] in ("realmlp", "tabm", "mlp")
    complete = [t for t in log if t["state"] == "complete"]
    assert min(t["valid_mse"] for t in complete) == pytest.approx(r["best_valid_mse"])
    assert math.isfinite(r["ensemble_test_mse"]) and r["ensemble_valid_mse"] <= r["best_valid_mse"] + 1e-9
    assert r["portfolio"]["file"] == "shipped" and r["portfolio"]["provenance"]["kind"] == "defaults"


MLP_CONFIG = {"activation": "relu", "batch_size": 64, "depth": 2, "dropout": 0.0, "encoding": "ordinal",
              "ensemble": 1, "lr": 0.01, "optimizer": "adam", "weight_decay": 1e-5, "width": 32}


def test_one_budget_covers_every_member(tmp_path, features):
    """A portfolio of one config per member, each of which would train for up to 60 CPU-s, in a 6-CPU-s budget:
    the first two stop at their share (the budget left), and the cell keeps its one budget."""
    path = _write(tmp_path / "p.json", {"configs": [{"family": "mlp", "params": MLP_CONFIG},
                                                    {"family": "tabm", "params": tabm_defaults()},
                                                    {"family": "realmlp", "params": realmlp_defaults()}]})
    long = dict(realmlp_epochs=100_000, realmlp_max_seconds=2, tabm_epochs=100_000, tabm_patience=100_000,
                tabm_max_seconds=2, mlp_epochs=100_000, mlp_patience=100_000, mlp_max_seconds=2, portfolio=path)
    r = run_cell(Cell("airfoil", MLP_PORTFOLIO, 4751), features, _bench(minutes=0.1, **long), tmp_path / "j.log")
    assert r["budget_cpu_seconds"] == pytest.approx(6.0) and r["cpu_seconds"] <= 6.0 * 1.02 + 2
    members = [t["params"][FAMILY] for t in r["trial_log"]]
    assert members[:3] == ["mlp", "tabm", "realmlp"] and r["tested"] == "selected"
    assert r["portfolio"]["file"] == path and r["portfolio"]["sha256"]


def test_a_union_trial_rebuilds_as_its_members_own_trial():
    s = SearchConfig(study="t", **SMALL)
    params = joined("tabm", tabm_defaults())
    assert split(params) == ("tabm", tabm_defaults())
    spec = search_family(MLP_PORTFOLIO).rebuild(params, s, 1)
    assert spec == MemberSpec("tabm", search_family("tabm").rebuild(tabm_defaults(), s, 1))
    assert search_family(MLP_PORTFOLIO).base(spec) == "ordinal"
    assert search_family(MLP_PORTFOLIO).cap(spec, 2.0).spec.max_seconds == 2.0


def test_members_params_of_one_name_stay_apart_in_one_study():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    fam, s = search_family(MLP_PORTFOLIO), SearchConfig(study="t")
    members = set()
    for _ in range(12):
        trial = study.ask()
        spec = fam.suggest(trial, s, 1, ("ordinal",))
        members.add(spec.family)
        assert all(k == FAMILY or k.startswith(spec.family + ".") for k in trial.params)
        study.tell(trial, 1.0)
    assert members == {"realmlp", "tabm", "mlp"}


def test_the_shipped_portfolio_rebuilds_in_its_members_spaces():
    portfolio.check_portfolio("", members_of(MLP_PORTFOLIO), SearchConfig(study="t"))
    assert search_family(MLP_PORTFOLIO).first(SearchConfig(study="t"))[0] == joined("realmlp", realmlp_defaults())


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(path)


def test_a_portfolio_that_is_not_json_names_its_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"p.json: line 2, column 1: not JSON"):
        portfolio.load_portfolio(_write(tmp_path / "p.json", '{"configs": [\n'))


def test_a_portfolio_that_is_not_utf8_names_the_byte(tmp_path):
    (tmp_path / "p.json").write_bytes(b'{"configs": "\xe9"}')
    with pytest.raises(ConfigError, match=r"p.json: byte 13: not UTF-8 text$"):
        portfolio.load_portfolio(tmp_path / "p.json")


def test_a_portfolio_is_described_by_the_sha256_of_its_file(tmp_path):
    path = _write(tmp_path / "p.json", portfolio.SHIPPED.read_text() + "\n")  # the same configs, other bytes
    d = portfolio.describe(path)
    assert d["file"] == path and d["sha256"] == sha256_file(path) != portfolio.describe()["sha256"]
    assert portfolio.describe()["sha256"] == sha256_file(portfolio.SHIPPED)


def test_a_missing_portfolio_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^search.portfolio = '.*nope.json': cannot read it"):
        portfolio.load_portfolio(tmp_path / "nope.json")


def test_a_portfolio_without_configs_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"no 'configs' list"):
        portfolio.load_portfolio(_write(tmp_path / "p.json", {"configs": []}))


def test_a_portfolio_config_of_another_family_is_named(tmp_path):
    path = _write(tmp_path / "p.json", {"configs": [{"family": "xgboost", "params": {}}]})
    with pytest.raises(ConfigError, match=r"configs\[0\]: family 'xgboost' is not one of: realmlp, tabm, mlp"):
        portfolio.check_portfolio(path, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))


def test_a_portfolio_config_outside_its_space_is_named(tmp_path):
    bad = {**realmlp_defaults(), "hidden": "7x7"}
    path = _write(tmp_path / "p.json", {"configs": [{"family": "tabm", "params": tabm_defaults()},
                                                    {"family": "realmlp", "params": bad}]})
    with pytest.raises(ConfigError, match=r"configs\[1\] \(realmlp\):"):
        portfolio.check_portfolio(path, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))


def test_a_portfolio_value_outside_its_range_is_named(tmp_path):
    bad = {**realmlp_defaults(), "lr": 5.0}
    path = _write(tmp_path / "p.json", {"configs": [{"family": "realmlp", "params": bad}]})
    with pytest.raises(ConfigError, match=r"configs\[0\] \(realmlp\): .*5.0 of the parameter 'realmlp.lr' is out"):
        portfolio.check_portfolio(path, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))


def test_a_portfolio_param_its_space_does_not_ask_is_named(tmp_path):
    quantile = {**MLP_CONFIG, "numeric": "quantile"}  # search.numeric offers one map: the study never asks it
    path = _write(tmp_path / "p.json", {"configs": [{"family": "mlp", "params": quantile}]})
    with pytest.raises(ConfigError, match=r"configs\[0\] \(mlp\): numeric not asked by its space"):
        portfolio.check_portfolio(path, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))
    portfolio.check_portfolio(path, members_of(MLP_PORTFOLIO),
                              SearchConfig(study="t", numeric=("standard", "quantile")))


def test_a_search_refuses_a_portfolio_per_dataset(tmp_path, capsys):
    rc = main(["search", "--families", "mlp_portfolio", "--portfolio", "x/{dataset}.json",
               "--data-dir", str(tmp_path / "data")])
    assert rc == 2 and "{dataset} is filled in by a bench's cells only" in capsys.readouterr().err


def test_a_bench_with_a_bad_portfolio_stops_before_anything_starts(tmp_path, capsys):
    rc = main(["bench", "--families", "mlp_portfolio,xgboost", "--search-portfolio", str(tmp_path / "no.json"),
               "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no.json': cannot read it" in err
    assert not (tmp_path / "data").exists()


# ---- learning a portfolio ------------------------------------------------------------------------------------------


def _cell(dataset: str, seed: int, errors: dict[str, float], family: str = MLP_PORTFOLIO) -> dict:
    """A cell whose trial log tried configs named by their realmlp lr with these valid MSEs."""
    log = [{"number": i, "state": "complete", "valid_mse": v, "cpu_seconds": 1.0 + i, "first": True,
            "params": joined("realmlp", {**realmlp_defaults(), "lr": float(k)}) if family == MLP_PORTFOLIO
            else {**realmlp_defaults(), "lr": float(k)}} for i, (k, v) in enumerate(errors.items())]
    return {"cell": {"dataset": dataset, "seed": seed, "family": family, "corruption": "none", "level": 0.0},
            "id": f"{dataset}/none/{family}-s{seed}", "trial_log": log}


def test_greedy_picks_what_covers_the_tasks_together():
    norm = np.array([[0.0, 1.0, 0.2], [1.0, 0.0, 0.2], [0.5, 0.5, 0.2]])
    assert portfolio.greedy(norm, 1) == [2]  # the best alone: mean 0.2
    assert portfolio.greedy(norm, 2) == [2, 0]  # then the one that lowers the mean of the best most
    assert portfolio.greedy(norm, 9) == [2, 0, 1]  # at most every config


def test_normalized_errors_are_zero_at_the_best_and_one_from_the_median():
    np.testing.assert_allclose(portfolio.normalized(np.array([[1.0, 2.0, 3.0, 5.0, 9.0]])),
                               [[0.0, 0.5, 1.0, 1.0, 1.0]])


def test_build_learns_from_configs_tried_on_every_task_and_holds_each_dataset_out():
    cells = [_cell("a", 1, {"0.11": 1.0, "0.12": 2.0, "0.13": 3.0}),
             _cell("a", 2, {"0.11": 1.1, "0.12": 2.0, "0.13": 3.0, "0.14": 0.1}),  # 0.14: not tried everywhere
             _cell("b", 1, {"0.11": 3.0, "0.12": 1.0, "0.13": 2.0}, family="realmlp"),  # a member's cell
             _cell("c", 1, {"0.11": 5.0, "0.12": 1.0, "0.13": 1.5}),
             _cell("d", 1, {"0.11": 4.0, "0.12": 1.0, "0.13": 2.0})]
    doc = portfolio.build(cells, 1, {"kind": "learned"})
    assert [c["params"]["lr"] for c in doc["configs"]] == [0.12]  # best on b, c and d, middling on a
    assert doc["provenance"]["candidates"] == 3 and len(doc["provenance"]["cells"]) == 5
    lodo = doc["leave_one_dataset_out"]["datasets"]
    assert lodo["a"]["held_out_error"] == pytest.approx(1.0)  # without a, lr 0.12 wins: the median on a's tasks
    assert lodo["b"]["held_out_error"] == pytest.approx(0.0)  # without b, 0.12 still wins (c, d): b's best


def test_cells_of_other_families_and_failed_trials_do_not_empty_the_candidates():
    xgb = {"cell": {"dataset": "z", "seed": 1, "family": "xgboost", "corruption": "none", "level": 0.0},
           "id": "z/none/xgboost-s1", "trial_log": [{"number": 0, "state": "complete", "valid_mse": 1.0,
                                                     "params": {"max_depth": 3}, "cpu_seconds": 1.0}]}
    failed = _cell("y", 1, {"0.11": 1.0})
    failed["trial_log"][0].update(state="fail", valid_mse=None)
    m = portfolio.trial_matrix([_cell("a", 1, {"0.11": 1.0, "0.12": 2.0}), _cell("b", 1, {"0.11": 2.0}), xgb, failed])
    assert m["tasks"] == [("a", 1), ("b", 1)] and len(m["configs"]) == 1
    assert m["cells"] == ["a/none/mlp_portfolio-s1", "b/none/mlp_portfolio-s1"]


def test_a_portfolio_of_no_config_is_one_line():
    with pytest.raises(ConfigError, match=r"^--size = 0: a portfolio needs at least 1 config$"):
        portfolio.build([_cell("a", 1, {"0.11": 1.0})], 0, {})


def test_a_portfolio_of_one_dataset_has_no_held_out_evaluation():
    doc = portfolio.build([_cell("a", 1, {"0.11": 1.0, "0.12": 2.0})], 1, {})
    assert doc["configs"][0]["params"]["lr"] == 0.11 and doc["leave_one_dataset_out"]["datasets"] == {}


def test_held_out_portfolios_of_two_datasets_are_one_line():
    with pytest.raises(ConfigError, match=r"^--lodo needs cells of 3 datasets or more .*got 2: a, b$"):
        portfolio.held_out([_cell("a", 1, {"0.11": 1.0}), _cell("b", 1, {"0.11": 1.0})], 1, {})


def test_a_task_whose_configs_tie_at_the_median_scores_any_worse_one_as_one():
    np.testing.assert_allclose(portfolio.normalized(np.array([[1.0, 1.0, 1.0, 5.0]])), [[0.0, 0.0, 0.0, 1.0]])


def test_build_from_cells_that_share_no_config_is_one_line():
    with pytest.raises(ConfigError, match=r"no config was tried on every task of the 2 clean cell"):
        portfolio.build([_cell("a", 1, {"0.11": 1.0}), _cell("b", 1, {"0.12": 1.0})], 2, {})


def test_portfolio_build_writes_a_file_a_search_can_use(tmp_path, capsys):
    folder = tmp_path / "cells"
    for c in [_cell("a", 1, {"0.11": 1.0, "0.12": 2.0}), _cell("b", 1, {"0.11": 2.0, "0.12": 1.0})]:
        (folder / c["cell"]["dataset"]).mkdir(parents=True)
        (folder / c["cell"]["dataset"] / "c.json").write_text(json.dumps(c))
    out = tmp_path / "p.json"
    assert main(["portfolio", "build", str(folder), "--size", "2", "-o", str(out)]) == 0
    assert "leave-one-dataset-out" in capsys.readouterr().out
    doc = portfolio.load_portfolio(out)
    assert doc["provenance"]["kind"] == "learned" and len(doc["configs"]) == 2
    portfolio.check_portfolio(out, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))


def test_a_big_trial_log_goes_gzipped_beside_its_cell_and_reads_back_whole(tmp_path):
    small = _cell("a", 1, {"0.11": 1.0, "0.12": 2.0})
    big = _cell("b", 1, {f"0.{k:05d}": 1.0 + k for k in range(1, 4000)})  # ~1.5 MiB of trial log, as XGBoost's
    assert len(json.dumps(big["trial_log"])) > TRIAL_LOG_INLINE_BYTES > len(json.dumps(small["trial_log"]))
    for c in (small, big):
        write_cell(tmp_path / "cells" / c["cell"]["dataset"] / "c.json", c)
    assert sorted(p.name for p in (tmp_path / "cells").rglob("*.*")) == ["c.json", "c.json", "c.trial_log.json.gz"]
    on_disk = json.loads((tmp_path / "cells" / "b" / "c.json").read_text())
    assert "trial_log" not in on_disk and on_disk["trial_log_file"] == "c.trial_log.json.gz"
    assert (tmp_path / "cells" / "b" / "c.json").stat().st_size < 10_000
    read = {c["cell"]["dataset"]: c for c in portfolio.read_cells([tmp_path / "cells"])}
    assert read == {"a": small, "b": big}


def test_a_cell_whose_trial_log_is_missing_names_it(tmp_path):
    big = _cell("b", 1, {f"0.{k:05d}": 1.0 + k for k in range(1, 4000)})
    write_cell(tmp_path / "b.json", big)
    (tmp_path / "b.trial_log.json.gz").unlink()
    with pytest.raises(ConfigError, match=r"b\.json: its trial log b\.trial_log\.json\.gz is missing beside it$"):
        portfolio.read_cells([tmp_path])


def test_held_out_portfolios_never_see_their_dataset(tmp_path):
    folder = tmp_path / "cells"
    cells = [_cell("a", 1, {"0.11": 1.0, "0.12": 2.0}), _cell("b", 1, {"0.11": 2.0, "0.12": 1.0}),
             _cell("c", 1, {"0.11": 3.0, "0.12": 1.0})]
    for c in cells:
        (folder / c["cell"]["dataset"]).mkdir(parents=True)
        (folder / c["cell"]["dataset"] / "c.json").write_text(json.dumps(c))
    assert main(["portfolio", "build", str(folder), "--size", "1", "-o", str(tmp_path / "p.json"),
                 "--lodo", str(tmp_path / "lodo")]) == 0
    held = {d: portfolio.load_portfolio(tmp_path / "lodo" / f"{d}.json") for d in "abc"}
    assert held["a"]["provenance"]["held_out"] == "a"
    assert not any(cell.startswith("a/") for cell in held["a"]["provenance"]["cells"])
    assert [c["params"]["lr"] for c in held["a"]["configs"]] == [0.12]  # b and c prefer 0.12; a, unseen, 0.11
    assert [c["params"]["lr"] for c in held["c"]["configs"]] == [0.11]  # a and b tie: the cheaper (first)
    s = cell_search_config(Config.from_dict({"search": {"portfolio": str(tmp_path / "lodo" / "{dataset}.json")}}),
                           Cell("b", MLP_PORTFOLIO, 4751), 1)
    assert s.portfolio == str(tmp_path / "lodo" / "b.json")


def test_a_bench_missing_one_datasets_portfolio_names_its_file(tmp_path, capsys):
    from benchsuite import write_suite

    suite = write_suite(tmp_path, ("airfoil",))
    rc = main(["bench", "--suite", str(suite), "--families", "mlp_portfolio,xgboost", "--search-portfolio",
               str(tmp_path / "lodo" / "{dataset}.json"), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "lodo/" in err and ".json': cannot read it" in err


def test_portfolio_build_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["portfolio", "build", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith("none: no such folder of bench cells")


def test_candidates_start_from_the_defaults_and_rebuild(tmp_path):
    out = tmp_path / "c.json"
    assert main(["portfolio", "sample", "--n", "6", "--seed", "3", "-o", str(out)]) == 0
    doc = portfolio.load_portfolio(out)
    assert doc["configs"][0] == {"family": "realmlp", "params": realmlp_defaults()}
    assert len(doc["configs"]) >= 6
    assert [c["family"] for c in doc["configs"][2:5]] == ["realmlp", "tabm", "mlp"]  # the members in turn
    portfolio.check_portfolio(out, members_of(MLP_PORTFOLIO), SearchConfig(study="t"))
