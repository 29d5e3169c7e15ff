"""Offline scoring with an exported version, no server: ``python -m purchase_intent.predict``.

Loads the SavedModel (with ``tensorflow_text`` imported, for the WordPiece
ops), reads ``assets.extra/schema.json`` and ``assets.extra/threshold.json``,
validates the input CSV with the schema (sequences as ``"|"``-delimited
strings, or the delimiter of the schema), scores it in batches with a
progress bar and writes the input columns plus ``purchase_probability`` and
``purchase_label`` (probability >= threshold).

Examples:

    python -m purchase_intent.predict --model runs/<run>/export/purchase_intent/1 \\
        --input customers.csv --output scored.csv

From Python:

>>> from purchase_intent.predict import Predictor
>>> predictor = Predictor("runs/<run>/export/purchase_intent/1")  # doctest: +SKIP
>>> predictor.predict(frame)  # doctest: +SKIP
array([0.12, 0.87, ...], dtype=float32)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent import cli, contract
from purchase_intent.data.readers import check_table_file
from purchase_intent.schema import FeatureSchema, SchemaError
from purchase_intent.scoring_io import (OUTPUT_HELP, default_output, output_columns,  # noqa: F401 (re-exported)
                                        read_threshold, write_scored_csv)

logger = logging.getLogger(__name__)

THRESHOLD_HELP = ("decision threshold for the purchase_label column: a number, or a threshold.json "
                  "such as <export>/assets.extra/threshold.json (default: the export's threshold.json)")


class Predictor:
    """An exported version loaded in process, scoring raw examples as TF Serving would.

    The export runs as TF Serving runs it (TF1 loader, Session, Grappler on:
    :class:`purchase_intent.serving.session.SessionModel`), so offline scores
    are the online ones.

    Args:
        version_dir: str or Path. A version folder (``.../purchase_intent/<version>``)
            or a model folder holding numbered versions (the highest is used).
        threshold: float, str or None. Decision threshold, a number or the path
            of a ``threshold.json``; None reads ``assets.extra/threshold.json``
            of the export (0.5 if absent).

    Raises:
        FileNotFoundError: no SavedModel or no ``assets.extra/schema.json``.
    """

    def __init__(self, version_dir: str | Path, threshold: float | str | None = None):
        from purchase_intent.contract import existing_versions
        from purchase_intent.serving.session import SessionModel

        path = Path(version_dir)
        if not (path / "saved_model.pb").exists() and existing_versions(path):
            path = path / str(existing_versions(path)[-1])
        if not (path / "saved_model.pb").exists():
            raise FileNotFoundError(f"{version_dir}: no saved_model.pb; give a version folder "
                                    "such as runs/<run>/export/purchase_intent/1")
        schema_file = path / "assets.extra" / "schema.json"
        if not schema_file.exists():
            raise FileNotFoundError(f"{schema_file} is missing: the export has no feature schema")
        self.version_dir = path
        self.schema = FeatureSchema.load(schema_file)
        contract_file = path / "assets.extra" / contract.CONTRACT_FILE
        # Events sent per sequence: the contract's (None for an export without one: every event).
        self.max_events = (int(contract.read_contract(contract_file)["max_events"])
                           if contract_file.exists() else None)
        threshold_file = path / "assets.extra" / "threshold.json"
        if threshold is None:
            threshold = (float(json.loads(threshold_file.read_text())["threshold"])
                         if threshold_file.exists() else 0.5)
        self.threshold = float(read_threshold(threshold))
        self._model = SessionModel(path)

    def predict(self, df: pd.DataFrame, *, batch_size: int = 512, validate: bool = True,
                progress: bool | None = False) -> np.ndarray:
        """Purchase probabilities of the rows of ``df`` (raw columns named as in the schema).

        Args:
            df: raw examples; sequences as lists or delimited strings.
            batch_size: int. Rows per call of the serving function.
            validate: bool. Run ``schema.validate`` first (False: ``df`` is already validated).
            progress: bool or None. tqdm bar; None shows it on a terminal only.

        Returns:
            float32 array of shape ``[len(df)]``.

        Raises:
            SchemaError: the frame does not match the schema (column and row named).
        """
        from tqdm import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        valid = self.schema.validate(df, require_label=False, where="input") if validate else df
        out = []
        with tqdm(total=len(valid), unit=" rows", desc="scoring", file=sys.stderr,
                  disable=None if progress is None else not progress) as bar:
            for start in range(0, len(valid), batch_size):
                chunk = valid.iloc[start:start + batch_size]
                arrays = contract.frame_to_arrays(chunk, self.schema, max_events=self.max_events)
                out.append(np.asarray(self._model(arrays)[contract.OUTPUT_KEY]).reshape(-1))
                bar.update(len(chunk))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_labels(self, df: pd.DataFrame, **kwargs) -> np.ndarray:
        """0/1 labels at the export's threshold."""
        return (self.predict(df, **kwargs) >= self.threshold).astype(np.int64)


def predict_csv(version_dir: str | Path, input_path: str | Path, output_path: str | Path, *,
                batch_size: int = 512, threshold: float | str | None = None,
                keep_columns: list[str] | None = None, progress: bool | None = None) -> int:
    """Scores a CSV chunk by chunk into ``output_path`` (written to ``.partial``, then renamed).

    The output holds the id columns of the schema (first), the other input
    columns (or ``keep_columns``), ``purchase_probability`` and
    ``purchase_label`` at ``threshold`` (a number or a ``threshold.json``;
    None: the export's).

    Returns:
        The number of rows scored.

    Raises:
        SchemaError: a chunk fails validation, or the file has no rows.
    """
    predictor = Predictor(version_dir, threshold)
    rows = write_scored_csv(
        input_path, output_path, predictor.schema,
        lambda valid: predictor.predict(valid, batch_size=batch_size, validate=False),
        batch_size=batch_size, threshold=predictor.threshold, keep_columns=keep_columns,
        progress=progress)
    logger.info("Scored %d rows of %s with %s (threshold %.4f) into %s", rows, input_path,
                predictor.version_dir, predictor.threshold, output_path)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.predict",
        description="Score a CSV with an exported model in process (no server). Writes the schema's "
                    f"id columns, the input columns, {contract.PROBABILITY_COLUMN} and "
                    f"{contract.PREDICTED_LABEL_COLUMN} (probability >= threshold).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model", required=True,
                   help="exported version folder, e.g. runs/<run>/export/purchase_intent/1 "
                        "(a model folder picks its highest version)")
    p.add_argument("--input", required=True,
                   help="CSV of raw examples named as in the schema; sequences as '|'-delimited strings")
    p.add_argument("--output", default=None, help=OUTPUT_HELP)
    p.add_argument("--batch-size", type=int, default=512,
                   help="rows per chunk and per model call (default: 512)")
    p.add_argument("--threshold", default=None, help=THRESHOLD_HELP)
    p.add_argument("--keep-columns", default=None,
                   help="comma-separated input columns to copy to the output besides the id columns "
                        "(default: all)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only at a terminal anyway)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    inp = Path(args.input)
    output = Path(args.output) if args.output else default_output(inp)
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    try:
        check_table_file(inp)  # before the model (and TensorFlow) loads
        rows = predict_csv(args.model, inp, output, batch_size=args.batch_size,
                           threshold=args.threshold, keep_columns=keep,
                           progress=False if args.no_progress else None)
    except (SchemaError, FileNotFoundError, ValueError) as e:
        return cli.fail(e)
    print(f"Scored {rows} rows -> {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
