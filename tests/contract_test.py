"""contract.py: one raw-feature contract for every caller of an export.

The value rules run in the exported graph; their Python mirrors (used where
vocabularies are counted) must agree with it. Packing a table gives the
signature's arrays; the export carries ``assets.extra/contract.json`` and
the client and the Predictor read it.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from purchase_intent import contract
from purchase_intent.schema import FeatureSchema

ROWS = [["a", "", "b", "", ""], ["", "", ""], ["", "x"], ["a", "b", "c", "d"], [], ["", "a", "", "b"]]
OTHER = [["v", "", "v", "v", ""], ["", "", "v"], ["", "v"], ["v", "v", "", ""], [], ["v", "v", "", ""]]
CATEGORIES = ["3.0", "-2.000", "-0.0", "-0", "3.5", "x", "03.0", "3.", "1e+20", "", "3.0\n", " 3.0",
              "\u0663.0", " UK ", "\tmobile", "  ", "a b", "\u00a0UK"]


def test_importing_the_contract_loads_neither_keras_nor_tensorflow():
    code = ("import sys, purchase_intent.contract; "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_events_padding_rule():
    assert contract.events(["a", "", "b", "", ""]) == ["a", "[EMPTY]", "b"]
    assert contract.events(["", "", ""]) == []
    assert contract.events(["a", "", "b", "c"], max_events=3) == ["[EMPTY]", "b", "c"]
    assert contract.events(["a", "b", "", ""], max_events=1) == ["b"]


def test_category_rule():
    assert [contract.category(v) for v in ("3.0", "-2.000", "-0.0", "-0", "3.5", "x", "3")] == [
        "3", "-2", "0", "0", "3.5", "x", "3"]
    # Spaces around a value (a CSV written "a, b") are not part of it; inside, and non-ASCII ones, are.
    assert [contract.category(v) for v in (" UK ", "\tmobile\r", " 3.0 ", "  ", "a b", "\u00a0UK")] == [
        "UK", "mobile", "3", "", "a b", "\u00a0UK"]


def test_events_of_an_example_are_counted_over_all_its_sequence_columns():
    """A trailing "" in one column is an empty event when another column has an event there."""
    assert contract.event_count(["view", ""], ["sku1", "sku2"]) == 2
    assert contract.events(["view", ""], count=2) == ["view", "[EMPTY]"]
    frame = pd.DataFrame({"a": [["x", "", ""], ["", ""]], "b": [["y", "z", ""], ["", ""]]})
    assert contract.frame_events(frame, ["a", "b"]) == {"a": [["x", ""], []], "b": [["y", "z"], []]}
    assert contract.frame_model_events(frame, ["a", "b"])["a"] == [["x", "[EMPTY]"], []]


def test_values_are_trimmed_before_the_padding_rule():
    """"A | B" split at "|" is "A|B"; a whitespace-only value is "": padding at the end, else empty."""
    assert contract.events([" A ", " B"]) == contract.events(["A", "B"]) == ["A", "B"]
    assert contract.events(["a", "  ", "b", " ", "\t"]) == ["a", "[EMPTY]", "b"]
    assert contract.event_count([" ", "\n"], ["", "\r "]) == 0
    assert contract.strip_padding(["a ", " "]) == ["a"]
    assert contract.trim("\u00a0a \v\f") == "\u00a0a"  # ASCII whitespace only, as tf.strings.strip
    frame = pd.DataFrame({"a": [[" x", " ", "  "]], "b": [["y ", "z", " "]]})
    assert contract.frame_events(frame, ["a", "b"]) == {"a": [["x", ""]], "b": [["y", "z"]]}
    assert contract.frame_to_arrays(frame.assign(b=[["y ", "z"]]), FeatureSchema(sequences=["a", "b"]),
                                    max_events=3)["a"].tolist() == [["x", "", ""]]
    rule = contract.contract_dict(FeatureSchema(label="y", sequences=["s"]), 5)["padding_rule"]
    assert rule.startswith("each sequence value is trimmed of surrounding ASCII whitespace")


SPACED = [[" a ", "b\t", "  "], ["\u00a0a", " ", "b"], [" ", "\n"], ["a", " b", "", " "], ["\v\f", "c"]]
SPACED_OTHER = [["v", " ", ""], [" ", "", " "], ["", "v "], [" ", "", "", "", " v"], ["", ""]]


def test_the_graph_trims_sequence_values_as_the_python_mirror():
    from purchase_intent.preprocessing import event_lengths, recent_events, trim_sequences

    raw = trim_sequences({"a": contract.pad_rows(SPACED), "b": contract.pad_rows(SPACED_OTHER, 6)}, ["a", "b"])
    lengths = event_lengths(raw, ["a", "b"])
    assert lengths.numpy().tolist() == [contract.event_count(a, b) for a, b in zip(SPACED, SPACED_OTHER)]
    for max_events in (1, 2, 5):
        for name, rows in (("a", SPACED), ("b", SPACED_OTHER)):
            graph = recent_events(raw[name], max_events, lengths).numpy()
            for a, b, row, got in zip(SPACED, SPACED_OTHER, rows, graph):
                want = contract.events(row, max_events, count=contract.event_count(a, b))
                assert [v.decode() for v in got] == want + [""] * (max_events - len(want)), row


def test_the_graph_applies_the_same_rules_as_the_python_mirrors():
    from purchase_intent.preprocessing import categorical_values, event_lengths, recent_events

    raw = {"a": contract.pad_rows(ROWS), "b": contract.pad_rows(OTHER, 7)}  # widths may differ
    alone = event_lengths(raw, ["a"]).numpy().tolist()
    assert alone == [len(contract.strip_padding(r)) for r in ROWS]
    lengths = event_lengths(raw, ["a", "b"])
    assert lengths.numpy().tolist() == [contract.event_count(a, b) for a, b in zip(ROWS, OTHER)]
    for max_events in (1, 3, 10):
        for name, rows in (("a", ROWS), ("b", OTHER)):
            graph = recent_events(raw[name], max_events, lengths).numpy()
            for a, b, row, got in zip(ROWS, OTHER, rows, graph):
                want = contract.events(row, max_events, count=contract.event_count(a, b))
                assert [v.decode() for v in got] == want + [""] * (max_events - len(want)), row
        graph = recent_events(raw["a"], max_events).numpy()
        for row, got in zip(ROWS, graph):
            want = contract.events(row, max_events)
            assert [v.decode() for v in got] == want + [""] * (max_events - len(want)), row
    got = [v.decode() for v in categorical_values(CATEGORIES).numpy()]
    assert got == [contract.category(v) for v in CATEGORIES]


def test_pad_rows():
    assert contract.pad_rows([["a", "", "b"], ["x"], []]).tolist() == [
        ["a", "", "b"], ["x", "", ""], ["", "", ""]]
    assert contract.pad_rows([["a", "b", "c"], ["x"]], width=2).tolist() == [["b", "c"], ["x", ""]]
    assert contract.pad_rows([[]]).shape == (1, 1)


def test_frame_to_arrays_names_dtypes_and_width():
    schema = FeatureSchema(label="y", text=["q"], sequences=["items"], numeric=["x"], categorical=["c"])
    df = schema.validate(pd.DataFrame({"q": ["hi", "yo"], "items": [["a", "", "b", "", ""], ["c"] * 5],
                                       "x": [1.0, np.nan], "c": ["3.0", "UK"]}), require_label=False)
    arrays = contract.frame_to_arrays(df, schema, max_events=4)
    assert sorted(arrays) == ["c", "items", "q", "x"]
    assert arrays["items"].tolist() == [["a", "", "b", ""], ["c"] * 4]
    assert arrays["c"].tolist() == ["3.0", "UK"]  # sent raw; the graph reads it as "3"
    assert arrays["x"].dtype == np.float32 and np.isnan(arrays["x"][1])
    assert contract.frame_to_arrays(df, schema, max_events=None)["items"].shape == (2, 5)
    assert contract.input_specs(schema) == {
        "q": {"dtype": "DT_STRING", "shape": [-1]}, "c": {"dtype": "DT_STRING", "shape": [-1]},
        "items": {"dtype": "DT_STRING", "shape": [-1, -1]}, "x": {"dtype": "DT_FLOAT", "shape": [-1]}}


def test_adapt_counts_vocabularies_as_the_graph_reads_values():
    """"3.0" at serving finds the training category "3"; an interior "" is the "[EMPTY]" event."""
    from purchase_intent.preprocessing import Preprocessor, raw_batch

    schema = FeatureSchema(label="y", sequences=["items"], categorical=["c"])
    train = schema.validate(pd.DataFrame({"items": [["a", "", "b", ""], ["a", "b"], ["", "a"]],
                                          "c": [3.0, "3", "-2.0"], "y": [1, 0, 1]}))
    pre = Preprocessor.adapt(schema, train, max_sequence_length=4)
    assert "[EMPTY]" in pre.vocabularies["items"] and "" not in pre.vocabularies["items"]
    assert sorted(pre.vocabularies["c"]) == ["-2", "3"]
    serve = pd.DataFrame({"items": [["a", "", "b", ""], ["a", "[EMPTY]", "b"]], "c": ["3.0", "3"]})
    out = pre(raw_batch(schema.validate(serve, require_label=False), schema))
    ids = out["items"].numpy()
    assert (ids[0] == ids[1]).all() and ids[0][1] == pre.lookups["items"](["[EMPTY]"]).numpy()[0]
    assert ids[0][3] == 0  # padding
    assert out["c"].numpy()[0] == out["c"].numpy()[1] != 0


def test_export_writes_the_contract_and_its_readers_use_it(exported):
    from purchase_intent.predict import Predictor
    from purchase_intent.serving.client import PurchaseIntentClient
    from purchase_intent.serving.warmup import read_warmup_requests

    path = exported["vdir"] / "assets.extra" / contract.CONTRACT_FILE
    written = json.loads(path.read_text())
    pre = exported["pre"]
    assert written["max_events"] == pre.wide_length > 0
    assert written["inputs"] == contract.input_specs(exported["schema"])
    assert (written["signature"], written["output"], written["padding"], written["empty_event"]) == (
        "serving_default", "purchase_probability", "", "[EMPTY]")
    assert contract.read_contract(exported["vdir"]) == contract.read_contract(path) == written
    assert Predictor(exported["vdir"]).max_events == written["max_events"]
    with PurchaseIntentClient("127.0.0.1:1", contract=path) as client:  # no call is made
        assert client.sequence_length == written["max_events"]
        assert sorted(client.schema.feature_names) == sorted(exported["schema"].feature_names)
    with PurchaseIntentClient("127.0.0.1:1") as client:
        assert client.sequence_length == contract.DEFAULT_MAX_EVENTS
    seq = exported["schema"].sequences[0]
    for log in read_warmup_requests(exported["vdir"]):
        assert log.predict_log.request.inputs[seq].tensor_shape.dim[1].size == written["max_events"]


def test_read_contract_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="contract.json"):
        contract.read_contract(tmp_path)
    with pytest.raises(ValueError, match="max_events"):
        contract.read_contract({"inputs": {}})
