"""purchase_intent.text: cached embeddings of a frozen encoder equal its live output, and the disk cache."""

import numpy as np
import pytest

from purchase_intent import text

TEXTS = ["cheap red dress", "gift ideas for kids", "", "cheap red dress", "compare lamp reviews",
         "order summer shoes size 40 now please"]


@pytest.fixture(scope="module")
def encoder():
    return text.load_text_encoder("tiny", texts=TEXTS, tiny_vocab_size=100, tiny_hidden_dim=16,
                                  tiny_num_layers=2, max_sequence_length=12)


@pytest.fixture(autouse=True)
def empty_memo():
    """Each test starts without the embeddings earlier calls kept in memory."""
    text._MEMO.clear()
    yield
    text._MEMO.clear()


def live_embeddings(tokenizer, backbone, texts, length):
    """What the fusion model computes: the backbone over the packed ids, masked mean over tokens."""
    import tensorflow as tf

    from purchase_intent.blocks import MaskedMeanPool

    ids, mask = text.make_packer(tokenizer, length)(tokenizer(tf.constant(texts)))
    ids, mask = tf.cast(ids, tf.int32), tf.cast(mask, tf.int32)
    out = backbone({"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask})
    return MaskedMeanPool()(out["sequence_output"], mask).numpy(), ids.numpy(), mask.numpy()


def test_cached_embeddings_equal_the_live_backbone(encoder):
    """Encoded once per distinct text (short batches cut to their longest text), equal to the model's path."""
    import tensorflow as tf

    from purchase_intent.blocks import CachedTextEncoder, token_fingerprints

    tokenizer, backbone = encoder
    cached = text.cached_text_embeddings(tokenizer, backbone, TEXTS, 12, spec="tiny", progress=False)
    live, ids, mask = live_embeddings(tokenizer, backbone, TEXTS, 12)
    assert cached.shape == (len(TEXTS), 16) and cached.dtype == np.float32
    np.testing.assert_allclose(cached, live, atol=1e-5)
    np.testing.assert_array_equal(cached[0], cached[3])  # a repeated text: one row
    # The same through the CachedTextEncoder layer the training model holds.
    keys, first = np.unique(token_fingerprints(ids), return_index=True)
    layer = CachedTextEncoder(keys, cached[first])
    seq = layer({"token_ids": tf.constant(ids), "padding_mask": tf.constant(mask)})["sequence_output"]
    np.testing.assert_allclose(seq.numpy()[:, 0], live, atol=1e-5)


def test_disk_cache_is_reused_and_keyed_by_texts_length_and_encoder(encoder, tmp_path, monkeypatch):
    tokenizer, backbone = encoder
    first = text.cached_text_embeddings(tokenizer, backbone, TEXTS, 12, spec="tiny", cache_dir=tmp_path,
                                        progress=False)
    files = sorted(tmp_path.glob("text_embeddings_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob(".tmp-*"))

    # A rerun (new process: empty memory) reads the file and does not encode.
    text._MEMO.clear()
    monkeypatch.setattr(text, "encode_texts", lambda *a, **k: pytest.fail("encoded again"))
    again = text.cached_text_embeddings(tokenizer, backbone, list(reversed(TEXTS)), 12, spec="tiny",
                                        cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first[::-1])
    monkeypatch.undo()

    # Other texts, another length or another encoder: other files.
    text.cached_text_embeddings(tokenizer, backbone, TEXTS[:2], 12, spec="tiny", cache_dir=tmp_path,
                                progress=False)
    text.cached_text_embeddings(tokenizer, backbone, TEXTS, 8, spec="tiny", cache_dir=tmp_path,
                                progress=False)
    _, other = text.load_text_encoder("tiny", texts=TEXTS, tiny_vocab_size=100, tiny_hidden_dim=16,
                                      tiny_num_layers=2, max_sequence_length=12)
    text.cached_text_embeddings(tokenizer, other, TEXTS, 12, spec="tiny", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("text_embeddings_*.npz"))) == 4


def test_unreadable_cache_file_is_reencoded(encoder, tmp_path, caplog):
    tokenizer, backbone = encoder
    want = text.cached_text_embeddings(tokenizer, backbone, TEXTS, 12, spec="tiny", cache_dir=tmp_path,
                                       progress=False)
    (path,) = tmp_path.glob("text_embeddings_*.npz")
    path.write_bytes(b"not a zip file")
    text._MEMO.clear()
    got = text.cached_text_embeddings(tokenizer, backbone, TEXTS, 12, spec="tiny", cache_dir=tmp_path,
                                      progress=False)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "unreadable text-embedding cache" in caplog.text
    with np.load(path) as z:  # rewritten
        assert len(z["texts"]) == len(set(TEXTS))


def test_no_texts_give_an_empty_array(encoder):
    tokenizer, backbone = encoder
    out = text.cached_text_embeddings(tokenizer, backbone, [], 12, spec="tiny")
    assert out.shape == (0, 16)


def test_encoding_without_a_progress_bar_logs_its_progress(encoder, monkeypatch, caplog):
    """A log file gets "n / total" lines (every PROGRESS_LOG_SECONDS) instead of a progress bar."""
    import logging

    tokenizer, backbone = encoder
    monkeypatch.setattr(text, "PROGRESS_LOG_SECONDS", 0.0)
    texts = [f"text number {i}" for i in range(9)]
    with caplog.at_level(logging.INFO, logger=text.logger.name):
        text.encode_texts(tokenizer, backbone, texts, 12, batch_size=2, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Encoding texts:")]
    assert [line.split(" (")[0] for line in lines] == [f"Encoding texts: {n} / 9" for n in (2, 4, 6, 8)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=text.logger.name):
        text.encode_texts(tokenizer, backbone, texts, 12, batch_size=2, progress=True)
    assert not [r for r in caplog.records if r.getMessage().startswith("Encoding texts:")]


def test_minilm_keeps_its_exact_gelu_through_a_keras_file(tmp_path):
    """keras-hub rebuilds a BertBackbone with approximate GELU; the MiniLM's own class keeps it exact."""
    import keras
    import keras_hub
    import tensorflow as tf

    from purchase_intent.bert import ExactGeluBertBackbone

    tokenizer, backbone = text.load_text_encoder("minilm")
    assert isinstance(backbone, ExactGeluBertBackbone)
    ids, mask = text.make_packer(tokenizer, 16)(tokenizer(tf.constant(TEXTS[:3])))
    x = {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": mask}
    expected = backbone(x)["sequence_output"].numpy()
    # What the backbone computed before: keras-hub's backbone with its activations switched in place.
    reference = keras_hub.models.BertBackbone.from_preset(str(text.minilm_dir()))
    approximate = reference(x)["sequence_output"].numpy()
    text.use_exact_gelu(reference)
    np.testing.assert_array_equal(reference(x)["sequence_output"].numpy(), expected)
    assert np.abs(approximate - expected).max() > 1e-3  # the approximation is not a rounding error

    backbone.save(tmp_path / "minilm.keras")
    loaded = keras.saving.load_model(tmp_path / "minilm.keras")
    assert type(loaded) is ExactGeluBertBackbone and loaded.name == backbone.name
    np.testing.assert_array_equal(loaded(x)["sequence_output"].numpy(), expected)
