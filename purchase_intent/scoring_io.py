"""Scoring files: the CSV in, the scored CSV out, the decision threshold.

The file input and output shared by offline scoring in process
(:mod:`purchase_intent.predict`) and scoring against a server
(:mod:`purchase_intent.serving.score`); both import it, it imports neither:
how rows are scored is the ``score`` function each passes to
:func:`write_scored_csv`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from purchase_intent import contract
from purchase_intent.data.readers import iter_table
from purchase_intent.schema import FeatureSchema, SchemaError, check_delimiters

OUTPUT_HELP = "CSV to write (default: <input stem>.scored.csv beside the input)"


def read_threshold(value: str | float | None) -> float | None:
    """A decision threshold from a number or the path of a ``threshold.json`` (``{"threshold": 0.42}``).

    Args:
        value: a number, a string holding one, a path, or None.

    Returns:
        The threshold in [0, 1], or None for None.

    Raises:
        ValueError: neither a number nor a readable ``threshold.json``, or outside [0, 1].
    """
    if value is None:
        return None
    try:
        threshold = float(value)
        where = "--threshold"
    except (TypeError, ValueError):
        path = Path(str(value))
        if not path.is_file():
            raise ValueError(f"--threshold {value!r} is neither a number nor an existing "
                             "threshold.json") from None
        try:
            threshold = float(json.loads(path.read_text())["threshold"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: expected JSON such as {{\"threshold\": 0.42}} "
                             f"({type(e).__name__}: {e})") from None
        where = str(path)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{where}: a threshold is a probability in [0, 1], got {threshold}")
    return threshold


def default_output(input_path: str | Path) -> Path:
    """``<input stem>.scored.csv`` beside the input (``customers.csv`` -> ``customers.scored.csv``)."""
    inp = Path(input_path)
    name = inp.name
    for suffix in (".csv.gz", ".csv", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return inp.with_name(name + ".scored.csv")


def write_scored_csv(input_path: str | Path, output_path: str | Path, schema: FeatureSchema,
                     score: Callable[[pd.DataFrame], np.ndarray], *, batch_size: int,
                     threshold: float | None = None, keep_columns: list[str] | None = None,
                     progress: bool | None = None) -> int:
    """Reads a CSV chunk by chunk, scores each chunk and writes it with the probabilities.

    Shared by :func:`purchase_intent.predict.predict_csv` (in process) and
    :func:`purchase_intent.serving.score.score_csv` (over gRPC). The output is
    written to ``<output>.partial`` and renamed at the end, so a failed run
    never leaves a truncated file under the final name.

    Args:
        schema: validates each chunk; its string columns are read as str.
        score: maps a validated chunk to its ``[len(chunk)]`` probabilities.
        batch_size: int. Rows per chunk.
        input_path, output_path, threshold, keep_columns, progress: as in
            :func:`~purchase_intent.serving.score.score_csv`.

    Returns:
        The number of rows scored.

    Raises:
        SchemaError: a chunk fails validation, a kept column is missing, or the file has no rows.
    """
    from tqdm import tqdm

    output_path = Path(output_path)
    partial = output_path.with_name(output_path.name + ".partial")
    rows = 0
    try:
        with tqdm(unit=" rows", desc="scoring", file=sys.stderr,
                  disable=None if progress is None else not progress) as bar:
            for chunk, valid in validated_chunks(input_path, schema, batch_size, keep_columns):
                probs = score(valid)
                out = output_columns(chunk, schema, keep_columns)
                out = out.assign(**{contract.PROBABILITY_COLUMN: probs})
                if threshold is not None:
                    out[contract.PREDICTED_LABEL_COLUMN] = (probs >= threshold).astype(np.int64)
                out.to_csv(partial, mode="w" if rows == 0 else "a", header=rows == 0, index=False)
                rows += len(chunk)
                bar.update(len(chunk))
        if rows == 0:
            raise SchemaError(f"{input_path}: no rows to score")
        os.replace(partial, output_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return rows


def validated_chunks(input_path: str | Path, schema: FeatureSchema, chunk_rows: int,
                     keep_columns: list[str] | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """The rows of a scoring table, chunk by chunk, as read and validated for scoring.

    The training reader (ids, text, categories and sequences as the strings
    in the file: an id ``"007"`` stays ``"007"``; duplicate headers and
    mislabelled files refused), the delimiter check on the first chunk, then
    ``schema.validate`` without a label. What :func:`write_scored_csv` and
    ``python -m purchase_intent.campaign`` read.

    Args:
        input_path: CSV or Parquet table of raw examples.
        schema: the export's feature schema.
        chunk_rows: int. Rows per chunk.
        keep_columns: optional columns each chunk must hold (``--keep-columns``).

    Yields:
        ``(raw chunk, validated chunk)``; the raw chunk keeps the file's strings.

    Raises:
        SchemaError: a chunk fails validation, a kept column is missing, or the CSV cannot be decoded.
    """
    # The training reader: ids, text, categories and sequences as the strings in the file (an id
    # column with a blank stays "900000", not 900000.0), duplicate headers and mislabelled files refused.
    reader = iter_table(input_path, schema, chunk_rows=chunk_rows)
    first = True
    try:
        for _, chunk in reader:
            if keep_columns is not None:
                missing = [c for c in keep_columns if c not in chunk.columns]
                if missing:
                    raise SchemaError(f"{input_path}: --keep-columns {missing} are not in the "
                                      f"file; it has {list(chunk.columns)}")
            if first and all(c in chunk.columns for c in schema.feature_names):
                # Before validate: another delimiter would otherwise surface as a row's event counts.
                check_delimiters(chunk, schema, str(input_path), scoring=True)
            first = False
            yield chunk, schema.validate(chunk, require_label=False, where=str(input_path))
    except (UnicodeError, pd.errors.ParserError) as e:
        raise SchemaError(f"{input_path}: cannot read the CSV ({type(e).__name__}: {e}); "
                          "re-save it as \"CSV UTF-8\"") from e


def output_columns(chunk: pd.DataFrame, schema: FeatureSchema,
                   keep_columns: list[str] | None = None) -> pd.DataFrame:
    """The input columns a predictions file keeps: the schema's ``id`` columns first, then the rest.

    Args:
        chunk: raw input rows.
        schema: names the id columns (those absent from ``chunk`` are skipped).
        keep_columns: the other columns to keep (None: all of them).
    """
    ids = [c for c in schema.id if c in chunk.columns]
    rest = [c for c in (chunk.columns if keep_columns is None else keep_columns) if c not in ids]
    return chunk[ids + rest]
