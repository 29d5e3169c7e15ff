"""prepare fanned out by Beam (the pipeline runs where apache-beam is installed: its own environment,
requirements-beam.txt; the rounds run here, in process)."""

import json
from pathlib import Path

import numpy as np
import pytest

from purchase_intent import prepare
from purchase_intent.data.synthetic import CLICKSTREAM_COLUMNS, CLICKSTREAM_SCHEMA_FILE
from purchase_intent.prepare_beam import run, split_argv

EVENT_LOG = Path(__file__).parent / "data" / "clickstream_sample.csv.gz"


def test_split_argv():
    assert split_argv(["--input", "a.csv", "--partitions", "3", "--", "--runner=DirectRunner"]) == (
        3, ["--input", "a.csv"], ["--runner=DirectRunner"])
    with pytest.raises(SystemExit, match="--partitions N"):
        split_argv(["--partition", "0/2"])


def test_direct_runner_prepares_and_merges(tmp_path):
    pytest.importorskip("apache_beam")
    from purchase_intent.data.prepared import Prepared
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic

    for i in range(3):
        make_synthetic(120, seed=i).to_parquet(tmp_path / f"part-{i}.parquet")
    SCHEMA.save(tmp_path / "schema.json")
    run(["--input", str(tmp_path / "part-*.parquet"), "--schema", str(tmp_path / "schema.json"),
         "--output", str(tmp_path / "out"), "--preset", "tiny", "--partitions", "3",
         "--", "--runner=DirectRunner"])
    prepared = Prepared.load(tmp_path / "out")
    assert sum(prepared.examples(s) for s in ("train", "validation", "test")) == 360
    assert prepared.manifest["partitions"] == 3
    assert np.isclose(sum(prepared.stats()["train"].values["device"].values()), prepared.examples("train"))


def _in_process(commands):
    """``map_partitions`` without Beam: every partition in this process, one after the other."""
    for command in commands:
        prepare.main(command)


def _time_split_argv(out):
    """``prepare``'s options for the committed event log (tests/data), split by the sessions' first event times."""
    sets = [f"data.{k}={v}" for k, v in CLICKSTREAM_COLUMNS.items()] + [
        "data.format=events", "data.split_by=time", "data.max_prefixes_per_session=2"]
    return ["--input", str(EVENT_LOG), "--schema", str(CLICKSTREAM_SCHEMA_FILE), "--output", str(out),
            "--preset", "tiny", "--buckets", "2", *[a for s in sets for a in ("--set", s)]]


def test_event_log_time_split_runs_the_second_round(tmp_path):
    """split_by=time over 3 partitions: the first merge computes the cut, a second round writes the shards."""
    manifest = run([*_time_split_argv(tmp_path / "fanned"), "--partitions", "3"], map_partitions=_in_process)
    plain = []
    for _ in range(2):  # plain prepare: every partition, then merge; twice (docs/data-at-scale.md "An event log")
        for i in range(3):
            prepare.main([*_time_split_argv(tmp_path / "plain"), "--partition", f"{i}/3"])
        plain.append(prepare.main(["merge", "--output", str(tmp_path / "plain")]))
    assert "time_cut" in plain[0] and plain[1]["splits"]["train"]["shards"]  # round 1: the cut; round 2: shards
    assert manifest == plain[1]  # the splits' examples, labels, shards and their CRC-32s
    assert (json.loads((tmp_path / "fanned" / prepare.STATS).read_text())
            == json.loads((tmp_path / "plain" / prepare.STATS).read_text()))
