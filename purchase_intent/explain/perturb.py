"""Perturbed copies of a validated frame: a modality emptied, a feature shuffled.

:func:`occlude` empties one modality's raw inputs (:data:`MODALITIES`). A
:data:`Perturbation` (field -> :class:`Change`) says what a perturbed copy puts
in each *field*: a scalar column, or :data:`SEQUENCE_FIELD` (the per-event
columns together); :func:`apply_perturbation` builds the copy as a frame;
:func:`shuffle_event_text` and :func:`_permutation_plan` draw the shuffles of
permutation importance. :func:`keras_predict_fn` is the ``predict_fn`` of the
in-memory model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema


PredictFn = Callable[[pd.DataFrame], np.ndarray]
UNSEEN_CATEGORY = "[UNSEEN]"
MODALITIES = ("text", "sequence", "numeric", "categorical")


def keras_predict_fn(model, preprocessor, batch_size: int = 512) -> PredictFn:
    """A ``predict_fn`` for the in-memory model: validated frame -> probabilities, in batches."""
    from purchase_intent.preprocessing import raw_batch

    schema = preprocessor.feature_schema

    def predict(df: pd.DataFrame) -> np.ndarray:
        out = []
        for start in range(0, len(df), batch_size):
            raw = raw_batch(df.iloc[start:start + batch_size], schema)
            out.append(np.asarray(model(preprocessor(raw), training=False)).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    return predict


def modality_columns(schema: FeatureSchema) -> dict[str, list[str]]:
    """The raw columns of each modality present in ``schema`` (per-event text counts as text)."""
    groups = {
        "text": list(schema.text) + list(schema.event_text),
        "sequence": list(schema.sequence_like),
        "numeric": list(schema.numeric),
        "categorical": list(schema.categorical),
    }
    return {k: v for k, v in groups.items() if v}


def occlude(df: pd.DataFrame, schema: FeatureSchema, modality: str) -> pd.DataFrame:
    """A copy of a validated frame with one modality's raw inputs replaced by "empty" values.

    Args:
        df: frame validated by ``schema.validate``.
        schema: the feature schema.
        modality: "text" (scalar text -> ``""``, each per-event text -> ``""``,
            events kept), "sequence" (every sequence and per-event text -> no
            events), "numeric" (-> NaN: imputed with the training mean and
            flagged as missing), "categorical" (-> a value never seen in
            training), or "all".

    Returns:
        The occluded copy.

    Raises:
        ValueError: unknown modality.
    """
    if modality not in MODALITIES + ("all",):
        raise ValueError(f"Unknown modality {modality!r}; use one of {MODALITIES + ('all',)}")
    out = df.copy()
    if modality == "all":
        for m in MODALITIES:
            out = occlude(out, schema, m)
        return out
    if modality == "text":
        for name in schema.text:
            out[name] = ""
        for name in schema.event_text:
            out[name] = [[""] * len(s) for s in out[name]]
    elif modality == "sequence":
        for name in schema.sequence_like:
            out[name] = [[] for _ in range(len(out))]
    elif modality == "numeric":
        for name in schema.numeric:
            out[name] = np.float32(np.nan)
    else:
        for name in schema.categorical:
            out[name] = UNSEEN_CATEGORY
    return out


# -- perturbations -------------------------------------------------------------------
# A perturbation changes some *fields* of a frame: a scalar column (text, categorical,
# numeric) or, all together, the per-event columns (sequences and per-event texts, which
# describe the same events and are padded together by the contract).
SEQUENCE_FIELD = "<events>"


def _fields(schema: FeatureSchema) -> dict[str, list[str]]:
    """Field -> its raw columns."""
    fields = {name: [name] for name in list(schema.text) + list(schema.categorical) + list(schema.numeric)}
    if schema.sequence_like:
        fields[SEQUENCE_FIELD] = list(schema.sequence_like)
    return fields


def _field_of(schema: FeatureSchema, column: str) -> str:
    return SEQUENCE_FIELD if column in schema.sequence_like else column


@dataclasses.dataclass
class Change:
    """What one perturbation puts in one field.

    Attributes:
        values: the field's columns, one row per row of the frame, index as the
            frame's; None: the frame's own values.
        rows: int array: row ``i`` takes row ``rows[i]`` of ``values`` (a
            shuffle); None: row ``i`` of ``values``.
    """

    values: pd.DataFrame | None = None
    rows: np.ndarray | None = None


Perturbation = dict  # field -> Change; fields not named keep the frame's values


def apply_perturbation(df: pd.DataFrame, schema: FeatureSchema, perturbation: Perturbation) -> pd.DataFrame:
    """The perturbed copy of ``df`` as a frame (what the straightforward path scores)."""
    out = df.copy()
    fields = _fields(schema)
    for field, change in perturbation.items():
        source = df if change.values is None else change.values
        for col in fields[field]:
            values = source[col].to_numpy()
            if change.rows is not None:
                values = values[change.rows]
            out[col] = pd.Series(values, index=df.index, dtype=df[col].dtype)
    return out


def _occlusion_perturbation(df: pd.DataFrame, schema: FeatureSchema, modality: str) -> Perturbation:
    occluded = occlude(df, schema, modality)
    changed = {_field_of(schema, c) for c in df.columns
               if c in schema.feature_names and not occluded[c].equals(df[c])}
    fields = _fields(schema)
    return {f: Change(values=occluded[fields[f]]) for f in sorted(changed)}


def shuffle_event_text(values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """A per-event text column with each event's text swapped with another event's, drawn from all rows.

    Each row keeps its number of events (its sequences and their alignment stay);
    what moves is the text of the events: the permutation-importance shuffle of a
    per-event text column.
    """
    lengths = [len(s) for s in values]
    flat = np.array([t for s in values for t in s], dtype=object)
    flat = flat[rng.permutation(len(flat))].tolist()
    ends = np.cumsum(lengths)
    return pd.Series([flat[e - k:e] for e, k in zip(ends, lengths)], index=values.index, dtype=object)


def _permutation_plan(df: pd.DataFrame, schema: FeatureSchema, features: list[str], n_repeats: int,
                      seed: int) -> list[tuple[str, Perturbation]]:
    """(feature, perturbation) for every shuffle, in a fixed order of random draws."""
    rng = np.random.default_rng(seed)
    fields = _fields(schema)
    plan = []
    for feature in features:
        for _ in range(n_repeats):
            if feature == "sequence":  # whole histories move between rows, events aligned
                plan.append((feature, {SEQUENCE_FIELD: Change(rows=rng.permutation(len(df)))}))
            elif feature in schema.event_text:  # texts move between events, the events stay
                values = df[fields[SEQUENCE_FIELD]].copy()
                values[feature] = shuffle_event_text(df[feature], rng)
                plan.append((feature, {SEQUENCE_FIELD: Change(values=values)}))
            elif feature in schema.sequences:  # one sequence column alone: its histories move
                values = df[fields[SEQUENCE_FIELD]].copy()
                values[feature] = df[feature].to_numpy()[rng.permutation(len(df))]
                plan.append((feature, {SEQUENCE_FIELD: Change(values=values)}))
            else:
                plan.append((feature, {feature: Change(rows=rng.permutation(len(df)))}))
    return plan
