"""Run report: figures and a Markdown/HTML page rebuilt from the files of a run directory.

``python -m purchase_intent.report RUN_DIR`` needs no model: it reads

* ``history.json`` -> ``learning_curves.png`` (loss and ROC-AUC, train vs validation);
* ``predictions_test.csv`` (test labels and the probabilities of every model,
  written by ``train.py``) -> ``curves.png`` (ROC, PR), ``calibration.png``
  and ``lift.png`` (cumulative gain and lift per decile, the chart a marketer reads);
* ``metrics.json`` and ``config.json`` -> the metrics table, the training
  figures, a config summary and where the export is;

and writes ``report.md`` and ``report.html`` beside them, both linking the
PNGs by relative path (the run directory can be moved or zipped).

The module also holds the plots the notebooks use for data exploration
(:func:`plot_data_overview`) and the leakage check of the Online Retail time
split (:func:`check_time_split`).

Examples:

    python -m purchase_intent.report runs/20261123-120000
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent import cli
from purchase_intent.contract import PREDICTED_LABEL_COLUMN, TRUE_LABEL_COLUMN
from purchase_intent.schema import FeatureSchema

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions_test.csv"
FIGURES = {
    "learning_curves.png": "Learning curves (loss and ROC-AUC, train vs validation)",
    "curves.png": "ROC and precision-recall curves on the test split",
    "calibration.png": "Calibration (reliability diagram) on the test split",
    "lift.png": "Cumulative gain and lift per decile on the test split",
}
_METRIC_COLUMNS = ["roc_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "ece",
                   "threshold"]


def _pyplot():
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():  # keep a notebook's inline backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- predictions file ----------------------------------------------------------
def save_predictions(path: str | Path, y: np.ndarray, probs: dict[str, np.ndarray], *,
                     ids: pd.DataFrame | None = None, threshold: float | None = None,
                     model: str | None = None) -> Path:
    """Writes ids, labels and each model's probabilities, one column per model, to a CSV.

    Columns: the ``ids`` columns (the schema's ``id``: whom each row is about),
    ``label`` (the observed outcome), one probability column per model and,
    with ``threshold``, ``purchase_label`` (``model``'s probability >=
    threshold, the decision ``predict`` and ``serving.score`` write too).
    Sorting by the model's column gives the contact list.

    Args:
        path: the CSV to write (normally ``RUN_DIR/predictions_test.csv``).
        y: 0/1 labels.
        probs: model name -> probabilities, each as long as ``y``.
        ids: id columns, one row per label (None: no id columns).
        threshold: decision threshold of ``model`` (None: no ``purchase_label`` column).
        model: the model the decision is about (default: the first of ``probs``).

    Returns:
        The path written.

    Raises:
        ValueError: a model's probabilities or the ids do not match the labels
            in length, or a name is used twice.
    """
    y = np.asarray(y).reshape(-1)
    cols: dict[str, Any] = {}
    if ids is not None:
        if len(ids) != len(y):
            raise ValueError(f"{len(ids)} id rows for {len(y)} labels")
        for c in ids.columns:
            cols[c] = ids[c].to_numpy()
    reserved = {TRUE_LABEL_COLUMN, PREDICTED_LABEL_COLUMN}
    clash = sorted((set(cols) & (reserved | set(probs))))
    if clash:
        raise ValueError(f"id column(s) {clash} clash with the label or a model's column")
    cols[TRUE_LABEL_COLUMN] = y.astype(np.int64)
    for name, p in probs.items():
        p = np.asarray(p, np.float64).reshape(-1)
        if len(p) != len(y):
            raise ValueError(f"{name}: {len(p)} probabilities for {len(y)} labels")
        if name in reserved:
            raise ValueError(f"a model may not be called {name!r}")
        cols[name] = p
    if threshold is not None and probs:
        model = model or next(iter(probs))
        cols[PREDICTED_LABEL_COLUMN] = (cols[model] >= threshold).astype(np.int64)
    pd.DataFrame(cols).to_csv(path, index=False, float_format="%.7g")
    return Path(path)


def load_predictions(path: str | Path, id_columns: list[str] | tuple[str, ...] = ()
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reads a file of :func:`save_predictions`; returns ``(labels, {model: probabilities})``.

    The id columns (``id_columns``, and any column that is not numeric) and the
    ``purchase_label`` decision are left out of the models.
    """
    df = pd.read_csv(path)
    if TRUE_LABEL_COLUMN not in df.columns:
        raise ValueError(f"{path}: no {TRUE_LABEL_COLUMN!r} column; columns are {list(df.columns)}")
    y = df[TRUE_LABEL_COLUMN].to_numpy(np.int64)
    skip = {TRUE_LABEL_COLUMN, PREDICTED_LABEL_COLUMN, *id_columns}
    return y, {c: df[c].to_numpy(np.float64) for c in df.columns
               if c not in skip and pd.api.types.is_float_dtype(df[c])}


# -- targeting: whom to contact ----------------------------------------------
TARGET_SHARES = (0.05, 0.10, 0.20, 0.30, 0.50)


def targeting_table(y: np.ndarray, p: np.ndarray, shares=TARGET_SHARES) -> pd.DataFrame:
    """What contacting the top X % of customers by predicted probability achieves.

    The top ``k = max(1, floor(X * n + 0.5))`` rows by probability are
    contacted (ties keep the file order). Per share:

    * ``customers_contacted``: ``k``; ``buyers_reached``: labels 1 among them;
    * ``share_of_buyers_reached``: ``buyers_reached`` / all labels 1;
    * ``precision``: ``buyers_reached / k``, the buy rate of the contacted;
    * ``lift``: ``precision`` / the overall buy rate (1 = random targeting);
    * ``min_probability``: the lowest probability contacted (the cut-off).

    Args:
        y: 0/1 labels.
        p: predicted probabilities, as long as ``y``.
        shares: shares of customers contacted, each in (0, 1].

    Returns:
        One row per share, in the order given.
    """
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"{len(p)} probabilities for {len(y)} labels")
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])
    total, base = float(y.sum()), float(y.mean())
    rows = []
    for share in shares:
        if not 0 < share <= 1:
            raise ValueError(f"share contacted must be in (0, 1], got {share}")
        k = max(1, int(np.floor(share * len(y) + 0.5)))
        reached = float(hits[k - 1])
        precision = reached / k
        rows.append({"share_contacted": float(share), "customers_contacted": k,
                     "buyers_reached": int(reached),
                     "share_of_buyers_reached": reached / total if total else float("nan"),
                     "precision": precision, "lift": precision / base if base else float("nan"),
                     "min_probability": float(p[order[k - 1]])})
    return pd.DataFrame(rows)


def threshold_reach(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """What contacting everyone with probability >= ``threshold`` means, as in :func:`targeting_table`."""
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    chosen = p >= threshold
    k = int(chosen.sum())
    reached = float(y[chosen].sum())
    total, base = float(y.sum()), float(y.mean())
    precision = reached / k if k else float("nan")
    return {"threshold": float(threshold), "share_contacted": k / len(y), "customers_contacted": k,
            "buyers_reached": int(reached),
            "share_of_buyers_reached": reached / total if total else float("nan"),
            "precision": precision, "lift": precision / base if base and k else float("nan")}


def targeting_summary(y: np.ndarray, probs: dict[str, np.ndarray], model: str,
                      threshold: float | None = None, split: str = "test") -> dict[str, Any]:
    """The ``targeting`` entry of ``metrics.json``: ``model``'s table and every model's top-share reach."""
    out: dict[str, Any] = {
        "split": split, "model": model, "examples": int(len(y)), "buyers": int(np.sum(y)),
        "table": targeting_table(y, probs[model]).to_dict(orient="records"),
        "share_of_buyers_reached_by_model": {
            name: {f"top_{round(100 * s)}%": r for s, r in zip(
                TARGET_SHARES, targeting_table(y, p)["share_of_buyers_reached"])}
            for name, p in probs.items()},
    }
    if threshold is not None:
        out["at_threshold"] = threshold_reach(y, probs[model], threshold)
    return out


SMALL_SPLIT_ROWS = 200
SMALL_SPLIT_POSITIVES = 30


def split_warnings(splits: dict[str, dict[str, float]], min_rows: int = SMALL_SPLIT_ROWS,
                   min_positives: int = SMALL_SPLIT_POSITIVES) -> list[str]:
    """Plain warnings for a validation or test split too small to trust its figures.

    Args:
        splits: ``metrics.json``'s ``splits``: name -> ``{"examples", "positive_rate"}``.

    Returns:
        One sentence per small split (empty when all are large enough).
    """
    out = []
    for name in ("validation", "test"):
        s = splits.get(name)
        if not s:
            continue
        n = int(s["examples"])
        pos = int(round(n * float(s["positive_rate"])))
        if n < min_rows or pos < min_positives:
            use = ("the decision threshold and the kept epoch are chosen on it, so both can change "
                   "from one sample to another" if name == "validation"
                   else "every test figure in this report can move by several points from one "
                        "sample to another")
            out.append(f"The {name} split is small ({n:,} rows, {pos:,} buyers; fewer than "
                       f"{min_rows} rows or {min_positives} buyers): {use}. Treat differences between "
                       "models of a few hundredths as noise; use more data for a decision.")
    return out


# -- plots ---------------------------------------------------------------------
def plot_learning_curves(history: dict[str, list[float]], path: str | Path | None = None):
    """Loss and ROC-AUC per epoch, train vs validation (PR-AUC too when logged).

    Args:
        history: Keras ``History.history`` (or ``history.json``): ``loss``,
            ``val_loss``, ``auc``, ``val_auc``, ...
        path: PNG to write; None returns the figure without saving (notebooks).

    Returns:
        The path written, or the matplotlib figure when ``path`` is None.
    """
    plt = _pyplot()
    panels = [(k, t) for k, t in (("loss", "loss (binary cross-entropy)"), ("auc", "ROC-AUC"),
                                  ("pr_auc", "PR-AUC")) if k in history or f"val_{k}" in history]
    if not panels:
        raise ValueError(f"history has none of loss/auc/pr_auc; keys: {sorted(history)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        for k, label, style in ((key, "train", "-o"), (f"val_{key}", "validation", "-s")):
            if k in history and len(history[k]):
                epochs = np.arange(1, len(history[k]) + 1)
                ax.plot(epochs, history[k], style, label=label, markersize=4)
        best = history.get("val_auc")
        if best:
            ax.axvline(int(np.nanargmax(best)) + 1, color="grey", linestyle=":", linewidth=1,
                       label="best val ROC-AUC")
        ax.set(xlabel="epoch", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


def lift_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Customers ranked by probability, cut into ``bins`` equal groups (deciles by default).

    Returns:
        One row per group, most likely buyers first: ``group`` (1 = top),
        ``customers``, ``buyers``, ``buy_rate``, ``lift`` (buy rate / overall
        rate), ``cumulative_share_contacted`` and ``cumulative_gain`` (share of
        all buyers found when contacting the groups down to this one).
    """
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    order = np.argsort(-p, kind="stable")
    groups = np.array_split(order, bins)
    base = y.mean() if len(y) else float("nan")
    rows, found, seen = [], 0.0, 0
    for i, idx in enumerate(groups, start=1):
        buyers = float(y[idx].sum())
        found += buyers
        seen += len(idx)
        rate = buyers / max(len(idx), 1)
        rows.append({"group": i, "customers": len(idx), "buyers": int(buyers), "buy_rate": rate,
                     "min_probability": float(p[idx].min()) if len(idx) else float("nan"),
                     "lift": rate / base if base > 0 else float("nan"),
                     "cumulative_share_contacted": seen / len(y),
                     "cumulative_gain": found / max(y.sum(), 1.0)})
    return pd.DataFrame(rows)


def plot_lift_gain(y: np.ndarray, probs: dict[str, np.ndarray], path: str | Path | None = None,
                   bins: int = 10):
    """Cumulative gain curve (left) and lift per decile (right) of every model.

    Read the left panel as: "contacting the top 20 % of customers by predicted
    probability reaches X % of the buyers"; the diagonal is random targeting.
    The right panel shows how many times the overall buy rate each decile has.

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    plt = _pyplot()
    y = np.asarray(y, np.float64).reshape(-1)
    fig, (gain_ax, lift_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    n_models = max(len(probs), 1)
    width = 0.8 / n_models
    for k, (name, p) in enumerate(probs.items()):
        p = np.asarray(p, np.float64).reshape(-1)
        order = np.argsort(-p, kind="stable")
        gain = np.concatenate([[0.0], np.cumsum(y[order]) / max(y.sum(), 1.0)])
        share = np.linspace(0, 1, len(y) + 1)
        table = lift_table(y, p, bins)
        top = table["cumulative_gain"].iloc[max(bins // 5 - 1, 0)]
        gain_ax.plot(share, gain, label=f"{name} (top 20 %: {top:.0%} of buyers)")
        lift_ax.bar(table["group"] + (k - (n_models - 1) / 2) * width, table["lift"], width=width,
                    label=name)
    gain_ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="random targeting")
    if y.mean() > 0:
        gain_ax.plot([0, y.mean(), 1], [0, 1, 1], color="grey", linestyle=":", linewidth=1,
                     label="perfect model")
    gain_ax.set(xlabel="share of customers contacted (by predicted probability)",
                ylabel="share of buyers reached", title="Cumulative gain (test)", xlim=(0, 1),
                ylim=(0, 1.02))
    lift_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    lift_ax.set(xlabel=f"group (1 = most likely {100 // bins} %)", ylabel="lift (buy rate / average)",
                title="Lift per group (test)", xticks=range(1, bins + 1))
    gain_ax.legend(loc="lower right", fontsize=8)
    lift_ax.legend(loc="upper right", fontsize=8)
    gain_ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def plot_bars(values: pd.Series | dict[str, float], path: str | Path | None = None, *,
              title: str = "", xlabel: str = "", errors: pd.Series | dict[str, float] | None = None):
    """Horizontal bar chart of named values (largest on top), e.g. importances or ablations.

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    plt = _pyplot()
    s = pd.Series(values, dtype=np.float64).sort_values()
    err = None if errors is None else pd.Series(errors, dtype=np.float64).reindex(s.index).to_numpy()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(s) + 1.4))
    colors = ["tab:blue" if v >= 0 else "tab:red" for v in s]
    ax.barh(s.index.astype(str), s.to_numpy(), xerr=err, color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def _finish(fig, path):
    """Saves and closes the figure; without a path, returns it closed (a notebook displays it once)."""
    plt = _pyplot()
    if path is not None:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig if path is None else Path(path)


# -- data exploration (notebook 01) ---------------------------------------------
def data_summary(splits: dict[str, pd.DataFrame], schema: FeatureSchema) -> pd.DataFrame:
    """One row per split: examples, positive rate, events per example, text lengths, missing values."""
    rows = {}
    for name, df in splits.items():
        row: dict[str, Any] = {"examples": len(df)}
        if schema.label in df:
            row["positive_rate"] = float(df[schema.label].mean())
        if schema.sequence_like:
            lengths = df[schema.sequence_like[0]].map(len)
            row["median_events"] = float(lengths.median())
            row["empty_sequences"] = int((lengths == 0).sum())
        for col in schema.text:
            row[f"{col}_median_words"] = float(df[col].str.split().map(len).median())
        for col in schema.event_text:
            row[f"{col}_median_words"] = float(
                df[col].map(lambda s: np.median([len(t.split()) for t in s]) if len(s) else np.nan).median())
        if schema.numeric:
            row["missing_numeric_values"] = int(df[schema.numeric].isna().to_numpy().sum())
        rows[name] = row
    return pd.DataFrame(rows).T


def plot_data_overview(splits: dict[str, pd.DataFrame], schema: FeatureSchema,
                       path: str | Path | None = None, max_numeric: int = 6):
    """Class balance, sequence lengths, event types, text lengths and numeric features by label.

    Args:
        splits: split name -> frame validated by ``schema.validate``.
        schema: the feature schema.
        path: PNG to write; None returns the figure.
        max_numeric: numeric features shown (the first ones of the schema).

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    plt = _pyplot()
    train = splits.get("train", next(iter(splits.values())))
    numeric = list(schema.numeric[:max_numeric])
    n_panels = 4 + len(numeric)
    ncols = 4
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    axes = axes.reshape(-1)
    # 1. class balance per split.
    names = list(splits)
    rates = [splits[n][schema.label].mean() for n in names]
    axes[0].bar(names, rates, color="tab:green")
    for i, (n, r) in enumerate(zip(names, rates)):
        axes[0].text(i, r, f"{r:.1%}\n(n={len(splits[n]):,})", ha="center", va="bottom", fontsize=8)
    axes[0].set(title="positive rate per split", ylim=(0, max(rates + [0.1]) * 1.35))
    # 2. sequence lengths by label.
    ax = axes[1]
    if schema.sequence_like:
        col = schema.sequence_like[0]
        for label in (0, 1):
            lengths = train.loc[train[schema.label] == label, col].map(len)
            ax.hist(np.log1p(lengths), bins=30, alpha=0.55, density=True, label=f"label {label}")
        ax.set(title=f"events per example ({col}, train)", xlabel="log(1 + events)")
        ax.legend(fontsize=8)
    else:
        ax.set_title("no sequences")
    # 3. event types.
    ax = axes[2]
    type_col = next((c for c in schema.sequences if c == "event_type"),
                    schema.sequences[-1] if schema.sequences else None)
    if type_col:
        counts = pd.Series([e for s in train[type_col] for e in s]).value_counts().head(12)
        ax.barh(counts.index.astype(str)[::-1], counts.to_numpy()[::-1], color="tab:purple")
        ax.set(title=f"{type_col} values (train events)", xlabel="events")
    else:
        ax.set_title("no event types")
    # 4. text lengths.
    ax = axes[3]
    if schema.text:
        col = schema.text[0]
        ax.hist(train[col].str.split().map(len), bins=20, color="tab:orange")
        ax.set(title=f"words per {col} (train)", xlabel="words")
    elif schema.event_text:
        col = schema.event_text[0]
        words = [len(t.split()) for s in train[col] for t in s]
        ax.hist(words, bins=range(0, max(words + [1]) + 2), color="tab:orange")
        ax.set(title=f"words per {col} (train events)", xlabel="words")
    else:
        ax.set_title("no text")
    # 5+. numeric features by label (signed log scale: heavy tails).
    for ax, col in zip(axes[4:], numeric):
        for label in (0, 1):
            x = train.loc[train[schema.label] == label, col].to_numpy(np.float64)
            x = x[np.isfinite(x)]
            ax.hist(np.sign(x) * np.log1p(np.abs(x)), bins=30, alpha=0.55, density=True,
                    label=f"label {label}")
        ax.set(title=f"{col} by label (train)", xlabel="sign(x) log(1 + |x|)")
        ax.legend(fontsize=8)
    for ax in axes[n_panels:]:
        ax.axis("off")
    fig.tight_layout()
    return _finish(fig, path)


def check_time_split(frames: dict[str, pd.DataFrame], events: pd.DataFrame, horizon_days: int,
                     max_events: int = 200) -> pd.DataFrame:
    """Leakage check of the Online Retail time split; raises ``AssertionError`` on any leak.

    For every example (customer, cut-off ``T``) it recomputes from the cleaned
    invoice lines: the number of the customer's lines strictly before ``T``
    (must equal ``n_lines``, so no line at or after ``T`` was counted), the
    item of the customer's last line before ``T`` (must be the last event of
    the sequence), the sequence length (``min(n_lines, max_events)``), that
    the last purchase is strictly before ``T`` (``recency_days > 0``) and the
    label (a purchase in ``(T, T + horizon]``). Across splits, every training
    label window must end by the validation cut-off and the validation window
    by the test cut-off.

    Args:
        frames: split -> frame of ``online_retail.load_online_retail`` (with
            ``customer_id`` and ``cutoff``).
        events: the invoice lines of ``online_retail.clean_events``.
        horizon_days: label window length used to build ``frames``.
        max_events: sequence truncation used to build ``frames``.

    Returns:
        One row per (split, cut-off): examples and checks passed.
    """
    ev = events.assign(t=pd.to_datetime(events["InvoiceDate"]))
    ev = ev.sort_values("t", kind="stable")
    inv = ev["InvoiceNo"].astype(str).str.upper()
    ev["purchase"] = ~inv.str.startswith("C") & (ev["Quantity"] > 0)
    h = pd.Timedelta(days=horizon_days)
    rows = []
    cutoffs = {s: sorted(pd.Timestamp(c) for c in df["cutoff"].unique()) for s, df in frames.items()}
    for split, df in frames.items():
        for T in cutoffs[split]:
            ex = df[pd.to_datetime(df["cutoff"]) == T].set_index("customer_id")
            before = ev[ev["t"] < T].groupby("CustomerID")
            n_before = before.size().reindex(ex.index)
            last_item = before["StockCode"].last().reindex(ex.index)
            last_buy = ev[(ev["t"] < T) & ev["purchase"]].groupby("CustomerID")["t"].max().reindex(ex.index)
            window = ev[(ev["t"] > T) & (ev["t"] <= T + h) & ev["purchase"]]
            label = ex.index.isin(window["CustomerID"].unique()).astype(int)
            seq_len = ex["item_id"].map(len)
            seq_last = ex["item_id"].map(lambda s: s[-1] if len(s) else None)
            where = f"{split} cut-off {T.date()}"
            assert (n_before.to_numpy() == ex["n_lines"].to_numpy()).all(), \
                f"{where}: n_lines counts lines at or after the cut-off"
            assert (seq_len.to_numpy() == np.minimum(n_before.to_numpy(), max_events)).all(), \
                f"{where}: sequence lengths do not match the lines before the cut-off"
            assert (seq_last.to_numpy() == last_item.to_numpy()).all(), \
                f"{where}: the last event of a sequence is not the last line before the cut-off"
            assert (last_buy < T).all() and (ex["recency_days"] > 0).all(), \
                f"{where}: a purchase at or after the cut-off is used as input"
            assert (label == ex["label"].to_numpy()).all(), f"{where}: labels do not match the window"
            rows.append({"split": split, "cutoff": T.date(), "examples": len(ex),
                         "latest_input_event": ev.loc[ev["t"] < T, "t"].max(),
                         "label_window_end": (T + h).date(), "checks": "passed"})
    if "train" in cutoffs and "validation" in cutoffs:
        assert max(cutoffs["train"]) + h <= min(cutoffs["validation"]), \
            "a training label window reaches past the validation cut-off"
    if "validation" in cutoffs and "test" in cutoffs:
        assert max(cutoffs["validation"]) + h <= min(cutoffs["test"]), \
            "the validation label window reaches past the test cut-off"
    return pd.DataFrame(rows)


# -- report --------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _metrics_rows(metrics: dict) -> list[list[str]]:
    rows = []
    for name, m in (metrics or {}).get("test", {}).items():
        rows.append([name] + [f"{m[c]:.4f}" if c in m else "" for c in _METRIC_COLUMNS])
    return rows


def _config_summary(cfg: dict | None) -> list[tuple[str, str]]:
    if not cfg:
        return []
    d, m, t = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    return [
        ("data", str(d.get("name"))),
        ("text encoder", f"{m.get('text_encoder')} (trainable layers {m.get('text_trainable_layers')}"
                         + (f", LoRA rank {m['text_lora_rank']})" if m.get("text_lora_rank") else ")")),
        ("sequence encoder", f"{m.get('sequence_encoder')} (LSTM {m.get('lstm_units')}, "
                             f"CNN {m.get('cnn_filters')}x{m.get('cnn_kernel_size')})"),
        ("fusion MLP", f"{m.get('hidden_units')}, dropout {m.get('dropout')}"),
        ("max events / batch size", f"{d.get('max_sequence_length')} / {d.get('batch_size')}"),
        ("max epochs / learning rate", f"{t.get('epochs')} / {t.get('learning_rate')}"),
        ("seed", str(t.get("seed"))),
    ]


def serving_commands(version_dir: str | Path, model_name: str = "purchase_intent") -> dict[str, str]:
    """Shell commands to serve an exported version locally and to score with it."""
    version_dir = Path(version_dir)
    base = version_dir.parent
    return {
        "offline scoring": (f"python -m purchase_intent.predict --model {version_dir} "
                            "--input customers.csv --output scored.csv"),
        "local server (gRPC, REST)": (f"python -m purchase_intent.serving.local --model-base-path {base} "
                                      f"--model-name {model_name} --port 8500 --rest-port 8501"),
        # --schema gives the id columns and the delimiter; the threshold.json beside it is the default.
        "score over gRPC": (f"python -m purchase_intent.serving.score --target localhost:8500 "
                            f"--input customers.csv --output scored.csv "
                            f"--schema {version_dir / 'assets.extra' / 'schema.json'}"),
    }


def run_summary(run_dir: str | Path) -> str:
    """The end-of-training summary: where the model, report and export are, and how to try them."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / "metrics.json") or {}
    cfg = _read_json(run_dir / "config.json") or {}
    model_name = cfg.get("export", {}).get("model_name", "purchase_intent")
    lines = ["", "Run summary", "-----------",
             f"run directory:  {run_dir}",
             f"model weights:  {run_dir / 'best.weights.h5'}",
             f"report:         {run_dir / 'report.html'}  (and report.md; rebuild with "
             f"python -m purchase_intent.report {run_dir})"]
    export = (metrics.get("export") or {}).get("path")
    if export:
        cmds = serving_commands(export, model_name)
        lines += [f"SavedModel:     {export}", "",
                  "Score a CSV offline (no server):", f"  {cmds['offline scoring']}",
                  "Start the local server, gRPC and REST (development stand-in for TF Serving):",
                  f"  {cmds['local server (gRPC, REST)']}",
                  "Then score over gRPC, from the shell:", f"  {cmds['score over gRPC']}",
                  "or from Python:",
                  "  from purchase_intent.serving import PurchaseIntentClient",
                  f"  PurchaseIntentClient('localhost:8500', '{model_name}', timeout=5).predict(frame)"]
    else:
        lines.append("SavedModel:     none (export disabled)")
    return "\n".join(lines) + "\n"


METRIC_NAMES = {
    "roc_auc": "ranking quality (ROC-AUC)",
    "pr_auc": "precision-recall area (PR-AUC)",
    "log_loss": "log loss",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "ece": "calibration error (ECE)",
    "threshold": "threshold",
}
GLOSSARY = [
    ("ranking quality (ROC-AUC)", "the chance that a random buyer gets a higher probability than a "
     "random non-buyer: 0.5 is random ordering, 1.0 is perfect. It decides how good a top-X % "
     "contact list is."),
    ("precision-recall area (PR-AUC)", "average precision over all list lengths; compare it with "
     "the share of buyers (what random targeting gets)."),
    ("log loss", "how far the probabilities are from the outcomes (lower is better)."),
    ("calibration error (ECE)", "the average gap between predicted probability and the observed buy "
     "rate, in probability points (0.05 = predictions off by 5 points on average; lower is better)."),
    ("precision", "of the customers labelled buyers (probability >= threshold), the share who bought."),
    ("recall", "of all buyers, the share labelled buyers (the share of buyers reached)."),
    ("F1", "the harmonic mean of precision and recall; the threshold maximises it on validation."),
    ("accuracy", "the share of customers whose 0/1 label is right at the threshold."),
    ("lift", "precision of a contact list divided by the overall buy rate: 2.0 = twice as many "
     "buyers as contacting at random."),
]
MODEL_NAMES = {"purchase_intent": "purchase_intent (this model)",
               "logistic_regression": "logistic_regression (baseline)",
               "hist_gradient_boosting": "hist_gradient_boosting (gradient-boosting baseline)"}


def _model_name(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def label_sentence(schema: dict | None) -> str:
    """What label 1 means, from the schema's ``description`` (else the label column's name)."""
    schema = schema or {}
    label = schema.get("label", "label")
    description = (schema.get("description") or "").strip().rstrip(".")
    if description:
        return (f"Label 1 means: {description} (column `{label}`). The model gives each customer "
                "the probability of that.")
    return (f"Label 1 means: the column `{label}` is 1 (the schema has no `description`; add one "
            "sentence there, e.g. \"buys within 30 days\", and this report quotes it). The model "
            "gives each customer the probability of label 1.")


def comparison_sentence(test: dict[str, dict], model: str, n_test: int | None = None) -> str:
    """How ``model`` compares with the other models of ``test`` on ranking quality, in words."""
    if model not in test:
        return ""
    others = {k: v for k, v in test.items() if k != model and np.isfinite(v.get("roc_auc", np.nan))}
    if not others:
        return "No baseline was evaluated beside the model."
    best = max(others, key=lambda k: others[k]["roc_auc"])
    a, b = test[model]["roc_auc"], others[best]["roc_auc"]
    diff = a - b
    if abs(diff) < 0.01:
        verdict = "about as well as"
    elif diff > 0:
        verdict = "better than"
    else:
        verdict = "worse than"
    text = (f"On the test split, the model ranks buyers {verdict} the best baseline, "
            f"{_model_name(best)}: ranking quality {a:.3f} against {b:.3f} "
            f"(0.5 = random, 1.0 = perfect).")
    if abs(diff) < 0.01:
        text += " A difference under 0.01 is within the noise of one test split."
    elif diff < 0:
        text += " The simpler baseline is the safer choice unless the model wins on another run."
    if n_test is not None and n_test < SMALL_SPLIT_ROWS and abs(diff) >= 0.01:
        text += f" With {n_test:,} test rows, a difference of this size may not hold on new data."
    return text


def sample_sentence(comparison: dict, splits: dict) -> str:
    """Which rows ``metrics.json``'s ``baseline_comparison`` is on (baselines scored a sample)."""
    n = comparison.get("examples") or {}
    total = {k: (splits.get(k) or {}).get("examples") for k in ("validation", "test")}
    return (f"The baselines scored a sample: the first {n.get('validation', 0):,} validation and "
            f"{n.get('test', 0):,} test examples (of {total['validation'] or 0:,} and {total['test'] or 0:,}). "
            "The comparison puts every model, this one included, on those same rows (thresholds chosen on "
            "the validation rows), in the table below; the table above is this model on the whole test split.")


def calibration_sentence(metrics: dict) -> str:
    """How the network's output became the final probability (``metrics.json``'s ``training.calibration``)."""
    info = (metrics.get("training") or {}).get("calibration") or {}
    method = info.get("method")
    if method == "stack":
        return (f"Final step: {info.get('trees', 0):,} boosted trees on the numbers, categories and event "
                f"counts, blended with the network by weights fitted on the validation split (network "
                f"{info['a']:.2f}, trees {info['c']:.2f}), which also calibrates the probabilities.")
    if method == "platt":
        return "Final step: the probabilities are recalibrated on the validation split (Platt scaling)."
    return "Final step: none (the network's probabilities as trained, not recalibrated)." if method else ""


def epochs_sentence(history: dict | None, metrics: dict, cfg: dict | None) -> str:
    """Epochs run against epochs kept (early stopping restores the best validation epoch)."""
    training = metrics.get("training") or {}
    max_epochs = (cfg or {}).get("train", {}).get("epochs")
    ran = len((history or {}).get("loss", [])) or training.get("epochs_run")
    val_auc = (history or {}).get("val_auc")
    kept = int(np.nanargmax(val_auc)) + 1 if val_auc else (training.get("best_epochs") or [None])[0]
    if not ran:
        return ""
    text = f"Epochs: {ran} run" + (f" (at most {max_epochs})" if max_epochs else "")
    if kept:
        text += (f"; the weights of epoch {kept} are kept (best validation ranking quality"
                 + (f" {val_auc[kept - 1]:.3f}" if val_auc else "") + ")")
        if max_epochs and ran < max_epochs:
            text += "; early stopping ended training when validation stopped improving"
        elif max_epochs and kept == ran:
            text += "; the last epoch was the best, so more epochs (--epochs) may help"
    text += "."
    if kept == 1 and ran and ran > 1:
        text += (" Epoch 1 kept: every later epoch scored lower on validation (the model overfits "
                 "fast, the learning rate is high, or the validation split is small or noisy).")
    resumed = training.get("resumed_from_epoch")
    if resumed:
        text += f" (Resumed from a backup after epoch {resumed}; epochs count from the resume.)"
    return text


def targeting_rows(targeting: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the report's targeting table (from :func:`targeting_summary`).

    One row per share of customers contacted, then the row of everyone above
    the decision threshold when the summary has it.
    """
    header = ["contact the top", "customers", "buyers reached", "share of all buyers reached",
              "precision (buy rate)", "lift over random", "lowest probability contacted"]
    body = [[_pct(r["share_contacted"]), f"{r['customers_contacted']:,}", f"{r['buyers_reached']:,}",
             _pct(r["share_of_buyers_reached"]), _pct(r["precision"]), f"{r['lift']:.2f}",
             f"{r['min_probability']:.3f}"] for r in targeting["table"]]
    at = targeting.get("at_threshold")
    if at:
        body.append([f"above threshold ({_pct(at['share_contacted'])})",
                     f"{at['customers_contacted']:,}", f"{at['buyers_reached']:,}",
                     _pct(at["share_of_buyers_reached"]), _pct(at["precision"]),
                     "n/a" if not np.isfinite(at["lift"]) else f"{at['lift']:.2f}",
                     f"{at['threshold']:.3f}"])
    return header, body


def plot_table(header: list[str], rows: list[list[str]], path: str | Path | None = None, *,
               title: str = "", note: str = ""):
    """A table drawn as an image (the report's targeting table as a PNG, e.g. for slides or docs/).

    Returns:
        The path written, or the figure when ``path`` is None.
    """
    import textwrap

    plt = _pyplot()
    wrapped = ["\n".join(textwrap.wrap(h, 13)) for h in header]
    first = max(len(r[0]) for r in rows + [[header[0]]])
    widths = [max(1.0, first / 11)] + [1.0] * (len(header) - 1)
    widths = [w / sum(widths) for w in widths]
    fig, ax = plt.subplots(figsize=(1.3 * len(header) + 0.6, 0.3 * len(rows) + 1.45))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=wrapped, colWidths=widths, loc="upper center",
                     cellLoc="right", colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.5)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if r == 0:
            cell.set_facecolor("#dde6f3")
            cell.set_text_props(weight="bold")
            cell.set_height(cell.get_height() * 2.4)
        elif c == 0:
            cell.set_text_props(ha="left")
            cell._loc = "left"
        if r > 0 and r % 2 == 0:
            cell.set_facecolor("#f6f6f6")
    if title:
        ax.set_title(title, fontsize=12, loc="left", pad=8)
    if note:
        fig.text(0.01, 0.015, note, fontsize=8.5, color="#444444", wrap=True, va="bottom")
    fig.tight_layout(rect=(0, 0.1 if note else 0, 1, 1))
    return _finish(fig, path)


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.0%}"


RUN_FILES = ("metrics.json", "history.json", PREDICTIONS_FILE)  # a run folder has at least one


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path if it is the folder of a training run that got past training.

    Raises:
        FileNotFoundError: the folder does not exist, is not a run folder (none of
            :data:`RUN_FILES`), or holds a run that failed (its ``FAILED.txt`` quoted).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run directory {run_dir} " + ("is a file, not a folder" if run_dir.exists()
                                                               else "does not exist"))
    if any((run_dir / name).exists() for name in RUN_FILES):
        return run_dir
    failed = run_dir / "FAILED.txt"
    if failed.exists():
        first = failed.read_text(errors="replace").splitlines()[:1] or [""]
        raise FileNotFoundError(f"{run_dir}: the training run failed before it wrote any result "
                                f"({first[0]}); see {failed}")
    raise FileNotFoundError(
        f"{run_dir} is not the folder of a training run: it has none of {', '.join(RUN_FILES)}. "
        "Give the folder that python -m purchase_intent.train printed as 'Run directory:'")


def build_report(run_dir: str | Path) -> Path:
    """Rebuilds every figure it can from the run directory's files, then ``report.md`` / ``report.html``.

    Missing inputs are skipped with a log line (e.g. no ``history.json``: no
    learning curves); existing figures that cannot be rebuilt are still linked.
    The page opens with the warnings (``metrics.json`` ``warnings``: leakage
    across the splits, base-rate and feature shift, small splits; a threshold
    that labels most customers buyers), then what an analyst acts on: what
    label 1 means, how the model compares with the baselines, the targeting
    table (top 5-50 % contacted -> share of buyers reached, precision, lift),
    what the decision threshold amounts to; then the metrics under plain
    names with a glossary, training, figures and the export.

    Args:
        run_dir: a run directory written by ``python -m purchase_intent.train``.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
    """
    from purchase_intent import evaluate

    run_dir = check_run_dir(run_dir)
    history = _read_json(run_dir / "history.json")
    metrics = _read_json(run_dir / "metrics.json") or {}
    cfg = _read_json(run_dir / "config.json")
    schema = _read_json(run_dir / "schema.json")
    if history:
        plot_learning_curves(history, run_dir / "learning_curves.png")
    else:
        logger.info("No history.json in %s: no learning curves", run_dir)
    test = metrics.get("test") or {}
    predictions = run_dir / PREDICTIONS_FILE
    targeting = metrics.get("targeting")
    if predictions.exists():
        y, probs = load_predictions(predictions, (schema or {}).get("id", []))
        evaluate.plot_curves(y, probs, run_dir / "curves.png")
        evaluate.plot_calibration(y, probs, run_dir / "calibration.png")
        plot_lift_gain(y, probs, run_dir / "lift.png")
        model = evaluate.MODEL_NAME if evaluate.MODEL_NAME in probs else next(iter(probs))
        lift = lift_table(y, probs[model])
        targeting = targeting_summary(y, probs, model, (test.get(model) or {}).get("threshold"))
    else:
        logger.info("No %s in %s: ROC/PR, calibration and lift figures not rebuilt",
                    PREDICTIONS_FILE, run_dir)
        model = (targeting or {}).get("model") or (evaluate.MODEL_NAME if evaluate.MODEL_NAME in test
                                                    else next(iter(test), None))
        lift = None
    figures = [(f, caption) for f, caption in FIGURES.items() if (run_dir / f).exists()]
    export = (metrics.get("export") or {}).get("path")
    model_name = (cfg or {}).get("export", {}).get("model_name", "purchase_intent")
    commands = serving_commands(export, model_name) if export else {}
    splits = metrics.get("splits") or {}
    page = _Page(run_dir.name)
    page.paragraph(f"Run directory: `{run_dir.resolve()}`")

    # What can make the figures below mislead, first.
    warnings = list(metrics.get("warnings") or split_warnings(splits))  # older runs: the small-split ones
    at = (targeting or {}).get("at_threshold")
    if at and at["share_contacted"] > 0.5:
        warnings.append(
            f"The threshold labels {_pct(at['share_contacted'])} of the test customers as buyers: "
            "best F1 favours reaching buyers over precision. For a campaign of a fixed size, "
            "use a row of the targeting table (sort predictions_test.csv by probability) instead.")
    if warnings:
        page.heading("Warnings")
        for w in warnings:
            page.warning(w)

    # What an analyst acts on first.
    page.heading("In short")
    page.paragraph(label_sentence(schema))
    comparison = metrics.get("baseline_comparison") or {}  # baselines scored a sample of big splits
    if model in test:
        n_compared = (comparison.get("examples") or {}).get("test")
        page.paragraph(comparison_sentence(comparison.get("test") or test, model,
                                           n_compared or (splits.get("test") or {}).get("examples")))
        if n_compared:
            page.paragraph(f"(Every model on the same first {n_compared:,} test examples: the baselines "
                           "scored a sample; see Test metrics.)")
    if targeting:
        rows = targeting["table"]
        top20 = next((r for r in rows if abs(r["share_contacted"] - 0.2) < 1e-9), rows[len(rows) // 2])
        page.paragraph(
            f"Contacting the top {_pct(top20['share_contacted'])} of the {targeting['examples']:,} test "
            f"customers by probability reaches {_pct(top20['share_of_buyers_reached'])} of the "
            f"{targeting['buyers']:,} buyers, {top20['lift']:.1f} times as many as contacting "
            f"{_pct(top20['share_contacted'])} at random.")
    if at:
        page.paragraph(
            f"Decision threshold {at['threshold']:.3f} (chosen on validation for the best F1): "
            f"contacting everyone above it means contacting the top {_pct(at['share_contacted'])} "
            f"({at['customers_contacted']:,} of {targeting['examples']:,} test customers) and reaches "
            f"{_pct(at['share_of_buyers_reached'])} of the buyers, at precision "
            f"{_pct(at['precision'])} (lift {at['lift']:.2f}). This is the `purchase_label` column of "
            "the predictions files.")
    if targeting:
        page.heading(f"Targeting table: {targeting['model']} on the test split")
        page.paragraph("Customers sorted by predicted probability, most likely buyers first; contact the "
                       "top share. Random targeting reaches the same share of buyers as of customers "
                       "(lift 1.0).")
        header, body = targeting_rows(targeting)
        page.table(header, body)
        reach = targeting.get("share_of_buyers_reached_by_model") or {}
        if len(reach) > 1:
            keys = list(next(iter(reach.values())))
            page.paragraph("Share of all buyers reached by each model's top list:")
            page.table(["model"] + [k.replace("_", " ") for k in keys],
                       [[_model_name(m)] + [_pct(v[k]) for k in keys] for m, v in reach.items()])

    rows = _metrics_rows(metrics)
    if rows:
        page.heading("Test metrics")
        page.paragraph("Each model at the decision threshold chosen on the validation split (best F1). "
                       "Higher is better except log loss and calibration error.")
        page.table(["model"] + [METRIC_NAMES[c] for c in _METRIC_COLUMNS],
                   [[_model_name(r[0])] + r[1:] for r in rows])
        if comparison.get("test"):
            page.paragraph(sample_sentence(comparison, splits))
            page.table(["model"] + [METRIC_NAMES[c] for c in _METRIC_COLUMNS],
                       [[_model_name(r[0])] + r[1:] for r in _metrics_rows(comparison)])
        page.paragraph("Glossary:")
        page.table(["term", "meaning"], [[k, v] for k, v in GLOSSARY], align_left=True)
    training = metrics.get("training")
    page.heading("Training")
    epochs = epochs_sentence(history, metrics, cfg)
    if epochs:
        page.paragraph(epochs)
    final_step = calibration_sentence(metrics)
    if final_step:
        page.paragraph(final_step)
    if training:
        page.paragraph(
            f"Training: {training.get('examples', 0):,} examples, "
            f"{training.get('fit_seconds', float('nan')):.1f} s in fit "
            f"({training.get('examples_per_second', float('nan')):.0f} examples/s, "
            f"{training.get('replicas')} replica(s)).")
    if splits:
        page.table(["split", "examples", "buyers", "positive rate"],
                   [[k, f"{v['examples']:,}", f"{int(round(v['examples'] * v['positive_rate'])):,}",
                     f"{v['positive_rate']:.1%}"] for k, v in splits.items()])
    for name, caption in figures:
        page.heading(caption)
        page.image(name, caption)
    if lift is not None:
        page.heading(f"Lift table ({model}, test, deciles)")
        page.table(["group", "customers", "buyers", "buy rate", "lift", "share contacted", "gain"],
                   [[str(r.group), str(r.customers), str(r.buyers), f"{r.buy_rate:.1%}", f"{r.lift:.2f}",
                     f"{r.cumulative_share_contacted:.0%}", f"{r.cumulative_gain:.1%}"]
                    for r in lift.itertuples()])
    summary = _config_summary(cfg)
    if summary:
        page.heading("Configuration")
        page.table(["setting", "value"], [list(kv) for kv in summary])
        page.paragraph("Full configuration: `config.json`; feature schema: `schema.json`.")
    page.heading("Predictions and export")
    ids = (schema or {}).get("id") or []
    page.paragraph(
        f"`{PREDICTIONS_FILE}`: one row per test customer: "
        + (f"the id column(s) {', '.join(f'`{c}`' for c in ids)}, " if ids else
           "no id column (name them in the schema: `id: [customer_id]`), ")
        + f"`{TRUE_LABEL_COLUMN}` (what happened), each model's probability and `{PREDICTED_LABEL_COLUMN}` "
          "(1 = above the threshold). Sort by the model's column to get the contact list.")
    if export:
        page.paragraph(f"SavedModel: `{export}` (max |served - in-memory| = "
                       f"{metrics['export'].get('max_abs_diff', float('nan')):.1e}).")
        page.code("\n".join(f"# {k}\n{v}" for k, v in commands.items()))
    else:
        page.paragraph("No export in this run.")
    (run_dir / "report.md").write_text(page.markdown())
    out = run_dir / "report.html"
    out.write_text(page.html())
    logger.info("Report: %s (and report.md, %d figures)", out, len(figures))
    return out


class _Page:
    """A tiny document model written both as Markdown and as standalone HTML."""

    def __init__(self, title: str):
        self.title = f"Purchase-intent run {title}"
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("h", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]], align_left: bool = False) -> None:
        self.blocks.append(("table", (header, rows, align_left)))

    def warning(self, text: str) -> None:
        self.blocks.append(("warning", text))

    def image(self, src: str, alt: str) -> None:
        self.blocks.append(("img", (src, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h":
                out += [f"## {value}", ""]
            elif kind == "p":
                out += [value, ""]
            elif kind == "warning":
                out += [f"> **Warning:** {value}", ""]
            elif kind == "table":
                header, rows, left = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---" if i == 0 or left else "---:" for i in range(len(header)))
                           + "|")
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "img":
                src, alt = value
                out += [f"![{alt}]({src})", ""]
            elif kind == "code":
                out += ["```bash", value, "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        def inline(text: str) -> str:
            parts = html.escape(text).split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
               f"<title>{html.escape(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right}td:first-child,th:first-child{text-align:left}table.left td{text-align:left}"
               ".warning{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em 1em}img{max-width:100%}"
               "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h":
                out.append(f"<h2>{html.escape(value)}</h2>")
            elif kind == "p":
                out.append(f"<p>{inline(value)}</p>")
            elif kind == "warning":
                out.append(f"<p class='warning'><b>Warning:</b> {inline(value)}</p>")
            elif kind == "table":
                header, rows, left = value
                style = " class='left'" if left else ""
                out.append(f"<table{style}><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                           + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "img":
                src, alt = value
                out.append(f"<img src='{html.escape(src)}' alt='{html.escape(alt)}'>")
            elif kind == "code":
                out.append(f"<pre>{html.escape(value)}</pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


# -- command line ----------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.report",
        description="Rebuild the figures (learning curves, ROC/PR, calibration, lift) and "
                    "report.md / report.html of a training run from the files in its directory; "
                    "the model is not needed.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("run_dir", help="run directory written by python -m purchase_intent.train")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    try:
        out = build_report(args.run_dir)
    except (FileNotFoundError, ValueError) as e:
        return cli.fail(e)
    print(f"Report: {out}\nMarkdown: {out.with_suffix('.md')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
