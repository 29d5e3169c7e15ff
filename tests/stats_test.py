"""Streaming statistics: partitions merged equal the whole; the preprocessor adapted from them equals pandas'."""

import numpy as np
import pytest

from purchase_intent import stats
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.preprocessing import Preprocessor
from purchase_intent.stats import Moments, Reservoir, SplitStats


@pytest.fixture(scope="module")
def frame():
    df = SCHEMA.validate(make_synthetic(600, seed=3))
    df.loc[5, "session_minutes"] = np.nan  # a missing value is left out of the moments and samples
    for i in range(10, 40, 3):  # the contract: empty events (one trailing in one column only) and
        n = len(df.at[i, "item_id"])  # float-looking categories are counted as the graph reads them
        for col in ("item_id", "event_type", "item_title"):
            df.at[i, col] = list(df.at[i, col]) + ([""] if col != "item_id" else ["sku-late"]) + [""]
        df.at[i, "event_type"][n // 2] = ""
        df.at[i, "country"] = ["3", "3.0", "-2.000"][i % 3]
    return df


def test_moments_merge_is_chan():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, 1001)
    merged = Moments.of(x[:10]).merge(Moments.of(x[10:500])).merge(Moments.of(x[500:]))
    assert merged.count == len(x)
    assert merged.mean == pytest.approx(x.mean(), rel=1e-12)
    assert merged.std == pytest.approx(x.std(), rel=1e-12)


def test_reservoir_is_exact_under_capacity_and_close_above():
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 1, 20_000)
    small = Reservoir.of(x[:50], 100).merge(Reservoir.of(x[50:90], 100))
    np.testing.assert_array_equal(np.sort(small.values), np.sort(x[:90]))
    parts = [Reservoir.of(p, 2_000, seed=i) for i, p in enumerate(np.array_split(x, 7))]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    assert merged.seen == len(x) and len(merged.values) == 2_000
    # Rank error of a 2,000-sample quantile: sd <= 0.5 / sqrt(2000) = 1.1 %; allow 4 sd.
    for q in (0.1, 0.5, 0.9):
        rank = float(np.mean(x <= np.quantile(merged.values, q)))
        assert abs(rank - q) < 0.045


def test_three_partitions_merge_to_the_whole(frame):
    whole = SplitStats.of_frame(frame, SCHEMA, bow_events=24, capacity=10_000)
    parts = [SplitStats.of_frame(frame.iloc[a:b], SCHEMA, bow_events=24, capacity=10_000, seed=i)
             for i, (a, b) in enumerate([(0, 150), (150, 420), (420, 600)])]
    merged = stats.merge([parts[2], parts[0], parts[1]])  # order does not matter
    assert (merged.examples, merged.positives) == (whole.examples, whole.positives)
    assert merged.values == whole.values
    assert merged.documents == whole.documents
    assert merged.bow_terms == whole.bow_terms and merged.bow_documents == whole.bow_documents
    for name in SCHEMA.numeric:
        for t in stats.TRANSFORMS:
            a, b = merged.moments[name][t], whole.moments[name][t]
            assert a.count == b.count
            assert a.mean == pytest.approx(b.mean, rel=1e-12)
            assert a.m2 == pytest.approx(b.m2, rel=1e-10)
        np.testing.assert_array_equal(np.sort(merged.samples[name].values), np.sort(whole.samples[name].values))
    # A file round trip keeps everything.
    again = SplitStats.from_dict(merged.to_dict())
    assert again.values == merged.values and again.bow_documents == merged.bow_documents


def test_quantiles_of_merged_small_reservoirs_within_tolerance(frame):
    parts = [SplitStats.of_frame(frame.iloc[i::3], SCHEMA, capacity=150, seed=i) for i in range(3)]
    merged = stats.merge(parts)
    x = frame["price_seen"].to_numpy(np.float64)
    for q in (0.25, 0.5, 0.75):
        rank = float(np.mean(x <= np.quantile(merged.samples["price_seen"].values, q)))
        assert abs(rank - q) < 0.15  # sd <= 0.5 / sqrt(150) = 4.1 %


def test_statistics_merged_from_chunks_adapt_as_the_whole_frame(frame):
    """Prepare's per-chunk statistics, merged, give the preprocessor of the whole frame's (exact) ones."""
    from purchase_intent.text import load_text_encoder

    tok, _ = load_text_encoder("tiny", texts=list(frame["query"]))
    kwargs = dict(max_sequence_length=12, history_length=24, numeric_bins=4, bag_of_words=60,
                  min_frequency=2, tokenizer=tok)
    expected = Preprocessor.adapt(SCHEMA, frame, **kwargs).get_config()
    parts = [SplitStats.of_frame(frame.iloc[a:b], SCHEMA, bow_events=24) for a, b in [(0, 200), (200, 600)]]
    got = Preprocessor.adapt_from_stats(SCHEMA, stats.merge(parts), **kwargs).get_config()
    for key in ("vocabularies", "bow_vocabulary", "numeric_edges"):
        assert got[key] == expected[key], key
    for key in ("numeric_mean", "numeric_std", "bow_idf"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-9, err_msg=key)
    for name in SCHEMA.sequences:
        np.testing.assert_allclose(got["sequence_idf"][name], expected["sequence_idf"][name], rtol=1e-12)


def test_adapt_from_stats_refuses_a_bag_of_words_over_other_events(frame):
    from purchase_intent.schema import FeatureSchema

    schema = FeatureSchema(label="label", event_text=["item_title"], sequences=["item_id", "event_type"])
    s = SplitStats.of_frame(frame.head(50), schema, bow_events=10)
    with pytest.raises(ValueError, match="last 24 events"):
        Preprocessor.adapt_from_stats(schema, s, max_sequence_length=12, history_length=24, bag_of_words=10)


def test_pruned_counters_keep_the_top_values(frame):
    whole = SplitStats.of_frame(frame, SCHEMA, bow_events=24)
    parts = [SplitStats.of_frame(frame.iloc[i::3], SCHEMA, bow_events=24).prune(40) for i in range(3)]
    merged = stats.merge(parts).prune(40)
    assert len(merged.values["item_id"]) == 40 and len(merged.bow_terms) == 40
    for name in ("item_id", "item_title"):
        for value, count in merged.values[name].items():
            assert count <= whole.values[name][value]  # lower bounds
    assert set(merged.documents["item_id"]) <= set(merged.values["item_id"])
    # Few distinct values: pruning changes nothing.
    assert merged.values["device"] == whole.values["device"]
    top = [v for v, _ in whole.bow_terms.most_common(5)]
    assert set(top) <= set(merged.bow_terms)
