"""Metrics and the comparison table."""

from __future__ import annotations

import numpy as np
import pytest

from tabduel.models.evaluate import comparison, regression_metrics, to_markdown


def test_regression_metrics_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    yhat = np.array([1.5, 2.0, 2.0, 4.0])
    m = regression_metrics(y, yhat)
    assert m["mse"] == pytest.approx((0.25 + 0 + 1 + 0) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt(1.25 / 4))
    assert m["mae"] == pytest.approx(1.5 / 4)
    assert m["r2"] == pytest.approx(1 - 1.25 / 5.0)


def test_perfect_prediction():
    y = np.arange(5.0)
    assert regression_metrics(y, y) == {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "r2": 1.0}


def test_comparison_sorted_by_valid_mse_and_markdown():
    metrics = {kind: {f"{s}_{m}": v for s in ("valid", "test") for m in ("mse", "rmse", "mae", "r2")}
               for kind, v in (("a", 0.3), ("b", 0.1))}
    table = comparison(metrics)
    assert list(table.index) == ["b", "a"]
    assert list(table.columns)[:2] == ["valid_mse", "valid_rmse"]
    md = to_markdown(table)
    assert md.splitlines()[0].startswith("| model | valid_mse") and "| b | 0.1000" in md


@pytest.mark.slow
def test_benchmark_pure_compute_row_runs_the_pipelines_steps(raw_csv, tmp_path):
    """benchmarks/training.py's pure-compute row (the denominator of `pipeline_overhead`) trains the models that
    `tabduel run` trains on the built-in spec and draws the evaluation's plots with the same function."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("training_bench", bench / "training.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        figures = module.row_pipeline_compute(None, "cpu", True, 1, source=str(raw_csv))["figures"]
    finally:
        sys.path.remove(str(bench))
    assert list(figures["steps_s"]) == ["ingest", "features", "train_mlp", "train_xgboost", "train_linear",
                                        "evaluate"]
    assert figures["compute_s"] > 0
