"""data/split_checks.py: leakage across the splits and shift of validation/test from train, as warnings."""

import numpy as np
import pandas as pd
import pytest

from purchase_intent.config import DataConfig
from purchase_intent.data.split_checks import (leakage_warnings, psi, rate_shifted, shift_warnings,
                                               split_checks, split_warnings, target_leak_warnings,
                                               time_ordered)
from purchase_intent.schema import FeatureSchema

SCHEMA = FeatureSchema(label="y", numeric=["x", "z"], categorical=["c"], sequences=["items"], id=["customer"])


def _frame(n, start=0, seed=0, rate=0.3, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"customer": [f"c{start + i}" for i in range(n)], "x": rng.normal(shift, 1, n),
                         "z": rng.exponential(1, n), "c": rng.choice(["a", "b"], n),
                         "items": [[f"i{j}" for j in rng.integers(0, 50, 3)] for _ in range(n)],
                         "y": (rng.random(n) < rate).astype(int)})


def _splits(train, validation, test):
    return {"train": train, "validation": validation, "test": test}


def test_ids_in_training_and_test_are_named_with_the_share_of_rows():
    train, val, test = _frame(400), _frame(100, start=400, seed=1), _frame(100, start=500, seed=2)
    assert leakage_warnings(_splits(train, val, test), SCHEMA) == []
    test.loc[:24, "customer"] = train["customer"].iloc[:25].to_numpy()  # 25 of 100 test rows seen in train
    warnings = leakage_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1
    assert warnings[0].startswith("Leakage: 25.0% of the test rows (25 of 100) have a 'customer' that is "
                                  "also in the training split (25 such ids, e.g. 'c0')")
    assert "--set data.group_column=customer" in warnings[0]
    assert leakage_warnings(_splits(train, val, test), SCHEMA, temporal=True) == []  # a time split: by design


def test_an_id_written_otherwise_in_test_is_still_the_training_one():
    train, val, test = _frame(400), _frame(100, start=400, seed=1), _frame(100, start=500, seed=2)
    train["customer"], test["customer"] = [str(i) for i in range(400)], [f" {i}.0" for i in range(10, 110)]
    warnings = leakage_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1 and warnings[0].startswith("Leakage: 100.0% of the test rows (100 of 100)")


def test_a_feature_that_alone_separates_the_classes_is_named_as_a_possible_leak():
    train, val, test = _frame(400), _frame(300, start=400, seed=1), _frame(100, start=700, seed=2)
    assert target_leak_warnings(_splits(train, val, test), SCHEMA) == []
    for df in (train, val):  # known after the purchase: a refund amount (0 for non-buyers), an order status
        df["z"] = np.where(df["y"] == 1, 0.0, 5 + df["z"])  # buyers lowest, one tie: ROC-AUC 1 the other way
        df.loc[df.index[:3], "z"] = np.nan  # missing counts as lowest
        df["c"] = np.where(df["y"] == 1, "paid", df["c"])
    (warning,) = target_leak_warnings(_splits(train, val, test), SCHEMA)
    assert warning.startswith("Possible target leak: 2 feature(s) alone all but separate the validation buyers")
    assert "'c' (ROC-AUC 1.000)" in warning and "'z' (ROC-AUC 0.99" in warning and "lower values buy" in warning
    assert warning in split_checks(_splits(train, val, test), SCHEMA, DataConfig())  # reaches the run's warnings
    few = pd.concat([val[val["y"] == 0], val[val["y"] == 1].iloc[:19]])  # 19 buyers: too few to tell
    assert target_leak_warnings(_splits(train, few, test), SCHEMA) == []


def test_rows_repeated_across_splits_warn_unless_chance_explains_them():
    train, val, test = _frame(400), _frame(100, start=400, seed=1), _frame(100, start=500, seed=2)
    test.iloc[:20, 1:] = train.iloc[:20, 1:].to_numpy()  # 20 rows copied from train (all but the id)
    warnings = leakage_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1 and warnings[0].startswith("Leakage: 20.0% of the test rows repeat a training "
                                                         "row exactly (every feature), against 0.0% expected")
    assert "not kept together by the id column 'customer': the same rows under other ids" in warnings[0]
    no_id = FeatureSchema(label="y", numeric=["x", "z"], categorical=["c"], sequences=["items"])
    assert "declare its id column" in leakage_warnings(_splits(train, val, test), no_id)[0]
    coarse = FeatureSchema(label="y", categorical=["c"])  # two values: rows meet by chance
    assert leakage_warnings(_splits(train, val, test), coarse) == []


def test_base_rate_shift_beyond_5_points_or_1_5_times_and_3_standard_errors():
    assert rate_shifted(0.416, 5000, 0.481, 1500)  # Online Retail: 41.6 % -> 48.1 %
    assert rate_shifted(0.043, 20000, 0.015, 3000)  # a truncated test window: 4.3 % -> 1.5 %
    assert not rate_shifted(0.416, 200, 0.481, 60)  # the same gap, but within the noise of 60 rows
    assert not rate_shifted(0.40, 100000, 0.43, 100000)  # significant but small: 3 points, 1.08 times
    train, val, test = _frame(3000, rate=0.3), _frame(1000, seed=1, rate=0.3), _frame(1000, seed=2, rate=0.45)
    warnings = shift_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1 and warnings[0].startswith("Base rate shift: ")
    assert "of the test rows are buyers against" in warnings[0] and "random split" in warnings[0]
    assert "end of the file" in shift_warnings(_splits(train, val, test), SCHEMA, temporal=True)[0]
    # Online Retail's validation -> test: 41.6 % -> 48.1 % (train at 41.6 % too: one reference each way)
    train, val, test = _frame(6000, rate=0.416), _frame(2000, seed=1, rate=0.416), _frame(2000, seed=2, rate=0.481)
    val["y"] = (np.arange(2000) < 832).astype(int)  # exactly 41.6 %
    test["y"] = (np.arange(2000) < 962).astype(int)  # 48.1 %
    warnings = shift_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1 and "48.1 % of the test rows are buyers against" in warnings[0]
    assert "41.6 % in validation (+6.5 points, 4 standard errors)" in warnings[0]


def test_numeric_feature_shift_by_population_stability_index():
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert psi(x, rng.normal(size=2000)) < 0.02
    assert psi(x, rng.normal(1.0, 1, 2000)) > 0.25
    assert psi(np.full(100, 3.0), np.full(50, 3.0)) == pytest.approx(0.0)
    with_missing = np.where(rng.random(2000) < 0.3, np.nan, rng.normal(size=2000))
    assert psi(x, with_missing) > 0.25  # missing values appear: a bin of their own
    train, val, test = _frame(3000), _frame(1000, seed=1), _frame(1000, seed=2, shift=1.0)
    warnings = shift_warnings(_splits(train, val, test), SCHEMA)
    assert len(warnings) == 1 and warnings[0].startswith("Feature shift: 1 numeric feature(s) of the test split")
    assert "'x' (" in warnings[0] and "'z'" not in warnings[0]
    small = _splits(train, val, _frame(150, seed=2, shift=1.0))  # too few rows: not computed
    assert shift_warnings(small, SCHEMA) == []


def test_split_checks_know_which_splits_are_by_time():
    assert not time_ordered(DataConfig(name="t.csv"))
    assert time_ordered(DataConfig(name="t.csv", split_time_column="month"))
    assert not time_ordered(DataConfig(name="t.csv", split_time_column="month", split_column="s"))
    assert time_ordered(DataConfig(name="online_retail"))
    assert time_ordered(DataConfig(name="log.csv", format="events", split_by="time"))
    assert not time_ordered(DataConfig(name="log.csv", format="events"))
    train, val, test = _frame(400), _frame(100, seed=1), _frame(100, seed=2)  # ids c0.. in all three
    assert len(split_checks(_splits(train, val, test), SCHEMA, DataConfig(name="t.csv"))) == 2
    assert split_checks(_splits(train, val, test), SCHEMA, DataConfig(name="t.csv", split_time_column="m")) == []


def test_split_warnings_name_small_splits_only():
    ok = {"validation": {"examples": 5000, "positive_rate": 0.3}, "test": {"examples": 800, "positive_rate": 0.1}}
    assert split_warnings(ok) == []
    small = {"train": {"examples": 50, "positive_rate": 0.5},  # train is not checked
             "validation": {"examples": 150, "positive_rate": 0.5},  # < 200 rows
             "test": {"examples": 1000, "positive_rate": 0.02}}  # 20 buyers < 30
    warnings = split_warnings(small)
    assert len(warnings) == 2
    assert warnings[0].startswith("The validation split is small (150 rows, 75 buyers")
    assert warnings[1].startswith("The test split is small (1,000 rows, 20 buyers")
