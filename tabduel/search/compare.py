"""Evidence of a search: leaderboard, best-so-far curves and the paired comparison over split seeds."""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import numpy as np
import pandas as pd


def leaderboard(trials: dict[str, Sequence[Any]], top: int = 10) -> pd.DataFrame:
    """The best `top` complete trials of each family (Optuna FrozenTrials), best first within a family."""
    rows = []
    for family, done in trials.items():
        for t in sorted(done, key=lambda t: t.value)[:top]:
            settings = " ".join(f"{k}={_short(v)}" for k, v in sorted(t.params.items()))
            rows.append({"family": family, "trial": t.number, "valid_mse": t.value,
                         "seconds": t.user_attrs.get("seconds", np.nan),
                         "at_seconds": t.user_attrs.get("elapsed_seconds", np.nan), "settings": settings})
    return pd.DataFrame(rows, columns=["family", "trial", "valid_mse", "seconds", "at_seconds", "settings"])


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def best_so_far(done: Sequence[Any], ended: Sequence[Any] | None = None) -> pd.DataFrame:
    """Per complete trial, in the order trials finished: its search time and the best valid MSE up to it.

    finished counts the trials that had ended by then: the complete ones, or with `ended` (every trial the budget
    counted: complete, pruned and failed), all of those.
    """
    def key(t: Any) -> tuple[float, int]:
        return (t.user_attrs.get("elapsed_seconds", 0.0), t.number)

    ordered = sorted(done, key=key)
    keys = sorted(key(t) for t in (done if ended is None else ended))
    values = np.array([t.value for t in ordered], dtype=float)
    return pd.DataFrame({"trial": [t.number for t in ordered],
                         "finished": [bisect.bisect_right(keys, key(t)) for t in ordered],
                         "at_seconds": [t.user_attrs.get("elapsed_seconds", np.nan) for t in ordered],
                         "valid_mse": values,
                         "best_valid_mse": np.minimum.accumulate(values) if len(values) else values})


def first_crossing(curve: pd.DataFrame, target: float) -> dict[str, float] | None:
    """Where a best-so-far curve first reaches target (<=): trials finished and search seconds; None if never."""
    hit = curve[curve["best_valid_mse"] <= target]
    if hit.empty:
        return None
    row = hit.iloc[0]
    return {"trials": int(row["finished"]), "seconds": float(row["at_seconds"])}


def paired_comparison(rows: Sequence[dict[str, Any]], a: str = "mlp", b: str = "xgboost") -> dict[str, Any]:
    """Test MSE of families a and b refitted on the same split seeds: mean +- sd of each, and paired tests of
    a - b (Student's paired t and Wilcoxon's signed rank, both two-sided)."""
    from scipy import stats

    frame = pd.DataFrame(rows).pivot(index="seed", columns="family", values="test_mse").dropna()
    if len(frame) < 2:
        raise ValueError(f"a paired comparison needs at least 2 seeds with both families, got {len(frame)}")
    diff = frame[a] - frame[b]
    out: dict[str, Any] = {"seeds": [int(s) for s in frame.index], "n": len(frame)}
    for fam in (a, b):
        out[f"{fam}_test_mse_mean"] = float(frame[fam].mean())
        out[f"{fam}_test_mse_sd"] = float(frame[fam].std(ddof=1))
    out["diff_mean"] = float(diff.mean())
    out["diff_sd"] = float(diff.std(ddof=1))
    out[f"{a}_wins"] = int((diff < 0).sum())
    if np.allclose(diff, diff.iloc[0]):  # a constant difference has no variance to test against
        out["t_statistic"], out["t_p_value"] = float("nan"), float("nan")
    else:
        t = stats.ttest_rel(frame[a], frame[b])
        out["t_statistic"], out["t_p_value"] = float(t.statistic), float(t.pvalue)
    try:
        out["wilcoxon_p_value"] = float(stats.wilcoxon(frame[a], frame[b]).pvalue)
    except ValueError:  # all differences zero
        out["wilcoxon_p_value"] = float("nan")
    return out


def comparison_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Seeds as rows; each family's valid and test MSE, and the test difference mlp - xgboost when both ran."""
    frame = pd.DataFrame(rows)
    wide = frame.pivot(index="seed", columns="family", values=["valid_mse", "test_mse"])
    wide.columns = [f"{fam}_{metric}" for metric, fam in wide.columns]
    if {"mlp_test_mse", "xgboost_test_mse"} <= set(wide.columns):
        wide["test_diff"] = wide["mlp_test_mse"] - wide["xgboost_test_mse"]
    wide.index.name = "split_seed"
    return wide


def verdict(summary: dict[str, Any], a: str = "mlp", b: str = "xgboost") -> str:
    """One sentence on who won on test, with the numbers."""
    ma, sa = summary[f"{a}_test_mse_mean"], summary[f"{a}_test_mse_sd"]
    mb, sb = summary[f"{b}_test_mse_mean"], summary[f"{b}_test_mse_sd"]
    better = a if ma <= mb else b
    return (f"test MSE over {summary['n']} split seeds: {a} {ma:.5f} +- {sa:.5f}, {b} {mb:.5f} +- {sb:.5f}; "
            f"{better} is lower on average ({a} wins {summary[f'{a}_wins']} of {summary['n']} seeds; paired t "
            f"p = {summary['t_p_value']:.3g}, Wilcoxon p = {summary['wilcoxon_p_value']:.3g})")
