"""Features: calendar parts, ordinal codes, target, seeded split, train-only scaling, encodings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rawdata import write_raw
from tabduel.data.dataset import load_spec
from tabduel.data.features import ROW, derive, make_features, split_indices
from tabduel.data.ingest import ingest
from tabduel.infra.config import FeaturesConfig
from tabduel.infra.errors import ConfigError

SPEC = load_spec()


@pytest.fixture()
def table(raw_csv):
    return ingest(raw_csv, SPEC)[0]


def test_derive_calendar_codes_and_target(table):
    out = derive(table, SPEC)
    first = out.iloc[0]  # 01/12/2017 was a Friday in December, in Winter
    assert (first["day"], first["month"], first["season"]) == (5, 12, 4)
    assert set(out["holiday"]) <= {1, 2} and set(out["func"]) <= {1, 2}
    no_holiday = table["holiday"].astype(str) == "No Holiday"
    assert (out.loc[no_holiday, "holiday"] == 1).all()
    np.testing.assert_allclose(out["count"], table["count"])  # the transform comes after the split
    assert "date" not in out.columns


def test_the_target_is_transformed_as_the_spec_says(table):
    splits, manifest = make_features(table, SPEC, FeaturesConfig())
    train = splits["train"]
    np.testing.assert_allclose(train["count"], np.log10(1 + table["count"].to_numpy()[train[ROW]]))
    assert manifest["target_transform"] == "log10p1" and manifest["target_params"] == {}


def test_default_features_are_the_original_fourteen(table):
    splits, manifest = make_features(table, SPEC, FeaturesConfig())
    assert manifest["features"] == list(SPEC.inputs)
    assert manifest["rows"] == {"train": 864, "valid": 288, "test": 288}
    assert sum(manifest["rows"].values()) == len(table)
    rows = np.concatenate([splits[s][ROW].to_numpy() for s in ("train", "valid", "test")])
    assert sorted(rows) == list(range(len(table)))


def test_scaler_uses_train_only(table):
    splits, manifest = make_features(table, SPEC, FeaturesConfig())
    train = splits["train"][manifest["features"]]
    np.testing.assert_allclose(train.mean(), 0, atol=1e-9)
    np.testing.assert_allclose(train.std(ddof=1), 1, atol=1e-9)
    raw_train = derive(table, SPEC).set_index(ROW).loc[splits["train"][ROW], "temp"]
    assert manifest["scaler"]["mean"]["temp"] == pytest.approx(raw_train.mean())
    assert abs(splits["valid"]["temp"].mean()) > 1e-6  # valid is scaled with train's numbers, not its own


def test_split_is_seeded(table):
    a = split_indices(100, 1, 0.6, 0.2)
    assert all(np.array_equal(a[k], split_indices(100, 1, 0.6, 0.2)[k]) for k in a)
    assert not np.array_equal(a["train"], split_indices(100, 2, 0.6, 0.2)["train"])


def test_onehot_and_cyclic_options(table):
    cfg = FeaturesConfig(onehot=("season", "day"), cyclic=("hour",))
    splits, manifest = make_features(table, SPEC, cfg)
    names = manifest["features"]
    assert [f"season_{i}" for i in range(1, 5)] == [n for n in names if n.startswith("season")]
    assert "day_7" in names and "day" not in names and "hour" not in names
    assert {"hour_sin", "hour_cos"} <= set(names)
    assert set(manifest["scaler"]["mean"]) == set(names) - {n for n in names if "_" in n}
    frame = pd.concat(splits.values())
    np.testing.assert_array_equal(frame[[f"season_{i}" for i in range(1, 5)]].sum(axis=1), 1)
    # each one-hot input's columns, a level each, for a family that embeds a category instead (realmlp)
    assert manifest["categories"] == {"season": [f"season_{i}" for i in range(1, 5)],
                                      "day": [f"day_{i}" for i in range(1, 8)]}


def test_onehot_of_a_non_input_is_named(table):
    with pytest.raises(ConfigError, match="'count' is not an input column"):
        make_features(table, SPEC, FeaturesConfig(onehot=("count",)))


def test_cyclic_without_period_is_named(table):
    with pytest.raises(ConfigError, match="cyclic: column 'temp' has no period"):
        make_features(table, SPEC, FeaturesConfig(cyclic=("temp",)))


def test_too_few_rows_for_a_split(tmp_path):
    from rawdata import raw_rows
    table = ingest(write_raw(tmp_path / "tiny.csv", raw_rows(days=1)[:2]), SPEC)[0]
    with pytest.raises(Exception, match="split is empty"):
        make_features(table, SPEC, FeaturesConfig())
