"""UCI Online Shoppers Purchasing Intention: one example per session.

12,330 sessions of an online store over one year (Sakar, Polat, Katircioglu &
Kastro 2019), label ``Revenue`` (the session ended in a purchase, 15.5 %).
Numeric page-visit counts, durations and Google-Analytics rates, and
categorical month, operating system, browser, region, traffic type, visitor
type and weekend flag; the feature roles are declared in
``schemas/online_shoppers.yaml``, so a table of the same layout needs only
that schema file.

The file has 125 exact duplicate rows. They are kept (identical sessions, in
the main short bounced visits, are real and the published figures use all
12,330 rows) and their number is logged.

Split (fixed, independent of ``train.seed``): the data has no timestamps
beyond the month, so a random split with seed :data:`SPLIT_SEED`, stratified
by label: 70 % train, 15 % validation, 15 % test (``data.validation_fraction``
and ``data.test_fraction``).

Data: CC BY 4.0, see :data:`ATTRIBUTION`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.schema import FeatureSchema, SchemaError

logger = logging.getLogger(__name__)

ATTRIBUTION = ("UCI Online Shoppers Purchasing Intention (Sakar et al. 2019), "
               "https://archive.ics.uci.edu/dataset/468, CC BY 4.0")
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "online_shoppers.yaml"
SCHEMA = FeatureSchema.load(SCHEMA_FILE)
SPLIT_SEED = 20190601


def read_online_shoppers(path: str | Path) -> pd.DataFrame:
    """Reads the raw CSV(.gz); checks the schema columns are there; logs duplicates.

    Raises:
        SchemaError: unreadable file or missing columns.
    """
    from purchase_intent.data.readers import read_raw

    path = Path(path)
    df = read_raw(path, string_columns=["Month", "VisitorType"])
    missing = [c for c in SCHEMA.feature_names + [SCHEMA.label] if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing} of the Online Shoppers layout; "
                          f"the table has {list(df.columns)[:30]}")
    logger.info("%s: %d sessions, %d exact duplicate rows (kept)", path.name, len(df),
                int(df.duplicated().sum()))
    return df


def load_online_shoppers(cfg: DataConfig, path: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The train / validation / test frames (raw columns, not yet validated).

    Args:
        cfg: data configuration (``path``, ``validation_fraction``, ``test_fraction``).
        path: the raw file; default: :func:`purchase_intent.data.resolve_data_file`.

    Raises:
        SchemaError: file not found or invalid.
    """
    from purchase_intent.data.builtin import resolve_data_file, stratified_split_frames

    path = Path(path) if path is not None else resolve_data_file("online_shoppers", cfg.path)
    frames = stratified_split_frames(read_online_shoppers(path), cfg, SPLIT_SEED, SCHEMA.label, path.name)
    logger.info("Online Shoppers (%s)", ATTRIBUTION)
    return frames
