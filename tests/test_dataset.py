"""Dataset specs: the built-in one loads anywhere; each spec check names its one violation."""

from __future__ import annotations

import copy
import os
import tomllib

import pytest

from tabduel.dataset import builtin_spec_path, load_spec, parse_spec
from tabduel.errors import ConfigError

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


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(extra=1), "unknown key\\(s\\) extra"),
    (lambda d: d.pop("target"), "missing key\\(s\\) target"),
    (lambda d: d["source"].update(sha256="abc"), "sha256 must be 64 lowercase hex digits"),
    (lambda d: d["columns"][2].update(type="integer"), "type 'integer' is not one of"),
    (lambda d: d["columns"][11].pop("levels"), "a category column needs levels"),
    (lambda d: d["columns"][0].pop("format"), "a date column needs a format"),
    (lambda d: d["columns"][3].update(name="count"), "duplicate column name\\(s\\) count"),
    (lambda d: d["columns"][3].update(raw="Rented  Bike Count"), "two raw headers are the same"),
    (lambda d: d["target"].update(column="bikes"), "column 'bikes' is not a column of the spec"),
    (lambda d: d["target"].update(transform="sqrt"), "transform 'sqrt' is not one of"),
    (lambda d: d["features"]["date_parts"].update(day="weekday"), "date part day = 'weekday'"),
    (lambda d: d["features"]["date_parts"].update(hour="month"), "date part 'hour' clashes"),
    (lambda d: d["features"]["inputs"].append("pressure"), "input 'pressure' is neither"),
    (lambda d: d["features"]["inputs"].append("count"), "the target 'count' cannot be an input"),
    (lambda d: d["features"]["inputs"].append("date"), "the date column 'date' cannot be an input"),
])
def test_each_spec_check_names_its_one_violation(change, match):
    with pytest.raises(ConfigError, match=match):
        parse_spec(mutate(change), "spec.toml")


def test_date_parts_need_a_date_column():
    def drop_date(d):
        d["columns"] = d["columns"][1:]
    with pytest.raises(ConfigError, match="date_parts need a date column"):
        parse_spec(mutate(drop_date), "spec.toml")
