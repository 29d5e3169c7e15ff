"""cli.py: every command line tool answers bad input with one line, exit status 2, before TensorFlow.

The bad inputs run through each tool's error path: the first case of every tool as the real
command in a subprocess, the rest through the same ``cli.run`` in the test process; each fails
before TensorFlow is imported, so the whole set takes seconds.
"""

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from purchase_intent import cli
from purchase_intent.config import config_keys
from purchase_intent.schema import SchemaError

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("train", "predict", "serving.score", "report", "explain", "compare", "serving.local", "prepare")
ROW = r"spreadsheet row {} (header = row 1)"


def _main_module(tool: str) -> str:
    """The module whose ``main`` is ``python -m purchase_intent.<tool>`` (a package's: its server module)."""
    return "purchase_intent.serving.local.server" if tool == "serving.local" else f"purchase_intent.{tool}"


def _python(args, cwd, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def _table(rows=40, **changes):
    """A small valid table: numeric a, categorical c, '|'-delimited items, label y, split column s."""
    df = pd.DataFrame({
        "a": [str(i) for i in range(rows)],
        "c": ["x", "y"] * (rows // 2),
        "items": ["i1|i2", "i3"] * (rows // 2),
        "y": [0, 1, 0, 0] * (rows // 4),
        "s": (["train"] * 6 + ["val", "test"]) * (rows // 8),
    })
    for column, (row, value) in changes.items():
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
    return df


SCHEMA = {"label": "y", "numeric": ["a"], "categorical": ["c"], "sequences": ["items"]}


def _event_log(times):
    """A small event log (two events per session, every third session buying) at the given times."""
    n = len(times)
    return pd.DataFrame({"session_id": [f"s{i // 2}" for i in range(n)], "timestamp": times,
                         "event_type": ["view" if i % 2 == 0 else "purchase" if i % 6 == 1 else "cart"
                                        for i in range(n)],
                         "item_id": [f"i{i % 4}" for i in range(n)]})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The files the bad inputs use."""
    d = tmp_path_factory.mktemp("cli")
    _table().to_csv(d / "good.csv", index=False)
    (d / "schema.json").write_text(json.dumps(SCHEMA))
    (d / "bad_schema.json").write_text('{"label": "y", "numeric": ["a"],}')
    (d / "schema_typo.json").write_text(json.dumps({**SCHEMA, "numeric": ["amount"]}))
    (d / "schema_key.json").write_text(json.dumps({"label": "y", "sequence": ["items"]}))
    _table(a=(5, "lots")).to_csv(d / "wrong_type.csv", index=False)
    _table(s=(3, "holdout-2")).to_csv(d / "bad_split.csv", index=False)
    _table(y=(7, "maybe")).to_csv(d / "bad_label.csv", index=False)
    # Excel "Unicode text": UTF-16 with a byte-order mark, tab-separated (here with a wrong type in it).
    _table(a=(2, "n/a?")).to_csv(d / "excel.csv", index=False, sep="\t", encoding="utf-16")
    (d / "empty.csv").write_bytes(b"")
    (d / "table.xlsx").write_bytes(b"PK\x03\x04")
    (d / "workbook.csv").write_bytes(b"PK\x03\x04" + b"\x00" * 60)  # an Excel file renamed .csv
    import gzip

    (d / "zipped.csv").write_bytes(gzip.compress((d / "good.csv").read_bytes()))  # gzip under a plain name
    (d / "plain.csv.gz").write_bytes((d / "good.csv").read_bytes())
    (d / "twice.csv").write_text((d / "good.csv").read_text().replace("a,c,items", "a,c,a", 1))
    (d / "twice_b.csv").write_text((d / "good.csv").read_text().replace("y,s", "c,s", 1))
    (d / "schema_space.json").write_text(json.dumps({**SCHEMA, "numeric": ["Umsatz EUR \u20ac"]}))
    (d / "schema_paren.json").write_text(json.dumps({**SCHEMA, "categorical": ["Visits (30 Tage)"]}))
    (d / "config.yaml").write_text("model:\n  lstm_units: [oops\n")
    # Event logs whose dates are written day-first: only ambiguous ones (4 March .. 12 March), then mixed orders.
    log = _event_log([f"{d:02d}/03/2024 10:{m:02d}" for d in range(4, 13) for m in (0, 5)])
    log.to_csv(d / "dates_dm.csv", index=False)
    log.assign(timestamp=log["timestamp"].where(log.index != 5, "13/03/2024 10:00")
               .where(log.index != 9, "03/14/2024 10:00")).to_csv(d / "dates_mixed.csv", index=False)
    (d / "events.json").write_text(json.dumps({"label": "purchase", "sequences": ["item_id", "event_type"]}))
    # A table of monthly snapshots: a date column, one bad date; and one with two customers only.
    snap = _table().assign(customer=[f"c{i % 10}" for i in range(40)],
                           month=[f"{1 + i // 10:02d}/01/2024" for i in range(40)])
    snap.to_csv(d / "snapshots.csv", index=False)
    snap.assign(month=snap["month"].where(snap.index != 12, "sometime")).to_csv(d / "bad_month.csv", index=False)
    snap.assign(customer=[f"c{i % 2}" for i in range(40)]).to_csv(d / "two_customers.csv", index=False)
    (d / "schema_ids.json").write_text(json.dumps({**SCHEMA, "id": ["customer"]}))
    (d / "not_a_run").mkdir()
    (d / "not_a_run" / "notes.txt").write_text("hello")
    return d


DATA = ["--set", "data.schema=schema.json", "--set", "data.split_column=s"]
EVENTS = ["--set", "data.format=events", "--set", "data.schema=events.json"]
SNAP = ["--set", "data.schema=schema_ids.json"]

# name: (command line, [substrings the error line must hold])
CASES = {
    "negative model size": (["train", "--set", "model.lstm_units=-3"], ["model.lstm_units", "-3"]),
    "unknown --set key": (["train", "--set", "model.lstm_unit=8"], ["model.lstm_unit", "model.lstm_units"]),
    "bad --set value": (["train", "--set", "model.lstm_units=many"], ["model.lstm_units", "'many'"]),
    "--set without =": (["train", "--set", "model.lstm_units"], ["section.key=value"]),
    "text encoder directory missing": (["train", "--set", "model.text_encoder=./no/such/preset"],
                                       ["model.text_encoder", "./no/such/preset"]),
    "unknown preset": (["train", "--preset", "huge"], ["'huge'", "tiny"]),
    "unparseable config file": (["train", "--config", "config.yaml"], ["config.yaml"]),
    "missing schema file": (["train", "--data", "good.csv", "--set", "data.schema=nope.json"], ["nope.json"]),
    "no schema given": (["train", "--data", "good.csv"], ["good.csv", "data.schema"]),
    "schema is not JSON": (["train", "--data", "good.csv", "--set", "data.schema=bad_schema.json"],
                           ["bad_schema.json"]),
    "unknown schema key": (["train", "--data", "good.csv", "--set", "data.schema=schema_key.json"],
                           ["schema_key.json", "'sequence'"]),
    "missing data file": (["train", "--data", "nope.csv", *DATA], ["nope.csv", "not found"]),
    "empty data file": (["train", "--data", "empty.csv", *DATA], ["empty.csv", "empty"]),
    "unsupported file type": (["train", "--data", "table.xlsx", *DATA], ["table.xlsx", ".csv"]),
    "unknown column": (["train", "--data", "good.csv", "--set", "data.schema=schema_typo.json"],
                       ["good.csv", "'amount'"]),
    "missing split column": (["train", "--data", "good.csv", "--set", "data.schema=schema.json",
                              "--set", "data.split_column=fold"], ["good.csv", "'fold'"]),
    "wrong type in a row": (["train", "--data", "wrong_type.csv", *DATA],
                            ["wrong_type.csv", "'a'", ROW.format(7), "'lots'"]),
    "bad split value": (["train", "--data", "bad_split.csv", *DATA],
                        ["bad_split.csv", "'s'", ROW.format(5), "'holdout-2'", "val"]),
    "bad label value": (["train", "--data", "bad_label.csv", *DATA],
                        ["bad_label.csv", "'y'", ROW.format(9), "'maybe'"]),
    "UTF-16 CSV (read, then its bad cell found)": (["train", "--data", "excel.csv", *DATA],
                                                   ["excel.csv", "'a'", ROW.format(4)]),
    "compare: bad --set value": (["compare", "--set", "train.epochs=0"], ["train.epochs", "0"]),
    "report on a folder that is not a run": (["report", "not_a_run"], ["not_a_run", "not the folder of a training run"]),
    "report on a missing folder": (["report", "nope"], ["nope"]),
    "output folder is a file": (["train", "--data", "good.csv", *DATA, "--output-dir", "good.csv"],
                                ["--output-dir good.csv", "is a file"]),
    "predict: missing input file": (["predict", "--model", "nope", "--input", "nope.csv"], ["nope.csv"]),
    "predict: empty input file": (["predict", "--model", "nope", "--input", "empty.csv"], ["empty.csv", "empty"]),
    "score: missing schema file": (["serving.score", "--target", "127.0.0.1:1", "--input", "good.csv",
                                    "--output", "o.csv", "--schema", "nope.json"], ["nope.json"]),
    "explain: missing input file": (["explain", "--model", "nope", "--input", "nope.csv"], ["nope.csv"]),
    "prepare: wrong type in a row": (["prepare", "--input", "wrong_type.csv", "--schema", "schema.json",
                                      "--output", "prepared"], ["wrong_type.csv", "'a'", ROW.format(7), "'lots'"]),
    "Excel workbook named .csv": (["train", "--data", "workbook.csv", *DATA], ["workbook.csv", "Excel", "CSV UTF-8"]),
    "predict: Excel workbook named .csv": (["predict", "--model", "nope", "--input", "workbook.csv"],
                                           ["workbook.csv", "Excel"]),
    "predict: .xlsx input": (["predict", "--model", "nope", "--input", "table.xlsx"], ["table.xlsx", "CSV UTF-8"]),
    "gzip bytes named .csv": (["train", "--data", "zipped.csv", *DATA], ["zipped.csv", "gzip", "zipped.csv.gz"]),
    "predict: gzip bytes named .csv": (["predict", "--model", "nope", "--input", "zipped.csv"],
                                       ["zipped.csv", "gzip"]),
    "plain file named .gz": (["train", "--data", "plain.csv.gz", *DATA], ["plain.csv.gz", "not gzip"]),
    "duplicate header": (["train", "--data", "twice.csv", *DATA], ["twice.csv", "'a'", "columns 1, 3"]),
    "duplicate header (label name)": (["train", "--data", "twice_b.csv", *DATA], ["twice_b.csv", "'c'"]),
    "predict: duplicate header": (["predict", "--model", "nope", "--input", "twice.csv"], ["twice.csv", "'a'"]),
    "column name with a space and a euro sign": (
        ["train", "--data", "good.csv", "--set", "data.schema=schema_space.json"],
        ["schema_space.json", "'Umsatz EUR \u20ac'", "'Umsatz_EUR'"]),
    "column name with parentheses": (["train", "--data", "good.csv", "--set", "data.schema=schema_paren.json"],
                                     ["'Visits (30 Tage)'", "'Visits_30_Tage'"]),
    "event log with only ambiguous day/month dates": (
        ["train", "--data", "dates_dm.csv", *EVENTS], ["dates_dm.csv", "'timestamp'", "'04/03/2024 10:00'",
                                                     '"data.time_format=%d/%m/%Y %H:%M"', "%m/%d/%Y"]),
    "event log mixing day-first and month-first dates": (
        ["train", "--data", "dates_mixed.csv", *EVENTS], ["dates_mixed.csv", "mixes day-first and month-first",
                                                        ROW.format(7), "'13/03/2024 10:00'", ROW.format(11)]),
    "event log not matching data.time_format": (
        ["train", "--data", "dates_dm.csv", *EVENTS, "--set", "data.time_format=%Y-%m-%d %H:%M"],
        ["dates_dm.csv", ROW.format(2), "'04/03/2024 10:00'", "data.time_format='%Y-%m-%d %H:%M'"]),
    "time format without a directive": (["train", "--set", "data.time_format=dd/mm/yyyy"],
                                        ["data.time_format", "'dd/mm/yyyy'"]),
    "group column not in the file": (["train", "--data", "good.csv", "--set", "data.schema=schema.json",
                                      "--set", "data.group_column=customer"],
                                     ["good.csv", "'customer' (the group column, data.group_column)"]),
    "split date column not in the file": (["train", "--data", "good.csv", "--set", "data.schema=schema.json",
                                           "--set", "data.split_time_column=month"],
                                          ["good.csv", "'month' (the date column, data.split_time_column)"]),
    "split date column with a bad date": (["train", "--data", "bad_month.csv", *SNAP, "--set",
                                           "data.split_time_column=month", "--set", "data.time_format=%d/%m/%Y"],
                                          ["bad_month.csv", "'month'", ROW.format(14), "'sometime'"]),
    "split date column, day and month ambiguous": (
        ["train", "--data", "snapshots.csv", *SNAP, "--set", "data.split_time_column=month"],
        ["snapshots.csv", "'month'", ROW.format(12), "'02/01/2024'", "data.time_format=%d/%m/%Y"]),
    "repeated ids of too few customers to group": (["train", "--data", "two_customers.csv", *SNAP],
                                                   ["two_customers.csv", "'customer'", "2 distinct",
                                                    "data.group_column=none"]),
    "group column with a time split": (["train", "--set", "data.split_time_column=month", "--set",
                                        "data.group_column=customer"],
                                       ["data.group_column must be auto or none with data.split_time_column"]),
    "prepare: time split refused": (["prepare", "--input", "snapshots.csv", "--schema", "schema_ids.json",
                                     "--output", "prepared", "--set", "data.split_time_column=month"],
                                    ["data.split_time_column='month'", "data.split_column"]),
    "prepare: group column not in the file": (["prepare", "--input", "snapshots.csv", "--schema",
                                               "schema_ids.json", "--output", "prepared", "--set",
                                               "data.group_column=client"],
                                              ["snapshots.csv", "'client'", "data.group_column"]),
    "prepare: bad partition": (["prepare", "--input", "good.csv", "--schema", "schema.json", "--output",
                                "prepared", "--partition", "3/2"], ["3/2"]),
}


# The first case of each tool runs the real command in a fresh process (its `python -m` entry point,
# as a user types it); the others call the same ``cli.run(main, argv)`` in this process, which is
# what each tool's ``__main__`` does, without paying a Python start and the imports per case.
AS_COMMANDS = {next(name for name, (args, _) in CASES.items() if args[0] == tool)
               for tool in {args[0] for args, _ in CASES.values()}}


def _in_this_process(args, cwd):
    """``python -m purchase_intent.<args[0]> <args[1:]>`` as ``cli.run`` in this process: a CompletedProcess."""
    import contextlib
    import importlib
    import io

    main = importlib.import_module(_main_module(args[0])).main
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.run(main, args[1:])
            except SystemExit as e:  # argparse's own errors
                status = e.code
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def results(work):
    """Runs every case; name -> CompletedProcess (the processes a few at a time, beside the others)."""
    def one(item):
        name, (args, _) = item
        return name, _python(["-m", f"purchase_intent.{args[0]}", *args[1:]], cwd=work)

    with ThreadPoolExecutor(4) as pool:
        processes = pool.map(one, [(n, c) for n, c in CASES.items() if n in AS_COMMANDS])
        here = {name: _in_this_process(args, work) for name, (args, _) in CASES.items() if name not in AS_COMMANDS}
        return {**dict(processes), **here}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_status_2(results, name):
    proc = results[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for part in CASES[name][1]:
        assert part in errors[0], (part, errors[0])


def test_debug_shows_the_traceback(work):
    proc = _python(["-m", "purchase_intent.train", "--set", "model.lstm_units=-3", "--debug"], cwd=work)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_data_errors_come_before_tensorflow_is_imported(work):
    code = ("import sys; from purchase_intent import cli, train; "
            "status = cli.run(train.main, ['--data', 'wrong_type.csv', '--set', 'data.schema=schema.json']); "
            "print(status, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = _python(["-c", code], cwd=work)
    assert proc.stdout.split() == ["2", "False", "False"], proc.stderr[-2000:]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_prints_without_importing_tensorflow(tool):
    main = _main_module(tool)
    code = (f"import sys, contextlib, io; import {main} as m; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    try: m.main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print(len(out.getvalue().splitlines()), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
            "print(out.getvalue())")
    proc = _python(["-c", code], cwd=REPO)
    lines, tf, keras = proc.stdout.split("\n", 1)[0].split()
    assert int(lines) > 5 and (tf, keras) == ("False", "False"), proc.stdout + proc.stderr[-2000:]
    text = proc.stdout
    assert "--debug" in text and "(default: None)" not in text and "(default: False)" not in text
    assert "default: the preset's (default" not in text


def test_explain_help_runs_as_a_module():
    proc = _python(["-m", "purchase_intent.explain", "--help"], cwd=REPO)
    assert proc.returncode == 0 and "--model" in proc.stdout and proc.stderr == ""


def test_help_config_lists_every_key_with_default_and_meaning():
    # That config_keys() holds every field with a meaning, and describe_config(): config_test.py.
    proc = _python(["-m", "purchase_intent.train", "--help-config"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    keys = config_keys()
    for key, default, _ in keys:
        assert f"  {key} = {json.dumps(default)}" in proc.stdout
    assert "--help-config" in _python(["-m", "purchase_intent.train", "--help"], cwd=REPO).stdout


def test_comma_delimited_sequences_warn_but_load(tmp_path, caplog):
    from purchase_intent.config import DataConfig
    from purchase_intent.data import load_splits

    df = _table()
    df["items"] = ["i1,i2,i3", "i4,i1"] * (len(df) // 2)
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    with caplog.at_level(logging.INFO):
        schema, splits = load_splits(DataConfig(name=str(tmp_path / "t.csv"), schema=str(tmp_path / "s.json"),
                                                split_column="s"))
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "items" in r.getMessage()]
    assert warning and "','" in warning[0] and '"sequence_delimiter": ","' in warning[0]
    assert "t.csv" in warning[0]
    assert any("'0' -> 0, '1' -> 1" in r.getMessage() for r in caplog.records)
    assert {k: len(v) for k, v in splits.items()} == {"train": 30, "validation": 5, "test": 5}


def test_utf16_and_bom_files_read_like_utf8(tmp_path):
    from purchase_intent.data.readers import read_table
    from purchase_intent.schema import FeatureSchema

    schema = FeatureSchema.from_dict(SCHEMA)
    df = _table()
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_csv(tmp_path / "excel.csv", index=False, sep="\t", encoding="utf-16")
    df.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    df.to_csv(tmp_path / "le.csv", index=False, encoding="utf-16-le")  # no byte-order mark
    plain = read_table(tmp_path / "plain.csv", schema)
    for name in ("excel.csv", "bom.csv", "le.csv"):
        pd.testing.assert_frame_equal(read_table(tmp_path / name, schema), plain)


def test_split_aliases_any_case_and_unknown_values_listed():
    from purchase_intent.data import split_values

    values = pd.Series(["Train", "VAL", " valid ", "dev", "eval", "test", "TST", "training", "Validation"])
    assert split_values(values, "s", "f.csv").tolist() == [
        "train", "validation", "validation", "validation", "validation", "test", "test", "train", "validation"]
    with pytest.raises(SchemaError, match=r"f.csv: split column 's', spreadsheet row 3 \(header = row 1\): "
                                          r"unknown split 'later'.*validation: validation, val, valid"):
        split_values(pd.Series(["train", "later"]), "s", "f.csv")


def test_label_mapping_is_stated():
    from purchase_intent.schema import label_mapping

    assert label_mapping(pd.Series(["yes", "no", "Yes", None])) == {"no": 0, "Yes": 1, "yes": 1}


def test_few_validation_positives_warn(caplog):
    from purchase_intent.config import TrainConfig
    from purchase_intent.data.split_checks import warn_few_positives

    with caplog.at_level(logging.WARNING):
        warn_few_positives(5, 305, TrainConfig())
        assert "only 5 positive" in caplog.text
        caplog.clear()
        warn_few_positives(40, 340, TrainConfig())
        assert caplog.text == ""


def test_failed_run_folder_is_removed_or_marked(tmp_path):
    from purchase_intent.rundir import FAILED_FILE, mark_failed

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    (bare / "train.log").write_text("INFO ...\n")  # the run log alone is not a result either
    mark_failed(bare, RuntimeError("boom"))
    assert not bare.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    mark_failed(kept, RuntimeError("boom"), created=False)
    assert (kept / FAILED_FILE).exists(), "a folder that existed before the run is marked, not removed"
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (partial / "best.weights.h5").write_bytes(b"w")
    mark_failed(partial, ValueError("no such encoder"))
    assert (partial / FAILED_FILE).read_text().startswith("This run failed: ValueError: no such encoder")
    from purchase_intent import report

    with pytest.raises(FileNotFoundError, match="failed before it wrote any result"):
        report.check_run_dir(partial)


def test_run_reports_user_errors_and_reraises_bugs(capsys):
    def bad_value(argv):
        raise SchemaError("t.csv: column 'a', spreadsheet row 3 (header = row 1): expected a number")

    assert cli.run(bad_value, []) == 2
    assert capsys.readouterr().err == "error: t.csv: column 'a', spreadsheet row 3 (header = row 1): expected a number\n"

    def missing(argv):
        open("/nonexistent/x.csv")

    assert cli.run(missing, []) == 2
    assert "/nonexistent/x.csv" in capsys.readouterr().err

    def bug(argv):
        raise KeyError("internal")

    with pytest.raises(KeyError):
        cli.run(bug, [])


def test_scoring_reads_as_training_does_and_refuses_another_delimiter(tmp_path, caplog):
    """Scoring reads files with the training reader (UTF-16, undecodable bytes counted); a file whose
    sequences use another delimiter than the model's is refused, naming the file and the fix."""
    from purchase_intent.predict import write_scored_csv
    from purchase_intent.schema import FeatureSchema

    schema = FeatureSchema.from_dict(SCHEMA)
    df = _table().drop(columns=["y"])
    df.to_csv(tmp_path / "excel.csv", index=False, sep="\t", encoding="utf-16")
    with caplog.at_level(logging.WARNING):
        rows = write_scored_csv(tmp_path / "excel.csv", tmp_path / "out.csv", schema,
                                lambda valid: np.zeros(len(valid)), batch_size=16)
    assert rows == len(df) and len(pd.read_csv(tmp_path / "out.csv")) == len(df)
    assert "UTF-16" in caplog.text
    df["items"] = ["i1,i2", "i3,i4"] * (len(df) // 2)
    df.to_csv(tmp_path / "commas.csv", index=False)
    with pytest.raises(SchemaError, match=r"commas.csv: sequence column 'items' .* write the column with '\|'"):
        write_scored_csv(tmp_path / "commas.csv", tmp_path / "out1.csv", schema,
                         lambda valid: np.zeros(len(valid)), batch_size=16)
    assert not (tmp_path / "out1.csv").exists() and not (tmp_path / "out1.csv.partial").exists()
    (tmp_path / "latin1.csv").write_bytes("a,c,items\n1,caf\xe9,i1\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        assert write_scored_csv(tmp_path / "latin1.csv", tmp_path / "out2.csv", schema,
                                lambda valid: np.zeros(len(valid)), batch_size=16) == 1
    assert "latin1.csv: column 'c' has 1 cell(s) with bytes that are not UTF-8" in caplog.text


def test_tensorflow_import_writes_no_cpp_log_lines():
    code = ("import sys; from purchase_intent import cli; cli.quiet_tensorflow(); "
            "from purchase_intent.serving import protos; import tensorflow as tf; "
            "print('kept', file=sys.stderr); print(int(tf.constant(1) + 1))")
    proc = _python(["-c", code], cwd=REPO, timeout=300)
    assert proc.stdout.strip() == "2", proc.stderr[-2000:]
    assert proc.stderr.strip() == "kept", proc.stderr[-2000:]


def _log_a_run(tag: str):
    """What a training run logs: a module's detail and config (DEBUG), a stage line, warnings of its own and of libraries."""
    import warnings

    log = logging.getLogger("purchase_intent.somewhere")
    log.debug("Resolved config: {%s}", tag)
    log.info("a module's detail %s", tag)
    log.info("Stage line %s", tag, extra=cli.STAGE)
    log.warning("the data's warning %s", tag)
    logging.getLogger("tensorflow").warning("5 out of the last 5 calls triggered tf.function retracing %s", tag)
    warnings.warn(f"a library's warning {tag}", UserWarning)


LOGGED = ("Resolved config: {", "a module's detail", "Stage line", "the data's warning", "retracing",
          "UserWarning: a library's warning")


def test_run_log_terminal_shows_stage_lines_and_the_file_everything(tmp_path, capsys):
    """train's logging: the terminal gets the stage lines and the package's warnings; the run log, kept
    in memory until the run folder exists, everything; close_run_log restores what was there."""
    import warnings

    before = (logging.getLogger().level, logging.getLogger("purchase_intent").level, warnings.showwarning)
    cli.setup_logging(verbose=False)
    try:
        _log_a_run("before the folder")
        assert cli.log_to_file(tmp_path / "run" / "train.log") == tmp_path / "run" / "train.log"
        _log_a_run("after")
    finally:
        cli.close_run_log()
    terminal = [line[9:] for line in capsys.readouterr().err.splitlines()]
    assert terminal == ["Stage line before the folder", "warning: the data's warning before the folder",
                        "Stage line after", "warning: the data's warning after"]
    log = (tmp_path / "run" / "train.log").read_text()
    for part in LOGGED:
        assert log.count(part) == 2, (part, log)
    assert "\n\n" not in log  # a captured warning's own newline dropped
    assert (logging.getLogger().level, logging.getLogger("purchase_intent").level, warnings.showwarning) == before
    assert cli.log_to_file(tmp_path / "x.log") is None  # no run log any more


def test_run_log_verbose_shows_everything_on_the_terminal_too(tmp_path, capsys):
    cli.setup_logging(verbose=True, log_file=tmp_path / "train.log")
    try:
        _log_a_run("verbose")
    finally:
        cli.close_run_log()
    terminal, log = capsys.readouterr().err, (tmp_path / "train.log").read_text()
    for part in LOGGED:
        assert part in terminal and part in log, part
    assert "DEBUG purchase_intent.somewhere: Resolved config: {verbose}" in terminal
