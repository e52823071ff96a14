"""What of each step's output goes to MLflow, and where; all through Tracker and explicit run ids."""

from __future__ import annotations

import csv
from pathlib import Path

from tabduel.data.features import load_xy
from tabduel.infra.config import flatten
from tabduel.infra.store import read_json
from tabduel.infra.tracking import MODEL_KEY_TAG, Tracker
from tabduel.models.registry import family

SERIES_NAMES = {"train_loss", "valid_loss", "round_train_rmse", "round_valid_rmse"}
TIME_LIMITED_TAG = "tabduel.time_limited"


def log_model_run(tracker: Tracker, run_id: str, kind: str, model_dir: str | Path, reused: bool) -> None:
    """Log a saved model's settings, training history, facts and MLflow model to run_id."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / "meta.json")
    features_dir = Path(meta["features_dir"])
    manifest = read_json(features_dir / "manifest.json")
    params = {**meta["config"], **{f"features.{k}": v for k, v in flatten(meta["features_config"]).items()},
              "n_features": len(manifest["features"])}
    tracker.log_params(run_id, flatten(params))
    tags = {"tabduel.model_dir": str(model_dir), MODEL_KEY_TAG: meta["key"],
            "source_sha256": meta.get("source_sha256", "")}
    if reused:
        tags["tabduel.reused_from_run"] = meta.get("run_id", "")
    if meta["info"].get("time_limited"):  # the fit reached its time limit and kept its best epoch or round so far
        tags[TIME_LIMITED_TAG] = f"stopped at {meta['config'].get('max_seconds', 0):g}s"
    tracker.set_tags(run_id, tags)
    history = read_json(model_dir / "history.json")
    tracker.log_series(run_id, {k: v for k, v in history.items() if k in SERIES_NAMES})
    facts = {k: float(v) for k, v in meta["info"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tracker.log_metrics(run_id, facts)
    if (model_dir / "members.csv").exists():  # a population: per-member metrics, stepped by member index
        with (model_dir / "members.csv").open(newline="") as fh:
            members = list(csv.DictReader(fh))
        tracker.log_series(run_id, {"member_valid_mse": [float(m["valid_mse"]) for m in members],
                                    "member_best_epoch": [float(m["best_epoch"]) for m in members]}, first_step=0)
        tracker.log_artifact(run_id, model_dir / "members.csv", "population")
        tracker.log_artifact(run_id, model_dir / "members.png", "population")
    known = tracker.find_logged_model(meta["key"]) if reused else None
    if known:  # the same model is already in MLflow: link it to this run instead of uploading it again
        tracker.link_model(run_id, known)
    else:
        fam = family(kind)
        model = fam.load(model_dir)
        x, _ = load_xy(str(features_dir / "valid.parquet"), manifest, fam.native_missing)
        example = x[:5]
        tracker.log_model(run_id, kind, fam.flavour, meta["key"], model, example, fam.predict(model, example))
    tracker.log_artifact(run_id, features_dir / "manifest.json")


def ingest_metrics(info: dict) -> dict[str, float]:
    """Row counts and missing cells per column of an ingest, as MLflow metrics."""
    out = {f"ingest_{k}": float(info[k]) for k in ("rows", "rows_read", "blank_rows", "dropped_rows") if k in info}
    out.update({f"missing_cells.{name}": float(v["cells"]) for name, v in info.get("missing", {}).items()})
    return out


def log_ingest(tracker: Tracker, run_id: str, ingest_dir: str | Path) -> None:
    """The source's sha256 as a tag, and the ingest's row and missing-cell counts as metrics, on run_id."""
    info = read_json(Path(ingest_dir) / "ingest.json")
    tracker.set_tags(run_id, {"source_sha256": info["source_sha256"], "dataset": info.get("dataset", ""),
                              "missing_policies": ", ".join(f"{k}: {v['policy']}"
                                                            for k, v in info.get("missing", {}).items())})
    tracker.log_metrics(run_id, ingest_metrics(info))


def log_evaluation(tracker: Tracker, eval_dir: str | Path, parent: str | None, runs: dict[str, str]) -> None:
    """Metrics and per-model plots to each model's run; the comparison and daily plot to the parent."""
    eval_dir = Path(eval_dir)
    metrics: dict[str, dict[str, float]] = read_json(eval_dir / "metrics.json")
    plots = eval_dir / "plots"
    for kind, run_id in runs.items():
        tracker.log_metrics(run_id, metrics[kind])
        for png in sorted(plots.glob(f"*_{kind}.png")):
            tracker.log_artifact(run_id, png, "plots")
    if parent:
        flat = {f"{kind}_{name}": value for kind, values in metrics.items() for name, value in values.items()}
        tracker.log_metrics(parent, flat)
        for name in ("comparison.csv", "comparison.md"):
            tracker.log_artifact(parent, eval_dir / name)
        for png in sorted(plots.glob("*.png")):
            tracker.log_artifact(parent, png, "plots")

