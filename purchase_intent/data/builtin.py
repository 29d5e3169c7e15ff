"""The built-in datasets' raw files and their fixed split.

Where the raw files of ``online_retail``, ``online_shoppers`` and
``womens_reviews`` are (:func:`resolve_data_file`), and the seeded split
stratified by label of the Online Shoppers and reviews tables
(:func:`stratified_split_frames`). Shared by the dataset registry
(:mod:`purchase_intent.data`, which re-exports these names) and the dataset
modules it names, which import them from here: no dataset module imports the
registry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from purchase_intent.config import DataConfig
from purchase_intent.schema import SchemaError, _as_label_column


def stratified_split(labels: np.ndarray, validation_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Row indices of a seeded split stratified by label (sorted within each split)."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(validation_fraction * len(idx)))
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def stratified_split_frames(df: pd.DataFrame, cfg: DataConfig, seed: int, label: str,
                            where: str) -> dict[str, pd.DataFrame]:
    """:func:`stratified_split` of a raw table by its ``label`` column, with the fractions of ``cfg``.

    The fixed split of the built-in Online Shoppers and reviews tables (row
    order kept within each split).

    Raises:
        SchemaError: a label is not 0/1 or true/false (``where`` names the table, the row is named).
    """
    labels = _as_label_column(df[label], label, where).to_numpy()
    idx = stratified_split(labels, cfg.validation_fraction, cfg.test_fraction, seed)
    return {k: df.iloc[v] for k, v in idx.items()}


# -- built-in datasets: where their raw files are ----------------------------
DATA_ENV = "PURCHASE_INTENT_DATA"
# dataset name -> (folder in the shared data layout, file name)
DATA_FILES = {
    "online_retail": ("online_retail", "online_retail.csv.gz"),
    "online_shoppers": ("online_shoppers", "online_shoppers_intention.csv.gz"),
    "womens_reviews": ("womens_clothing_reviews", "womens_clothing_ecommerce_reviews.csv.gz"),
}


def default_data_root():
    """``../shared/data`` next to the repository, if that folder exists, else None."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "shared" / "data"
    return root if root.is_dir() else None


def resolve_data_file(name: str, path: str = ""):
    """The raw file of built-in dataset ``name``.

    Looks at ``path`` (the file itself, or a directory holding it directly or
    in its dataset folder), else ``$PURCHASE_INTENT_DATA`` (same forms), else
    ``../shared/data`` next to the repository.

    Raises:
        SchemaError: the file is not found; the message lists where it looked.
    """
    import os
    from pathlib import Path

    folder, filename = DATA_FILES[name]
    tried = []
    for source, base in (("data.path", path), (DATA_ENV, os.environ.get(DATA_ENV, "")),
                         ("../shared/data", default_data_root() or "")):
        if not base:
            continue
        base = Path(base).expanduser()
        for candidate in (base, base / filename, base / folder / filename):
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
        if source != "../shared/data":  # an explicit location that is wrong is an error
            break
    raise SchemaError(
        f"{name}: raw file {filename!r} not found (looked at {tried or 'nothing'}). Give its path "
        f"with --set data.path=FILE_OR_DIR or the environment variable {DATA_ENV}="
        f"DIR (holding {folder}/{filename})")
