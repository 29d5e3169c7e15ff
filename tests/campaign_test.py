"""Tests of purchase_intent.campaign: the cut, the intervals, the reasons and the command end to end."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from purchase_intent import campaign
from purchase_intent.schema import FeatureSchema
from purchase_intent.stats import SplitStats


# -- the cut -----------------------------------------------------------------
def _brute_force(p, value, cost, cap=None):
    s = np.sort(p)[::-1]
    profits = [sum(s[:n] * value - cost) for n in range(len(p) + 1)]
    limit = len(p) if cap is None else min(cap, len(p))
    return int(np.argmax(profits[:limit + 1]))


def test_contacts_is_the_argmax_of_cumulative_expected_profit_within_caps():
    p = np.array([0.9, 0.05, 0.5, 0.2, 0.01])  # value 10, cost 1: 8, -0.5, 4, 1, -0.9
    assert campaign.choose_contacts(p, 10, 1) == 3  # 8 + 4 + 1 = 13, the most
    assert campaign.choose_contacts(p, 10, 1, budget=2.5) == 2  # at most floor(2.5 / 1) contacts
    assert campaign.choose_contacts(p, 10, 1, budget=100) == 3  # a large budget: still the optimum
    assert campaign.choose_contacts(p, 10, 1, contacts=4) == 4
    assert campaign.choose_contacts(p, 10, 1, contacts=99) == 5
    assert campaign.choose_contacts(p, 1, 1) == 0  # no one is worth a contact
    assert campaign.choose_contacts(p, 10, 0) == 5  # free contacts: everyone
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.beta(0.5, 3, size=int(rng.integers(1, 40)))
        value, cost = float(rng.uniform(1, 50)), float(rng.uniform(0.1, 5))
        budget = float(rng.uniform(0, 30))
        assert campaign.choose_contacts(q, value, cost) == _brute_force(q, value, cost)
        assert campaign.choose_contacts(q, value, cost, budget=budget) == \
            _brute_force(q, value, cost, int(np.floor(budget / cost + 1e-9)))


def test_decision_figures_and_intervals():
    p = np.array([0.9, 0.05, 0.5, 0.2, 0.01])
    d = campaign.decide(p, 10, 1)
    assert d["contacts"] == 3 and d["rule"] == "optimum"
    assert d["expected_buyers"] == pytest.approx(1.6)
    assert d["expected_profit"] == pytest.approx(13.0)
    low, high = d["buyers_interval"]
    assert 0 <= low <= 1.6 <= high <= 3 and d["interval_method"] == "exact"
    assert d["profit_interval"] == pytest.approx([10 * low - 3, 10 * high - 3])
    capped = campaign.decide(p, 10, 1, budget=2)
    assert capped["contacts"] == 2 and capped["rule"] == "budget" and capped["best_contacts"] == 3
    assert "budget" in campaign.decision_sentence(capped)
    assert campaign.decision_sentence(campaign.decide(p, 1, 1)).startswith("Contact no one")


def test_poisson_binomial_exact_and_normal_agree():
    rng = np.random.default_rng(1)
    p = rng.beta(1, 4, size=3000)
    pmf = campaign.poisson_binomial_pmf(p)
    assert pmf.sum() == pytest.approx(1.0)
    assert np.dot(np.arange(len(pmf)), pmf) == pytest.approx(p.sum())
    low, high, method = campaign.buyers_interval(p)
    assert method == "exact"
    big = np.concatenate([p, p])  # beyond EXACT_MAX: the normal approximation
    nlow, nhigh, nmethod = campaign.buyers_interval(big)
    assert nmethod == "normal"
    # Doubling the customers doubles the mean and the variance: the half-width grows by sqrt(2).
    assert (nhigh - nlow) == pytest.approx((high - low) * np.sqrt(2), rel=0.05)


# -- reasons -----------------------------------------------------------------
SCHEMA = FeatureSchema(label="label", numeric=["raiser", "lowerer"], categorical=["country"])


def _stats():
    frame = pd.DataFrame({"raiser": np.arange(10.0), "lowerer": np.arange(10.0),
                          "country": ["FR"] * 6 + ["DE"] * 4, "label": [0, 1] * 5})
    return SplitStats.of_frame(SCHEMA.validate(frame), SCHEMA)


def _fake_score(frame):
    """Planted: 'raiser' raises the probability, 'lowerer' lowers it, 'country' DE raises it a little."""
    z = 0.4 * frame["raiser"].to_numpy(np.float64) - 0.4 * frame["lowerer"].to_numpy(np.float64) \
        + 0.3 * (frame["country"].to_numpy(object) == "DE")
    return 1 / (1 + np.exp(-z))


def test_reasons_follow_the_sign_of_the_attribution():
    groups = campaign.feature_groups(SCHEMA, _stats())
    assert [(g.name, g.typical) for g in groups] == [("raiser", 4.5), ("lowerer", 4.5), ("country", "FR")]
    frame = SCHEMA.validate(pd.DataFrame({"raiser": [9.0, 9.0, 4.5, 1.0], "lowerer": [9.0, 4.5, 4.5, 9.0],
                                          "country": ["FR", "DE", "FR", "FR"]}), require_label=False)
    p = _fake_score(frame)
    calls = []
    contrib = campaign.attribute(lambda f: calls.append(len(f)) or _fake_score(f), frame, groups, p,
                                 batch_size=2, progress=False)
    assert contrib[0, 0] > 0 and contrib[0, 1] < 0  # the planted signs
    assert contrib[2].tolist() == [0.0, 0.0, 0.0]  # every feature typical: nothing rescored
    assert sum(calls) == 3 + 2 + 1  # only rows away from the typical value are scored again
    top = campaign.top_reasons(contrib)
    words = campaign.reason_columns(frame, groups, top)
    assert [w[0] for w in words] == ["raiser: 9 (typical 4.5)", "", ""]  # the lowerer is never a reason
    assert [w[1] for w in words] == ["raiser: 9 (typical 4.5)", "country: DE", ""]
    assert [w[2] for w in words] == ["", "", ""]
    assert [w[3] for w in words] == ["", "", ""]  # below typical: lowers p, no reason
    labelled = campaign.reason_columns(frame, groups, top, {"raiser": "raised {value} times"})
    assert labelled[0][0] == "raised 9 times"


def test_sequence_and_text_reasons_in_words():
    schema = FeatureSchema(label="label", text=["query"], sequences=["item_id", "event_type"])
    frame = schema.validate(pd.DataFrame({"query": ["cheap red dress"], "item_id": ["a|b|a|c"],
                                          "event_type": ["view|view|view|cart"]}), require_label=False)
    stats = SplitStats.of_frame(schema.validate(pd.DataFrame(
        {"query": ["x"], "item_id": ["a|b|c|d"], "event_type": ["view|cart|view|view"], "label": [1]})), schema)
    groups = campaign.feature_groups(schema, stats)
    assert [g.name for g in groups] == ["events", "text"] and groups[0].item_column == "item_id"
    assert campaign.reason_text(groups[0], frame, 0) == "viewed a (2 times), c; 4 events"
    assert campaign.reason_text(groups[1], frame, 0) == 'query: "cheap red dress"'
    occluded = campaign.occlude(frame, groups[0])
    assert occluded["item_id"].iat[0] == [] and occluded["event_type"].iat[0] == []


# -- the command -------------------------------------------------------------
def _export(run_dir):
    return run_dir / "export" / "purchase_intent" / "1"


def _run(args):
    return subprocess.run([sys.executable, "-m", "purchase_intent.campaign", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=600)


def test_a_customer_in_several_rows_is_refused_naming_the_rows(tmp_path):
    """Monthly snapshots given as "the current customers": each row would be ranked and contacted as a
    customer of its own, so the buyers and profit expected would count them twice."""
    from purchase_intent.schema import FeatureSchema, SchemaError

    schema = FeatureSchema(label="y", numeric=["x"], id=["customer_id"])
    df = pd.DataFrame({"customer_id": ["7", "8", "9", "7.0", "", ""], "x": [1, 2, 3, 4, 5, 6]})
    df.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(SchemaError, match=r"c.csv: 1 id\(s\) of column 'customer_id' are in more than one row "
                                          r"\(2 rows; e.g. '7' in spreadsheet rows 2 and 5, header = row 1\)"):
        campaign.read_customers(tmp_path / "c.csv", schema, chunk_rows=2)  # across chunks
    df.drop(index=3).to_csv(tmp_path / "c.csv", index=False)  # rows without an id: not one customer
    ids, frame = campaign.read_customers(tmp_path / "c.csv", schema, chunk_rows=2)
    assert ids["customer_id"].fillna("").tolist() == ["7", "8", "9", "", ""] and len(frame) == 5


def test_cli_end_to_end_keeps_ids_as_strings(user_csv_run, tmp_path):
    run_dir, _, csv, _ = user_csv_run
    df = pd.read_csv(csv, dtype=str).drop(columns=["label"]).head(40)
    df["customer_id"] = ["007", "0042"] + [f"{i:05d}" for i in range(2, 40)]
    inp = tmp_path / "customers.csv"
    df.to_csv(inp, index=False)
    out = tmp_path / "out"
    result = _run(["--model", _export(run_dir), "--input", inp, "--output", out, "--cost-per-contact", 1,
                   "--margin", 0.25, "--order-value", 20, "--budget", 12])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Contact ")
    contacts = pd.read_csv(out / "contacts.csv", dtype=str, keep_default_na=False)
    assert list(contacts.columns) == ["customer_id", *campaign.OUTPUT_COLUMNS]
    assert set(contacts["customer_id"]) == set(df["customer_id"])  # "007" stays "007"
    assert {"007", "0042"} <= set(contacts["customer_id"])
    assert contacts["rank"].astype(int).tolist() == list(range(1, 41))
    p = contacts["purchase_probability"].astype(float).to_numpy()
    assert np.all(np.diff(p) <= 0)
    report = json.loads((out / "campaign.json").read_text())
    d = report["decision"]
    assert d["value_per_purchase"] == pytest.approx(5.0) and d["contacts"] <= 12
    assert contacts["contact"].astype(int).sum() == d["contacts"]
    assert d["contacts"] == campaign.choose_contacts(p, 5.0, 1.0, budget=12)
    assert np.allclose(contacts["expected_value"].astype(float), p * 5 - 1, atol=1e-3)
    # Reasons: only where the probability is raised, and filled from reason_1 on.
    r1, r3 = contacts["reason_1"], contacts["reason_3"]
    assert (r1 != "").any() and not ((r1 == "") & (r3 != "")).any()
    page = (out / "campaign.html").read_text()
    assert report["sentence"] in page or report["sentence"].split(":")[0] in page
    assert "data:image/png;base64," in page and "Model version 1" in page
    assert f"<td>{contacts['customer_id'].iat[0]}</td>" in page  # the top of the list, ids as written
    assert report["model"]["test_roc_auc"] is not None


def test_cli_bad_input_exits_2(user_csv_run, tmp_path):
    run_dir, _, csv, _ = user_csv_run
    model = _export(run_dir)
    bad = tmp_path / "bad.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["label", "device"]).head(5).to_csv(bad, index=False)
    result = _run(["--model", model, "--input", bad, "--output", tmp_path / "o", "--cost-per-contact", 1,
                   "--value-per-purchase", 10])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "device" in result.stderr
    assert "Traceback" not in result.stderr
    for args in (["--cost-per-contact", 1],  # no value per purchase
                 ["--cost-per-contact", -1, "--value-per-purchase", 10],
                 ["--cost-per-contact", 1, "--margin", 0.3]):  # a margin without an order value
        result = _run(["--model", model, "--input", csv, "--output", tmp_path / "o", *args])
        assert result.returncode == 2, args
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "o" / "contacts.csv").exists()
