"""Start-up and overhead of the `tabduel` command, variants side by side; writes benchmarks/results/startup-<host>.json.

Each variant is the code of a git ref (tabduel/, tasks/, flows/, data/datasets/ of that commit), packaged as the
working tree packages it, installed as a wheel into its own fresh venv (third-party packages from this venv, no
editable finder), and run from a directory outside the repository, as a user runs it. Repeats are interleaved
across variants, so a busy machine slows each variant alike; medians are reported.

Rows, per variant:
  help              `tabduel --help`
  run_help          `tabduel run --help`
  cold              `tabduel run` in a fresh directory (no data/, no mlflow.db; Prefect's home already exists)
  warm              the same command again: every step reused
  force             `tabduel run --force` there: every step recomputed, the stores exist
  imports_warm      the slowest top-level imports of a warm run (python -X importtime; inflated by the profiler)
and once, shared: compute_s, the pure compute of the pipeline's steps (benchmarks/training.py's pipeline_compute
row, libraries already imported), so that force / compute_s is training.py's pipeline_overhead ratio.
Times are wall seconds and CPU seconds (user + system of the command and the children it waited for, which
include tabduel's local Prefect API server).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE = ("tabduel", "tasks", "flows", "data/datasets")  # what a ref contributes; the packaging is the working tree's
PACKAGING = ("pyproject.toml", "setup.py", "README.md")


def checkout(ref: str, dest: Path) -> Path:
    """The code of ref with the working tree's packaging files, at dest."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, *CODE], cwd=ROOT, capture_output=True, check=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".tar") as fh:
        fh.write(archive)
        fh.flush()
        with tarfile.open(fh.name) as tar:
            tar.extractall(dest, filter="data")
    for name in PACKAGING:
        shutil.copy2(ROOT / name, dest / name)
    return dest


def install(src: Path, venv: Path) -> Path:
    """Build src's wheel and install it into a fresh venv that sees this venv's packages; the venv's bin/."""
    dist = venv.parent / f"{venv.name}-dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz-dev-venv-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (wheel,) = dist.glob("tabduel-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return venv / "bin"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Wall and CPU seconds of one command (CPU: its own and its waited-for children's); exits if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{out[-4000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "output": out}


def top_imports(bin_dir: Path, args: list[str], cwd: Path, env: dict[str, str], n: int = 8) -> dict[str, float]:
    """Cumulative import seconds of the slowest imports a command makes itself (python -X importtime, depth 0)."""
    proc = subprocess.run([str(bin_dir / "python"), "-X", "importtime", str(bin_dir / "tabduel"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True)
    found: dict[str, float] = {}
    for line in proc.stderr.splitlines():  # depth 0: what the command itself imports, with all that it pulls in
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if m:
            found[m.group(2)] = max(found.get(m.group(2), 0.0), int(m.group(1)) / 1e6)
    return dict(sorted(((k, round(v, 3)) for k, v in found.items()), key=lambda kv: -kv[1])[:n])


def pure_compute(source: Path, tmp: Path) -> float:
    """Seconds of the pipeline's steps without Prefect or MLflow (training.py's pipeline_compute row)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from training import prepare_features  # noqa: E402 (benchmarks/ joins sys.path just above)

    feats = prepare_features(str(source), tmp / "features")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "training.py"), "--row", "pipeline_compute",
                          "--source", str(source), "--features", str(feats), "--device", "cpu", "--repeats", "1"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["figures"]["compute_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="before=HEAD~1,after=HEAD",
                        help="NAME=GITREF pairs, comma-separated [default: before=HEAD~1,after=HEAD]")
    parser.add_argument("--source", default="", help="raw CSV (default: a generated Seoul-shaped file, 60 days)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved cold/warm/force rounds per variant")
    parser.add_argument("--help-repeats", type=int, default=5, help="--help timings per variant and round")
    parser.add_argument("--out", default="", help="results JSON (default benchmarks/results/startup-<host>.json)")
    args = parser.parse_args()
    variants = dict(pair.split("=", 1) for pair in args.variants.split(","))
    refs = {name: subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip() for name, ref in variants.items()}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tabduel-startup-") as tmp_name:
        tmp = Path(tmp_name)
        if args.source:
            source = Path(args.source).resolve()
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from rawdata import write_raw  # noqa: E402 (tests/ joins sys.path just above)

            source = write_raw(tmp / "raw.csv")
        bins = {name: install(checkout(ref, tmp / name / "src"), tmp / name / "venv") for name, ref in refs.items()}
        base_env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
        envs = {name: {**base_env, "PREFECT_HOME": str(tmp / name / "prefect-home")} for name in refs}
        rows: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in refs}
        first: dict[str, dict[str, float]] = {}

        def record(name: str, row: str, result: dict[str, Any]) -> None:
            rows[name].setdefault(row, []).append({k: v for k, v in result.items() if k != "output"})

        for name, bin_dir in bins.items():  # Prefect's home and its database, once per variant (not measured twice)
            work = tmp / name / "first"
            work.mkdir()
            result = timed([str(bin_dir / "tabduel"), "run", "--source", str(source)], work, envs[name])
            first[name] = {k: v for k, v in result.items() if k != "output"}
            print(f"{name}: first run ever (fresh Prefect home) {result['wall_s']:.1f}s", flush=True)
        for i in range(args.repeats):
            for name, bin_dir in bins.items():
                tabduel, env = str(bin_dir / "tabduel"), envs[name]
                for _ in range(args.help_repeats):
                    record(name, "help", timed([tabduel, "--help"], tmp, env))
                    record(name, "run_help", timed([tabduel, "run", "--help"], tmp, env))
                work = tmp / name / f"work{i}"
                work.mkdir()
                cmd = [tabduel, "run", "--source", str(source)]
                record(name, "cold", timed(cmd, work, env))
                warm = timed(cmd, work, env)
                assert "reused 6 of 6 steps" in warm["output"], warm["output"][-2000:]
                record(name, "warm", warm)
                record(name, "force", timed(cmd + ["--force"], work, env))
                print(f"round {i + 1} {name}: " + ", ".join(f"{row} {rows[name][row][-1]['wall_s']:.2f}s"
                                                            for row in ("help", "cold", "warm", "force")), flush=True)
        imports = {name: top_imports(bin_dir, ["run", "--source", str(source)], tmp / name / "work0", envs[name])
                   for name, bin_dir in bins.items()}
        help_imports = {name: top_imports(bin_dir, ["--help"], tmp, envs[name]) for name, bin_dir in bins.items()}
        compute = pure_compute(source, tmp)

    figures = {name: {row: {"wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
                            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3)}
                      for row, runs in by_row.items()} for name, by_row in rows.items()}
    for name in figures:
        figures[name]["pipeline_overhead"] = round(figures[name]["force"]["wall_s"] / compute, 2)
    names = list(refs)
    ratios = {}
    if len(names) == 2:
        a, b = names
        ratios = {f"{row} {b}/{a}": {k: round(figures[b][row][k] / figures[a][row][k], 3) for k in ("wall_s", "cpu_s")}
                  for row in ("help", "run_help", "cold", "warm", "force")}
    report = {"benchmark": "startup", "host": socket.gethostname(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
              "load_average_at_end": os.getloadavg(), "source": str(source) if args.source else "generated, 60 days",
              "variants": refs, "repeats": args.repeats, "compute_s": compute,
              "pipeline_overhead_means": "force wall / compute_s (goal: <= 1.5)",
              "first_run_fresh_prefect_home": first, "figures": figures, "ratios": ratios,
              "imports_warm_run_s": imports, "imports_help_s": help_imports, "runs": rows,
              "total_s": round(time.perf_counter() - started, 1)}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"startup-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'row':<12}" + "".join(f"{n + ' wall':>14}{n + ' cpu':>14}" for n in names))
    for row in ("help", "run_help", "cold", "warm", "force"):
        print(f"{row:<12}" + "".join(f"{figures[n][row]['wall_s']:>14.2f}{figures[n][row]['cpu_s']:>14.2f}"
                                     for n in names))
    print(f"pure compute {compute:.2f}s; pipeline_overhead (force / compute): "
          + ", ".join(f"{n} {figures[n]['pipeline_overhead']}" for n in names))
    print(f"load average {os.getloadavg()}; wrote {out}")


if __name__ == "__main__":
    main()
