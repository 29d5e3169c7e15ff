"""Safe defaults: no raw customer id reaches logs, run files or the export.

Customer ids are never model inputs. They are the schema's ``id`` columns, so
``predictions_test.csv`` carries them (an analyst needs to know whom a row is
about): without ``--hash-ids`` that file holds the raw ids, with it only the
pseudonyms, which ``--hash-ids`` also puts in the in-memory frames that
notebooks and user code see (``online_retail_test.py::test_hash_ids_removes_raw_ids``).
"""

import re
from pathlib import Path

import pandas as pd

FIXTURE = Path(__file__).parent / "data" / "online_retail_sample.csv.gz"


def raw_ids() -> set[str]:
    ids = pd.read_csv(FIXTURE, usecols=["CustomerID"])["CustomerID"].dropna()
    return {str(int(v)) for v in ids}


def test_hash_ids_keeps_raw_customer_ids_out_of_logs_run_files_and_export(tmp_path, capfd):
    from purchase_intent import train

    out = tmp_path / "run"
    train.main(["--preset", "tiny", "--data", "online_retail", "--set", f"data.path={FIXTURE}", "--hash-ids",
                "--epochs", "1", "--output-dir", str(out)])
    printed = capfd.readouterr()  # what the terminal got (file descriptors 1 and 2: TensorFlow's own lines too)
    export = out / "export" / "purchase_intent" / "1"
    assert (export / "assets.extra" / "tf_serving_warmup_requests").exists()
    texts = {"stdout+stderr": printed.out + printed.err}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".png":
            texts[str(path.relative_to(out))] = path.read_bytes().decode("latin-1")
    ids = raw_ids()
    assert len(ids) > 20
    pattern = re.compile(r"(?<![\d.])(" + "|".join(sorted(ids)) + r")(?![\d.])")
    leaks = {name: m.group(0) for name, text in texts.items() if (m := pattern.search(text))}
    assert not leaks, leaks
    assert len(texts) > 10  # logs, config, metrics, history, checkpoint, SavedModel files, warm-up
