"""The wheel as a user gets it: built from the repository, installed without the source tree, run elsewhere.

The dev venv holds an editable install whose finder maps `tabduel` to this checkout, so these tests never import
tabduel from it: they build a wheel from a copy of the tree, install it into a fresh venv that reaches the dev
venv's third-party packages through a plain path line in a .pth (a path line adds the folder to sys.path but runs
none of the .pth files in it, so the editable finder is not installed), and run its `tabduel` script from a
directory outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from rawdata import write_raw

ROOT = Path(__file__).resolve().parents[1]


def _source_files() -> list[str]:
    """The checkout's files as a clean clone would have them (tracked, plus untracked ones git does not ignore)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
        return [f for f in out.split("\0") if f and (ROOT / f).is_file()]
    skip = {".git", ".venv", "build", "__pycache__", ".pytest_cache"}
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)
            and not p.relative_to(ROOT).parts[0].endswith(".egg-info")]


def copy_tree(dest: Path) -> Path:
    """A copy of the checkout at dest (so the build leaves no build/ or egg-info in the repository)."""
    for name in _source_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """Build the wheel of the tree at src into out (setuptools from this venv: no download) and return its path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("tabduel-*.whl")
    return wheel


def expected_members(src: Path) -> set[str]:
    """Paths the wheel must hold: every .py of the packages, as installed names, and the datasets' TOML specs."""
    layout = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    roots = {"tabduel": "tabduel", **layout}
    members = set()
    for name, folder in roots.items():
        base = src / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base)
            if "__pycache__" not in rel.parts:
                members.add("/".join([*name.split("."), *rel.parts]))
    members |= {f"tabduel/datasets/{p.name}" for p in (src / layout["tabduel.datasets"]).glob("*.toml")}
    return members


def wheel_members(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if ".dist-info/" not in n}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    return build_wheel(copy_tree(tmp / "src"), tmp / "dist")


def test_wheel_holds_every_module_and_the_dataset_specs(wheel):
    expected = expected_members(ROOT)
    assert {"tabduel/engine/net.py", "tabduel/data/features.py", "tabduel/models/registry.py", "tabduel/search/loop.py",
            "tabduel/bench/cells.py", "tabduel/infra/config.py", "tabduel/tasks/train.py", "tabduel/flows/pipeline.py",
            "tabduel/datasets/seoul_bike.toml"} <= expected
    missing = expected - wheel_members(wheel)
    assert not missing, f"the wheel lacks {sorted(missing)}"


def test_a_new_subpackage_ships_without_an_edit(tmp_path):
    src = copy_tree(tmp_path / "src")
    for folder in ("tabduel/probe_pkg/inner", "tasks/probe_pkg"):
        (src / folder).mkdir(parents=True)
        for level in (src / folder, (src / folder).parent):
            (level / "__init__.py").touch()
        (src / folder / "mod.py").write_text("VALUE = 1\n")
    members = wheel_members(build_wheel(src, tmp_path / "dist"))
    assert {"tabduel/probe_pkg/inner/mod.py", "tabduel/tasks/probe_pkg/mod.py"} <= members
    assert expected_members(src) <= members


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv with the wheel installed (not editable) and the dev venv's packages, minus its editable finder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # A plain path line: the dev site-packages joins sys.path, and its .pth files (the editable finder) do not run.
    Path(site, "zz-dev-venv-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, text=True)
    return python


@pytest.mark.slow
def test_installed_wheel_runs_the_pipeline_and_a_quick_search_outside_the_repo(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", wheel)
    script = tmp_path / "venv" / "bin" / "tabduel"
    assert script.read_text().splitlines()[0] == f"#!{python}"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    proc = subprocess.run(
        [str(python), "-c", "import tabduel, tabduel.engine.net, tabduel.models.mlp, tabduel.data.dataset as d; "
         "print(tabduel.__file__); print(d.builtin_spec_path())"],
        cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"the installed package does not import:\n{proc.stderr[-3000:]}"
    package, spec = map(Path, proc.stdout.split("\n")[:2])
    assert not package.is_relative_to(ROOT), package
    assert package.is_relative_to(tmp_path / "venv"), package
    assert spec.is_relative_to(tmp_path / "venv") and spec.is_file(), spec

    raw = write_raw(work / "raw.csv")
    common = ["--source", str(raw), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]

    def tabduel(*args: str) -> str:
        proc = subprocess.run([str(script), *args, *common], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"tabduel {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    out = tabduel("run", "--mlp-epochs", "5")
    assert "reused 0 of 6 steps" in out, out[-2000:]
    (ingested,) = (work / "data" / "ingest").glob("*/dataset.toml")
    assert ingested.read_bytes() == spec.read_bytes()

    out = tabduel("search", "--quick", "--trials", "2", "--refit-seeds", "2", "--mlp-epochs", "10")
    assert "best mlp" in out and "best xgboost" in out, out[-2000:]
    assert (work / "data" / "search" / "seoul-bike" / "final.md").is_file()
