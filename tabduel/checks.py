"""Checks of a command line before anything slow starts: flags, files and devices, each refused in one line."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from tabduel.infra.config import MLP_PORTFOLIO
from tabduel.infra.errors import ConfigError, one_line
from tabduel.settings import Config


class Parser(argparse.ArgumentParser):
    """argparse taking no abbreviated flags, whose every error is one line (with the closest flag for a typo)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--mlp-l -1` must not pass for `--mlp-lr -1`
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None) -> argparse.Namespace:
        """Parse args; an unknown flag is refused by the (sub)command it was given to, naming its closest flag."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = leaf_parser(self, parsed)
            leaf.error(unrecognized(extras, leaf))
        return parsed

    def error(self, message: str) -> NoReturn:
        """Print `tabduel: error: MESSAGE` (one line, no usage) and exit 2."""
        print(f"tabduel: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


def leaf_parser(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command that parsed names: `train mlp` -> the parser of `tabduel train mlp`."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(parsed, subs[0].dest, None) if subs else None
        if not subs or name not in subs[0].choices:
            return parser
        parser = subs[0].choices[name]


def unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """What to say of arguments parser does not know: the first unknown flag and the closest known one."""
    flags = [e for e in extras if e.startswith("-") and not _is_number(e)]
    if not flags:
        return f"unrecognized argument {extras[0]!r} for `{parser.prog}` (see `{parser.prog} --help`)"
    given = flags[0].split("=", 1)[0]
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"see `{parser.prog} --help`"
    return f"unrecognized argument {given} for `{parser.prog}` ({hint})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_file(name: str, value: str) -> Path:
    """The path a setting names, or ConfigError unless it is an existing, readable file."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{name} = {value!r}: file not found")
    if path.is_dir():
        raise ConfigError(f"{name} = {value!r}: is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"{name} = {value!r}: is not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name} = {value!r}: cannot be read ({exc.strerror or exc})") from None
    return path


def check_dataset_spec(value: str) -> None:
    """Load the dataset spec a setting names (load_spec checks it), or raise ConfigError."""
    from tabduel.data.dataset import load_spec

    path = check_file("ingest.dataset", value)
    try:
        load_spec(path)
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a spec that load_spec's checks let through
        raise ConfigError(f"{path}: invalid dataset spec: {one_line(exc)}") from None


def check_data_dir(value: str) -> None:
    """Raise ConfigError if the data directory's path is taken by something that is not a directory."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"pipeline.data_dir = {value!r}: is a file, not a directory")


def check_devices(settings: dict[str, Any], cfg: Config, kinds: Sequence[str]) -> None:
    """An explicit torch device of a family to be trained must exist here (auto and cpu always do; torch is
    imported only for the others)."""
    from tabduel.models.registry import family

    for kind in kinds:
        if family(kind).device != "torch" or f"{kind}.device" not in settings:
            continue
        device = cfg.model(kind).device
        if device not in ("auto", "cpu"):
            from tabduel.infra.runtime import resolve_torch_device

            try:
                resolve_torch_device(device)
            except ConfigError as exc:
                raise ConfigError(f"{kind}.device: {exc}") from None


def check_extras(command: str, cfg: Config, kind: str = "") -> None:
    """Every family the command trains, searches or benchmarks can be imported here: a peer without the peers
    extra is refused in one line."""
    from tabduel.models.registry import FAMILIES

    trained = [kind] if kind else list(cfg.pipeline.models) if command in ("run", "evaluate", "serve") else []
    searched = {"search": cfg.search.families, "bench": cfg.bench.families}.get(command, ())
    for fam in FAMILIES:
        if fam.kind in trained or (fam.search and fam.search in searched):
            fam.require()


CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_CHARS = re.compile(r"[0-9A-Za-z*?/,#-]+")


def check_cron(expr: str) -> None:
    """Raise ConfigError for what is surely no cron expression: a wrong count of fields, a stray character, a number
    outside its field's range. (Prefect checks the expression again when serving starts, and has the last word.)"""
    fields = expr.split()
    if len(fields) == 1 and fields[0].lower() in CRON_ALIASES:
        return
    why = ""
    if not 5 <= len(fields) <= 6:
        why = f"{len(fields)} field(s)"
    for text, (name, low, high) in zip(fields if len(fields) == 5 else [], CRON_FIELDS):
        if not _CRON_CHARS.fullmatch(text):
            why = why or f"{name} {text!r}"
        for part in text.split(","):
            bounds = re.split(r"[/#]", part)[0].split("-")  # a range's ends, not a step's size
            if any(b.isdigit() and not low <= int(b) <= high for b in bounds):
                why = why or f"{name} {part!r} is outside {low}-{high}"
    if why:
        raise ConfigError(f"--cron {expr!r} is not a valid cron expression ({why}; five fields: minute hour "
                          "day-of-month month day-of-week, e.g. \"0 3 * * *\")")


def preflight(args: argparse.Namespace, cfg: Config) -> None:
    """Check, before Prefect's API or any flow starts, what the settings name on this machine; raise ConfigError."""
    settings = vars(args)
    check_data_dir(cfg.pipeline.data_dir)
    if "ingest.source" in settings:  # the commands that ingest
        if cfg.ingest.source:
            check_file("ingest.source", cfg.ingest.source)
        if cfg.ingest.dataset:
            check_dataset_spec(cfg.ingest.dataset)
    check_devices(settings, cfg, [args.kind] if getattr(args, "kind", "") else cfg.pipeline.models)
    check_extras(args.command, cfg, getattr(args, "kind", ""))
    if getattr(args, "more_trials", 0) < 0:
        raise ConfigError(f"--more-trials = {args.more_trials}: must not be negative")
    if args.command == "serve":
        check_cron(args.cron)
    if args.command == "bench":
        from tabduel.bench.cells import bench_families, check_device

        check_device(cfg.bench.device, bench_families(cfg))
    searched = {"search": cfg.search.families, "bench": cfg.bench.families}.get(args.command, ())
    if args.command == "search" and "{dataset}" in cfg.search.portfolio:
        raise ConfigError(f"search.portfolio = {cfg.search.portfolio!r}: {{dataset}} is filled in by a bench's cells "
                          "only; name one portfolio file")
    if MLP_PORTFOLIO in searched and "{dataset}" not in cfg.search.portfolio:  # one per dataset: check_bench's
        from tabduel.search.families import members_of
        from tabduel.search.portfolio import check_portfolio

        check_portfolio(cfg.search.portfolio, members_of(MLP_PORTFOLIO), cfg.search)
