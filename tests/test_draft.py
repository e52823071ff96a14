"""`tabduel spec draft`: the sniffers on small generated files with one quirk each, and whole drafts that load."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import draftdata
import pytest

from tabduel.cli import main
from tabduel.data import draft as d
from tabduel.data.dataset import load_spec
from tabduel.infra.config import default_models
from tabduel.infra.errors import ConfigError, DataError

# ../shared/data/suite beside the checkout (as conftest's SHARED_CSV); TABDUEL_SUITE overrides it (worktrees)
SUITE = Path(os.environ.get("TABDUEL_SUITE") or Path(__file__).resolve().parents[2] / "shared" / "data" / "suite")
# (file under the suite, --target): the files named in SOURCES.md; positions for those without a header
SUITE_FILES = [
    ("wine_quality/winequality-red.csv", "quality"),
    ("wine_quality/winequality-white.csv", "quality"),
    ("auto_mpg/auto-mpg.data", "1"),
    ("california_housing/housing.csv", "median_house_value"),
    ("abalone/abalone.data", "9"),
    ("diamonds/diamonds.csv", "price"),
    ("airfoil_self_noise/airfoil_self_noise.dat", "6"),
    ("ames_housing/AmesHousing.csv", "SalePrice"),
    ("kc_house_sales/kc_house_data.csv", "price"),
]
GENERATED = {
    "sensor.csv": (draftdata.write_sensor, "C6H6(GT)"),
    "cars.data": (draftdata.write_cars, "1"),
    "airfoil.dat": (draftdata.write_airfoil, "6"),
    "houses.csv": (draftdata.write_houses, "SalePrice"),
    "sales.csv": (draftdata.write_sales, "price"),
    "european.csv": (draftdata.write_european, "Umsatz"),
}


def drafted(path: Path, target: str, ignore: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """The drafted spec as parsed TOML, and the report."""
    result = d.draft_spec(path, target, ignore)
    return tomllib.loads(result.toml), result.report


def column(spec: dict, raw: str) -> dict:
    return next(c for c in spec["columns"] if c["raw"] == raw)


# ---------------------------------------------------------------- sniffers, one quirk each


@pytest.mark.parametrize(("lines", "expected"), [
    (["a,b,c", "1,2,3", "4,5,6"], ","),
    (['"x y";"z"', "1,5;2", "3,5;4"], ";"),
    (["1\t2\t3", "4\t5\t6"], "\t"),
    (["a|b", "1|2"], "|"),
    (['18.0   8   307.0\t"chevy malibu"', '15.0   8   350.0\t"buick skylark 320"'], "whitespace"),
    (["1, 2, 3", "4, 5, 6"], ","),  # comma and a space: the comma, not whitespace
])
def test_sniff_delimiter(lines, expected):
    assert d.sniff_delimiter(lines, '"').value == expected


def test_sniff_delimiter_ignores_separator_only_and_trailing_empty_columns():
    lines = ["a;b;c;;", "1;2;3;;", "4;5;6;;", ";;;;", ";;;;"]
    guess = d.sniff_delimiter(lines, '"')
    assert guess.value == ";" and guess.sure and "3 of 3" in guess.why


def test_sniff_number_format_decimal_comma_and_thousands():
    decimal, thousands = d.sniff_number_format(["2,6", "13,6", "0,7578", "1360", "-200"], ";")
    assert (decimal.value, thousands.value) == (",", "")
    decimal, thousands = d.sniff_number_format(["1.234.567,5", "12,25", "3"], ";")
    assert (decimal.value, thousands.value) == (",", ".")
    decimal, thousands = d.sniff_number_format(["1,234,567.5", "12.25", "3"], ";")
    assert (decimal.value, thousands.value) == (".", ",")
    decimal, thousands = d.sniff_number_format(["3504.", "1.225e+006", "7"], ",")
    assert (decimal.value, thousands.value) == (".", "")


@pytest.mark.parametrize(("cell", "decimal", "thousands", "value"), [
    ("3504.", ".", "", 3504.0), ("1.225e+006", ".", "", 1225000.0), ("0,7578", ",", "", 0.7578),
    ("1.234,5", ",", ".", 1234.5), ("1,234", ".", ",", 1234.0), ("12,34", ".", ",", None), ("?", ".", "", None),
    ("nan", ".", "", None), ("inf", ".", "", None), ("18.00.00", ".", "", None),
])
def test_to_number(cell, decimal, thousands, value):
    assert d.to_number(cell, decimal, thousands) == value


def test_sniff_header():
    assert d.sniff_header([["mpg", "cyl"], ["18.0", "8"], ["15", "8"]], ".", "").value is True
    assert d.sniff_header([["18.0", "8", "chevy"], ["15", "8", "buick"]], ".", "").value is False
    text_only = d.sniff_header([["city", "kind"], ["Berlin", "a"], ["Köln", "b"]], ".", "")
    assert text_only.value is True and not text_only.sure


def test_trailing_empty_columns_are_dropped():
    assert d.trailing_empty(["a", "b", "", ""], [["1", "2", "", ""], ["3", "4", "", ""]]) == 2
    assert d.trailing_empty(None, [["1", "2", ""], ["3", "", ""]]) == 2
    assert d.trailing_empty(["a", "b", ""], [["1", "2", ""], ["3", "4", "x"]]) == 3  # data in it: kept


def test_split_line_whitespace_keeps_quoted_names_whole():
    cells = d.split_line('18.0   8   ?      3504.   70  1\t"chevrolet chevelle malibu"', "whitespace", '"')
    assert cells == ["18.0", "8", "?", "3504.", "70", "1", "chevrolet chevelle malibu"]


def test_decode_bytes():
    assert d.decode_bytes(b"\xef\xbb\xbfa,b\n")[0] == "a,b\n"
    text, guess = d.decode_bytes("Temperatur (\u00b0C)\n".encode("cp1252"))
    assert text.startswith("Temperatur (\u00b0C)") and guess.value == "auto" and not guess.sure
    assert d.decode_bytes(b"a,b\n")[1].why.startswith("ASCII")


@pytest.mark.parametrize(("values", "expected"), [
    (["20141013T000000", "20150225T000000"], ("date", "%Y%m%dT%H%M%S")),
    (["10/03/2004", "25/03/2004"], ("date", "%d/%m/%Y")),
    (["2004-03-10", "2004-03-11"], ("date", "%Y-%m-%d")),
    (["18.00.00", "19.00.00"], ("time", "%H.%M.%S")),
    (["18:00", "07:30"], ("time", "%H:%M")),
])
def test_sniff_datetime(values, expected):
    assert d.sniff_datetime(values)[:2] == expected


def test_sniff_datetime_rejects_numbers_and_text():
    assert d.sniff_datetime(["20141013", "20150225"]) is None  # plain integers stay numbers
    assert d.sniff_datetime(["Berlin", "Köln"]) is None


def test_ambiguous_day_month_is_marked_unsure():
    kind, fmt, sure = d.sniff_datetime(["01/02/2004", "03/04/2004"])
    assert (kind, fmt, sure) == ("date", "%d/%m/%Y", False)


def test_isolated_extreme_finds_sentinels_not_ordinary_values():
    assert d.isolated_extreme([-200.0] * 10 + [1.0, 2.5, 3.0] * 30) == (-200.0, 10)
    assert d.isolated_extreme([9999.0] * 5 + [20.0, 30.0, 40.0] * 30) == (9999.0, 5)
    assert d.isolated_extreme([20000.0] * 6 + [200.0, 800.0, 16000.0] * 30) is None  # a real frequency
    assert d.isolated_extreme([0.0] * 20 + [3.0, 4.0] * 30) is None  # zero is a value, not a marker
    assert d.isolated_extreme([-200.0] * 10 + [-180.0, -150.0] * 30) is None  # not apart from the rest


def test_choose_transform():
    import numpy as np

    rng = np.random.default_rng(0)
    assert d.choose_transform(list(rng.lognormal(12, 0.6, 500))).value == "log"
    with_zeros = list(rng.lognormal(1, 1.0, 500)) + [0.0] * 20
    assert d.choose_transform(with_zeros).value == "log1p"
    assert d.choose_transform(list(rng.normal(100, 5, 500))).value == "none"
    assert d.choose_transform(list(rng.lognormal(1, 1.0, 500) - 5)).value == "none"  # skewed but negative


def test_guess_column_keeps_na_as_a_level_in_text():
    col = d.Column(0, "Alley", "alley")
    markers = d.guess_column(col, ["NA", "NA", "Grvl", "Pave", ""], ".", "", False)
    assert col.type == "category" and "NA" in col.levels and markers == {""} and col.n_missing == 1


def test_guess_column_na_in_numbers_is_missing():
    col = d.Column(0, "frontage", "frontage")
    markers = d.guess_column(col, ["60", "NA", "72", "?"], ".", "", False)
    assert col.type == "int" and markers == {"NA", "?"} and col.n_missing == 2


def test_guess_column_zero_padded_codes_and_ids():
    code = d.Column(0, "MS SubClass", "ms_subclass")
    d.guess_column(code, ["020", "060", "020", "120"], ".", "", False)
    assert code.type == "category" and code.levels == ["020", "060", "120"]
    pid = d.Column(1, "PID", "pid")
    d.guess_column(pid, [f"0{526301100 + i}" for i in range(80)], ".", "", False)
    assert pid.type == "ignore"


def test_guess_column_many_levels_is_ignored():
    col = d.Column(0, "car name", "car_name")
    d.guess_column(col, [f"car {i}" for i in range(60)] * 2, ".", "", False)
    assert col.type == "ignore" and "60 distinct" in col.notes[0]


def test_guess_column_number_shapes_are_floats():
    trailing = d.Column(0, "weight", "weight")
    d.guess_column(trailing, ["3504.", "3693.", "2000"], ".", "", False)
    sci = d.Column(1, "price", "price")
    d.guess_column(sci, ["221900", "1.225e+006"], ".", "", True)
    assert trailing.type == sci.type == "float"
    whole = d.Column(2, "rooms", "rooms")
    d.guess_column(whole, ["3", "4", "-1"], ".", "", False)
    assert whole.type == "int"


def test_resolve_column():
    raws = ["Order", "Sale Price", "col3"]
    assert d.resolve_column("Sale Price", raws, True, "--target") == 1
    assert d.resolve_column("sale_price", raws, True, "--target") == 1  # as the reader matches headers
    assert d.resolve_column("1", raws, False, "--target") == 0
    with pytest.raises(ConfigError, match=r"--target 'price' is not a column of the file; columns: 'Order'"):
        d.resolve_column("price", raws, True, "--target")
    with pytest.raises(ConfigError, match=r"no header: give a position 1..3"):
        d.resolve_column("9", raws, False, "--target")


def test_short_names_are_valid_and_unique():
    taken: set[str] = set()
    names = [d.short_name(r, i, taken) for i, r in enumerate(["1st Flr SF", "Temperature(\u00b0C)", "", "a b",
                                                                "a-b"])]
    assert names == ["x1st_flr_sf", "temperature_c", "col3", "a_b", "a_b_2"]


# ---------------------------------------------------------------- the three parts: sniff, guess, render


def _layout(raws: tuple[str, ...], data: list[list[str]], decimal: str = ".") -> d.Layout:
    """A hand-made layout (no file): what guess_columns and render_toml take."""
    g = d.Guess
    return d.Layout(encoding=g("auto", "ASCII; auto reads it"),
                    quote=g('"', "no quotes seen; the default does no harm"),
                    delimiter=g(",", f"{len(data)} of {len(data)} rows split into {len(raws)} fields"),
                    decimal=g(decimal, "the default"), thousands=g("", "no digit groups seen"),
                    header=g(True, "text above numbers"), raws=raws, data=data)


def test_sniff_layout_semicolon_decimal_comma(tmp_path):
    text = '"Temp";"Kind";"Preis";;\r\n1,5;a;10;;\r\n;;;;\r\n-200;b;20;;\r\n\r\n2,25;a;30;;\r\n'
    path = tmp_path / "shop.csv"
    path.write_bytes(text.encode("ascii"))
    layout = d.sniff_layout(path)
    assert (layout.delimiter.value, layout.decimal.value, layout.thousands.value, layout.quote.value) == (
        ";", ",", "", '"')
    assert layout.delimiter.why == "3 of 3 rows split into 3 fields (+2 trailing empty)" and layout.delimiter.sure
    assert layout.encoding.value == "auto" and layout.encoding.why.startswith("ASCII")
    assert layout.has_header and layout.raws == ("Temp", "Kind", "Preis")
    assert layout.data == [["1,5", "a", "10"], ["-200", "b", "20"], ["2,25", "a", "30"]]
    assert (layout.blank, layout.separator_only, layout.dropped_tail) == (1, 1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.blank = 0  # type: ignore[misc]


def test_sniff_layout_without_header_names_columns_by_position(tmp_path):
    layout = d.sniff_layout(_write(tmp_path, "1\t2.5\t3\n4\t5.5\t6\n7\t8.5\t9\n", "x.dat"))
    assert layout.delimiter.value == "\t" and not layout.has_header
    assert layout.raws == ("col1", "col2", "col3") and len(layout.data) == 3


def _sentinel_rows(in_b: bool) -> list[list[str]]:
    rows = []
    for i in range(60):
        a = "-200" if i % 10 == 0 else str(i % 7 + 1)
        b = "-200" if in_b and i % 12 == 3 else str(10 + i % 5)
        rows.append([a, b, str(i % 4), str(i * 3 + 1)])
    return rows


def test_guess_columns_applies_a_sentinel_seen_in_several_columns():
    guesses = d.guess_columns(Path("s.csv"), _layout(("a", "b", "c", "y"), _sentinel_rows(True)), "y")
    assert guesses.missing == ("", "-200")
    (s,) = guesses.sentinels
    assert (s.value, s.hits, s.texts, s.applied, s.n_numeric) == (-200.0, (("a", 6), ("b", 5)), ("-200",), True, 4)
    a = guesses.columns[0]
    assert (a.type, a.n_missing, a.on_missing) == ("int", 6, "impute") and -200.0 not in a.values
    assert a.notes[0] == "-200 (6 rows) taken as missing"
    assert guesses.target.name == "y" and guesses.inputs == ("a", "b", "c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        guesses.inputs = ()  # type: ignore[misc]


def test_guess_columns_only_suggests_a_sentinel_in_one_column():
    guesses = d.guess_columns(Path("s.csv"), _layout(("a", "b", "c", "y"), _sentinel_rows(False)), "y")
    assert guesses.missing == ("",)
    (s,) = guesses.sentinels
    assert not s.applied and s.hits == (("a", 6),)
    a = guesses.columns[0]
    assert a.n_missing == 0 and -200.0 in a.values and not a.on_missing
    assert a.notes == ["check: -200 in 6 rows may mean missing"]


def test_guess_columns_date_with_time_and_target_by_position():
    rows = [[f"{i % 28 + 1:02d}/0{i % 3 + 1}/2021", f"{i % 24:02d}:00", str(i % 5), str(i * 2 + 1)] for i in range(40)]
    guesses = d.guess_columns(Path("t.csv"), _layout(("Day", "Clock", "x", "y"), rows), "4", ["x"])
    day, clock, x, y = guesses.columns
    assert (day.type, day.format, day.time) == ("date", "%d/%m/%Y", "clock")
    assert (clock.type, x.type, y is guesses.target) == ("time", "ignore", True)
    assert guesses.parts == {"month": "month", "isoweekday": "isoweekday", "hour": "hour"}
    assert guesses.periods == {"month": 12, "isoweekday": 7, "hour": 24}
    assert guesses.inputs == ("month", "isoweekday", "hour")


FIXED_TOML = '''\
# Drafted by `tabduel spec draft shop.csv --target Preis`: check each guess, above all the
# ones marked 'check' or 'unsure'. Every key is described in docs/spec-format.md.
# 3 data rows; 1 blank and 0 separator-only rows are skipped; 2 trailing empty column(s) are ignored.
name = "shop"
description = "Drafted from shop.csv"

[source]
member = "shop.csv"

[read]
delimiter = ";"  # 3 of 3 rows split into 3 fields
decimal = ","  # unsure, check: 2 cells with a decimal comma, 1 with a decimal point
thousands = ""  # no digit groups seen
quote = "\\""  # no quotes seen; the default does no harm
encoding = "auto"  # ASCII; auto reads it
header = true  # text above numbers
# -200 may mean missing in Temp (C) (1); add ['-200'] to missing if it does (not applied: not clear)
missing = ["", "?"]  # markers seen in the file ('' = empty cell)

[target]
column = "preis"
transform = "log"  # right-skewed
label = "Preis"

[features]
date_parts = { month = "month" }  # computed from the date
periods = { month = 12 }
inputs = ["temp_c", "kind", "month"]

[[columns]]
# check: -200 in 1 rows may mean missing
raw = "Temp (C)"
name = "temp_c"
type = "float"  # -200 .. 2.5 in the file; add min/max to enforce a range

[[columns]]
raw = "Kind"
name = "kind"
type = "category"
levels = ["Low", "High"]
ordered = true
missing = [""]
on_missing = "impute"

[[columns]]
raw = "Day"
name = "day"
type = "date"
format = "%d.%m.%Y"

[[columns]]
# constant ('x'): ignored
raw = "Note"
name = "note"
type = "ignore"

[[columns]]
raw = "Preis"
name = "preis"
type = "int"  # 10 .. 30 in the file; add min/max to enforce a range
'''


def _fixed_guess() -> tuple[d.Layout, d.ColumnGuesses]:
    layout = dataclasses.replace(
        _layout(("Temp (C)", "Kind", "Day", "Note", "Preis"), [["1,5"] * 5] * 3, ","),
        delimiter=d.Guess(";", "3 of 3 rows split into 3 fields"), blank=1, dropped_tail=2,
        decimal=d.Guess(",", "2 cells with a decimal comma, 1 with a decimal point", sure=False))
    temp = d.Column(0, "Temp (C)", "temp_c", values=[1.5, -200.0, 2.5],
                    notes=["check: -200 in 1 rows may mean missing"])
    kind = d.Column(1, "Kind", "kind", type="category", levels=["Low", "High"], ordered=True, missing=[""],
                    on_missing="impute")
    day = d.Column(2, "Day", "day", type="date", format="%d.%m.%Y")
    note = d.Column(3, "Note", "note", type="ignore", notes=["constant ('x'): ignored"])
    price = d.Column(4, "Preis", "preis", type="int", values=[10.0, 20.0, 30.0])
    guesses = d.ColumnGuesses(
        columns=(temp, kind, day, note, price), target=price, transform=d.Guess("log", "right-skewed"),
        missing=("", "?"), sentinels=(d.Sentinel(-200.0, (("Temp (C)", 1),), ("-200",), False, 2),),
        parts={"month": "month"}, periods={"month": 12}, inputs=("temp_c", "kind", "month"))
    return layout, guesses


def test_render_toml_of_a_fixed_guess():
    layout, guesses = _fixed_guess()
    text = d.render_toml(Path("/data/shop.csv"), layout, guesses)
    assert text == FIXED_TOML
    assert tomllib.loads(text)["columns"][2]["format"] == "%d.%m.%Y"


def test_render_report_of_a_fixed_guess():
    layout, guesses = _fixed_guess()
    report = d.render_report(layout, guesses)
    assert report[:2] == ["delimiter ';' (sure: 3 of 3 rows split into 3 fields)",
                          "quote '\"' (sure: no quotes seen; the default does no harm)"]
    assert report[6:9] == ["skipped rows: 1 blank, 0 separator-only (the reader skips them)",
                           "trailing empty columns: 2 (the reader ignores them)",
                           "possible missing marker ['-200'] (unsure: Temp (C) (1)); not applied"]
    assert report[9] == "target 'Preis' -> preis (int): transform 'log' (sure: right-skewed)"
    assert report[13] == f"  {'Note'!r:<32} -> {'note':<22} ignore; constant ('x'): ignored"


# ---------------------------------------------------------------- whole drafts of generated files


def test_sensor_file(tmp_path):
    spec, report = drafted(draftdata.write_sensor(tmp_path / "sensor.csv"), "C6H6(GT)")
    read = spec["read"]
    assert (read["delimiter"], read["decimal"], read["header"]) == (";", ",", True)
    assert read["missing"] == ["", "-200"]  # clear: -200 sits apart in many columns
    assert [c["raw"] for c in spec["columns"]][-1] == "AH"  # the two trailing empty columns are not declared
    date, time = column(spec, "Date"), column(spec, "Time")
    assert (date["type"], date["format"], date["time"]) == ("date", "%d/%m/%Y", "time")
    assert (time["type"], time["format"]) == ("time", "%H.%M.%S")
    assert column(spec, "C6H6(GT)")["on_missing"] == "drop_row"
    assert column(spec, "T")["on_missing"] == "impute"
    assert spec["features"]["date_parts"]["hour"] == "hour"
    assert any("5 separator-only" in line for line in report)
    assert report[0].startswith("delimiter ';' (sure: 240 of 240 rows split into 9 fields")


def test_sentinel_in_one_column_is_only_suggested(tmp_path):
    lines = ["a,b,c,y"] + [f"{i % 7},{-999 if i % 10 == 0 else i % 13},{i % 5},{i}" for i in range(1, 120)]
    path = tmp_path / "one.csv"
    path.write_text("\n".join(lines) + "\n")
    spec, report = drafted(path, "y")
    assert spec["read"]["missing"] == [""]
    assert any("possible missing marker ['-999']" in line for line in report)
    text = d.draft_spec(path, "y").toml
    assert "-999 may mean missing in b (11)" in text


def test_whitespace_file(tmp_path):
    spec, _ = drafted(draftdata.write_cars(tmp_path / "cars.data"), "1")
    read = spec["read"]
    assert (read["delimiter"], read["header"], read["missing"]) == ("whitespace", False, ["", "?"])
    assert [c["raw"] for c in spec["columns"]] == [f"col{i}" for i in range(1, 10)]
    assert column(spec, "col4")["on_missing"] == "impute"
    assert column(spec, "col5")["type"] == "float"  # 3504.
    assert column(spec, "col9")["type"] == "ignore"  # all-distinct names
    assert spec["target"]["column"] == "col1"


def test_tab_file_without_header(tmp_path):
    spec, _ = drafted(draftdata.write_airfoil(tmp_path / "airfoil.dat"), "6")
    assert (spec["read"]["delimiter"], spec["read"]["header"]) == ("\t", False)
    assert spec["features"]["inputs"] == ["col1", "col2", "col3", "col4", "col5"]
    assert spec["target"]["transform"] == "none"


def test_na_categories_and_empty_missing(tmp_path):
    spec, _ = drafted(draftdata.write_houses(tmp_path / "houses.csv"), "SalePrice")
    assert spec["read"]["missing"] == [""]
    alley = column(spec, "Alley")
    assert "NA" in alley["levels"] and alley["missing"] == [""] and "on_missing" not in alley
    veneer = column(spec, "Mas Vnr Type")
    assert "None" in veneer["levels"] and veneer["on_missing"] == "impute"
    assert column(spec, "MS SubClass")["levels"] == ["020", "030", "060", "120"]
    assert column(spec, "Order")["type"] == column(spec, "PID")["type"] == "ignore"
    qual = column(spec, "Kitchen Qual")
    assert qual["ordered"] is True and qual["levels"] == ["Po", "Fa", "TA", "Gd", "Ex"]
    assert spec["target"]["transform"] == "log"


def test_na_level_when_na_also_means_missing_elsewhere(tmp_path):
    lines = ["kind,size,y"] + [f"{['NA', 'big', 'small'][i % 3]},{'NA' if i % 11 == 0 else i},{i}"
                               for i in range(1, 60)]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    spec, _ = drafted(path, "y")
    assert spec["read"]["missing"] == ["", "NA"]
    assert column(spec, "kind")["missing"] == [""] and "NA" in column(spec, "kind")["levels"]
    assert column(spec, "size")["on_missing"] == "impute"


def test_sales_file(tmp_path):
    spec, _ = drafted(draftdata.write_sales(tmp_path / "sales.csv"), "price")
    assert column(spec, "id")["type"] == "ignore"
    assert column(spec, "date")["format"] == "%Y%m%dT%H%M%S"
    assert column(spec, "price")["type"] == "float"
    assert column(spec, "zipcode")["type"] == "category"
    assert "hour" not in spec["features"]["date_parts"]  # the time part is always T000000


def test_european_file(tmp_path):
    spec, report = drafted(draftdata.write_european(tmp_path / "european.csv"), "Umsatz")
    assert (spec["read"]["decimal"], spec["read"]["thousands"], spec["read"]["encoding"]) == (",", ".", "auto")
    assert column(spec, "Temperatur (\u00b0C)")["name"] == "temperatur_c"
    assert any(line.startswith("encoding 'auto' (unsure: not UTF-8") for line in report)


def test_ignore_option_and_positions(tmp_path):
    path = draftdata.write_airfoil(tmp_path / "airfoil.dat")
    spec, _ = drafted(path, "6", ("2", "3"))
    assert column(spec, "col2")["type"] == column(spec, "col3")["type"] == "ignore"
    assert spec["features"]["inputs"] == ["col1", "col4", "col5"]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_drafts_load(tmp_path, name):
    writer, target = GENERATED[name]
    raw = writer(tmp_path / name)
    out = tmp_path / "spec.toml"
    out.write_text(d.draft_spec(raw, target).toml)
    spec = load_spec(out)
    assert spec.inputs and spec.target


# ---------------------------------------------------------------- errors: one line naming the fault


def _write(tmp_path: Path, text: str, name: str = "raw.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_error_unknown_target(tmp_path):
    with pytest.raises(ConfigError, match=r"--target 'price' is not a column of the file; columns: 'a', 'b'"):
        d.draft_spec(_write(tmp_path, "a,b\n1,2\n3,4\n"), "price")


def test_error_text_target(tmp_path):
    with pytest.raises(DataError, match=r"the target 'b' is not numeric \(values like 'x'\)"):
        d.draft_spec(_write(tmp_path, "a,b\n1,x\n3,y\n"), "b")


def test_error_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"raw.csv: file is empty"):
        d.draft_spec(_write(tmp_path, "\n\n"), "a")


def test_error_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        d.draft_spec(tmp_path / "nope.csv", "a")


def test_error_ragged_rows(tmp_path):
    with pytest.raises(DataError, match=r"rows have different numbers of fields: 3 have 3, 1 have 2"):
        d.draft_spec(_write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n7,8\n1,2,3\n"), "a")


def test_error_spreadsheet(tmp_path):
    path = tmp_path / "book.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    with pytest.raises(DataError, match=r"a spreadsheet or archive, not a text table"):
        d.draft_spec(path, "a")


def test_error_no_inputs(tmp_path):
    with pytest.raises(DataError, match=r"no usable input columns besides the target 'y'"):
        d.draft_spec(_write(tmp_path, "id,y\n" + "".join(f"{i},{i * 2}\n" for i in range(30))), "y")


def test_error_ignore_target(tmp_path):
    with pytest.raises(ConfigError, match=r"--ignore names the target 'y'"):
        d.draft_spec(_write(tmp_path, "x,y\n1,2\n3,4\n"), "y", ["y"])


# ---------------------------------------------------------------- the command


def test_cli_writes_spec_to_stdout_and_report_to_stderr(tmp_path, capsys):
    raw = draftdata.write_houses(tmp_path / "houses.csv")
    assert main(["spec", "draft", str(raw), "--target", "SalePrice", "--ignore", "Alley"]) == 0
    out, err = capsys.readouterr()
    spec = tomllib.loads(out)
    assert column(spec, "Alley")["type"] == "ignore"
    assert err.startswith("delimiter ',' (sure: 200 of 200 rows split into 10 fields)")


def test_cli_output_file(tmp_path, capsys):
    raw = draftdata.write_airfoil(tmp_path / "airfoil.dat")
    out_path = tmp_path / "specs" / "airfoil.toml"
    assert main(["spec", "draft", str(raw), "--target", "6", "-o", str(out_path)]) == 0
    assert load_spec(out_path).target == "col6"
    assert capsys.readouterr().out == ""
    assert [p.name for p in out_path.parent.iterdir()] == ["airfoil.toml"]  # no temp file left


def test_cli_error_is_one_line(tmp_path, capsys):
    raw = _write(tmp_path, "a,b\n1,2\n3,4\n")
    assert main(["spec", "draft", str(raw), "--target", "zz", "-o", str(tmp_path / "s.toml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("tabduel: error: --target 'zz'")
    assert not (tmp_path / "s.toml").exists()


def test_cli_imports_no_torch_mlflow_or_prefect(tmp_path):
    raw = draftdata.write_airfoil(tmp_path / "airfoil.dat")
    code = ("import sys; from tabduel.cli import main; rc = main(['spec', 'draft', sys.argv[1], '--target', '6']); "
            "heavy = [m for m in ('torch', 'mlflow', 'prefect', 'xgboost', 'pandas') if m in sys.modules]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(raw)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr
    assert tomllib.loads(proc.stdout)["target"]["column"] == "col6"


# ---------------------------------------------------------------- the suite beside the checkout


@pytest.mark.parametrize(("file", "target"), SUITE_FILES, ids=[f for f, _ in SUITE_FILES])
def test_suite_drafts_load(tmp_path, file, target):
    path = SUITE / file
    if not path.is_file():
        pytest.skip(f"{path} not present")
    out = tmp_path / "spec.toml"
    out.write_text(d.draft_spec(path, target).toml)
    spec = load_spec(out)
    assert spec.inputs


# ---------------------------------------------------------------- drafted specs read by the real reader


SUITE_ROWS = {"winequality-red.csv": 1599, "winequality-white.csv": 4898, "auto-mpg.data": 398, "housing.csv": 20640,
              "abalone.data": 4177, "diamonds.csv": 53940, "airfoil_self_noise.dat": 1503, "AmesHousing.csv": 2930,
              "kc_house_data.csv": 21613}  # data rows per SOURCES.md


def draft_and_ingest(tmp_path: Path, raw: Path, target: str):
    """Draft a spec for raw, load it as `tabduel run --dataset` does, and ingest raw with it."""
    from tabduel.data.ingest import ingest

    out = tmp_path / f"{raw.name}.toml"
    out.write_text(d.draft_spec(raw, target).toml)
    spec = load_spec(out)
    df, info = ingest(raw, spec)
    return spec, df, info


def test_sensor_ingests(tmp_path):
    spec, df, info = draft_and_ingest(tmp_path, draftdata.write_sensor(tmp_path / "sensor.csv"), "C6H6(GT)")
    outages = len([i for i in range(240) if i % 9 == 4])
    assert info["blank_rows"] == 5 and info["trailing_empty_columns"] == 2
    assert info["dropped_rows"] == len([i for i in range(240) if i % 31 == 7])  # -200 in the target
    assert info["rows"] == 240 - info["dropped_rows"]
    assert info["missing"]["t"] == {"cells": outages, "policy": "impute"}
    assert str(df["date"].dtype) == "datetime64[ns]" and df["date"].dt.hour.nunique() > 1  # time combined
    assert "time" not in df.columns


def test_na_categories_ingest(tmp_path):
    spec, df, info = draft_and_ingest(tmp_path, draftdata.write_houses(tmp_path / "houses.csv"), "SalePrice")
    assert "NA" in list(df["alley"].cat.categories) and df["alley"].notna().all()
    assert info["missing"]["mas_vnr_type"]["cells"] == len([i for i in range(200) if i % 40 == 5])
    assert list(df["ms_subclass"].cat.categories) == ["020", "030", "060", "120"]
    assert info["rows"] == 200


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_drafts_ingest(tmp_path, name):
    writer, target = GENERATED[name]
    spec, df, info = draft_and_ingest(tmp_path, writer(tmp_path / name), target)
    assert info["rows"] > 0 and list(df.columns) == [c.name for c in spec.kept]
    assert df[spec.target].notna().all()


@pytest.mark.parametrize(("file", "target"), SUITE_FILES, ids=[f for f, _ in SUITE_FILES])
def test_suite_drafts_ingest(tmp_path, file, target):
    path = SUITE / file
    if not path.is_file():
        pytest.skip(f"{path} not present")
    spec, df, info = draft_and_ingest(tmp_path, path, target)
    assert info["rows"] == SUITE_ROWS[path.name] and info["dropped_rows"] == 0
    assert df[spec.target].notna().all()


@pytest.mark.parametrize(("name", "plots"), [("sensor.csv", "true"), ("cars.data", "false")])
def test_drafted_spec_runs_the_pipeline(tmp_path, prefect_api, monkeypatch, capsys, name, plots):
    """`tabduel spec draft raw > my.toml && tabduel run --dataset my.toml --source raw`, with tiny epochs."""
    monkeypatch.chdir(tmp_path)
    writer, target = GENERATED[name]
    raw = writer(tmp_path / name)
    assert main(["spec", "draft", str(raw), "--target", target, "-o", "my.toml"]) == 0
    assert main(["run", "--dataset", "my.toml", "--source", str(raw), f"--{default_models()[0]}-epochs", "3",
                 "--xgboost-n-estimators", "20", "--evaluate-plots", plots, "--evaluate-dpi", "40"]) == 0
    out = capsys.readouterr().out
    assert "ingest" in out and "evaluate" in out
    metrics = json.loads(next((tmp_path / "data" / "evaluate").glob("*/metrics.json")).read_text())
    assert set(metrics) >= set(default_models())  # a drafted spec names no models: the default MLP family trains


def test_row_numbers_and_distinct_text_are_ignored(tmp_path):
    lines = ["n,code,x,y"] + [f"{i},k{i * 7},{i % 4},{(i * 37) % 101}" for i in range(1, 41)]
    spec, _ = drafted(_write(tmp_path, "\n".join(lines) + "\n"), "y")
    assert column(spec, "n")["type"] == column(spec, "code")["type"] == "ignore"
    assert spec["features"]["inputs"] == ["x"]
