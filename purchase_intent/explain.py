"""Explanations: per-modality occlusion and permutation importance.

Both work on *raw* examples (frames validated by ``FeatureSchema.validate``)
through any scoring function ``predict_fn(frame) -> probabilities``: the
in-memory model (:func:`keras_predict_fn`), an export loaded in process
(``purchase_intent.predict.Predictor``, or its ``predict``) or a gRPC client.

* :func:`occlusion` replaces the raw inputs of one modality by "empty" values
  (text ``""``, empty event sequences, numeric NaN, which the preprocessor
  imputes with the training mean and flags, categorical values never seen in
  training) and measures the change in each example's probability.
* :func:`permutation_importance` shuffles one feature across the rows of a
  split and measures the drop in ROC-AUC: every scalar text, per-event text
  (each event's text swapped with another event's), numeric and categorical
  column, and whole histories ("sequence").

Every perturbed frame of a stage is scored at once by a
:class:`PerturbationScorer`: each distinct row once (a shuffle that leaves a
row as it was costs nothing), in large batches. With a ``Predictor`` the rows
are gathered from serving arrays built once, and the pooled embedding of each
distinct scalar text is computed once and fed to an inlined copy of the
serving function (:class:`InlinedText`, checked against the export's own
answers). ``batched=False`` scores one frame per call, the reference the
tests hold the fast path to. ``python -m purchase_intent.explain``: docs/explain.md;
its work is :func:`explain_export`, which a training run also calls after the export
(:func:`explain_run`, ``train.explain_rows`` test rows into ``RUN_DIR/explain/``).

Examples:

>>> from purchase_intent import explain  # doctest: +SKIP
>>> fn = explain.keras_predict_fn(model, preprocessor)  # doctest: +SKIP
>>> per_example, summary = explain.occlusion(fn, test_df, schema)  # doctest: +SKIP
>>> explain.permutation_importance(fn, test_df, schema, n_repeats=3)  # doctest: +SKIP
>>> explain.permutation_importance(Predictor(export), test_df, schema)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

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


# -- scalar text: each distinct text through the encoder once ---------------------------------
TEXT_CHECK_ROWS = 32  # rows scored both ways before the embeddings of an export are trusted
TEXT_TOLERANCE = 1e-6  # largest |difference| allowed between the two ways
INLINE_SCOPE = "explain_inlined"
_CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")


_INLINED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # SessionModel -> its InlinedText


class TextCutError(RuntimeError):
    """The export's graph offers no place to feed pooled text embeddings (the text runs per row)."""


class InlinedText:
    """The export's serving function, inlined into its own Session's graph, fed pooled text embeddings.

    An export runs its text encoder (MiniLM: about 20 ms a row on 2 cores) inside
    the one serving signature, so every perturbed row would encode its texts
    again although only one field changed. Here the serving function's body (the
    function the signature calls, through its wrappers) is imported once more
    into the Session's graph, wired to the signature's own input placeholders,
    variables and tables; there, the output of each scalar text column's masked
    mean pool (``<column>_pool`` in :func:`purchase_intent.model.build_model`) is
    a tensor a Session call may *feed*. Each distinct text is encoded once
    (:meth:`embed`), and rows are scored with the embeddings fed (:meth:`score`):
    the same graph and weights after the pool, the encoder not run again. The
    signature itself is left as it was.

    :class:`PerturbationScorer` trusts it only after rows scored both ways agree
    to :data:`TEXT_TOLERANCE` (bit for bit on the exports tried).

    Args:
        session_model: the ``SessionModel`` of a ``Predictor``.
        schema: the export's schema (``text`` names the scalar text columns).

    Raises:
        TextCutError: the signature's body or a text column's pool was not found.
    """

    def __init__(self, session_model, schema: FeatureSchema):
        import re

        import tensorflow as tf
        from tensorflow.python.framework import function_def_to_graph

        from purchase_intent.contract import OUTPUT_KEY

        self.session_model, self.schema = session_model, schema
        graph = session_model.graph
        out = graph.get_tensor_by_name(session_model.outputs[OUTPUT_KEY])
        if out.op.type not in _CALL_OPS:
            raise TextCutError(f"the signature's output is a {out.op.type}, not a function call")
        library = {f.signature.name: f for f in graph.as_graph_def().library.function}
        fdef = library[out.op.get_attr("f").name]
        args = dict(zip([a.name for a in fdef.signature.input_arg], out.op.inputs))
        ret = fdef.ret[fdef.signature.output_arg[out.value_index].name]
        fdef, args, ret = _unwrap(fdef, args, ret, library)
        with graph.as_default():
            graph_def, nested = function_def_to_graph.function_def_to_graph_def(fdef)
            pools = {}
            for column in schema.text:
                pattern = re.compile(rf"(^|/){re.escape(column)}_pool(_\d+)?/truediv$")
                pools[column] = [f"{INLINE_SCOPE}/{n.name}:0" for n in graph_def.node if pattern.search(n.name)]
                if not pools[column]:
                    raise TextCutError(f"no pooled embedding of text column {column!r} in the serving function")
            tf.compat.v1.import_graph_def(graph_def, input_map={f"{a}:0": t for a, t in args.items()},
                                          name=INLINE_SCOPE)
        self.pools = pools
        self.output = f"{INLINE_SCOPE}/{nested.get(ret, ret)}"
        self.keys = sorted(session_model.inputs)  # raw inputs, fed by placeholder name
        self._callables: dict[tuple, object] = {}

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        found = self._callables.get((feeds, fetches))
        if found is None:
            from tensorflow.core.protobuf import config_pb2

            options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
            found = self._callables[(feeds, fetches)] = self.session_model.session._make_callable_from_options(
                options)
        return found

    def embed(self, column: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The pooled embeddings of ``column``'s rows of ``arrays`` (raw serving arrays), one array per pool."""
        feeds = tuple(self.session_model.inputs[k] for k in self.keys)
        return list(self._callable(feeds, tuple(self.pools[column]))(*(arrays[k] for k in self.keys)))

    def score(self, arrays: dict[str, np.ndarray], embeddings: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities of the rows of ``arrays`` with the pooled embeddings fed (pool tensor -> ``[rows, dim]``)."""
        pools = tuple(p for c in self.schema.text for p in self.pools[c])
        feeds = tuple(self.session_model.inputs[k] for k in self.keys) + pools
        values = [arrays[k] for k in self.keys] + [embeddings[p] for p in pools]
        return np.asarray(self._callable(feeds, (self.output,))(*values)[0]).reshape(-1)


def _unwrap(fdef, args: dict, ret: str, library: dict):
    """Follows wrapper functions (one call, inputs passed through) down to the function with the body.

    Returns ``(fdef, args, ret)``: the body, its arguments as tensors of the outer
    graph, and the name (FunctionDef convention) of its output.
    """
    nodes = {n.name: n for n in fdef.node_def}
    calls = [n for n in fdef.node_def if n.op in _CALL_OPS]
    if len(calls) != 1 or any(n.op not in _CALL_OPS + ("Identity", "NoOp") for n in fdef.node_def):
        return fdef, args, ret
    (call,) = calls
    inputs = [i for i in call.input if not i.startswith("^")]
    if any(i not in args for i in inputs):
        return fdef, args, ret
    name = ret
    while nodes.get(name.split(":")[0]) is not None and nodes[name.split(":")[0]].op == "Identity":
        name = nodes[name.split(":")[0]].input[0]
    parts = name.split(":")
    if parts[0] != call.name or len(parts) != 3:
        return fdef, args, ret
    inner = library[call.attr["f"].func.name]
    inner_args = {a.name: args[i] for a, i in zip(inner.signature.input_arg, inputs)}
    inner_ret = inner.ret[inner.signature.output_arg[int(parts[2])].name]
    return _unwrap(inner, inner_args, inner_ret, library)


# -- scoring many perturbed copies of one frame ------------------------------------------
class PerturbationScorer:
    """Scores perturbed copies of one validated frame: each distinct row once, in large batches.

    A perturbed row equal to a row already scored (the original one when a
    shuffle leaves the row's value as it was, every row of a fully occluded
    frame, ...) is not scored again: rows are compared on the values the model
    reads (numbers as the float32 sent, strings and event lists as they are).
    The model's answer for a row does not depend on the other rows of its batch
    (sequences are padded to the contract's fixed width), so the probabilities
    are the ones a per-frame call returns.

    With a :class:`purchase_intent.predict.Predictor` whose export has a
    contract (fixed sequence width), each field's serving arrays are built once
    per distinct set of values (:func:`purchase_intent.contract.frame_to_arrays`,
    converted as :class:`purchase_intent.serving.session.SessionModel` converts
    them) and perturbed rows are gathered from them: the Session is fed what
    ``Predictor.predict`` feeds it, without converting every perturbed frame
    again. When the export has scalar text, each distinct text is encoded once
    and its pooled embedding fed (:class:`InlinedText`), after
    :data:`TEXT_CHECK_ROWS` rows and as many with their texts moved by one row
    were scored both ways and agreed to :data:`TEXT_TOLERANCE`; otherwise (or
    with ``text_embeddings=False``) the signature runs the encoder on every
    scored row. Any other scorer is a ``predict_fn(frame) -> probabilities``,
    called on frames of distinct rows.

    Args:
        model: a ``Predictor`` or a ``predict_fn``.
        df: the frame, validated by ``schema.validate``.
        schema: the feature schema.
        batch_size: int. Rows per call of the model.
        progress: bool or None. True: a tqdm bar on stderr per stage; None: a
            bar at a terminal, otherwise one line per stage on stderr; False: neither.
        text_embeddings: bool. Encode each distinct scalar text once (when the check passes).

    Attributes:
        rows_requested: perturbed rows asked for, over every :meth:`score`.
        rows_scored: distinct rows the model was run on.
        stage_seconds: seconds per ``desc`` of :meth:`score`.
    """

    def __init__(self, model, df: pd.DataFrame, schema: FeatureSchema, *, batch_size: int = 512,
                 progress: bool | None = False, text_embeddings: bool = True):
        self.df, self.schema, self.n = df, schema, len(df)
        self.batch_size = int(batch_size)
        self.progress = progress
        self.fields = _fields(schema)
        self._variants: dict[str, list[pd.DataFrame]] = {f: [] for f in self.fields}
        self._variant_ids: dict[str, dict[int, int]] = {f: {} for f in self.fields}
        self._codes: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
        self._code_of: dict[str, dict] = {f: {} for f in self.fields}
        self._cache: dict[bytes, float] = {}
        self._held: list = []
        self._arrays: dict[str, list[dict[str, np.ndarray]]] = {f: [] for f in self.fields}
        self._session, self._predict_fn, self.max_events = _session_of(model), None, None
        if self._session is not None:
            self.max_events = model.max_events
        else:
            self._predict_fn = _as_predict_fn(model)
        self.rows_requested = 0  # perturbed rows asked for, over every stage
        self.rows_scored = 0  # distinct rows the model was run on
        self.stage_seconds: dict[str, float] = {}  # desc of score() -> seconds
        self._text: InlinedText | None = None
        self._text_values: dict[str, list] = {f: [] for f in schema.text}  # code -> the bytes sent
        self._embeddings: dict[str, dict[str, list[np.ndarray]]] = {}  # field -> pool -> blocks by code
        for field in self.fields:
            self._variant(field, None)
        if self._session is not None and schema.text and text_embeddings:
            self._use_text_embeddings()

    @property
    def exact_arrays(self) -> bool:
        """True when rows are gathered from serving arrays built once (the export fast path)."""
        return self._session is not None

    @property
    def text_embeddings(self) -> bool:
        """True when each distinct scalar text is encoded once and its pooled embedding fed (:class:`InlinedText`)."""
        return self._text is not None

    def _say(self, message: str) -> None:
        logger.info("%s", message)
        if self.progress is None and not _stderr_is_terminal() and not logging.getLogger().handlers:
            print(message, file=sys.stderr, flush=True)

    def _use_text_embeddings(self) -> None:
        """Sets up :class:`InlinedText` and keeps it only if rows scored both ways agree."""
        try:
            self._text = _INLINED.get(self._session)
            if self._text is None:  # once per loaded export: the import adds to its Session's graph
                self._text = _INLINED[self._session] = InlinedText(self._session, self.schema)
        except Exception as e:  # noqa: BLE001 - any failure leaves the per-row path, which is exact
            self._say(f"Scalar text is encoded again for every scored row: {type(e).__name__}: {e}")
            self._text = None
            return
        from purchase_intent.contract import OUTPUT_KEY

        self._embed_new_texts()
        m = min(self.n, TEXT_CHECK_ROWS)
        base = {k: a[:m] for f in self.fields for k, a in self._arrays[f][0].items()}
        codes = {f: self._codes[f][0][:m] for f in self.schema.text}
        worst = 0.0
        for shift in (0, 1):  # as they are, then each text column moved by one row
            arrays = dict(base)
            rolled = dict(codes)
            for f in self.schema.text:
                arrays[f], rolled[f] = np.roll(base[f], shift), np.roll(codes[f], shift)
            reference = np.asarray(self._session.run(arrays, [OUTPUT_KEY])[OUTPUT_KEY]).reshape(-1)
            fed = self._text.score(arrays, self._embedding_feed(rolled))
            worst = max(worst, float(np.max(np.abs(fed - reference))) if m else 0.0)
        if not worst <= TEXT_TOLERANCE:
            self._say(f"Scalar text is encoded again for every scored row: with the pooled embeddings fed, "
                      f"{2 * m} rows differ from the export's answers by up to {worst:.2e} "
                      f"(more than {TEXT_TOLERANCE:g})")
            self._text = None
        else:
            logger.info("Scalar text (%s): each distinct text encoded once; %d rows agree with the export "
                        "to %.1e", ", ".join(self.schema.text), 2 * m, worst)

    def _embed_new_texts(self) -> None:
        """Encodes the distinct texts of every text field that have no embedding yet."""
        from tqdm import tqdm

        todo = {f: len(v) - self._embedded(f) for f, v in self._text_values.items()}
        total = sum(todo.values())
        if not total:
            return
        _stage_line(self.progress,
                    f"text embeddings: {total:,} distinct texts of {', '.join(self.schema.text)}, each encoded once")
        filler = {k: a[:1] for f in self.fields for k, a in self._arrays[f][0].items()}
        with tqdm(total=total, unit=" texts", desc="text embeddings", file=sys.stderr,
                  disable=not self._bar()) as bar:
            for field in todo:
                values = self._text_values[field]
                for start in range(self._embedded(field), len(values), self.batch_size):
                    chunk = np.array(values[start:start + self.batch_size], dtype=object)
                    arrays = {k: np.repeat(a, len(chunk), axis=0) for k, a in filler.items()}
                    arrays[field] = chunk
                    blocks = self._embeddings.setdefault(field, {p: [] for p in self._text.pools[field]})
                    for pool, vectors in zip(self._text.pools[field], self._text.embed(field, arrays)):
                        blocks[pool].append(np.asarray(vectors))
                    bar.update(len(chunk))

    def _embedded(self, field: str) -> int:
        blocks = self._embeddings.get(field)
        return sum(len(b) for b in next(iter(blocks.values()))) if blocks else 0

    def _embedding_feed(self, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pool tensor -> the embeddings of the rows whose text codes are ``codes`` (field -> codes)."""
        out = {}
        for field, rows in codes.items():
            for pool, blocks in self._embeddings[field].items():
                if len(blocks) > 1:
                    blocks[:] = [np.concatenate(blocks)]
                out[pool] = blocks[0][rows]
        return out

    # -- variants: the distinct value sets of each field ------------------------------------
    def _variant(self, field: str, values: pd.DataFrame | None) -> int:
        """The number of ``values`` (None: the frame's own) among ``field``'s variants, added if new."""
        key = id(values)
        found = self._variant_ids[field].get(key)
        if found is not None:
            return found
        frame = self.df[self.fields[field]] if values is None else values[self.fields[field]]
        if len(frame) != self.n:
            raise ValueError(f"a perturbation of {field!r} has {len(frame)} rows, the frame {self.n}")
        number = len(self._variants[field])
        self._variants[field].append(frame)
        self._variant_ids[field][key] = number
        self._held.append(values)  # alive as long as the scorer: its id() is not given to another frame
        code_of = self._code_of[field]
        codes = np.fromiter((code_of.setdefault(k, len(code_of)) for k in self._value_keys(field, frame)),
                            dtype=np.int64, count=self.n)
        self._codes[field].append(codes)
        if self._session is not None:
            same = next((v for v, c in enumerate(self._codes[field][:-1]) if np.array_equal(c, codes)), None)
            self._arrays[field].append(self._arrays[field][same] if same is not None  # equal values
                                       else self._serving_arrays(field, frame))
            if field in self._text_values:  # the bytes of each new text, by code
                values = self._text_values[field]
                distinct, rows = np.unique(codes, return_index=True)
                sent = self._arrays[field][-1][field]
                values += [sent[r] for c, r in zip(distinct.tolist(), rows.tolist()) if c >= len(values)]
        return number

    def _value_keys(self, field: str, frame: pd.DataFrame):
        """One hashable key per row: equal keys, equal values for the model."""
        cols = self.fields[field]
        if field == SEQUENCE_FIELD:
            return zip(*(map(tuple, frame[c]) for c in cols))
        (col,) = cols
        if col in self.schema.numeric:  # the float32 sent, bit for bit (NaN kept apart from numbers)
            return iter(np.asarray(frame[col], dtype=np.float32).view(np.int32).tolist())
        return iter(frame[col].tolist())

    def _serving_arrays(self, field: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The serving arrays of one variant of a field, in the dtypes the Session is fed."""
        from purchase_intent import contract

        cols = self.fields[field]
        part = types.SimpleNamespace(
            text=[c for c in cols if c in self.schema.text],
            categorical=[c for c in cols if c in self.schema.categorical],
            sequence_like=[c for c in cols if c in self.schema.sequence_like],
            numeric=[c for c in cols if c in self.schema.numeric])
        arrays = contract.frame_to_arrays(frame, part, max_events=self.max_events)
        specs = contract.input_specs(self.schema)
        return {k: _as_bytes(a) if specs[k]["dtype"] == "DT_STRING" else a.astype(np.float32, copy=False)
                for k, a in arrays.items()}

    # -- scoring ----------------------------------------------------------------------
    def score(self, perturbations: list[Perturbation], desc: str = "scoring") -> np.ndarray:
        """Probabilities of every perturbed frame, ``[len(perturbations), rows]`` float64."""
        import time

        start = time.perf_counter()
        fields = list(self.fields)
        n, count = self.n, len(perturbations)
        codes = np.empty((count * n, len(fields)), np.int64)
        sources: list[list[tuple[int, np.ndarray | None]]] = []
        for p, perturbation in enumerate(perturbations):
            unknown = set(perturbation) - set(fields)
            if unknown:
                raise ValueError(f"Unknown fields {sorted(unknown)}")
            chosen = []
            for j, field in enumerate(fields):
                change = perturbation.get(field) or Change()
                v = self._variant(field, change.values)
                c = self._codes[field][v]
                codes[p * n:(p + 1) * n, j] = c if change.rows is None else c[change.rows]
                chosen.append((v, None if change.rows is None else np.asarray(change.rows)))
            sources.append(chosen)
        distinct, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
        keys = [row.tobytes() for row in distinct]
        todo = np.array([i for i, k in enumerate(keys) if k not in self._cache], dtype=np.int64)
        # Where each row to score comes from: per field, its row in the concatenated variants.
        p_of, r_of = np.divmod(first[todo], n)
        flat = {}
        for j, field in enumerate(fields):
            idx = np.empty(len(todo), np.int64)
            for p in np.unique(p_of):
                mask = p_of == p
                v, rows = sources[p][j]
                r = r_of[mask]
                idx[mask] = v * n + (r if rows is None else rows[r])
            flat[field] = idx
        _stage_line(self.progress, f"{desc}: {count} frames x {n:,} rows = {count * n:,} rows, {len(todo):,} "
                                   "distinct new ones to score")
        probs = self._score_rows(flat, len(todo), desc, count)
        for i, prob in zip(todo.tolist(), probs.tolist()):
            self._cache[keys[i]] = prob
        table = np.array([self._cache[k] for k in keys], np.float64)
        self.rows_requested += count * n
        self.rows_scored += len(todo)
        self.stage_seconds[desc] = self.stage_seconds.get(desc, 0.0) + time.perf_counter() - start
        return table[inverse.reshape(-1)].reshape(count, n)

    def _score_rows(self, flat: dict[str, np.ndarray], total: int, desc: str, frames: int) -> np.ndarray:
        from tqdm import tqdm

        out = []
        if self._session is not None:
            stacked = {f: {k: np.concatenate([a[k] for a in self._arrays[f]]) for k in self._arrays[f][0]}
                       for f in self.fields}
        else:
            stacked = {f: pd.concat(self._variants[f], ignore_index=True) for f in self.fields}
        columns = [c for c in self.df.columns if c in self.schema.feature_names]
        if self._text is not None:
            self._embed_new_texts()
            text_codes = {f: np.concatenate(self._codes[f]) for f in self.schema.text}
        with tqdm(total=total, unit=" rows", desc=f"{desc} ({frames} frames)", file=sys.stderr,
                  disable=not self._bar()) as bar:
            for start in range(0, total, self.batch_size):
                part = {f: idx[start:start + self.batch_size] for f, idx in flat.items()}
                if self._session is not None:
                    from purchase_intent.contract import OUTPUT_KEY

                    feed = {k: a[part[f]] for f, arrays in stacked.items() for k, a in arrays.items()}
                    if self._text is not None:
                        codes = {f: text_codes[f][part[f]] for f in self.schema.text}
                        prob = self._text.score(feed, self._embedding_feed(codes))
                    else:
                        prob = self._session.run(feed, [OUTPUT_KEY])[OUTPUT_KEY]
                else:
                    frame = pd.concat([stacked[f].iloc[part[f]].reset_index(drop=True) for f in self.fields],
                                      axis=1)[columns]
                    prob = self._predict_fn(frame)
                out.append(np.asarray(prob, np.float64).reshape(-1))
                bar.update(len(out[-1]))
        return np.concatenate(out) if out else np.zeros(0, np.float64)

    def _bar(self) -> bool:
        return _shows_bar(self.progress)


def _as_bytes(arr: np.ndarray) -> np.ndarray:
    """An object array of strings as ``SessionModel`` feeds it (``purchase_intent.serving.session._strings``):
    each distinct ``str`` encoded once (UTF-8); arrays holding anything else go through ``_strings`` itself."""
    from purchase_intent.serving.session import _strings

    flat = arr.reshape(-1)
    if pd.api.types.infer_dtype(flat, skipna=False) != "string":
        return _strings(arr)
    codes, distinct = pd.factorize(flat)
    return _strings(np.asarray(distinct, dtype=object))[codes].reshape(arr.shape)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _shows_bar(progress: bool | None) -> bool:
    """A tqdm bar on stderr: as ``progress`` says, or (None) when stderr is a terminal."""
    return bool(progress) if progress is not None else _stderr_is_terminal()


def _stage_line(progress: bool | None, message: str) -> None:
    """With ``progress`` None and stderr not a terminal (a log file), one line per stage instead of a bar."""
    if progress is None and not _stderr_is_terminal():
        print(message, file=sys.stderr, flush=True)


def _session_of(model):
    """The ``SessionModel`` of a ``Predictor`` whose export has a contract (fixed sequence width), else None."""
    session = getattr(model, "_model", None)
    if (hasattr(model, "predict") and getattr(model, "max_events", None) is not None
            and callable(getattr(session, "run", None))):
        return session
    return None


def _as_predict_fn(model) -> PredictFn:
    """``model`` as a ``predict_fn``: a Predictor's ``predict`` (frames already validated), or itself."""
    if isinstance(model, PerturbationScorer):
        raise TypeError("a PerturbationScorer is not a predict_fn")
    if hasattr(model, "predict") and hasattr(model, "schema"):
        return lambda frame: model.predict(frame, validate=False)
    return model


def _scorer(model, df: pd.DataFrame, schema: FeatureSchema, progress: bool | None) -> PerturbationScorer:
    if isinstance(model, PerturbationScorer):
        if model.df is not df:
            raise ValueError("the PerturbationScorer was built on another frame: pass the frame it scores "
                             "(scorer.df)")
        return model
    return PerturbationScorer(model, df, schema, progress=progress)


def _one_by_one(model, df: pd.DataFrame, schema: FeatureSchema, perturbations: list[Perturbation],
                desc: str, progress: bool | None) -> np.ndarray:
    """The straightforward path: each perturbed frame built and scored by its own call."""
    from tqdm import tqdm

    if isinstance(model, PerturbationScorer):
        raise TypeError("batched=False scores through a predict_fn or a Predictor, not a PerturbationScorer")
    predict_fn = _as_predict_fn(model)
    _stage_line(progress, f"{desc}: {len(perturbations)} frames x {len(df):,} rows, scored one frame at a time")
    out = []
    for perturbation in tqdm(perturbations, desc=desc, unit=" frames", file=sys.stderr,
                             disable=not _shows_bar(progress)):
        frame = apply_perturbation(df, schema, perturbation) if perturbation else df
        out.append(np.asarray(predict_fn(frame), np.float64).reshape(-1))
    return np.stack(out)


def occlusion(predict_fn, df: pd.DataFrame, schema: FeatureSchema,
              modalities: list[str] | None = None, *, batched: bool = True,
              progress: bool | None = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-example contribution of each modality by occlusion.

    The contribution of a modality to an example is ``p(all inputs) -
    p(that modality emptied)``: positive when the modality pushes the
    example towards buying.

    Args:
        predict_fn: validated frame -> probabilities; or a
            ``purchase_intent.predict.Predictor`` (scored on its serving arrays,
            see :class:`PerturbationScorer`); or a :class:`PerturbationScorer` of ``df``.
        df: frame validated by ``schema.validate`` (the label column, if any, is ignored).
        schema: the feature schema.
        modalities: the modalities to occlude; default every one present, plus "all".
        batched: bool. Score every occluded frame together, each distinct row
            once (:class:`PerturbationScorer`); False: one call per frame.
        progress: bool or None. Progress on stderr (None: a bar at a terminal,
            else one line per stage).

    Returns:
        ``(per_example, summary)``. ``per_example`` has ``probability`` and,
        per modality, ``p_without_<m>`` and ``contribution_<m>``, one row per
        example (index of ``df``). ``summary`` has one row per modality:
        ``mean_contribution``, ``mean_abs_contribution``, ``share_pushed_up``.
    """
    present = list(modality_columns(schema))
    modalities = modalities or present + ["all"]
    kept = []
    for m in modalities:
        if m != "all" and m not in present:
            if m not in MODALITIES:
                raise ValueError(f"Unknown modality {m!r}; use one of {MODALITIES + ('all',)}")
            logger.info("Occlusion: the schema has no %s inputs; skipped", m)
            continue
        kept.append(m)
    perturbations = [{}] + [_occlusion_perturbation(df, schema, m) for m in kept]
    desc = "occlusion"
    if batched:
        probs = _scorer(predict_fn, df, schema, progress).score(perturbations, desc)
    else:
        probs = _one_by_one(predict_fn, df, schema, perturbations, desc, progress)
    base = probs[0]
    per_example = pd.DataFrame({"probability": base}, index=df.index)
    rows = []
    for m, p in zip(kept, probs[1:]):
        per_example[f"p_without_{m}"] = p
        per_example[f"contribution_{m}"] = base - p
        rows.append({"modality": m, "mean_contribution": float(np.mean(base - p)),
                     "mean_abs_contribution": float(np.mean(np.abs(base - p))),
                     "share_pushed_up": float(np.mean(base > p))})
    summary = pd.DataFrame(rows).set_index("modality")
    return per_example, summary


def default_features(schema: FeatureSchema) -> list[str]:
    """What :func:`permutation_importance` shuffles by default: every text, per-event text,
    numeric and categorical column, and "sequence" (whole histories) when the schema has sequences."""
    return (list(schema.text) + list(schema.event_text) + list(schema.numeric) + list(schema.categorical)
            + (["sequence"] if schema.sequence_like else []))


def describe_shuffles(schema: FeatureSchema, features: list[str]) -> str:
    """One line saying how each kind of feature in ``features`` was shuffled, and what was left out."""
    parts = []
    scalar = [f for f in features if f in list(schema.text) + list(schema.numeric) + list(schema.categorical)]
    if scalar:
        texts = [f for f in scalar if f in schema.text]
        parts.append("each column's values moved between rows"
                     + (f" (text columns too: {', '.join(texts)})" if texts else ""))
    event_text = [f for f in features if f in schema.event_text]
    if event_text:
        parts.append(f"per-event text ({', '.join(event_text)}): each event's text swapped with another "
                     "event's, every row keeping its events")
    seqs = [f for f in features if f in schema.sequences]
    if seqs:
        parts.append(f"{', '.join(seqs)}: that column's histories moved between rows, the other "
                     "per-event columns kept")
    if "sequence" in features:
        parts.append(f"sequence: whole histories ({', '.join(schema.sequence_like)}) moved between rows")
    left = [f for f in default_features(schema) if f not in features]
    line = "Shuffled: " + "; ".join(parts) + "."
    if left:
        line += f" Not shuffled: {', '.join(left)}."
    return line


def permutation_importance(predict_fn, df: pd.DataFrame, schema: FeatureSchema,
                           features: list[str] | None = None, n_repeats: int = 3,
                           seed: int = 0, *, batched: bool = True,
                           progress: bool | None = False) -> pd.DataFrame:
    """Drop in ROC-AUC when one feature is shuffled across the rows of a split.

    Args:
        predict_fn: validated frame -> probabilities; or a
            ``purchase_intent.predict.Predictor``; or a :class:`PerturbationScorer` of ``df``.
        df: frame validated by ``schema.validate``, with the label column.
        schema: the feature schema.
        features: feature names; default :func:`default_features` (text,
            per-event text, numeric, categorical, "sequence"). A scalar column
            (text too) has its values moved between rows; a per-event text
            column has each event's text swapped with another event's (the
            events and their number stay: :func:`shuffle_event_text`); the name
            "sequence" shuffles all sequence columns together (whole histories
            move between rows, keeping events aligned).
        n_repeats: int. Shuffles per feature (the mean and std are reported).
        seed: int. Random seed.
        batched: bool. Score every shuffled frame together, each distinct row
            once (:class:`PerturbationScorer`); False: one call per frame. Both
            draw the same shuffles.
        progress: bool or None. Progress on stderr (None: a bar at a terminal,
            else one line per stage).

    Returns:
        One row per feature, largest drop first: ``importance`` (mean ROC-AUC
        drop), ``std`` and ``baseline_roc_auc``.

    Raises:
        ValueError: unknown feature, or a split with one class only.
    """
    from sklearn.metrics import roc_auc_score

    y = df[schema.label].to_numpy()
    if y.min() == y.max():
        raise ValueError("permutation_importance needs both classes in the split")
    features = list(features or default_features(schema))
    known = set(schema.feature_names) | ({"sequence"} if schema.sequence_like else set())
    unknown = [f for f in features if f not in known]
    if unknown:
        raise ValueError(f"Unknown features {unknown}; known: {sorted(known)}")
    plan = _permutation_plan(df, schema, features, n_repeats, seed)
    perturbations = [{}] + [p for _, p in plan]
    desc = "permutation importance"
    if batched:
        probs = _scorer(predict_fn, df, schema, progress).score(perturbations, desc)
    else:
        probs = _one_by_one(predict_fn, df, schema, perturbations, desc, progress)
    base = roc_auc_score(y, probs[0])
    drops: dict[str, list[float]] = {f: [] for f in features}
    for (feature, _), p in zip(plan, probs[1:]):
        drops[feature].append(base - roc_auc_score(y, p))
    rows = [{"feature": f, "importance": float(np.mean(d)), "std": float(np.std(d)),
             "baseline_roc_auc": float(base)} for f, d in drops.items()]
    return pd.DataFrame(rows).set_index("feature").sort_values("importance", ascending=False)


def plot_importance(table: pd.DataFrame, path: str | Path | None = None, *, column: str | None = None,
                    title: str | None = None):
    """Bar chart of :func:`permutation_importance` or of an :func:`occlusion` summary.

    Args:
        table: the output of :func:`permutation_importance` (plots ``importance``
            with ``std`` error bars) or the ``summary`` of :func:`occlusion`
            (plots ``mean_abs_contribution``).
        path: PNG to write; None returns the figure.
        column: the column to plot (default as above).
        title: figure title.

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    from purchase_intent.plots import plot_bars

    if column is None:
        column = "importance" if "importance" in table else "mean_abs_contribution"
    errors = table["std"] if column == "importance" and "std" in table else None
    default_title = ("Permutation importance (drop in ROC-AUC)" if column == "importance"
                     else f"Occlusion: {column.replace('_', ' ')} to the probability")
    return plot_bars(table[column], path, title=title or default_title,
                     xlabel=column.replace("_", " "), errors=errors)


def modality_subsets(schema: FeatureSchema) -> dict[str, FeatureSchema]:
    """Every distinct non-empty modality subset of ``schema`` (``FeatureSchema.subset``), named "a+b"."""
    import itertools

    from purchase_intent.schema import SchemaError

    mods = schema.modalities
    out: dict[str, FeatureSchema] = {}
    seen = []
    for k in range(1, len(mods) + 1):
        for combo in itertools.combinations(mods, k):
            try:
                sub = schema.subset(list(combo))
            except SchemaError:  # e.g. per-event text alone needs the sequence modality too
                continue
            if sub.to_dict() not in seen:
                seen.append(sub.to_dict())
                out["+".join(combo)] = sub
    return out  # a subset equal to a smaller one (text+numeric without scalar text) is kept once


def modality_ablation(cfg, schema: FeatureSchema, splits: dict[str, pd.DataFrame],
                      subsets: dict[str, FeatureSchema] | None = None,
                      epochs: int | None = None) -> pd.DataFrame:
    """Trains one model per modality subset, briefly, and scores each on the test split.

    Args:
        cfg: a ``Config`` (``cfg.train.epochs`` unless ``epochs`` is given); each
            model is the product's (:class:`purchase_intent.task.PurchaseIntentTask`: early
            stopping on validation ROC-AUC, class weights, wide warm-up, output stage).
        schema: the full feature schema.
        splits: "train", "validation", "test" frames validated by ``schema``.
        subsets: name -> schema; default :func:`modality_subsets`.
        epochs: int or None. Maximum epochs per subset.

    Returns:
        One row per subset, best first: ``test_roc_auc``, ``test_pr_auc``,
        ``val_roc_auc``, ``epochs_run``, ``seconds``, ``features``. Each model is
        built and trained under the dtype policy of ``train.mixed_precision``.
    """
    from purchase_intent.task import dtype_policy

    with dtype_policy(cfg.train.mixed_precision):
        return _modality_ablation(cfg, schema, splits, subsets, epochs)


def _modality_ablation(cfg, schema, splits, subsets, epochs):
    import time

    import keras
    from sklearn.metrics import average_precision_score, roc_auc_score

    from purchase_intent.task import PurchaseIntentTask

    subsets = subsets or modality_subsets(schema)
    y_val, y_test = splits["validation"][schema.label].to_numpy(), splits["test"][schema.label].to_numpy()
    rows = []
    for name, sub in subsets.items():
        t0 = time.perf_counter()
        keras.utils.set_random_seed(cfg.train.seed)
        model = PurchaseIntentTask(cfg, splits, sub, members=1)  # the product on these features only
        history = model.fit(epochs=epochs)[0]
        model.fit_output()  # with its output stage (trees + stacking, or Platt), as train runs it
        p_val, p_test = model.predict("validation"), model.predict("test")
        rows.append({"subset": name, "test_roc_auc": roc_auc_score(y_test, p_test),
                     "test_pr_auc": average_precision_score(y_test, p_test),
                     "val_roc_auc": roc_auc_score(y_val, p_val),
                     "epochs_run": len(history["loss"]),
                     "seconds": time.perf_counter() - t0, "features": ", ".join(sub.feature_names)})
        logger.info("Ablation %s: test ROC-AUC %.4f (%.1f s)", name, rows[-1]["test_roc_auc"],
                    rows[-1]["seconds"])
        keras.backend.clear_session()
    return pd.DataFrame(rows).set_index("subset").sort_values("test_roc_auc", ascending=False)


# -- command line ----------------------------------------------------------------
def parse_args(argv: list[str] | None = None):
    import argparse

    from purchase_intent import cli

    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.explain",
        description="Explain an exported model on a CSV/Parquet table of raw examples: the contribution "
                    "of each modality to each example (occlusion) and, when the table has the label, "
                    "the drop in ROC-AUC when a feature is shuffled (permutation importance).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="exported version folder, e.g. runs/<run>/export/purchase_intent/1 "
                        "(a model folder picks its highest version)")
    p.add_argument("--input", required=True, help="CSV/Parquet of raw examples named as in the schema")
    p.add_argument("--output-dir", default=None,
                   help="where occlusion.csv, occlusion_summary.csv and importance.csv go "
                        "(default: <input>.explain/ beside the input)")
    p.add_argument("--max-rows", type=int, default=2000, help="explain a seeded sample of this many rows")
    p.add_argument("--repeats", type=int, default=3, help="shuffles per feature (permutation importance)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per call of the model")
    p.add_argument("--unbatched", action="store_true",
                   help="score each perturbed frame by its own call of the export (slower; the reference "
                        "the default batched scoring is tested against)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (default: a bar per stage at a terminal, else one line per stage)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


TIMINGS_FILE = "timings.json"  # written beside the tables: seconds per stage, rows scored


def sample_rows(df: pd.DataFrame, max_rows: int | None, seed: int = 0) -> pd.DataFrame:
    """``df``, or a seeded sample of ``max_rows`` of its rows in their order when it has more."""
    if max_rows is None or len(df) <= max_rows:
        return df
    return df.sample(max_rows, random_state=seed).sort_index()


def explain_export(model, df: pd.DataFrame, out_dir: str | Path, *, repeats: int = 3,
                   progress: bool | None = None, max_rows: int | None = None, seed: int = 0,
                   batch_size: int = 512, batched: bool = True, timings: dict | None = None) -> dict:
    """Explains an export on a validated frame; writes the tables the report's drivers read.

    Writes into ``out_dir``: ``occlusion.csv`` (one row per example),
    ``occlusion_summary.csv`` (one row per modality), ``importance.csv``
    (permutation importance of every feature, text included: only when ``df``
    has the label with both classes) and :data:`TIMINGS_FILE`. The command
    (:func:`main`) and a training run (:func:`explain_run`) both come here.

    Args:
        model: an exported version folder (or model folder: its highest
            version) or a loaded ``purchase_intent.predict.Predictor``.
        df: frame validated by the export's schema (the label column optional).
        out_dir: folder of the tables (made if missing).
        repeats: shuffles per feature (permutation importance).
        progress: progress on stderr (None: a bar per stage at a terminal, else
            one line per stage; False: none).
        max_rows: explain a seeded sample of this many rows when ``df`` has more.
        seed: seed of that sample and of the shuffles.
        batch_size: rows per call of the model.
        batched: score every perturbed frame of a stage together
            (:class:`PerturbationScorer`); False: one call per frame.
        timings: seconds of earlier stages (e.g. ``load_seconds``) to record too.

    Returns:
        ``{"out_dir", "rows", "version_dir", "summary"`` (occlusion summary),
        ``"importance"`` (the table, or None when skipped), ``"features"``,
        ``"timings"``, ``"scorer"`` (the :class:`PerturbationScorer` or None)``}``.
    """
    import json
    import time

    from purchase_intent.predict import Predictor

    timings = dict(timings or {})
    if not isinstance(model, Predictor):
        clock = time.perf_counter()
        model = Predictor(model)
        timings["load_seconds"] = time.perf_counter() - clock
    predictor, schema = model, model.schema
    df = sample_rows(df, max_rows, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if progress is None:
        print(f"Explaining {len(df):,} rows with {predictor.version_dir}", file=sys.stderr, flush=True)

    clock = time.perf_counter()  # the serving arrays of the frame are built in the occlusion stage
    scorer = PerturbationScorer(predictor, df, schema, batch_size=batch_size, progress=progress) if batched else None
    scoring = scorer or predictor
    per_example, summary = occlusion(scoring, df, schema, batched=batched, progress=progress)
    timings["occlusion_seconds"] = time.perf_counter() - clock
    per_example.to_csv(out_dir / "occlusion.csv", index_label="row")
    summary.to_csv(out_dir / "occlusion_summary.csv")
    table, features = None, default_features(schema)
    if schema.label in df.columns and df[schema.label].nunique() == 2:
        clock = time.perf_counter()
        table = permutation_importance(scoring, df, schema, features, n_repeats=repeats, seed=seed,
                                       batched=batched, progress=progress)
        timings["importance_seconds"] = time.perf_counter() - clock
        table.to_csv(out_dir / "importance.csv")
    (out_dir / TIMINGS_FILE).write_text(json.dumps({
        "rows": len(df), **{k: round(v, 3) for k, v in timings.items()},
        "batched": scorer is not None,
        "rows_requested": scorer.rows_requested if scorer else None,
        "rows_scored": scorer.rows_scored if scorer else None,
        "serving_arrays": scorer.exact_arrays if scorer else False,
        "text_embeddings_fed": scorer.text_embeddings if scorer else False}, indent=2))
    return {"out_dir": out_dir, "rows": len(df), "version_dir": predictor.version_dir, "summary": summary,
            "importance": table, "features": features, "timings": timings, "scorer": scorer}


def explain_run(cfg, version_dir: str | Path | None, frame: pd.DataFrame, run_dir: str | Path) -> dict | None:
    """A training run's drivers: :func:`explain_export` on ``train.explain_rows`` test rows, into ``RUN_DIR/explain/``.

    Runs when ``cfg.train.explain_rows`` > 0, the run exported (``version_dir``),
    this process is the chief and ``frame`` (the run's test frame) has both
    classes; a seeded sample (``train.seed``) when it has more rows. One stage
    line says what was explained. This step is optional: any failure is a
    warning, never the run's; the tables appear only when every one was written
    (``RUN_DIR/explain/`` is replaced then, left as it was otherwise).

    Returns:
        What :func:`explain_export` returned, or None (off, skipped or failed).
    """
    import shutil
    import time

    from purchase_intent import cli
    from purchase_intent.distribute import is_chief

    rows = cfg.train.explain_rows
    if rows <= 0 or not version_dir or not is_chief():
        return None
    run_dir = Path(run_dir)
    final, partial = run_dir / "explain", run_dir / "explain.partial"  # the report reads RUN_DIR/explain/
    clock = time.perf_counter()
    try:
        from purchase_intent.predict import Predictor

        predictor = Predictor(version_dir)
        label = predictor.schema.label
        if frame[label].nunique() < 2:
            logger.info("Drivers: skipped (the test split has one class only)", extra=cli.STAGE)
            return None
        shutil.rmtree(partial, ignore_errors=True)
        out = explain_export(predictor, frame, partial, progress=False, max_rows=rows, seed=cfg.train.seed)
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    except Exception as err:  # optional: the run has its model, export and report without it
        shutil.rmtree(partial, ignore_errors=True)
        logger.warning("Drivers not computed (%s: %s); the report gives the explain command instead",
                       type(err).__name__, err)
        return None
    out["out_dir"] = final
    seconds = time.perf_counter() - clock
    if out["importance"] is not None:
        logger.info("Drivers: permutation importance of %d features (text included) on %s test rows (%.0f s): "
                    "%s", len(out["features"]), f"{out['rows']:,}", seconds, final, extra=cli.STAGE)
    else:
        logger.info("Drivers: occlusion of each kind of input on %s test rows (%.0f s; no permutation importance: "
                    "one class in the sample): %s", f"{out['rows']:,}", seconds, final, extra=cli.STAGE)
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the explanation command; writes its tables and prints the summaries.

    Progress goes to stderr (a tqdm bar per stage at a terminal, otherwise one
    line per stage); the tables and summaries to stdout. The work is
    :func:`explain_export`'s (every perturbed frame of a stage scored together
    through the export's serving arrays, each distinct row once).
    """
    import time

    from purchase_intent import cli
    from purchase_intent.data.readers import check_table_file, read_table

    args = parse_args(argv)
    cli.setup_logging()
    check_table_file(args.input)  # before the model (and TensorFlow) loads
    from purchase_intent.predict import Predictor

    clock = time.perf_counter()
    predictor = Predictor(args.model)
    schema = predictor.schema
    timings = {"load_seconds": time.perf_counter() - clock}
    clock = time.perf_counter()
    raw = sample_rows(read_table(args.input, schema), args.max_rows)  # validated after sampling: faster
    df = schema.validate(raw, require_label=schema.label in raw.columns, where=str(args.input))
    timings["read_seconds"] = time.perf_counter() - clock
    out_dir = Path(args.output_dir or Path(args.input).with_name(Path(args.input).name + ".explain"))
    out = explain_export(predictor, df, out_dir, repeats=args.repeats, progress=False if args.no_progress else None,
                         batch_size=args.batch_size, batched=not args.unbatched, timings=timings)
    print(f"Contribution of each modality (probability with all inputs - without it):\n{out['summary']}\n")
    if out["importance"] is not None:
        print(f"Drop in ROC-AUC when a feature is shuffled ({args.repeats} shuffle(s) each):\n{out['importance']}\n"
              f"{describe_shuffles(schema, out['features'])}\n")
    else:
        print(f"Permutation importance skipped: no label column {schema.label!r} with both classes "
              f"in {args.input}", flush=True)
    scorer = out["scorer"]
    stages = ", ".join(f"{k.replace('_seconds', '').replace('_', ' ')} {v:.1f} s" for k, v in out["timings"].items())
    scored = (f"; {scorer.rows_scored:,} distinct rows scored of {scorer.rows_requested:,} perturbed"
              if scorer else "")
    print(f"Wrote {out_dir} ({stages}{scored})", flush=True)
    return 0


if __name__ == "__main__":
    from purchase_intent import cli

    sys.exit(cli.run(main))
