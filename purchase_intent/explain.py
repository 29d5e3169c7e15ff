"""Explanations: per-modality occlusion and permutation importance.

Both work on *raw* examples (frames validated by ``FeatureSchema.validate``)
through any scoring function ``predict_fn(frame) -> probabilities``: the
in-memory model (:func:`keras_predict_fn`), an export loaded in process
(``purchase_intent.predict.Predictor(...).predict``) or a gRPC client.

* :func:`occlusion` replaces the raw inputs of one modality by "empty" values
  (text ``""``, empty event sequences, numeric NaN, which the preprocessor
  imputes with the training mean and flags, categorical values never seen in
  training) and measures the change in each example's probability.
* :func:`permutation_importance` shuffles one feature across the rows of a
  split and measures the drop in ROC-AUC.

Examples:

>>> from purchase_intent import explain  # doctest: +SKIP
>>> fn = explain.keras_predict_fn(model, preprocessor)  # doctest: +SKIP
>>> per_example, summary = explain.occlusion(fn, test_df, schema)  # doctest: +SKIP
>>> explain.permutation_importance(fn, test_df, schema, n_repeats=3)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
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


def occlusion(predict_fn: PredictFn, df: pd.DataFrame, schema: FeatureSchema,
              modalities: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-example contribution of each modality by occlusion.

    The contribution of a modality to an example is ``p(all inputs) -
    p(that modality emptied)``: positive when the modality pushes the
    example towards buying.

    Args:
        predict_fn: validated frame -> probabilities.
        df: frame validated by ``schema.validate`` (the label column, if any, is ignored).
        schema: the feature schema.
        modalities: the modalities to occlude; default every one present, plus "all".

    Returns:
        ``(per_example, summary)``. ``per_example`` has ``probability`` and,
        per modality, ``p_without_<m>`` and ``contribution_<m>``, one row per
        example (index of ``df``). ``summary`` has one row per modality:
        ``mean_contribution``, ``mean_abs_contribution``, ``share_pushed_up``.
    """
    present = list(modality_columns(schema))
    modalities = modalities or present + ["all"]
    base = np.asarray(predict_fn(df), np.float64).reshape(-1)
    per_example = pd.DataFrame({"probability": base}, index=df.index)
    rows = []
    for m in modalities:
        if m != "all" and m not in present:
            logger.info("Occlusion: the schema has no %s inputs; skipped", m)
            continue
        p = np.asarray(predict_fn(occlude(df, schema, m)), np.float64).reshape(-1)
        per_example[f"p_without_{m}"] = p
        per_example[f"contribution_{m}"] = base - p
        rows.append({"modality": m, "mean_contribution": float(np.mean(base - p)),
                     "mean_abs_contribution": float(np.mean(np.abs(base - p))),
                     "share_pushed_up": float(np.mean(base > p))})
    summary = pd.DataFrame(rows).set_index("modality")
    return per_example, summary


def permutation_importance(predict_fn: PredictFn, df: pd.DataFrame, schema: FeatureSchema,
                           features: list[str] | None = None, n_repeats: int = 3,
                           seed: int = 0) -> pd.DataFrame:
    """Drop in ROC-AUC when one feature is shuffled across the rows of a split.

    Args:
        predict_fn: validated frame -> probabilities.
        df: frame validated by ``schema.validate``, with the label column.
        schema: the feature schema.
        features: feature names; default the numeric and categorical ones. The
            name "sequence" shuffles all sequence columns together (whole
            histories move between rows, keeping events aligned).
        n_repeats: int. Shuffles per feature (the mean and std are reported).
        seed: int. Random seed.

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
    features = features or list(schema.numeric) + list(schema.categorical)
    known = set(schema.feature_names) | ({"sequence"} if schema.sequence_like else set())
    unknown = [f for f in features if f not in known]
    if unknown:
        raise ValueError(f"Unknown features {unknown}; known: {sorted(known)}")
    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, predict_fn(df))
    rows = []
    for feature in features:
        columns = list(schema.sequence_like) if feature == "sequence" else [feature]
        drops = []
        for _ in range(n_repeats):
            perm = rng.permutation(len(df))
            shuffled = df.copy()
            for col in columns:
                shuffled[col] = pd.Series(df[col].to_numpy()[perm], index=df.index, dtype=df[col].dtype)
            drops.append(base - roc_auc_score(y, predict_fn(shuffled)))
        rows.append({"feature": feature, "importance": float(np.mean(drops)),
                     "std": float(np.std(drops)), "baseline_roc_auc": float(base)})
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
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the explanation command; writes its tables and prints the summaries."""
    from purchase_intent import cli
    from purchase_intent.data.readers import check_table_file, read_table

    args = parse_args(argv)
    cli.setup_logging()
    check_table_file(args.input)  # before the model (and TensorFlow) loads
    from purchase_intent.predict import Predictor

    predictor = Predictor(args.model)
    schema = predictor.schema
    raw = read_table(args.input, schema)
    if len(raw) > args.max_rows:
        raw = raw.sample(args.max_rows, random_state=0).sort_index()
    labelled = schema.label in raw.columns
    df = schema.validate(raw, require_label=labelled, where=str(args.input))
    out_dir = Path(args.output_dir or Path(args.input).with_name(Path(args.input).name + ".explain"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def predict_fn(frame: pd.DataFrame) -> np.ndarray:
        return predictor.predict(frame, validate=False)

    per_example, summary = occlusion(predict_fn, df, schema)
    per_example.to_csv(out_dir / "occlusion.csv", index_label="row")
    summary.to_csv(out_dir / "occlusion_summary.csv")
    print(f"Contribution of each modality (probability with all inputs - without it):\n{summary}\n")
    if labelled and df[schema.label].nunique() == 2:
        features = list(schema.numeric) + list(schema.categorical) + (["sequence"] if schema.sequence_like else [])
        table = permutation_importance(predict_fn, df, schema, features, n_repeats=args.repeats)
        table.to_csv(out_dir / "importance.csv")
        print(f"Drop in ROC-AUC when a feature is shuffled:\n{table}\n")
    else:
        logger.info("No label column %r with both classes in %s: permutation importance skipped",
                    schema.label, args.input)
    print(f"Wrote {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    from purchase_intent import cli

    sys.exit(cli.run(main))
