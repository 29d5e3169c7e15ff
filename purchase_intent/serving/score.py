"""Batch scoring of a CSV against a served model: ``python -m purchase_intent.serving.score``.

Streams the input in chunks of ``--batch-size`` rows (pandas ``chunksize``),
validates each chunk with the feature schema, sends one Predict request per
chunk and appends the chunk with a ``purchase_probability`` column (and
``purchase_label`` with ``--threshold``) to the output. Memory stays bounded
by one chunk, so the input may be larger than RAM.

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
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from purchase_intent import cli
from purchase_intent.predict import LABEL_COLUMN, PROBABILITY_COLUMN, write_scored_csv  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)


def read_threshold(value: str | float | None) -> float | None:
    """A float, or the path of a ``threshold.json`` (``{"threshold": 0.42}``)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    path = Path(str(value))
    if not path.exists():
        raise ValueError(f"--threshold {value!r} is neither a number nor an existing threshold.json")
    return float(json.loads(path.read_text())["threshold"])


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
        keep_columns: list of str or None. Input columns copied to the output (None: all).
        progress: bool or None. tqdm bar; None shows it on a terminal only.

    Returns:
        The number of rows scored.

    Raises:
        SchemaError: a chunk fails validation (column and row named).
        ServingError: the server refused a request.
    """
    from purchase_intent.serving.client import frame_to_arrays

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
                    "gRPC, in chunks, with a progress bar.",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--target", required=True, help="host:port of the gRPC endpoint")
    p.add_argument("--input", required=True, help="CSV of raw examples")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument("--batch-size", type=int, default=256, help="rows per chunk and per request")
    p.add_argument("--model-name", default="purchase_intent", help="served model name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--version", type=int, default=None, help="a specific model version")
    g.add_argument("--version-label", default=None, help="a version label, e.g. stable or canary")
    p.add_argument("--schema", default=None,
                   help="schema JSON/YAML (e.g. assets.extra/schema.json); default: from the signature")
    p.add_argument("--threshold", default=None,
                   help="decision threshold, a number or a threshold.json; adds purchase_label")
    p.add_argument("--keep-columns", default=None,
                   help="comma-separated input columns to copy to the output (default: all)")
    p.add_argument("--sequence-length", type=int, default=None,
                   help="events per sequence in each request (default: the client's, 200); "
                        "keep it >= the model's data.max_sequence_length and data.max_history_length")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline per request, seconds")
    p.add_argument("--max-retries", type=int, default=3, help="retries when the server is UNAVAILABLE")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the scoring command; returns the exit code (0 ok, 1 serving error, 2 bad input)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from purchase_intent.schema import FeatureSchema, SchemaError
    from purchase_intent.serving.client import DEFAULT_SEQUENCE_LENGTH, PurchaseIntentClient, ServingError

    try:
        schema = FeatureSchema.load(args.schema) if args.schema else None
        threshold = read_threshold(args.threshold)
    except (ValueError, OSError, KeyError) as e:
        return cli.fail(e)
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    client = PurchaseIntentClient(args.target, args.model_name, version=args.version,
                                  version_label=args.version_label, timeout=args.timeout,
                                  max_retries=args.max_retries, schema=schema,
                                  sequence_length=args.sequence_length or DEFAULT_SEQUENCE_LENGTH)
    try:
        score_csv(client, args.input, args.output, batch_size=args.batch_size,
                  threshold=threshold, keep_columns=keep)
    except ServingError as e:
        logger.error("%s", e)
        return 1
    except (SchemaError, ValueError, OSError) as e:
        return cli.fail(e)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
