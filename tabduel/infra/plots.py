"""PNG plots: daily totals (or predicted vs observed by split), loss history, residuals, predicted vs observed;
labels come from the dataset spec (the target's label and unit) and the target transform."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SPLIT_COLOURS = {"train": "#bbbbbb", "valid": "#1f77b4", "test": "#d62728"}


def _save(fig: plt.Figure, path: Path, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def daily_totals(dates: pd.Series, observed: np.ndarray, predicted: dict[str, np.ndarray], label: str, unit: str,
                 path: Path, dpi: int) -> Path:
    """The target summed per day on its original scale, observed and as each model predicts it (row-aligned)."""
    day = pd.DatetimeIndex(dates).normalize()
    fig, ax = plt.subplots(figsize=(11, 4.2))
    per_day = pd.Series(np.asarray(observed, dtype=np.float64), index=day).groupby(level=0).sum()
    ax.plot(per_day.index, per_day.to_numpy(), color="black", lw=1.4, label="observed")
    for kind, values in predicted.items():
        per_day = pd.Series(np.asarray(values, dtype=np.float64), index=day).groupby(level=0).sum()
        ax.plot(per_day.index, per_day.to_numpy(), lw=0.9, alpha=0.8, label=f"{kind} (predicted)")
    ax.set_title(f"{label} per day, observed and predicted")
    ax.set_xlabel("date")
    ax.set_ylabel(f"{label}, summed per day" + (f" (of {unit})" if unit else ""))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path, dpi)


def by_split(predictions: pd.DataFrame, models: list[str], title: str, path: Path, dpi: int) -> Path:
    """Predicted against observed on the original scale, one panel per split, every model in its own colour."""
    splits = [s for s in SPLIT_COLOURS if (predictions["split"] == s).any()]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.6 * len(splits), 4.6), squeeze=False)
    values = predictions[["observed"] + [f"pred_{kind}" for kind in models]].to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for ax, split in zip(axes[0], splits):
        part = predictions[predictions["split"] == split]
        for kind in models:
            ax.scatter(part["observed"], part[f"pred_{kind}"], s=5, alpha=0.45, label=kind)
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_title(f"{split} ({len(part)} rows)")
        ax.set_xlabel(f"observed {title}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"predicted {title}")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{title}: predicted vs observed by split")
    return _save(fig, path, dpi)


def loss_history(history: dict[str, list[float]], path: Path, dpi: int, title: str = "MLP loss",
                 xlabel: str = "epoch", ylabel: str = "MSE") -> Path:
    """Train and valid loss per epoch or round (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path, dpi)


def residuals(predictions: pd.DataFrame, kind: str, path: Path, dpi: int, scale: str = "model scale") -> Path:
    """Residuals against fitted values on valid and test, on the scale the model was fitted on."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for split in ("valid", "test"):
        part = predictions[predictions["split"] == split]
        fitted = part[f"pred_{kind}"].to_numpy()
        ax.scatter(fitted, part["observed"].to_numpy() - fitted, s=5, alpha=0.45,
                   color=SPLIT_COLOURS[split], label=split)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"fitted: {scale}")
    ax.set_ylabel("observed - fitted")
    ax.set_title(f"{kind}: residuals vs fitted")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path, dpi)


def predicted_vs_observed(predictions: pd.DataFrame, kind: str, path: Path, dpi: int,
                          scale: str = "model scale") -> Path:
    """Predicted against observed on valid and test, with the identity line, on the scale the model was fitted on."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    lo = float(min(predictions["observed"].min(), predictions[f"pred_{kind}"].min()))
    hi = float(max(predictions["observed"].max(), predictions[f"pred_{kind}"].max()))
    for split in ("valid", "test"):
        part = predictions[predictions["split"] == split]
        ax.scatter(part["observed"], part[f"pred_{kind}"], s=5, alpha=0.45, color=SPLIT_COLOURS[split],
                   label=split)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel(f"observed: {scale}")
    ax.set_ylabel("predicted")
    ax.set_title(f"{kind}: predicted vs observed")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path, dpi)


def population_members(members: list[dict], ensemble_mse: float, path: Path, dpi: int,
                       scale: str = "model scale") -> Path:
    """Each kept member's valid MSE (sorted), against the valid MSE of their mean prediction."""
    all_mse = np.array([m["valid_mse"] for m in members], dtype=np.float64)
    mse = np.sort(all_mse[np.isfinite(all_mse)])  # diverged members are not in the ensemble
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(mse) + 1), mse, "o", ms=4, color="#1f77b4", label="members (sorted)")
    ax.axhline(ensemble_mse, color="#d62728", lw=1.5, label=f"ensemble mean: {ensemble_mse:.4f}")
    ax.set_xlabel("member rank")
    ax.set_ylabel(f"valid MSE, {scale}")
    dropped = len(all_mse) - len(mse)
    ax.set_title(f"MLP population of {len(mse)}: members and their ensemble"
                 + (f" ({dropped} diverged, left out)" if dropped else ""))
    ax.legend()
    return _save(fig, path, dpi)


FAMILY_COLOURS = {"mlp": "#1f77b4", "xgboost": "#d62728", "realmlp": "#2ca02c", "tabm": "#9467bd"}


def best_so_far(curves: dict[str, pd.DataFrame], path: Path, dpi: int, scale: str = "model scale") -> Path:
    """Best valid MSE so far against trials finished and against search seconds, one line per family."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for family, curve in curves.items():
        colour = FAMILY_COLOURS.get(family)
        axes[0].step(curve["finished"], curve["best_valid_mse"], where="post", color=colour, label=family)
        axes[0].plot(curve["finished"], curve["valid_mse"], ".", color=colour, alpha=0.25, ms=4)
        axes[1].step(curve["at_seconds"] / 60, curve["best_valid_mse"], where="post", color=colour, label=family)
    axes[0].set_xscale("log")  # XGBoost's trials are cheap: its count runs to hundreds while the MLP's stays small
    axes[0].set_xlabel("trials finished (log scale)")
    axes[1].set_xlabel("search wall-clock minutes")
    axes[0].set_ylabel(f"best valid MSE so far, {scale}")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle("Search progress (dots: each trial's valid MSE)")
    return _save(fig, path, dpi)


def paired_seeds(table: pd.DataFrame, path: Path, dpi: int, title: str, scale: str = "model scale") -> Path:
    """Test MSE of each family per split seed, pairs joined by a line, with the mean +- sd beside them."""
    families = [c[: -len("_test_mse")] for c in table.columns if c.endswith("_test_mse")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = np.arange(len(families))
    for _, row in table.iterrows():
        ax.plot(xs, [row[f"{f}_test_mse"] for f in families], "-", color="#999999", lw=0.8)
    for x, fam in zip(xs, families):
        values = table[f"{fam}_test_mse"].to_numpy()
        ax.plot(np.full(len(values), x), values, "o", color=FAMILY_COLOURS.get(fam), ms=5)
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(x + 0.15, values.mean(), yerr=sd, fmt="D", color="black", capsize=4)
    ax.set_xticks(xs, families)
    ax.set_xlim(-0.5, len(families) - 0.3)
    ax.set_ylabel(f"test MSE, {scale}")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path, dpi)
