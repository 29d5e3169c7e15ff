"""SavedModel export for TF Serving: raw features in, purchase probability out.

Layout: ``<base_dir>/<model_name>/<version>/`` with ``saved_model.pb``,
``variables/`` and ``assets.extra/`` (schema, threshold, metrics, config, and
``contract.json``: the raw inputs, the events kept and the padding rule, see
:mod:`purchase_intent.contract`).
A version is written to a hidden temporary folder beside it and renamed into
place, so a polling server never sees a half-written version; the version
folder is made mode 0755 (readable by a model server running as another user).

Loading the export needs ``import tensorflow_text`` when the schema has
scalar text (WordPiece runs in the graph).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from purchase_intent import contract
from purchase_intent.contract import OUTPUT_KEY, SIGNATURE, existing_versions  # noqa: F401 (re-exported)
from purchase_intent.preprocessing import Preprocessor

logger = logging.getLogger(__name__)

VERSION_DIR_MODE = 0o755  # TF Serving often runs as another (non-root) user than the trainer


def serving_fn(model: keras.Model, preprocessor: Preprocessor):
    """The function behind ``serving_default``: raw dict -> {"purchase_probability": [batch]}."""

    def serve(raw):
        probs = model(preprocessor(raw), training=False)
        return {OUTPUT_KEY: tf.reshape(probs, [-1])}

    return serve


@contextlib.contextmanager
def without_default_save_signatures():
    """Hides Keras models' ``_default_save_signature`` while a SavedModel is written.

    TensorFlow's writer (and Keras's export archive, looking for lookup tables)
    walks the object graph and traces that default signature, a ``tf.function``
    of the model's own inputs, for every Keras model it meets: the fusion model,
    each ensemble member, the text backbone. The export has one signature of its
    own (``serving_default``, raw features), so those traces are discarded work:
    without them Keras's ``write_out`` takes 0.78-0.91 of the time (medians, 2
    cores: the tiny preset's model 3.3 s instead of 4.2 s, the default one's
    2.7 s instead of 2.9 s; ``benchmarks/export_speed.py``), same answers. Not
    thread-safe against a Keras model saved with ``tf.saved_model.save`` in
    another thread.
    """
    had = "_default_save_signature" in vars(keras.Model)
    saved = vars(keras.Model).get("_default_save_signature")
    keras.Model._default_save_signature = None
    try:
        yield
    finally:
        if had:
            keras.Model._default_save_signature = saved
        else:
            del keras.Model._default_save_signature


def write_archive(archive, path: str | Path) -> None:
    """``archive.write_out(path)``, with the serving function traced once instead of twice.

    Keras's ``write_out`` lists the variables and lookup tables the endpoints use
    by tracing them outside TensorFlow's save context; ``tf.saved_model.save`` then
    traces them again inside it (the save context is part of a ``tf.function``'s
    cache key). Listing them inside a save context with the same options lets the
    writer reuse that trace: with :func:`without_default_save_signatures` an
    export takes 0.51-0.58 of ``write_out``'s time (the tiny preset's model 2.2 s
    against 4.2 s, the default one's 1.7 s against 2.9 s), the same answers
    (``benchmarks/export_speed.py``; every export is still checked
    through ``tf.saved_model.load`` and TF Serving's Session path by the runs and
    tests). Uses Keras's and TensorFlow's private hooks; without them (another
    version) it falls back to ``write_out``.
    """
    try:
        from tensorflow.python.saved_model import save_context

        track, concrete, trackable = (archive._filter_and_track_resources, archive._get_concrete_fn,
                                      archive._tf_trackable)
        names = list(archive._endpoint_names)
    except (ImportError, AttributeError):  # pragma: no cover  (another Keras or TensorFlow)
        archive.write_out(str(path), verbose=False)
        return
    options = tf.saved_model.SaveOptions()
    with save_context.save_context(options):
        track()
    tf.saved_model.save(trackable, str(path), options=options, signatures={n: concrete(n) for n in names})


def export_model(model: keras.Model, preprocessor: Preprocessor, base_dir: str | Path,
                 model_name: str = "purchase_intent", version: int = 0,
                 extra_assets: dict[str, Any] | None = None, warmup_examples=None,
                 warmup_records: int = 32) -> Path:
    """Writes a TF Serving version folder atomically.

    Args:
        model: the trained fusion model.
        preprocessor: the ``Preprocessor`` used in training.
        base_dir: TF Serving ``model_base_path`` parent; the model goes to ``base_dir/model_name``.
        model_name: str. Model name as served.
        version: int. Version number; 0 picks the next free one.
        extra_assets: files for ``assets.extra/``: dicts are written as JSON, bytes and str as is.
        warmup_examples: a DataFrame of raw examples (schema columns); if given,
            ``warmup_records`` PredictionLog records built from it (batch sizes 1
            and 8) are written to ``assets.extra/tf_serving_warmup_requests``,
            which TF Serving (and the local server) replay before serving.
        warmup_records: int. Number of warm-up records (1..1000).

    Returns:
        The path of the new version folder.

    Raises:
        FileExistsError: the version already exists.
    """
    model_dir = Path(base_dir) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version <= 0:
        version = (existing_versions(model_dir) or [0])[-1] + 1
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists: TF Serving versions are immutable, pick another")

    if not preprocessor.built:  # no weights of its own: lookup tables and constants only
        preprocessor.build(None)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)
    specs = preprocessor.feature_schema.serving_specs()
    archive.add_endpoint(name=SIGNATURE, fn=serving_fn(model, preprocessor), input_signature=[specs])

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        with without_default_save_signatures():
            write_archive(archive, tmp)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        max_events = preprocessor.wide_length
        (extra / contract.CONTRACT_FILE).write_text(json.dumps(
            contract.contract_dict(preprocessor.feature_schema, max_events), indent=2))
        for name, content in (extra_assets or {}).items():
            path = extra / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            elif isinstance(content, str):
                path.write_text(content)
            else:
                path.write_text(json.dumps(content, indent=2, default=float))
        if warmup_examples is not None:
            from purchase_intent.serving.warmup import write_warmup_requests

            write_warmup_requests(tmp, warmup_examples, model_name, n=warmup_records,
                                  schema=preprocessor.feature_schema, sequence_length=max_events)
        os.chmod(tmp, VERSION_DIR_MODE)  # mkdtemp made it 0700: unreadable for a model server user
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Exported %s version %d to %s", model_name, version, final)
    return final


def load_serving_fn(version_dir: str | Path):
    """Loads an exported version; returns its ``serving_default`` concrete function."""
    try:
        import tensorflow_text  # noqa: F401  (registers WordPiece ops used by text models)
    except ImportError:  # pragma: no cover
        logger.warning("tensorflow_text is not installed: models with text inputs will not load")
    loaded = tf.saved_model.load(str(version_dir))
    return loaded.signatures[SIGNATURE]


def graph_op_types(version_dir: str | Path) -> set[str]:
    """All op types in the SavedModel graph and its function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for mg in sm.meta_graphs:
        ops |= {n.op for n in mg.graph_def.node}
        for f in mg.graph_def.library.function:
            ops |= {n.op for n in f.node_def}
    return ops
