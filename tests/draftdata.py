"""Generate small raw files with the quirks of the suite's files (never copies or slices of them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np


def write_sensor(path: Path, rows: int = 240, seed: int = 0) -> Path:
    """Air-quality-like: ';' and decimal comma, date and time columns (%d/%m/%Y, %H.%M.%S), -200 for missing in
    several columns, two trailing empty columns on every line, separator-only rows at the end, CRLF."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2004, 3, 10, 18)
    lines = ["Date;Time;CO(GT);PT08.S1(CO);NMHC(GT);C6H6(GT);T;RH;AH;;"]
    for i in range(rows):
        t = start + dt.timedelta(hours=i)
        temp = 10 + 8 * np.sin(i / 24 * 2 * np.pi) + rng.normal(0, 1)
        co = max(0.1, 2 + 1.5 * np.sin(i / 12) + rng.normal(0, 0.3))
        cells = [t.strftime("%d/%m/%Y"), t.strftime("%H.%M.%S"), f"{co:.1f}".replace(".", ","),
                 str(int(900 + 200 * co + rng.normal(0, 30))), str(int(100 + 50 * co)),
                 f"{3 * co + rng.normal(0, 0.5) + 1:.1f}".replace(".", ","), f"{temp:.1f}".replace(".", ","),
                 f"{50 + rng.normal(0, 10):.1f}".replace(".", ","), f"{0.7 + rng.normal(0, 0.1):.4f}".replace(".", ",")]
        if i % 9 == 4:  # a sensor outage: -200 in several columns at once
            for j in (2, 4, 6, 7, 8):
                cells[j] = "-200"
        if i % 31 == 7:
            cells[5] = "-200"  # the target too
        lines.append(";".join(cells) + ";;")
    lines += [";;;;;;;;;;"] * 5
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return path


def write_cars(path: Path, rows: int = 120, seed: int = 1) -> Path:
    """auto-mpg-like: no header, numbers separated by runs of spaces, a tab before a quoted name with spaces,
    '?' for missing horsepower, weights with a trailing period."""
    rng = np.random.default_rng(seed)
    makes = ["chevrolet chevelle", "ford pinto", "buick skylark 320", "amc rebel sst", "toyota corolla"]
    lines = []
    for i in range(rows):
        cyl = int(rng.choice([4, 6, 8]))
        hp = 40 + 20 * cyl + rng.normal(0, 10)
        weight = 1500 + 350 * cyl + rng.normal(0, 200)
        mpg = 50 - 3 * cyl - hp / 20 + rng.normal(0, 2)
        hp_text = "?" if i % 25 == 3 else f"{hp:.1f}"
        name = f"{makes[i % len(makes)]} {i}"
        lines.append(f"{mpg:<6.1f}{cyl:<4d}{weight / 10:<11.1f}{hp_text:<11}{int(weight)}.{'':6}"
                     f"{rng.uniform(8, 24):<7.1f}{70 + i % 13:<4d}{1 + i % 3}\t\"{name}\"")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_airfoil(path: Path, rows: int = 150, seed: int = 2) -> Path:
    """airfoil-like: tab-separated numbers, no header, CRLF line endings."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(rows):
        freq = int(rng.choice([200, 400, 800, 1600, 3150, 6300, 12500]))
        angle = float(rng.choice([0.0, 1.5, 3.0, 7.3]))
        chord = float(rng.choice([0.0254, 0.1016, 0.3048]))
        vel = float(rng.choice([31.7, 39.6, 55.5, 71.3]))
        level = 130 - 3 * np.log(freq) + 0.1 * vel - 5 * chord + rng.normal(0, 1)
        lines.append(f"{freq}\t{angle:g}\t{chord}\t{vel}\t{rng.uniform(0.0004, 0.05):.8f}\t{level:.3f}")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return path


def write_houses(path: Path, rows: int = 200, seed: int = 3) -> Path:
    """Ames-like: 'NA' as a real category in text columns, empty fields for missing, 'None' as a category,
    a zero-padded code, a leading-zero id and a row number, CRLF, a right-skewed price."""
    rng = np.random.default_rng(seed)
    header = ["Order", "PID", "MS SubClass", "Lot Frontage", "Alley", "Mas Vnr Type", "Garage Yr Blt",
              "Kitchen Qual", "Gr Liv Area", "SalePrice"]
    lines = [",".join(header)]
    for i in range(rows):
        area = int(rng.lognormal(7.2, 0.3))
        qual = str(rng.choice(["Po", "Fa", "TA", "Gd", "Ex"], p=[0.05, 0.15, 0.4, 0.3, 0.1]))
        price = int(area * 90 * {"Po": 0.7, "Fa": 0.8, "TA": 1.0, "Gd": 1.2, "Ex": 1.5}[qual]
                    * rng.lognormal(0, 0.2))
        cells = [str(i + 1), f"0{526301100 + 7 * i}", str(rng.choice(["020", "030", "060", "120"])),
                 "" if i % 7 == 0 else str(int(rng.normal(70, 15))),
                 str(rng.choice(["NA", "NA", "NA", "Grvl", "Pave"])),
                 "" if i % 40 == 5 else str(rng.choice(["None", "BrkFace", "Stone"])),
                 "" if i % 15 == 2 else str(1950 + i % 60), qual, str(area), str(price)]
        lines.append(",".join(cells))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return path


def write_sales(path: Path, rows: int = 200, seed: int = 4) -> Path:
    """King-County-like: quoted ids (repeating), quoted dates as 20141013T000000, prices in scientific notation
    with three-digit exponents, quoted floors and zip codes."""
    rng = np.random.default_rng(seed)
    lines = ["id,date,price,bedrooms,floors,sqft_living,zipcode,lat"]
    day0 = dt.date(2014, 5, 2)
    for i in range(rows):
        beds = int(rng.integers(1, 6))
        living = int(500 + 400 * beds + rng.normal(0, 200))
        price = round(living * 250 * rng.lognormal(0, 0.25), -3)
        price_text = f"{price / 1e6:.4g}e+006" if i % 5 == 0 and price >= 1e6 else str(int(price))
        if i % 9 == 0:
            price_text = f"{price:.4e}".replace("e+0", "e+00")  # 2.2190e+005
            price = float(price_text)
        day = day0 + dt.timedelta(days=int(rng.integers(0, 390)))
        lines.append(f"\"{7129300520 + (i % 150) * 11}\",\"{day:%Y%m%d}T000000\",{price_text},{beds},"
                     f"\"{rng.choice(['1', '1.5', '2'])}\",{living},\"{98001 + i % 12}\",{47 + rng.uniform():.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_european(path: Path, rows: int = 100, seed: int = 5) -> Path:
    """A cp1252 ';' file with decimal commas and '.' thousands separators and a degree sign in the header."""
    rng = np.random.default_rng(seed)
    lines = ["Stadt;Temperatur (\u00b0C);Umsatz;Menge"]
    cities = ["Berlin", "K\u00f6ln", "M\u00fcnchen"]
    for i in range(rows):
        sales = rng.uniform(1000, 900000)
        whole, frac = f"{sales:.2f}".split(".")
        grouped = f"{int(whole):,}".replace(",", ".")
        lines.append(f"{cities[i % 3]};{rng.normal(12, 5):.1f}".replace(".", ",")
                     + f";{grouped},{frac};{int(rng.integers(1, 50))}")
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    return path
