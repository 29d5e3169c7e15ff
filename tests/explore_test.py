"""data/explore.py: the data summary and overview figure of notebook 01, and the time-split leakage check."""

from pathlib import Path

import pytest

from plots_test import assert_real_image
from purchase_intent.data import explore

REPO = Path(__file__).resolve().parents[1]


def test_data_overview_and_summary(tmp_path):
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    df = SCHEMA.validate(make_synthetic(300))
    splits = {"train": df.iloc[:200], "validation": df.iloc[200:250], "test": df.iloc[250:]}
    summary = explore.data_summary(splits, SCHEMA)
    assert list(summary.index) == ["train", "validation", "test"]
    assert summary.loc["train", "examples"] == 200
    assert_real_image(explore.plot_data_overview(splits, SCHEMA, tmp_path / "overview.png"))


def test_time_split_check_catches_a_leak():
    from purchase_intent.config import DataConfig
    from purchase_intent.data.online_retail import clean_events, load_online_retail

    sample = REPO / "tests" / "data" / "online_retail_sample.csv.gz"
    from purchase_intent.data.readers import read_raw

    cfg = DataConfig(horizon_days=60, cutoff_step_days=30, max_train_cutoffs=2)
    frames = load_online_retail(cfg, path=sample)
    events = clean_events(read_raw(sample, string_columns=["InvoiceNo", "StockCode", "Description",
                                                           "InvoiceDate", "Country"]))
    checks = explore.check_time_split(frames, events, cfg.horizon_days)
    assert (checks["checks"] == "passed").all() and len(checks) == 4
    leaky = {k: v.copy() for k, v in frames.items()}
    leaky["test"]["n_lines"] = leaky["test"]["n_lines"] + 1  # as if a line at/after T were counted
    with pytest.raises(AssertionError, match="n_lines"):
        explore.check_time_split(leaky, events, cfg.horizon_days)
