"""Any dataset spec, not only Seoul Bike: names from the spec, datasets side by side in one data dir, labels from the
spec, and models whose loss or predictions stop being finite failing in one line (real Prefect, MLflow, torch,
XGBoost)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tabduel.cli import main
from tabduel.engine.data import Data
from tabduel.infra.config import TrackingConfig, default_models
from tabduel.infra.errors import DivergedError, TrainingError
from tabduel.models import registry
from tabduel.settings import Config, with_dataset_defaults

FAST = ["--xgboost-n-estimators", "50", "--evaluate-dpi", "30", "--mlp-epochs", "20"]
KIND_TAG = "mlflow.experimentKind"


def write_toy(folder: Path, name: str, rows: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """A comma-separated file with no date (two numbers, a category, a positive target) and its spec."""
    rng = np.random.default_rng(seed)
    colours = rng.choice(["red", "green", "blue"], rows)
    x1, x2 = rng.normal(size=rows), rng.integers(0, 10, rows)
    y = 20 + 3 * x1 + x2 + np.select([colours == "red", colours == "green"], [2.0, -1.0], 0.0) + rng.normal(0, 0.5,
                                                                                                           rows)
    csv = folder / f"{name}.csv"
    lines = ["x1,x2,colour,mpg"] + [f"{a:.4f},{b},{c},{d:.3f}" for a, b, c, d in zip(x1, x2, colours, y)]
    csv.write_text("\n".join(lines) + "\n")
    spec = folder / f"{name}.toml"
    spec.write_text(f'''name = "{name}"
description = "generated, no date"

[target]
column = "mpg"
label = "fuel economy"
unit = "miles per gallon"

[features]
inputs = ["x1", "x2", "colour"]

[[columns]]
raw = "x1"
name = "x1"
type = "float"

[[columns]]
raw = "x2"
name = "x2"
type = "int"

[[columns]]
raw = "colour"
name = "colour"
type = "category"
levels = ["red", "green", "blue"]

[[columns]]
raw = "mpg"
name = "mpg"
type = "float"
''')
    return csv, spec


def client_for(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("tabduel: error:")]


def svg_texts(path: Path) -> list[str]:
    """The texts of a plot saved as SVG (matplotlib writes each text as a comment beside its glyphs)."""
    return re.findall(r"<!-- (.*?) -->", path.read_text())


def test_no_date_spec_runs_end_to_end_in_its_own_experiment(tmp_path, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    csv, spec = write_toy(tmp_path, "toy-a")
    default = default_models()[0]  # a spec that names no models gets the default MLP family, not NN5
    assert main(["run", "--source", str(csv), "--dataset", str(spec), *FAST, f"--{default}-epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert f"| {default} |" in out and "| mlp |" not in out and "bike" not in out.lower()

    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("toy-a")  # the spec's name, not seoul-bike
    assert exp is not None and client.get_experiment_by_name("seoul-bike") is None
    assert exp.tags[KIND_TAG] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/predicted_vs_observed_by_split.png" in plots and "plots/daily_totals.png" not in plots

    eval_dir = Path(json.loads((tmp_path / "data" / "evaluate" / "latest" / "toy-a.json").read_text())["path"])
    predictions = pd.read_parquet(eval_dir / "predictions.parquet")
    assert set(predictions["split"]) == {"train", "valid", "test"}
    assert np.isfinite(predictions[[f"pred_{kind}" for kind in default_models()]].to_numpy()).all()


def test_two_datasets_in_one_data_dir_keep_their_own_latest_outputs(tmp_path, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    csv_a, spec_a = write_toy(tmp_path, "toy-a", rows=200, seed=1)
    csv_b, spec_b = write_toy(tmp_path, "toy-b", rows=240, seed=2)
    for csv, spec in ((csv_a, spec_a), (csv_b, spec_b)):  # A first, then B
        assert main(["ingest", "--source", str(csv), "--dataset", str(spec)]) == 0
        assert main(["features", "--dataset", str(spec)]) == 0
    capsys.readouterr()

    assert main(["train", "mlp", "--mlp-epochs", "3"]) == 1  # the built-in dataset has no outputs here
    (line,) = errors(capsys.readouterr().err)
    assert "no features output of dataset 'seoul-bike'" in line and "toy-a, toy-b" in line

    assert main(["train", "mlp", "--mlp-epochs", "3", "--dataset", str(spec_a)]) == 0
    features_a = json.loads((tmp_path / "data" / "features" / "latest" / "toy-a.json").read_text())["path"]
    model = json.loads((tmp_path / "data" / "models" / "mlp" / "latest" / "toy-a.json").read_text())["path"]
    meta = json.loads((Path(model) / "meta.json").read_text())
    assert meta["features_dir"] == features_a and json.loads(
        (Path(features_a) / "manifest.json").read_text())["rows"]["train"] == 120  # 60% of A's 200 rows
    assert not (tmp_path / "data" / "models" / "mlp" / "latest" / "toy-b.json").exists()

    client = client_for(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("toy-a").experiment_id])
    assert run.data.tags["model"] == "mlp" and run.info.status == "FINISHED"
    assert client.get_experiment_by_name("toy-b") is None  # ingest and features open no MLflow run


def test_experiment_and_study_default_to_the_spec_name(tmp_path):
    _, spec = write_toy(tmp_path, "toy-c", rows=10)
    cfg = with_dataset_defaults(Config.from_dict({"ingest": {"dataset": str(spec)}}))
    assert (cfg.tracking.experiment, cfg.search.study) == ("toy-c", "toy-c")
    assert with_dataset_defaults(Config()).tracking.experiment == "seoul-bike"
    mine = with_dataset_defaults(Config.from_dict({"ingest": {"dataset": str(spec)}, "tracking": {"experiment": "x"},
                                                "search": {"study": "s"}}))
    assert (mine.tracking.experiment, mine.search.study) == ("x", "s")


def test_models_default_to_the_spec_s_then_to_the_default_family(tmp_path):
    """The built-in Seoul spec names the original analysis's models; a spec naming none gets default_models() (by
    device); a spec's `models` and then the settings' win over that."""
    _, spec = write_toy(tmp_path, "toy-d", rows=10)
    models = lambda data: with_dataset_defaults(Config.from_dict(data)).pipeline.models  # noqa: E731
    assert models({}) == ("mlp", "xgboost", "linear")
    assert models({"ingest": {"dataset": str(spec)}}) == default_models()
    assert default_models(cuda=False) == ("realmlp", "xgboost", "linear")  # minutes on a CPU
    assert default_models(cuda=True) == ("tabm", "xgboost", "linear")  # the best at defaults, given a GPU
    named = spec.with_name("named.toml")
    named.write_text(spec.read_text().replace('name = "toy-d"', 'name = "toy-d"\nmodels = ["tabm", "linear"]'))
    assert models({"ingest": {"dataset": str(named)}}) == ("tabm", "linear")
    assert models({"ingest": {"dataset": str(named)}, "pipeline": {"models": ["xgboost"]}}) == ("xgboost",)


def test_an_existing_experiment_gets_the_kind_tag(tmp_path):
    from tabduel.infra.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("made-before")
    assert KIND_TAG not in client.get_experiment(old).tags
    tracker = Tracker(TrackingConfig(experiment="made-before", tracking_uri=uri))
    assert tracker.experiment_id == old
    assert client.get_experiment(old).tags[KIND_TAG] == "custom_model_development"


def test_a_diverging_mlp_fails_in_one_line_uncached_and_its_run_failed(tmp_path, prefect_api, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv, spec = write_toy(tmp_path, "toy-d", rows=200)
    assert main(["ingest", "--source", str(csv), "--dataset", str(spec)]) == 0
    assert main(["features", "--dataset", str(spec)]) == 0
    proc = subprocess.run([sys.executable, "-m", "tabduel", "train", "mlp", "--dataset", str(spec), "--mlp-lr", "1e6",
                           "--mlp-epochs", "50"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = errors(proc.stderr)
    assert re.search(r"MLP training diverged at epoch \d+ of 50 .*--mlp-lr", line), line
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((tmp_path / "data" / "models").rglob("model.pt"))  # nothing cached
    assert not (tmp_path / "data" / "models" / "mlp" / "latest").exists()
    client = client_for(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("toy-d").experiment_id])
    assert run.info.status == "FAILED" and "train_loss" not in run.data.metrics


def _data(rows: int = 200, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    y = (x @ np.array([1.0, 2.0, 3.0])).astype(np.float32)
    return Data(x, y, x[: rows // 2], y[: rows // 2], ("a", "b", "c"))


def test_population_drops_diverged_members_and_fails_when_all_diverge():
    from tabduel.engine import population
    from tabduel.infra.config import MLPConfig

    cfg = MLPConfig(epochs=6, patience=3, batch_size=50)
    data = _data()
    fit = population.fit(data, cfg, [population.Member(1, 0.05), population.Member(2, 1e6)])
    assert fit.info["diverged_epoch"][0] == 0 and fit.info["diverged_epoch"][1] > 0
    assert fit.info["epochs_run"][0] == 6 and fit.info["epochs_run"][1] == fit.info["diverged_epoch"][1]
    with pytest.raises(DivergedError, match="all 2 population members diverged at epoch"):
        population.fit(data, cfg, [population.Member(1, 1e6), population.Member(2, 1e7)])


def test_xgboost_errors_are_one_line():
    from tabduel.infra.config import XGBoostConfig
    from tabduel.models import xgb

    data = _data()
    y = data.y_train.copy()
    y[5] = np.inf
    with pytest.raises(TrainingError) as caught:
        xgb.fit(Data(data.x_train, y, data.x_valid, data.y_valid, data.features), XGBoostConfig(n_estimators=5))
    assert str(caught.value) == "XGBoost failed: Label contains NaN, infinity or a value too large."
    with pytest.raises(DivergedError, match=r"XGBoost diverged at round 1: .*--xgboost-learning-rate"):
        xgb.fit(data, XGBoostConfig(n_estimators=5, learning_rate=1e30))


@pytest.mark.parametrize("kind", registry.kinds())
def test_non_finite_predictions_are_refused(kind):
    from tabduel.models.training import check_finite

    check_finite(kind, np.array([1.0, 2.0], dtype=np.float32))
    hint = registry.family(kind).hint
    with pytest.raises(DivergedError, match=re.escape(f"{kind}: 1 of 3 predictions on the valid split are NaN or "
                                                      f"infinite; the model is not kept ({hint})")):
        check_finite(kind, np.array([1.0, np.nan, 2.0], dtype=np.float32))


def test_plot_labels_come_from_the_spec(tmp_path):
    from tabduel.data.labels import original_scale, scale_label
    from tabduel.infra import plots

    scale = scale_label("fuel economy (miles per gallon)", "log1p")
    assert scale == "log(1 + y), y = fuel economy (miles per gallon)"
    assert scale_label("fuel economy", "none") == "fuel economy"
    z = np.log1p(np.array([1.0, 3.0, 7.0, 15.0]))
    frame = pd.DataFrame({"row": range(4), "split": ["train", "train", "valid", "test"], "observed": z,
                          "pred_mlp": z + 0.01})
    back = original_scale(frame, ["mlp"], "log1p")
    np.testing.assert_allclose(back["observed"], [1.0, 3.0, 7.0, 15.0])

    plots.by_split(back, ["mlp"], "fuel economy (miles per gallon)", tmp_path / "split.svg", 30)
    texts = svg_texts(tmp_path / "split.svg")
    assert "fuel economy (miles per gallon): predicted vs observed by split" in texts
    assert {"train (2 rows)", "valid (1 rows)", "test (1 rows)"} <= set(texts)

    dates = pd.to_datetime(["2020-01-01 01:00", "2020-01-01 02:00", "2020-01-02 00:00", "2020-01-03 00:00"])
    plots.daily_totals(dates, back["observed"].to_numpy(), {"mlp": back["pred_mlp"].to_numpy()}, "rented bikes",
                       "bikes per hour", tmp_path / "daily.svg", 30)
    texts = svg_texts(tmp_path / "daily.svg")
    assert "rented bikes per day, observed and predicted" in texts
    assert "rented bikes, summed per day (of bikes per hour)" in texts

    plots.residuals(frame, "mlp", tmp_path / "res.svg", 30, scale)
    assert f"fitted: {scale}" in svg_texts(tmp_path / "res.svg")
    every = " ".join(svg_texts(tmp_path / "split.svg") + svg_texts(tmp_path / "res.svg")).lower()
    assert "bike" not in every and "log10" not in every


def test_no_nvidia_device_node_means_no_cuda_without_importing_torch(tmp_path):
    import subprocess
    import sys

    probe = ("import sys; from pathlib import Path; from tabduel.infra.runtime import cuda_available; "
             f"print(cuda_available(Path({str(tmp_path)!r})), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]  # an empty /dev: no CUDA, answered without importing torch (~1.5 s)
