"""The package's layers: each subpackage imports only those below it; the training engine nothing above it (only torch,
numpy and low-level infra)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tabduel"
ENGINE = PACKAGE / "engine"
# What the engine may import of tabduel: itself, and the infra it stands on (settings, errors, CPU and devices).
ENGINE_MAY_IMPORT = ("tabduel.engine", "tabduel.infra.config", "tabduel.infra.errors", "tabduel.infra.runtime")
# Packages above the engine (and services it must never touch): none of them may be loaded by importing it.
ABOVE = ("tabduel.models", "tabduel.search", "tabduel.bench", "tabduel.data", "tabduel.flows", "tabduel.tasks",
         "tabduel.cli", "tabduel.reporting", "mlflow", "prefect", "optuna")
ENGINE_MODULES = sorted(f"tabduel.engine.{p.stem}" for p in ENGINE.glob("*.py") if p.stem != "__init__")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in a file, in function bodies too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_engine_source_imports_only_itself_and_low_level_infra():
    bad = [f"{path.name}:{line}: {name}" for path in sorted(ENGINE.glob("*.py")) for line, name in _imports(path)
           if _within(name, ("tabduel",)) and not _within(name, ENGINE_MAY_IMPORT)]
    assert not bad, "the engine imports from above it: " + "; ".join(bad)


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_importing_an_engine_module_loads_nothing_above_it(module):
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert module in loaded
    above = [m for m in loaded if _within(m, ABOVE)]
    assert not above, f"importing {module} loaded {above}"
    ours = [m for m in loaded if _within(m, ("tabduel",)) and m not in ("tabduel", "tabduel.infra")]
    assert all(_within(m, ENGINE_MAY_IMPORT) for m in ours), ours


# What each subpackage may import of tabduel, lowest first: infra < data < engine < models < search < bench.
LAYERS = {
    "infra": ("tabduel.infra",),
    "data": ("tabduel.infra", "tabduel.data"),
    "engine": ENGINE_MAY_IMPORT,
    "models": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models"),
    "search": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models", "tabduel.search"),
    "bench": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models", "tabduel.search", "tabduel.bench"),
}
# config.py's dataset_name reads the dataset spec, inside the function, to name an empty experiment and study.
EXCEPTIONS = {("infra/config.py", "tabduel.data.dataset")}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_subpackage_imports_nothing_above_it(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        bad += [f"{where}:{line}: {name}" for line, name in _imports(path)
                if _within(name, ("tabduel",)) and name != "tabduel" and not _within(name, LAYERS[layer])
                and (where, name) not in EXCEPTIONS]
    assert not bad, f"tabduel/{layer} imports from above it: " + "; ".join(bad)
