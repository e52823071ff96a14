"""Dataset specs: the built-in one loads anywhere; each spec check names its one violation."""

from __future__ import annotations

import copy
import os
import tomllib

import pytest

from tabduel.data.dataset import builtin_spec_path, load_spec, parse_spec
from tabduel.infra.errors import ConfigError

BASE = tomllib.loads(builtin_spec_path().read_text())


def test_builtin_spec_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec()
    assert spec.name == "seoul-bike" and spec.target == "count" and len(spec.inputs) == 14
    assert spec.source.sha256 == "373339b71a8935d69e9af0abf26a70744632119862eeb3919efb389a7b749c60"
    assert os.path.isabs(spec.path)


def test_custom_spec_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(builtin_spec_path().read_text().replace('name = "seoul-bike"', 'name = "mine"'))
    assert load_spec(path).name == "mine"


def test_missing_spec_file(tmp_path):
    with pytest.raises(ConfigError, match="dataset spec not found"):
        load_spec(tmp_path / "nope.toml")


def mutate(fn):
    data = copy.deepcopy(BASE)
    fn(data)
    return data


def col(d, name):
    """The [[columns]] entry of the Seoul spec with this short name."""
    return next(c for c in d["columns"] if c["name"] == name)


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(extra=1), "unknown key\\(s\\) extra"),
    (lambda d: d.update(models="mlp"), "models = 'mlp' must be a list of strings"),
    (lambda d: d.update(models=[]), "models = \\[\\] names no model"),
    (lambda d: d.update(models=["mlp", "gbm"]), "models: 'gbm' is not a model kind; one of: mlp"),
    (lambda d: d.update(models=["mlp", "xgboost", "mlp"]), "models: a model is named twice"),
    (lambda d: d.pop("target"), "missing key\\(s\\) target"),
    (lambda d: d.update(name="seoul bike"), "name = 'seoul bike' must hold only"),
    (lambda d: d["source"].update(sha256="abc"), "sha256 must be 64 lowercase hex digits"),
    (lambda d: d["source"].pop("sha256"), "a url needs member and sha256"),
    (lambda d: d["columns"][2].update(type="integer"), "type = 'integer' is not one of"),
    (lambda d: d["columns"][11].pop("levels"), "a category column needs levels"),
    (lambda d: d["columns"][11].update(levels=["Spring", 2]), "mixes strings and numbers"),
    (lambda d: d["columns"][11].update(levels=["Spring", "Spring"]), "level\\(s\\) 'Spring' listed twice"),
    (lambda d: d["columns"][11].update(ordered="yes"), "ordered = 'yes' must be true or false"),
    (lambda d: d["columns"][11].update(unknown="keep"), "unknown = 'keep' is not one of reject, missing"),
    (lambda d: d["columns"][0].pop("format"), "a date column needs a format"),
    (lambda d: d["columns"][0].update(format="dd/mm"), "format = 'dd/mm' has no date or time field"),
    (lambda d: d["columns"][0].update(time="clock"), "time = 'clock' is not the name of a time column"),
    (lambda d: d["columns"][2].update(levels=[1, 2]), "key\\(s\\) levels do not apply to a int column"),
    (lambda d: d["columns"][2].update(min="0"), "min = '0' must be a number"),
    (lambda d: d["columns"][2].update(min=30), "min = 30 is above max = 23"),
    (lambda d: d["columns"][2].update(out_of_range="clip"), "out_of_range = 'clip' is not one of"),
    (lambda d: d["columns"][3].update(name="count"), "duplicate column name\\(s\\) count"),
    (lambda d: d["columns"][3].update(name="2temp"), "name = '2temp' must start with a letter"),
    (lambda d: d["columns"][3].update(raw="Rented  Bike Count"), "two raw headers are the same"),
    (lambda d: d["columns"][3].update(missing="?"), "missing = '\\?' must be a list of strings"),
    (lambda d: d["columns"][3].update(on_missing="skip"), "on_missing = 'skip' is not one of reject, drop_row, "
                                                          "impute"),
    (lambda d: d["columns"][3].update(impute="median"), "impute = 'median' needs on_missing = \"impute\""),
    (lambda d: d["columns"][3].update(on_missing="impute", impute="max"), "impute = 'max' is not one of median"),
    (lambda d: d["columns"][11].update(on_missing="impute", impute="median"), "impute = 'median' is not one of "
                                                                             "mode"),
    (lambda d: d["columns"][0].update(on_missing="impute"), "does not apply to a date column"),
    (lambda d: d.update(read={"delimiter": ";;"}), "delimiter = ';;' must be one character or 'whitespace'"),
    (lambda d: d.update(read={"decimal": ";"}), "decimal = ';' is not one of"),
    (lambda d: d.update(read={"decimal": ",", "thousands": ","}), "thousands = ',' is the same as the decimal"),
    (lambda d: d.update(read={"decimal": ",", "delimiter": ","}), "decimal = ',' is the same as the delimiter"),
    (lambda d: d.update(read={"quote": "''"}), "quote = \"''\" must be one character"),
    (lambda d: d.update(read={"encoding": "klingon"}), "encoding = 'klingon' is not a codec"),
    (lambda d: d.update(read={"header": "no"}), "header = 'no' must be true or false"),
    (lambda d: d.update(read={"missing": [1]}), "missing = 1 must be a list of strings"),
    (lambda d: d.update(read={"header": False, "ignore": ["Casual"]}), "ignore needs header = true"),
    (lambda d: d.update(read={"ignore": ["Hour"]}), "two raw headers are the same once cleaned \\(hour\\)"),
    (lambda d: d.update(read={"skip": 1}), "\\[read\\]: unknown key\\(s\\) skip"),
    (lambda d: d["target"].update(column="bikes"), "column 'bikes' is not a column of the spec"),
    (lambda d: d["target"].update(column="season"), "column 'season' is a category column; the target must"),
    (lambda d: d["target"].update(transform="cube"), "transform = 'cube' is not one of"),
    (lambda d: d["target"].update(unit=3), "unit = 3 must be a string"),
    (lambda d: col(d, "count").update(on_missing="impute"), "the target 'count' cannot be imputed"),
    (lambda d: d["features"]["date_parts"].update(day="weekday"), "date part day = 'weekday'"),
    (lambda d: d["features"]["date_parts"].update(hour="month"), "date part 'hour' clashes"),
    (lambda d: d["features"]["periods"].update(hour=1), "periods.hour = 1 must be at least 2"),
    (lambda d: d["features"]["inputs"].append("pressure"), "input 'pressure' is neither"),
    (lambda d: d["features"]["inputs"].append("hour"), "an input is listed twice"),
    (lambda d: d["features"]["inputs"].append("count"), "the target 'count' cannot be an input"),
    (lambda d: d["features"]["inputs"].append("date"), "the date column 'date' cannot be an input"),
    (lambda d: d["columns"][12].update(type="ignore", levels=None) or d["columns"][12].pop("levels"),
     "input 'holiday' is a ignore column"),
])
def test_each_spec_check_names_its_one_violation(change, match):
    with pytest.raises(ConfigError, match=match):
        parse_spec(mutate(change), "spec.toml")


def test_a_time_column_must_belong_to_a_date():
    def add_time(d):
        d["columns"].append({"raw": "Clock", "name": "clock", "type": "time", "format": "%H:%M"})
    with pytest.raises(ConfigError, match="the time column 'clock' is not named by any date's time key"):
        parse_spec(mutate(add_time), "spec.toml")


def test_new_keys_parse_into_the_spec():
    def messy(d):
        d["read"] = {"delimiter": "whitespace", "decimal": ",", "thousands": ".", "quote": "", "encoding": "cp1252",
                     "header": True, "missing": ["?", "-200"], "ignore": ["Casual"]}
        d["target"].update(transform="yeo-johnson", label="bikes", unit="per hour")
        col(d, "temp").update(missing=[""], on_missing="impute", impute="mean")
        col(d, "season").update(ordered=True, unknown="missing", on_missing="drop_row")
        col(d, "hour").update(out_of_range="missing")
        d["columns"][11]["levels"] = [1, 2, 3, 4]
        d["columns"].append({"raw": "Clock", "name": "clock", "type": "time", "format": "%H:%M"})
        d["columns"][0]["time"] = "clock"
    spec = parse_spec(mutate(messy), "spec.toml")
    assert spec.read.delimiter == "whitespace" and spec.read.missing == ("?", "-200")
    assert spec.read.ignore == ("Casual",)
    assert spec.transform == "yeo-johnson" and spec.target_title == "bikes (per hour)"
    temp, season = spec.column("temp"), spec.column("season")
    assert (temp.markers(spec.read), temp.on_missing, temp.impute) == (("",), "impute", "mean")
    assert season.levels == ("1", "2", "3", "4") and season.numeric_levels and season.ordered
    assert spec.column("date").time == "clock" and "clock" not in [c.name for c in spec.kept]
    assert spec.date_column == "date"


def test_imputation_defaults_to_median_for_numbers_and_mode_for_categories():
    def both(d):
        col(d, "temp").update(on_missing="impute")
        col(d, "season").update(on_missing="impute")
    spec = parse_spec(mutate(both), "spec.toml")
    assert spec.column("temp").impute == "median" and spec.column("season").impute == "mode"


def test_date_parts_need_a_date_column():
    def drop_date(d):
        d["columns"] = d["columns"][1:]
    with pytest.raises(ConfigError, match="date_parts need a date column"):
        parse_spec(mutate(drop_date), "spec.toml")
