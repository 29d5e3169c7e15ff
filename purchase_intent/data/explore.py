"""Data exploration for ``notebooks/01_explore_data.ipynb``: a summary, an overview figure, a leakage check.

* :func:`data_summary`: one row per split (examples, positive rate, events
  per example, text lengths, missing values);
* :func:`plot_data_overview`: class balance, sequence lengths, event types,
  text lengths and numeric features by label;
* :func:`check_time_split`: the leakage check of the Online Retail time
  split, recomputed from the raw invoice lines (``AssertionError`` on any leak).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent.plots import _finish, _pyplot
from purchase_intent.schema import FeatureSchema


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
