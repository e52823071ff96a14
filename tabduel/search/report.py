"""A search's evidence: leaderboard and best-so-far plot, then the refit of each family's best on several split
seeds with a paired test; files under <data_dir>/search/<study>/, all logged to the search's MLflow run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tabduel.infra import plots
from tabduel.infra.store import atomic_write_bytes, atomic_write_json
from tabduel.infra.tracking import Tracker
from tabduel.models.evaluate import to_markdown
from tabduel.search import compare
from tabduel.search.families import search_family
from tabduel.search.space import trial_threads, workers_of
from tabduel.search.study import budgeted_trials, completed

DPI = 110


def _atomic_plot(draw: Callable[[Path], Any], path: Path) -> Path:
    """Draw into a temp file beside path, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        draw(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_table(frame: Any, path: Path, digits: int = 5) -> None:
    atomic_write_bytes(path.with_suffix(".csv"), frame.to_csv(index=frame.index.name is not None).encode())
    atomic_write_bytes(path.with_suffix(".md"), _markdown(frame, digits).encode())


def _markdown(frame: Any, digits: int) -> str:
    numeric = frame.select_dtypes("number")
    if frame.index.name and len(numeric.columns) == len(frame.columns):
        return to_markdown(frame, digits)
    head = list(frame.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for _, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_evidence(studies: dict[str, Any], out: Path, tracker: Tracker, parent: str,
                   scale: str = "model scale") -> dict[str, Any]:
    """Leaderboard table and best-so-far plot of every family; logged to the parent run; their numbers returned.

    scale names what the MSEs are of, for the plot ('log10(1 + y), y = rented bikes (bikes per hour)')."""
    done = {family: completed(st) for family, st in studies.items()}
    board = compare.leaderboard(done)
    _write_table(board, out / "leaderboard")
    curves = {family: compare.best_so_far(trials, budgeted_trials(studies[family]))
              for family, trials in done.items() if trials}
    if curves:
        _atomic_plot(lambda p: plots.best_so_far(curves, p, DPI, scale), out / "best_so_far.png")
        tracker.log_artifact(parent, out / "best_so_far.png")
    for name in ("leaderboard.csv", "leaderboard.md"):
        tracker.log_artifact(parent, out / name)
    metrics: dict[str, float] = {}
    best: dict[str, dict[str, Any]] = {}
    for family, trials in done.items():
        metrics[f"{family}_trials_complete"] = len(trials)
        if trials:
            top = min(trials, key=lambda t: t.value)
            metrics[f"{family}_best_valid_mse"] = top.value
            best[family] = {"trial": top.number, "valid_mse": top.value, "params": top.params}
    if "mlp" in curves and "xgboost" in best:
        hit = compare.first_crossing(curves["mlp"], best["xgboost"]["valid_mse"])
        if hit:
            metrics.update(mlp_reaches_xgboost_valid_at_trials=hit["trials"],
                           mlp_reaches_xgboost_valid_at_seconds=hit["seconds"])
    tracker.log_metrics(parent, metrics)
    atomic_write_json(out / "best.json", best)
    tracker.log_artifact(parent, out / "best.json")
    return {"best": best, "leaderboard": board.to_dict(orient="records"), "search_metrics": metrics}


def rebuild(family: str, params: dict[str, Any], s: Any, threads: int) -> Any:
    """The trial spec (MLPTrial or XGBoostConfig) of a finished trial's params."""
    return search_family(family).rebuild(params, s, threads)


def refit_plan(cfg: Any, studies: dict[str, Any], seeds: list[int], log: Any) -> list[dict[str, Any]]:
    """One refit per family and split seed: the best trial's spec and the features base it reads."""
    s = cfg.search
    threads = trial_threads(s, workers_of(s))
    plan = []
    for family, st in studies.items():
        trials = completed(st)
        if not trials:
            log.warning(f"{family}: no complete trial to refit")
            continue
        best = min(trials, key=lambda t: t.value)
        spec = rebuild(family, best.params, s, threads)
        base = search_family(family).base(spec)
        plan += [{"label": f"refit-{family}-seed{seed}", "family": family, "trial": best.number, "seed": seed,
                  "spec": spec, "base": base} for seed in seeds]
    return plan


def refit_row(item: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """One row of the final comparison: a planned refit's label, family, seed and trial, with its scores."""
    return ({k: item[k] for k in ("label", "family", "seed", "trial")}
            | {k: result[k] for k in ("valid_mse", "test_mse", "seconds")})


def seen_rows_note(seeds: list[int]) -> str:
    """What a refit on split seeds after the search's own tests on ('' with the search's seed alone)."""
    if len(seeds) < 2:
        return ""
    return (f"refits on split seeds {seeds[1]}-{seeds[-1]} test on rows that the search trained and validated on "
            f"(its split seed {seeds[0]}): each config was chosen with those rows in view, so their test MSE flatters "
            f"it; only seed {seeds[0]}'s test rows were unseen. For held-out comparisons use tabduel bench (outer "
            f"splits).")


def final_comparison(rows: list[dict[str, Any]], seeds: list[int], out: Path, tracker: Tracker, parent: str,
                     log: Any, scale: str = "model scale") -> dict[str, Any]:
    """Record the refits (label, family, seed, trial, valid_mse, test_mse, seconds) and compare the families with
    paired tests across seeds: a child run per refit, then a table, a plot and metrics on the parent run."""
    for row in rows:
        tracker.record_run(row["label"], parent,
                           {"tabduel.step": "search-refit", "family": row["family"], "model": row["family"],
                            "optuna.trial": row["trial"], "split_seed": row["seed"]},
                           {"split_seed": row["seed"], "trial": row["trial"]},
                           {k: row[k] for k in ("valid_mse", "test_mse", "seconds")})
    if not rows:
        return {"final": {}}
    note = seen_rows_note(seeds)
    if note:
        log.warning(note)
    table = compare.comparison_table(rows)
    _write_table(table, out / "final")
    if note:  # the table's readers see it too
        atomic_write_bytes(out / "final.md", (f"> {note}\n\n" + (out / "final.md").read_text()).encode())
    for name in ("final.csv", "final.md"):
        tracker.log_artifact(parent, out / name)
    final: dict[str, Any] = {"rows": rows}
    metrics = {}
    for family in {r["family"] for r in rows}:
        values = np.array([r["test_mse"] for r in rows if r["family"] == family])
        metrics[f"{family}_test_mse_mean"] = float(values.mean())
        metrics[f"{family}_test_mse_sd"] = float(values.std(ddof=1))
        first = [r["test_mse"] for r in rows if r["family"] == family and r["seed"] == seeds[0]]
        if first:
            metrics[f"{family}_test_mse"] = first[0]  # on the search's own split
    if {"mlp", "xgboost"} <= {r["family"] for r in rows}:
        paired = compare.paired_comparison(rows)
        final["paired"] = paired
        final["verdict"] = compare.verdict(paired)
        metrics.update({k: v for k, v in paired.items() if isinstance(v, (int, float)) and k != "n"})
        log.info(final["verdict"])
    title = f"Best config of each family refitted on {len(seeds)} split seeds"
    _atomic_plot(lambda p: plots.paired_seeds(table, p, DPI, title, scale), out / "final.png")
    tracker.log_artifact(parent, out / "final.png")
    tracker.log_metrics(parent, metrics)
    atomic_write_json(out / "final.json", {**final, "metrics": metrics, "seeds": seeds,
                                           "test_rows_unseen_by_search": seeds[:1], "note": note})
    tracker.log_artifact(parent, out / "final.json")
    final["final_metrics"] = metrics
    return {"final": final}

