"""The files of a run folder the report reads: the predictions file and the check that a folder is a run's.

* :func:`save_predictions` / :func:`load_predictions`: ``predictions_test.csv``
  (:data:`PREDICTIONS_FILE`: ids, labels, each model's probabilities and the
  ``purchase_label`` decision), written by ``train``, read by the report,
  the tools and the notebooks;
* :func:`load_ids`: the id columns of that file, as written, and
  :func:`date_span`: the first and last date of a date id column (when the
  test data is from);
* :func:`load_drivers`: the tables ``python -m purchase_intent.explain``
  wrote into ``RUN_DIR/explain/`` (:data:`EXPLAIN_DIR`), if any;
* :func:`check_run_dir`: the folder of a training run (it holds one of
  :data:`RUN_FILES`), or an error that says what the folder is instead;
* :func:`_read_json`: a run file's JSON, None when the file is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from purchase_intent.contract import PREDICTED_LABEL_COLUMN, TRUE_LABEL_COLUMN

PREDICTIONS_FILE = "predictions_test.csv"


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


def load_ids(path: str | Path, id_columns: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """The id columns of a file of :func:`save_predictions` that it has, as strings as written."""
    header = pd.read_csv(path, nrows=0).columns
    names = [c for c in id_columns if c in header]
    return pd.read_csv(path, usecols=names, dtype=str) if names else pd.DataFrame(index=[])


_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"


def date_span(ids: pd.DataFrame) -> tuple[str, str, str] | None:
    """``(column, first, last)`` of the first column whose every value is an ISO date
    (``YYYY-MM-DD``, a time may follow), else None."""
    for column in ids.columns:
        values = ids[column].dropna().astype(str)
        if len(values) and values.str.match(_ISO_DATE).all():
            return column, str(values.min()), str(values.max())
    return None


EXPLAIN_DIR = "explain"  # python -m purchase_intent.explain ... --output-dir RUN_DIR/explain


def load_drivers(run_dir: str | Path) -> dict[str, Any] | None:
    """What ``python -m purchase_intent.explain --output-dir RUN_DIR/explain`` wrote, or None.

    Returns:
        ``{"folder", "importance"`` (``importance.csv``: feature -> ``importance``,
        ``std``; None if absent), ``"modalities"`` (``occlusion_summary.csv``; None if
        absent), ``"rows"`` (rows of ``occlusion.csv``: the examples explained; None if absent)}``.
    """
    folder = Path(run_dir) / EXPLAIN_DIR
    tables = {name: pd.read_csv(folder / f"{name}.csv", index_col=0) if (folder / f"{name}.csv").exists() else None
              for name in ("importance", "occlusion_summary")}
    if all(t is None for t in tables.values()):
        return None
    rows = None
    if (folder / "occlusion.csv").exists():
        with open(folder / "occlusion.csv") as f:
            rows = max(sum(1 for _ in f) - 1, 0)
    return {"folder": folder, "importance": tables["importance"], "modalities": tables["occlusion_summary"],
            "rows": rows}


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


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None
