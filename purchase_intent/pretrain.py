"""Self-supervised pretraining of the behaviour-sequence branch: next-item prediction.

The fusion model's sequence branch (item / event-type embeddings, per-event
text projections, LSTM / CNN / Transformer encoders) learns from the labelled
examples only. Event sequences are usually far more plentiful than labels (every
training history, plus histories with no label yet), and which items follow
which tells the branch which items go together. This module trains that branch,
without labels, to predict the next item of a sequence, and copies its weights
into the fusion model by layer name.

Objective. From a sequence of ``L`` events, a *cut point* ``t`` (``1 <= t < L``)
makes one training pair: input = the events before ``t`` (the most recent
``max_sequence_length`` of them, right-padded, the same ids as
:class:`~purchase_intent.preprocessing.Preprocessor` gives), target = the
id of the first sequence column (the item) at ``t``. Each sequence gives its
last event plus ``targets_per_sequence - 1`` random earlier cut points, drawn
afresh every epoch; targets that are padding or out-of-vocabulary (id 0/1) are
skipped. The input goes through exactly the layers of
:func:`purchase_intent.model.event_steps` and
:func:`purchase_intent.model.sequence_encodings` (so the layer names match the
fusion model), the concatenated encodings are projected to
``item_embedding_dim`` (``pretrain_query``, not copied), and the item is scored
by a dot product with the item-embedding table ``<first sequence>_embedding``
(tied input and output embeddings). The softmax runs over

* ``"full"``: the whole item vocabulary (exact; cheap up to some ten thousand
  items: a ``[batch, dim] x [dim, items]`` product);
* ``"sampled"``: the target against ``num_negatives`` items drawn log-uniformly
  by id (ids are sorted by training frequency, so that is roughly by
  popularity), with TF's expected-count correction;
* ``"in_batch"``: the target against the other targets of the batch (their
  items are the negatives), with the log-frequency (logQ) correction and
  repeated items masked.

``"auto"`` (default) is ``"full"`` up to 50,000 items, else ``"sampled"``.
Held-back sequences are always scored with the full softmax.

The sequences are the caller's choice: pass every event sequence available for
*training* (the training split's histories, histories that have no label), never
the validation or test examples, or their label windows, or the pretraining has
seen what the evaluation asks about.

Examples:

>>> from purchase_intent.config import get_config
>>> from purchase_intent.model import build_model
>>> from purchase_intent.preprocessing import Preprocessor
>>> from purchase_intent.pretrain import apply_pretrained, chain_sessions, pretrain_behaviour
>>> from purchase_intent.schema import FeatureSchema
>>> schema = FeatureSchema(label="label", sequences=["item_id", "event_type"])
>>> df = chain_sessions(2_000, seed=0)  # planted chains in 20 clusters of 25 items
>>> pre = Preprocessor.adapt(schema, df, max_sequence_length=12)
>>> cfg = get_config("tiny").model
>>> result = pretrain_behaviour(cfg, pre, df, epochs=3, targets_per_sequence=6, seed=0)
>>> result.recall_at_10 > 3 * result.popularity_recall_at_10
True
>>> apply_pretrained(build_model(cfg, pre), result.weights)
['item_id_embedding', 'event_type_embedding', 'behaviour_lstm', 'behaviour_cnn']
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent.config import ModelConfig
from purchase_intent.preprocessing import Preprocessor

logger = logging.getLogger(__name__)

PAD, OOV = 0, 1  # Preprocessor ids of padding and unseen values
FULL_SOFTMAX_MAX_ITEMS = 50_000  # "auto" objective: full softmax up to this many item ids
OBJECTIVES = ("auto", "full", "sampled", "in_batch")
QUERY_LAYER = "pretrain_query"
WIDTH_STEP = 8  # batch widths (events) are multiples of this (or max_sequence_length)


@dataclasses.dataclass
class PretrainResult:
    """What :func:`pretrain_behaviour` returns.

    Attributes:
        weights: layer name -> its weights (numpy arrays, ``layer.get_weights()``
            order) for the layers of the sequence branch: ``<sequence>_embedding``,
            ``<event text>_projection``, ``behaviour_lstm`` / ``_cnn`` /
            ``_transformer``. From the epoch with the lowest held-out loss (the
            last epoch without held-back sequences). For :func:`apply_pretrained`.
        history: per epoch: ``loss`` (the training objective), ``val_loss``
            (full-softmax cross-entropy on the held-back sequences),
            ``val_recall_at_10``, ``seconds``.
        initial_val_loss: held-out loss before training (``log(items)`` or so).
        recall_at_10: share of held-back targets whose item is among the 10
            best-scored of the whole item vocabulary (the kept epoch's weights);
            None without held-back sequences.
        popularity_recall_at_10: the same for the 10 items most frequent in the
            training sequences, a reference.
        best_epoch: 1-based epoch whose weights are kept.
        objective: the softmax used in training ("full", "sampled" or "in_batch").
        counts: sequences and pairs used (``train_sequences``,
            ``holdout_sequences``, ``train_pairs_per_epoch``, ``holdout_pairs``,
            ``items``).
        seconds: wall time of the whole call.
        model: the pretraining model (branch + ``pretrain_query``), for inspection.
    """

    weights: dict[str, list[np.ndarray]]
    history: dict[str, list[float]]
    initial_val_loss: float | None
    recall_at_10: float | None
    popularity_recall_at_10: float | None
    best_epoch: int
    objective: str
    counts: dict[str, int]
    seconds: float
    model: Any = dataclasses.field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """Everything but the weights and the model, JSON-ready."""
        return {"history": self.history, "initial_val_loss": self.initial_val_loss,
                "recall_at_10": self.recall_at_10,
                "popularity_recall_at_10": self.popularity_recall_at_10,
                "best_epoch": self.best_epoch, "objective": self.objective, "counts": self.counts,
                "seconds": self.seconds, "layers": sorted(self.weights)}


# -- sequences -> ids ---------------------------------------------------------
def sequence_ids(preprocessor: Preprocessor, sequences) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw sequences -> the Preprocessor's ids, all events kept (no truncation).

    Args:
        preprocessor: the adapted preprocessor (its lookups give the ids).
        sequences: a DataFrame or dict holding, for every sequence and
            per-event text column of the preprocessor's schema, one list of
            strings per sequence (oldest first; columns aligned event by event).

    Returns:
        ``(flat, starts)``: per column, the ids of all events concatenated
        (int32); and ``starts`` ``[n + 1]``: sequence ``i`` is
        ``flat[name][starts[i]:starts[i + 1]]``.

    Raises:
        ValueError: a column is missing, or the columns disagree on a sequence's length.
    """
    import tensorflow as tf

    names = preprocessor.feature_schema.sequence_like
    have = list(sequences.columns) if isinstance(sequences, pd.DataFrame) else list(sequences)
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"Pretraining sequences lack column(s) {missing} of the schema "
                         f"(sequence-like columns {names}); got {have}")
    lengths, flat = None, {}
    for name in names:
        seqs = list(sequences[name])
        lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        if lengths is None:
            lengths = lens
        elif len(lens) != len(lengths) or np.any(lens != lengths):
            bad = (int(np.flatnonzero(lens != lengths)[0]) if len(lens) == len(lengths) else None)
            raise ValueError(f"Sequence columns describe the same events, but {name!r} and "
                             f"{names[0]!r} differ in length"
                             + (f" (sequence {bad})" if bad is not None else
                                f" ({len(lens)} vs {len(lengths)} sequences)"))
        values = [str(v) for s in seqs for v in s]
        if values:
            ids = preprocessor.lookups[name](tf.constant(values, dtype=tf.string))
            flat[name] = np.asarray(ids, dtype=np.int32)
        else:
            flat[name] = np.zeros(0, np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return flat, starts


def cut_points(starts: np.ndarray, targets: np.ndarray, rows: np.ndarray, per_sequence: int,
               rng: np.random.Generator) -> np.ndarray:
    """Flat positions ``p`` of the pairs' targets (input: the events of the row before ``p``).

    For each of ``rows`` with at least two events: its last event, plus
    ``per_sequence - 1`` positions drawn uniformly from its 2nd to
    second-to-last events (duplicates dropped; ``per_sequence <= 0``: every
    event from the 2nd on). Positions whose target id is padding or OOV are dropped.
    """
    lo, hi = starts[rows], starts[rows + 1]
    keep = hi - lo >= 2
    lo, hi = lo[keep], hi[keep]
    if per_sequence <= 0:
        lens = hi - lo - 1
        before = np.concatenate([[0], np.cumsum(lens)[:-1]])
        pos = np.repeat(lo + 1 - before, lens) + np.arange(lens.sum())
    else:
        pos = [hi - 1]
        inner = hi - lo - 2  # events strictly between the first and the last
        if per_sequence > 1 and np.any(inner > 0):
            r = rng.random((len(lo), per_sequence - 1))
            draw = lo[:, None] + 1 + np.floor(r * np.maximum(inner, 0)[:, None]).astype(np.int64)
            pos.append(draw[np.broadcast_to(inner[:, None] > 0, draw.shape)])
        pos = np.unique(np.concatenate(pos))
    pos = np.asarray(pos, np.int64)
    return pos[targets[pos] > OOV]


def _windows(starts: np.ndarray, pos: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of the input window (events before ``pos``, at most ``max_length``)."""
    row = np.searchsorted(starts, pos, side="right") - 1
    length = np.minimum(pos - starts[row], max_length)
    return pos - length, length


def _batch_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
    """An order of the pairs whose consecutive ``batch_size`` blocks have similar window lengths.

    Shuffled (with ``rng``), sorted by length within chunks of 16 batches, cut
    into batches, and the batches shuffled; without ``rng``: sorted by length.
    A batch then only runs as many time steps as its longest window.
    """
    if rng is None:
        return np.argsort(lengths, kind="stable")
    order = rng.permutation(len(lengths))
    chunk = 16 * batch_size
    parts = [order[i:i + chunk] for i in range(0, len(order), chunk)]
    order = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in parts])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


def _dataset(flat: dict[str, np.ndarray], first: str, starts: np.ndarray, pos: np.ndarray,
             max_length: int, batch_size: int, rng: np.random.Generator | None):
    """tf.data of ``(inputs, target)`` batches; windows gathered in-graph, cut near the batch's longest."""
    import tensorflow as tf

    win_start, win_len = _windows(starts, pos, max_length)
    order = _batch_order(win_len, batch_size, rng)
    columns = {n: tf.constant(v) for n, v in flat.items()}
    targets = flat[first][pos]
    ds = tf.data.Dataset.from_tensor_slices((win_start[order], win_len[order].astype(np.int64),
                                             targets[order]))

    def gather(s, n, y):
        # Widths are rounded up to a multiple of WIDTH_STEP: few distinct shapes, so
        # per-shape kernel setup (oneDNN) is paid a few times, not once per width.
        width = tf.minimum((tf.reduce_max(n) + WIDTH_STEP - 1) // WIDTH_STEP * WIDTH_STEP, max_length)
        offsets = tf.range(tf.maximum(width, 1), dtype=tf.int64)[None, :]
        valid = offsets < n[:, None]
        idx = tf.where(valid, s[:, None] + offsets, tf.zeros_like(offsets))
        x = {name: tf.where(valid, tf.gather(col, idx), 0) for name, col in columns.items()}
        return x, y

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def holdout_groups(flat_first: np.ndarray, starts: np.ndarray, prefix: int = 3) -> np.ndarray:
    """A group key per sequence: its first ``prefix`` item ids.

    Datasets with rolling cut-offs (Online Retail) hold one customer's history
    several times, each extending the one before; keying by the opening events
    holds such copies back together, so held-out recall is not measured on the
    continuation of a sequence trained on.
    """
    n = len(starts) - 1
    keys = np.full((n, prefix), -1, np.int64)
    for j in range(prefix):
        has = starts[:-1] + j < starts[1:]
        keys[has, j] = flat_first[starts[:-1][has] + j]
    _, group = np.unique(keys, axis=0, return_inverse=True)
    return group.reshape(-1)


# -- model --------------------------------------------------------------------
def branch_layer_names(cfg: ModelConfig, preprocessor: Preprocessor) -> list[str]:
    """Names of the sequence-branch layers with trainable weights (what is pretrained)."""
    schema = preprocessor.feature_schema
    names = [f"{n}_embedding" for n in schema.sequences]
    names += [f"{n}_projection" for n in schema.event_text]
    names += [f"behaviour_{e}" for e in cfg.sequence_encoders()]
    return names


def build_pretraining_model(cfg: ModelConfig, preprocessor: Preprocessor,
                            event_text_tables: dict[str, np.ndarray] | None = None):
    """The sequence branch of the fusion model plus a projection to the item-embedding size.

    Inputs: one ``keras.Input`` per sequence-like column, named as the
    Preprocessor's outputs, ``[batch, events]`` int32 ids (right-padded, any
    number of events up to ``max_sequence_length``); output: the query vector
    ``[batch, item_embedding_dim]``.
    """
    import keras

    from purchase_intent.model import event_steps, sequence_encodings

    schema = preprocessor.feature_schema
    if not schema.sequences:
        raise ValueError("Behaviour pretraining needs a sequence column (its first one is the "
                         f"item predicted); the schema has sequences={schema.sequences}")
    if not cfg.sequence_encoders():
        raise ValueError(f"model.sequence_encoder={cfg.sequence_encoder!r} names no known encoder")
    # Any number of events (at most max_sequence_length): a batch of short windows runs fewer steps.
    # The weights do not depend on it; trailing padding does not change the encodings.
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in schema.sequence_like}
    x, mask = event_steps(cfg, preprocessor, inputs, event_text_tables)
    encodings = sequence_encodings(cfg, preprocessor, x, mask)
    h = encodings[0] if len(encodings) == 1 else keras.layers.Concatenate(
        name="pretrain_concat")(encodings)
    query = keras.layers.Dense(cfg.item_embedding_dim, name=QUERY_LAYER)(h)
    return keras.Model(inputs, query, name="behaviour_pretraining")


def _objective_fn(objective: str, table, vocabulary: int, num_negatives: int, log_freq):
    """``loss(query, target) -> per-example loss`` of the training objective."""
    import tensorflow as tf

    pad_bias = tf.constant(np.where(np.arange(vocabulary) <= OOV, -1e9, 0.0).astype(np.float32))

    def full(q, y):
        logits = tf.matmul(q, tf.convert_to_tensor(table), transpose_b=True) + pad_bias
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)

    if objective == "full":
        return full
    if objective == "sampled":
        real = vocabulary - 2  # ids 2 .. vocabulary-1; the sampler draws 0 .. real-1
        k = int(min(num_negatives, real))

        def sampled(q, y):
            true = tf.cast(y[:, None], tf.int64) - 2
            s, true_expected, s_expected = tf.random.log_uniform_candidate_sampler(
                true, num_true=1, num_sampled=k, unique=True, range_max=real)
            return tf.nn.sampled_softmax_loss(
                weights=tf.convert_to_tensor(table), biases=tf.zeros([vocabulary]),
                labels=true + 2, inputs=q, num_sampled=k, num_classes=vocabulary,
                sampled_values=(s + 2, true_expected, s_expected), remove_accidental_hits=True)

        return sampled
    log_q = tf.constant(log_freq.astype(np.float32))

    def in_batch(q, y):
        items = tf.gather(tf.convert_to_tensor(table), y)
        logits = tf.matmul(q, items, transpose_b=True) - tf.gather(log_q, y)[None, :]
        same = tf.equal(y[:, None], y[None, :])
        diagonal = tf.cast(tf.eye(tf.shape(y)[0]), tf.bool)
        logits = tf.where(tf.logical_and(same, tf.logical_not(diagonal)), -1e9, logits)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.range(tf.shape(y)[0]),
                                                              logits=logits)

    return in_batch


# -- pretraining ----------------------------------------------------------------
def pretrain_behaviour(model_cfg: ModelConfig, preprocessor: Preprocessor, sequences, *,
                       event_text_tables: dict[str, np.ndarray] | None = None, epochs: int = 3,
                       batch_size: int = 256, learning_rate: float = 1e-2, seed: int = 0,
                       holdout_fraction: float = 0.1, targets_per_sequence: int = 2,
                       objective: str = "auto", num_negatives: int = 1024,
                       groups=None, verbose: bool = False) -> PretrainResult:
    """Pretrains the behaviour-sequence branch by next-item prediction, without labels.

    Pass only sequences available for training: the training split's event
    sequences and any histories without a label. Never validation or test
    examples (nor what happens in their label windows): the branch would then
    have been trained on what the model is evaluated on.

    Args:
        model_cfg: the fusion model's configuration (embedding and encoder sizes,
            ``sequence_encoder``, ``item_dropout``, ``dropout``).
        preprocessor: the adapted preprocessor of the fusion model (same
            vocabularies, so the weights fit it).
        sequences: a DataFrame or dict with a list of strings per sequence for
            every sequence-like column of the schema (``sequences`` and
            ``event_text``); other columns are ignored.
        event_text_tables: per event-text column, its frozen embedding table
            (as for :func:`purchase_intent.model.build_model`).
        epochs: passes over the training sequences (new cut points each).
        batch_size: pairs per step.
        learning_rate: Adam learning rate.
        seed: seeds the holdout split, the cut points, the shuffling and (through
            ``keras.utils.set_random_seed``) the initial weights.
        holdout_fraction: share of sequence groups held back to measure the
            loss and recall@10 (0: none; the last epoch's weights are kept).
        targets_per_sequence: pairs per sequence and epoch: the last event plus
            this many minus one random earlier cut points (<= 0: every event
            from the second on).
        objective: "auto", "full", "sampled" or "in_batch" (module docstring).
        num_negatives: negatives per step of the "sampled" objective.
        groups: optional group key per sequence (e.g. a customer id): a group is
            held back whole. Default: :func:`holdout_groups` (first three items).
        verbose: log each epoch at INFO level (else DEBUG).

    Returns:
        A :class:`PretrainResult`.

    Raises:
        ValueError: bad arguments, no sequence column, or no sequence with two
            known events to learn from.
    """
    import keras
    import tensorflow as tf

    t_start = time.perf_counter()
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not 0 <= holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if tf.distribute.has_strategy():
        raise ValueError("Call pretrain_behaviour outside a tf.distribute strategy scope "
                         "(it trains on one device); apply_pretrained may run inside it")
    schema = preprocessor.feature_schema
    if not schema.sequences:
        raise ValueError("Behaviour pretraining needs a sequence column; the schema has none")
    first = schema.sequences[0]
    max_length = preprocessor.max_sequence_length
    vocabulary = preprocessor.vocabulary_size(first)
    if objective == "auto":
        objective = "full" if vocabulary <= FULL_SOFTMAX_MAX_ITEMS else "sampled"

    flat, starts = sequence_ids(preprocessor, sequences)
    n_seq = len(starts) - 1
    rng = np.random.default_rng(seed)
    group = (holdout_groups(flat[first], starts) if groups is None
             else pd.factorize(np.asarray(groups, dtype=object))[0])
    if len(group) != n_seq:
        raise ValueError(f"groups has {len(group)} keys for {n_seq} sequences")
    n_groups = int(group.max()) + 1 if n_seq else 0
    held_groups = rng.permutation(n_groups)[:int(round(holdout_fraction * n_groups))]
    held = np.isin(group, held_groups)
    train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
    targets = flat[first]
    held_pos = cut_points(starts, targets, held_rows, targets_per_sequence, rng)
    first_pos = cut_points(starts, targets, train_rows, targets_per_sequence, rng)
    if len(first_pos) == 0:
        raise ValueError(f"No training pair: no training sequence has a second event with a known "
                         f"{first!r} ({n_seq} sequences, {len(train_rows)} for training)")
    # Popularity: item frequency over the training sequences' events.
    in_train = np.repeat(~held, np.diff(starts))  # per event: its sequence is a training one
    freq = np.bincount(targets[in_train], minlength=vocabulary).astype(np.float64)
    freq[:OOV + 1] = 0
    popular = np.argsort(-freq, kind="stable")[:10]
    log_freq = np.log(np.maximum(freq, 1.0) / max(freq.sum(), 1.0))

    keras.utils.set_random_seed(seed)
    model = build_pretraining_model(model_cfg, preprocessor, event_text_tables)
    table = model.get_layer(f"{first}_embedding").embeddings
    loss_fn = _objective_fn(objective, table, vocabulary, num_negatives, log_freq)
    full_fn = _objective_fn("full", table, vocabulary, num_negatives, log_freq)
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = model.trainable_variables
    optimizer.build(variables)
    signature = ({n: tf.TensorSpec([None, None], tf.int32) for n in schema.sequence_like},
                 tf.TensorSpec([None], tf.int32))

    @tf.function(input_signature=signature)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(model(x, training=True), y))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(input_signature=signature)
    def eval_step(x, y):
        q = model(x, training=False)
        loss = full_fn(q, y)
        logits = tf.matmul(q, tf.convert_to_tensor(table), transpose_b=True)
        logits = logits + tf.where(tf.range(vocabulary) <= OOV, -1e9, 0.0)[None, :]
        top = tf.math.top_k(logits, k=min(10, vocabulary)).indices
        hit = tf.reduce_any(tf.equal(top, y[:, None]), axis=1)
        return tf.reduce_sum(loss), tf.reduce_sum(tf.cast(hit, tf.float32))

    held_ds = (_dataset(flat, first, starts, held_pos, max_length, max(batch_size, 512), None)
               if len(held_pos) else None)

    def evaluate():
        if held_ds is None:
            return None, None
        loss = hits = 0.0
        for x, y in held_ds:
            s, h = eval_step(x, y)
            loss, hits = loss + float(s), hits + float(h)
        return loss / len(held_pos), hits / len(held_pos)

    names = branch_layer_names(model_cfg, preprocessor)

    def snapshot():
        return {n: [np.array(w) for w in model.get_layer(n).get_weights()] for n in names}

    initial_val_loss, _ = evaluate()
    history = {"loss": [], "val_loss": [], "val_recall_at_10": [], "seconds": []}
    best, best_epoch, best_loss = None, 0, np.inf
    pairs_per_epoch = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        pos = first_pos if epoch == 0 else cut_points(starts, targets, train_rows,
                                                      targets_per_sequence, rng)
        pairs_per_epoch.append(len(pos))
        total, steps = 0.0, 0
        for x, y in _dataset(flat, first, starts, pos, max_length, batch_size, rng):
            total += float(train_step(x, y))
            steps += 1
        val_loss, val_recall = evaluate()
        history["loss"].append(total / max(steps, 1))
        history["val_loss"].append(val_loss)
        history["val_recall_at_10"].append(val_recall)
        history["seconds"].append(time.perf_counter() - t0)
        logger.log(logging.INFO if verbose else logging.DEBUG,
                   "Pretraining epoch %d/%d: loss %.4f, held-out loss %s, recall@10 %s (%.1f s)",
                   epoch + 1, epochs, history["loss"][-1], val_loss, val_recall, history["seconds"][-1])
        if best is None or val_loss is None or val_loss < best_loss:
            best, best_epoch = snapshot(), epoch + 1
            best_loss = val_loss if val_loss is not None else np.inf
    if best_epoch != epochs:  # restore the kept epoch so the model, weights and recall agree
        for n, ws in best.items():
            model.get_layer(n).set_weights(ws)
    best_recall = history["val_recall_at_10"][best_epoch - 1]
    pop_recall = (float(np.isin(targets[held_pos], popular).mean()) if len(held_pos) else None)
    result = PretrainResult(
        weights=best, history=history, initial_val_loss=initial_val_loss,
        recall_at_10=best_recall, popularity_recall_at_10=pop_recall, best_epoch=best_epoch,
        objective=objective,
        counts={"train_sequences": int(len(train_rows)), "holdout_sequences": int(len(held_rows)),
                "train_pairs_per_epoch": int(np.mean(pairs_per_epoch)),
                "holdout_pairs": int(len(held_pos)), "items": int(vocabulary)},
        seconds=time.perf_counter() - t_start, model=model)
    logger.log(logging.INFO if verbose else logging.DEBUG, "Pretraining done: %s", result.summary())
    return result


def apply_pretrained(model, weights: dict[str, list[np.ndarray]]) -> list[str]:
    """Sets the layers of ``model`` named in ``weights`` to the given weights.

    All layers are checked before any is set: a missing layer or a weight of a
    different shape (another preprocessor's vocabulary, other sizes or
    encoders) raises and leaves the model unchanged.

    Args:
        model: the fusion model (or any Keras model with those layer names).
        weights: layer name -> arrays, e.g. :attr:`PretrainResult.weights`.

    Returns:
        The names of the layers set, in the order of ``weights``.

    Raises:
        ValueError: naming every missing layer and every shape mismatch.
    """
    layers = {layer.name: layer for layer in model.layers}
    problems = []
    for name, arrays in weights.items():
        layer = layers.get(name)
        if layer is None:
            problems.append(f"{name}: no such layer in model {model.name!r}")
            continue
        current = layer.get_weights()
        if len(current) != len(arrays):
            problems.append(f"{name}: {len(arrays)} pretrained weight arrays, the layer has {len(current)}")
            continue
        for i, (have, new) in enumerate(zip(current, arrays)):
            if tuple(have.shape) != tuple(np.shape(new)):
                problems.append(f"{name}: weight {i} ({layer.weights[i].path}) is {tuple(have.shape)} "
                                f"in the model but {tuple(np.shape(new))} pretrained")
    if problems:
        raise ValueError("Pretrained weights do not fit the model (same preprocessor and "
                         "model config needed): " + "; ".join(problems))
    for name, arrays in weights.items():
        layers[name].set_weights(arrays)
    return list(weights)


# -- synthetic sessions with planted sequential structure -------------------------
def chain_sessions(n: int, *, seed: int = 0, n_clusters: int = 20, items_per_cluster: int = 25,
                   min_events: int = 2, max_events: int = 12, chain: float = 0.5, stay: float = 0.9,
                   label_noise: float = 0.1, universe_seed: int = 0) -> pd.DataFrame:
    """Sessions whose items follow planted chains within clusters; the label is the cluster's.

    Items fall into ``n_clusters`` clusters of ``items_per_cluster`` items,
    each cluster ordered as a ring (a chain). A session picks a cluster and a
    start item, then at each event moves to the next item of the ring (prob.
    ``chain``) or to a random item of the cluster; the event shows that item
    (prob. ``stay``) or a random item of the whole catalogue (noise). So the
    next item is predictable from the previous ones (its cluster always, the
    item itself often), and items of one cluster occur together. Event types
    are ``view`` or ``cart`` at random (no signal).

    The label is 1 for half of the clusters (a fixed random half), flipped with
    probability ``label_noise``: knowing which items go together tells the
    label, even for items seldom or never seen with a label.

    The catalogue (item names, clusters, rings, positive clusters) depends only
    on ``universe_seed``, so frames drawn with different ``seed`` share it.
    """
    universe = np.random.default_rng(universe_seed)
    n_items = n_clusters * items_per_cluster
    rings = universe.permutation(n_items).reshape(n_clusters, items_per_cluster)
    positive = universe.permutation(n_clusters) < n_clusters // 2
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n)
    lengths = rng.integers(min_events, max_events + 1, n)
    pos = np.empty((n, max_events), np.int64)
    pos[:, 0] = rng.integers(0, items_per_cluster, n)
    for t in range(1, max_events):  # vectorised over sessions
        follow = rng.random(n) < chain
        pos[:, t] = np.where(follow, (pos[:, t - 1] + 1) % items_per_cluster,
                             rng.integers(0, items_per_cluster, n))
    items = rings[cluster[:, None], pos]
    noise = rng.random((n, max_events)) >= stay
    items = np.where(noise, rng.integers(0, n_items, (n, max_events)), items)
    events = np.where(rng.random((n, max_events)) < 0.2, "cart", "view")
    label = positive[cluster].astype(int)
    label = np.where(rng.random(n) < label_noise, 1 - label, label)
    return pd.DataFrame({
        "item_id": [[f"i{v}" for v in items[i, :lengths[i]]] for i in range(n)],
        "event_type": [list(events[i, :lengths[i]]) for i in range(n)],
        "label": label,
    })
