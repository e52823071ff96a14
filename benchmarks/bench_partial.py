"""A bench's result for the datasets it has finished, while the rest still runs: reads cell results from one or more
folders (the bench's `cells/`, and e.g. the committed cells of an earlier bench it was seeded with), keeps only the
datasets where every family has every outer seed, and writes the same result document as `tabduel bench` for them
(`tabduel.bench.cells.result`: per-dataset tables, the best-MLP goal, ranks over the finished datasets), marked
partial, with the datasets still to run named. Nothing is searched or refitted; test scores are those the cells
recorded, once each.

    python benchmarks/bench_partial.py --cells benchmarks/results/bench-dev-300s/cells \
        benchmarks/results/goal/bench-dev-300s/cells --families mlp,realmlp,tabm,xgboost,peer_realmlp \
        --suite benchmarks/suites/dev.toml --out benchmarks/results/goal/bench-dev-300s.partial.json

--label DIR:FAMILY=LABEL puts one family's cells of a folder beside the same family's cells of another, under a
name of their own (mlp_portfolio with a learned portfolio beside it with the defaults).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tabduel.bench.cells import CLEAN, result  # noqa: E402
from tabduel.bench.suite import load_suite  # noqa: E402
from tabduel.data.corruptions import CORRUPTIONS  # noqa: E402
from tabduel.infra.config import BenchConfig  # noqa: E402
from tabduel.infra.errors import ConfigError, TabduelError  # noqa: E402
from tabduel.infra.store import atomic_write_json  # noqa: E402
from tabduel.search import portfolio  # noqa: E402


def read_cells(folders: list[Path], labels: dict[tuple[Path, str], str] | None = None) -> list[dict[str, Any]]:
    """Every cell result under the folders (the first folder's copy wins where two hold the same cell); a family
    that `labels` renames for a folder ((folder, family) -> label) is reported under its label there."""
    seen: dict[str, dict[str, Any]] = {}
    for folder in folders:
        try:
            found = portfolio.read_cells([folder])  # one reader of cell folders, with its one-line errors
        except ConfigError as exc:
            raise SystemExit(f"bench_partial: error: {exc}") from None
        for r in found:
            label = (labels or {}).get((folder, r["cell"]["family"]))
            if label:  # the same family run another way (another portfolio): a family of its own here
                c = {**r["cell"], "family": label}
                r = {**r, "cell": c, "id": f"{c['dataset']}/{r['id'].split('/')[1]}/{label}-s{c['seed']}"}
            seen.setdefault(r["id"], r)
    return list(seen.values())


def parse_labels(texts: list[str]) -> dict[tuple[Path, str], str]:
    """--label DIR:FAMILY=LABEL values as {(DIR, FAMILY): LABEL}."""
    out = {}
    for text in texts:
        folder, _, rename = text.rpartition(":")
        family, _, label = rename.partition("=")
        if not folder or not family or not label:
            raise SystemExit(f"bench_partial: error: --label {text!r} is not DIR:FAMILY=LABEL")
        out[(Path(folder), family)] = label
    return out


def finished(results: list[dict[str, Any]], datasets: list[str], families: list[str], seeds: list[int],
             conditions: list[tuple[str, float]] = ((CLEAN, 0.0),)) -> tuple[list[str], dict[str, list[str]]]:
    """The datasets with a cell for every family, seed and condition (the clean data, and with --corrupt each
    corruption at its levels), and for the others the cells they still lack."""
    have = {(r["cell"]["dataset"], r["cell"]["family"], r["cell"]["seed"], r["cell"]["corruption"],
             r["cell"]["level"]) for r in results}
    done, missing = [], {}
    for d in datasets:
        lack = [f"{c}-{lv:g}/{f}-s{s}" if c != CLEAN else f"{f}-s{s}" for c, lv in conditions for f in families
                for s in seeds if (d, f, s, c, lv) not in have]
        if lack:
            missing[d] = lack
        else:
            done.append(d)
    return done, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--cells", nargs="+", required=True, type=Path, help="folders of cell results (searched deep)")
    p.add_argument("--families", required=True, help="the bench's families, comma-separated")
    p.add_argument("--suite", required=True, type=Path, help="the bench's suite file: its datasets, in order")
    p.add_argument("--seeds", default="4751,4752,4753", help="the bench's outer seeds [default: 4751,4752,4753]")
    p.add_argument("--out", required=True, type=Path, help="the JSON to write (temp file, then os.replace)")
    p.add_argument("--corrupt", default="", help="a corruption bench's corruptions, comma-separated (each at its "
                   "levels)")
    p.add_argument("--corrupt-family", default="mlp", help="a corruption bench's MLP family [default: mlp]")
    p.add_argument("--label", action="append", default=[], metavar="DIR:FAMILY=LABEL",
                   help="report the cells of FAMILY under folder DIR as family LABEL (e.g. the same family run with "
                        "another portfolio); repeatable")
    p.add_argument("--report", action="store_true", help="also write the report (<out>.md) and its pictures "
                   "(<out>/) for the finished datasets")
    a = p.parse_args(argv)
    corrupt = tuple(c for c in a.corrupt.split(",") if c)
    conditions = [(CLEAN, 0.0)] + [(c, lv) for c in corrupt for lv in CORRUPTIONS[c].levels if lv > 0]
    families = a.families.split(",")
    try:
        suite = load_suite(a.suite)
    except TabduelError as exc:
        raise SystemExit(f"bench_partial: error: {exc}") from None
    datasets = [d.name for d in suite.datasets]
    seeds = [int(s) for s in a.seeds.split(",")]
    labels = parse_labels(a.label)
    if stray := sorted(str(folder) for folder, _ in labels if folder not in a.cells):
        raise SystemExit(f"bench_partial: error: --label names {', '.join(stray)}, which is not among --cells")
    results = read_cells(a.cells, labels)
    done, missing = finished(results, datasets, families, seeds, conditions)
    if not done:
        raise SystemExit("bench_partial: error: no dataset has every family and seed finished yet")
    keep = [r for r in results if r["cell"]["dataset"] in done and r["cell"]["family"] in families
            and r["cell"]["seed"] in seeds and (r["cell"]["corruption"], r["cell"]["level"]) in conditions]
    budgets = {(r["budget_cpu_seconds"], r.get("budget_trials")) for r in keep}
    if len(budgets) != 1:
        raise SystemExit(f"bench_partial: error: the cells have different budgets: {sorted(budgets, key=str)}")
    seconds, trials = budgets.pop()
    preprocessing = tuple(f.partition("-")[2] for f in families if f != "xgboost") if corrupt else None
    bench = BenchConfig(families=tuple(families) if not corrupt and not labels else BenchConfig().families,
                        minutes=(seconds or 0) / 60, trials=trials or 0, outer_seeds=len(seeds), first_seed=seeds[0],
                        corrupt=corrupt, corrupt_family=a.corrupt_family,
                        **({"preprocessing": preprocessing} if preprocessing else {}))
    doc = {"partial": True, "datasets_finished": done, "datasets_to_run": missing,
           "command": "python benchmarks/bench_partial.py " + " ".join(sys.argv[1:] if argv is None else argv),
           **result(suite.name, bench, seeds, keep, families)}
    atomic_write_json(a.out, doc)
    if a.report:  # the bench's report and pictures for the finished datasets, beside the JSON
        from tabduel.bench import report
        from tabduel.infra.store import atomic_write_bytes

        folder = a.out.with_suffix("")
        pictures = report.draw(doc, keep, folder)
        text = report.markdown(doc, pictures, folder.name)
        note = (f"> Partial: {len(done)} of {len(datasets)} datasets finished ({', '.join(done)}); still to run: "
                f"{', '.join(missing) or 'none'}.\n\n")
        atomic_write_bytes(a.out.with_suffix(".md"), (note + text).encode())
    goal = doc.get("best_mlp", {})
    print(f"{len(done)} of {len(datasets)} datasets finished ({len(keep)} cells); still to run: "
          f"{', '.join(missing) or 'none'}")
    for name, row in goal.get("datasets", {}).items():
        peer = f", RealMLP-TD {row['realmlp_td']:.5g} ({row['gap_vs_realmlp_td']:+.1%})" if "realmlp_td" in row else ""
        print(f"  {name}: best MLP {row['best_mlp']:.5g} ({'/'.join(sorted(set(row['chosen'])))}) vs XGBoost "
              f"{row['xgboost']:.5g} ({row['gap_vs_xgboost']:+.1%}, {row['outcome_vs_xgboost']}){peer}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
