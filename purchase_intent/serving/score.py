"""Batch scoring of a CSV against a served model: ``python -m purchase_intent.serving.score``.

Streams the input in chunks of ``--batch-size`` rows (pandas ``chunksize``),
validates each chunk with the feature schema, sends one Predict request per
chunk and appends the chunk (the schema's id columns first) with a
``purchase_probability`` column and ``purchase_label`` (probability >=
threshold) to the output. Memory stays bounded by one chunk, so the input
may be larger than RAM. The options are those of ``purchase_intent.predict``:
``--output`` defaults to ``<input stem>.scored.csv``; ``--threshold`` takes a
number or a ``threshold.json`` and defaults to the export's
(``threshold.json`` beside ``--schema``); without either, a served model's
threshold is unknown and no ``purchase_label`` is written.

The schema comes from ``--schema`` (e.g. the export's
``assets.extra/schema.json``, which also gives the sequence delimiter) or,
without it, from the served signature (TF Serving's metadata has only the
signature: string ``[batch]``, string ``[batch, events]``, float ``[batch]``).

Examples:

    python -m purchase_intent.serving.score --target 127.0.0.1:8500 \\
        --input sessions.csv --output scored.csv --threshold export/purchase_intent/3/assets.extra/threshold.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent import cli
from purchase_intent.contract import PREDICTED_LABEL_COLUMN, PROBABILITY_COLUMN
from purchase_intent.scoring_io import OUTPUT_HELP, default_output, read_threshold, write_scored_csv

logger = logging.getLogger(__name__)


def default_threshold(schema_path: str | Path | None) -> float | None:
    """The export's threshold: ``threshold.json`` beside ``--schema`` (``assets.extra/``), else None."""
    if not schema_path:
        return None
    candidate = Path(schema_path).with_name("threshold.json")
    return read_threshold(candidate) if candidate.is_file() else None


def score_csv(client, input_path: str | Path, output_path: str | Path, *, batch_size: int = 256,
              threshold: float | None = None, keep_columns: list[str] | None = None,
              progress: bool | None = None) -> int:
    """Scores ``input_path`` chunk by chunk into ``output_path``.

    The output is written to ``<output>.partial`` and renamed at the end, so
    a failed run never leaves a truncated file under the final name.

    Args:
        client: a :class:`~purchase_intent.serving.client.PurchaseIntentClient`.
        input_path: CSV of raw examples (sequences as delimited strings).
        output_path: CSV written: kept input columns + probability (+ label).
        batch_size: int. Rows per chunk and per Predict request.
        threshold: float or None. Adds ``purchase_label = probability >= threshold``.
        keep_columns: list of str or None. Input columns copied to the output besides
            the schema's id columns, which always come first (None: all).
        progress: bool or None. tqdm bar; None shows it on a terminal only.

    Returns:
        The number of rows scored.

    Raises:
        SchemaError: a chunk fails validation (column and row named).
        ServingError: the server refused a request.
    """
    from purchase_intent.contract import frame_to_arrays

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    schema = client.schema

    def score(valid: pd.DataFrame) -> np.ndarray:
        probs = client.predict_arrays(frame_to_arrays(valid, schema, client.sequence_length))
        if probs.shape != (len(valid),):
            raise RuntimeError(f"the server returned {probs.shape} probabilities for "
                               f"{len(valid)} rows")
        return probs

    rows = write_scored_csv(input_path, output_path, schema, score, batch_size=batch_size,
                            threshold=threshold, keep_columns=keep_columns, progress=progress)
    logger.info("Scored %d rows of %s into %s", rows, input_path, output_path)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.serving.score",
        description="Score a CSV of raw examples against TF Serving (or the local server) over "
                    "gRPC, in chunks, with a progress bar. Writes the schema's id columns, the input "
                    f"columns, {PROBABILITY_COLUMN} and {PREDICTED_LABEL_COLUMN} (probability >= threshold).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--target", required=True, help="host:port of the gRPC endpoint")
    p.add_argument("--input", required=True, help="CSV of raw examples")
    p.add_argument("--output", default=None, help=OUTPUT_HELP)
    p.add_argument("--batch-size", type=int, default=256,
                   help="rows per chunk and per request (default: 256)")
    p.add_argument("--model-name", default="purchase_intent",
                   help="served model name (default: purchase_intent)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--version", type=int, default=None,
                   help="a specific model version (default: the latest served)")
    g.add_argument("--version-label", default=None, help="a version label, e.g. stable or canary")
    p.add_argument("--schema", default=None,
                   help="schema JSON/YAML, e.g. <export>/assets.extra/schema.json (default: inferred "
                        "from the served signature, without id columns or delimiter)")
    p.add_argument("--threshold", default=None,
                   help="decision threshold for the purchase_label column: a number, or a "
                        "threshold.json such as <export>/assets.extra/threshold.json (default: the "
                        "export's threshold.json beside --schema; without it no purchase_label)")
    p.add_argument("--keep-columns", default=None,
                   help="comma-separated input columns to copy to the output besides the id columns "
                        "(default: all)")
    p.add_argument("--sequence-length", type=int, default=None,
                   help="events per sequence in each request (default: the client's, 200); "
                        "keep it >= the model's data.max_sequence_length and data.max_history_length")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="deadline per request, seconds (default: 30)")
    p.add_argument("--max-retries", type=int, default=3,
                   help="retries when the server is UNAVAILABLE (default: 3)")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def _contract_beside(schema_path: str | None, name: str) -> Path | None:
    """The export's contract file beside ``--schema <export>/assets.extra/schema.json``, if there is one."""
    path = Path(schema_path).with_name(name) if schema_path else None
    return path if path is not None and path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Runs the scoring command; returns the exit code (0 ok, 1 serving error, 2 bad input)."""
    args = parse_args(argv)
    cli.setup_logging()
    from purchase_intent.schema import FeatureSchema, SchemaError
    from purchase_intent.contract import CONTRACT_FILE
    from purchase_intent.serving.client import FROM_CONTRACT, PurchaseIntentClient, ServingError

    try:
        schema = FeatureSchema.load(args.schema) if args.schema else None
        threshold = (read_threshold(args.threshold) if args.threshold is not None
                     else default_threshold(args.schema))
    except (ValueError, OSError, KeyError) as e:
        return cli.fail(e)
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    output = Path(args.output) if args.output else default_output(args.input)
    if threshold is None:
        logger.info("No threshold (give --threshold or --schema <export>/assets.extra/schema.json): "
                    "no %s column", PREDICTED_LABEL_COLUMN)
    client = PurchaseIntentClient(args.target, args.model_name, version=args.version,
                                  version_label=args.version_label, timeout=args.timeout,
                                  max_retries=args.max_retries, schema=schema,
                                  sequence_length=args.sequence_length or FROM_CONTRACT,
                                  contract=_contract_beside(args.schema, CONTRACT_FILE))
    try:
        rows = score_csv(client, args.input, output, batch_size=args.batch_size,
                         threshold=threshold, keep_columns=keep)
    except ServingError as e:
        logger.error("%s", e)
        return 1
    except (SchemaError, ValueError, OSError) as e:
        return cli.fail(e)
    finally:
        client.close()
    print(f"Scored {rows} rows -> {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
