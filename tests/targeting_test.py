"""targeting.py: the targeting table, the reach of the threshold and the lift table, by hand."""

import numpy as np
import pytest

from purchase_intent import targeting

# 10 customers, 4 buyers; probabilities in a known order (ties at 0.5 keep the file order).
Y10 = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0])
P10 = np.array([0.10, 0.90, 0.50, 0.80, 0.50, 0.20, 0.30, 0.40, 0.05, 0.60])
# ranked: rows 1 (0.9, buyer), 3 (0.8, buyer), 9 (0.6), 2 (0.5), 4 (0.5, buyer), 7 (0.4, buyer), ...


def test_targeting_table_equals_a_hand_computation():
    t = targeting.targeting_table(Y10, P10)
    assert list(t["share_contacted"]) == [0.05, 0.10, 0.20, 0.30, 0.50]
    # top 5 % of 10 rounds to 1 customer (at least one is contacted); 10 % -> 1; 20 % -> 2; 30 % -> 3; 50 % -> 5
    assert list(t["customers_contacted"]) == [1, 1, 2, 3, 5]
    assert list(t["buyers_reached"]) == [1, 1, 2, 2, 3]
    np.testing.assert_allclose(t["share_of_buyers_reached"], [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])
    np.testing.assert_allclose(t["precision"], [1, 1, 1, 2 / 3, 3 / 5])
    np.testing.assert_allclose(t["lift"], [2.5, 2.5, 2.5, (2 / 3) / 0.4, 1.5])  # buy rate 4 / 10
    np.testing.assert_allclose(t["min_probability"], [0.9, 0.9, 0.8, 0.6, 0.5])
    at = targeting.threshold_reach(Y10, P10, 0.45)  # 0.9, 0.8, 0.6, 0.5, 0.5 -> 5 customers, 3 buyers
    assert at["customers_contacted"] == 5 and at["buyers_reached"] == 3
    assert at["share_contacted"] == pytest.approx(0.5)
    assert at["share_of_buyers_reached"] == pytest.approx(0.75)
    assert at["precision"] == pytest.approx(0.6) and at["lift"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="share contacted"):
        targeting.targeting_table(Y10, P10, shares=[0.0])


def test_lift_table_and_gain():
    y = np.array([1] * 30 + [0] * 70)
    p = np.linspace(1, 0, 100)  # perfect ranking
    table = targeting.lift_table(y, p)
    assert list(table["buyers"][:3]) == [10, 10, 10] and table["buyers"][3:].sum() == 0
    assert table["lift"].iloc[0] == pytest.approx(1 / 0.3)
    assert table["cumulative_gain"].iloc[2] == pytest.approx(1.0)
    assert table["cumulative_share_contacted"].iloc[-1] == pytest.approx(1.0)
    random = targeting.lift_table(y, np.full(100, 0.5))
    assert random["cumulative_gain"].iloc[-1] == pytest.approx(1.0)


def test_weighted_auc_is_roc_auc_of_each_bootstrap_resample():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = (rng.random(60) < 0.35).astype(int)
    p = np.round(rng.random(60) + 0.3 * y, 1)  # many ties
    draws = [rng.integers(0, 60, 60) for _ in range(25)]
    counts = np.array([np.bincount(idx, minlength=60) for idx in draws], np.float64)
    got = targeting.weighted_auc(y > 0, p, counts)
    np.testing.assert_allclose(got, [roc_auc_score(y[idx], p[idx]) for idx in draws], rtol=0, atol=1e-12)
    # bootstrap_auc draws the same resamples as a loop over roc_auc_score would (seeded)
    r = np.random.default_rng(0)
    loop = [roc_auc_score(y[i], p[i]) for i in (r.integers(0, 60, 60) for _ in range(200))
            if y[i].min() != y[i].max()]
    out = targeting.bootstrap_auc(y, {"p": p}, n=200, seed=0)
    np.testing.assert_allclose(out["models"]["p"], np.percentile(loop, [2.5, 97.5]), rtol=0, atol=1e-12)
