"""Safe defaults: no raw customer id reaches logs, run files or the export.

Customer ids are never model inputs. They are the schema's ``id`` columns, so
``predictions_test.csv`` carries them (an analyst needs to know whom a row is
about): without ``--hash-ids`` that file holds the raw ids, with it only the
pseudonyms, which ``--hash-ids`` also puts in the in-memory frames that
notebooks and user code see (``online_retail_test.py::test_hash_ids_removes_raw_ids``).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

FIXTURE = Path(__file__).parent / "data" / "online_retail_sample.csv.gz"


def raw_ids() -> set[str]:
    ids = pd.read_csv(FIXTURE, usecols=["CustomerID"])["CustomerID"].dropna()
    return {str(int(v)) for v in ids}


def test_hash_ids_keeps_raw_customer_ids_out_of_logs_run_files_and_export(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "purchase_intent.train", "--preset", "tiny", "--data", "online_retail",
           "--set", f"data.path={FIXTURE}", "--hash-ids", "--epochs", "1", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = out / "export" / "purchase_intent" / "1"
    assert (export / "assets.extra" / "tf_serving_warmup_requests").exists()
    texts = {"stdout+stderr": proc.stdout + proc.stderr}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            texts[str(path.relative_to(out))] = path.read_bytes().decode("latin-1")
    ids = raw_ids()
    assert len(ids) > 20
    pattern = re.compile(r"(?<![\d.])(" + "|".join(sorted(ids)) + r")(?![\d.])")
    leaks = {name: m.group(0) for name, text in texts.items() if (m := pattern.search(text))}
    assert not leaks, leaks
    assert len(texts) > 10  # logs, config, metrics, history, checkpoint, SavedModel files, warm-up
