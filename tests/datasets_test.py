"""Dataset adapters (Online Shoppers, reviews), data-path resolution and the TFDS builders, on fixtures."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from purchase_intent.config import get_config
from purchase_intent.data import DATA_ENV, load_splits, resolve_data_file
from purchase_intent.schema import FeatureSchema, SchemaError

DATA = Path(__file__).parent / "data"
SHOPPERS = DATA / "online_shoppers_sample.csv.gz"
REVIEWS = DATA / "womens_reviews_sample.csv.gz"
RETAIL = DATA / "online_retail_sample.csv.gz"


def _cfg(name, path, *extra):
    return get_config(overrides=[f"data.name={name}", f"data.path={path}", *extra]).data


def test_online_shoppers_adapter_parses_fixture_into_schema(caplog):
    caplog.set_level("INFO")
    schema, splits = load_splits(_cfg("online_shoppers", SHOPPERS))
    assert schema.label == "Revenue" and "PageValues" in schema.numeric and "Month" in schema.categorical
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 303  # duplicates kept
    assert sizes["validation"] == sizes["test"] == pytest.approx(0.15 * 303, abs=2)
    for df in splits.values():
        assert set(df[schema.label].unique()) == {0, 1}
        assert df["Weekend"].isin(["True", "False"]).all()
        assert df["PageValues"].dtype == np.float32
    assert "3 exact duplicate rows (kept)" in caplog.text
    # The split does not depend on train.seed.
    _, again = load_splits(_cfg("online_shoppers", SHOPPERS), seed=123)
    assert splits["test"].equals(again["test"])


def test_womens_reviews_adapter_excludes_rating_and_renames():
    schema, splits = load_splits(_cfg("womens_reviews", REVIEWS))
    assert schema.text == ["title", "review_text"] and "rating" not in schema.feature_names
    assert schema.label == "recommended"
    train = splits["train"]
    assert (train["title"] == "").any()  # missing titles become ""
    assert train["review_text"].str.len().max() > 50
    assert train["age"].dtype == np.float32
    assert sum(len(v) for v in splits.values()) == 300


def test_schema_files_describe_a_user_table(tmp_path):
    """A user table of the Online Shoppers layout needs only the schema file."""
    from purchase_intent.data.online_shoppers import SCHEMA_FILE

    cfg = get_config(overrides=[f"data.name={SHOPPERS}", f"data.schema={SCHEMA_FILE}"]).data
    schema, splits = load_splits(cfg)
    assert schema == FeatureSchema.load(SCHEMA_FILE)
    assert sum(len(v) for v in splits.values()) == 303


def test_max_examples_subsamples_with_a_fixed_seed():
    _, a = load_splits(_cfg("womens_reviews", REVIEWS, "data.max_examples=100"))
    _, b = load_splits(_cfg("womens_reviews", REVIEWS, "data.max_examples=100"))
    assert 95 <= sum(len(v) for v in a.values()) <= 105
    assert a["train"].equals(b["train"])


def test_resolve_data_file(tmp_path, monkeypatch):
    folder = tmp_path / "online_shoppers"
    folder.mkdir()
    shutil.copy(SHOPPERS, folder / "online_shoppers_intention.csv.gz")
    assert resolve_data_file("online_shoppers", str(tmp_path)) == folder / "online_shoppers_intention.csv.gz"
    assert resolve_data_file("online_shoppers", str(folder)) == folder / "online_shoppers_intention.csv.gz"
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_file("online_shoppers") == folder / "online_shoppers_intention.csv.gz"
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SchemaError, match="data.path=FILE_OR_DIR"):
        resolve_data_file("online_shoppers")
    with pytest.raises(SchemaError, match="not found"):
        resolve_data_file("womens_reviews", str(tmp_path))


@pytest.mark.parametrize("builder_name,fixture,filename,label", [
    ("purchase_intent_online_shoppers", SHOPPERS, "online_shoppers_intention.csv.gz", "Revenue"),
    ("purchase_intent_womens_reviews", REVIEWS, "womens_clothing_ecommerce_reviews.csv.gz", "recommended"),
    ("purchase_intent_online_retail", RETAIL, "online_retail.csv.gz", "label"),
])
def test_tfds_builders_produce_the_documented_splits(tmp_path, builder_name, fixture, filename, label):
    import tensorflow_datasets as tfds

    import purchase_intent.data.tfds_builders  # noqa: F401 (registers the builders)

    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(fixture, manual / filename)
    builder = tfds.builder(builder_name, data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    assert set(builder.info.splits) == {"train", "validation", "test"}
    ds = tfds.load(builder_name, split="test", data_dir=str(tmp_path / "tfds"))
    examples = list(tfds.as_numpy(ds))
    assert len(examples) == builder.info.splits["test"].num_examples > 0
    assert {int(e[label]) for e in examples} <= {0, 1}
    # Same examples as the pandas adapter.
    name = {"Revenue": "online_shoppers", "recommended": "womens_reviews", "label": "online_retail"}[label]
    _, splits = load_splits(_cfg(name, manual / filename))
    for split in ("train", "validation", "test"):
        assert builder.info.splits[split].num_examples == len(splits[split])


# -- user tables: grouped and time splits ------------------------------------------------------
def _snapshots(tmp_path, customers=200, months=6, name="snap.csv", **schema_extra):
    """One row per customer per month (dates day-first, the 1st of each month), the label a trait
    of the customer: the case where a row-by-row split tests on customers seen in training."""
    import json

    import pandas as pd

    rng = np.random.default_rng(0)
    trait = np.repeat(rng.normal(size=customers), months)
    df = pd.DataFrame({
        "customer_id": np.repeat([f"c{i:04d}" for i in range(customers)], months),
        "month": np.tile([f"01/{m:02d}/2024" for m in range(1, months + 1)], customers),
        "m": np.tile(np.arange(1, months + 1), customers),
        "spend": trait + rng.normal(0, 0.3, customers * months),
        "y": (trait > 0.5).astype(int)})
    df.to_csv(tmp_path / name, index=False)
    (tmp_path / "schema.json").write_text(json.dumps({"label": "y", "numeric": ["spend", "m"],
                                                      "id": ["customer_id"], **schema_extra}))
    return df


def _table_cfg(tmp_path, *extra, name="snap.csv"):
    return get_config(overrides=[f"data.name={tmp_path / name}", f"data.schema={tmp_path / 'schema.json'}",
                                 *extra]).data


def _ids(splits):
    return {k: set(v["customer_id"]) for k, v in splits.items()}


def _months(splits):
    return {k: sorted(set(v["m"].astype(int))) for k, v in splits.items()}


def test_repeated_ids_keep_each_customer_in_one_split(tmp_path, caplog):
    import logging

    _snapshots(tmp_path)
    with caplog.at_level(logging.INFO):
        _, splits = load_splits(_table_cfg(tmp_path))  # group_column=auto: the id column repeats
    ids = _ids(splits)
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    assert not (ids["validation"] & ids["test"])
    assert {k: len(v) for k, v in ids.items()} == {"train": 140, "validation": 30, "test": 30}
    assert any("the id column 'customer_id' repeats" in r.getMessage() for r in caplog.records)
    _, again = load_splits(_table_cfg(tmp_path))
    assert all(again[k].equals(splits[k]) for k in splits)  # seeded
    _, rows = load_splits(_table_cfg(tmp_path, "data.group_column=none"))  # row by row: customers straddle
    ids = _ids(rows)
    assert len(ids["train"] & ids["test"]) > 100
    _, named = load_splits(_table_cfg(tmp_path, "data.group_column=customer_id"))
    assert all(named[k].equals(splits[k]) for k in splits)


def test_an_id_written_as_an_integer_and_as_a_float_is_one_customer(tmp_path):
    """Numeric customer ids, some rows written 1042 and others 1042.0 (files appended after a float
    column): one customer, kept in one split."""
    df = _snapshots(tmp_path)
    number = df["customer_id"].str[1:].astype(int).astype(str)
    df["customer_id"] = np.where(df["m"] % 2 == 0, number + ".0", " " + number)
    df.to_csv(tmp_path / "snap.csv", index=False)
    _, splits = load_splits(_table_cfg(tmp_path))
    ids = {k: set(v["customer_id"].str.strip().str.replace(".0", "", regex=False)) for k, v in splits.items()}
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["validation"])
    assert {k: len(v) for k, v in ids.items()} == {"train": 140, "validation": 30, "test": 30}


def test_unique_ids_give_the_row_by_row_split_as_before(tmp_path):
    from purchase_intent.data import random_split

    df = _snapshots(tmp_path, customers=300, months=1)
    cfg = _table_cfg(tmp_path)
    _, splits = load_splits(cfg)
    before = random_split(df, cfg, 0, "y")  # no group: the split of earlier versions
    assert all(splits[k]["customer_id"].tolist() == before[k]["customer_id"].tolist() for k in splits)


def test_time_split_tests_on_the_latest_months(tmp_path):
    _snapshots(tmp_path)
    cfg = _table_cfg(tmp_path, "data.split_time_column=month", "data.time_format=%d/%m/%Y")
    _, splits = load_splits(cfg)
    assert _months(splits) == {"train": [1, 2, 3, 4], "validation": [5], "test": [6]}
    # whole months (the fractions ask for 180 rows of 1,200): a month's rows never straddle two splits
    with pytest.raises(SchemaError, match=r"column 'month': spreadsheet row 3 .*'01/02/2024'.*data.time_format=%d/%m/%Y"):
        load_splits(_table_cfg(tmp_path, "data.split_time_column=month"))  # every date reads two ways
    with pytest.raises(SchemaError, match=r"leaves the train split empty: the column has 6 distinct"):
        load_splits(_table_cfg(tmp_path, "data.split_time_column=month", "data.time_format=%d/%m/%Y",
                               "data.test_fraction=0.9", "data.validation_fraction=0.05"))


def test_time_split_on_a_numeric_period_and_the_split_column_first(tmp_path):
    df = _snapshots(tmp_path)
    df["period"] = df["month"].str[3:5].astype(int) + 202400  # 202401 .. 202406
    df["fold"] = np.where(df["customer_id"] < "c0100", "train", np.where(df["customer_id"] < "c0150", "val", "test"))
    df.to_csv(tmp_path / "snap.csv", index=False)
    _, splits = load_splits(_table_cfg(tmp_path, "data.split_time_column=period"))
    assert _months(splits) == {"train": [1, 2, 3, 4], "validation": [5], "test": [6]}
    _, by_column = load_splits(_table_cfg(tmp_path, "data.split_time_column=period", "data.split_column=fold"))
    assert len(by_column["train"]) == 600 and min(by_column["test"]["customer_id"]) == "c0150"
    df.loc[7, "period"] = np.nan
    df.to_csv(tmp_path / "snap.csv", index=False)
    with pytest.raises(SchemaError, match=r"column 'period' \(data.split_time_column\), spreadsheet row 9"):
        load_splits(_table_cfg(tmp_path, "data.split_time_column=period"))


def test_split_columns_missing_from_the_table_are_named(tmp_path):
    _snapshots(tmp_path)
    with pytest.raises(SchemaError, match=r"missing column\(s\) 'customer' \(the group column, data.group_column\)"):
        load_splits(_table_cfg(tmp_path, "data.group_column=customer"))
    with pytest.raises(SchemaError, match=r"'day' \(the date column, data.split_time_column\)"):
        load_splits(_table_cfg(tmp_path, "data.split_time_column=day"))
    _snapshots(tmp_path, customers=2, months=6)
    with pytest.raises(SchemaError, match=r"group column 'customer_id' has 2 distinct value\(s\)"):
        load_splits(_table_cfg(tmp_path))
