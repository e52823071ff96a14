"""Statistics of a benchmark over datasets (Demšar 2006): ranks, Friedman's test, Nemenyi's critical difference,
Wilcoxon-Holm pairwise tests, wins at a tolerance, normalized scores, and the critical-difference diagram.

Tables are pandas frames with datasets as rows and families as columns, holding a loss (test MSE: lower is
better).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TOLERANCE = 0.02  # relative MSE within which two families tie


def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Rank of each family within each dataset: 1 for the lowest loss, ties share the mean of their ranks."""
    return table.rank(axis=1, method="average", ascending=True)


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    """Each family's rank averaged over the datasets."""
    return ranks(table).mean(axis=0)


def friedman(table: pd.DataFrame) -> dict[str, float]:
    """Friedman's chi-square over N datasets and k families, with the Iman-Davenport F (Demšar 2006, eqs. 1-2)."""
    from scipy import stats

    n, k = table.shape
    if k < 2 or n < 2:
        raise ValueError(f"Friedman's test needs at least 2 datasets and 2 families, got {n} and {k}")
    if k >= 3:  # scipy corrects for tied ranks (Demšar's eq. 1 does not); every row all tied gives NaN, not p = 1
        with np.errstate(invalid="ignore", divide="ignore"):
            chi2 = float(stats.friedmanchisquare(*(table[c].to_numpy(float) for c in table.columns)).statistic)
    else:  # scipy refuses k = 2 (mlp against xgboost, the default): Demšar's eq. 1, without tie correction
        r = mean_ranks(table).to_numpy()
        chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(r ** 2)) - k * (k + 1) ** 2 / 4)
    p = float(stats.chi2.sf(chi2, k - 1))
    # chi2 = n (k - 1) when every dataset ranks the families alike: F's denominator is 0 (up to rounding), F undefined
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 1e-9 * n * k else math.nan
    p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if math.isfinite(f) else math.nan
    return {"statistic": chi2, "p": p, "iman_davenport_f": float(f), "iman_davenport_p": p_f,
            "datasets": n, "families": k}


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 n)), q from the studentized
    range distribution over sqrt(2) (Demšar 2006, table 5a: 1.960 for k = 2, 2.343 for 3, 2.569 for 4)."""
    from scipy import stats

    if k < 2 or n < 1:
        raise ValueError(f"a critical difference needs k >= 2 families and n >= 1 datasets, got {k} and {n}")
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6 * n))


def holm(p_values: dict[Any, float]) -> dict[Any, float]:
    """Holm's step-down adjustment of each p value (statsmodels' multipletests)."""
    if not p_values:
        return {}
    from statsmodels.stats.multitest import multipletests

    keys = list(p_values)
    adjusted = multipletests([p_values[key] for key in keys], method="holm")[1]
    return {key: float(p) for key, p in zip(keys, adjusted)}


def wilcoxon_holm(table: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Pairwise Wilcoxon signed-rank tests over the datasets (two-sided), Holm-adjusted; NaN where every
    difference is zero."""
    from scipy import stats

    raw: dict[tuple[str, str], float] = {}
    for a, b in itertools.combinations(table.columns, 2):
        diff = table[a] - table[b]
        if np.allclose(diff, 0):
            raw[(a, b)] = math.nan
            continue
        raw[(a, b)] = float(stats.wilcoxon(table[a], table[b]).pvalue)
    finite = {k: v for k, v in raw.items() if math.isfinite(v)}
    return {**raw, **holm(finite)}


def bootstrap_mean_ci(values: list[float], confidence: float = 0.95, resamples: int = 9999, seed: int = 0
                      ) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean over the values (each one a matched dataset x outer-seed pair,
    resampled with replacement; scipy.stats.bootstrap); NaNs for fewer than 2 values."""
    if len(values) < 2:
        return math.nan, math.nan
    if np.allclose(values, values[0]):
        return float(values[0]), float(values[0])
    from scipy import stats

    result = stats.bootstrap((np.asarray(values, dtype=float),), np.mean, confidence_level=confidence,
                             n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilcoxon_greater(diffs: list[float]) -> float:
    """One-sided Wilcoxon signed-rank p that the differences' centre is above 0 (exact for few pairs); NaN where
    every difference is zero or there are none."""
    from scipy import stats

    if not diffs or np.allclose(diffs, 0):
        return math.nan
    return float(stats.wilcoxon(diffs, alternative="greater").pvalue)


def outcome(a: float, b: float, tolerance: float = TOLERANCE) -> str:
    """'win' when loss a is more than `tolerance` (relative to the smaller) below b, 'loss' when above, else
    'tie'."""
    lo = min(a, b)
    if lo <= 0:
        return "tie" if a == b else ("win" if a < b else "loss")
    if abs(a - b) / lo <= tolerance:
        return "tie"
    return "win" if a < b else "loss"


def wins(table: pd.DataFrame, tolerance: float = TOLERANCE) -> dict[str, dict[str, int]]:
    """Per family: datasets where it is best by more than the tolerance over every other family (wins), within
    the tolerance of the best (ties), or neither (losses)."""
    out = {f: {"wins": 0, "ties": 0, "losses": 0} for f in table.columns}
    for _, row in table.iterrows():
        best = row.min()
        for f in table.columns:
            others = row.drop(f)
            if all(outcome(row[f], v, tolerance) == "win" for v in others):
                out[f]["wins"] += 1
            elif outcome(row[f], best, tolerance) == "tie":
                out[f]["ties"] += 1
            else:
                out[f]["losses"] += 1
    return out


def normalized(table: pd.DataFrame) -> pd.DataFrame:
    """Each loss divided by the best (lowest) loss on its dataset: 1 for the best family, above 1 for others."""
    return table.div(table.min(axis=1), axis=0)


def _nemenyi_p_form(mean: pd.Series, cd: float) -> pd.DataFrame:
    """Nemenyi's decisions between families as scikit-posthocs reads p values: 0 where mean ranks differ by more
    than cd (significant), 1 where not."""
    v = mean.to_numpy(float)
    return pd.DataFrame(np.where(np.abs(v[:, None] - v[None, :]) > cd, 0.0, 1.0), index=mean.index,
                        columns=mean.index)


def cliques(mean: pd.Series, cd: float) -> list[list[str]]:
    """Maximal groups of families whose mean ranks lie within cd of each other (the diagram's bars), by rank."""
    import scikit_posthocs as sp

    letters = sp.compact_letter_display(_nemenyi_p_form(mean, cd), alpha=0.05)  # families sharing a letter
    order = list(mean.sort_values(kind="stable").index)
    groups = [sorted((f for f in letters.index if letters[f][j] != " "), key=order.index)
              for j in range(len(letters.iloc[0]))]
    return sorted((g for g in groups if len(g) > 1), key=lambda g: order.index(g[0]))


def cd_diagram(mean: pd.Series, cd: float, path: Path, dpi: int = 110, title: str = "") -> Path:
    """Draw the critical-difference diagram (scikit-posthocs'): mean ranks, the CD to scale, bars over cliques."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    k = len(mean)
    fig, ax = plt.subplots()
    sp.critical_difference_diagram(mean, _nemenyi_p_form(mean, cd), cd=cd, alpha=0.05, ax=ax,
                                   label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
                                   label_props={"fontsize": 9})
    # the whole rank axis, 1 (best) to k, as Demšar draws it, and the CD bar drawn from the best rank
    ax.set_xlim(0.9, max(k, 2, float(mean.min()) + cd) + 0.1)
    ax.set_xticks(range(1, max(k, 2) + 1))
    ax.tick_params(axis="x", labelsize=8, pad=1, length=3)
    bottom = ax.get_ylim()[0]
    ax.set_ylim(bottom, 1.0)
    fig.set_size_inches(7, 0.45 * (1.0 - bottom) + 0.5)  # 0.45 in per row: the CD bar (row 0.5) clears the ticks
    if title:
        ax.set_title(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def summary(table: pd.DataFrame, alpha: float = 0.05, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The across-datasets statistics of a loss table, as plain JSON-able values."""
    mean = mean_ranks(table)
    out: dict[str, Any] = {"mean_rank": {f: float(v) for f, v in mean.items()},
                           "normalized_mean": {f: float(v) for f, v in normalized(table).mean(axis=0).items()},
                           "tolerance": tolerance, "alpha": alpha, "datasets": list(map(str, table.index))}
    record = wins(table, tolerance)
    out["wins"] = {f: v["wins"] for f, v in record.items()}
    out["ties"] = {f: v["ties"] for f, v in record.items()}
    out["losses"] = {f: v["losses"] for f, v in record.items()}
    n, k = table.shape
    if n >= 2 and k >= 2:
        fr = friedman(table)
        out["friedman_statistic"], out["friedman_p"] = fr["statistic"], fr["p"]
        out["iman_davenport_p"] = fr["iman_davenport_p"]
        out["nemenyi_cd"] = nemenyi_cd(k, n, alpha)
        out["cliques"] = cliques(mean, out["nemenyi_cd"])
        out["wilcoxon_holm_p"] = {f"{a} vs {b}": p for (a, b), p in wilcoxon_holm(table).items()}
    else:
        out["friedman_p"] = None
    return out
