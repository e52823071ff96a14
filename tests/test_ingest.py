"""Ingest: decoding, header mapping, and one test per validation rule with exactly one violation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rawdata import HEADER, raw_rows, write_raw
from tabduel.data.dataset import clean_header, load_spec
from tabduel.data.ingest import decode, ingest
from tabduel.infra.errors import DataError

SPEC = load_spec()
COL = {name: i for i, name in enumerate(HEADER)}


def rows(days: int = 3) -> list[list[str]]:
    return raw_rows(days=days, seed=1)


def _has(message: str, part: str) -> bool:
    """The error names the file and holds this part (a hint on what to change may follow it)."""
    return "bad.csv" in message and part in message


def ingest_error(tmp_path: Path, data: list[list[str]], header: list[str] | None = None) -> str:
    path = write_raw(tmp_path / "bad.csv", data, header)
    with pytest.raises(DataError) as err:
        ingest(path, SPEC)
    return str(err.value)


@pytest.mark.parametrize("encoding,bom,newline", [("cp1252", False, "\r\n"), ("utf-8", False, "\n"),
                                                  ("utf-8", True, "\r\n"), ("latin-1", False, "\n")])
def test_decodes_each_encoding_and_line_ending(tmp_path, encoding, bom, newline):
    path = write_raw(tmp_path / "raw.csv", rows(), encoding=encoding, newline=newline, bom=bom)
    df, info = ingest(path, SPEC)
    assert list(df.columns) == [c.name for c in SPEC.columns]
    assert len(df) == 72
    assert info["encoding"] == ("utf-8-sig" if bom else {"latin-1": "cp1252"}.get(encoding, encoding))


def test_types_and_values(tmp_path):
    data = rows()
    df, _ = ingest(write_raw(tmp_path / "raw.csv", data), SPEC)
    assert df["date"].dtype == "datetime64[ns]"
    assert df["date"].iloc[0] == pd.Timestamp(2017, 12, 1)
    assert df["count"].dtype == np.int64 and df["hour"].dtype == np.int64
    assert df["temp"].dtype == np.float64
    assert list(df["season"].cat.categories) == ["Spring", "Summer", "Autumn", "Winter"]
    assert df["count"].tolist() == [int(r[1]) for r in data]


def test_clean_header_drops_non_ascii_and_spaces():
    assert clean_header("Temperature(\u00b0C)") == "Temperature(C)"
    assert clean_header(" Rented Bike  Count ") == "Rented_Bike_Count"


def test_decode_falls_back_to_cp1252():
    assert decode("Temperature(\u00b0C)".encode("cp1252")) == ("Temperature(\u00b0C)", "cp1252")
    assert decode("\u00b0".encode("utf-8")) == ("\u00b0", "utf-8")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        ingest(tmp_path / "nope.csv", SPEC)


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        ingest(tmp_path / "empty.csv", SPEC)


def test_header_only_file(tmp_path):
    assert "has a header but no data rows" in ingest_error(tmp_path, [])


def test_missing_column(tmp_path):
    header = [h for h in HEADER if h != "Humidity(%)"]
    data = [[v for i, v in enumerate(r) if i != COL["Humidity(%)"]] for r in rows()]
    assert _has(ingest_error(tmp_path, data, header), ":1: missing column(s) 'Humidity(%)'")


def test_extra_column(tmp_path):
    header = HEADER + ["Pressure (hPa)"]
    data = [r + ["1013"] for r in rows()]
    assert _has(ingest_error(tmp_path, data, header), ":1: unexpected column(s) 'Pressure_(hPa)'")


def test_repeated_column(tmp_path):
    header = HEADER[:-1] + ["Hour"]
    assert "column 'Hour' appears twice" in ingest_error(tmp_path, rows(), header)


def test_row_with_too_few_fields(tmp_path):
    data = rows()
    data[4] = data[4][:-1]
    assert _has(ingest_error(tmp_path, data), "bad.csv:6: expected 14 fields, found 13")


def test_row_with_too_many_fields(tmp_path):
    data = rows()
    data[9] = data[9] + ["x"]
    assert _has(ingest_error(tmp_path, data), "bad.csv:11: expected 14 fields, found 15")


def test_non_numeric_value(tmp_path):
    data = rows()
    data[2][COL["Temperature(\u00b0C)"]] = "warm"
    message = ingest_error(tmp_path, data)
    assert message.endswith("bad.csv:4: column 'temp' (Temperature(\u00b0C)): value 'warm' is not a number")


def test_fractional_integer(tmp_path):
    data = rows()
    data[0][COL["Rented Bike Count"]] = "12.5"
    assert "bad.csv:2: column 'count'" in ingest_error(tmp_path, data)


def test_negative_count(tmp_path):
    data = rows()
    data[7][COL["Rented Bike Count"]] = "-3"
    assert "bad.csv:9: column 'count' (Rented Bike Count): value '-3' is outside the allowed range 0.." in \
        ingest_error(tmp_path, data)


def test_hour_out_of_range(tmp_path):
    data = rows()
    data[3][COL["Hour"]] = "24"
    assert _has(ingest_error(tmp_path, data),
        "bad.csv:5: column 'hour' (Hour): value '24' is outside the allowed range 0..23")


def test_missing_value(tmp_path):
    data = rows()
    data[5][COL["Humidity(%)"]] = ""
    assert _has(ingest_error(tmp_path, data), "bad.csv:7: column 'humid' (Humidity(%)): value '' is missing")


def test_unknown_season(tmp_path):
    data = rows()
    data[1][COL["Seasons"]] = "Monsoon"
    message = ingest_error(tmp_path, data)
    assert "bad.csv:3: column 'season' (Seasons): value 'Monsoon' is not a known level" in message
    assert "Spring, Summer, Autumn, Winter" in message


def test_unknown_holiday_level(tmp_path):
    data = rows()
    data[1][COL["Holiday"]] = "Festival"
    assert "column 'holiday' (Holiday): value 'Festival'" in ingest_error(tmp_path, data)


def test_unknown_functioning_level(tmp_path):
    data = rows()
    data[1][COL["Functioning Day"]] = "Maybe"
    assert "column 'func' (Functioning Day): value 'Maybe'" in ingest_error(tmp_path, data)


@pytest.mark.parametrize("value", ["2017-12-01", "01/12/17", "Dec 1 2017"])
def test_date_in_wrong_form(tmp_path, value):
    data = rows()
    data[6][COL["Date"]] = value
    assert _has(ingest_error(tmp_path, data),
        f"bad.csv:8: column 'date' (Date): value '{value}' does not match the format '%d/%m/%Y'")


def test_impossible_date(tmp_path):
    data = rows()
    data[6][COL["Date"]] = "31/02/2018"
    assert _has(ingest_error(tmp_path, data),
        "bad.csv:8: column 'date' (Date): value '31/02/2018' is not a real calendar date or time")
