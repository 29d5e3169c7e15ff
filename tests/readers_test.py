import gzip
import logging

import numpy as np
import pandas as pd
import pytest

from purchase_intent.data.readers import read_event_log, read_table
from purchase_intent.schema import FeatureSchema, SchemaError

SCHEMA = FeatureSchema(label="y", text=["q"], event_text=["titles"], sequences=["items"],
                       numeric=["x"], categorical=["c"])


def examples():
    return pd.DataFrame({
        "q": ["red dress", "NA"],
        "titles": [["red dress", "blue mug"], []],
        "items": [["0042", "sku7"], []],
        "x": [1.5, np.nan],
        "c": ["UK", "007"],
        "y": [1, 0],
        "split": ["train", "test"],
    })


def delimited(df):
    """``df`` with its sequence columns as "|"-delimited strings, as a CSV holds them."""
    return df.assign(**{col: df[col].map("|".join) for col in ("titles", "items")})


def test_csv_with_delimited_sequences(tmp_path):
    df = delimited(examples())
    for name in ("t.csv", "t.csv.gz"):
        path = tmp_path / name
        df.to_csv(path, index=False)
        raw = read_table(path, SCHEMA)
        assert "split" in raw.columns  # extra columns are kept
        assert raw["items"].iloc[0] == "0042|sku7"  # ids stay strings, leading zeros kept
        out = SCHEMA.validate(raw)
        assert out["items"].tolist() == [["0042", "sku7"], []]
        assert out["titles"].tolist() == [["red dress", "blue mug"], []]
        assert out["q"].tolist() == ["red dress", "NA"]  # "NA" text is not a missing value
        assert out["c"].tolist() == ["UK", "007"]
        assert out["x"].iloc[0] == 1.5 and np.isnan(out["x"].iloc[1])
        assert out["y"].tolist() == [1, 0]


def test_semicolons_with_a_decimal_comma_read_as_the_comma_file_warned_once(tmp_path, caplog):
    """Excel's CSV where the comma is the decimal mark: ";" between cells, "1,5" in them."""
    from purchase_intent.data.readers import check_table_file

    df = delimited(examples().assign(x=[1.5, 2.25]))
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_csv(tmp_path / "excel.csv", index=False, sep=";", decimal=",")
    assert "1,5" in (tmp_path / "excel.csv").read_text()
    with caplog.at_level(logging.WARNING, logger="purchase_intent.data.readers"):
        check_table_file(tmp_path / "excel.csv")  # what a command does before TensorFlow loads
        excel = read_table(tmp_path / "excel.csv", SCHEMA)
    pd.testing.assert_frame_equal(SCHEMA.validate(excel), SCHEMA.validate(read_table(tmp_path / "plain.csv", SCHEMA)))
    said = [r.getMessage() for r in caplog.records if "semicolon" in r.getMessage()]
    assert len(said) == 1 and "decimal comma" in said[0] and "excel.csv" in said[0]


def test_spaces_around_header_names_are_dropped_with_a_warning(tmp_path, caplog):
    from purchase_intent.data.readers import iter_table

    df = delimited(examples())
    df.to_csv(tmp_path / "plain.csv", index=False)
    text = (tmp_path / "plain.csv").read_text().splitlines()
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("\n".join([", ".join(text[0].split(",")) + " "] + text[1:]) + "\n")
    with caplog.at_level(logging.WARNING, logger="purchase_intent.data.readers"):
        raw = read_table(spaced, SCHEMA)
    plain = read_table(tmp_path / "plain.csv", SCHEMA)
    assert list(raw.columns) == list(plain.columns)
    pd.testing.assert_frame_equal(SCHEMA.validate(raw), SCHEMA.validate(plain))  # "0042" kept: read as a string
    said = [r.getMessage() for r in caplog.records if "spaces around them" in r.getMessage()]
    assert len(said) == 1 and "' titles'" in said[0] and "6 column name(s)" in said[0]
    chunks = [chunk for _, chunk in iter_table(spaced, SCHEMA, chunk_rows=1)]
    assert [list(c.columns) for c in chunks] == [list(plain.columns)] * 2

    (tmp_path / "twice.csv").write_text("x, x ,y\n1,2,0\n")  # equal once the spaces are gone
    with pytest.raises(SchemaError, match=r"twice.csv: the header names 'x' \(columns 1, 2\) more than once"):
        read_table(tmp_path / "twice.csv", SCHEMA)


def test_blank_rows_stop_with_their_row_in_memory_and_in_chunks(tmp_path):
    """Rows whose every cell is empty (what a spreadsheet can leave below its data) are neither scored as
    rows of missing values nor reported as a bad label: one error naming the first and their number."""
    from purchase_intent.data.readers import iter_table

    df = delimited(examples())
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    path.write_text(path.read_text() + ",,,,,,\n,,,,,,\n")
    want = r"t.csv: spreadsheet row 4 \(header = row 1\) is empty \(every cell blank; 2 such rows\).*delete"
    with pytest.raises(SchemaError, match=want):
        read_table(path, SCHEMA)
    with pytest.raises(SchemaError, match=want):
        list(iter_table(path, SCHEMA, chunk_rows=10))
    df.assign(q="").to_csv(path, index=False)  # some empty cells in every row: rows, read as such
    assert len(read_table(path, SCHEMA)) == 2


def test_id_keys_read_an_integer_written_as_a_decimal_as_that_integer():
    from purchase_intent.data.readers import id_keys

    got = id_keys(pd.Series(["1042", "1042.0", " 1042.00 ", "-7.0", "0042", "1042.5", "A1.0", "1e3"]))
    assert got.tolist() == ["1042", "1042", "1042", "-7", "0042", "1042.5", "A1.0", "1e3"]
    assert id_keys(pd.Series([1042.0, 7.0])).tolist() == ["1042", "7"]  # a float column (Parquet)


def test_a_delimiter_at_the_end_of_each_row_keeps_the_columns_in_place(tmp_path, caplog):
    """Rows one cell longer than the header: pandas' default made the first column the index and shifted
    every other one left (numbers under the wrong names, no error when they are all numbers)."""
    numbers = FeatureSchema(label="y", numeric=["a", "b", "c"])
    (tmp_path / "plain.csv").write_text("a,b,c,y\n1,2,3,0\n4,5,6,1\n")
    (tmp_path / "trailing.csv").write_text("a,b,c,y\n1,2,3,0,\n4,5,6,1,\n")
    with caplog.at_level(logging.WARNING, logger="purchase_intent.data.readers"):
        got = read_table(tmp_path / "trailing.csv", numbers)
    pd.testing.assert_frame_equal(got, read_table(tmp_path / "plain.csv", numbers))
    assert "rows end with an empty cell after the last column" in caplog.text and "2 of the 2 rows" in caplog.text
    (tmp_path / "extra.csv").write_text("a,b,c,y\n1,2,3,0\n4,5,6,1,7\n")  # a value with no column
    with pytest.raises(SchemaError, match=r"extra.csv: spreadsheet row 3 \(header = row 1\) has 5 cells but the "
                                          r"header names 4 columns \(a value beyond the last column: '7'\)"):
        read_table(tmp_path / "extra.csv", numbers)


def test_parquet_with_list_columns(tmp_path):
    path = tmp_path / "t.parquet"
    examples().to_parquet(path)
    raw = read_table(path, SCHEMA)
    assert raw["items"].tolist() == [["0042", "sku7"], []]
    assert raw["split"].tolist() == ["train", "test"]
    out = SCHEMA.validate(raw)
    assert out["titles"].tolist() == [["red dress", "blue mug"], []]


def event_log():
    # Unsorted on purpose; "a" has two events at the same time (input order kept).
    return pd.DataFrame({
        "session": ["b", "a", "a", "b", "a", "a"],
        "ts": ["2024-01-01 10:05", "2024-01-01 09:10", "2024-01-01 09:00", "2024-01-01 10:00",
               "2024-01-01 09:10", "2024-01-01 09:20"],
        "items": ["b2", "a2", "a1", "b1", "a3", "a4"],
        "titles": ["B two", "A two", "A one", "B one", "A three", "A four"],
        "q": ["qb2", "qa2", "qa1", "qb1", "qa3", "qa4"],
        "x": [2.0, 1.2, 1.1, 2.1, 1.3, 1.4],
        "c": ["FR", "UK", "UK", "FR", "UK", "DE"],
        "y": [0, 0, 0, 0, 0, 1],
    })


def test_event_log_unsorted_is_sorted_and_last_event_wins():
    out = read_event_log(event_log(), SCHEMA, key="session", time="ts", label="y")
    assert out["session"].tolist() == ["a", "b"]  # order of first event
    numbered = event_log().assign(session=["2", "1.0", "1", " 2", "1", "1.00"])  # one id written 3 ways
    assert read_event_log(numbered, SCHEMA, key="session", time="ts", label="y")["items"].tolist() == [
        ["a1", "a2", "a3", "a4"], ["b1", "b2"]]
    a, b = out.iloc[0], out.iloc[1]
    assert a["items"] == ["a1", "a2", "a3", "a4"]
    assert a["titles"] == ["A one", "A two", "A three", "A four"]
    assert b["items"] == ["b1", "b2"]
    # Scalar columns come from the last event.
    assert (a["x"], a["c"], a["q"], a["y"]) == (1.4, "DE", "qa4", 1)
    assert (b["x"], b["c"], b["y"]) == (2.0, "FR", 0)
    assert a["ts"] == pd.Timestamp("2024-01-01 09:20")
    SCHEMA.validate(out)


def test_event_log_max_events_keeps_most_recent():
    out = read_event_log(event_log(), SCHEMA, key="session", time="ts", max_events=2)
    assert out["items"].tolist() == [["a3", "a4"], ["b1", "b2"]]
    assert out["x"].tolist() == [1.4, 2.0]


def test_event_log_from_file(tmp_path):
    path = tmp_path / "log.csv.gz"
    log = event_log()
    log["session"] = ["007", "0042", "0042", "007", "0042", "0042"]
    log.to_csv(path, index=False)
    out = read_event_log(path, SCHEMA, key="session", time="ts", label="y")
    assert out["session"].tolist() == ["0042", "007"]  # ids read as strings
    assert out["items"].iloc[0] == ["a1", "a2", "a3", "a4"]


def test_event_log_missing_key_is_counted_and_warned(caplog):
    log = event_log()
    log.loc[[0, 3], "session"] = None
    log.loc[5, "session"] = "  "
    with caplog.at_level(logging.WARNING, logger="purchase_intent.data.readers"):
        out = read_event_log(log, SCHEMA, key="session", time="ts")
    assert out["session"].tolist() == ["a"]
    assert out["items"].iloc[0] == ["a1", "a2", "a3"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropped 3 of 6 events with a missing 'session'" in warnings[0].message


def test_event_log_bad_timestamp_names_column_and_row():
    log = event_log()
    log.loc[4, "ts"] = "yesterday"
    with pytest.raises(SchemaError, match=r"column 'ts', spreadsheet row 6 \(header = row 1\): cannot parse 'yesterday'"):
        read_event_log(log, SCHEMA, key="session", time="ts")
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['when'\]"):
        read_event_log(event_log(), SCHEMA, key="session", time="when")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "big.csv.gz"
    df = pd.DataFrame({"q": [f"query {i} " * 5 for i in range(5000)], "x": np.arange(5000.0),
                       "items": "a|b", "titles": "t|u", "c": "UK", "y": 1})
    df.to_csv(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SchemaError, match="big.csv.gz") as e:
        read_table(path, SCHEMA)
    assert "truncated or corrupt" in str(e.value)
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    with pytest.raises(SchemaError, match="corrupt.csv.gz"):
        read_table(corrupt, SCHEMA)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SchemaError, match="empty.csv.*empty"):
        read_table(empty, SCHEMA)
    empty_gz = tmp_path / "empty.csv.gz"
    with gzip.open(empty_gz, "wb"):
        pass
    with pytest.raises(SchemaError, match="empty.csv.gz.*empty"):
        read_table(empty_gz, SCHEMA)
    header_only = tmp_path / "header.csv"
    header_only.write_text("q,titles,items,x,c,y\n")
    with pytest.raises(SchemaError, match="header.csv.*no data rows"):
        read_table(header_only, SCHEMA)


def test_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("whatever")
    with pytest.raises(SchemaError, match=r"table.xlsx: unsupported file type '.xlsx'"):
        read_table(path, SCHEMA)
    with pytest.raises(SchemaError, match="nope.csv: file not found"):
        read_table(tmp_path / "nope.csv", SCHEMA)


# -- dates: day-first or month-first from the data, never from the first row ----------------
def _times(values, **kw):
    from purchase_intent.data.readers import parse_times

    return parse_times(pd.Series(values), "ts", "f.csv", **kw).dt.strftime("%Y-%m-%d %H:%M").tolist()


def test_day_first_dates_are_read_day_first_even_when_the_first_row_is_ambiguous():
    assert _times(["05/04/2024 10:00", "13/04/2024 11:00", "1/5/2024"]) == [
        "2024-04-05 10:00", "2024-04-13 11:00", "2024-05-01 00:00"]
    assert _times(["05/04/2024 10:00", "04/13/2024 11:00"]) == ["2024-05-04 10:00", "2024-04-13 11:00"]
    assert _times(["05.04.24", "13.04.24", "05-04-1999", "31-12-1999"]) == [
        "2024-04-05 00:00", "2024-04-13 00:00", "1999-04-05 00:00", "1999-12-31 00:00"]
    assert _times(["2024-04-05 10:00", "2024-05-04T11:00"]) == ["2024-04-05 10:00", "2024-05-04 11:00"]
    assert _times(["05/05/2024", "2024-05-04"]) == ["2024-05-05 00:00", "2024-05-04 00:00"]  # day == month
    assert _times(["05/04-2024 10:00 PM", "13.04/2024"]) == ["2024-04-05 22:00", "2024-04-13 00:00"]


def test_ambiguous_or_mixed_day_month_order_is_refused():
    with pytest.raises(SchemaError, match=r"f.csv: column 'ts': spreadsheet row 2 \(header = row 1\) has "
                                          r"'05/04/2024', .*no date in the column has a day above 12.*"
                                          r"\(2 such rows\).*--set data.time_format=%d/%m/%Y \(day first\) or "
                                          r"--set data.time_format=%m/%d/%Y"):
        _times(["05/04/2024", "07/04/2024", "04/04/2024"])
    with pytest.raises(SchemaError, match=r'--set "data.time_format=%d.%m.%y %H:%M"'):
        _times(["05.04.24 10:15", "06.04.24 11:00"])
    with pytest.raises(SchemaError, match=r"mixes day-first and month-first dates: spreadsheet row 3 .*"
                                          r"'13/04/2024'.*spreadsheet row 4 .*'04/13/2024'"):
        _times(["05/04/2024", "13/04/2024", "04/13/2024"])


def test_a_given_time_format_is_the_only_reading():
    assert _times(["05/04/2024 10:00", "04/12/2024 11:00"], fmt="%d/%m/%Y %H:%M", exact=True) == [
        "2024-04-05 10:00", "2024-12-04 11:00"]
    with pytest.raises(SchemaError, match=r"spreadsheet row 3 \(header = row 1\): cannot parse '2024-12-04' "
                                          r"as a timestamp with data.time_format='%d/%m/%Y'"):
        _times(["05/04/2024", "2024-12-04"], fmt="%d/%m/%Y", exact=True)
    with pytest.raises(SchemaError, match="cannot read the timestamps together .*write them all in one time zone"):
        _times(["2024-03-04 10:00:05+01:00", "2024-03-04 10:00:05+02:00"])


def test_event_log_takes_the_time_format():
    log = event_log()
    iso = read_event_log(log, SCHEMA, key="session", time="ts")
    log["ts"] = pd.to_datetime(log["ts"]).dt.strftime("%d/%m/%Y %H:%M:%S")
    out = read_event_log(log, SCHEMA, key="session", time="ts", time_format="%d/%m/%Y %H:%M:%S")
    pd.testing.assert_frame_equal(out, iso)
