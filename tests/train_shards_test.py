"""Training from a prepared directory gives the metrics of training on the same table in memory."""

import numpy as np
import pandas as pd
import pytest

from purchase_intent import prepare, train
from purchase_intent.data.synthetic import SCHEMA, make_synthetic

N = 1_000


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards_table")
    df = make_synthetic(N, seed=11)
    df["split"] = np.random.default_rng(1).choice(["train", "validation", "test"], N, p=[0.6, 0.2, 0.2])
    pd.DataFrame(df).to_parquet(root / "sessions.parquet", row_group_size=250)
    SCHEMA.save(root / "schema.json")
    return root


def test_trained_from_shards_matches_in_memory(table, tmp_path):
    common = ["--preset", "tiny", "--epochs", "2", "--no-export", "--set", "data.split_column=split",
              "--set", "data.shuffle_buffer=2000"]
    prepare.main(["--input", str(table / "sessions.parquet"), "--schema", str(table / "schema.json"),
                  "--output", str(tmp_path / "prepared"), "--preset", "tiny", "--set", "data.split_column=split",
                  "--shard-examples", "100"])
    shards = train.main(["--data", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / "a"), *common])
    memory = train.main(["--data", str(table / "sessions.parquet"), "--set", f"data.schema={table / 'schema.json'}",
                         "--output-dir", str(tmp_path / "b"), *common])
    for split, figures in memory["splits"].items():
        assert shards["splits"][split]["examples"] == figures["examples"]
        assert shards["splits"][split]["positive_rate"] == pytest.approx(figures["positive_rate"])
    assert shards["training"]["examples"] == memory["training"]["examples"]
    a, b = shards["test"]["purchase_intent"], memory["test"]["purchase_intent"]
    print("shards", a, "in memory", b)
    assert abs(a["roc_auc"] - b["roc_auc"]) < 0.05, (a, b)
    assert a["roc_auc"] > 0.6
    # Baselines fitted on the same training rows give the same figures.
    assert shards["test"]["logistic_regression"]["roc_auc"] == pytest.approx(
        memory["test"]["logistic_regression"]["roc_auc"], abs=1e-6)
