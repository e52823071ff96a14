"""Generate small raw-format files shaped like the UCI Seoul Bike CSV (never a copy of it)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

HEADER = ["Date", "Rented Bike Count", "Hour", "Temperature(\u00b0C)", "Humidity(%)", "Wind speed (m/s)",
          "Visibility (10m)", "Dew point temperature(\u00b0C)", "Solar Radiation (MJ/m2)", "Rainfall(mm)",
          "Snowfall (cm)", "Seasons", "Holiday", "Functioning Day"]
SEASONS = {12: "Winter", 1: "Winter", 2: "Winter", 3: "Spring", 4: "Spring", 5: "Spring", 6: "Summer",
           7: "Summer", 8: "Summer", 9: "Autumn", 10: "Autumn", 11: "Autumn"}


def raw_rows(days: int = 60, seed: int = 0, start: dt.date = dt.date(2017, 12, 1)) -> list[list[str]]:
    """Rows of strings: hourly demand that rises with temperature and peaks at commuting hours."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        day = start + dt.timedelta(days=d * max(1, 360 // days))
        season = SEASONS[day.month]
        base_temp = {"Winter": -2.0, "Spring": 12.0, "Summer": 26.0, "Autumn": 14.0}[season]
        holiday = "Holiday" if rng.random() < 0.05 else "No Holiday"
        functioning = "No" if rng.random() < 0.03 else "Yes"
        for hour in range(24):
            temp = base_temp + 6 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 2)
            humid = float(np.clip(rng.normal(55, 15), 5, 98))
            rain = float(max(0.0, rng.normal(-1.5, 1.5)))
            peak = 2.5 if hour in (8, 18) else 1.0 if 7 <= hour <= 22 else 0.3
            mean = np.exp(4 + 0.04 * temp) * peak * (0.6 if rain > 0 else 1.0) * (0.7 if holiday == "Holiday" else 1)
            count = 0 if functioning == "No" else int(rng.poisson(mean))
            rows.append([day.strftime("%d/%m/%Y"), str(count), str(hour), f"{temp:.1f}", f"{humid:.0f}",
                         f"{abs(rng.normal(1.7, 1)):.1f}", str(int(rng.uniform(200, 2000))),
                         f"{temp - (100 - humid) / 5:.1f}", f"{max(0.0, np.sin((hour - 6) / 12 * np.pi)):.2f}",
                         f"{rain:.1f}", f"{max(0.0, rng.normal(-2, 1)) if season == 'Winter' else 0.0:.1f}",
                         season, holiday, functioning])
    return rows


def write_raw(path: Path, rows: list[list[str]] | None = None, header: list[str] | None = None,
              encoding: str = "cp1252", newline: str = "\r\n", bom: bool = False) -> Path:
    """Write rows the way UCI does: unquoted fields, cp1252 header with the degree sign, CRLF."""
    rows = raw_rows() if rows is None else rows
    lines = [",".join(header or HEADER)] + [",".join(r) for r in rows]
    data = (newline.join(lines) + newline).encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path
