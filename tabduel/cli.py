"""The `tabduel` command: run the pipeline or one step, with settings from defaults, TOML and flags."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from tabduel.checks import Parser, preflight
from tabduel.infra.config import DEFAULT_SEARCH_FAMILIES, MLP_PORTFOLIO, ConfigError, merge
from tabduel.infra.errors import Interrupted, TabduelError, one_line
from tabduel.infra.prefect_api import LocalAPI, flush_prefect_logs, prefect_refusal_message, prefect_refused
from tabduel.infra.settings import choices_of
from tabduel.infra.store import atomic_write_json
from tabduel.infra.tracking import (
    SERVER_RETRIES,
    refusal_message,
    resolve_tracking_uri,
    server_refused,
    server_unreachable,
)
from tabduel.models import registry
from tabduel.settings import Config, field_type, load_toml, section_fields

# Sections whose flags carry no prefix: --data-dir, --source, --experiment ...
UNPREFIXED = ("pipeline", "tracking", "ingest")
SECTIONS = {
    "run": ("pipeline", "tracking", "ingest", "features", *registry.kinds(), "evaluate"),
    "ingest": ("pipeline", "ingest"),
    "features": ("pipeline", "ingest", "features"),  # ingest: --dataset picks whose latest outputs a step reads
    "evaluate": ("pipeline", "tracking", "ingest", "evaluate"),
    **{f"train-{kind}": ("pipeline", "tracking", "ingest", kind) for kind in registry.kinds()},
    "search": ("pipeline", "tracking", "ingest", "features", "search"),
    "bench": ("pipeline", "tracking", "features", "search", "bench"),
    "serve": ("pipeline", "tracking", "ingest", "features", *registry.kinds(), "evaluate"),
}
DESCRIPTIONS = {
    "run": "Run the whole pipeline: ingest -> features -> train the models (--models; default: the dataset spec's, "
           "else realmlp on a CPU or tabm on CUDA, with xgboost and linear; each fit at most --time-limit seconds) "
           "-> evaluate. "
           "Steps whose inputs, settings and code are unchanged are reused.",
    "ingest": "Decode and validate the raw CSV into <data-dir>/ingest/<key>/table.parquet.",
    "features": "Build scaled train/valid/test Parquet splits and a manifest from the latest ingest output.",
    "evaluate": "Evaluate the latest model of each kind on valid and test; tables and plots go to MLflow.",
    **{f"train-{f.kind}": f.summary for f in registry.FAMILIES},
    "search": "Tune each family (--families: mlp and xgboost by default; realmlp and tabm on request) with the same "
              "budget (Optuna TPE, seeded) on train/valid, every trial an MLflow child run; then refit the best "
              "config of each family on several split seeds and compare their test MSE with paired tests. realmlp "
              "searches RealMLP-HPO's space (Holzmueller et al. 2024), tabm the TabM paper's (Gorishniy et al. "
              "2024); each study's first trial is the family's defaults. A RealMLP or TabM trial takes minutes on a "
              "CPU: --realmlp-max-seconds and --tabm-max-seconds cap each trial's training (the best epoch so far is "
              "kept), --tabm-k sets TabM's members. The study is stored (a journal file by default), so a search "
              "can be resumed (--resume) or extended (--more-trials N). See docs/search.md.",
    "bench": "Benchmark the families (--families: mlp and xgboost by default; realmlp and tabm, whose trials take "
             "minutes of CPU, on request) over a suite of datasets: for each dataset and outer seed, the outer split's "
             "test rows are held out from everything; each family is searched on the rest with the same budget in "
             "CPU-seconds (every trial capped at the budget left), then its selected model and the post-hoc ensemble "
             "of its trials are scored once on test. Then per-dataset paired tests, wins at 2%, mean ranks, "
             "Friedman and Nemenyi / Wilcoxon-Holm tests, a critical-difference diagram, a JSON "
             "result and a Markdown report under --out; MLflow: a run per bench, per dataset, per cell. "
             "--corrupt adds corruptions of the train rows and MLP preprocessing variants. See docs/bench.md.",
    "serve": "Serve the whole pipeline as a Prefect deployment on a cron schedule, with these settings, until "
             "stopped (Ctrl-C). Runs happen in this process, in this directory. Set PREFECT_API_URL to a `prefect "
             "server` to see and trigger the deployment in its UI; without it, tabduel's local API server lives as "
             "long as this command.",
}
# `tabduel search --quick`: a whole search in a minute or two, for a first look and for CI.
QUICK = {"search": {"trials": 6, "mlp_epochs": 40, "mlp_patience": 8, "mlp_max_seconds": 20.0, "max_depth": 3,
                    "max_width": 64, "max_ensemble": 2, "xgb_rounds": 300, "xgb_early_stopping": 30,
                    "realmlp_epochs": 16, "realmlp_max_seconds": 20.0, "tabm_k": 4, "tabm_epochs": 40,
                    "tabm_patience": 8, "tabm_max_seconds": 20.0}}
# `tabduel bench --quick`: the suite's quick datasets, 2 outer seeds, tiny budgets and models (CI).
QUICK_BENCH = {"bench": {"outer_seeds": 2, "minutes": 0.1, "trials": 3}, "search": QUICK["search"]}
# Settings a bench sets itself per cell (the outer seed, its budget, its runner) or per family variant.
BENCH_SKIP = ["pipeline.models", "pipeline.time_limit", "features.split_seed", "features.onehot", "features.cyclic",
              "search.study",
              "search.storage", "search.families", "search.trials", "search.minutes", "search.seed", "search.workers",
              "search.runner", "search.address", "search.threads", "search.refit_seeds"]
EPILOG = ("Settings are read from the defaults, then --config FILE (TOML, one [section] per step, e.g. [mlp] "
          "lr = 0.01), then these flags. List values are comma-separated.")


def flag(section: str, name: str) -> str:
    """Command-line flag of a setting: --data-dir, --mlp-lr, --features-split-seed ..."""
    stem = name if section in UNPREFIXED else f"{section}_{name}"
    return "--" + stem.replace("_", "-")


def _metavar(section: str, f: dataclasses.Field) -> str:
    typ = field_type(section, f.name)
    if typ in (int, float):
        return typ.__name__.upper()
    if typ is bool:
        return "BOOL"
    return "LIST" if "tuple" in str(typ) else "TEXT"


def add_settings(parser: argparse.ArgumentParser, sections: Sequence[str], skip: Sequence[str] = (),
                 short: str | None = None) -> None:
    """One flag per setting of each section (except 'section.name' in skip), with its default and help.

    The settings of section `short` also get an unprefixed flag: `train mlp --population 8` = `--mlp-population 8`.
    """
    common = parser.add_argument_group("general")
    common.add_argument("--config", metavar="FILE", help="TOML file with settings (sections as in the flags)")
    common.add_argument("--force", action="store_true", help="recompute even when a cached output exists")
    for section in sections:
        group = parser.add_argument_group(f"[{section}] settings")
        for f in section_fields(section):
            if f"{section}.{f.name}" in skip:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f.metadata.get("help", "")
            if choices_of(f):
                help_text += f" (one of: {', '.join(choices_of(f))})"
            flags = [flag(section, f.name)]
            if section == short:
                flags.insert(0, flag("pipeline", f.name))  # UNPREFIXED: --population
            group.add_argument(*flags, dest=f"{section}.{f.name}", metavar=_metavar(section, f),
                               default=None, help=f"{help_text} [default: {shown!s}]".replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = Parser(
        prog="tabduel",
        description="tabduel: can a well-found MLP match XGBoost on tabular data? Prefect pipeline, MLflow runs.",
        epilog="Run `tabduel COMMAND --help` for the settings of a command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ("run", "ingest", "features", "evaluate"):
        p = sub.add_parser(name, help=DESCRIPTIONS[name].split(". ")[0].rstrip("."), description=DESCRIPTIONS[name],
                           epilog=EPILOG)
        skip = ["ingest.source"] if name in ("features", "evaluate") else []
        add_settings(p, SECTIONS[name], skip=skip if name == "run" else [*skip, "pipeline.time_limit"])
    serve = sub.add_parser("serve", help="Serve the pipeline as a Prefect deployment on a cron schedule",
                           description=DESCRIPTIONS["serve"], epilog=EPILOG)
    add_settings(serve, SECTIONS["serve"])
    when = serve.add_argument_group("schedule")
    when.add_argument("--cron", required=True, metavar="EXPR",
                      help='when to run, as a cron expression in UTC, e.g. "0 3 * * *" (every day at 03:00)')
    when.add_argument("--name", default="scheduled", help="the deployment's name [default: scheduled]")
    search = sub.add_parser("search", help="Tune model families (MLP, XGBoost, RealMLP, TabM) with one budget and "
                            "compare their best",
                            description=DESCRIPTIONS["search"], epilog=EPILOG)
    add_settings(search, SECTIONS["search"], skip=["pipeline.models", "pipeline.time_limit"], short="search")
    actions = search.add_argument_group("search actions")
    actions.add_argument("--resume", action="store_true",
                         help="continue the stored study to its budget (trials a killed search left running are "
                              "run again)")
    actions.add_argument("--more-trials", type=int, default=0, metavar="N",
                         help="extend the stored study by N trials per family (--minutes M: by at most M minutes)")
    actions.add_argument("--quick", action="store_true",
                         help="a small, fast search: " + ", ".join(f"{k}={v}" for k, v in QUICK["search"].items())
                         + " (flags and --config still win)")
    bench = sub.add_parser("bench", help="Benchmark the families over a suite of datasets (outer splits, equal "
                           "CPU budgets, statistics)", description=DESCRIPTIONS["bench"], epilog=EPILOG)
    add_settings(bench, SECTIONS["bench"], skip=BENCH_SKIP, short="bench")
    acts = bench.add_argument_group("bench actions")
    acts.add_argument("--resume", action="store_true",
                      help="continue the stored bench: finished cells are kept, a killed cell resumes its study")
    acts.add_argument("--quick", action="store_true",
                      help="a small, fast bench for CI: the suite's quick datasets, " + ", ".join(
                          f"{k}={v}" for k, v in QUICK_BENCH["bench"].items()) + ", small models")
    train = sub.add_parser("train", help="Train one model on the latest features",
                           description="Train one model on the latest features, in its own MLflow run.")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="MODEL")
    for kind in registry.kinds():
        p = kinds.add_parser(kind, help=DESCRIPTIONS[f"train-{kind}"], description=DESCRIPTIONS[f"train-{kind}"],
                             epilog=EPILOG)
        add_settings(p, SECTIONS[f"train-{kind}"], skip=["pipeline.models", "ingest.source"], short=kind)
    spec = sub.add_parser("spec", help="Draft a dataset spec for a raw file", description="Dataset spec tools.")
    actions = spec.add_subparsers(dest="action", required=True, metavar="ACTION")
    draft = actions.add_parser(
        "draft", help="Sniff a raw file and write a commented, runnable dataset spec (TOML)",
        description="Sniff FILE (delimiter, decimal mark, quotes, encoding, header, missing markers, column types, "
                    "levels, dates) and write a commented dataset spec to stdout (or -o FILE); what was guessed "
                    "and how sure goes to stderr. Check it, then: tabduel run --dataset SPEC --source FILE.")
    draft.add_argument("file", metavar="FILE", help="the raw tabular file")
    draft.add_argument("--target", required=True, metavar="COL",
                       help="the target column: its header name, or its 1-based position in a file without header")
    draft.add_argument("--ignore", default="", metavar="A,B",
                       help="columns to ignore (header names or 1-based positions), comma-separated")
    draft.add_argument("-o", "--output", default="", metavar="SPEC", help="write the spec here instead of stdout")
    port = sub.add_parser("portfolio", help="Learn the configs that mlp_portfolio tries first, from bench cells",
                          description="Portfolio tools: the configs a search of mlp_portfolio tries before TPE "
                          "(search.portfolio).")
    acts = port.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = acts.add_parser(
        "build", help="Pick N configs greedily from bench cells' trial logs (TabRepo's zero-shot portfolio)",
        description="Read the trial logs of bench cells (mlp_portfolio cells, or realmlp/tabm/mlp cells), keep the "
                    "configs tried on every clean (dataset, outer seed), normalize each task's valid MSE (0: its best, "
                    "1: its median) and add configs greedily, each the one that most lowers the mean of the "
                    "portfolio's best; evaluated leave-one-dataset-out. Use it with --search-portfolio FILE.")
    build.add_argument("cells", nargs="+", metavar="DIR", help="folders of cell JSON files (searched recursively), "
                       "e.g. benchmarks/results/bench-dev-60s/cells")
    build.add_argument("--size", type=int, default=8, metavar="N", help="configs in the portfolio [default: 8]")
    build.add_argument("-o", "--output", default="data/portfolios/mlp_portfolio.json", metavar="FILE",
                       help="where to write it [default: data/portfolios/mlp_portfolio.json]")
    build.add_argument("--lodo", default="", metavar="DIR",
                       help="also write DIR/<dataset>.json per dataset, each built without that dataset's cells: "
                            "a bench then uses --search-portfolio 'DIR/{dataset}.json', so that no dataset's "
                            "portfolio has seen it")
    sample = acts.add_parser(
        "sample", help="Write candidate configs: each member's defaults, then N sampled at random",
        description="Candidates for a portfolio: each member's paper defaults, then N configs sampled at random "
                    "(seeded) from the members' spaces in turn. A bench of mlp_portfolio with --search-portfolio "
                    "FILE and --trials at least the candidates' count tries them all on every dataset; portfolio "
                    "build learns from it.")
    sample.add_argument("--n", type=int, default=24, metavar="N", help="random configs [default: 24]")
    sample.add_argument("--seed", type=int, default=0, help="the sampler's seed [default: 0]")
    sample.add_argument("-o", "--output", default="data/portfolios/candidates.json", metavar="FILE",
                        help="where to write them [default: data/portfolios/candidates.json]")
    return parser


def portfolio_command(args: argparse.Namespace) -> int:
    """tabduel portfolio build | sample: a portfolio file, with one summary line per config; 2 on bad input."""
    from tabduel.search import portfolio
    from tabduel.search.families import members_of

    try:
        if args.action == "sample":
            doc = portfolio.sample(args.n, args.seed, members_of(MLP_PORTFOLIO))
        else:
            cells = portfolio.read_cells(args.cells)
            doc = portfolio.build(cells, args.size, portfolio.provenance(args.cells))
            for name, held in (portfolio.held_out(cells, args.size, doc["provenance"]) if args.lodo else {}).items():
                atomic_write_json(Path(args.lodo) / f"{name}.json", held)
    except ConfigError as exc:
        print(f"tabduel: error: {one_line(exc)}", file=sys.stderr)
        return 2
    atomic_write_json(Path(args.output), doc)
    for c in doc["configs"]:
        extra = "" if "normalized_error" not in c else (f": normalized error {c['normalized_error']:.3f}, "
                                                         f"{c['cpu_seconds']:.1f} CPU-s")
        print(f"{c['family']} {json.dumps(c['params'], sort_keys=True)}{extra}")
    if "leave_one_dataset_out" in doc:
        m = doc["leave_one_dataset_out"]["mean"]
        if doc["leave_one_dataset_out"]["datasets"]:
            print(f"leave-one-dataset-out: normalized error {m['held_out_error']:.3f} on held-out datasets "
                  f"(in-sample {m['in_sample_error']:.3f}; the greedy's first pick alone "
                  f"{m['greedy_first_error']:.3f})")
    print(f"wrote {args.output} ({len(doc['configs'])} configs)"
          + (f" and one portfolio per held-out dataset under {args.lodo}/" if getattr(args, "lodo", "") else ""))
    return 0


def resolve_config(args: argparse.Namespace) -> Config:
    """Defaults < --config file < flags, checked into one frozen Config with the tracking URI resolved."""
    data: dict[str, Any] = load_toml(args.config) if args.config else {}
    if getattr(args, "quick", False):
        data = merge(QUICK_BENCH if args.command == "bench" else QUICK, data)
    flags: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, name = dest.split(".", 1)
            flags.setdefault(section, {})[name] = value
    from tabduel.settings import with_dataset_defaults  # empty experiment, study, models: the spec's

    cfg = with_dataset_defaults(Config.from_dict(merge(data, flags)))
    # Resolved here, once: MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI to the process later.
    tracking = dataclasses.replace(cfg.tracking, tracking_uri=resolve_tracking_uri(cfg.tracking))
    return dataclasses.replace(cfg, tracking=tracking)


class _ExpectedErrors(logging.Filter):
    """Keep Prefect's console free of tracebacks for errors tabduel explains itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TabduelError) or server_unreachable(exc) or server_refused(exc) or prefect_refused(exc):
            return False
        message = record.getMessage()
        return not any(name in message for name in _expected_error_names())


def _expected_error_names(cls: type = TabduelError) -> set[str]:
    """Class names of TabduelError and all its subclasses (Prefect's state messages name the class)."""
    return {cls.__name__}.union(*(_expected_error_names(sub) for sub in cls.__subclasses__()))


def quiet_expected_errors() -> None:
    """Install the filter on every handler that prints Prefect's logs."""
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_ExpectedErrors())


def print_search_summary(summary: dict[str, Any]) -> None:
    """The best of each family, the refit comparison, and where the evidence is."""
    print(f"\nsearch {summary['study']}: study in {summary['storage']}")
    for family, best in summary["best"].items():
        print(f"  best {family:<8} trial {best['trial']:>4}: valid MSE {best['valid_mse']:.5f}")
    table = Path(summary["dir"]) / "final.md"
    if table.is_file():
        print("\n" + table.read_text())
    if summary["final"].get("verdict"):
        print(summary["final"]["verdict"])
    print(f"evidence: {summary['dir']} (leaderboard.md, best_so_far.png, final.md, final.png)")


def print_summary(summary: dict[str, Any], seconds: float) -> None:
    """What ran, what was reused, where outputs are, the metrics and how to look at them."""
    if "study" in summary:
        print_search_summary(summary)
        summary = {"steps": [], **summary}
    if "bench" in summary:
        print_bench_summary(summary)
        summary = {"steps": [], **summary}
    print()
    for step in summary["steps"]:  # a search has no steps list
        state = "reused  " if step["reused"] else "computed"
        path = os.path.relpath(step["path"]) if step["path"].startswith(os.getcwd() + os.sep) else step["path"]
        print(f"  {step['step']:<14} {state} {path}")
    reused = [s["step"] for s in summary["steps"] if s["reused"]]
    if summary["steps"]:
        shown = f" ({', '.join(reused)})" if reused else ""
        print(f"  reused {len(reused)} of {len(summary['steps'])} steps{shown}")
    if "metrics" in summary:
        from tabduel.models.evaluate import comparison, to_markdown

        print("\n" + to_markdown(comparison(summary["metrics"])))
    if summary.get("parent_run_id"):
        uri = summary["tracking_uri"]
        print(f"MLflow: run {summary['parent_run_id']} in experiment {summary['experiment_id']} at {uri}")
        if uri.startswith("sqlite:"):
            mlflow_bin = Path(sys.executable).parent / "mlflow"
            command = str(mlflow_bin) if mlflow_bin.exists() else "mlflow"
            print(f"  open the UI: {command} ui --backend-store-uri {uri}")
            print(f"  then its runs: http://127.0.0.1:5000/#/experiments/{summary['experiment_id']}/runs")
    print(f"done in {seconds:.1f}s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tabduel` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "spec":  # fast: no Prefect API, no MLflow, no torch
        from tabduel.data.draft import draft_command

        return draft_command(args.file, args.target, args.ignore, args.output)
    if args.command == "portfolio":  # no Prefect API, no MLflow, no torch
        return portfolio_command(args)
    start = time.perf_counter()
    # Prefect's telemetry heartbeat writes to its SQLite while flows run ("database is locked"); off unless asked.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        cfg = resolve_config(args)
        preflight(args, cfg)  # files, devices, the cron: refused here, before the API server starts
        if args.command == "bench":
            check_bench(cfg, args.quick)
    except ConfigError as exc:
        print(f"tabduel: error: {one_line(exc)}", file=sys.stderr)
        return 2
    api = LocalAPI()
    api.start()  # boots while the next import loads Prefect, MLflow and torch
    began = time.time()
    from tabduel.infra.stop import STOP, stop_on_signals

    STOP.clear()  # main() may run more than once in a process (tests)
    try:
        from tabduel.flows import pipeline as flows

        quiet_expected_errors()
        _warm_up(args, cfg)
        api.wait_ready()
        # serve: Prefect and asyncio stop the served deployment on Ctrl-C themselves
        with api.flow_settings(), stop_on_signals() if args.command != "serve" else contextlib.nullcontext():
            summary = _dispatch(flows, args, cfg.to_dict())
    except _stop_exceptions() as exc:
        signum = STOP.signal or (signal.SIGINT if isinstance(exc, (KeyboardInterrupt, Interrupted)) else signal.SIGTERM)
        STOP.set(signum)  # Prefect's own SIGTERM handler raised: fits still running in other threads end too
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"tabduel: {name}: stopped; {kept_message(cfg, began, args.command)}", file=sys.stderr)
        return 128 + signum
    except TabduelError as exc:
        print(f"tabduel: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if status := prefect_refused(exc):
            print(f"tabduel: error: {prefect_refusal_message(status)}", file=sys.stderr)
            return 1
        if status := server_refused(exc):
            print(f"tabduel: error: {refusal_message(status, resolve_tracking_uri(cfg.tracking))}", file=sys.stderr)
            return 1
        if not server_unreachable(exc):
            raise
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", SERVER_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
        print(f"tabduel: error: the MLflow tracking server at {resolve_tracking_uri(cfg.tracking)} did not answer "
              f"(after {retries} retries per request): {str(exc).splitlines()[0][:300]}. Step outputs finished so far "
              f"are kept under {cfg.pipeline.data_dir}/: run the same command again once the server is back, and "
              f"they are reused.", file=sys.stderr)
        return 1
    finally:
        flush_prefect_logs()
        api.stop()
    print_summary(summary, time.perf_counter() - start)
    return 0


def _stop_exceptions() -> tuple[type[BaseException], ...]:
    """What a stop by the user raises: KeyboardInterrupt (our handlers), Interrupted (a fit that saw the stop), or
    Prefect's TerminationSignal (its SIGTERM handler, active while a flow runs outside our handlers)."""
    from prefect.exceptions import TerminationSignal

    return (KeyboardInterrupt, Interrupted, TerminationSignal)


def kept_message(cfg: Config, since: float, command: str = "run") -> str:
    """What a stopped command kept: the step outputs it finished (computed or reused), that nothing is half-written,
    and how to go on."""
    from tabduel.infra.store import published_since
    from tabduel.settings import dataset_name

    try:
        kept = published_since(cfg.pipeline.data_dir, dataset_name(cfg), since)
    except Exception:  # the message must not fail: say what is certain
        kept = []
    shown = ", ".join(f"{step} ({os.path.relpath(path)})" for step, path in kept) if kept else "no finished step"
    if command == "bench":  # a bench's unit of work is the cell: its result JSON, written whole
        cells = [p for p in Path(cfg.pipeline.data_dir).glob("bench/*/cells/**/*.json") if p.stat().st_mtime >= since]
        shown = (f"{len(cells)} cell(s) finished in this run (under {os.path.relpath(Path(cfg.pipeline.data_dir))}"
                 f"/bench/*/cells)" if cells else "no cell finished in this run") + (f", {shown}" if kept else "")
    again = ("the same command with --resume continues it" if command in ("search", "bench")
             else "the same command again reuses what was kept")
    return (f"kept {shown}; nothing half-written was left at a final path, and its open MLflow runs are marked "
            f"KILLED; {again}.")


def _warm_up(args: argparse.Namespace, cfg: Config) -> None:
    """While Prefect's API server boots, open the MLflow store and import torch in a background thread.

    The flow needs both, and each is slow (MLflow's store ~2 s, torch ~1.5 s); here they overlap with the wait, as does
    MLflow's scan of the installed packages that logging a model needs.
    A failure is left for the flow itself to meet and report.
    """
    import threading

    def work() -> None:
        try:
            if args.command not in ("ingest", "features"):
                from tabduel.infra.tracking import Tracker

                Tracker.shared(cfg.tracking)
            kinds = cfg.pipeline.models if args.command in ("run", "evaluate") else [getattr(args, "kind", "")]
            # only torch: importing xgboost too, beside MLP training, measured slower
            if any(kind and "torch" in registry.family(kind).packages for kind in kinds):
                import torch  # noqa: F401
            if args.command in ("run", "train"):
                # Logging a model checks its requirements against the installed packages: MLflow's map of every
                # installed distribution's modules, built once per process (~0.5 s), is built here, after torch.
                from mlflow.utils.requirements_utils import _init_modules_to_packages_map

                _init_modules_to_packages_map()
        except Exception:  # the flow opens the same store and reports what went wrong
            pass

    threading.Thread(target=work, name="tabduel-warm-up", daemon=True).start()


def _dispatch(flows: Any, args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """Run the flow of the chosen command."""
    if args.command == "run":
        return flows.pipeline_flow(config=config, force=args.force)
    if args.command == "ingest":
        return flows.ingest_flow(config=config, force=args.force)
    if args.command == "features":
        return flows.features_flow(config=config, force=args.force)
    if args.command == "train":
        return flows.train_flow(kind=args.kind, config=config, force=args.force)
    if args.command == "serve":
        _check_cron(args.cron)
        print(f"serving tabduel-pipeline/{args.name} on cron {args.cron!r}; Ctrl-C stops it", flush=True)
        flows.pipeline_flow.serve(name=args.name, cron=args.cron, parameters={"config": config, "force": args.force},
                                  description=f"tabduel run on cron {args.cron!r}")
        return {"steps": []}
    if args.command == "bench":
        from tabduel.flows.bench import bench_flow
        from tabduel.settings import Config as Settings

        return bench_flow.with_options(task_runner=bench_runner(Settings.from_dict(config)))(
            config=config, quick=args.quick, resume=args.resume, force=args.force)
    if args.command == "search":
        from tabduel.flows.search import search_flow, task_runner
        from tabduel.search.space import workers_of
        from tabduel.settings import Config

        s = Config.from_dict(config).search
        runner = task_runner(s, workers_of(s))
        return search_flow.with_options(task_runner=runner)(config=config, resume=args.resume,
                                                            more_trials=args.more_trials, force=args.force)
    return flows.evaluate_flow(config=config, force=args.force)


def check_bench(cfg: Config, quick: bool) -> None:
    """The bench's suite file, its datasets' specs and local sources (with their sha256) and corruptions, checked
    before anything slow starts; ConfigError names the fault."""
    from tabduel.bench.suite import check_sources, load_suite
    from tabduel.data.corruptions import check
    from tabduel.infra.errors import SourceError

    b = cfg.bench
    if not b.suite:
        raise ConfigError("bench.suite = '': name the suite file with --suite FILE (e.g. benchmarks/suites/dev.toml)")
    for name in b.corrupt:
        check(name)
    if b.corrupt and b.families != DEFAULT_SEARCH_FAMILIES:
        raise ConfigError(f"bench.families = {','.join(b.families)}: a --corrupt bench compares xgboost with the MLP "
                          "variants of --preprocessing; leave --families out")
    try:
        datasets = load_suite(b.suite, b.root).pick(quick)
        check_sources(datasets)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    from tabduel.search.portfolio import DATASET_FIELD, check_portfolio, portfolio_of

    if MLP_PORTFOLIO in b.families and DATASET_FIELD in cfg.search.portfolio:  # one portfolio per dataset
        from tabduel.search.families import members_of

        for d in datasets:
            check_portfolio(portfolio_of(cfg.search.portfolio, d.name), members_of(MLP_PORTFOLIO),
                            cfg.search)


def bench_runner(cfg: Config) -> Any:
    """The task runner of a bench's cells: a process pool of bench.workers (the free cores), or a Dask cluster."""
    from tabduel.infra.runtime import free_cores

    b = cfg.bench
    if b.runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise TabduelError("--runner dask needs prefect-dask: pip install 'tabduel[dask]'") from None
        return DaskTaskRunner(address=b.address)
    from prefect.task_runners import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner(max_workers=b.workers or free_cores())


def print_bench_summary(summary: dict[str, Any]) -> None:
    """Where the bench's result, report and pictures are, and its headline numbers."""
    doc = summary["doc"]
    agg = doc["aggregate"]
    print(f"\nbench {summary['bench']}: {doc['cells']} cells, {doc['cpu_seconds_total']:.0f} CPU-seconds of search")
    for f, r in agg.get("mean_rank", {}).items():
        print(f"  {f:<16} mean rank {r:.2f}  wins {agg['wins'][f]}  ties {agg['ties'][f]}")
    if agg.get("friedman_p") is not None:
        print(f"  Friedman p = {agg['friedman_p']:.3g}; Nemenyi CD = {agg['nemenyi_cd']:.3f}")
    print(f"result: {summary['result']}\nreport: {summary['report']}")


def _check_cron(expr: str) -> None:
    """Raise ConfigError unless expr is a cron expression Prefect accepts."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expr)
    except Exception as exc:  # pydantic's ValidationError names the fault
        raise ConfigError(f"--cron {expr!r} is not a valid cron expression ({str(exc).splitlines()[-1].strip()})")


def run() -> None:
    """Console entry: main(), then exit without the interpreter's slow teardown of torch and friends.

    atexit handlers (Prefect's server stop, log flushing) still run first.
    """
    import atexit

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    run()
