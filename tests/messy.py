"""Generate small raw files with the quirks of the suite's files (never copies of them): one writer per dataset.

Each writer makes `n` rows of made-up values in the layout the matching spec in data/datasets/ reads, with the
quirks SOURCES.md lists for the real file, and returns the path. The values carry some signal, so models learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def _write(path: Path, lines: list[str], newline: str = "\n", encoding: str = "ascii") -> Path:
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def wine(path: Path, n: int = 300, seed: int = 0) -> Path:
    """Semicolon-separated, every header name quoted and with spaces, data unquoted, integer target."""
    rng = np.random.default_rng(seed)
    names = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
             "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol", "quality"]
    lines = [";".join(f'"{h}"' for h in names)]
    for _ in range(n):
        x = rng.uniform([5, 0.1, 0, 1, 0.01, 2, 10, 0.99, 2.9, 0.3, 8.5], [15, 1.5, 1, 15, 0.6, 70, 280, 1.0, 4, 2, 14])
        quality = int(np.clip(round(3 + (x[10] - 8.5) * 0.6 - x[1] + rng.normal(0, 0.5)), 0, 10))
        lines.append(";".join([f"{v:.4g}" for v in x] + [str(quality)]))
    return _write(path, lines)


def auto_mpg(path: Path, n: int = 120, seed: int = 0) -> Path:
    """No header; numbers separated by runs of spaces, a tab before the quoted name; '?' horsepower; '3504.'."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        cyl = int(rng.choice([4, 6, 8]))
        weight = 1500 + 400 * cyl + rng.normal(0, 200)
        hp = "?" if i % 20 == 7 else f"{40 + 15 * cyl + rng.normal(0, 10):.1f}"
        mpg = max(9.0, 50 - weight / 120 + rng.normal(0, 2))
        fields = [f"{mpg:.1f}", str(cyl), f"{50 * cyl + rng.normal(0, 10):.1f}", hp, f"{weight:.0f}.",
                  f"{rng.uniform(8, 24):.1f}", str(int(rng.integers(70, 83))), str(int(rng.integers(1, 4)))]
        lines.append("   ".join(f"{f:>6}" for f in fields) + f'\t"make model {i % 7}"')
    return _write(path, lines)


def california(path: Path, n: int = 300, seed: int = 0) -> Path:
    """Comma-separated with a header; numbers written as floats ('41.0'); empty total_bedrooms cells."""
    rng = np.random.default_rng(seed)
    lines = ["longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,"
             "median_income,median_house_value,ocean_proximity"]
    places = ["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"]
    for i in range(n):
        income = rng.uniform(0.5, 15)
        rooms = rng.uniform(200, 8000)
        bedrooms = "" if i % 25 == 3 else f"{rooms / 5:.1f}"
        value = min(500001.0, 40000 * income + rng.normal(0, 20000) + 20000)
        lines.append(",".join([f"{rng.uniform(-124, -114):.2f}", f"{rng.uniform(32, 42):.2f}",
                               f"{float(rng.integers(1, 53)):.1f}", f"{rooms:.1f}", bedrooms,
                               f"{rooms / 2:.1f}", f"{rooms / 6:.1f}", f"{income:.4f}", f"{max(value, 15000):.1f}",
                               places[i % 5]]))
    return _write(path, lines)


def abalone(path: Path, n: int = 300, seed: int = 0) -> Path:
    """No header, comma-separated, a text category first, height 0 in two rows."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        length = rng.uniform(0.1, 0.8)
        height = 0.0 if i in (5, 77) else length * 0.3
        rings = max(1, int(round(3 + 20 * length + rng.normal(0, 1.5))))
        lines.append(",".join([["M", "F", "I"][i % 3]] + [f"{v:.4g}" for v in (
            length, length * 0.8, height, length * 1.5, length * 0.6, length * 0.3, length * 0.4)] + [str(rings)]))
    return _write(path, lines)


def diamonds(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Quoted header and quoted ordered grades ('Very Good' with a space); zero dimensions for not measured."""
    rng = np.random.default_rng(seed)
    cuts, colors = ["Fair", "Good", "Very Good", "Premium", "Ideal"], ["J", "I", "H", "G", "F", "E", "D"]
    clarity = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
    lines = ['"carat","cut","color","clarity","depth","table","price","x","y","z"']
    for i in range(n):
        carat = rng.uniform(0.2, 3)
        c, k, q = int(rng.integers(5)), int(rng.integers(7)), int(rng.integers(8))
        price = int(3000 * carat ** 1.7 * (1 + 0.05 * (c + k + q)) + rng.normal(0, 100)) + 326
        x = 0.0 if i == 11 else 6 * carat ** (1 / 3)
        lines.append(f'{carat:.2f},"{cuts[c]}","{colors[k]}","{clarity[q]}",{rng.uniform(55, 70):.1f},'
                     f'{int(rng.integers(50, 70))},{price},{x:.2f},{x:.2f},{0.6 * x:.2f}')
    return _write(path, lines)


def airfoil(path: Path, n: int = 300, seed: int = 0) -> Path:
    """Tab-separated, no header, CRLF line endings, values on a coarse grid."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        freq = float(rng.choice([800, 1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000]))
        angle, chord = float(rng.choice([0, 1.5, 3, 4, 7.3])), float(rng.choice([0.0254, 0.1016, 0.3048]))
        velocity, thick = float(rng.choice([31.7, 39.6, 55.5, 71.3])), rng.uniform(0.0004, 0.05)
        spl = 135 - 3 * np.log(freq / 800) - 10 * chord + 0.05 * velocity - 100 * thick + rng.normal(0, 1)
        lines.append("\t".join([f"{freq:g}", f"{angle:g}", f"{chord:g}", f"{velocity:g}", f"{thick:.6g}",
                                f"{spl:.3f}"]))
    return _write(path, lines, newline="\r\n")


def ames(path: Path, n: int = 200, seed: int = 0, header: list[str] | None = None,
         kinds: dict[str, tuple[str, list[str], str]] | None = None) -> Path:
    """CRLF, names with spaces and '/', 'NA' as a category, empty cells as missing, 'WD ' with a trailing space.

    header/kinds: the spec's raw names and, per name, (type, levels, on_missing), from the spec's columns.
    """
    rng = np.random.default_rng(seed)
    lines = [",".join(header)]
    area_col = "Gr Liv Area"
    for i in range(n):
        area = rng.uniform(500, 4000)
        cells = []
        for name in header:
            kind, levels, _ = kinds[name]
            if name == "Order":
                cells.append(str(i + 1))
            elif name == "PID":
                cells.append(f"0{rng.integers(100000000, 999999999)}")
            elif name == "SalePrice":
                cells.append(str(int(20000 + 60 * area + rng.normal(0, 15000))))
            elif name == area_col:
                cells.append(str(int(area)))
            elif kind == "category":
                value = levels[i % len(levels)]
                cells.append("WD " if value == "WD" else value)
            else:
                cells.append(str(int(rng.integers(0, 200))) if kind == "int" else f"{rng.uniform(0, 200):.0f}")
            if kinds[name][2] == "impute" and i % 17 == 4:
                cells[-1] = ""  # truly missing: an empty field (imputed by the spec)
        lines.append(",".join(cells))
    return _write(path, lines, newline="\r\n")


def kc_house(path: Path, n: int = 300, seed: int = 0) -> Path:
    """Quoted ids, floors and zipcodes; dates as 20141013T000000; some prices as 1.225e+006."""
    rng = np.random.default_rng(seed)
    lines = ["id,date,price,bedrooms,bathrooms,sqft_living,sqft_lot,floors,waterfront,view,condition,grade,"
             "sqft_above,sqft_basement,yr_built,yr_renovated,zipcode,lat,long,sqft_living15,sqft_lot15"]
    for i in range(n):
        living = int(rng.uniform(500, 5000))
        price = 50000 + 250 * living + rng.normal(0, 30000)
        shown = f"{price / 1e6:.4f}e+006" if i % 10 == 0 else str(int(price))  # the file's three-digit exponent
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        lines.append(",".join([f'"{rng.integers(10**9, 10**10)}"', f'"2014{month:02d}{day:02d}T000000"', shown,
                               str(int(rng.integers(0, 7))), f"{rng.choice([1, 1.5, 2.25, 3]):g}", str(living),
                               str(int(rng.uniform(1000, 20000))), f'"{rng.choice([1, 2, 3])}"', "0",
                               str(int(rng.integers(0, 5))), str(int(rng.integers(1, 6))),
                               str(int(rng.integers(3, 13))),
                               str(living), "0", str(int(rng.integers(1900, 2015))), "0",
                               f'"{98000 + int(rng.integers(1, 200))}"', f"{rng.uniform(47.1, 47.8):.4f}",
                               f"{rng.uniform(-122.5, -121.3):.3f}", str(living), str(int(rng.uniform(1000, 20000)))]))
    return _write(path, lines)


def air_quality(path: Path, n: int = 120, seed: int = 0) -> Path:
    """The UCI sensor-file layout: ';' separator, decimal commas, -200 for missing, two trailing empty columns,
    separator-only rows, and the date and time in two columns."""
    rng = np.random.default_rng(seed)
    lines = ["Date;Time;CO(GT);PT08.S1(CO);T;RH;AH;;"]
    for i in range(n):
        day, hour = 10 + i // 24, i % 24
        t = 10 + 8 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 1)
        co = 1 + 0.1 * t + rng.normal(0, 0.2)
        co_text = "-200" if i % 13 == 5 else f"{co:.1f}".replace(".", ",")
        lines.append(f"{day:02d}/03/2004;{hour:02d}.00.00;{co_text};{int(1000 + 30 * t)};"
                     f"{t:.1f};{rng.uniform(20, 80):.1f};{rng.uniform(0.5, 2):.4f};;")
        lines[-1] = _decimal_commas(lines[-1])
    lines += [";;;;;;;;"] * 3
    return _write(path, lines, newline="\r\n")


def _decimal_commas(line: str) -> str:
    """Write the numbers of a ';' line with decimal commas (the time keeps its dots)."""
    date, time, *rest = line.split(";")
    return ";".join([date, time] + [v.replace(".", ",") for v in rest])


AIR_QUALITY_SPEC = '''
name = "air-quality"
[read]
delimiter = ";"
decimal = ","
missing = ["-200", "-200,0"]
[target]
column = "co"
transform = "log1p"
label = "CO concentration"
unit = "mg/m3"
[features]
date_parts = { hour = "hour", weekday = "isoweekday" }
inputs = ["hour", "weekday", "s1", "t", "rh", "ah"]
[[columns]]
raw = "Date"
name = "date"
type = "date"
format = "%d/%m/%Y"
time = "time"
[[columns]]
raw = "Time"
name = "time"
type = "time"
format = "%H.%M.%S"
[[columns]]
raw = "CO(GT)"
name = "co"
type = "float"
on_missing = "drop_row"
[[columns]]
raw = "PT08.S1(CO)"
name = "s1"
type = "int"
[[columns]]
raw = "T"
name = "t"
type = "float"
[[columns]]
raw = "RH"
name = "rh"
type = "float"
[[columns]]
raw = "AH"
name = "ah"
type = "float"
'''

# spec file in data/datasets/ -> (suite file under ../shared/data/suite/, writer of a small file with its quirks)
SUITE: dict[str, tuple[str, Callable[..., Path]]] = {
    "wine_red.toml": ("wine_quality/winequality-red.csv", wine),
    "wine_white.toml": ("wine_quality/winequality-white.csv", wine),
    "auto_mpg.toml": ("auto_mpg/auto-mpg.data", auto_mpg),
    "california_housing.toml": ("california_housing/housing.csv", california),
    "abalone.toml": ("abalone/abalone.data", abalone),
    "diamonds.toml": ("diamonds/diamonds.csv", diamonds),
    "airfoil.toml": ("airfoil_self_noise/airfoil_self_noise.dat", airfoil),
    "ames_housing.toml": ("ames_housing/AmesHousing.csv", ames),
    "kc_house.toml": ("kc_house_sales/kc_house_data.csv", kc_house),
}


def write_like(spec_file: str, path: Path, spec=None, n: int | None = None) -> Path:
    """A small generated file with the quirks of the suite file that spec_file reads."""
    writer = SUITE[spec_file][1]
    kwargs = {} if n is None else {"n": n}
    if writer is ames:
        kwargs["header"] = [c.raw for c in spec.columns]
        kwargs["kinds"] = {c.raw: (c.type, list(c.levels), c.on_missing) for c in spec.columns}
    return writer(path, **kwargs)
