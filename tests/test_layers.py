"""The package's layers: each subpackage imports only those below it; the training engine nothing above it (only torch,
numpy and low-level infra)."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tabduel"
ENGINE = PACKAGE / "engine"
# What the engine may import of tabduel: itself, and the infra it stands on (settings, errors, CPU and devices).
ENGINE_MAY_IMPORT = ("tabduel.engine", "tabduel.infra.config", "tabduel.infra.settings", "tabduel.infra.model_sections",
                     "tabduel.infra.errors", "tabduel.infra.runtime")
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


# What each subpackage may import of tabduel, lowest first: infra < data < engine < models < search < bench;
# tabduel.settings (Config, built from the registry, with the dataset spec's defaults) stands between models and bench.
LAYERS = {
    "infra": ("tabduel.infra",),
    "data": ("tabduel.infra", "tabduel.data"),
    "engine": ENGINE_MAY_IMPORT,
    "models": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models"),
    "search": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models", "tabduel.search"),
    "bench": ("tabduel.infra", "tabduel.data", "tabduel.engine", "tabduel.models", "tabduel.settings", "tabduel.search",
              "tabduel.bench"),
}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_subpackage_imports_nothing_above_it(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        bad += [f"{where}:{line}: {name}" for line, name in _imports(path)
                if _within(name, ("tabduel",)) and name != "tabduel" and not _within(name, LAYERS[layer])]
    assert not bad, f"tabduel/{layer} imports from above it: " + "; ".join(bad)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (or typing.TYPE_CHECKING): never run, so no cycle."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The tabduel modules one file imports, at module level or in a function: `from a import b` imports a, and a.b
    when that is a module; relative imports resolved."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    """Every tabduel module and the tabduel modules it imports (itself left out)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _module_imports(path, set(paths)) - {name} for name, path in sorted(paths.items())}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph has none (depth-first search, colouring modules)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycle_between_tabduel_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_find_cycle_names_the_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_import_graph_sees_function_level_imports_and_skips_type_checking_ones():
    graph = import_graph()
    assert "tabduel.search.storage" in graph["tabduel.search.pruning"]  # module level
    assert "tabduel.engine.population" in graph["tabduel.search.space"]  # inside a function
    assert "tabduel.engine.data" not in graph["tabduel.models.registry"]  # under TYPE_CHECKING only
    assert all(not m.startswith(("torch", "numpy")) for m in itertools.chain.from_iterable(graph.values()))
