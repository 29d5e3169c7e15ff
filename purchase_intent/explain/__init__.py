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

The package, by job:

* :mod:`~purchase_intent.explain.perturb`: a modality emptied, perturbations, shuffles, :func:`keras_predict_fn`;
* :mod:`~purchase_intent.explain.inlined_text`: the serving function inlined, fed pooled text embeddings;
* :mod:`~purchase_intent.explain.scorer`: :class:`PerturbationScorer` and the one-call-per-frame path;
* :mod:`~purchase_intent.explain.importance`: :func:`occlusion`, :func:`permutation_importance`, their chart;
* :mod:`~purchase_intent.explain.ablation`: modality ablation (one model per modality subset);
* :mod:`~purchase_intent.explain.command`: the command line, :func:`explain_export`, :func:`explain_run`.

Examples:

>>> from purchase_intent import explain  # doctest: +SKIP
>>> fn = explain.keras_predict_fn(model, preprocessor)  # doctest: +SKIP
>>> per_example, summary = explain.occlusion(fn, test_df, schema)  # doctest: +SKIP
>>> explain.permutation_importance(fn, test_df, schema, n_repeats=3)  # doctest: +SKIP
>>> explain.permutation_importance(Predictor(export), test_df, schema)  # doctest: +SKIP
"""

from purchase_intent.explain.ablation import modality_ablation, modality_subsets
from purchase_intent.explain.command import TIMINGS_FILE, explain_export, explain_run, main, parse_args, sample_rows
from purchase_intent.explain.importance import (default_features, describe_shuffles, occlusion, permutation_importance,
                                                plot_importance)
from purchase_intent.explain.inlined_text import (INLINE_SCOPE, TEXT_CHECK_ROWS, TEXT_TOLERANCE, InlinedText,
                                                  TextCutError)
from purchase_intent.explain.perturb import (MODALITIES, SEQUENCE_FIELD, UNSEEN_CATEGORY, Change, Perturbation,
                                             PredictFn, _permutation_plan, apply_perturbation, keras_predict_fn,
                                             modality_columns, occlude, shuffle_event_text)
from purchase_intent.explain.scorer import PerturbationScorer

__all__ = ["Change", "INLINE_SCOPE", "InlinedText", "MODALITIES", "Perturbation", "PerturbationScorer", "PredictFn",
           "SEQUENCE_FIELD", "TEXT_CHECK_ROWS", "TEXT_TOLERANCE", "TIMINGS_FILE", "TextCutError", "UNSEEN_CATEGORY",
           "_permutation_plan", "apply_perturbation", "default_features", "describe_shuffles", "explain_export",
           "explain_run", "keras_predict_fn", "main", "modality_ablation", "modality_columns", "modality_subsets",
           "occlude", "occlusion", "parse_args", "permutation_importance", "plot_importance", "sample_rows",
           "shuffle_event_text"]
