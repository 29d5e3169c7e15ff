"""In-session prefixes of a raw clickstream: no future event in the inputs, labels, split, errors.

The property tests compare the vectorised builder with a plain per-session
reference implementation over many seeded random logs (unsorted rows, equal
timestamps, purchases at the first event, events after the purchase,
missing prices and session-level values).
"""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent.config import DataConfig, get_config
from purchase_intent.data import load_splits
from purchase_intent.data.clickstream import (DERIVED_NUMERIC, SESSION_START, build_prefixes,
                                              derived_numeric, live_example, prefix_schema,
                                              read_clickstream, split_sessions)
from purchase_intent.data.synthetic import (CLICKSTREAM_COLUMNS, CLICKSTREAM_SCHEMA,
                                            CLICKSTREAM_SCHEMA_FILE, make_synthetic_clickstream)
from purchase_intent.schema import FeatureSchema, SchemaError

FIXTURE = Path(__file__).parent / "data" / "clickstream_sample.csv.gz"
FIXTURE_CFG = DataConfig(**CLICKSTREAM_COLUMNS)

# Random logs: "event_id" is unique per event, so every listed value names one event.
RANDOM_SCHEMA = FeatureSchema(label="bought", sequences=["item", "event_type", "event_id"],
                              event_text=["title"], categorical=["device"], numeric=["loyalty"])
TYPES = np.array(["view", "cart", "purchase", "wish"])


def random_log(rng: np.random.Generator) -> pd.DataFrame:
    """A random log: session 0 never buys, session 1 buys; rows shuffled; equal times common."""
    n_sessions = int(rng.integers(2, 25))
    sizes = rng.integers(1, 13, n_sessions)
    sid = np.repeat([f"{s:03d}" if s % 2 else f"sess-{s}" for s in range(n_sessions)], sizes)
    session = np.repeat(np.arange(n_sessions), sizes)
    types = rng.choice(TYPES, len(sid), p=[0.55, 0.2, 0.15, 0.1]).astype(object)
    types[(session == 0) & (types == "purchase")] = "view"
    types[sizes[0] + rng.integers(0, sizes[1])] = "purchase"
    seconds = rng.integers(0, 30, len(sid)) + 1000 * session  # ties are common
    n = len(sid)
    log = pd.DataFrame({
        "sid": sid,
        "t": pd.Timestamp("2024-05-06 22:59:50") + pd.to_timedelta(seconds, unit="s"),
        "event_type": types,
        "item": [f"i{v}" for v in rng.integers(0, 4, n)],
        "event_id": [f"e{i}" for i in range(n)],
        "title": [f"title {i}" for i in range(n)],
        "price": np.where(rng.random(n) < 0.8, rng.integers(1, 9, n).astype(float), np.nan),
        "device": np.where(rng.random(n) < 0.7, rng.choice(["mobile", "desktop"], n), None),
        "loyalty": np.where(rng.random(n) < 0.7, rng.integers(0, 5, n).astype(float), np.nan),
    })
    return log.iloc[rng.permutation(n)].reset_index(drop=True)


def random_cfg(rng: np.random.Generator) -> DataConfig:
    every = int(rng.integers(0, 4))
    at = list(rng.choice(["cart", "wish", "view"], int(rng.integers(0 if every else 1, 3)), replace=False))
    return DataConfig(format="events", session_column="sid", time_column="t", price_column="price",
                      prefix_every=every, prefix_at=at,
                      max_prefixes_per_session=int(rng.choice([0, 0, 1, 2])),
                      max_sequence_length=int(rng.integers(1, 7)), max_history_length=int(rng.integers(0, 9)))


def reference_prefixes(log: pd.DataFrame, cfg: DataConfig) -> dict[str, dict]:
    """Per-session loop in plain Python: cut event id -> expected example (all cuts, before any cap)."""
    by_session: dict[str, list[dict]] = {}
    for i, event in enumerate(log.to_dict("records")):
        by_session.setdefault(event["sid"], []).append({**event, "row": i})
    expected = {}
    for sid, events in by_session.items():
        events.sort(key=lambda e: (e["t"], e["row"]))  # by time; ties keep file order
        types = [e["event_type"] for e in events]
        first_buy = types.index("purchase") if "purchase" in types else len(types)
        for i in range(first_buy):
            if not ((cfg.prefix_every and (i + 1) % cfg.prefix_every == 0) or types[i] in cfg.prefix_at):
                continue
            seen = events[:i + 1]
            prices = [e["price"] for e in seen if not np.isnan(e["price"])]
            devices = [e["device"] for e in seen if not pd.isna(e["device"])]
            loyalty = [e["loyalty"] for e in seen if not np.isnan(e["loyalty"])]
            cut_t = seen[-1]["t"]
            expected[seen[-1]["event_id"]] = {
                "sid": sid, "cut_t": cut_t, "position": i, "first_buy": first_buy,
                "event_id": [e["event_id"] for e in seen][-cfg.events_kept():],
                "item": [e["item"] for e in seen][-cfg.events_kept():],
                "label": int(first_buy < len(types)),
                "prefix_events": i + 1,
                "prefix_seconds": (cut_t - seen[0]["t"]).total_seconds(),
                "prefix_last_gap_seconds": (cut_t - seen[i - 1]["t"]).total_seconds() if i else 0.0,
                "prefix_distinct_items": len({e["item"] for e in seen}),
                "prefix_hour": cut_t.hour, "prefix_weekday": cut_t.weekday(),
                "prefix_price_mean": float(np.mean(prices)) if prices else np.nan,
                "prefix_price_last": prices[-1] if prices else np.nan,
                "device": devices[-1] if devices else "",
                "loyalty": loyalty[-1] if loyalty else np.nan,
            }
    return expected


def _same(a, b) -> bool:
    return (np.isnan(a) and np.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_prefixes_never_see_the_future_over_random_logs():
    """Property: over 80 random logs (about 1,000 sessions), every example equals the reference."""
    checked = 0
    for seed in range(80):
        rng = np.random.default_rng(seed)
        log, cfg = random_log(rng), random_cfg(rng)
        expected = reference_prefixes(log, cfg)
        times = dict(zip(log["event_id"], log["t"]))
        types = dict(zip(log["event_id"], log["event_type"]))
        if not expected:
            with pytest.raises(SchemaError, match="no prefix"):
                build_prefixes(log, RANDOM_SCHEMA, cfg, seed=seed)
            continue
        out = build_prefixes(log, RANDOM_SCHEMA, cfg, seed=seed)
        cuts = [ids[-1] for ids in out["event_id"]]
        assert len(set(cuts)) == len(cuts), seed
        assert set(cuts) <= set(expected), seed
        per_session = pd.Series([expected[c]["sid"] for c in expected]).value_counts()
        got_per_session = out["sid"].value_counts()
        for sid, n in per_session.items():  # every cut, or the cap
            cap = cfg.max_prefixes_per_session or n
            assert got_per_session.get(sid, 0) == min(n, cap), (seed, sid)
        for row, cut in zip(out.itertuples(index=False), cuts):
            ref = expected[cut]
            # Inputs: only events up to the cut, never a purchase, cut before the first purchase.
            assert ref["position"] < ref["first_buy"]
            assert row.event_id == ref["event_id"] and row.item == ref["item"], seed
            assert all(times[e] <= ref["cut_t"] for e in row.event_id)
            assert all(types[e] != "purchase" for e in row.event_id)
            assert "purchase" not in row.event_type
            assert len(row.event_type) == len(row.event_id) == len(row.title) <= cfg.events_kept()
            assert getattr(row, "bought") == ref["label"], seed
            assert pd.Timestamp(row.t) == ref["cut_t"] and row.sid == ref["sid"]
            for name in derived_numeric(RANDOM_SCHEMA, cfg) + ["loyalty"]:
                assert _same(getattr(row, name), ref[name]), (seed, name, getattr(row, name), ref[name])
            assert row.device == ref["device"], seed
            checked += 1
    assert checked > 700


def test_events_after_the_cut_do_not_change_the_example():
    """Rewriting everything after a cut (times, items, types, prices, device) leaves that prefix as it was."""
    cfg = dataclasses.replace(FIXTURE_CFG, prefix_every=1)
    log = read_clickstream(FIXTURE, CLICKSTREAM_SCHEMA, cfg)
    before = build_prefixes(log, CLICKSTREAM_SCHEMA, cfg)
    rng = np.random.default_rng(0)
    long = before.groupby("session_id").size()
    for sid in rng.choice(long[long >= 4].index, 10, replace=False):
        rows = before[before["session_id"] == sid]
        k = int(rng.integers(0, len(rows) - 1))
        cut = rows.iloc[k]
        changed = log.copy()
        ts = pd.to_datetime(changed["timestamp"])
        later = ((changed["session_id"] == sid) & (ts > cut["timestamp"])).to_numpy()
        assert later.any()
        changed.loc[later, "item_id"] = "sku_future"
        changed.loc[later, "title"] = "future title"
        changed.loc[later, "price"] = 1e6
        changed.loc[later, "device"] = "smart-tv"
        changed.loc[later, "event_type"] = "purchase"
        changed.loc[later, "timestamp"] = (ts[later] + pd.Timedelta(hours=3)).astype(str)
        after = build_prefixes(changed, CLICKSTREAM_SCHEMA, cfg)
        same = after[(after["session_id"] == sid) & (after["timestamp"] == cut["timestamp"])]
        assert len(same) == 1
        new = same.iloc[0]
        for name in prefix_schema(CLICKSTREAM_SCHEMA, cfg).feature_names:
            assert new[name] == pytest.approx(cut[name], nan_ok=True) if name in DERIVED_NUMERIC \
                else new[name] == cut[name], (sid, name)
        assert new["purchase"] == 1  # the rewritten future buys


def test_labels_on_a_hand_written_log():
    log = pd.DataFrame({
        "session_id": ["a", "a", "a", "a", "a", "b", "b", "c", "c"],
        "timestamp": ["2024-01-01 10:00:00", "2024-01-01 10:01:00", "2024-01-01 10:02:00",
                      "2024-01-01 10:03:00", "2024-01-01 10:04:00", "2024-01-01 11:00:00",
                      "2024-01-01 11:00:30", "2024-01-01 12:00:00", "2024-01-01 12:05:00"],
        "event_type": ["view", "cart", "purchase", "view", "purchase", "view", "view", "purchase", "view"],
        "item_id": ["x", "y", "y", "z", "z", "x", "x", "w", "w"],
    })
    schema = FeatureSchema(label="purchase", sequences=["item_id", "event_type"])
    out = build_prefixes(log, schema, DataConfig(prefix_every=1))
    # a: cuts at its 2 events before the first purchase (label 1); b: 2 cuts (label 0);
    # c buys at its first event: no cut point.
    assert out["session_id"].tolist() == ["a", "a", "b", "b"]
    assert out["purchase"].tolist() == [1, 1, 0, 0]
    assert out["item_id"].tolist() == [["x"], ["x", "y"], ["x"], ["x", "x"]]
    assert out["prefix_distinct_items"].tolist() == [1, 2, 1, 1]
    assert out["prefix_seconds"].tolist() == [0, 60, 0, 30]
    at_cart = build_prefixes(log, schema, DataConfig(prefix_every=0, prefix_at=["cart"]))
    assert at_cart["item_id"].tolist() == [["x", "y"]]
    # Ids written otherwise in some rows (a float column: "7.0"; spaces) are the same session.
    numbered = log.assign(session_id=["7", "7.0", " 7", "7", "7.00", "8", "8.0", "9", "9"])
    assert build_prefixes(numbered, schema, DataConfig(prefix_every=1))["session_id"].tolist() == [
        "7", "7", "8", "8"]
    every2 = build_prefixes(log, schema, DataConfig(prefix_every=2))
    assert every2["session_id"].tolist() == ["a", "b"]
    assert every2[SESSION_START].tolist() == [pd.Timestamp("2024-01-01 10:00"),
                                              pd.Timestamp("2024-01-01 11:00")]


def test_numeric_epoch_timestamps_seconds_and_milliseconds():
    schema = FeatureSchema(label="purchase", sequences=["item_id", "event_type"])
    base = pd.DataFrame({"session_id": ["a", "a", "b", "b"],
                         "event_type": ["view", "purchase", "view", "view"],
                         "item_id": ["x", "y", "x", "z"]})
    seconds = np.array([1_700_000_000, 1_700_000_010, 1_700_000_000, 1_700_000_042])
    for scale in (1, 1000):
        out = build_prefixes(base.assign(timestamp=seconds * scale), schema, DataConfig())
        assert out["prefix_seconds"].tolist() == [0, 0, 42]
        assert out["timestamp"].iloc[0] == pd.Timestamp(1_700_000_000, unit="s")


# -- split ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_prefixes():
    log = read_clickstream(FIXTURE, CLICKSTREAM_SCHEMA, FIXTURE_CFG)
    return log, build_prefixes(log, CLICKSTREAM_SCHEMA, FIXTURE_CFG)


@pytest.mark.parametrize("split_by", ["session", "time"])
def test_split_never_shares_a_session(fixture_prefixes, split_by):
    _, examples = fixture_prefixes
    cfg = dataclasses.replace(FIXTURE_CFG, split_by=split_by)
    frames = split_sessions(examples, cfg)
    sessions = {k: set(v["session_id"]) for k, v in frames.items()}
    assert not sessions["train"] & sessions["validation"]
    assert not sessions["train"] & sessions["test"]
    assert not sessions["validation"] & sessions["test"]
    assert sum(len(v) for v in frames.values()) == len(examples)
    n = examples["session_id"].nunique()
    for name, fraction in (("validation", cfg.validation_fraction), ("test", cfg.test_fraction)):
        assert len(sessions[name]) == pytest.approx(fraction * n, abs=0.05 * n)
    if split_by == "time":  # every training session starts before every validation one, and so on
        starts = {k: v[SESSION_START] for k, v in frames.items()}
        assert starts["train"].max() <= starts["validation"].min()
        assert starts["validation"].max() <= starts["test"].min()


def test_session_split_is_stable_when_the_log_changes(fixture_prefixes):
    _, examples = fixture_prefixes
    full = split_sessions(examples, FIXTURE_CFG)
    where = {sid: k for k, df in full.items() for sid in df["session_id"]}
    keep = examples["session_id"].isin(sorted(set(examples["session_id"]))[::3])
    part = split_sessions(examples[keep], FIXTURE_CFG)
    assert all(where[sid] == k for k, df in part.items() for sid in df["session_id"])


def test_load_splits_reads_a_clickstream_file(fixture_prefixes):
    _, examples = fixture_prefixes
    cfg = get_config(overrides=[f"data.name={FIXTURE}", "data.format=events",
                                f"data.schema={CLICKSTREAM_SCHEMA_FILE}", "data.price_column=price"]).data
    schema, frames = load_splits(cfg)
    assert schema.label == "purchase"
    assert schema.numeric == ["previous_orders"] + derived_numeric(CLICKSTREAM_SCHEMA, cfg)
    assert "prefix_price_mean" in schema.numeric and "prefix_events" in schema.numeric
    assert sum(len(f) for f in frames.values()) == len(examples)
    for df in frames.values():
        assert set(df.columns) == set(schema.feature_names + [schema.label])  # ids are not features
        assert df["prefix_events"].dtype == np.float32
        assert all(isinstance(v, list) for v in df["item_id"])
        assert not any("purchase" in v for v in df["event_type"])
    assert 0.03 < frames["train"]["purchase"].mean() < 0.3


def test_synthetic_clickstream_through_load_splits_with_the_tiny_preset():
    cfg = get_config("tiny", overrides=["data.name=synthetic_clickstream", "data.synthetic_examples=600",
                                        "data.split_by=time", "data.max_prefixes_per_session=3"]).data
    schema, frames = load_splits(cfg, seed=1)
    assert schema.event_text == ["title"] and "prefix_price_last" in schema.numeric
    assert all(len(v) <= cfg.events_kept() for v in frames["train"]["item_id"])
    assert sum(len(f) for f in frames.values()) <= 3 * 600


# -- the synthetic generator --------------------------------------------------------
def test_synthetic_clickstream_is_realistic_and_has_signal():
    log = make_synthetic_clickstream(3000, seed=3)
    assert log.equals(make_synthetic_clickstream(3000, seed=3))
    assert list(log.columns) == ["session_id", "timestamp", "event_type", "item_id", "title", "price",
                                 "device", "traffic_source", "previous_orders"]
    assert log["timestamp"].is_monotonic_increasing  # a time-ordered export; sessions interleave
    session = log["session_id"]
    buys = log["event_type"].eq("purchase").groupby(session).any()
    assert 0.05 <= buys.mean() <= 0.10
    carts = log["event_type"].eq("cart").groupby(session).mean()
    assert carts[buys].mean() > 1.5 * carts[~buys].mean()
    per_category = log.groupby([session, log["title"].str.split().str[-1]]).size()
    focus = per_category.groupby(level=0).max() / per_category.groupby(level=0).sum()
    long = session.value_counts().reindex(focus.index) >= 4
    assert focus[buys & long].mean() > focus[~buys & long].mean() + 0.05
    # Some buyers keep browsing after the purchase: the builder must drop those events.
    after = log.groupby("session_id")["event_type"].last() != "purchase"
    assert (after & buys).any()
    assert log.groupby("session_id")["device"].nunique().max() == 1


# -- serving ------------------------------------------------------------------------
def test_live_example_matches_the_training_prefix(fixture_prefixes):
    log, examples = fixture_prefixes
    schema = prefix_schema(CLICKSTREAM_SCHEMA, FIXTURE_CFG)
    ts = pd.to_datetime(log["timestamp"])
    for _, row in examples.sample(20, random_state=0).iterrows():
        events = log[(log["session_id"] == row["session_id"]) & (ts <= row["timestamp"])]
        records = events.drop(columns="session_id").to_dict("records")[::-1]  # any order
        live = live_example(records, schema, FIXTURE_CFG)
        assert list(live) == schema.feature_names
        for name in schema.feature_names:
            if name in schema.numeric:
                assert live[name] == pytest.approx(row[name], nan_ok=True), name
            else:
                assert live[name] == row[name], name
    # The config a synthetic_clickstream run saves has no price column: the name implies it.
    run_cfg = get_config("tiny", overrides=["data.name=synthetic_clickstream"]).data
    assert live_example(records, schema, run_cfg)["prefix_price_last"] == live["prefix_price_last"]
    with pytest.raises(SchemaError, match="does not compute"):
        live_example(records, schema, DataConfig())
    with pytest.raises(SchemaError, match="bought"):
        live_example(log[log["event_type"] == "purchase"].head(1), schema, FIXTURE_CFG)


# -- errors -----------------------------------------------------------------------------
def _write(tmp_path, df, name="events.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _load(path, *overrides, schema=CLICKSTREAM_SCHEMA_FILE):
    cfg = get_config(overrides=[f"data.name={path}", "data.format=events", f"data.schema={schema}",
                                "data.price_column=price", *overrides]).data
    return load_splits(cfg)


@pytest.fixture()
def raw_log():
    return pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)


def test_missing_columns_are_named(tmp_path, raw_log):
    path = _write(tmp_path, raw_log.drop(columns=["title", "session_id"]))
    with pytest.raises(SchemaError, match=r"events.csv: missing column\(s\) 'session_id' "
                                          r"\(data.session_column\), 'title'"):
        _load(path)


def test_bad_timestamp_names_the_spreadsheet_row(tmp_path, raw_log):
    raw_log.loc[6, "timestamp"] = "yesterday at noon"  # file line 8: header 1, data from 2
    with pytest.raises(SchemaError, match=r"events.csv: column 'timestamp', spreadsheet row 8 \(header = row 1\): cannot parse "
                                          r"'yesterday at noon'"):
        _load(_write(tmp_path, raw_log))
    raw_log.loc[6, "timestamp"] = ""
    with pytest.raises(SchemaError, match=r"spreadsheet row 8 \(header = row 1\): missing timestamp"):
        _load(_write(tmp_path, raw_log))


def _same_splits(got, want):
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(got[1][name], want[1][name])


def test_day_first_log_is_read_day_first_or_refused(tmp_path, raw_log):
    """The first rows (4 March) read both ways: the days above 12 decide; without them, an error."""
    iso = _load(_write(tmp_path, raw_log, "iso.csv"))
    t = pd.to_datetime(raw_log["timestamp"])
    day_first = raw_log.assign(timestamp=t.dt.strftime("%d/%m/%Y %H:%M:%S"))
    assert day_first["timestamp"].iloc[0] == "04/03/2024 00:00:29"
    _same_splits(_load(_write(tmp_path, day_first, "dmy.csv")), iso)
    month_first = raw_log.assign(timestamp=t.dt.strftime("%m/%d/%Y %H:%M:%S"))
    _same_splits(_load(_write(tmp_path, month_first, "mdy.csv")), iso)

    early = t.dt.day <= 12  # no day above 12: each date reads two ways
    iso_early = _load(_write(tmp_path, raw_log[early], "iso_early.csv"))
    path = _write(tmp_path, day_first[early], "dmy_early.csv")
    with pytest.raises(SchemaError, match=r"dmy_early.csv: column 'timestamp': spreadsheet row 2 .* has "
                                          r"'04/03/2024 00:00:29'.*--set \"data.time_format=%d/%m/%Y %H:%M:%S\" "
                                          r"\(day first\)"):
        _load(path)
    _same_splits(_load(path, "data.time_format=%d/%m/%Y %H:%M:%S"), iso_early)
    with pytest.raises(SchemaError, match=r"spreadsheet row 2 \(header = row 1\): cannot parse "
                                          r"'04/03/2024 00:00:29' as a timestamp with data.time_format='%Y-%m-%d'"):
        _load(path, "data.time_format=%Y-%m-%d")


def test_bad_price_names_the_row(tmp_path, raw_log):
    raw_log.loc[3, "price"] = "12,50 EUR"
    with pytest.raises(SchemaError, match=r"column 'price', spreadsheet row 5 \(header = row 1\): expected a number, got str '12,50 EUR'"):
        _load(_write(tmp_path, raw_log))


def test_no_purchase_event_lists_the_event_types(tmp_path, raw_log):
    raw_log["event_type"] = raw_log["event_type"].replace({"purchase": "Purchase"})
    with pytest.raises(SchemaError, match=r"no event has 'event_type' == 'purchase' \(did you mean "
                                          r"'Purchase'.*'view': \d+, 'cart': \d+.*data.purchase_value"):
        _load(_write(tmp_path, raw_log))
    cfg_ok = _load(_write(tmp_path, raw_log), "data.purchase_value=Purchase")
    assert cfg_ok[0].label == "purchase"


def test_every_session_buying_is_an_error(tmp_path, raw_log):
    buyers = raw_log.groupby("session_id")["event_type"].transform(lambda s: (s == "purchase").any())
    with pytest.raises(SchemaError, match="every one of the .* sessions has a event_type='purchase' event"):
        _load(_write(tmp_path, raw_log[buyers.astype(bool)]))


def test_a_label_column_in_the_log_is_an_error(tmp_path, raw_log):
    with pytest.raises(SchemaError, match="the log has a column 'purchase', the schema's label"):
        _load(_write(tmp_path, raw_log.assign(purchase=0)))


def test_no_cut_point_and_no_schema_are_errors(tmp_path):
    with pytest.raises(SchemaError, match=r"no prefix: .*data.prefix_every=500"):
        _load(FIXTURE, "data.prefix_every=500")
    cfg = get_config(overrides=[f"data.name={FIXTURE}", "data.format=events"]).data
    with pytest.raises(SchemaError, match="is an event log: give its schema file"):
        load_splits(cfg)
    schema = tmp_path / "s.yaml"
    schema.write_text("label: purchase\nsequences: [item_id, event_type]\nnumeric: [prefix_events]\n")
    with pytest.raises(SchemaError, match="names of derived prefix features"):
        _load(FIXTURE, schema=schema)


# -- speed -------------------------------------------------------------------------------
def test_builder_is_vectorised():
    """~150k events in well under the time a per-event Python loop would take (CPU seconds)."""
    log = make_synthetic_clickstream(30_000, seed=5)
    t0 = time.process_time()
    out = build_prefixes(log, CLICKSTREAM_SCHEMA, FIXTURE_CFG)
    seconds = time.process_time() - t0
    assert len(log) > 140_000 and len(out) > 140_000
    assert seconds < 5, seconds
