"""Scoring many perturbed copies of one frame: :class:`PerturbationScorer` (each distinct row once,
in large batches) and the straightforward path it is tested against (:func:`_one_by_one`, one call per frame).
"""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pandas as pd

from purchase_intent.explain.inlined_text import _INLINED, TEXT_CHECK_ROWS, TEXT_TOLERANCE, InlinedText
from purchase_intent.explain.perturb import (SEQUENCE_FIELD, Change, Perturbation, PredictFn, _fields,
                                             apply_perturbation)
from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)


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
