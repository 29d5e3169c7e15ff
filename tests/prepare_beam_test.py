"""prepare fanned out by Beam (runs where apache-beam is installed: its own environment, requirements-beam.txt)."""

import numpy as np
import pytest

from purchase_intent.prepare_beam import split_argv


def test_split_argv():
    assert split_argv(["--input", "a.csv", "--partitions", "3", "--", "--runner=DirectRunner"]) == (
        3, ["--input", "a.csv"], ["--runner=DirectRunner"])
    with pytest.raises(SystemExit, match="--partitions N"):
        split_argv(["--partition", "0/2"])


def test_direct_runner_prepares_and_merges(tmp_path):
    pytest.importorskip("apache_beam")
    from purchase_intent.data.prepared import Prepared
    from purchase_intent.data.synthetic import SCHEMA, make_synthetic
    from purchase_intent.prepare_beam import run

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
