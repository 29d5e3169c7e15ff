"""Declarative feature schema: which raw columns feed which branch.

One feature has one name everywhere: the schema key, the DataFrame column,
the `keras.Input` / serving-signature key and the gRPC `request.inputs` key.

A schema lists, all optional except the label:

* ``text``: scalar text, one string per example (a query, a review).
* ``event_text``: per-event text, one string per event (the title of each
  item in the behaviour sequence).
* ``sequences``: categorical event sequences (item ids, event types), one
  string per event, time-ordered, oldest first.
* ``numeric``: float features.
* ``categorical``: string features (any value is read as a string).
* ``id``: identifier columns (a customer id, a session id, a cut-off date):
  never a model feature, carried through to every predictions file so a
  scored row can be traced back to whom it is about.
* ``description``: one plain sentence of what label 1 means (e.g. "buys
  within 60 days of the cut-off"); the run report quotes it.

All sequence-like columns (``sequences`` and ``event_text``) of one example
describe the same events, so they must have the same length in each row.

Errors name the row as a spreadsheet shows it, the header being row 1
(:func:`row_ref`): "spreadsheet row 2 (header = row 1)" is the first data row.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

# What TensorFlow accepts as a signature input (and op) name: TF Serving callers send features by it.
SPLITS = ("train", "validation", "test")  # the splits of every run, in this order

INPUT_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-]*")


logger = logging.getLogger(__name__)


class SchemaError(ValueError):
    """Raised when a schema or the data it describes is invalid."""


@dataclasses.dataclass
class FeatureSchema:
    """The raw features of one dataset.

    Args:
        label: str. Column holding the purchase label: 0/1, or true/false,
            yes/no, y/n, t/f in any case (1 = purchase; :func:`label_mapping`).
        text: list of str. Scalar text columns.
        event_text: list of str. Per-event text columns (list of strings).
        sequences: list of str. Categorical event-sequence columns.
        numeric: list of str. Numeric columns.
        categorical: list of str. Categorical columns.
        sequence_delimiter: str. Separator when a sequence is stored as one
            delimited string in a CSV cell.
        id: list of str. Identifier columns, not features: required in a
            training table, copied to the predictions files when present.
        description: str. What label 1 means, in words (for the report).
    """

    label: str = "label"
    text: list[str] = dataclasses.field(default_factory=list)
    event_text: list[str] = dataclasses.field(default_factory=list)
    sequences: list[str] = dataclasses.field(default_factory=list)
    numeric: list[str] = dataclasses.field(default_factory=list)
    categorical: list[str] = dataclasses.field(default_factory=list)
    sequence_delimiter: str = "|"
    id: list[str] = dataclasses.field(default_factory=list)
    description: str = ""

    def __post_init__(self) -> None:
        names = self.feature_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"Feature names used more than once in the schema: {dupes}")
        if self.label in names:
            raise SchemaError(f"Label column {self.label!r} is also listed as a feature")
        if isinstance(self.id, str) or not all(isinstance(c, str) and c for c in self.id):
            raise SchemaError(f"Schema key 'id' must be a list of column names, got {self.id!r}")
        bad_ids = sorted(set(self.id) & (set(names) | {self.label}))
        if bad_ids:
            raise SchemaError(f"Id column(s) {bad_ids} are also the label or a feature: an id is "
                              "never a model input; list it under 'id' only")
        if len(set(self.id)) != len(self.id):
            raise SchemaError(f"Id columns listed more than once: {self.id}")
        if not isinstance(self.description, str):
            raise SchemaError(f"Schema key 'description' must be a string, got {self.description!r}")
        if not names:
            raise SchemaError("The schema lists no features: give at least one of "
                              "text, event_text, sequences, numeric, categorical")
        self._check_reserved()
        self._check_input_names()

    def _check_input_names(self) -> None:
        """Raises :class:`SchemaError` for a feature name TensorFlow cannot take as a signature input.

        Checked when the schema is read, so a name with a space, a currency sign or
        an umlaut is refused in a second, not after training, when the export would fail.
        """
        for name in self.feature_names:
            if not INPUT_NAME.fullmatch(name):
                suggestion = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "feature"
                if not INPUT_NAME.fullmatch(suggestion):
                    suggestion = "f_" + suggestion
                raise SchemaError(
                    f"feature column {name!r} cannot be a model input: TF Serving signature names allow "
                    f"letters A-Z a-z, digits and _ . - only (not first: _ -); rename the column in the "
                    f"table and the schema, e.g. to {suggestion!r}")

    def _check_reserved(self) -> None:
        """Raises :class:`SchemaError` for a column named like a Preprocessor output or a predictions column."""
        from purchase_intent.contract import TRUE_LABEL_COLUMN, reserved_names

        reserved = reserved_names(self.text, self.sequences)
        for role, columns in (("feature", self.feature_names), ("label", [self.label]), ("id", self.id)):
            for name in columns:
                if name in reserved and not (role == "label" and name == TRUE_LABEL_COLUMN):
                    raise SchemaError(
                        f"{role} column {name!r} has a reserved name: it is {reserved[name]}; "
                        "rename the column (in the table and the schema)")

    # -- derived views -------------------------------------------------
    @property
    def sequence_like(self) -> list[str]:
        """Columns holding one value per event."""
        return list(self.sequences) + list(self.event_text)

    @property
    def feature_names(self) -> list[str]:
        return (list(self.text) + list(self.event_text) + list(self.sequences)
                + list(self.numeric) + list(self.categorical))

    @property
    def modalities(self) -> list[str]:
        out = []
        if self.text or self.event_text:
            out.append("text")
        if self.sequences or self.event_text:
            out.append("sequence")
        if self.numeric or self.categorical:
            out.append("numeric")
        return out

    def serving_specs(self) -> dict[str, Any]:
        """`tf.TensorSpec` per raw feature, as the serving signature takes them.

        Scalar features have shape ``[batch]``; sequence features are dense
        ``[batch, events]`` string tensors, right-padded with ``""``.
        """
        import tensorflow as tf

        specs = {}
        for name in self.text + self.categorical:
            specs[name] = tf.TensorSpec([None], tf.string, name=name)
        for name in self.sequence_like:
            specs[name] = tf.TensorSpec([None, None], tf.string, name=name)
        for name in self.numeric:
            specs[name] = tf.TensorSpec([None], tf.float32, name=name)
        return specs

    def subset(self, modalities: list[str]) -> "FeatureSchema":
        """A copy keeping only the given modalities ("text", "sequence", "numeric")."""
        unknown = set(modalities) - {"text", "sequence", "numeric"}
        if unknown:
            raise SchemaError(f"Unknown modalities {sorted(unknown)}; use text, sequence, numeric")
        keep_text = "text" in modalities
        keep_seq = "sequence" in modalities
        return FeatureSchema(
            label=self.label,
            text=list(self.text) if keep_text else [],
            event_text=list(self.event_text) if (keep_text and keep_seq) else [],
            sequences=list(self.sequences) if keep_seq else [],
            numeric=list(self.numeric) if "numeric" in modalities else [],
            categorical=list(self.categorical) if "numeric" in modalities else [],
            sequence_delimiter=self.sequence_delimiter,
            id=list(self.id),
            description=self.description,
        )

    # -- (de)serialisation ---------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSchema":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise SchemaError(f"Unknown schema keys {sorted(unknown)}; allowed: {sorted(fields)}")
        for key in ("text", "event_text", "sequences", "numeric", "categorical", "id"):
            value = d.get(key, [])
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise SchemaError(f"Schema key {key!r} must be a list of column names, got {value!r}")
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSchema":
        """Reads a schema from a ``.json``, ``.yaml`` or ``.yml`` file."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise SchemaError(f"schema file {path}: " + ("not found" if not path.exists() else "not a file"))
        try:
            text = path.read_text(encoding="utf-8-sig")
            d = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (ValueError, yaml.YAMLError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise SchemaError(f"schema file {path}: cannot parse it ({' '.join(str(e).split())})") from None
        if not isinstance(d, dict):
            raise SchemaError(f"{path}: expected a mapping of schema keys, got {type(d).__name__}")
        try:
            return cls.from_dict(d.get("schema", d))
        except SchemaError as e:
            raise SchemaError(f"schema file {path}: {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    # -- validation ----------------------------------------------------
    def validate(self, df: pd.DataFrame, *, require_label: bool = True,
                 where: str = "data") -> pd.DataFrame:
        """Checks a table of raw examples and puts its values as a gRPC/JSON caller sends them.

        Returns a copy: text and categorical columns as str (missing -> ``""``,
        a float artefact such as ``3.0`` -> ``"3"``), sequence columns as lists
        of str (values kept: ``""`` events stay ``""``, the exported graph applies
        the padding rule of :mod:`purchase_intent.contract`), numeric columns as float32
        (NaN kept: the preprocessor imputes it and flags it), label as int;
        the ``id`` columns present in ``df`` come first, as str (they are not
        required here: a caller that needs them checks with :meth:`require_ids`).

        Raises:
            SchemaError: naming the column, the first bad row and what was expected.
        """
        if len(df) == 0:
            raise SchemaError(f"{where}: the dataset is empty (0 rows)")
        needed = self.feature_names + ([self.label] if require_label else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise SchemaError(
                f"{where}: missing column(s) {missing}; the table has {list(df.columns)[:30]}"
                + near_names(missing, df.columns))
        out = pd.DataFrame(index=df.index)
        for name in self.id:
            if name in df.columns:
                out[name] = _as_str_column(df[name], name, where)
        for name in self.text + self.categorical:
            out[name] = _as_str_column(df[name], name, where)
        for name in self.sequence_like:
            out[name] = _as_list_column(df[name], name, where, self.sequence_delimiter)
        for name in self.numeric:
            out[name] = _as_float_column(df[name], name, where)
        if self.sequence_like:
            lengths = {n: out[n].map(len).to_numpy() for n in self.sequence_like}
            first = self.sequence_like[0]
            for n in self.sequence_like[1:]:
                bad = np.nonzero(lengths[n] != lengths[first])[0]
                if len(bad):
                    i = bad[0]
                    raise SchemaError(
                        f"{where}: {row_ref(df.index[i])}: sequence columns describe the same events "
                        f"but {first!r} has {lengths[first][i]} and {n!r} has {lengths[n][i]} "
                        f"({len(bad)} such rows)")
        if require_label:
            out[self.label] = _as_label_column(df[self.label], self.label, where)
        return out.reset_index(drop=True)

    def require_ids(self, columns, where: str = "data") -> None:
        """Raises :class:`SchemaError` when an ``id`` column of the schema is not among ``columns``."""
        missing = [c for c in self.id if c not in columns]
        if missing:
            raise SchemaError(f"{where}: id column(s) {missing} named by the schema are missing; "
                              f"the table has {list(columns)[:30]}")


ROW_WORDING = "spreadsheet row {} (header = row 1)"


def _name_key(name: Any) -> str:
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def near_names(missing: Iterable[str], columns: Iterable[Any]) -> str:
    """``"; did you mean 'Spend' for 'spend', ..."`` for missing names that a column spells otherwise
    (case, spaces, ``_`` or ``-``), else ``""``: the end of a missing-column message."""
    by_key: dict[str, list[str]] = {}
    for c in columns:
        by_key.setdefault(_name_key(c), []).append(str(c))
    pairs = [(by_key[_name_key(m)][0], m) for m in missing if _name_key(m) in by_key]
    if not pairs:
        return ""
    return ("; did you mean " + ", ".join(f"{have!r} for {want!r}" for have, want in pairs)
            + " (names must match exactly: rename the column(s) or write the schema with the file's names)")


def check_blank_rows(df: pd.DataFrame, where: str) -> None:
    """Raises :class:`SchemaError` naming the first row of ``df`` whose every cell is missing (and their
    number): a spreadsheet can leave such rows below its data; read as a row of missing values, one would
    be imputed and scored, or fail on its label."""
    if df.shape[1] < 2:
        return
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        raise SchemaError(f"{where}: {_first_bad(blank, df.iloc[:, 0])[0]} is empty (every cell blank; "
                          f"{int(blank.sum())} such rows), as a spreadsheet can leave below its data: "
                          "delete the empty rows")


def row_ref(index_value: Any) -> str:
    """How every message names a row: as a spreadsheet shows it, the header being row 1.

    Frames read from a file keep the file's 0-based row positions as their
    index (through splits and samples), so index ``i`` is spreadsheet row
    ``i + 2``: ``row_ref(0)`` is ``"spreadsheet row 2 (header = row 1)"``.
    An index that is not a non-negative integer is quoted as it is.
    """
    value = index_value.item() if isinstance(index_value, np.generic) else index_value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ROW_WORDING.format(value + 2)
    return f"row {value!r}"


def _first_bad(mask: np.ndarray, series: pd.Series) -> tuple[Any, Any]:
    i = int(np.nonzero(mask)[0][0])
    return row_ref(series.index[i]), series.iloc[i]


def _as_str_column(s: pd.Series, name: str, where: str) -> pd.Series:
    values = s.to_numpy(dtype=object)
    bad = np.array([isinstance(v, (list, tuple, dict, np.ndarray)) for v in values], dtype=bool)
    if bad.any():
        row, v = _first_bad(bad, s)
        raise SchemaError(f"{where}: column {name!r}, {row}: expected a string, "
                          f"got {type(v).__name__} {str(v)[:60]!r}")
    return pd.Series([_clean_str(v) for v in values], index=s.index, dtype=object)


def _clean_str(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _as_list_column(s: pd.Series, name: str, where: str, delimiter: str) -> pd.Series:
    out = []
    for index, v in zip(s.index, s.to_numpy(dtype=object)):
        if isinstance(v, str):
            items = [x for x in v.split(delimiter)] if v else []
        elif isinstance(v, (list, tuple, np.ndarray)):
            items = list(v)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            items = []
        else:
            raise SchemaError(f"{where}: column {name!r}, {row_ref(index)}: expected a list of strings "
                              f"or a {delimiter!r}-delimited string, got {type(v).__name__} {v!r}")
        # Values as a caller sends them: the exported graph reads a trailing ""
        # as padding and an interior "" as an empty event (purchase_intent.contract).
        out.append([_clean_str(x) for x in items])
    return pd.Series(out, index=s.index, dtype=object)


def _as_float_column(s: pd.Series, name: str, where: str) -> pd.Series:
    if s.dtype == bool:
        return s.astype(np.float32)
    converted = pd.to_numeric(s, errors="coerce")
    bad = converted.isna().to_numpy() & ~s.isna().to_numpy()
    if bad.any():
        row, v = _first_bad(bad, s)
        raise SchemaError(f"{where}: column {name!r}, {row}: expected a number, got "
                          f"{type(v).__name__} {str(v)[:60]!r} ({int(bad.sum())} such rows){_number_hint(v)}")
    values = converted.to_numpy(dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan  # inf is treated like missing: imputed and flagged
    return pd.Series(values.astype(np.float32), index=s.index)


# A number written for people: a currency sign, a percent sign, digit grouping, a decimal comma or
# an accountant's negative in parentheses.
_FORMATTED_NUMBER = re.compile(
    r"^\s*\(?\s*[-+]?\s*[$€£¥]?\s*[-+]?\d[\d.,' \u00a0]*\s*(%|[$€£¥]|EUR|USD|GBP)?\s*\)?\s*$")


def _number_hint(value: Any) -> str:
    """A hint for a number written with a currency or percent sign or digit grouping, else ""."""
    if not isinstance(value, str) or not _FORMATTED_NUMBER.match(value):
        return ""
    return ("; the file writes numbers as people read them (a currency or percent sign, digit grouping, "
            "a decimal comma or a negative in parentheses): write plain numbers such as -1234.5 (in a "
            "spreadsheet: number format 'General' before saving)")


_TRUE = {"1", "true", "yes", "y", "t", "1.0"}
_FALSE = {"0", "false", "no", "n", "f", "0.0"}


def _label_key(v: Any) -> str:
    return str(v).strip().lower() if not isinstance(v, (bool, np.bool_)) else str(bool(v)).lower()


def label_mapping(s: pd.Series) -> dict[str, int]:
    """How the distinct values of a label column are read, e.g. ``{"no": 0, "yes": 1}``.

    Accepted (any case): 1, true, yes, y, t, 1.0 -> 1 and 0, false, no, n, f,
    0.0 -> 0; other values are left out (validation refuses them).
    """
    out = {}
    for v in pd.unique(s.dropna()):
        key = _label_key(v)
        if key in _TRUE or key in _FALSE:
            out[str(v)] = int(key in _TRUE)
    return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))


def check_delimiters(df: pd.DataFrame, schema: FeatureSchema, where: str, *, scoring: bool = False) -> list[str]:
    """Warns about sequence columns that seem separated by another delimiter than the schema's.

    With ``scoring=True`` (a file scored by an export, whose delimiter is fixed)
    the first such column is an error instead: every session would be scored as one event.

    A column of ``schema.sequences`` whose cells are strings holding a median
    of one event, while another delimiter ("," ";" tab or space) occurs in at
    least half of them, was most likely written with that delimiter: every
    session would be read as one event. Per-event text columns are not
    checked (titles hold spaces and commas).

    Returns:
        The warnings logged (one per suspicious column).
    """
    warnings = []
    for name in schema.sequences:
        if name not in df.columns:
            continue
        cells = [v for v in df[name].to_numpy(dtype=object) if isinstance(v, str) and v]
        if not cells or np.median([len(v.split(schema.sequence_delimiter)) for v in cells]) != 1:
            continue
        for other in (",", ";", "\t", " ", "|"):
            share = np.mean([other in v for v in cells]) if other != schema.sequence_delimiter else 0.0
            if share >= 0.5:
                found = (f"{where}: sequence column {name!r} holds a median of 1 event per row with the "
                         f"delimiter {schema.sequence_delimiter!r}, but {other!r} occurs in {share:.0%} of its "
                         f"values (e.g. {cells[0][:40]!r})")
                if scoring:
                    raise SchemaError(f"{found}: the model reads events separated by "
                                      f"{schema.sequence_delimiter!r} (its schema's sequence_delimiter); write "
                                      f"the column with {schema.sequence_delimiter!r} between events")
                warnings.append(f"{found}: if the events are {other!r}-separated, set "
                                f'"sequence_delimiter": {json.dumps(other)} in the schema file')
                break
    for w in warnings:
        logger.warning("%s", w)
    return warnings


def _as_label_column(s: pd.Series, name: str, where: str) -> pd.Series:
    values = s.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        key = _label_key(v)
        if key in _TRUE:
            out[i] = 1
        elif key in _FALSE:
            out[i] = 0
        else:
            raise SchemaError(
                f"{where}: label column {name!r}, {row_ref(s.index[i])}: expected 0/1 (or true/false, yes/no), "
                f"got {v!r}; distinct values: {sorted(map(str, pd.unique(s)))[:10]}")
    return pd.Series(out, index=s.index)
