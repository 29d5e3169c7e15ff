import numpy as np
import pandas as pd
import pytest

from purchase_intent.config import ConfigError, get_config
from purchase_intent.schema import FeatureSchema, SchemaError

SCHEMA = FeatureSchema(label="y", text=["q"], sequences=["items", "events"], numeric=["x"],
                       categorical=["c"])


def frame(**changes):
    df = pd.DataFrame({
        "q": ["red dress", "lamp"],
        "items": [["a", "b"], []],
        "events": ["view|cart", ""],
        "x": [1.0, 2.5],
        "c": ["UK", 3],
        "y": [1, 0],
    })
    for k, v in changes.items():
        df[k] = v
    return df


def test_validate_canonical_form():
    out = SCHEMA.validate(frame())
    assert out["events"].tolist() == [["view", "cart"], []]
    assert out["items"].tolist() == [["a", "b"], []]
    assert out["c"].tolist() == ["UK", "3"]
    assert out["x"].dtype == np.float32
    assert out["y"].tolist() == [1, 0]


def test_missing_column_is_named():
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['x'\]"):
        SCHEMA.validate(frame().drop(columns="x"))


def test_wrong_numeric_type_names_column_and_row():
    with pytest.raises(SchemaError, match=r"column 'x', spreadsheet row 3 \(header = row 1\): expected a number, got str 'abc'"):
        SCHEMA.validate(frame(x=[1.0, "abc"]))


@pytest.mark.parametrize("value", ["$1,234.50", "15%", "3,5", "1.234,5", "12 €", "1 200 EUR", "(12.50)"])
def test_a_number_written_for_people_gets_a_hint(value):
    with pytest.raises(SchemaError, match=r"got str .*\(1 such rows\); the file writes numbers as people read them"):
        SCHEMA.validate(frame(x=[1.0, value]))
    with pytest.raises(SchemaError) as plain:  # not a formatted number: no hint
        SCHEMA.validate(frame(x=[1.0, "lots"]))
    assert "as people read them" not in str(plain.value)


def test_a_missing_column_spelt_otherwise_is_pointed_to():
    from purchase_intent.schema import near_names

    renamed = frame().rename(columns={"x": "X", "c": " C"})
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['x', 'c'\].*; did you mean 'X' for 'x', ' C' for 'c' "
                                          r"\(names must match exactly"):
        SCHEMA.validate(renamed)
    for spelt in ("Order Total", "order-total ", "ORDER_TOTAL"):
        assert near_names(["order_total"], ["id", spelt]).startswith(f"; did you mean {spelt!r} for 'order_total'")
    assert near_names(["price"], ["prices", "cost"]) == ""  # another name: no guess


def test_label_not_binary():
    with pytest.raises(SchemaError, match=r"label column 'y', spreadsheet row 3 \(header = row 1\): expected 0/1"):
        SCHEMA.validate(frame(y=[1, 2]))


def test_empty_dataset():
    with pytest.raises(SchemaError, match="empty"):
        SCHEMA.validate(frame().iloc[:0])


def test_sequence_lengths_must_agree():
    with pytest.raises(SchemaError, match=r"spreadsheet row 2 \(header = row 1\): sequence columns .* 'items' has 2 and 'events' has 1"):
        SCHEMA.validate(frame(events=["view", ""]))


def test_inf_becomes_missing_not_dropped():
    out = SCHEMA.validate(frame(x=[np.inf, 2.0]))
    assert len(out) == 2 and np.isnan(out["x"][0])


def test_validate_keeps_raw_values_as_a_caller_sends_them():
    """Empty events and float-looking categories stay raw: the exported graph applies the rules."""
    out = SCHEMA.validate(frame(items=[["a", "", "b", ""], []], events=["view||cart|", ""],
                                c=["3.0", 4.0]))
    assert out["items"][0] == ["a", "", "b", ""]
    assert out["events"][0] == ["view", "", "cart", ""]
    assert out["c"].tolist() == ["3.0", "4"]  # a float artefact is written as a caller writes 4


@pytest.mark.parametrize("changes, column, why", [
    ({"categorical": ["numeric"]}, "numeric", "a Preprocessor output"),
    ({"numeric": ["text_bow"]}, "text_bow", "a Preprocessor output"),
    ({"categorical": ["q_token_ids"]}, "q_token_ids", "output of text column 'q'"),
    ({"numeric": ["items_history"]}, "items_history", "output of sequence column 'items'"),
    ({"categorical": ["purchase_probability"]}, "purchase_probability", "predictions file"),
    ({"label": "purchase_label"}, "purchase_label", "predictions file"),
    ({"id": ["label"]}, "label", "observed outcome"),
])
def test_reserved_names_are_refused_naming_column_and_reason(changes, column, why):
    d = SCHEMA.to_dict()
    d.update(changes)
    with pytest.raises(SchemaError, match=rf"column '{column}' has a reserved name: it is .*{why}"):
        FeatureSchema.from_dict(d)


def test_names_like_reserved_ones_are_fine_when_they_do_not_collide():
    FeatureSchema(label="label", categorical=["browse_history", "c_token_ids"], sequences=["items"])


def test_schema_rejects_unknown_keys_and_duplicates():
    with pytest.raises(SchemaError, match="Unknown schema keys"):
        FeatureSchema.from_dict({"label": "y", "numeric": ["a"], "colour": []})
    with pytest.raises(SchemaError, match="more than once"):
        FeatureSchema(numeric=["a"], categorical=["a"])


def test_schema_yaml_roundtrip(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("label: y\nnumeric: [a, b]\ncategorical: [c]\n")
    s = FeatureSchema.load(path)
    assert s.numeric == ["a", "b"] and s.modalities == ["numeric"]


def test_config_overrides_and_errors():
    cfg = get_config("tiny", overrides=["model.lstm_units=5", "model.hidden_units=[4, 2]"])
    assert cfg.model.lstm_units == 5 and cfg.model.hidden_units == [4, 2]
    # YAML 1.1 reads "3e-4" (no dot) as a string; a float field still takes it.
    assert get_config("tiny", overrides=["train.learning_rate=3e-4"]).train.learning_rate == 3e-4
    with pytest.raises(ConfigError, match="train.learning_rate expects a number"):
        get_config("tiny", overrides=["train.learning_rate=fast"])
    with pytest.raises(ConfigError, match="Unknown config key 'model.lstm_unit'"):
        get_config("tiny", overrides=["model.lstm_unit=5"])
    with pytest.raises(ConfigError, match="expects an integer"):
        get_config("tiny", overrides=["model.lstm_units=big"])
    with pytest.raises(ConfigError, match="model.dropout must be in"):
        get_config("tiny", overrides=["model.dropout=1.5"])
    with pytest.raises(ConfigError, match="Unknown preset"):
        get_config("huge")


def test_lora_and_mixed_precision_config_checks():
    cfg = get_config("tiny", overrides=["model.text_trainable_layers=0", "model.text_lora_rank=8",
                                        "train.mixed_precision=mixed_bfloat16"])
    assert cfg.model.text_lora_rank == 8 and not cfg.model.text_frozen()
    assert get_config("default").model.text_frozen() and get_config("default").train.mixed_precision == "auto"
    with pytest.raises(ConfigError, match="model.text_lora_rank > 0 needs model.text_trainable_layers=0"):
        get_config("tiny", overrides=["model.text_lora_rank=8"])  # tiny trains all layers
    with pytest.raises(ConfigError, match="model.text_lora_rank must be >= 0"):
        get_config("default", overrides=["model.text_lora_rank=-1"])
    with pytest.raises(ConfigError, match="train.mixed_precision must be auto, off, mixed_float16 or mixed_bfloat16"):
        get_config("default", overrides=["train.mixed_precision=float16"])


def test_id_columns_are_validated_never_features_and_carried_through():
    schema = FeatureSchema.from_dict({"label": "y", "numeric": ["a"], "id": ["customer_id"],
                                      "description": "buys within 30 days"})
    assert schema.feature_names == ["a"] and schema.id == ["customer_id"]
    out = schema.validate(pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1], "customer_id": [17850, 13047]}))
    assert list(out.columns) == ["customer_id", "a", "y"] and list(out["customer_id"]) == ["17850", "13047"]
    # not required where ids may be absent (scoring), but require_ids names the missing one
    assert list(schema.validate(pd.DataFrame({"a": [1.0]}), require_label=False).columns) == ["a"]
    with pytest.raises(SchemaError, match=r"id column\(s\) \['customer_id'\]"):
        schema.require_ids(["a", "y"], where="shop.csv")
    with pytest.raises(SchemaError, match="never a model input"):
        FeatureSchema.from_dict({"label": "y", "numeric": ["a"], "id": ["a"]})
    with pytest.raises(SchemaError, match="never a model input"):
        FeatureSchema.from_dict({"label": "y", "numeric": ["a"], "id": ["y"]})
    with pytest.raises(SchemaError, match="'id' must be a list"):
        FeatureSchema.from_dict({"label": "y", "numeric": ["a"], "id": "customer_id"})
    assert FeatureSchema.from_dict(schema.to_dict()) == schema
