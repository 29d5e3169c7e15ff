"""Bad-input matrix: training data, config and serving requests.

Every case either is handled in a documented way (the test checks how) or
fails with an error that names the column / row / field at fault (the test
checks the words). Serving cases also check that the server keeps answering.
"""

import gzip
import logging

import grpc
import numpy as np
import pandas as pd
import pytest

from purchase_intent.config import ConfigError, DataConfig, get_config
from purchase_intent.data import load_splits
from purchase_intent.data.readers import read_event_log, read_table
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.preprocessing import raw_batch
from purchase_intent.schema import FeatureSchema, SchemaError

MODEL = "purchase_intent"


@pytest.fixture(scope="module")
def tiny(exported):
    """conftest's ``exported`` (a tiny untrained model on synthetic data), served on a free loopback port."""
    from purchase_intent.serving.local import start_server

    server = start_server(exported["vdir"].parent, MODEL, port=0, poll_seconds=0, max_batch=32)
    yield {**exported, "cfg": get_config("tiny"), "server": server}
    server.stop()


def frame(n=30, seed=1):
    return make_synthetic(n, seed=seed)


def predict(tiny, df):
    """Validates ``df`` and runs the model on it; returns (probabilities, preprocessed inputs)."""
    schema = tiny["schema"]
    clean = schema.validate(df, require_label=False)
    x = tiny["pre"](raw_batch(clean, schema))
    p = tiny["model"](x, training=False).numpy().reshape(-1)
    assert p.shape == (len(df),) and np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1)), p
    return p, x


def write_table(tmp_path, df, name="t.csv", schema=SCHEMA):
    df = df.copy()
    for col in schema.sequence_like:
        if col in df.columns:
            df[col] = df[col].map(lambda v: "|".join(v) if isinstance(v, list) else v)
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def train_on(tmp_path, df, schema=SCHEMA, extra=()):
    path = write_table(tmp_path, df, schema=schema)
    spath = tmp_path / "schema.json"
    schema.save(spath)
    cfg = DataConfig(name=str(path), schema=str(spath))
    for k, v in extra:
        setattr(cfg, k, v)
    return load_splits(cfg, seed=0)


# -- the cases -------------------------------------------------------------------------------------
# Each returns nothing; it raises (pytest.raises inside) or asserts the documented handling.

def missing_column(tiny, tmp_path):
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['price_seen'\]"):
        SCHEMA.validate(frame().drop(columns="price_seen"))


def renamed_column(tiny, tmp_path):
    df = frame().rename(columns={"device": "Device"})
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['device'\].*'Device'"):
        SCHEMA.validate(df)


def extra_columns_are_ignored(tiny, tmp_path):
    df = frame()
    df["session_id"] = [f"s{i}" for i in range(len(df))]
    out = SCHEMA.validate(df)
    assert "session_id" not in out.columns and len(out) == len(df)


def wrong_numeric_type(tiny, tmp_path):
    df = frame()
    df["pages_viewed"] = df["pages_viewed"].astype(object)
    df.loc[7, "pages_viewed"] = "many"
    with pytest.raises(SchemaError, match=r"column 'pages_viewed', spreadsheet row 9 \(header = row 1\): expected a number, got str 'many'"):
        SCHEMA.validate(df)


def list_in_a_text_column(tiny, tmp_path):
    df = frame()
    df["query"] = df["query"].astype(object)
    df.at[3, "query"] = ["a", "b"]
    with pytest.raises(SchemaError, match=r"column 'query', spreadsheet row 5 \(header = row 1\): expected a string, got list"):
        SCHEMA.validate(df)


def nan_numeric_imputed_and_flagged(tiny, tmp_path):
    df = frame()
    df.loc[2, "session_minutes"] = np.nan
    _, x = predict(tiny, df)
    flags = x["numeric_missing"].numpy()
    assert flags[2, 0] == 1.0 and flags.sum() == 1.0
    assert x["numeric"].numpy()[2, 0] == 0.0  # the training mean after standardisation


def inf_numeric_imputed_and_flagged(tiny, tmp_path):
    df = frame()
    df.loc[4, "price_seen"] = np.inf
    df.loc[5, "price_seen"] = -np.inf
    _, x = predict(tiny, df)
    assert list(x["numeric_missing"].numpy()[[4, 5], 2]) == [1.0, 1.0]


def negative_and_absurd_values(tiny, tmp_path):
    df = frame()
    df.loc[0, "price_seen"] = -50.0
    df.loc[1, "price_seen"] = 1e30
    df.loc[2, "session_minutes"] = -1e30
    _, x = predict(tiny, df)
    numeric = x["numeric"].numpy()
    assert np.all(np.abs(numeric) <= 10.0)  # signed log1p, standardised, clipped at 10 sd
    assert x["numeric_missing"].numpy().sum() == 0  # finite values are not "missing"


def empty_strings(tiny, tmp_path):
    df = frame()
    df.loc[0, "query"] = ""
    df.loc[1, "device"] = ""
    df.at[2, "item_title"] = [""] * len(df.at[2, "item_id"])
    p, x = predict(tiny, df)
    assert x["device"].numpy()[1] == 0  # unseen / empty category -> the OOV id


def non_utf8_bytes_in_csv(tiny, tmp_path):
    df = frame()
    path = write_table(tmp_path, df)
    raw = path.read_bytes().replace(b"mobile", b"mob\xe9le", 1)  # a latin-1 byte
    path.write_bytes(raw)
    with caplog_at(logging.WARNING) as records:
        table = read_table(path, SCHEMA)
    assert len(table) == len(df)  # no row lost
    assert any("not UTF-8" in r.getMessage() and "'device'" in r.getMessage() for r in records)
    predict(tiny, table)


def non_utf8_bytes_in_a_frame(tiny, tmp_path):
    df = frame()
    df["query"] = df["query"].astype(object)
    df.at[0, "query"] = b"caf\xe9 mug"
    out = SCHEMA.validate(df)
    assert out.at[0, "query"] == "caf\ufffd mug"
    predict(tiny, df)


def very_long_text(tiny, tmp_path):
    df = frame()
    df.loc[0, "query"] = "buy cheap " * 50_000  # 500,000 characters
    df.at[1, "item_title"] = ["red mug " * 10_000] * len(df.at[1, "item_id"])
    p, x = predict(tiny, df)
    assert x["query_token_ids"].shape[1] == tiny["cfg"].data.text_sequence_length  # truncated


def empty_sequences(tiny, tmp_path):
    df = frame()
    for col in SCHEMA.sequence_like:
        df.at[0, col] = []
    p, x = predict(tiny, df)
    assert np.all(x["item_id"].numpy()[0] == 0)


def ten_thousand_event_sequence(tiny, tmp_path):
    df = frame()
    n = 10_000
    df.at[0, "item_id"] = [f"sku{i % 100}" for i in range(n)]
    df.at[0, "event_type"] = ["view"] * (n - 1) + ["cart"]
    df.at[0, "item_title"] = ["red mug sale"] * n
    p, x = predict(tiny, df)
    ids = x["event_type"].numpy()[0]
    assert len(ids) == tiny["cfg"].data.max_sequence_length
    assert ids[-1] == tiny["pre"].lookups["event_type"](np.array(["cart"])).numpy()[0]  # most recent kept


def sequence_lengths_disagree(tiny, tmp_path):
    df = frame()
    df.at[5, "event_type"] = df.at[5, "event_type"] + ["view"]
    with pytest.raises(SchemaError, match=r"spreadsheet row 7 \(header = row 1\): sequence columns describe the same events"):
        SCHEMA.validate(df)


def unsorted_timestamps_in_event_log(tiny, tmp_path):
    events = pd.DataFrame({"session": ["a", "a", "a", "b"], "t": [3, 1, 2, 1],
                           "item": ["x3", "x1", "x2", "y1"], "y": [1, 1, 1, 0]})
    schema = FeatureSchema(label="y", sequences=["item"])
    out = read_event_log(events, schema, key="session", time="t")
    assert list(out.sort_values("session")["item"].iloc[0]) == ["x1", "x2", "x3"]


def duplicate_rows_kept_and_reported(tiny, tmp_path):
    df = frame(60)
    df = pd.concat([df, df.iloc[:5]], ignore_index=True)
    with caplog_at(logging.WARNING) as records:
        schema, splits = train_on(tmp_path, df)
    assert sum(len(s) for s in splits.values()) == 65  # nothing dropped
    assert any("5 row(s) repeat an earlier row" in r.getMessage() for r in records)


def label_not_binary(tiny, tmp_path):
    df = frame()
    df["label"] = df["label"].astype(object)
    df.loc[9, "label"] = "maybe"
    with pytest.raises(SchemaError, match=r"label column 'label', spreadsheet row 11 \(header = row 1\): expected 0/1.*'maybe'"):
        SCHEMA.validate(df)


def missing_label(tiny, tmp_path):
    df = frame()
    df["label"] = df["label"].astype(float)
    df.loc[4, "label"] = np.nan
    with pytest.raises(SchemaError, match=r"label column 'label', spreadsheet row 6 \(header = row 1\)"):
        SCHEMA.validate(df)


def one_class_training_data(tiny, tmp_path):
    df = frame(60)
    df["label"] = 0
    with pytest.raises(SchemaError, match="only label 0.*needs both 0 and 1"):
        train_on(tmp_path, df)


def empty_file(tiny, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(SchemaError, match="empty.csv: the file is empty"):
        read_table(path, SCHEMA)


def header_only_file(tiny, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(SCHEMA.feature_names + ["label"]) + "\n")
    with pytest.raises(SchemaError, match="header.csv: the file has no data rows"):
        read_table(path, SCHEMA)


def truncated_gzip(tiny, tmp_path):
    path = write_table(tmp_path, frame(200), name="big.csv")
    data = gzip.compress(path.read_bytes())
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match=r"big.csv.gz: cannot read the CSV file.*truncated or corrupt"):
        read_table(gz, SCHEMA)


def unknown_config_key(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown config key 'model.lstm_unit'.*lstm_units"):
        get_config("tiny", overrides=["model.lstm_unit=8"])


def unknown_config_section_in_file(tiny, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("modle:\n  lstm_units: 8\n")
    with pytest.raises(ConfigError, match="Unknown config section 'modle'"):
        get_config("tiny", config_file=str(path))


def out_of_range_hyperparameters(tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"model.dropout must be in \[0, 1\).*train.learning_rate"):
        get_config("tiny", overrides=["model.dropout=1.5", "train.learning_rate=-1"])


def wrong_type_hyperparameter(tiny, tmp_path):
    with pytest.raises(ConfigError, match="model.lstm_units expects an integer, got 'big'"):
        get_config("tiny", overrides=["model.lstm_units=big"])


def config_file_is_not_executed(tiny, tmp_path):
    """YAML is read with safe_load: a Python-object tag is refused, never run."""
    path = tmp_path / "evil.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"train: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(Exception, match="could not determine a constructor|python/object"):
        get_config("tiny", config_file=str(path))
    assert not marker.exists()


# Serving requests: the local server answers INVALID_ARGUMENT naming the input and keeps serving.

def _request_case(mutate, words, code=grpc.StatusCode.INVALID_ARGUMENT):
    def case(tiny, tmp_path):
        from purchase_intent.serving import PurchaseIntentClient, ServingError
        from purchase_intent.serving.client import frame_to_arrays

        schema = tiny["schema"]
        sample = tiny["splits"]["test"].head(8)
        arrays = mutate(frame_to_arrays(sample, schema))
        with PurchaseIntentClient(tiny["server"].target, MODEL, timeout=20.0, max_retries=0,
                                  schema=schema) as client:
            with pytest.raises(ServingError) as info:
                client.predict_arrays(arrays)
            assert info.value.code == code, str(info.value)
            for word in words:
                assert word in info.value.details, (word, info.value.details)
            assert np.all(np.isfinite(client.predict(sample)))  # still serving
    return case


def _handled_request_case(mutate, check):
    def case(tiny, tmp_path):
        from purchase_intent.serving import PurchaseIntentClient
        from purchase_intent.serving.client import frame_to_arrays

        schema = tiny["schema"]
        arrays = mutate(frame_to_arrays(tiny["splits"]["test"].head(8), schema))
        with PurchaseIntentClient(tiny["server"].target, MODEL, timeout=20.0, schema=schema) as client:
            p = client.predict_arrays(arrays)
        assert p.shape == (8,) and np.all(np.isfinite(p))
        check(p)
    return case


def _set(name, fn):
    return lambda a: {**a, name: fn(a[name].copy())}


def _nan_first(v):
    v[0] = np.nan
    return v


def _bytes_first(v):
    v[0] = b"\xff\xfe not utf-8"
    return v


CASES = {
    "missing column": missing_column,
    "renamed column": renamed_column,
    "extra columns ignored": extra_columns_are_ignored,
    "wrong numeric type": wrong_numeric_type,
    "list in a text column": list_in_a_text_column,
    "NaN imputed and flagged": nan_numeric_imputed_and_flagged,
    "inf imputed and flagged": inf_numeric_imputed_and_flagged,
    "negative and absurd values": negative_and_absurd_values,
    "empty strings": empty_strings,
    "non-UTF-8 bytes in a CSV": non_utf8_bytes_in_csv,
    "non-UTF-8 bytes in a frame": non_utf8_bytes_in_a_frame,
    "very long texts": very_long_text,
    "empty sequences": empty_sequences,
    "10,000-event sequence": ten_thousand_event_sequence,
    "sequence lengths disagree": sequence_lengths_disagree,
    "unsorted timestamps": unsorted_timestamps_in_event_log,
    "duplicate rows": duplicate_rows_kept_and_reported,
    "label not 0/1": label_not_binary,
    "missing label": missing_label,
    "one-class training data": one_class_training_data,
    "empty file": empty_file,
    "header-only file": header_only_file,
    "truncated gzip": truncated_gzip,
    "unknown config key": unknown_config_key,
    "unknown config section": unknown_config_section_in_file,
    "out-of-range hyperparameters": out_of_range_hyperparameters,
    "wrong-type hyperparameter": wrong_type_hyperparameter,
    "config file never executed": config_file_is_not_executed,
    "request: missing input": _request_case(lambda a: {k: v for k, v in a.items() if k != "country"},
                                            ["missing", "'country'"]),
    "request: wrong shape": _request_case(_set("item_id", lambda v: v[:, :, None]),
                                          ["'item_id'", "rank 3", "expected rank 2"]),
    "request: wrong dtype": _request_case(_set("session_minutes", lambda v: v.astype(np.int64)),
                                          ["'session_minutes'", "DT_INT64", "DT_FLOAT"]),
    "request: oversized batch": _request_case(
        lambda a: {k: np.concatenate([v] * 5) for k, v in a.items()}, ["40", "32"]),
    "request: NaN numeric": _handled_request_case(_set("price_seen", _nan_first), lambda p: None),
    "request: non-UTF-8 bytes": _handled_request_case(_set("query", _bytes_first), lambda p: None),
    "request: empty sequences": _handled_request_case(
        lambda a: {**a, **{n: np.full_like(a[n], "") for n in SCHEMA.sequence_like}}, lambda p: None),
}


class caplog_at:
    """Collects log records of the purchase_intent loggers at ``level`` (a context manager)."""

    def __init__(self, level):
        self.level = level
        self.records = []

    def __enter__(self):
        handler = logging.Handler(self.level)
        handler.emit = self.records.append
        self.handler = handler
        root = logging.getLogger("purchase_intent")
        self.old_level = root.level
        root.setLevel(min(self.level, root.level or self.level))
        root.addHandler(handler)
        return self.records

    def __exit__(self, *exc):
        root = logging.getLogger("purchase_intent")
        root.removeHandler(self.handler)
        root.setLevel(self.old_level)


def test_matrix_has_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tiny, tmp_path):
    CASES[case](tiny, tmp_path)
