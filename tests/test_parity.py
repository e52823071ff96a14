"""Parity with the reference packages: a tabduel family on its defaults against the published implementation it is
named after, on the same data and seeds (benchmarks/parity.py does the fits)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _parity():
    spec = importlib.util.spec_from_file_location("parity", ROOT / "benchmarks" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.peers
def test_tabm_on_its_defaults_is_within_10_percent_of_the_tabm_package():
    """tabduel's tabm (defaults, but k 4 and width 64 so that ten fits take about 30 s on one thread) against the tabm
    package's TabM.make + PLE trained with its example's recipe at the same size: on make_friedman1 (800 rows, data
    seed 0, 60/20/20) with model seeds 0-4, tabduel's mean test MSE must be at most 1.10 times the reference's.
    Measured on the shared 2-core VM: 2.00 against 2.11 (ratio 0.95; per seed 1.81-2.34 against 1.75-2.78), 47 s."""
    pytest.importorskip("tabm")
    pytest.importorskip("rtdl_num_embeddings")
    result = _parity().compare("tabm", seeds=5, size={"k": 4, "d_block": 64}, rows=800)
    ours, theirs = result["tabduel"]["mean_mse"], result["reference"]["mean_mse"]
    assert ours <= 1.10 * theirs, f"tabduel's tabm: mean test MSE {ours:.4f}, the tabm package's {theirs:.4f}"
