"""prepare -> sharded TFRecords + manifest + statistics; training streams them like the in-memory path."""


import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from purchase_intent import prepare, stats
from purchase_intent.config import DataConfig, get_config
from purchase_intent.data import load_splits
from purchase_intent.data.prepared import Prepared
from purchase_intent.data.synthetic import SCHEMA, make_synthetic
from purchase_intent.data.source import pipeline_files
from purchase_intent.pipeline import make_dataset, make_shard_dataset
from purchase_intent.schema import SchemaError

N = 900


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A synthetic CSV with a split column, its schema file and the in-memory splits of it."""
    root = tmp_path_factory.mktemp("table")
    df = make_synthetic(N, seed=5)
    df["split"] = np.random.default_rng(0).choice(["train", "validation", "test"], N, p=[0.6, 0.2, 0.2])
    for name in SCHEMA.sequence_like:
        df[name] = ["|".join(v) for v in df[name]]
    df.to_csv(root / "sessions.csv", index=False)
    SCHEMA.save(root / "schema.json")
    cfg = DataConfig(name=str(root / "sessions.csv"), schema=str(root / "schema.json"), split_column="split")
    _, splits = load_splits(cfg)
    return root, splits


def run_prepare(root, out, *extra):
    return prepare.main(["--input", str(root / "sessions.csv"), "--schema", str(root / "schema.json"),
                         "--output", str(out), "--preset", "tiny", "--set", "data.split_column=split",
                         "--chunk-rows", "100", "--shard-examples", "120", *extra])


@pytest.fixture(scope="module")
def prepared(table, tmp_path_factory):
    root, _ = table
    out = tmp_path_factory.mktemp("prepared")
    run_prepare(root, out)
    return Prepared.load(out)


def test_manifest_counts_shards_and_statistics(table, prepared):
    _, splits = table
    m = prepared.manifest
    for split, df in splits.items():
        assert m["splits"][split]["examples"] == len(df)
        assert m["splits"][split]["label_rate"] == pytest.approx(df["label"].mean())
        assert prepared.examples(split) == len(df)
    assert prepared.data_settings() == {}  # a table: no event-log settings to carry into training
    assert len(prepared.shards("train")) == -(-len(splits["train"]) // 120)
    whole = stats.SplitStats.of_frame(splits["train"], SCHEMA, bow_events=24)
    got = prepared.stats()["train"]
    assert got.values == whole.values and got.bow_documents == whole.bow_documents
    assert m["bow_events"] == get_config("tiny").data.events_kept()
    some = Prepared.load(prepared.root / "train-*-0000[01].tfrecord")  # a glob picks training shards
    assert some.examples("train") == 240 and some.examples("test") == len(splits["test"])
    assert Prepared.is_prepared(prepared.root / "train-*") and not Prepared.is_prepared(prepared.root / "x")


def test_partitions_then_merge_equal_one_run(table, prepared, tmp_path):
    root, _ = table
    for i in range(3):  # one file, 3 partitions: every third chunk of 100 rows each
        partial = run_prepare(root, tmp_path, "--partition", f"{i}/3")
        assert "splits" not in partial
    manifest = prepare.main(["merge", "--output", str(tmp_path)])
    for split in prepare.SPLITS:
        assert manifest["splits"][split]["examples"] == prepared.manifest["splits"][split]["examples"]
    merged, whole = Prepared.load(tmp_path).stats()["train"], prepared.stats()["train"]
    assert merged.values == whole.values and merged.documents == whole.documents
    assert merged.bow_terms == whole.bow_terms
    assert merged.moments["price_seen"]["log1p"].mean == pytest.approx(whole.moments["price_seen"]["log1p"].mean)


def test_merge_names_missing_partitions(table, tmp_path):
    root, _ = table
    run_prepare(root, tmp_path, "--partition", "1/2")
    with pytest.raises(SchemaError, match=r"partition\(s\) \[0\] of 2 not prepared yet"):
        prepare.merge(tmp_path)


def test_parquet_row_groups_and_the_same_validation_errors(table, tmp_path):
    root, splits = table
    df = pd.read_csv(root / "sessions.csv", dtype=str, keep_default_na=False)
    df.to_parquet(tmp_path / "a.parquet", row_group_size=200)
    out = prepare.main(["--input", str(tmp_path / "*.parquet"), "--schema", str(root / "schema.json"),
                        "--output", str(tmp_path / "out"), "--set", "data.split_column=split",
                        "--max-values", "30"])
    assert out["splits"]["test"]["examples"] == len(splits["test"])
    assert len(Prepared.load(tmp_path / "out").stats()["train"].values["item_id"]) == 30  # pruned
    df.loc[7, "session_minutes"] = "seven"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SchemaError, match=r"bad.csv: column 'session_minutes', spreadsheet row 9 \(header = row 1\): expected a number"):
        prepare.main(["--input", str(tmp_path / "bad.csv"), "--schema", str(root / "schema.json"),
                      "--output", str(tmp_path / "bad"), "--chunk-rows", "5"])


def test_shards_give_the_in_memory_examples(table, prepared):
    from purchase_intent.preprocessing import Preprocessor

    _, splits = table
    cfg = get_config("tiny").data
    schema = prepared.schema
    pre = Preprocessor.adapt_from_stats(schema.subset(["sequence", "numeric"]), prepared.stats()["train"],
                                        max_sequence_length=cfg.max_sequence_length,
                                        history_length=cfg.max_history_length, numeric_bins=4)
    sub = Prepared(prepared.root, {**prepared.manifest, "schema": pre.feature_schema.to_dict()})
    from_shards = list(make_shard_dataset(sub, "validation", pre, cfg, training=False).as_numpy_iterator())
    in_memory = list(make_dataset(splits["validation"], pre.feature_schema, pre, cfg,
                                  training=False).as_numpy_iterator())
    assert len(from_shards) == len(in_memory)
    for (xa, ya), (xb, yb) in zip(from_shards, in_memory):
        np.testing.assert_array_equal(ya, yb)
        assert xa.keys() == xb.keys()
        for k in xa:
            np.testing.assert_allclose(xa[k], xb[k], rtol=1e-6, err_msg=k)


def test_two_workers_read_disjoint_files(prepared):
    paths = prepared.check("train")
    counts = [s["examples"] for s in prepared.shards("train")]
    contexts = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    parts = [pipeline_files(paths, counts, c) for c in contexts]
    assert not set(parts[0][0]) & set(parts[1][0])
    assert sorted(parts[0][0] + parts[1][0]) == sorted(paths)
    assert not parts[0][1] and parts[0][2] + parts[1][2] == sum(counts)
    # Fewer files than workers: every worker reads the file and keeps every other example.
    one = pipeline_files(paths[:1], counts[:1], contexts[1])
    assert one[1] and one[2] == counts[0] // 2
    # What the two pipelines yield: disjoint examples, all of them between the two.
    from purchase_intent.preprocessing import Preprocessor

    cfg = get_config("tiny").data
    pre = Preprocessor.adapt_from_stats(SCHEMA.subset(["numeric"]), prepared.stats()["train"])
    sub = Prepared(prepared.root, {**prepared.manifest, "schema": pre.feature_schema.to_dict()})
    seen = [{tuple(row) for x, _ in make_shard_dataset(sub, "train", pre, cfg, training=False, ctx=c)
             .as_numpy_iterator() for row in x["numeric"]} for c in contexts]
    assert not seen[0] & seen[1] and len(seen[0]) + len(seen[1]) == sum(counts)


def test_truncated_shard_is_named(prepared, tmp_path):
    import shutil

    from purchase_intent.preprocessing import Preprocessor

    copy = tmp_path / "copy"
    shutil.copytree(prepared.root, copy)
    victim = copy / prepared.shards("train")[1]["file"]
    victim.write_bytes(victim.read_bytes()[:-40])
    broken = Prepared.load(copy)
    pre = Preprocessor.adapt_from_stats(SCHEMA.subset(["numeric"]), broken.stats()["train"])
    with pytest.raises(SchemaError, match=rf"{victim.name}: \d+ bytes, but .* truncated"):
        make_shard_dataset(broken, "train", pre, get_config("tiny").data, training=True)


def test_tf_data_service_on_loopback_trains(prepared):
    import dataclasses

    from purchase_intent.model import build_model
    from purchase_intent.preprocessing import Preprocessor

    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address)) for _ in range(2)]
    tiny = get_config("tiny")
    cfg = dataclasses.replace(tiny.data, service=dispatcher.target)
    pre = Preprocessor.adapt_from_stats(SCHEMA.subset(["sequence", "numeric"]), prepared.stats()["train"],
                                        max_sequence_length=cfg.max_sequence_length,
                                        history_length=cfg.max_history_length)
    sub = Prepared(prepared.root, {**prepared.manifest, "schema": pre.feature_schema.to_dict()})
    ds = make_shard_dataset(sub, "train", pre, cfg, training=True)
    labels = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    assert len(labels) == prepared.examples("train")  # each example once, from the service's 2 workers
    assert labels.mean() == pytest.approx(prepared.manifest["splits"]["train"]["label_rate"])
    model = build_model(tiny.model, pre, positive_rate=0.3)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and len(history.history["loss"]) == 2
    del workers


def test_shard_corrupted_in_place_is_named(prepared, tmp_path):
    import shutil

    from purchase_intent.preprocessing import Preprocessor

    copy = tmp_path / "copy"
    shutil.copytree(prepared.root, copy)
    victim = copy / prepared.shards("train")[1]["file"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: TensorFlow alone says "corrupted record at <offset>"
    victim.write_bytes(bytes(data))
    broken = Prepared.load(copy)
    pre = Preprocessor.adapt_from_stats(SCHEMA.subset(["numeric"]), broken.stats()["train"])
    with pytest.raises(SchemaError, match=rf"{victim.name}: corrupted: its checksum .* prepare it again"):
        make_shard_dataset(broken, "train", pre, get_config("tiny").data, training=True)
    assert make_shard_dataset(Prepared.load(prepared.root), "train", pre, get_config("tiny").data,
                              training=True) is not None  # the intact original passes


# -- event logs (data.format=events) ------------------------------------------------------
SESSIONS = 500


@pytest.fixture(scope="module")
def event_log(tmp_path_factory):
    """A synthetic event log as CSV, its schema file and the --set options of its columns."""
    from purchase_intent.data.synthetic import CLICKSTREAM_COLUMNS, CLICKSTREAM_SCHEMA, make_synthetic_clickstream

    root = tmp_path_factory.mktemp("events")
    log = make_synthetic_clickstream(SESSIONS, seed=4)
    log = log.sample(frac=1.0, random_state=0).reset_index(drop=True)  # unsorted, as logs may be
    log.loc[3, "session_id"] = ""  # a row without a session: dropped and counted by both paths
    spaced = log.index % 7 == 1
    log.loc[spaced, "session_id"] = " " + log.loc[spaced, "session_id"]  # the same session, by both paths
    log.to_csv(root / "events.csv", index=False)
    CLICKSTREAM_SCHEMA.save(root / "schema.json")
    sets = [f"data.{k}={v}" for k, v in CLICKSTREAM_COLUMNS.items()] + [
        "data.format=events", "data.prefix_at=[cart]", "data.prefix_every=2", "data.max_prefixes_per_session=3"]
    return root, log, sets


def _in_memory(root, sets, *extra):
    cfg = get_config("tiny", None, [*sets, *extra, f"data.name={root / 'events.csv'}",
                                    f"data.schema={root / 'schema.json'}"])
    return load_splits(cfg.data, seed=cfg.train.seed)


def _prepare_events(root, out, sets, *extra, inputs=("events.csv",)):
    args = [a for s in sets for a in ("--set", s)]
    return prepare.main([a for i in inputs for a in ("--input", str(root / i))]
                        + ["--schema", str(root / "schema.json"), "--output", str(out), "--preset", "tiny",
                           "--chunk-rows", "700", "--shard-examples", "300", *args, *extra])


def _example_set(frame, schema):
    """The examples of a validated frame as a sorted list of comparable tuples."""
    from purchase_intent.contract import frame_events

    seqs = frame_events(frame, schema.sequence_like)
    cols = {n: [("nan" if np.isnan(v) else float(v)) for v in frame[n].to_numpy(np.float32)] for n in schema.numeric}
    cols.update({n: [tuple(v) for v in seqs[n]] for n in schema.sequence_like})
    cols.update({n: list(frame[n]) for n in schema.text + schema.categorical})
    cols[schema.label] = frame[schema.label].astype(int).tolist()
    names = schema.feature_names + [schema.label]
    return sorted(zip(*(cols[n] for n in names)), key=repr)


def _same_examples(out_dir, splits, schema):
    from purchase_intent.data.prepared import read_frame

    got = Prepared.load(out_dir)
    assert got.schema.to_dict() == schema.to_dict()
    for split, frame in splits.items():
        assert _example_set(read_frame(got, split), schema) == _example_set(frame, schema), split
    return got


@pytest.mark.parametrize("split_by", ["session", "time"])
def test_event_log_gives_the_in_memory_prefixes(event_log, tmp_path, split_by, caplog):
    root, _, sets = event_log
    sets = [*sets, f"data.split_by={split_by}"]
    schema, splits = _in_memory(root, sets)
    manifest = _prepare_events(root, tmp_path, sets, "--buckets", "3")
    assert "dropped 1 of 2472 events with a missing 'session_id'" in caplog.text  # counted, not silent
    for split, frame in splits.items():
        assert manifest["splits"][split]["examples"] == len(frame)
    _same_examples(tmp_path, splits, schema)
    assert not list((tmp_path / prepare.PARTIALS).glob("buckets-*"))  # the buckets are removed


def test_event_log_partitions_and_merge_equal_the_whole(event_log, tmp_path, monkeypatch):
    root, log, sets = event_log
    schema, splits = _in_memory(root, sets)
    whole = _prepare_events(root, tmp_path / "whole", sets, "--buckets", "1")
    for i in range(3):  # each partition reads the whole log and keeps the sessions of its hash
        _prepare_events(root, tmp_path / "parts", sets, "--partition", f"{i}/3", "--buckets", "2")
    merged = prepare.main(["merge", "--output", str(tmp_path / "parts")])
    assert {k: v["examples"] for k, v in merged["splits"].items()} == {k: v["examples"] for k, v in whole["splits"].items()}
    got = _same_examples(tmp_path / "parts", splits, schema)
    a, b = got.stats()["train"], Prepared.load(tmp_path / "whole").stats()["train"]
    memory = stats.SplitStats.of_frame(splits["train"], schema, bow_events=get_config("tiny").data.events_kept())
    for s in (a, b):
        assert s.values == memory.values and s.bow_terms == memory.bow_terms
        assert s.examples == memory.examples and s.positives == memory.positives
        assert s.moments["prefix_events"]["log1p"].mean == pytest.approx(memory.moments["prefix_events"]["log1p"].mean)
    # A log written partitioned by session, one file per partition: --partition-by file.
    part = log[log["session_id"].ne("")]
    for k in range(2):
        part[part["session_id"].str[-1].astype(int).mod(2).eq(k)].to_parquet(
            root / f"by_session-{k}.parquet", row_group_size=300)
    for i in range(2):
        _prepare_events(root, tmp_path / "files", sets, "--partition", f"{i}/2", "--partition-by", "file",
                        inputs=("by_session-*.parquet",))
    prepare.main(["merge", "--output", str(tmp_path / "files")])
    _same_examples(tmp_path / "files", splits, schema)
    # The manifest keeps the event log's data.* settings; a run applies them, and refuses a different one.
    files = Prepared.load(tmp_path / "files")
    assert files.data_settings()["format"] == "events"
    run = get_config("tiny", None, [f"data.name={tmp_path / 'files'}"]).data
    files.apply_data_settings(run, given=set())
    expected = get_config("tiny", None, sets).data
    assert all(getattr(run, k) == getattr(expected, k) for k in files.data_settings())
    assert run.price_column == expected.price_column != ""
    clash = get_config("tiny", None, ["data.price_column=other"]).data
    with pytest.raises(SchemaError, match=r"prepared with data.price_column='price', the run sets 'other'"):
        files.apply_data_settings(clash, given={"data.price_column"})
    # Files not partitioned by session: merge finds a session in two partitions (a hashed sample of ids).
    monkeypatch.setattr(prepare, "SESSION_SAMPLE", 0.05)  # 1e-3 of 500 sessions would be none
    part.iloc[::2].to_parquet(root / "by_row-0.parquet")
    part.iloc[1::2].to_parquet(root / "by_row-1.parquet")
    for i in range(2):
        _prepare_events(root, tmp_path / "rows", sets, "--partition", f"{i}/2", "--partition-by", "file",
                        inputs=("by_row-*.parquet",))
    with pytest.raises(SchemaError, match=r"session '\w+' has events in partitions 0 and 1: .* --partition-by session"):
        prepare.merge(tmp_path / "rows")


def test_event_log_bad_row_gives_the_in_memory_error(event_log, tmp_path):
    from purchase_intent.data.synthetic import CLICKSTREAM_SCHEMA

    root, log, sets = event_log
    CLICKSTREAM_SCHEMA.save(tmp_path / "schema.json")
    cases = [("previous_orders", 1234, "two",
              "events.csv: column 'previous_orders', spreadsheet row 1236 (header = row 1): expected a number"),
             ("timestamp", 20, "yesterday", "spreadsheet row 22 (header = row 1): cannot parse 'yesterday'")]
    for column, row, value, expected in cases:
        bad = log.astype({column: object})
        bad.loc[row, column] = value
        bad.to_csv(tmp_path / "events.csv", index=False)
        with pytest.raises(SchemaError) as memory:
            _in_memory(tmp_path, sets)
        with pytest.raises(SchemaError) as prepared_error:
            _prepare_events(tmp_path, tmp_path / "out", sets)
        assert str(prepared_error.value) == str(memory.value)
        assert expected in str(memory.value)


def test_event_log_whole_log_checks_at_merge(event_log, tmp_path):
    root, _, sets = event_log
    with pytest.raises(SchemaError, match=r"no event has 'event_type' == 'bought'.*'purchase'"):
        _prepare_events(root, tmp_path, [*sets, "data.purchase_value=bought"])


def test_event_log_time_split_over_partitions(event_log, tmp_path):
    root, _, sets = event_log
    sets = [*sets, "data.split_by=time"]
    schema, splits = _in_memory(root, sets)
    for _ in range(2):  # 1st: each partition records its sessions' starts; 2nd: writes the shards
        for i in range(2):
            partial = _prepare_events(root, tmp_path, sets, "--partition", f"{i}/2", "--buckets", "2")
        merged = prepare.main(["merge", "--output", str(tmp_path)])
        if "time_cut" in merged:
            assert not partial["shards"]["train"] and 0.9 * SESSIONS < merged["time_cut"]["sessions"] <= SESSIONS
    assert "time_cut" not in merged
    _same_examples(tmp_path, splits, schema)
    assert not (tmp_path / prepare.PARTIALS / prepare.TIME_CUT).exists()


def test_group_column_keeps_a_customers_rows_in_one_split_in_any_file():
    from pathlib import Path

    cfg = DataConfig(group_column="customer", validation_fraction=0.2, test_fraction=0.2)
    df = pd.DataFrame({"customer": [f"c{i % 300}" for i in range(1500)]})
    df.loc[[3, 7], "customer"] = ""  # no id: a group of its own (the row's hash)
    a = prepare.split_of(df, Path("a.csv"), cfg, seed=0)
    b = prepare.split_of(df.iloc[::-1], Path("b.csv"), cfg, seed=0)  # another file, another row order
    named = df["customer"].to_numpy() != ""
    assert (pd.Series(a[named]).groupby(df["customer"][named].to_numpy()).nunique() == 1).all()
    assert dict(zip(df["customer"][named], a[named])) == dict(zip(df["customer"].iloc[::-1][named[::-1]],
                                                                  b[named[::-1]]))
    shares = pd.Series(a).value_counts(normalize=True)
    assert 0.5 < shares["train"] < 0.7 and 0.1 < shares["test"] < 0.3
    rows = prepare.split_of(df, Path("a.csv"), DataConfig(validation_fraction=0.2, test_fraction=0.2), seed=0)
    assert (rows[[3, 7]] == a[[3, 7]]).all()  # auto without an id column: row by row, as before
    # auto with the schema's id column: grouped by it, as a named group column (the shards keep no ids,
    # so the leakage check of training cannot see shared ids afterwards; in memory auto groups too).
    auto = prepare.split_of(df, Path("a.csv"), DataConfig(validation_fraction=0.2, test_fraction=0.2), seed=0,
                            id_column="customer")
    np.testing.assert_array_equal(auto, a)
    none = prepare.split_of(df, Path("a.csv"), DataConfig(group_column="none", validation_fraction=0.2,
                                                          test_fraction=0.2), seed=0, id_column="customer")
    np.testing.assert_array_equal(none, rows)
    with pytest.raises(SchemaError, match=r"group column 'client' \(data.group_column\) is missing"):
        prepare.split_of(df, Path("a.csv"), DataConfig(group_column="client"), seed=0)
    numbers = pd.DataFrame({"customer": [str(i % 300) for i in range(1500)]})
    floats = numbers.assign(customer=numbers["customer"] + ".0")  # the same ids from a float column
    np.testing.assert_array_equal(prepare.split_of(numbers, Path("a.csv"), cfg, seed=0),
                                  prepare.split_of(floats, Path("b.csv"), cfg, seed=0))


def test_time_split_is_refused_with_what_to_do(table, tmp_path):
    root, _ = table
    with pytest.raises(SchemaError, match="prepare cannot split by data.split_time_column='day'.*data.split_column"):
        prepare.main(["--input", str(root / "sessions.csv"), "--schema", str(root / "schema.json"),
                      "--output", str(tmp_path / "p"), "--set", "data.split_time_column=day"])
