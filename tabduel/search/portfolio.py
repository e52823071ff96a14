"""Portfolios of configurations that a union family (mlp_portfolio) tries first, and how one is learned.

A portfolio is a JSON file: {"family", "configs": [{"family": member, "params": its own params, ...}, ...],
"provenance": {...}}, its configs in the order a search tries them (cheapest first). The shipped one
(portfolios/mlp_portfolio.json) holds each member's paper defaults. `build` learns one from bench cells as TabRepo
does (Salinas & Erickson 2024, zero-shot HPO): every config tried on every task (dataset x outer seed) is a
candidate; its valid MSE is normalized per task (0: the task's best candidate, 1: the median, clipped at 1), and
configs are added greedily, each the one that most lowers the mean over tasks (each dataset weighing alike) of
the portfolio's best normalized error. `leave_one_dataset_out` says how a portfolio built without a dataset does on it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from tabduel.infra.errors import ConfigError

SHIPPED = Path(__file__).with_name("portfolios") / "mlp_portfolio.json"
DATASET_FIELD = "{dataset}"  # in search.portfolio: a bench cell's dataset name (one portfolio per held-out dataset)


def portfolio_of(path: str, dataset: str) -> str:
    """search.portfolio for one dataset: its {dataset} field filled in."""
    return path.replace(DATASET_FIELD, dataset)


def load_portfolio(path: str | Path = "") -> dict[str, Any]:
    """A portfolio file (the shipped one for ''), checked: ConfigError in one line naming the file and the entry at
    fault."""
    path = Path(path) if path else SHIPPED
    return _checked(path, _read(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"search.portfolio = {str(path)!r}: cannot read it ({exc.strerror})") from None


def _checked(path: Path, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
    configs = doc.get("configs") if isinstance(doc, dict) else None
    if not isinstance(configs, list) or not configs:
        raise ConfigError(f"{path}: no 'configs' list (a portfolio is {{\"configs\": [{{\"family\", \"params\"}}]}})")
    for i, c in enumerate(configs):
        if not isinstance(c, dict) or not isinstance(c.get("family"), str) or not isinstance(c.get("params"), dict):
            raise ConfigError(f"{path}: configs[{i}] needs a 'family' name and a 'params' object")
    return doc


def describe(path: str | Path = "") -> dict[str, Any]:
    """Which portfolio a search starts from: its file ('' the shipped one), sha256 and provenance (without its list
    of cells): kept in the study when it queues the portfolio."""
    where = Path(path) if path else SHIPPED
    data = _read(where)  # read once: its sha256 and provenance come from the same bytes
    doc = _checked(where, data)
    return {"file": str(path) or "shipped", "sha256": hashlib.sha256(data).hexdigest(),
            "provenance": {k: v for k, v in doc.get("provenance", {}).items() if k != "cells"}}


def check_portfolio(path: str | Path, records: Mapping[str, Any], s: Any) -> None:
    """ConfigError in one line unless every config of the portfolio names a member and is exactly a trial of the
    member's space under settings `s` (a param missing, outside its range, or not asked names the config); records:
    each member's search family record (search/families.py)."""
    import optuna

    from tabduel.search.space import ENCODINGS
    from tabduel.search.union import FAMILY, SEP, Prefixed, joined

    members = tuple(records)
    doc = load_portfolio(path)
    where = Path(path) if path else SHIPPED
    for i, c in enumerate(doc["configs"]):
        if c["family"] not in members:
            raise ConfigError(f"{where}: configs[{i}]: family {c['family']!r} is not one of: {', '.join(members)}")
        given = joined(c["family"], c["params"])
        fixed = optuna.trial.FixedTrial(given)
        try:
            with warnings.catch_warnings():  # Optuna only warns of a fixed value outside its range: refuse it
                warnings.simplefilter("error", UserWarning)
                records[c["family"]].suggest(Prefixed(fixed, c["family"]), s, 1, ENCODINGS)
        except (ValueError, KeyError, TypeError, ConfigError, UserWarning) as exc:
            raise ConfigError(f"{where}: configs[{i}] ({c['family']}): {exc}") from None
        extra = sorted(k.partition(SEP)[2] for k in set(given) - set(fixed.params) - {FAMILY})
        if extra:  # a study would drop them silently: the config would not run as written
            raise ConfigError(f"{where}: configs[{i}] ({c['family']}): {', '.join(extra)} not asked by its space "
                              f"with these settings (search.numeric, use_dropout, ...)")


# ---- learning one ---------------------------------------------------------------------------------------------------


def union_params(cell_family: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """A trial's params as a union trial's ({'family', '<member>.<param>'}): a union cell's as they are, a member
    cell's joined; None for a family that is no MLP family."""
    from tabduel.infra.config import MLP_PORTFOLIO, MLP_PORTFOLIO_MEMBERS
    from tabduel.search.union import joined

    if cell_family == MLP_PORTFOLIO:
        return dict(params)
    if cell_family in MLP_PORTFOLIO_MEMBERS:
        return joined(cell_family, params)
    return None


def key_of(params: dict[str, Any]) -> str:
    """A config's identity: its params as sorted JSON."""
    return json.dumps(params, sort_keys=True)


def trial_matrix(cells: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """From bench cells with trial logs: the tasks ((dataset, seed) of clean cells), the configs tried on every
    task, their valid MSE (tasks x configs; a config tried twice on a task: its best) and mean CPU-seconds."""
    seen: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    params_of: dict[str, dict[str, Any]] = {}
    sources = []
    for cell in cells:
        c = cell["cell"]
        if c.get("corruption", "none") != "none" or "trial_log" not in cell or union_params(c["family"], {}) is None:
            continue  # corrupted data, a cell without a trial log, or no MLP family's (xgboost, a peer)
        used = False
        for t in cell["trial_log"]:
            value = t.get("valid_mse")
            if value is None or not math.isfinite(value) or t.get("state") != "complete":
                continue  # failed, pruned or diverged: no score to learn from
            params = union_params(c["family"], t["params"])
            k = key_of(params)
            params_of[k] = params
            task = seen.setdefault((c["dataset"], int(c["seed"])), {})
            old = task.get(k)
            if old is None or value < old[0]:
                task[k] = (float(value), float(t.get("cpu_seconds") or math.nan))
            used = True
        if used:
            sources.append(cell["id"])
    tasks = sorted(seen)
    common = sorted(set.intersection(*(set(seen[t]) for t in tasks))) if tasks else []
    err = np.array([[seen[t][k][0] for k in common] for t in tasks], dtype=float).reshape(len(tasks), len(common))
    cost = np.array([[seen[t][k][1] for k in common] for t in tasks], dtype=float).reshape(len(tasks), len(common))
    mean_cost = np.nan_to_num(np.nanmean(cost, axis=0), nan=np.inf) if len(tasks) and len(common) else \
        np.zeros(len(common))  # a config whose cost no task recorded sorts last
    return {"tasks": tasks, "configs": [params_of[k] for k in common], "valid_mse": err, "cpu_seconds": mean_cost,
            "cells": sorted(sources)}


def normalized(err: np.ndarray) -> np.ndarray:
    """Each task's (row's) errors rescaled: 0 its best config, 1 its median, clipped to [0, 1] (TabRepo's); where
    the median is the best, any worse error is 1."""
    best = err.min(axis=1, keepdims=True)
    median = np.median(err, axis=1, keepdims=True)
    scaled = np.clip((err - best) / np.where(median > best, median - best, np.inf), 0.0, 1.0)
    return np.where((median <= best) & (err > best), 1.0, scaled)


def task_weights(tasks: list[tuple[str, int]]) -> np.ndarray:
    """Each task's weight in a mean over tasks: 1 / its dataset's tasks, so that every dataset counts alike."""
    counts: dict[str, int] = {}
    for d, _ in tasks:
        counts[d] = counts.get(d, 0) + 1
    return np.array([1.0 / counts[d] for d, _ in tasks])


def greedy(norm: np.ndarray, size: int, cost: np.ndarray | None = None, weights: np.ndarray | None = None
           ) -> list[int]:
    """Column indices of `size` configs picked one by one, each the one that most lowers the (weighted) mean over
    tasks of the picked configs' best normalized error (ties: the cheaper, then the first)."""
    picked: list[int] = []
    best = np.full(norm.shape[0], np.inf)
    cost = np.zeros(norm.shape[1]) if cost is None else np.nan_to_num(cost, nan=np.inf)
    weights = np.ones(norm.shape[0]) if weights is None else weights
    for _ in range(min(size, norm.shape[1])):
        scores = np.average(np.minimum(best[:, None], norm), axis=0, weights=weights)
        scores[picked] = np.inf
        order = np.lexsort((np.arange(len(scores)), cost, scores))
        j = int(order[0])
        picked.append(j)
        best = np.minimum(best, norm[:, j])
    return picked


def leave_one_dataset_out(matrix: dict[str, Any], size: int) -> dict[str, Any]:
    """Per dataset D: the portfolio built from the other datasets' tasks alone, and its mean normalized error on D's
    tasks (each task normalized among all candidates), beside the one built with D (in-sample) and the greedy's
    first pick without D alone (the best single config); nothing with fewer than 2 datasets."""
    tasks, norm = matrix["tasks"], normalized(matrix["valid_mse"])
    weights = task_weights(tasks)
    everywhere = greedy(norm, size, matrix["cpu_seconds"], weights)
    rows: dict[str, Any] = {}
    names = sorted({t[0] for t in tasks})
    for d in names if len(names) > 1 else []:  # one dataset: nothing to learn from without it
        inside = np.array([t[0] == d for t in tasks])
        picks = greedy(norm[~inside], size, matrix["cpu_seconds"], weights[~inside])
        rows[d] = {"picked": picks, "held_out_error": float(norm[inside][:, picks].min(axis=1).mean()),
                   "in_sample_error": float(norm[inside][:, everywhere].min(axis=1).mean()),
                   "greedy_first_error": float(norm[inside][:, picks[:1]].min(axis=1).mean())}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) if rows else math.nan
            for k in ("held_out_error", "in_sample_error", "greedy_first_error")}
    return {"size": size, "datasets": rows, "mean": mean}


def build(cells: list[dict[str, Any]], size: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """A portfolio of `size` configs learned from bench cells (greedy over every task), its configs cheapest first,
    with its leave-one-dataset-out evaluation; ConfigError when the cells share no config on every task."""
    if size < 1:
        raise ConfigError(f"--size = {size}: a portfolio needs at least 1 config")
    matrix = trial_matrix(cells)
    if not matrix["tasks"] or not matrix["configs"]:
        raise ConfigError(f"no config was tried on every task of the {len(matrix['cells'])} clean cell(s) with trial "
                          "logs: a portfolio needs cells whose searches tried the same configs (a bench of "
                          "mlp_portfolio with --search-portfolio CANDIDATES)")
    norm, weights = normalized(matrix["valid_mse"]), task_weights(matrix["tasks"])
    picks = greedy(norm, size, matrix["cpu_seconds"], weights)
    picks.sort(key=lambda j: (matrix["cpu_seconds"][j], j))
    from tabduel.search.union import split

    configs = []
    for j in picks:
        member, own = split(matrix["configs"][j])
        configs.append({"family": member, "params": own, "cpu_seconds": float(matrix["cpu_seconds"][j]),
                        "normalized_error": float(np.average(norm[:, j], weights=weights))})
    return {"family": "mlp_portfolio", "configs": configs,
            "provenance": {**provenance, "cells": matrix["cells"], "tasks": [list(t) for t in matrix["tasks"]],
                           "candidates": len(matrix["configs"])},
            "leave_one_dataset_out": leave_one_dataset_out(matrix, size)}


TRIAL_LOG_SUFFIX = ".trial_log.json.gz"  # a cell's trial log, gzipped beside it where it would make the cell big


def read_cell(path: str | Path) -> Any:
    """A cell's result JSON, its trial log read back from the gzipped file beside it where the writer moved it;
    ConfigError naming the file that is not JSON or the trial log that is missing."""
    f = Path(path)
    try:
        doc = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{f}: line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})") from None
    if isinstance(doc, dict) and "trial_log_file" in doc:
        log = f.parent / doc.pop("trial_log_file")
        try:
            doc["trial_log"] = json.loads(gzip.decompress(log.read_bytes()))
        except FileNotFoundError:
            raise ConfigError(f"{f}: its trial log {log.name} is missing beside it") from None
        except (OSError, EOFError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{log}: not a gzipped JSON trial log ({exc})") from None
    return doc


def read_cells(folders: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every bench cell JSON under the folders (a cell has 'cell' and 'id'); ConfigError naming a folder that is
    missing or holds none, or a file that is not JSON."""
    cells = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder of bench cells")
        found = 0
        for f in sorted(folder.rglob("*.json")):
            doc = read_cell(f)
            if isinstance(doc, dict) and "cell" in doc and "id" in doc:
                cells.append(doc)
                found += 1
        if not found:
            raise ConfigError(f"{folder}: holds no bench cell JSON (a bench's <name>/cells folder does)")
    return cells


def provenance(folders: Iterable[str | Path]) -> dict[str, Any]:
    """Where a learned portfolio comes from: the cell folders, the code's commit (where git knows it), the time."""
    import datetime
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"kind": "learned", "built_by": "tabduel portfolio build", "folders": [str(f) for f in folders],
            "commit": commit, "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def sample(n: int, seed: int, records: Mapping[str, Any], s: Any = None) -> dict[str, Any]:
    """Candidate configs: the shipped portfolio's (each member's defaults), then n drawn at random (Optuna's
    RandomSampler, seeded), the members in turn so that each gets its share, duplicates dropped."""
    import optuna

    from tabduel.infra.config import MLP_PORTFOLIO, SearchConfig
    from tabduel.search.space import ENCODINGS
    from tabduel.search.union import FAMILY, Prefixed, split

    if n < 0:
        raise ConfigError(f"--n = {n}: must not be negative")
    members = tuple(records)
    s = s or SearchConfig(study="candidates")
    configs = [{"family": c["family"], "params": c["params"]} for c in load_portfolio()["configs"]]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    keys = {key_of({"family": c["family"], **c["params"]}) for c in configs}
    for i in range(n):
        trial = study.ask()
        member = members[i % len(members)]
        records[member].suggest(Prefixed(trial, member), s, 1, ENCODINGS)
        _, own = split({FAMILY: member, **trial.params})
        if key_of({"family": member, **own}) not in keys:
            keys.add(key_of({"family": member, **own}))
            configs.append({"family": member, "params": own})
        study.tell(trial, 0.0)
    return {"family": MLP_PORTFOLIO, "configs": configs,
            "provenance": {"kind": "candidates", "built_by": f"tabduel portfolio sample --n {n} --seed {seed}"}}


def held_out(cells: list[dict[str, Any]], size: int, provenance: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{dataset: the portfolio built from every other dataset's cells}: what a bench of that dataset may start from
    without having seen it."""
    datasets = sorted({c["cell"]["dataset"] for c in cells if union_params(c["cell"]["family"], {}) is not None})
    if len(datasets) < 3:
        raise ConfigError(f"--lodo needs cells of 3 datasets or more (each held-out portfolio is learned from 2 or "
                          f"more), got {len(datasets)}: {', '.join(datasets)}")
    return {d: build([c for c in cells if c["cell"]["dataset"] != d], size, {**provenance, "held_out": d})
            for d in datasets}
