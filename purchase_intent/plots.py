"""Figures: the package's one matplotlib entry point and the plots the report and the notebooks share.

:func:`_pyplot` chooses the backend for every module that draws
(:mod:`purchase_intent.evaluate`, :mod:`purchase_intent.data.explore`,
:mod:`purchase_intent.explain`, the report): the non-interactive ``Agg``
backend, which needs no display (servers, CI, ``python -m ...`` tools),
except in a notebook, whose inline backend is kept so that the figures show.

Every plot writes a PNG when given a path and returns it; without a path it
returns the (closed) figure, which a notebook displays once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent.targeting import lift_table


def _pyplot():
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():  # keep a notebook's inline backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def _finish(fig, path):
    """Saves and closes the figure; without a path, returns it closed (a notebook displays it once)."""
    plt = _pyplot()
    if path is not None:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig if path is None else Path(path)
