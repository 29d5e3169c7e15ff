"""The models the fusion model is measured against, all on :func:`tabular_features`.

* Baselines of every ``train`` run (:data:`BASELINES`, fixed settings):
  logistic regression and scikit-learn's ``HistGradientBoostingClassifier`` on the
  numeric features, the categorical features and simple aggregates of the other
  modalities (sequence length, distinct values, text length).
  :func:`baseline_predictions` fits and predicts each on its own, so that one
  failing baseline is skipped with a warning instead of stopping a run.
* Peers of ``compare`` (:data:`PEERS`, :data:`TFIDF_PEER`, :data:`SEQUENCE_PEER`),
  each tuned with a small grid (:data:`GRIDS`) on the validation split's ROC-AUC
  (:func:`fit_peers`): the same two models, LightGBM and XGBoost (the
  ``[compare]`` extra), logistic regression on TF-IDF word and bigram counts of
  the text beside the tabular features, and logistic regression on a bag of the
  events (:func:`sequence_tokens`) beside the tabular features.

One implementation per model: :func:`logistic_regression` and
:func:`hist_gradient_boosting` build both the baseline and the peer.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

BASELINES = ("logistic_regression", "hist_gradient_boosting")
# HistGradientBoosting takes at most 255 levels per categorical feature (missing values included).
HGB_MAX_LEVELS = 254
PEERS = ("logistic_regression", "hist_gradient_boosting", "lightgbm", "xgboost")
TFIDF_PEER = "tfidf_logistic_regression"
SEQUENCE_PEER = "sequence_logistic_regression"  # the bag-of-items logistic regression
# Small grids (3-10 fits per peer family), tuned on validation ROC-AUC.
GRIDS: dict[str, dict[str, list]] = {
    "logistic_regression": {"C": [0.01, 0.1, 1.0, 10.0], "class_weight": [None, "balanced"]},
    "hist_gradient_boosting": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31, 63]},
    "lightgbm": {"learning_rate": [0.03, 0.1], "num_leaves": [15, 31, 63]},
    "xgboost": {"learning_rate": [0.03, 0.1], "max_depth": [3, 5, 7]},
    TFIDF_PEER: {"C": [0.1, 1.0, 10.0]},
    SEQUENCE_PEER: {"C": [0.1, 0.3, 1.0, 3.0, 10.0], "class_weight": [None, "balanced"]},
}
# One point of each grid (``train.peer_grid=one``, the tiny preset): the middle value of every parameter
# (the upper one of an even list: C=1, learning rate 0.1, 31 leaves, depth 5).
ONE_POINT: dict[str, dict[str, list]] = {
    name: {k: [values[len(values) // 2]] for k, values in grid.items()} for name, grid in GRIDS.items()}


# -- features ------------------------------------------------------------
def tabular_features(df: pd.DataFrame, schema: FeatureSchema) -> tuple[pd.DataFrame, list[str]]:
    """Numeric/aggregate features for the baselines.

    Numeric columns as they are (NaN kept), categorical columns as strings,
    and for the other modalities simple aggregates: events per sequence,
    distinct values per sequence column, characters and words per text.

    Returns:
        ``(frame, categorical_column_names)``.
    """
    out = {}
    for name in schema.numeric:
        out[name] = df[name].to_numpy(np.float64)
    if schema.sequence_like:
        first = schema.sequence_like[0]
        out["n_events"] = df[first].map(len).to_numpy(np.float64)
    for name in schema.sequences:
        out[f"{name}_distinct"] = df[name].map(lambda s: len(set(s))).to_numpy(np.float64)
    for name in schema.text:
        out[f"{name}_chars"] = df[name].str.len().to_numpy(np.float64)
        out[f"{name}_words"] = df[name].str.split().map(len).to_numpy(np.float64)
    for name in schema.categorical:
        out[name] = df[name].astype(str).to_numpy(dtype=object)
    return pd.DataFrame(out, index=df.index), list(schema.categorical)


def category_levels(train: pd.DataFrame, columns: list[str],
                    max_levels: int | None = None) -> dict[str, list[str]]:
    """The levels of each categorical column: its training values, as strings.

    Args:
        train: the training frame.
        columns: categorical column names.
        max_levels: keep only this many of the most frequent training values
            (ties broken by value); ``None`` keeps them all.

    Returns:
        column -> sorted levels, for :func:`to_categories`.
    """
    levels = {}
    for c in columns:
        counts = train[c].astype(str).value_counts()
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        levels[c] = sorted(v for v, _ in ranked[:max_levels])
    return levels


def to_categories(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    """A copy of ``frame`` whose ``levels`` columns are pandas categoricals of those levels.

    A value that is not a level (unseen in training, or beyond ``max_levels``
    of :func:`category_levels`) becomes missing (NaN), which the tree models
    treat as its own branch.
    """
    out = frame.copy()
    for c, cats in levels.items():
        out[c] = pd.Categorical(frame[c].astype(str), categories=cats)
    return out


def linear_tabular_parts(nums: list[str], cats: list[str]) -> list[tuple]:
    """``ColumnTransformer`` parts of the linear baselines and peers over :func:`tabular_features`.

    Numeric columns: mean-imputed with a missing indicator, signed log1p,
    standardised; categorical columns: one-hot (levels seen fewer than 5 times
    pooled, unseen ignored).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    from purchase_intent.features import transform

    signed_log = FunctionTransformer(transform, kw_args={"name": "log1p"}, feature_names_out="one-to-one")
    parts = []
    if nums:
        parts.append(("num", make_pipeline(SimpleImputer(add_indicator=True), signed_log,
                                           StandardScaler()), nums))
    if cats:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=5), cats))
    return parts


def text_column(df: pd.DataFrame, schema: FeatureSchema) -> list[str]:
    """Each row's scalar and per-event texts joined by spaces (the input of :data:`TFIDF_PEER`)."""
    cols = [df[n].astype(str) for n in schema.text]
    cols += [df[n].map(" ".join) for n in schema.event_text]
    if not cols:
        return [""] * len(df)
    return [" ".join(parts) for parts in zip(*cols)]


def sequence_tokens(df: pd.DataFrame, schema: FeatureSchema) -> list[list[str]]:
    """The bag-of-events tokens of each row (the input of :data:`SEQUENCE_PEER`).

    Per event, one token per column of ``schema.sequences``, ``"<column>=<value>"``,
    and one cross of the first sequence column with each other one,
    ``"<first>=<value>|<other>=<value>"``. A token repeats as often as its event does.

    Args:
        df: frame with the ``schema.sequences`` columns (one list of values per row).
        schema: the features; per-event text is not used.

    Returns:
        One token list per row of ``df``, in event order (empty without events).

    Example:
        >>> s = FeatureSchema(sequences=["item", "type"])
        >>> sequence_tokens(pd.DataFrame({"item": [["1", "2"]], "type": [["view", "buy"]]}), s)
        [['item=1', 'item=2', 'type=view', 'type=buy', 'item=1|type=view', 'item=2|type=buy']]
    """
    names = list(schema.sequences)
    if not names:
        return [[] for _ in range(len(df))]
    first, others = names[0], names[1:]
    out = []
    for row in zip(*(df[n] for n in names)):
        seqs = dict(zip(names, row))
        tokens = [f"{n}={v}" for n in names for v in seqs[n]]
        tokens += [f"{first}={a}|{o}={b}" for o in others for a, b in zip(seqs[first], seqs[o])]
        out.append(tokens)
    return out


# -- the two models of both lists -----------------------------------------
def logistic_regression(nums: list[str], cats: list[str], *, C: float, class_weight: str | None,
                        max_iter: int, extra_parts: list[tuple] = ()):
    """Logistic regression over :func:`linear_tabular_parts` (and ``extra_parts``), unfitted.

    Args:
        nums, cats: numeric and categorical columns of :func:`tabular_features`.
        C: inverse L2 strength.
        class_weight: None or "balanced".
        max_iter: int. L-BFGS iterations at most.
        extra_parts: more ``ColumnTransformer`` parts (the TF-IDF text, the bag of events).

    Returns:
        A scikit-learn pipeline.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(ColumnTransformer(linear_tabular_parts(nums, cats) + list(extra_parts)),
                         LogisticRegression(max_iter=max_iter, C=C, class_weight=class_weight))


def hist_gradient_boosting(seed: int, *, max_iter: int, n_iter_no_change: int, **params):
    """``HistGradientBoostingClassifier`` early-stopped on 15 % of the training rows, unfitted.

    Takes frames whose categorical columns are pandas categoricals (:func:`to_categories`,
    at most :data:`HGB_MAX_LEVELS` levels). ``params``: ``learning_rate``, ``max_leaf_nodes``, ...
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=max_iter, early_stopping=True, validation_fraction=0.15, n_iter_no_change=n_iter_no_change,
        random_state=seed, categorical_features="from_dtype", **params)


# -- baselines of every run ----------------------------------------------
def fit_baselines(train_df: pd.DataFrame, val_df: pd.DataFrame | None, schema: FeatureSchema,
                  seed: int = 0, names: tuple[str, ...] | list[str] = BASELINES) -> dict:
    """Fits logistic regression and HistGradientBoosting on :func:`tabular_features`.

    HistGradientBoosting gets each categorical column as the
    :data:`HGB_MAX_LEVELS` most frequent training values (the rest missing),
    see :func:`category_levels`.

    Args:
        train_df: the training split.
        val_df: unused (HistGradientBoosting early-stops on a fraction of the
            training split); kept for callers that pass it.
        schema: the features.
        seed: random seed of HistGradientBoosting.
        names: the baselines to fit, a subset of :data:`BASELINES`.

    Returns:
        name -> fitted scikit-learn pipeline (takes :func:`tabular_features` frames).
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    unknown = set(names) - set(BASELINES)
    if unknown:
        raise ValueError(f"Unknown baselines {sorted(unknown)}; choose from {list(BASELINES)}")
    x_train, cats = tabular_features(train_df, schema)
    nums = [c for c in x_train.columns if c not in cats]
    y_train = train_df[schema.label].to_numpy()
    fitted = {}
    if "logistic_regression" in names:
        lr = logistic_regression(nums, cats, C=1.0, class_weight="balanced", max_iter=2000)
        fitted["logistic_regression"] = lr.fit(x_train, y_train)
    if "hist_gradient_boosting" in names:
        levels = category_levels(x_train, cats, max_levels=HGB_MAX_LEVELS)
        gb = make_pipeline(FunctionTransformer(to_categories, kw_args={"levels": levels}),
                           hist_gradient_boosting(seed, max_iter=500, n_iter_no_change=20, learning_rate=0.05))
        fitted["hist_gradient_boosting"] = gb.fit(x_train, y_train)
    return fitted


def predict_baselines(baselines: dict, df: pd.DataFrame, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Purchase probabilities of each fitted baseline on ``df``."""
    x, _ = tabular_features(df, schema)
    return {name: model.predict_proba(x)[:, 1] for name, model in baselines.items()}


def baseline_predictions(splits: dict[str, pd.DataFrame], schema: FeatureSchema, seed: int = 0,
                         names: tuple[str, ...] | list[str] = BASELINES
                         ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Fits each baseline on ``splits["train"]`` and predicts every other split; fails soft.

    Each baseline is fitted and predicted on its own: if that raises (or
    gives non-finite probabilities), a warning names the baseline and the
    error, and the baseline is left out. A baseline is never worth losing
    the model trained before it.

    Args:
        splits: split name -> frame; ``"train"`` is fitted on, the others are predicted.
        schema: the features.
        seed: random seed of the baselines.
        names: the baselines, a subset of :data:`BASELINES`.

    Returns:
        ``(split -> baseline -> probabilities, skipped baseline -> "ErrorType: message")``;
        a skipped baseline is in no split.
    """
    targets = [k for k in splits if k != "train"]
    probs: dict[str, dict[str, np.ndarray]] = {k: {} for k in targets}
    skipped: dict[str, str] = {}
    for name in names:
        step = "fitting"
        try:
            model = fit_baselines(splits["train"], splits.get("validation"), schema, seed=seed,
                                  names=[name])
            out = {}
            for k in targets:
                step = f"predicting the {k} split"
                p = predict_baselines(model, splits[k], schema)[name]
                if not np.all(np.isfinite(p)):
                    raise ValueError(f"{int(np.sum(~np.isfinite(p)))} non-finite probabilities")
                out[k] = p
        except Exception as err:  # any baseline failure must not stop the run
            skipped[name] = f"{type(err).__name__}: {err}"
            logger.warning("Baseline %s skipped: %s failed with %s", name, step, skipped[name])
            continue
        for k in targets:
            probs[k][name] = out[k]
    return probs, skipped


# -- tuned peers of compare ---------------------------------------------
def peer_names(schema: FeatureSchema, requested: list[str] | None = None) -> list[str]:
    """The peers that apply to ``schema``, in table order.

    Args:
        schema: the features of one comparison (a modality subset or all).
        requested: peer names to keep (default: :data:`PEERS`, :data:`TFIDF_PEER`
            and :data:`SEQUENCE_PEER`).

    Returns:
        ``requested`` without :data:`TFIDF_PEER` when ``schema`` has no text and
        without :data:`SEQUENCE_PEER` when it has no event sequences.
    """
    names = list(requested or [*PEERS, TFIDF_PEER, SEQUENCE_PEER])
    has_text = bool(schema.text or schema.event_text)
    return [n for n in names if (n != TFIDF_PEER or has_text) and (n != SEQUENCE_PEER or schema.sequences)]


def fit_peers(schema: FeatureSchema, splits: dict[str, pd.DataFrame], seed: int = 0,
              names: list[str] | None = None, grids: dict[str, dict[str, list]] = GRIDS) -> dict[str, dict[str, Any]]:
    """Tunes each peer on the validation split and predicts validation and test.

    ``grids``: peer name -> parameter -> values tried (:data:`GRIDS`, or :data:`ONE_POINT`).

    Returns:
        peer name -> ``{"val": probs, "test": probs, "params": best grid point,
        "grid": [[params, val ROC-AUC], ...], "seconds": float}``.

    Raises:
        ImportError: LightGBM or XGBoost requested but not installed
            (``pip install -e .[compare]``).
    """
    names = names or peer_names(schema)
    y = {k: df[schema.label].to_numpy() for k, df in splits.items()}
    frames = {k: tabular_features(df, schema)[0] for k, df in splits.items()}
    cats = list(schema.categorical)
    nums = [c for c in frames["train"].columns if c not in cats]
    out = {}
    for name in names:
        t0 = time.perf_counter()
        grid = grids[name]
        trials = []
        best = None
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid.keys(), values))
            model, extra = _fit_one(name, params, frames, y, splits, schema, nums, cats, seed)
            p_val = model(("validation"))
            score = roc_auc(y["validation"], p_val)
            trials.append([{**params, **extra}, score])
            if best is None or score > best[0]:
                best = (score, params, extra, model, p_val)
        score, params, extra, model, p_val = best
        out[name] = {"val": p_val, "test": model("test"), "params": {**params, **extra},
                     "grid": trials, "seconds": time.perf_counter() - t0}
        logger.info("%s: best %s, val ROC-AUC %.4f (%d fits, %.1f s)", name, out[name]["params"], score,
                    len(trials), out[name]["seconds"])
    return out


def _fit_one(name, params, frames, y, splits, schema, nums, cats, seed):
    """Fits one grid point; returns ``(split name -> probabilities function, extra params)``."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, Normalizer

    if name in ("logistic_regression", TFIDF_PEER, SEQUENCE_PEER):
        parts = []
        x = {k: f for k, f in frames.items()}
        if name == TFIDF_PEER:
            from sklearn.feature_extraction.text import TfidfVectorizer

            parts.append(("text", TfidfVectorizer(min_df=2, ngram_range=(1, 2), max_features=100_000,
                                                  sublinear_tf=True), "__text__"))
            x = {k: f.assign(__text__=text_column(splits[k], schema)) for k, f in frames.items()}
        if name == SEQUENCE_PEER:
            from sklearn.feature_extraction.text import CountVectorizer

            # Each row is already a token list (analyzer=list keeps it). Counts -> log(1 + count),
            # then each row scaled to unit L2 norm (as the TF-IDF peer), so that one C suits short
            # and long histories; the number of events is a tabular feature.
            bag = make_pipeline(CountVectorizer(analyzer=list, min_df=2),
                                FunctionTransformer(lambda m: m.log1p()), Normalizer())
            parts.append(("events", bag, "__events__"))
            x = {k: f.assign(__events__=pd.Series(sequence_tokens(splits[k], schema), index=f.index,
                                                  dtype=object))
                 for k, f in frames.items()}
        pipe = logistic_regression(nums, cats, C=params["C"], class_weight=params.get("class_weight", "balanced"),
                                   max_iter=3000, extra_parts=parts).fit(x["train"], y["train"])
        return (lambda split: pipe.predict_proba(x[split])[:, 1]), {}
    if name == "hist_gradient_boosting":
        x = _as_categories(frames, cats, max_levels=HGB_MAX_LEVELS)
        model = hist_gradient_boosting(seed, max_iter=1000, n_iter_no_change=30, **params)
        model.fit(x["train"], y["train"])
        return (lambda split: model.predict_proba(x[split])[:, 1]), {"n_iter": int(model.n_iter_)}
    if name == "lightgbm":
        import lightgbm as lgb

        x = _as_categories(frames, cats)
        model = lgb.LGBMClassifier(n_estimators=3000, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                                   min_child_samples=20, random_state=seed, n_jobs=2, verbose=-1, **params)
        model.fit(x["train"], y["train"], eval_X=(x["validation"],), eval_y=(y["validation"],), eval_metric="auc",
                  callbacks=[lgb.early_stopping(100, verbose=False)])
        return (lambda split: model.predict_proba(x[split])[:, 1]), {"n_estimators": int(model.best_iteration_)}
    if name == "xgboost":
        import xgboost as xgb

        x = _as_categories(frames, cats)
        model = xgb.XGBClassifier(n_estimators=3000, subsample=0.8, colsample_bytree=0.8, tree_method="hist",
                                  enable_categorical=True, eval_metric="auc", early_stopping_rounds=100,
                                  random_state=seed, n_jobs=2, **params)
        model.fit(x["train"], y["train"], eval_set=[(x["validation"], y["validation"])], verbose=False)
        return (lambda split: model.predict_proba(x[split])[:, 1]), {"n_estimators": int(model.best_iteration) + 1}
    raise ValueError(f"Unknown peer {name!r}; choose from {list(GRIDS)}")


def _as_categories(frames: dict[str, pd.DataFrame], cats: list[str],
                   max_levels: int | None = None) -> dict[str, pd.DataFrame]:
    """Each split with its categorical columns as categories of the training values.

    See :func:`category_levels` (``max_levels`` most frequent training values)
    and :func:`to_categories` (other values -> NaN).
    """
    levels = category_levels(frames["train"], cats, max_levels)
    return {k: to_categories(f, levels) for k, f in frames.items()}


def roc_auc(y, p) -> float:
    """ROC-AUC, NaN when ``y`` has one class only."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if np.min(y) != np.max(y) else float("nan")
