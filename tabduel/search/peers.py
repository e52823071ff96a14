"""The peers (tabduel/models/peers.py) as search and bench families: their tuned defaults, one fit per trial.

A peer's "search" tunes nothing: each trial fits the published defaults with a new seed (the trial's only parameter,
drawn by the study's seeded sampler), until the budget is spent, and the best on valid is the one refitted. So a
bench puts RealMLP-TD, TabM, LightGBM and CatBoost beside tabduel's own families on the same outer splits, inputs
and CPU-second budgets. They read the ordinal features variant, as XGBoost does and as tabduel's RealMLP and TabM
families were measured: the same numeric matrices, every column numeric.

A peer's fit takes no time limit, so each runs in a child process (tabduel/infra/child.py) that is killed at the
trial's cap (the budget left): a cut trial has no model, fails, and is charged the CPU-seconds its child spent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tabduel.infra import child
from tabduel.infra.config import PeerConfig, SearchConfig
from tabduel.models.registry import FAMILIES, IMPORT_NAMES, family
from tabduel.search.scores import mse, worker
from tabduel.search.space import Encoding
from tabduel.search.trials import KeptModel, load_inputs, scores_on_test, torch_threads

BASE = "ordinal"  # the features variant every peer reads
SEED_MAX = 2**31 - 2  # the largest seed every peer's library takes


@dataclass(frozen=True)
class PeerTrial:
    """One fit of a peer: its kind, its settings (the trial's seed among them) and its cap."""

    kind: str
    cfg: PeerConfig
    max_seconds: float = 0.0  # the fit's child is killed after this many seconds (0: none)
    clock: str = "wall"  # what max_seconds counts: the child's CPU-seconds (cpu) or wall-clock seconds (wall)


def suggest_peer(kind: str, trial: Any, s: SearchConfig, threads: int = 1, encodings: Any = ()) -> PeerTrial:
    """A peer's trial: its tuned defaults with a new seed, the epochs or rounds of search.peer_iterations (a peer
    takes no encodings)."""
    seed = trial.suggest_int("seed", 0, SEED_MAX)
    return PeerTrial(kind, family(kind).config(iterations=s.peer_iterations, seed=seed, threads=threads),
                     clock=s.trial_clock)


def preload(kind: str) -> None:
    """Import pytabkit and the peer's library here, and start the server that the fits' children fork from (which
    imports them there), so that no trial's clock counts an import; ConfigError in one line when one is missing."""
    from tabduel.models import peers

    peers.preload(kind)
    # the server imports every peer's libraries, once: a bench's worker may run the cells of several peers
    libraries = (IMPORT_NAMES.get(p, p) for f in FAMILIES if f.extra == "peers" for p in f.packages)
    # and tabduel.cli: each child runs its caller's main script (multiprocessing's rule), `tabduel`'s imports it
    child.start(("psutil", *dict.fromkeys(libraries), "tabduel.models.peers", "tabduel.cli"))


def run_peer(kind: str, features_dir: str | Path, spec: PeerTrial, with_test: bool = False, keep: bool = False
             ) -> dict[str, Any]:
    """Fit one peer trial on train with valid as its validation set, in a child process stopped at the trial's cap;
    its valid (and test) MSE and facts (with keep, the fitted model as row["model"], a KeptModel). A trial stopped at
    its cap raises child.Cut (no model: a peer keeps no partial fit).

    cpu_seconds is this process's CPU time around loading, fitting and scoring plus the child's (every thread's):
    the peer's own threads count too. An exception carries the child's as attribute child.CHILD_CPU.
    """
    from tabduel.models import peers

    preload(kind)  # imported before the clock starts, as the other families' libraries are
    cpu_start = time.process_time()
    inputs = load_inputs(features_dir, Encoding(BASE), with_test, spec.cfg.seed, kind)
    start = time.perf_counter()
    done = child.run(peers.fit, inputs.data, spec.cfg, cap=spec.max_seconds, clock=spec.clock,
                     what=f"{kind} trial (seed {spec.cfg.seed})")
    fitted = done.value
    seconds = time.perf_counter() - start
    threads = torch_threads()
    valid = peers.predict(fitted.model, inputs.data.x_valid)
    finite = bool(np.isfinite(valid).all())
    row = {"valid_mse": mse(valid, inputs.data.y_valid) if finite else math.nan, "seconds": seconds,
           "device": fitted.info["device"], "worker": worker(), "threads": fitted.info["threads"],
           "child_cpu_seconds": done.cpu_seconds,
           **{k: fitted.info[k] for k in ("best_epoch", "best_iteration") if k in fitted.info}}
    if not finite:
        row["error"] = f"{kind}: predictions on the valid split are not all finite"
    elif keep:
        row["model"] = KeptModel(kind, inputs.manifest, fitted.model, valid, str(features_dir), threads=threads)
    if with_test:
        test = peers.predict(fitted.model, inputs.x_test)
        row.update(scores_on_test(test, inputs.y_test, inputs.manifest) if finite else {"test_mse": math.nan})
    row["cpu_seconds"] = time.process_time() - cpu_start + done.cpu_seconds
    return row


def run_peers(kind: str, features_dir: str, specs: list[PeerTrial], with_test: bool, keep: bool = False
              ) -> list[dict[str, Any]]:
    """Fit each trial of a peer alone (peers train no populations)."""
    return [run_peer(kind, features_dir, spec, with_test, keep) for spec in specs]


def facts(result: dict[str, Any]) -> dict[str, Any]:
    """What a finished peer trial records: its threads and where pytabkit stopped, when it says."""
    return {k: result[k] for k in ("threads", "best_epoch", "best_iteration") if k in result}

