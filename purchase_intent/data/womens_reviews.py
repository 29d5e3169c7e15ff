"""Women's E-Commerce Clothing Reviews: will the reviewer recommend the item?

23,486 reviews (Kaggle, CC0), label ``Recommended IND`` (82 % positive; an
intent-to-recommend label, not a purchase). Features, declared in
``schemas/womens_reviews.yaml``:

* scalar text: ``title`` and ``review_text`` (missing -> "");
* numeric: ``age``, ``positive_feedback_count``;
* categorical: ``clothing_id``, ``division_name``, ``department_name``, ``class_name``.

``Rating`` is left out on purpose: it nearly is the label (Rating >= 4 agrees
with the label on 93.6 % of the reviews; 3 stars splits 59/41), so with it
every model wins from one column and the text branch has nothing left to show.

The original column names contain spaces, which cannot be Keras input or
serving-signature names, so they are renamed to snake_case
(:data:`COLUMN_NAMES`); the unnamed index column is dropped.

Split (fixed, independent of ``train.seed``): random with seed
:data:`SPLIT_SEED`, stratified by label, 70 / 15 / 15 (``data.validation_fraction``,
``data.test_fraction``). ``data.max_examples`` keeps a seeded sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.schema import FeatureSchema, SchemaError

logger = logging.getLogger(__name__)

ATTRIBUTION = ("Women's E-Commerce Clothing Reviews (Kaggle, nicapotato), CC0")
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "womens_reviews.yaml"
SCHEMA = FeatureSchema.load(SCHEMA_FILE)
SPLIT_SEED = 20180201
COLUMN_NAMES = {
    "Clothing ID": "clothing_id",
    "Age": "age",
    "Title": "title",
    "Review Text": "review_text",
    "Rating": "rating",
    "Recommended IND": "recommended",
    "Positive Feedback Count": "positive_feedback_count",
    "Division Name": "division_name",
    "Department Name": "department_name",
    "Class Name": "class_name",
}


def read_womens_reviews(path: str | Path) -> pd.DataFrame:
    """Reads the raw CSV(.gz) and renames the columns to :data:`COLUMN_NAMES`.

    Raises:
        SchemaError: unreadable file or missing columns.
    """
    from purchase_intent.data.readers import read_raw

    path = Path(path)
    df = read_raw(path, string_columns=["Title", "Review Text", "Clothing ID", "Division Name",
                                        "Department Name", "Class Name"])
    df = df.rename(columns=COLUMN_NAMES)
    missing = [c for c in SCHEMA.feature_names + [SCHEMA.label] if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing} of the reviews layout (after renaming "
                          f"{COLUMN_NAMES}); the table has {list(df.columns)[:30]}")
    logger.info("%s: %d reviews; %d without title, %d without review text", path.name, len(df),
                int((df["title"].fillna("") == "").sum()), int((df["review_text"].fillna("") == "").sum()))
    return df[[c for c in COLUMN_NAMES.values() if c in df.columns]]


def load_womens_reviews(cfg: DataConfig, path: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The train / validation / test frames (renamed columns, not yet validated).

    Raises:
        SchemaError: file not found or invalid.
    """
    from purchase_intent.data.builtin import resolve_data_file, stratified_split_frames

    path = Path(path) if path is not None else resolve_data_file("womens_reviews", cfg.path)
    frames = stratified_split_frames(read_womens_reviews(path), cfg, SPLIT_SEED, SCHEMA.label, path.name)
    logger.info("Women's clothing reviews (%s)", ATTRIBUTION)
    return frames
