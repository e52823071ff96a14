"""A bench's pictures and Markdown report, drawn from its result document and cell results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabduel.bench import stats as bench_stats
from tabduel.bench.cells import CLEAN

DPI = 110
COLOURS = {"mlp": "#1f77b4", "xgboost": "#d62728"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(family: str, families: list[str]) -> Any:
    if family in COLOURS:
        return COLOURS[family]
    return _plt().get_cmap("tab10")(families.index(family) % 10)


def normalized_dots(doc: dict[str, Any], path: Path) -> Path:
    """Per dataset, each family's mean test MSE over the best family's (1 = best), one dot per family."""
    plt = _plt()
    norm = pd.DataFrame(doc["aggregate"]["normalized"]).T
    fams = list(doc["families"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(norm) + 1.5))
    ys = np.arange(len(norm))
    for j, f in enumerate(fams):
        ax.plot(norm[f].to_numpy(), ys + (j - (len(fams) - 1) / 2) * 0.12, "o", color=_colour(f, fams), label=f)
    ax.axvline(1.0, color="#999999", lw=0.8)
    ax.axvline(1 + bench_stats.TOLERANCE, color="#999999", lw=0.8, ls=":")
    ax.set_yticks(ys, list(norm.index))
    ax.set_xlabel("test MSE / best family's test MSE (dotted: the 2% tie line)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def best_so_far(results: list[dict[str, Any]], families: list[str], path: Path) -> Path:
    """Best valid MSE so far against CPU-minutes, one panel per dataset, one line per family and outer seed."""
    plt = _plt()
    clean = [r for r in results if r["cell"]["corruption"] == CLEAN]
    names = sorted({r["cell"]["dataset"] for r in clean})
    cols = min(3, len(names)) or 1
    rows = math.ceil(len(names) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for r in (r for r in clean if r["cell"]["dataset"] == name):
            curve = np.array(r["curve"], dtype=float).reshape(-1, 2)
            if not len(curve):
                continue
            f = r["cell"]["family"]
            ax.step(curve[:, 0] / 60, np.minimum.accumulate(curve[:, 1]), where="post", color=_colour(f, families),
                    alpha=0.8, lw=1, label=f)
        handles, labels = ax.get_legend_handles_labels()
        keep = dict(zip(labels, handles))
        ax.legend(keep.values(), keep.keys(), fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("CPU-minutes")
        ax.set_ylabel("best valid MSE")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def corruption_gaps(doc: dict[str, Any], path: Path) -> Path:
    """Per corruption, the mean relative gap (mlp variant - xgboost) / xgboost against the corruption's level."""
    plt = _plt()
    table = doc["corruption"]
    fig, axes = plt.subplots(1, len(table), figsize=(4.2 * len(table), 3.4), squeeze=False)
    for ax, (corruption, fams) in zip(axes.flat, table.items()):
        names = sorted(fams)
        for f in names:
            levels = sorted(fams[f], key=float)
            ax.plot([float(lv) for lv in levels], [fams[f][lv]["gap_mean"] for lv in levels], "o-",
                    color=_colour(f, names), label=f)
        ax.axhline(0, color="#999999", lw=0.8)
        ax.set_title(corruption, fontsize=9)
        ax.set_xlabel("level")
        ax.set_ylabel("(MLP - XGBoost) / XGBoost test MSE")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def draw(doc: dict[str, Any], results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """All pictures of a bench into folder; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    fams = list(doc["families"])
    out = [best_so_far(results, fams, folder / "best_so_far.png")]
    agg = doc["aggregate"]
    if agg.get("normalized"):
        out.append(normalized_dots(doc, folder / "normalized.png"))
    if agg.get("nemenyi_cd") is not None:
        mean = pd.Series(agg["mean_rank"])
        title = f"mean rank over {len(agg['datasets'])} datasets (Friedman p = {agg['friedman_p']:.3g})"
        out.append(bench_stats.cd_diagram(mean, agg["nemenyi_cd"], folder / "cd.png", DPI, title))
    ens = doc.get("aggregate_ensemble", {})
    if ens.get("nemenyi_cd") is not None:
        title = (f"T and T+E: mean rank over {len(ens['datasets'])} datasets (Friedman p = {ens['friedman_p']:.3g})")
        out.append(bench_stats.cd_diagram(pd.Series(ens["mean_rank"]), ens["nemenyi_cd"], folder / "cd_ensemble.png",
                                          DPI, title))
    if doc.get("corruption"):
        out.append(corruption_gaps(doc, folder / "corruption_gaps.png"))
    return out


def _ci(row: dict[str, Any]) -> str:
    """'[low, high]' of a test row's 95% interval ('' for rows made before intervals)."""
    low, high = row.get("ci95", (None, None))
    return "" if low is None else f"[{_f(low, 3)}, {_f(high, 3)}]"


def _f(v: Any, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _ranking(agg: dict[str, Any], families: list[str]) -> list[str]:
    """The lines of an aggregate (bench_stats.summary): ranks, normalized MSE, wins/ties/losses, Friedman, Nemenyi
    and Wilcoxon-Holm."""
    lines = ["| family | mean rank | mean normalized MSE | wins | ties | losses |", "|---|---|---|---|---|---|"]
    for f in families:
        lines.append(f"| {f} | {agg['mean_rank'][f]:.2f} | {agg['normalized_mean'][f]:.3f} | {agg['wins'][f]} | "
                     f"{agg['ties'][f]} | {agg['losses'][f]} |")
    if agg.get("friedman_p") is not None:
        lines += ["", f"Friedman χ² = {agg['friedman_statistic']:.3f}, p = {agg['friedman_p']:.3g} over "
                      f"{len(agg['datasets'])} datasets ({_iman_davenport(agg['iman_davenport_p'])}); "
                      f"Nemenyi critical difference at α = {agg['alpha']}: {agg['nemenyi_cd']:.3f}.", ""]
        lines += [f"- Wilcoxon–Holm {pair}: p = {_f(p, 3)}" for pair, p in agg["wilcoxon_holm_p"].items()]
    return lines


def _iman_davenport(p: float) -> str:
    if math.isfinite(p):
        return f"Iman–Davenport p = {p:.3g}"
    return "Iman–Davenport F undefined: every dataset ranks the families alike"


def markdown(doc: dict[str, Any], pictures: list[Path], folder_name: str) -> str:
    """The report: per-dataset table, paired tests and outcomes, across-dataset statistics, pictures."""
    b = doc["budget"]
    budget = " and ".join(x for x in (f"{b['cpu_seconds_per_family']:g} CPU-seconds" if b["cpu_seconds_per_family"]
                                      else "", f"{b['trials']} trials" if b["trials"] else "") if x)
    lines = [f"# Bench `{doc['suite']}`: {', '.join(doc['families'])}", "",
             f"Budget per family, dataset and outer seed: {budget}. Outer seeds: {doc['outer_seeds']}. "
             f"Cells: {doc['cells']}; CPU-seconds spent in all searches: {doc['cpu_seconds_total']:.0f}.", "",
             "Each outer split's test rows were touched by nothing before the single score of the selected model "
             "(and of the post-hoc ensemble) on them." + (
                 f" Bagged: each trial was {doc['bagging']} fits on train + valid, selected and ensembled on its "
                 "out-of-fold predictions, tested as the mean of its fits." if doc.get("bagging") else ""),
             "", "## Per dataset (test MSE on the transformed target; R² and RMSE on the original scale)", "",
             "| dataset | family | test MSE mean ± sd | T+E test MSE | R² orig | RMSE orig | CPU-s (mean) | trials |",
             "|---|---|---|---|---|---|---|---|"]
    for name, fams in doc["datasets"].items():
        for f in doc["families"]:
            if f not in fams:
                continue
            x = fams[f]
            lines.append(f"| {name} | {f} | {_f(x['test_mse_mean'])} ± {_f(x['test_mse_sd'], 2)} | "
                         f"{_f(x.get('ensemble_test_mse_mean'))} | {_f(x['test_r2_orig_mean'], 4)} | "
                         f"{_f(x['test_rmse_orig_mean'], 4)} | "
                         f"{x['cpu_seconds_mean']:.1f} | {', '.join(map(str, x['trials']))} |")
    paired = [(n, f) for n, f in doc["datasets"].items() if "paired" in f]
    if paired:
        lines += ["", "## MLP against XGBoost per dataset (paired over outer seeds; tie within 2% relative MSE)", "",
                  "| dataset | mlp − xgboost (mean) | paired t p | Wilcoxon p | mlp lower in | outcome for mlp |",
                  "|---|---|---|---|---|---|"]
        for name, fams in paired:
            p = fams["paired"]
            lines.append(f"| {name} | {_f(p['diff_mean'], 3)} | {_f(p['t_p_value'], 3)} | "
                         f"{_f(p['wilcoxon_p_value'], 3)} | {p['mlp_wins']} of {p['n']} seeds | "
                         f"{fams['outcome_mlp_vs_xgboost']} |")
    if doc.get("vs_xgboost"):
        lines += ["", "## Each family against XGBoost per dataset, T and T+E (paired over outer seeds; tie within 2%)",
                  "", "T: the selected models; T+E: the post-hoc ensembles, each against XGBoost's own T+E. Mean "
                  "difference of test MSE (family − XGBoost), Wilcoxon's signed-rank p (two-sided; with 3 seeds it "
                  "cannot fall below 0.25), seeds where the family is lower, outcome of the means.", "",
                  "| dataset | family | T: diff | p | lower in | outcome | T+E: diff | p | lower in | outcome |",
                  "|---|---|---:|---:|---|---|---:|---:|---|---|"]
        for name, fams in doc["datasets"].items():
            for f in doc["families"]:
                v = fams.get(f, {}).get("vs_xgboost")
                if not v:
                    continue
                cols = [(f"{_f(r.get('diff_mean'), 3)} | {_f(r.get('wilcoxon_p_value'), 2)} | "
                         f"{r.get('wins', '-')} of {r.get('n', '-')} | {r['outcome']}") if (r := v.get(k)) else
                        "- | - | - | -" for k in ("T", "T+E")]
                lines.append(f"| {name} | {f} | {cols[0]} | {cols[1]} |")
        lines += [""] + [f"- {f}: mean test MSE at or below XGBoost's on {g['T']['at_or_below']} of "
                         f"{g['T']['datasets']} datasets (T), {g['T+E']['at_or_below']} of {g['T+E']['datasets']} "
                         f"(T+E against XGBoost's T+E); within 2% or below: {g['T']['within_tolerance_or_below']} "
                         f"(T), {g['T+E']['within_tolerance_or_below']} (T+E)"
                         for f, g in doc["vs_xgboost"].items()]
    if doc.get("best_mlp"):
        g = doc["best_mlp"]
        tol = f"{g['tolerance']:.0%}"
        lines += ["", f"## Best tabduel MLP against XGBoost and RealMLP-TD (tie within {tol} relative MSE)", "",
                  "Per outer split, `best_mlp` is whichever of tabduel's MLP families searched there found the lowest "
                  "valid MSE; its selected model's test MSE is its score (the choice never saw the test rows). It "
                  "spent the budgets of all the families it chose among.", "",
                  "| dataset | best_mlp (mean) | chosen per seed | xgboost | gap | outcome | RealMLP-TD | gap |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in g["datasets"].items():
            peer = (f"{_f(r['realmlp_td'])} | {r['gap_vs_realmlp_td']:+.1%}" if "realmlp_td" in r else "- | -")
            lines.append(f"| {name} | {_f(r['best_mlp'])} | {', '.join(r['chosen'])} | {_f(r['xgboost'])} | "
                         f"{r['gap_vs_xgboost']:+.1%} | {r['outcome_vs_xgboost']} | {peer} |")
        peer_bar = g["never_worse_than_realmlp_td_beyond_tolerance"]
        lines += ["", f"At or within {tol} of XGBoost on {g['at_or_within_tolerance_of_xgboost']} of "
                      f"{len(g['datasets'])} datasets (half or more: {'yes' if g['half_or_more'] else 'no'}). Never "
                      f"worse than RealMLP-TD by more than {tol}: "
                      f"{'not measured' if peer_bar is None else ('yes' if peer_bar else 'no')}."]
    if doc["aggregate"]:
        lines += ["", "## Across datasets", ""] + _ranking(doc["aggregate"], doc["families"])
    ens = doc.get("aggregate_ensemble")
    if ens:
        lines += ["", "## Post-hoc ensembles: T (the selected model) and T+E (Caruana's ensemble of the trials)", "",
                  "Each family's T+E is the greedy ensemble (40 steps, with replacement) of its cell's best trials, "
                  "fitted on their valid predictions and scored once on test: no extra training.", ""]
        lines += _ranking(ens, list(ens["mean_rank"]))
    if doc.get("corruption"):
        lines += ["", "## Corruptions: (MLP variant − XGBoost) / XGBoost test MSE, mean over datasets", ""]
        for corruption, fams in doc["corruption"].items():
            levels = sorted({lv for f in fams.values() for lv in f}, key=float)
            lines += [f"### {corruption}", "", "| MLP variant | " + " | ".join(f"level {lv}" for lv in levels) + " |",
                      "|---|" + "---|" * len(levels)]
            for f, by in fams.items():
                lines.append(f"| {f} | " + " | ".join(_f(by[lv]["gap_mean"], 3) if lv in by else "-"
                                                      for lv in levels) + " |")
            lines.append("")
    if doc.get("corruption_tests"):
        lines += ["## Hypothesis 2: tests over matched (dataset, outer seed) pairs", "",
                  "Growth: the variant's gap at the top level minus its gap on the clean data (one-sided Wilcoxon, "
                  "greater). Below reference: the reference preprocessing's gap minus the variant's, at the top "
                  "level (one-sided Wilcoxon, greater). Means with 95% bootstrap intervals over the pairs; p "
                  "Holm-adjusted over every test in this table (p raw in the JSON).", "",
                  "| corruption | top level | MLP variant | growth (mean) | 95% CI | up | p Holm | "
                  "below reference (mean) | 95% CI | smaller | p Holm |",
                  "|---|---:|---|---:|---|---:|---:|---:|---|---:|---:|"]
        for corruption, t in doc["corruption_tests"].items():
            for v, g in t["growth"].items():
                b = t["below_reference"].get(v)
                rest = (f"{_f(b['mean'], 3)} | {_ci(b)} | {b['positive']}/{b['pairs']} | "
                        f"{_f(b.get('p_holm', b['p_greater']), 3)}" if b else "(reference) | | | ")
                lines.append(f"| {corruption} | {t['level']:g} | {v} | {_f(g['mean'], 3)} | {_ci(g)} | "
                             f"{g['positive']}/{g['pairs']} | {_f(g.get('p_holm', g['p_greater']), 3)} | {rest} |")
        lines.append("")
    lines += ["", "## Pictures", ""] + [f"![{p.stem}]({folder_name}/{p.name})" for p in pictures]
    return "\n".join(lines) + "\n"
