"""The raw-feature contract of an export: names, dtypes, padding, and table -> arrays.

Importable without Keras or TensorFlow (numpy and pandas only), so the gRPC
client, the warm-up writer and offline scoring share it with training.

What a caller of the SavedModel sends (``serving_default``, raw features):

* scalar text and categorical features: ``DT_STRING [batch]``;
* sequence and per-event text features: ``DT_STRING [batch, events]``,
  oldest event first, **right-padded with ""**. Each value is first trimmed
  of surrounding ASCII whitespace (space, tab, newline, CR, VT, FF; what
  ``tf.strings.strip`` removes), so ``"A | B"`` split at ``|`` gives the
  items ``"A"`` and ``"B"`` as ``"A|B"`` does, and a whitespace-only value is
  ``""`` (padding at the end, an empty event before it). The sequence inputs of one
  example describe the same events, so the rule looks at all of them: an
  example's events end at the last position where any sequence input is not
  ``""``; the ``""`` after it are padding, a ``""`` before it is an empty
  event, which the model reads as the token ``"[EMPTY]"``; only the most
  recent ``max_events`` events matter (older ones may be left out);
* numeric features: ``DT_FLOAT [batch]`` (NaN: missing).

Every value rule (trimming, padding, empty events, truncation, categorical formatting:
``"3.0"`` and ``"3"`` are one category) runs inside the exported graph
(:mod:`purchase_intent.preprocessing`), so any caller gets the same answer;
:func:`events` and :func:`category` are their Python mirrors, used where
vocabularies are counted. The export writes :func:`contract_dict` to
``assets.extra/contract.json``.

Examples:

>>> events(["a", "", "b", "", ""])
['a', '[EMPTY]', 'b']
>>> events([" A ", "  ", "B\t", " "])
['A', '[EMPTY]', 'B']
>>> events(["view", ""], count=event_count(["view", ""], ["sku1", "sku2"]))
['view', '[EMPTY]']
>>> category("-2.000"), category("3.5"), category(" UK ")
('-2', '3.5', 'UK')
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

# -- shared names --------------------------------------------------------------
SIGNATURE = "serving_default"
OUTPUT_KEY = "purchase_probability"  # the signature's output and the predictions files' column
PROBABILITY_COLUMN = OUTPUT_KEY
PREDICTED_LABEL_COLUMN = "purchase_label"  # 0/1 decision: probability >= threshold
TRUE_LABEL_COLUMN = "label"  # the observed 0/1 outcome in predictions_test.csv of a run
CONTRACT_FILE = "contract.json"  # in assets.extra/ of every export

PADDING = ""  # trailing "" of a sequence row
EMPTY_EVENT = "[EMPTY]"  # what an interior "" is read as
DEFAULT_MAX_EVENTS = 200  # sequence width when no contract is known
WHITESPACE = " \t\n\v\f\r"  # trimmed around every sequence value (tf.strings.strip's ASCII whitespace)
PADDING_RULE = ("each sequence value is trimmed of surrounding ASCII whitespace (\" A \" is \"A\", a "
                "whitespace-only value is \"\"); "
                "sequences are right-padded with \"\": an example's events end at the last position "
                "where any of its sequence inputs is not \"\"; the \"\" after it are padding, a \"\" "
                f"before it is an empty event ({EMPTY_EVENT!r}); the most recent max_events events are kept")
CATEGORICAL_RULE = ("a categorical value is trimmed of surrounding ASCII whitespace (\" UK \" is \"UK\"); "
                    "one like \"3.0\" or \"-2.000\" is read as \"3\" or \"-2\" (and \"-0\" as \"0\")")

# The regular expressions of the graph (RE2) and of :func:`category` (Python re, fullmatch).
INTEGER_DECIMAL = r"(-?[0-9]+)\.0+"
NEGATIVE_ZERO = r"-0"

# Preprocessor outputs: fixed names, and suffixes of scalar-text / sequence column names.
PREPROCESSOR_OUTPUTS = ("numeric", "numeric_missing", "numeric_exact", "numeric_bins", "text_bow")
TEXT_OUTPUT_SUFFIXES = ("_token_ids", "_padding_mask")
SEQUENCE_OUTPUT_SUFFIXES = ("_history",)
OUTPUT_NAMES = (PROBABILITY_COLUMN, PREDICTED_LABEL_COLUMN)


# -- value rules (Python mirrors of the graph) ---------------------------------------
def trim(value):
    """A sequence value without surrounding ASCII whitespace (:data:`WHITESPACE`; other values as they are)."""
    return value.strip(WHITESPACE) if isinstance(value, str) else value


def strip_padding(seq) -> list:
    """A sequence row, each value trimmed (:func:`trim`), without its trailing ``""`` (the padding)."""
    seq = [trim(v) for v in seq]
    end = len(seq)
    while end and seq[end - 1] == PADDING:
        end -= 1
    return seq[:end]


def event_count(*rows) -> int:
    """Events of one example from its sequence rows (one per sequence column): up to the
    last position where any row is not ``""``."""
    return max([len(strip_padding(r)) for r in rows] + [0])


def kept_values(seq, count: int | None = None, max_events: int | None = None) -> list:
    """The values of one sequence row the model reads, each trimmed (:func:`trim`): the first
    ``count`` (default: the row without its trailing ``""``; a shorter row is extended with ``""``),
    then the most recent ``max_events`` (all with None)."""
    seq = [trim(v) for v in seq]
    count = len(strip_padding(seq)) if count is None else count
    kept = seq[:count] + [PADDING] * (count - len(seq))
    if max_events is not None:
        kept = kept[-max_events:] if max_events > 0 else []
    return kept


def events(seq, max_events: int | None = None, count: int | None = None) -> list:
    """The events the model reads of one raw sequence row (:func:`kept_values`), with each
    ``""`` among them as ``"[EMPTY]"``; ``count`` from :func:`event_count` for multi-column sequences."""
    return as_events(kept_values(seq, count, max_events))


def as_events(values) -> list:
    """Kept raw values -> the events the model reads: each ``""`` as ``"[EMPTY]"``."""
    return [EMPTY_EVENT if v == PADDING else v for v in values]


def frame_events(df: pd.DataFrame, names, max_events: int | None = None) -> dict[str, list[list]]:
    """``{column: [kept raw values per row]}`` of the sequence columns ``names`` of a
    validated frame, the example's events counted over all of them (:func:`event_count`)."""
    names = list(names)
    out: dict[str, list[list]] = {n: [] for n in names}
    for rows in zip(*(df[n] for n in names)):
        count = event_count(*rows)
        for name, row in zip(names, rows):
            out[name].append(kept_values(row, count, max_events))
    return out


def frame_model_events(df: pd.DataFrame, names) -> dict[str, list[list]]:
    """:func:`frame_events` (every event) as the model reads them (:func:`as_events`): what
    vocabularies are counted over."""
    return {name: [as_events(v) for v in rows] for name, rows in frame_events(df, names).items()}


def category(value: str) -> str:
    """The categorical value the model reads: trimmed (:func:`trim`), then ``"3.0"`` -> ``"3"``,
    ``"-0.0"`` -> ``"0"``, else as is."""
    value = trim(value)
    match = re.fullmatch(INTEGER_DECIMAL, value)
    if match:
        value = match.group(1)
    return "0" if value == NEGATIVE_ZERO else value


# -- reserved names ------------------------------------------------------------
def reserved_names(text=(), sequences=()) -> dict[str, str]:
    """``{name: why}`` for names a raw column of this schema must not have."""
    out = {n: "a Preprocessor output" for n in PREPROCESSOR_OUTPUTS}
    out.update({n: "a column of every predictions file" for n in OUTPUT_NAMES})
    out[TRUE_LABEL_COLUMN] = "the observed outcome column of a run's predictions (allowed as the label)"
    for name in text:
        out.update({f"{name}{s}": f"the Preprocessor output of text column {name!r}"
                    for s in TEXT_OUTPUT_SUFFIXES})
    for name in sequences:
        out.update({f"{name}{s}": f"the Preprocessor output of sequence column {name!r}"
                    for s in SEQUENCE_OUTPUT_SUFFIXES})
    return out


# -- table -> arrays -----------------------------------------------------------
def pad_rows(rows, width: int | None = None) -> np.ndarray:
    """Sequence rows -> ``[batch, width]`` object array right-padded with ``""``
    (``width`` defaults to the longest row, at least 1; longer rows keep their last ``width`` values)."""
    rows = [list(v) for v in rows]
    width = width or max([len(v) for v in rows] + [1])
    arr = np.full((len(rows), width), PADDING, dtype=object)
    for i, v in enumerate(rows):
        v = v[-width:]
        arr[i, :len(v)] = v
    return arr


def frame_to_arrays(df: pd.DataFrame, schema, max_events: int | None = DEFAULT_MAX_EVENTS
                    ) -> dict[str, np.ndarray]:
    """A validated frame (``schema.validate`` output) -> the serving signature's raw arrays.

    Strings as object arrays ``[batch]``; sequences ``[batch, max_events]``
    (with None as wide as the longest example), each example's most recent
    ``max_events`` events (:func:`frame_events`), raw values; numbers float32.
    """
    out: dict[str, np.ndarray] = {}
    for name in schema.text + schema.categorical:
        out[name] = df[name].to_numpy(dtype=object)
    for name, rows in frame_events(df, schema.sequence_like, max_events).items():
        out[name] = pad_rows(rows, max_events)
    for name in schema.numeric:
        out[name] = df[name].to_numpy(np.float32)
    return out


# -- the contract file -----------------------------------------------------------
def input_specs(schema) -> dict[str, dict[str, Any]]:
    """``{name: {"dtype": "DT_STRING", "shape": [-1, -1]}}`` of the serving signature's inputs."""
    out = {n: {"dtype": "DT_STRING", "shape": [-1]} for n in schema.text + schema.categorical}
    out.update({n: {"dtype": "DT_STRING", "shape": [-1, -1]} for n in schema.sequence_like})
    out.update({n: {"dtype": "DT_FLOAT", "shape": [-1]} for n in schema.numeric})
    return out


def contract_dict(schema, max_events: int) -> dict[str, Any]:
    """What ``assets.extra/contract.json`` holds."""
    return {"signature": SIGNATURE, "output": OUTPUT_KEY, "inputs": input_specs(schema),
            "max_events": int(max_events), "padding": PADDING, "empty_event": EMPTY_EVENT,
            "padding_rule": PADDING_RULE, "categorical_rule": CATEGORICAL_RULE}


def read_contract(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A contract from a dict, a ``contract.json``, or a version folder holding ``assets.extra/contract.json``.

    Raises:
        FileNotFoundError: no contract file there.
        ValueError: the file lacks ``inputs`` or ``max_events``.
    """
    if isinstance(source, Mapping):
        contract = dict(source)
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "assets.extra" / CONTRACT_FILE if (path / "assets.extra").is_dir() else path / CONTRACT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no contract file (an export writes assets.extra/{CONTRACT_FILE})")
        contract = json.loads(path.read_text())
    missing = [k for k in ("inputs", "max_events") if k not in contract]
    if missing:
        raise ValueError(f"the contract lacks {missing}")
    return contract


def existing_versions(model_dir: str | Path) -> list[int]:
    """Version numbers present under a TF Serving model folder (TF Serving ignores other names); no TensorFlow."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
