"""What bagging buys at an equal CPU budget: a bagged bench's cells (`tabduel bench --bagging K`) beside the unbagged
cells of the same outer splits, families and budget, read from their folders; nothing is searched or refitted.

Per dataset and family: the mean test MSE of the selected model (T) and of the post-hoc ensemble (T+E), unbagged and
bagged, their ratio and the paired tests over the common outer seeds (tabduel.bench.cells.versus); over every
(dataset, seed) pair of a family: the geometric mean of bagged / unbagged, how many pairs bagging lowered, and a
two-sided Wilcoxon signed-rank test on the log ratios.

    python benchmarks/bagging_gain.py --bagged benchmarks/results/bench-small3-60s-bag5/cells \
        --plain benchmarks/results/bench-dev-60s/cells --families realmlp,xgboost \
        --out benchmarks/results/bagging-gain-small3-60s.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from tabduel.bench.cells import CLEAN, versus  # noqa: E402
from tabduel.infra.errors import ConfigError  # noqa: E402
from tabduel.infra.store import atomic_write_bytes, atomic_write_json  # noqa: E402
from tabduel.search.portfolio import read_cells  # noqa: E402

SCORES = (("T", "test_mse"), ("T+E", "ensemble_test_mse"))


def by_key(cells: list[dict[str, Any]], families: list[str]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(dataset, family, seed) -> cell, for the clean cells of the families."""
    return {(c["cell"]["dataset"], c["cell"]["family"], c["cell"]["seed"]): c for c in cells
            if c["cell"]["corruption"] == CLEAN and c["cell"]["family"] in families}


def gain(bagged: list[dict[str, Any]], plain: list[dict[str, Any]], families: list[str]) -> dict[str, Any]:
    """The comparison document: per dataset and family, and over all pairs per family."""
    b, p = by_key(bagged, families), by_key(plain, families)
    pairs = sorted(set(b) & set(p))
    if not pairs:
        raise SystemExit("bagging_gain: error: no (dataset, family, seed) is in both folders")
    for key in pairs:  # the same split and budget, bagged against unbagged
        x, y = b[key], p[key]
        why = ("its unbagged cell is bagged" if y.get("bagging") else "its bagged cell is not bagged"
               if not x.get("bagging") else "the budgets differ"
               if x.get("budget_cpu_seconds") != y.get("budget_cpu_seconds") else "they read other features"
               if Path(x.get("features_read", "")).name != Path(y.get("features_read", "")).name else "")
        if why:
            raise SystemExit(f"bagging_gain: error: {x['id']}: {why}")
    ks = {c.get("bagging") for c in b.values()}
    out: dict[str, Any] = {"bagging": sorted(k for k in ks if k), "pairs": len(pairs), "datasets": {}, "overall": {}}
    for ds in sorted({d for d, _, _ in pairs}):
        for f in families:
            seeds = [s for d, fam, s in pairs if d == ds and fam == f]
            if not seeds:
                continue

            def side(cells: dict[tuple[str, str, int], dict[str, Any]]) -> dict[str, Any]:
                return {"seeds": seeds, **{k: [cells[(ds, f, s)].get(k, math.nan) for s in seeds] for _, k in SCORES}}

            bs, ps = side(b), side(p)
            row = {"seeds": seeds, "trials_bagged": [b[(ds, f, s)]["trials"] for s in seeds],
                   "trials_plain": [p[(ds, f, s)]["trials"] for s in seeds]}
            for label, k in SCORES:
                row[label] = {"plain": float(np.mean(ps[k])), "bagged": float(np.mean(bs[k])),
                              "ratio": float(np.mean(bs[k]) / np.mean(ps[k]))}
            row["paired"] = versus(bs, ps)  # bagged ("mean") against unbagged ("against")
            out["datasets"].setdefault(ds, {})[f] = row
    for f in families:
        fp = [(d, s) for d, fam, s in pairs if fam == f]
        res: dict[str, Any] = {"pairs": len(fp)}
        for label, k in SCORES:
            logs = np.array([math.log(b[(d, f, s)][k] / p[(d, f, s)][k]) for d, s in fp])
            res[label] = {"geometric_mean_ratio": float(np.exp(logs.mean())), "bagged_lower": int((logs < 0).sum()),
                          "wilcoxon_p": float(stats.wilcoxon(logs).pvalue) if len(logs) >= 2 and logs.any()
                          else math.nan}
        out["overall"][f] = res
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The tables of a comparison document."""
    lines = [f"# Bagging (K = {', '.join(map(str, doc['bagging']))}) against none, at the same CPU budget", "",
             "| dataset | family | trials (plain / bagged, mean) | T plain | T bagged | ratio | T+E plain | T+E bagged "
             "| ratio |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for ds, fams in doc["datasets"].items():
        for f, r in fams.items():
            lines.append(f"| {ds} | {f} | {np.mean(r['trials_plain']):.0f} / {np.mean(r['trials_bagged']):.0f} | "
                         f"{r['T']['plain']:.4g} | {r['T']['bagged']:.4g} | {r['T']['ratio']:.3f} | "
                         f"{r['T+E']['plain']:.4g} | {r['T+E']['bagged']:.4g} | {r['T+E']['ratio']:.3f} |")
    lines += ["", "Over every (dataset, outer seed) pair: geometric mean of bagged / unbagged test MSE, pairs where "
              "bagging is lower, two-sided Wilcoxon p.", "", "| family | pairs | T | T+E |", "|---|---:|---|---|"]
    for f, r in doc["overall"].items():
        cell = [f"{r[x]['geometric_mean_ratio']:.3f}, {r[x]['bagged_lower']}/{r['pairs']}, p {r[x]['wilcoxon_p']:.3g}"
                for x in ("T", "T+E")]
        lines.append(f"| {f} | {r['pairs']} | {cell[0]} | {cell[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bagged", required=True, type=Path, help="the bagged bench's cells folder")
    ap.add_argument("--plain", required=True, type=Path, help="the unbagged bench's cells folder (same splits)")
    ap.add_argument("--families", default="realmlp,xgboost", help="families compared, comma-separated")
    ap.add_argument("--out", required=True, type=Path, help="the JSON to write (and <out>.md)")
    a = ap.parse_args(argv)
    try:
        bagged, plain = read_cells([a.bagged]), read_cells([a.plain])
    except ConfigError as exc:
        raise SystemExit(f"bagging_gain: error: {exc}") from None
    doc = {"command": "python benchmarks/bagging_gain.py " + " ".join(sys.argv[1:] if argv is None else argv),
           **gain(bagged, plain, a.families.split(","))}
    atomic_write_json(a.out, doc)
    text = markdown(doc)
    atomic_write_bytes(a.out.with_suffix(".md"), text.encode())
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
