"""A benchmark suite file: which datasets a bench runs, where their specs and raw files are, and per-dataset
overrides of settings. Every path is checked, and every local file's sha256, before anything slow starts.

    name = "dev"
    root = "../../../shared"        # sources are relative to it (itself relative to this file's folder)
    quick = ["auto_mpg", "airfoil", "wine_red"]   # the datasets of `tabduel bench --quick`

    [[datasets]]
    name = "wine_red"
    spec = "../../data/datasets/wine_red.toml"     # relative to this file's folder
    source = "data/suite/wine_quality/winequality-red.csv"   # relative to root, or an http(s) URL
    sha256 = "4a402c..."
    overrides = { features = { train_frac = 0.6 }, search = { mlp_max_seconds = 60 } }
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tabduel.data.dataset import load_spec
from tabduel.infra.config import merge
from tabduel.infra.errors import ConfigError, SourceError
from tabduel.infra.store import atomic_write_bytes, sha256_file
from tabduel.settings import Config

OVERRIDABLE = ("features", "search")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class SuiteDataset:
    """One dataset of a suite: its spec file, its source (a local path or a URL) and its checksum."""

    name: str
    spec: str
    source: str
    sha256: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def is_url(self) -> bool:
        """True when the source is downloaded."""
        return self.source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    path: str
    datasets: tuple[SuiteDataset, ...]
    quick: tuple[str, ...]

    def pick(self, quick: bool) -> tuple[SuiteDataset, ...]:
        """All datasets, or the quick ones (the suite's `quick` list, else its first three)."""
        if not quick:
            return self.datasets
        if not self.quick:
            return self.datasets[:3]
        return tuple(d for d in self.datasets if d.name in self.quick)


def _text(where: str, data: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = data.get(key, "")
    if required and key not in data:
        raise ConfigError(f"{where}: missing key {key!r}")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} = {value!r} must be a string")
    return value


def load_suite(path: str | Path, root: str = "") -> Suite:
    """Read and check a suite file; `root` (when given) replaces the file's own root for sources."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"suite file not found: {path}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"name", "root", "quick", "description", "datasets"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: datasets, description, name, "
                          "quick, root")
    name = _text(str(path), data, "name", required=False) or path.stem
    if not NAME.match(name):
        raise ConfigError(f"{path}: name = {name!r}: letters, digits, '-' and '_', starting with a letter")
    here = path.resolve().parent
    base = Path(root).resolve() if root else (here / _text(str(path), data, "root", required=False)).resolve()
    entries = data.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[datasets]]: list at least one")
    seen: set[str] = set()
    datasets = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: datasets[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a table, got {entry!r}")
        extra = sorted(set(entry) - {"name", "spec", "source", "sha256", "overrides"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: name, overrides, sha256, "
                              "source, spec")
        ds_name = _text(where, entry, "name")
        if not NAME.match(ds_name):
            raise ConfigError(f"{where}: name = {ds_name!r}: letters, digits, '-' and '_', starting with a letter")
        if ds_name in seen:
            raise ConfigError(f"{where}: name {ds_name!r} is listed twice")
        seen.add(ds_name)
        spec = (here / _text(where, entry, "spec")).resolve()
        if not spec.is_file():
            raise ConfigError(f"{where} ({ds_name}): spec = {entry['spec']!r}: no such file ({spec})")
        load_spec(spec)  # its own checks, naming the spec file
        source = _text(where, entry, "source")
        sha = _text(where, entry, "sha256")
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ConfigError(f"{where} ({ds_name}): sha256 = {sha!r} is not 64 lowercase hex digits")
        if not source.startswith(("http://", "https://")):
            source = str((base / source).resolve())
        overrides = entry.get("overrides", {})
        if not isinstance(overrides, Mapping) or set(overrides) - set(OVERRIDABLE):
            raise ConfigError(f"{where} ({ds_name}): overrides may hold only the sections "
                              f"{', '.join(OVERRIDABLE)}; got {overrides!r}")
        try:
            Config.from_dict(overrides)
        except ConfigError as exc:
            raise ConfigError(f"{where} ({ds_name}): overrides: {exc}") from None
        datasets.append(SuiteDataset(ds_name, str(spec), source, sha, dict(overrides)))
    quick = data.get("quick", [])
    if not isinstance(quick, list) or any(q not in seen for q in quick):
        raise ConfigError(f"{path}: quick = {quick!r} must list names of the suite's datasets "
                          f"({', '.join(sorted(seen))})")
    return Suite(name, str(path.resolve()), tuple(datasets), tuple(quick))


def check_sources(datasets: tuple[SuiteDataset, ...]) -> None:
    """Every local source exists and has its sha256 (URLs are checked when they are downloaded)."""
    for d in datasets:
        if d.is_url:
            continue
        if not Path(d.source).is_file():
            raise SourceError(f"{d.name}: source {d.source}: file not found (set the suite's root, or --root DIR)")
        digest = sha256_file(d.source)
        if digest != d.sha256:
            raise SourceError(f"{d.name}: source {d.source} has sha256 {digest}, the suite expects {d.sha256}")


def local_source(d: SuiteDataset, data_dir: str | Path, timeout: float = 60.0) -> str:
    """The dataset's raw file on disk: its path, or its URL downloaded once into <data_dir>/raw/ and checked."""
    if not d.is_url:
        return d.source
    target = Path(data_dir) / "raw" / f"{d.name}-{d.sha256[:12]}-{Path(d.source).name}"
    if target.is_file() and sha256_file(target) == d.sha256:
        return str(target)
    try:
        with urllib.request.urlopen(d.source, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise SourceError(f"{d.name}: cannot download {d.source} ({getattr(exc, 'reason', exc)})") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != d.sha256:
        raise SourceError(f"{d.name}: {d.source} has sha256 {digest}, the suite expects {d.sha256}; not saved")
    atomic_write_bytes(target, payload)
    return str(target)


def dataset_config(cfg: Config, d: SuiteDataset) -> Config:
    """The settings of one dataset: the bench's, with the suite's overrides for it on top."""
    return Config.from_dict(merge(cfg.to_dict(), d.overrides))
