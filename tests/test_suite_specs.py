"""The shipped suite specs read their raw files as published (or, without ../shared, generated files with the
same quirks); the reader's options, each on a small generated file."""

from __future__ import annotations

from pathlib import Path

import messy
import numpy as np
import pandas as pd
import pytest

from tabduel.data.dataset import builtin_spec_path, load_spec, parse_spec
from tabduel.data.features import make_features
from tabduel.data.ingest import ingest
from tabduel.infra.config import FeaturesConfig
from tabduel.infra.errors import DataError

SUITE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "suite"
# rows and missing cells handled, as SOURCES.md counts them
EXPECTED = {"wine_red.toml": (1599, 0), "wine_white.toml": (4898, 0), "auto_mpg.toml": (398, 6),
            "california_housing.toml": (20640, 207), "abalone.toml": (4177, 2), "diamonds.toml": (53940, 35),
            "airfoil.toml": (1503, 0), "ames_housing.toml": (2930, 720), "kc_house.toml": (21613, 0)}


def source_for(spec_file: str, tmp_path: Path) -> tuple[Path, bool]:
    """The shared raw file when it is there, else a generated one with its quirks; and whether it is shared."""
    shared = SUITE_DIR / messy.SUITE[spec_file][0]
    if shared.is_file():
        return shared, True
    spec = load_spec(builtin_spec_path(spec_file))
    return messy.write_like(spec_file, tmp_path / Path(messy.SUITE[spec_file][0]).name, spec), False


@pytest.mark.parametrize("spec_file", sorted(messy.SUITE))
def test_each_suite_spec_reads_its_raw_file(spec_file, tmp_path):
    spec = load_spec(builtin_spec_path(spec_file))
    source, shared = source_for(spec_file, tmp_path)
    df, info = ingest(source, spec)
    missing = sum(v["cells"] for v in info["missing"].values())
    if shared:
        assert (len(df), missing) == EXPECTED[spec_file]
        assert spec.source.sha256 and spec.source.member == source.name
    else:
        assert len(df) > 50 and (missing > 0) == (EXPECTED[spec_file][1] > 0)
    assert list(df.columns) == [c.name for c in spec.kept]
    splits, manifest = make_features(df, spec, FeaturesConfig())
    assert all(np.isfinite(f[manifest["features"]].to_numpy()).all() for f in splits.values())
    assert set(manifest["imputed"]) == {name for name, v in info["missing"].items() if v["policy"] == "impute"
                                       and name in spec.inputs}


def test_sensor_file_with_decimal_commas_sentinels_and_separator_rows(tmp_path):
    import tomllib

    spec = parse_spec(tomllib.loads(messy.AIR_QUALITY_SPEC), "air.toml")
    df, info = ingest(messy.air_quality(tmp_path / "air.csv", n=120), spec)
    assert info["blank_rows"] == 3 and info["trailing_empty_columns"] == 2
    assert info["missing"] == {"co": {"cells": 9, "policy": "drop_row"}} and info["dropped_rows"] == 9
    assert len(df) == 111 and info["rows_read"] == 120
    assert df["date"].iloc[1] == pd.Timestamp(2004, 3, 10, 1)  # date and time combined
    assert df["t"].dtype == np.float64 and 0 < df["co"].min()


def test_whitespace_delimiter_keeps_quoted_names_and_reads_trailing_periods(tmp_path):
    spec = load_spec(builtin_spec_path("auto_mpg.toml"))
    df, info = ingest(messy.auto_mpg(tmp_path / "auto.data", n=40), spec)
    assert len(df) == 40 and info["missing"] == {"horsepower": {"cells": 2, "policy": "impute"}}
    assert df["weight"].notna().all() and (df["weight"] == df["weight"].round()).all()
    assert list(df["origin"].cat.categories) == ["1", "2", "3"]  # levels = [1, 2, 3] match the cells '1'..'3'


def _spec(read: str, columns: str) -> object:
    import tomllib

    text = f'name = "t"\n[read]\n{read}\n[target]\ncolumn = "y"\n[features]\ninputs = ["x"]\n{columns}'
    return parse_spec(tomllib.loads(text), "t.toml")


XY = '[[columns]]\nraw = "x"\nname = "x"\ntype = "float"\n[[columns]]\nraw = "y"\nname = "y"\ntype = "float"\n'


def test_thousands_separator_and_decimal_comma(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('x;y\n"1.234,5";2\n7,25;"3.000"\n')
    df, _ = ingest(path, _spec('delimiter = ";"\ndecimal = ","\nthousands = "."', XY))
    assert df["x"].tolist() == [1234.5, 7.25] and df["y"].tolist() == [2.0, 3000.0]


def test_no_header_names_columns_by_position(tmp_path):
    path = tmp_path / "t.dat"
    path.write_text("1|2\n3|4\n")
    df, _ = ingest(path, _spec('delimiter = "|"\nheader = false', XY))
    assert df["x"].tolist() == [1.0, 3.0]


def test_no_header_with_the_wrong_number_of_columns_names_the_line(tmp_path):
    path = tmp_path / "t.dat"
    path.write_text("1|2|3\n3|4|5\n")
    with pytest.raises(DataError, match=r"t.dat:1: expected 2 fields, found 3"):
        ingest(path, _spec('delimiter = "|"\nheader = false', XY))


def test_a_value_under_a_trailing_empty_header_column_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x;y;;\n1;2;;\n3;4;oops;\n")
    with pytest.raises(DataError, match=r"t.csv:3: field 3 holds 'oops' in a column with no header"):
        ingest(path, _spec('delimiter = ";"', XY))


def test_per_column_markers_replace_the_global_ones(tmp_path):
    cols = XY.replace('name = "x"\ntype = "float"', 'name = "x"\ntype = "category"\nlevels = ["NA", "a"]\n'
                      'missing = [""]\non_missing = "impute"')
    path = tmp_path / "t.csv"
    path.write_text("x,y\nNA,1\na,2\n,3\nNA,NA\n")
    with pytest.raises(DataError, match=r"t.csv:5: column 'y' \(y\): value 'NA' is missing"):
        ingest(path, _spec("", cols))
    path.write_text("x,y\nNA,1\na,2\n,3\n")
    df, info = ingest(path, _spec("", cols))
    assert df["x"].astype(object).tolist()[:2] == ["NA", "a"] and pd.isna(df["x"].iloc[2])
    assert info["missing"] == {"x": {"cells": 1, "policy": "impute"}}


def test_unknown_level_policy(tmp_path):
    cols = XY.replace('name = "x"\ntype = "float"', 'name = "x"\ntype = "category"\nlevels = ["a", "b"]')
    path = tmp_path / "t.csv"
    path.write_text("x,y\na,1\nc,2\n")
    with pytest.raises(DataError, match=r"t.csv:3: column 'x' \(x\): value 'c' is not a known level"):
        ingest(path, _spec("", cols))
    df, info = ingest(path, _spec("", cols.replace('levels = ["a", "b"]', 'levels = ["a", "b"]\nunknown = "missing"\n'
                                                                      'on_missing = "drop_row"')))
    assert len(df) == 1 and info["dropped_rows"] == 1


def test_explicit_encoding_names_the_line_of_a_bad_byte(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"x,y\n1,2\n\xff,3\n")
    with pytest.raises(DataError, match=r"t.csv:3: byte b'\\xff' is not valid utf-8"):
        ingest(path, _spec('encoding = "utf-8"', XY))


def test_iso_timestamps_and_date_parts(tmp_path):
    spec = load_spec(builtin_spec_path("kc_house.toml"))
    df, _ = ingest(messy.kc_house(tmp_path / "kc.csv", n=30), spec)
    assert df["date"].dt.year.eq(2014).all() and df["price"].gt(1000).all()
    splits, manifest = make_features(df, spec, FeaturesConfig())
    assert {"sale_year", "sale_day", "sale_weekday"} <= set(manifest["features"])
