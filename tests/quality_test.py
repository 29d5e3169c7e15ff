"""benchmarks/quality.py: quality.md and quality.json rebuilt from compare.json files (no training)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from purchase_intent import baselines, compare

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["quality"]


@pytest.fixture(scope="module")
def compare_json(tmp_path_factory):
    """A real compare.json on synthetic data, with a stand-in for the (slow) fusion model."""
    def fake_fusion(cfg, schema, splits, **kwargs):
        rng = np.random.default_rng(0)
        probs = {k: 1 / (1 + np.exp(-(2 * splits[k][schema.label].to_numpy() - 1 + rng.normal(0, 1.5, len(splits[k])))))
                 for k in ("validation", "test")}
        return {"val": probs["validation"], "test": probs["test"], "epochs": [1], "seconds": 0.0}

    out = tmp_path_factory.mktemp("work") / "online_retail"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare, "fit_fusion", fake_fusion)
        mp.setitem(baselines.GRIDS, "logistic_regression", {"C": [1.0]})
        compare.main(["--preset", "tiny", "--data", "synthetic", "--set", "data.synthetic_examples=500",
                      "--set", "model.sequence_encoder=cnn", "--set", "model.dropout=0.3",
                      "--subsets", "sequence+numeric,all", "--peers", "logistic_regression",
                      "--bootstrap", "50", "--output-dir", str(out)])
    return out.parent


def test_render_only_writes_md_and_json(quality, compare_json, tmp_path, monkeypatch):
    # The dataset's own setting is not an "extra" override; the run's other --set values are.
    monkeypatch.setattr(quality.SETTINGS["online_retail"], "overrides", ["model.sequence_encoder=cnn"])
    md = tmp_path / "q.md"
    # Sections other benchmarks wrote into the file (small_data.py, recalibration.py) are kept.
    md.with_suffix(".json").write_text(json.dumps({"datasets": {}, "small_data": {"online_retail": {"rows": 1}}}))
    quality.main(["--datasets", "online_retail", "--work-dir", str(compare_json), "--out", str(md),
                  "--render-only"])
    doc = json.loads(md.with_suffix(".json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"{c} in quality.json"))
    assert doc["small_data"] == {"online_retail": {"rows": 1}}
    d = doc["datasets"]["online_retail"]
    rep = json.loads((compare_json / "online_retail" / "compare.json").read_text())
    res = rep["subsets"]["all"]["results"]
    assert d["fusion"]["roc_auc"] == res[compare.FUSION]["roc_auc"]
    lo, hi = d["fusion"]["roc_auc_ci95"]
    assert lo <= d["fusion"]["roc_auc"] <= hi
    assert d["best_peer"]["name"] == rep["subsets"]["all"]["best_peer"] == "logistic_regression"
    assert d["difference"]["observed"] == pytest.approx(res[compare.FUSION]["roc_auc"] - res["logistic_regression"]["roc_auc"])
    assert d["difference"]["ci95"][0] <= d["difference"]["ci95"][1]
    for name, m in d["models"].items():
        assert {"roc_auc", "roc_auc_ci95", "log_loss", "ece"} <= set(m), name
    assert set(d["ablations"]) == {"sequence+numeric", "all"}
    row = d["ablations"]["sequence+numeric"]
    assert row["best_peer"]["name"] == "logistic_regression" and len(row["difference"]["ci95"]) == 2
    assert isinstance(d["target"]["met"], bool)
    assert "model.dropout=0.3" in d["overrides"]

    text = md.read_text()
    assert "| ECE |" in text and "log loss" in text
    assert "Extra overrides of this run" in text and "`model.dropout=0.3`" in text
    assert "`model.sequence_encoder=cnn`" not in text.split("Extra overrides of this run")[1].splitlines()[0]


def test_settings_give_compare_arguments_with_extra_overrides(quality):
    args = quality.SETTINGS["online_shoppers"].compare_args(["model.dropout=0.3"])
    assert args[:2] == ["--seeds", "5"]
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    assert sets[-1] == "model.dropout=0.3" and sets[:-1] == quality.SETTINGS["online_shoppers"].overrides
    with pytest.raises(SystemExit):
        quality.main(["--render-only", "--set", "model.dropout=0.3"])


def test_keep_others_reruns_one_dataset_and_keeps_the_rest(quality, compare_json, tmp_path, monkeypatch):
    """--keep-others: the datasets not rerun keep their section (peers table, ablations, targets) from the .json."""
    monkeypatch.setattr(quality.SETTINGS["online_retail"], "overrides", ["model.sequence_encoder=cnn"])
    md = tmp_path / "q.md"
    quality.main(["--datasets", "online_retail", "--work-dir", str(compare_json), "--out", str(md), "--render-only"])
    alone = md.read_text()
    doc = json.loads(md.with_suffix(".json").read_text())
    kept = dict(doc["datasets"]["online_retail"], title="Kept section", measured="2026-01-02",
                timing_note="on a busy machine")
    doc["datasets"] = {"online_shoppers": kept}  # an earlier run of another dataset
    md.with_suffix(".json").write_text(json.dumps(doc))
    quality.main(["--datasets", "online_retail", "--work-dir", str(compare_json), "--out", str(md), "--render-only",
                  "--keep-others"])
    both = md.read_text()
    assert list(json.loads(md.with_suffix(".json").read_text())["datasets"]) == ["online_shoppers", "online_retail"]
    kept_part, retail_part = both.split("\n## Kept section")[1].split("\n## ")[0], alone.split("\n## ")[1]
    assert "measured 2026-01-02 (on a busy machine)." in kept_part
    table = [line for line in retail_part.splitlines() if line.startswith("|")]
    assert len(table) > 6 and all(line in kept_part for line in table)  # the same peers and ablation rows
    assert retail_part.split("\n", 1)[1] in both  # the rerun section as rendered alone


def test_feature_counts_leave_out_id_columns(quality, compare_json):
    rep = json.loads((compare_json / "online_retail" / "compare.json").read_text())
    before = quality.summarise("online_retail", rep)["ablations"]["all"]["features"]
    assert before == sum(len(rep["subsets"]["all"]["features"].get(k, [])) for k in
                         ("text", "event_text", "sequences", "numeric", "categorical")) > 0
    rep["subsets"]["all"]["features"]["id"] = ["customer_id", "cutoff"]  # passed through, never a model input
    assert quality.summarise("online_retail", rep)["ablations"]["all"]["features"] == before
