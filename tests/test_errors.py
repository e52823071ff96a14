"""Every error is one line, and a bad setting is refused (exit 2) before anything slow starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rawdata import raw_rows, write_raw
from tabduel.cli import main
from tabduel.settings import MODEL_KINDS

# Runs the real CLI in a fresh interpreter, then reports what it left behind: any child process it ran (a reaped
# child shows in RUSAGE_CHILDREN; a live one in waitpid), and whether Prefect was imported. The local Prefect API
# server is such a child, so a settings error that arrives before it starts leaves none.
PROBE = """
import json, os, resource, sys
from tabduel.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
try:
    os.waitpid(-1, os.WNOHANG)
    live = True
except ChildProcessError:
    live = False
print(json.dumps({"code": code, "children_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "live_children": live, "prefect": "prefect" in sys.modules}))
"""


def probe(tmp_path: Path, *args: str) -> tuple[dict, list[str]]:
    """Run `tabduel ARGS` in tmp_path with no Prefect server configured; (what it left, its stderr lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile naming a server: the CLI would start one
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)
    *printed, report = proc.stdout.splitlines()
    assert not printed, printed
    return json.loads(report), proc.stderr.splitlines()


def files(tmp_path: Path) -> dict[str, Path]:
    """Inputs with one fault each."""
    (tmp_path / "a-directory").mkdir()
    spec = tmp_path / "broken-spec.toml"
    spec.write_text("[source\nurl = 1\n")
    unknown_key = tmp_path / "unknown-key.toml"
    unknown_key.write_text("[mlp]\nepochs = 5\nlrr = 0.1\n")
    unknown_section = tmp_path / "unknown-section.toml"
    unknown_section.write_text("[mlp]\nlr = 0.01\n[xgbost]\nmax_depth = 3\n")
    return {"dir": tmp_path / "a-directory", "missing": tmp_path / "missing.csv", "spec": spec,
            "unknown_key": unknown_key, "unknown_section": unknown_section}


MLP_KEYS = ("hidden, activation, optimizer, lr, weight_decay, dropout, batch_size, epochs, patience, seed, device, "
            "population, batch_order, threads, max_seconds, time_clock")
# The built-in model sections first, then any a family module declares (tabduel.models.registry).
SECTIONS = ", ".join(("pipeline", "tracking", "ingest", "features", *MODEL_KINDS, "evaluate", "search", "bench"))
assert MODEL_KINDS[:9] == ("mlp", "xgboost", "linear", "realmlp", "tabm", "peer_realmlp", "peer_tabm", "peer_lgbm",
                           "peer_catboost")

# (command line, the one line expected on stderr); {name} is a path from files().
VIOLATIONS = [
    (["run", "--source", "{dir}"], "ingest.source = '{dir}': is a directory, not a file"),
    (["ingest", "--source", "{missing}"], "ingest.source = '{missing}': file not found"),
    (["run", "--dataset", "{missing}"], "dataset spec not found: {missing}"),
    (["ingest", "--dataset", "{dir}"], "dataset spec {dir} is a directory, not a TOML file"),
    (["run", "--mlp-device", "gpu"], "mlp.device = 'gpu': is not one of: auto, cpu, cuda, cuda:N, mps"),
    (["train", "xgboost", "--device", "mps"], "xgboost.device = 'mps': is not one of: auto, cpu, cuda, cuda:N"),
    (["search", "--more-trials", "-1"], "--more-trials = -1: must not be negative"),
    (["run", "--mlp-l", "-1"], "unrecognized argument --mlp-l for `tabduel run` (did you mean --mlp-lr?)"),
    (["train", "mlp", "--populaton", "4"],
     "unrecognized argument --populaton for `tabduel train mlp` (did you mean --population?)"),
    (["run", "--config", "{unknown_key}"],
     "{unknown_key}: unknown setting 'mlp.lrr' (did you mean 'lr'?) in [mlp]; allowed in [mlp]: " + MLP_KEYS),
    (["run", "--config", "{unknown_section}"],
     "{unknown_section}: unknown section [xgbost] (did you mean 'xgboost'?); the sections are: " + SECTIONS),
    (["run", "--config", "{dir}"], "config file {dir} is a directory, not a file"),
    (["features", "--data-dir", "{spec}"], "pipeline.data_dir = '{spec}': is a file, not a directory"),
    (["run", "stray"], "unrecognized argument 'stray' for `tabduel run` (see `tabduel run --help`)"),
    (["serve", "--cron", "every night"],
     "--cron 'every night' is not a valid cron expression (2 field(s); five fields: minute hour day-of-month month "
     "day-of-week, e.g. \"0 3 * * *\")"),
    (["serve", "--cron", "0 25 * * *"],
     "--cron '0 25 * * *' is not a valid cron expression (hour '25' is outside 0-23; five fields: minute hour "
     "day-of-month month day-of-week, e.g. \"0 3 * * *\")"),
]


@pytest.mark.parametrize("args,expected", VIOLATIONS, ids=[" ".join(a) for a, _ in VIOLATIONS])
def test_a_bad_setting_is_one_line_and_exit_2_before_any_server_starts(tmp_path, args, expected):
    paths = files(tmp_path)
    left, stderr = probe(tmp_path, *(a.format(**paths) for a in args))
    assert stderr == [f"tabduel: error: {expected.format(**paths)}"]
    assert left == {"code": 2, "children_rss": 0, "live_children": False, "prefect": False}
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_broken_dataset_spec_is_refused_before_any_server_starts(tmp_path):
    spec = files(tmp_path)["spec"]
    left, stderr = probe(tmp_path, "run", "--dataset", str(spec))
    assert len(stderr) == 1 and stderr[0].startswith(f"tabduel: error: {spec}: invalid TOML")
    assert left == {"code": 2, "children_rss": 0, "live_children": False, "prefect": False}


def test_an_absent_gpu_is_refused_before_any_server_starts(tmp_path):
    left, stderr = probe(tmp_path, "train", "mlp", "--device", "cuda:99")  # no machine here has 100 GPUs
    assert len(stderr) == 1 and stderr[0].startswith("tabduel: error: mlp.device: device 'cuda:99' asked for, but "
                                                     "torch sees")
    assert left == {"code": 2, "children_rss": 0, "live_children": False, "prefect": False}


def test_the_probe_sees_the_server_of_a_command_that_gets_that_far(tmp_path):
    """The control of the tests above: an error met inside a flow comes after the API server ran."""
    left, stderr = probe(tmp_path, "features")
    assert [e for e in stderr if e.startswith("tabduel: error: ")] == [
        f"tabduel: error: no ingest output of dataset 'seoul-bike' under {Path('data') / 'ingest'}; run `tabduel "
        "ingest` first"]
    assert left["code"] == 1 and left["children_rss"] > 0 and left["prefect"]


def test_a_failed_pipeline_run_says_why(tmp_path, prefect_api, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = raw_rows(days=20, seed=5)
    bad[30][2] = "24"
    source = write_raw(tmp_path / "bad.csv", bad)
    assert main(["run", "--source", str(source)]) == 1
    (line,) = [e for e in capsys.readouterr().err.splitlines() if e.startswith("tabduel: error: ")]
    error = line[len("tabduel: error: "):]
    assert error.startswith(f"{source}:32: column 'hour' (Hour): value '24'")

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("seoul-bike").experiment_id])
    assert run.info.run_name == "pipeline" and run.info.status == "FAILED"
    assert run.data.tags["tabduel.error"] == error
    assert run.data.tags["mlflow.note.content"] == error
