"""config.py: presets, ``--set`` parsing and its errors, validation, save/load, the list of keys.

No TensorFlow: config.py imports only the standard library (and yaml to parse values).
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from purchase_intent.config import (PRESETS, Config, ConfigError, apply_overrides, config_keys, describe_config,
                                    get_config, load_config_file)

REPO = Path(__file__).resolve().parents[1]


# -- presets -------------------------------------------------------------------------------
def test_default_preset_is_the_dataclass_defaults_and_tiny_is_small():
    assert get_config() == Config() == get_config("default")
    tiny = get_config("tiny")
    assert tiny.data.name == "synthetic" and tiny.model.text_encoder == "tiny"
    assert tiny.model.lstm_units < Config().model.lstm_units and tiny.data.batch_size < Config().data.batch_size
    assert sorted(PRESETS) == ["default", "quick", "tiny"]


def test_quick_preset_is_the_built_in_data_with_a_small_model():
    quick, default = get_config("quick"), Config()
    assert quick.data.name == default.data.name == "online_retail"
    assert quick.data.max_train_cutoffs == 1 < default.data.max_train_cutoffs
    assert quick.data.batch_size == default.data.batch_size  # the data's own batch size, not tiny's
    assert quick.model.text_encoder == "tiny" and quick.model.lstm_units < default.model.lstm_units
    assert quick.train.boosted_trees_max_iter < default.train.boosted_trees_max_iter


def test_unknown_preset_names_it_and_the_choices():
    with pytest.raises(ConfigError, match=r"Unknown preset 'huge'; choose from \['default', 'quick', 'tiny'\]"):
        get_config("huge")


def test_each_call_gives_a_fresh_config():
    first = get_config("tiny")
    first.model.hidden_units.append(7)
    first.data.batch_size = 3
    again = get_config("tiny")
    assert again.model.hidden_units == [32, 16] and again.data.batch_size == 64
    assert Config().model.hidden_units == [128, 64]


def test_config_imports_no_tensorflow():
    code = "import sys, purchase_intent.config as c; c.get_config('tiny'); print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


# -- --set parsing -------------------------------------------------------------------------
@pytest.mark.parametrize("override, section, key, expected, kind", [
    ("model.lstm_units=8", "model", "lstm_units", 8, int),
    ("model.lstm_units=8.0", "model", "lstm_units", 8, int),  # an integer-valued float is an int
    ("train.learning_rate=0.01", "train", "learning_rate", 0.01, float),
    ("train.learning_rate=3e-4", "train", "learning_rate", 3e-4, float),  # YAML 1.1 reads it as a string
    ("train.learning_rate=1", "train", "learning_rate", 1.0, float),  # validation then refuses 1, see below
    ("data.cache=false", "data", "cache", False, bool),
    ("export.enabled=true", "export", "enabled", True, bool),
    ("model.hidden_units=[4, 2]", "model", "hidden_units", [4, 2], list),
    ("model.hidden_units=5", "model", "hidden_units", [5], list),  # a single int is a one-element list
    ("data.prefix_at=[cart, view]", "data", "prefix_at", ["cart", "view"], list),
    ("data.name=my table.csv", "data", "name", "my table.csv", str),
    ("export.model_name=123", "export", "model_name", "123", str),  # a number for a string key stays text
    ("data.schema=", "data", "schema", "", str),
    (" model.dropout = 0.5 ", "model", "dropout", 0.5, float),  # spaces around key and value
])
def test_override_of_each_type_parses_to_that_type(override, section, key, expected, kind):
    cfg = apply_overrides(Config(), [override])
    value = getattr(getattr(cfg, section), key)
    assert value == expected and type(value) is kind, (value, type(value))


def test_dict_overrides_are_taken_as_given_not_parsed():
    cfg = apply_overrides(Config(), {"data.name": "true", "model.lstm_units": 9})
    assert cfg.data.name == "true" and cfg.model.lstm_units == 9


def test_later_overrides_win_and_the_file_comes_before_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  lstm_units: 16\n  cnn_filters: 12\n")
    cfg = get_config("tiny", config_file=str(path), overrides=["model.lstm_units=24", "model.lstm_units=32"])
    assert cfg.model.lstm_units == 32 and cfg.model.cnn_filters == 12 and cfg.model.text_encoder == "tiny"


def test_renamed_keys_are_still_accepted():
    cfg = get_config(overrides=["model.text_bag_of_words_scale=5", "model.text_bag_of_words_l2=0.01"])
    assert cfg.model.wide_scale == 5.0 and cfg.model.wide_l2 == 0.01


@pytest.mark.parametrize("override, message", [
    ("model.lstm_units=big", "model.lstm_units expects an integer, got 'big'"),
    ("model.lstm_units=1.5", "model.lstm_units expects an integer, got 1.5"),
    ("model.lstm_units=true", "model.lstm_units expects an integer, got True"),
    ("train.learning_rate=fast", "train.learning_rate expects a number, got 'fast'"),
    ("train.learning_rate=true", "train.learning_rate expects a number, got True"),
    ("data.cache=1", "data.cache expects true/false, got 1"),
    ("data.cache=maybe", "data.cache expects true/false, got 'maybe'"),
    ("model.hidden_units=wide", "model.hidden_units expects a list, got 'wide'"),
    ("data.name=[a, b]", r"data.name expects a string, got \['a', 'b'\]"),
    ("data.name=[unclosed", r"--set data.name: cannot parse value '\[unclosed'"),
])
def test_bad_value_names_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        get_config(overrides=[override])


@pytest.mark.parametrize("override, message", [
    ("model.lstm_unit=8", r"Unknown config key 'model.lstm_unit'; did you mean model.lstm_units\?"),
    ("model.zzz=8", r"Unknown config key 'model.zzz'; model has \[.*'lstm_units'"),
    ("modle.lstm_units=8", r"Unknown config section 'modle' in 'modle.lstm_units'; sections: "
                           r"\['data', 'export', 'model', 'train'\]"),
    ("lstm_units=8", r"Config key 'lstm_units' must look like section.key"),
    ("model.lstm.units=8", r"Config key 'model.lstm.units' must look like section.key"),
    ("model.lstm_units", r"--set expects section.key=value, got 'model.lstm_units'"),
])
def test_unknown_or_malformed_key_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        get_config(overrides=[override])


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    (["data.prefix_every=0"], "data.prefix_every=0 and an empty data.prefix_at leave no cut point"),
    (["data.format=clicks"], "data.format must be table or events"),
    (["data.split_by=random"], "data.split_by must be session or time"),
    (["data.max_prefixes_per_session=-1"], "data.max_prefixes_per_session must be >= 0"),
    (["data.format=events", "data.split_column=split"], "data.split_column is not used"),
    (["data.session_column="], "data.session_column, time_column"),
    (["data.format=events", "data.split_time_column=day"], "data.split_time_column is not used"),
    (["data.format=events", "data.group_column=customer"], "data.group_column is not used"),
    (["data.group_column="], "data.group_column must be auto, none or a column name"),
    (["data.split_time_column=day", "data.group_column=customer"],
     "data.group_column must be auto or none with data.split_time_column"),
    (["data.time_format=dd/mm/yyyy"], r"data.time_format must be a strftime format .*\(got 'dd/mm/yyyy'\)"),
])
def test_config_checks(overrides, message):  # from clickstream_test.py
    with pytest.raises(ConfigError, match=message):
        get_config(overrides=overrides)
    assert get_config(overrides=["data.prefix_every=0", "data.prefix_at=[cart]"]).data.prefix_at == ["cart"]


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", r"data.batch_size must be >= 1 \(got 0\)"),
    ("train.learning_rate=1", r"train.learning_rate must be in \(0, 1\) \(got 1.0\)"),
    ("train.class_weight=heavy", r"train.class_weight must be auto, balanced or none \(got 'heavy'\)"),
    ("model.hidden_units=[4, 0]", "model.hidden_units must be positive"),
    ("model.sequence_encoder=lstm+gru", "model.sequence_encoder must be 'both' or a '\\+'-joined list"),
    ("model.text_encoder=./no/such/preset", "looks like a preset directory, which does not exist"),
    ("export.version=-1", r"export.version must be >= 0 \(got -1\)"),
])
def test_out_of_range_value_names_the_key_and_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        get_config(overrides=[override])


def test_every_invalid_value_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        get_config(overrides=["data.batch_size=0", "model.dropout=1.5", "train.epochs=0"])
    text = str(info.value)
    assert text.startswith("Invalid configuration: ") and text.count("; ") == 2
    assert all(k in text for k in ("data.batch_size", "model.dropout", "train.epochs"))


def test_valid_edge_values_pass():
    cfg = get_config(overrides=["model.dropout=0", "data.validation_fraction=0", "data.test_fraction=0.99",
                                "model.sequence_encoder=transformer+lstm", "train.ensemble=20"])
    assert cfg.model.sequence_encoders() == ["transformer", "lstm"]
    with pytest.raises(ConfigError, match="data.validation_fraction \\+ data.test_fraction must be < 1"):
        get_config(overrides=["data.validation_fraction=0.5", "data.test_fraction=0.5"])


# -- to_dict / save / load -----------------------------------------------------------------
def test_saved_config_loads_back_equal(tmp_path):
    cfg = get_config("tiny", overrides=["model.hidden_units=[12, 6]", "data.prefix_at=[cart]", "data.cache=false",
                                        "train.learning_rate=3e-4", "export.model_name=m"])
    path = tmp_path / "config.json"
    cfg.save(path)
    assert json.loads(path.read_text()) == cfg.to_dict()
    assert set(cfg.to_dict()) == {"data", "model", "train", "export"}
    assert get_config(config_file=str(path)) == cfg  # over preset "default": every key is in the file
    assert get_config("tiny", config_file=str(path)) == cfg


def test_yaml_file_and_its_preset_key(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("preset: tiny\nmodel:\n  hidden_units: [8]\ntrain:\n  class_weight: balanced\n")
    assert load_config_file(path) == {"model.hidden_units": [8], "train.class_weight": "balanced"}
    cfg = get_config(config_file=str(path))
    assert cfg.model.hidden_units == [8] and cfg.train.class_weight == "balanced"


@pytest.mark.parametrize("name, text, message", [
    ("missing.json", None, "missing.json does not exist"),
    ("bad.json", "{not json", "bad.json: cannot parse it"),
    ("list.json", "[1, 2]", "list.json: expected a mapping of sections, got list"),
    ("flat.json", '{"model": 3}', "flat.json: section 'model' must be a mapping, got 3"),
    ("key.json", '{"model": {"lstm_unit": 3}}', "Unknown config key 'model.lstm_unit'"),
    ("type.yaml", "model:\n  lstm_units: big\n", "model.lstm_units expects an integer, got 'big'"),
])
def test_bad_config_file_is_named(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        get_config(config_file=str(path))


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        get_config(config_file=str(tmp_path))


# -- the list of keys (--help-config) ------------------------------------------------------
def test_config_keys_are_every_field_with_a_meaning():  # from cli_test.py (--help-config)
    keys = config_keys()
    defaults = Config()
    fields = [f"{s}.{f}" for s, section in defaults.to_dict().items() for f in section]
    assert [k for k, _, _ in keys] == fields
    assert all(meaning for _, _, meaning in keys), [k for k, _, m in keys if not m]
    assert "model.lstm_units = 64" in describe_config()


def test_describe_config_shows_every_key_with_its_default():
    text = describe_config()
    for key, default, _ in config_keys():
        assert f"  {key} = {json.dumps(default)}" in text
    sections = [line for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert sections == [f"{f.name}:" for f in dataclasses.fields(Config)]
    meanings = [line for line in describe_config(width=60).splitlines() if line.startswith("      ")]
    assert meanings and max(map(len, meanings)) <= 60


def test_a_strftime_format_is_taken_as_written():
    """YAML reads a leading "%" as a directive: a string key takes the text as it is."""
    cfg = get_config(overrides=["data.time_format=%d/%m/%Y %H:%M", "data.split_time_column=day",
                                "data.group_column=none"])
    assert (cfg.data.time_format, cfg.data.split_time_column, cfg.data.group_column) == (
        "%d/%m/%Y %H:%M", "day", "none")
    assert get_config().data.group_column == "auto"
    with pytest.raises(ConfigError, match="--set model.lstm_units: cannot parse value '%d'"):
        get_config(overrides=["model.lstm_units=%d"])
