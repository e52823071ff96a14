"""A small generated suite for bench tests: three datasets written by tests/messy.py's writers, their shipped specs."""

from __future__ import annotations

from pathlib import Path

import messy

from tabduel.data.dataset import load_spec
from tabduel.data.features import make_features, save_features
from tabduel.data.ingest import ingest
from tabduel.infra.config import FeaturesConfig
from tabduel.infra.store import sha256_file
from tabduel.search.space import features_config

SPECS = Path(__file__).resolve().parents[1] / "data" / "datasets"
SMALL = {"airfoil": ("airfoil.toml", 150), "wine_red": ("wine_red.toml", 150), "auto_mpg": ("auto_mpg.toml", 120)}


def write_suite(folder: Path, names: tuple[str, ...] = tuple(SMALL), name: str = "gen") -> Path:
    """Raw files under folder/raw/ and folder/<name>.toml listing them with their sha256; returns the suite file."""
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    lines = [f'name = "{name}"', 'root = "raw"', ""]
    for ds in names:
        spec_file, n = SMALL[ds]
        path = messy.write_like(spec_file, raw / f"{ds}.dat", load_spec(SPECS / spec_file), n=n)
        lines += ["[[datasets]]", f'name = "{ds}"', f'spec = "{SPECS / spec_file}"', f'source = "{path.name}"',
                  f'sha256 = "{sha256_file(path)}"', ""]
    suite = folder / f"{name}.toml"
    suite.write_text("\n".join(lines))
    return suite


def airfoil_features(root: Path, n: int, base: str = "ordinal") -> str:
    """The features (base) of a generated airfoil file of n rows under root, as the features step writes them."""
    spec = load_spec(SPECS / "airfoil.toml")
    df, _ = ingest(str(messy.airfoil(root / "a.dat", n=n)), spec)
    return str(save_features(root / base, *make_features(df, spec, features_config(base, spec, FeaturesConfig()))))
