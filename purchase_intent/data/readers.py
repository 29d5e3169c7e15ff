"""Readers for user tables (CSV / Parquet) and per-event logs.

Two layouts are supported:

* An *example table* (:func:`read_table`): one row per example. Sequence
  columns hold either lists (Parquet) or one delimited string per cell (CSV,
  ``schema.sequence_delimiter``, e.g. ``"sku1|sku7|sku3"``).
* An *event log* (:func:`read_event_log`): one row per event, grouped into
  one row per example by a key column and ordered by a time column.

Both return raw frames; the caller runs :meth:`FeatureSchema.validate`, which
checks types and converts to the canonical form.
"""

from __future__ import annotations

import codecs
import gzip
import itertools
import logging
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from purchase_intent.schema import FeatureSchema, SchemaError, check_blank_rows, row_ref

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

# pandas' default NA markers, applied to every column that is not text: text,
# categorical and sequence cells only treat the empty cell as missing, so a
# product called "NA" or an item id "null" stays a string.
_DEFAULT_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
               "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]

# Errors pandas, pyarrow, gzip and zlib raise on unreadable files.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError,
    zlib.error, gzip.BadGzipFile, OSError, ValueError)


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    excel = " (an Excel workbook: save it from Excel as \"CSV UTF-8 (comma delimited)\")" if name.endswith(
        (".xlsx", ".xls", ".xlsm", ".ods")) else ""
    raise SchemaError(
        f"{path}: unsupported file type {''.join(path.suffixes) or '(no suffix)'!r}{excel}; "
        f"expected one of {list(CSV_SUFFIXES + PARQUET_SUFFIXES)}")


def read_raw(path: str | Path, string_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Reads a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) file.

    Args:
        path: the file.
        string_columns: CSV columns to read as strings, in which only the
            empty cell counts as missing (ids, text, delimited sequences).
            Columns not in the file are ignored. Unused for Parquet, which
            stores its own types.

    Returns:
        The file's rows, all columns kept, with a fresh ``RangeIndex``.

    Raises:
        SchemaError: unsupported suffix, missing or empty file, or a file
            pandas cannot parse (truncated or corrupt gzip, bad CSV, bad
            Parquet); the message names the file.
    """
    path = Path(path)
    fmt = check_table_file(path)
    with _read_errors(path, fmt):
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, **_csv_options(path, string_columns))
            _warn_replaced_bytes(df, path)
    if len(df) == 0:
        raise SchemaError(f"{path}: the file has no data rows (columns: {list(df.columns)[:30]})")
    df = df.reset_index(drop=True)
    check_blank_rows(df, str(path))
    return df


# Leading bytes of files that are not what their name says, and what to do about them.
_MAGIC = (
    (b"PK\x03\x04", "an Excel workbook or another zip archive, not a CSV: save it from Excel as \"CSV UTF-8 "
                     "(comma delimited)\" and give that file"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook, not a CSV: save it from Excel as \"CSV UTF-8 "
                            "(comma delimited)\" and give that file"),
    (b"PAR1", "a Parquet file: name it .parquet"),
)
_GZIP = b"\x1f\x8b"


def check_table_file(path: str | Path) -> str:
    """The format of ``path`` ("csv" or "parquet"); raises if it is missing, not a file, empty or mislabelled.

    Mislabelled: an Excel workbook, a Parquet file or gzip bytes under a plain
    ``.csv`` name, a plain file under ``.gz``; the message names the file and the fix.
    A CSV whose header names a column twice is refused too. Cheap: callers run
    it before TensorFlow loads.
    """
    path = Path(path)
    fmt = _file_format(path)
    check_file(path)
    with open(path, "rb") as f:
        head = f.read(8)
    gz = path.name.lower().endswith(".gz")
    if fmt == "csv" and not gz and head.startswith(_GZIP):
        raise SchemaError(f"{path}: the file is gzip-compressed but named {path.suffix!r}: "
                          f"rename it to {path.name}.gz (or decompress it)")
    if fmt == "csv" and gz and not head.startswith(_GZIP):
        raise SchemaError(f"{path}: the name ends in .gz but the file is not gzip-compressed: "
                          f"rename it without .gz")
    for magic, what in _MAGIC:
        if fmt == "csv" and not gz and head.startswith(magic):
            raise SchemaError(f"{path}: the file is {what}")
    if fmt == "parquet" and not head.startswith(b"PAR1"):
        raise SchemaError(f"{path}: named {path.suffix!r} but not a Parquet file (it does not start with "
                          "PAR1); a CSV must be named .csv")
    if fmt == "csv":
        with _read_errors(path, fmt):
            _check_header(path, csv_options(path))
    return fmt


def _csv_options(path: Path, string_columns: Iterable[str]) -> dict[str, Any]:
    """``pd.read_csv`` options: string columns as str (only "" missing), pandas' NA markers elsewhere.

    Column names are read without the spaces around them (``a, b`` is columns ``a`` and ``b``;
    :func:`_check_header` has warned and refused names that would then be equal).
    """
    options = csv_options(path)
    raw = pd.read_csv(path, nrows=0, encoding_errors="replace", **options).columns
    header = [str(c).strip() or str(c) for c in raw]
    if header != list(raw):
        options.update(names=header, header=0)
    strings = set(string_columns)
    na_values = {c: ([""] if c in strings else _DEFAULT_NA) for c in header}
    # Bytes that are not UTF-8 (a latin-1 export, a corrupt cell) become U+FFFD
    # instead of failing the whole file; the affected cells are counted by _warn_replaced_bytes.
    # index_col=False: rows with one cell more than the header (a delimiter at the end of each line) keep
    # their columns; pandas' default would make the first column the index and shift every other one left.
    return dict(dtype={c: str for c in header if c in strings}, keep_default_na=False, index_col=False,
                na_values=na_values, encoding_errors="replace", **options)


def _check_header(path: Path, options: dict[str, str]) -> None:
    """Raises :class:`SchemaError` if two columns of the CSV have the same name (pandas would rename one)."""
    import csv

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding=options["encoding"], errors="replace", newline="") as f:
        reader = csv.reader(f, delimiter=options["sep"])
        names = next(reader, [])
        _check_extra_cells(path, len(names), itertools.islice(reader, EXTRA_CELL_ROWS))
    raw = [n.lstrip("\ufeff") for n in names]
    names = [n.strip() for n in raw]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        where = ", ".join(f"{n!r} (columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)})"
                          for n in dupes)
        raise SchemaError(f"{path}: the header names {where} more than once; which one is meant cannot be "
                          "guessed: rename or delete the extra column(s)")
    spaced = [n for n in raw if n != n.strip() and n.strip()]
    if spaced:
        shown = ", ".join(repr(n) for n in spaced[:5]) + (", ..." if len(spaced) > 5 else "")
        _warn_once(path, "%s: %d column name(s) of the header have spaces around them (%s): read without "
                   "them", path, len(spaced), shown)


EXTRA_CELL_ROWS = 1000  # data rows checked for more cells than the header has


def _check_extra_cells(path: Path, width: int, rows: Iterable[list[str]]) -> None:
    """Raises on a row with a value beyond the header's last column; warns when rows only end with empty
    cells there (a delimiter at the end of each line, which the reader then ignores)."""
    trailing, seen = 0, 0
    for i, row in enumerate(rows):
        seen += 1
        extra = [c for c in row[width:] if c.strip()]
        if extra:
            raise SchemaError(f"{path}: {row_ref(i)} has {len(row)} cells but the header names {width} columns "
                              f"(a value beyond the last column: {extra[0][:40]!r}): a delimiter inside an "
                              "unquoted value, or a column without a name; quote the value or name the column")
        trailing += len(row) > width
    if trailing:
        _warn_once(path, "%s: rows end with an empty cell after the last column (a delimiter at the end of the "
                   "line; %d of the %d rows checked): ignored", path, trailing, seen)


class _read_errors:
    """Context manager turning the errors of an unreadable file into a ``SchemaError`` naming it."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None or isinstance(e, SchemaError):
            return False
        if isinstance(e, pd.errors.EmptyDataError):
            raise SchemaError(f"{self.path}: the file is empty (no header row): {e}") from e
        if isinstance(e, _READ_ERRORS):
            raise SchemaError(f"{self.path}: cannot read the {self.fmt.upper()} file "
                              f"({type(e).__name__}: {e}); is it truncated or corrupt?") from e
        return False


def _parquet_chunks(path: Path, chunk_rows: int, chunks: Any):
    """``(row group number, frame)`` batches of the selected row groups, indexed by file row number."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    start = 0
    for group in range(f.num_row_groups):
        size = f.metadata.row_group(group).num_rows
        if chunks is None or chunks(group):
            offset = start
            for batch in f.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                df = batch.to_pandas()
                df.index = pd.RangeIndex(offset, offset + len(df))
                offset += len(df)
                yield group, df
        else:
            yield group, pd.DataFrame(index=pd.RangeIndex(start, start + size))
        start += size


def iter_table(path: str | Path, schema: FeatureSchema, chunk_rows: int = 50_000,
               chunks: Any = None, string_columns: Iterable[str] = ()) -> Iterable[tuple[int, pd.DataFrame]]:
    """Reads a table of examples in chunks, never all of it: :func:`read_table` piece by piece.

    A CSV is read ``chunk_rows`` rows at a time; a Parquet file by batches of
    at most ``chunk_rows`` rows of its row groups. Each chunk's index holds
    the rows' numbers in the file, so ``schema.validate`` names the same
    row as it would on the whole table.

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.
        schema: the features the table holds.
        chunk_rows: rows per chunk (at most).
        chunks: optional predicate on the chunk number, for one partition of
            a file: chunks for which it is false are skipped. A CSV's chunks
            are numbered 0, 1, ... (skipped ones are still parsed); a Parquet
            file's chunk number is its row group's (skipped groups are not read).
        string_columns: more CSV columns to read as strings (an event log's
            session id and event type), besides the schema's.

    Yields:
        ``(chunk number, raw chunk)``.

    Raises:
        SchemaError: as :func:`read_raw`, naming the file; a file without rows.
    """
    path = Path(path)
    fmt = check_table_file(path)
    strings = (list(schema.id) + list(schema.text) + list(schema.categorical) + list(schema.sequence_like)
               + list(string_columns))
    rows = 0
    with _read_errors(path, fmt):
        for number, df in (_parquet_chunks(path, chunk_rows, chunks) if fmt == "parquet" else
                           enumerate(pd.read_csv(path, chunksize=chunk_rows, **_csv_options(path, strings)))):
            if fmt == "csv":
                df.index = pd.RangeIndex(rows, rows + len(df))
            rows += len(df)
            if chunks is not None and not chunks(number):
                continue
            if fmt == "csv":
                _warn_replaced_bytes(df, path)
            check_blank_rows(df, str(path))
            for name in schema.sequence_like:
                if name in df.columns and df[name].dtype == object:
                    df[name] = [list(v) if isinstance(v, (np.ndarray, tuple)) else v for v in df[name]]
            yield number, df
    if rows == 0:
        raise SchemaError(f"{path}: the file has no data rows")


def check_file(path: str | Path) -> Path:
    """``path`` if it is an existing, non-empty file, else a :class:`SchemaError` naming it."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: file not found")
    if not path.is_file():
        raise SchemaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise SchemaError(f"{path}: the file is empty (0 bytes)")
    return path


def csv_options(path: str | Path) -> dict[str, str]:
    """The ``encoding`` and ``sep`` of a CSV (``.csv`` or ``.csv.gz``), for ``pd.read_csv``.

    UTF-8 with or without a byte-order mark is read as UTF-8. UTF-16 (what
    Excel writes as "Unicode text": a BOM, tab-separated) is detected and
    read as such, with a warning; so is UTF-16 without a BOM (every other
    byte zero). The separator is a comma, unless the header has none but
    has tabs or semicolons (Excel's CSV in locales with a decimal comma):
    then that one, with a warning; semicolon-separated files are read with a
    decimal comma (``decimal=","``: "3,5" is 3.5), as Excel writes them.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif len(head) >= 4 and head[1::2].count(0) > len(head) // 4:
        encoding = "utf-16-le"
    elif len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"  # pandas drops a UTF-8 byte-order mark itself
    lines = head.decode(encoding, errors="ignore").lstrip("\ufeff").splitlines()
    first = lines[0] if lines else ""
    sep = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else ","
    names = {",": "comma", "\t": "tab", ";": "semicolon"}
    if encoding != "utf-8":
        _warn_once(path, "%s: the file is %s text (%s-separated), as Excel's \"Unicode text\" writes it; "
                   "read as such. Re-saving it as \"CSV UTF-8\" avoids this guess.", path,
                   encoding.upper(), names[sep])
    elif sep == ";":
        _warn_once(path, "%s: the header has no comma but semicolons: read as semicolon-separated with "
                   "a decimal comma (\"3,5\" is 3.5), as Excel writes CSV where the "
                   "comma is the decimal mark. \"CSV UTF-8 (comma delimited)\" avoids the guess.", path)
        return {"encoding": encoding, "sep": sep, "decimal": ","}
    elif sep != ",":
        _warn_once(path, "%s: the header has no comma but %ss: read as %s-separated. Numbers with a "
                   "decimal comma are not read as numbers; \"CSV UTF-8 (comma delimited)\" avoids "
                   "both.", path, names[sep], names[sep])
    return {"encoding": encoding, "sep": sep}


_WARNED: set[tuple] = set()


def _warn_once(path: Path, message: str, *args: Any) -> None:
    """``logger.warning(message, *args)`` the first time it is said of ``path`` in this process.

    A file is checked before TensorFlow loads, then read (once or chunk by chunk): one warning, not one
    per look at it.
    """
    key = (str(Path(path).resolve()), message, args)
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message, *args)


def _warn_replaced_bytes(df: pd.DataFrame, path: Path) -> None:
    for col in df.columns:
        if not (df[col].dtype == object or pd.api.types.is_string_dtype(df[col])):
            continue
        bad = df[col].map(lambda v: isinstance(v, str) and "\ufffd" in v).to_numpy(dtype=bool)
        if bad.any():
            logger.warning("%s: column %r has %d cell(s) with bytes that are not UTF-8, first at "
                           "%s; they were read with U+FFFD replacement characters (rows kept); "
                           "re-save the file as \"CSV UTF-8\" to keep them",
                           path, col, int(bad.sum()), row_ref(int(np.flatnonzero(bad)[0])))


def read_table(path: str | Path, schema: FeatureSchema) -> pd.DataFrame:
    """Reads a table of examples, one row per example.

    Text and categorical columns are read as strings; sequence columns
    (``schema.sequence_like``) may be lists (Parquet) or
    ``schema.sequence_delimiter``-delimited strings (CSV). Parquet list cells
    (numpy arrays) are returned as Python lists. Columns the schema does not
    name (a split column, ids) are kept.

    Args:
        path: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.
        schema: the features the table holds.

    Returns:
        The raw DataFrame; run ``schema.validate`` on it to check and
        normalise it.

    Raises:
        SchemaError: unsupported suffix, missing or empty file, or a file
            that cannot be parsed; the message names the file.
    """
    strings = list(schema.id) + list(schema.text) + list(schema.categorical) + list(schema.sequence_like)
    df = read_raw(path, string_columns=strings)
    for name in schema.sequence_like:
        if name in df.columns and df[name].dtype == object:
            df[name] = [list(v) if isinstance(v, (np.ndarray, tuple)) else v for v in df[name]]
    return df


# A date written d/m/y or m/d/y (separators / . or -), at the start of the value;
# a time may follow after a space or "T". ISO YYYY-MM-DD never matches (its first field has 4 digits).
# (RE2 syntax, run by Arrow; the two separators may differ, "05/04-2024" is read as its column says.)
_DMY = r"^\s*(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P<sep2>[/.\-])(?P<y>\d{4}|\d{2})(?P<rest>[ T].*)?$"


def parse_times(values: pd.Series, column: str, where: str = "data", fmt: str | None = None,
                exact: bool = False) -> pd.Series:
    """Parses a column of timestamps, raising on the first unparseable one.

    Day-first or month-first is never guessed from the first row. Without a
    format (or when the format fails somewhere, unless ``exact``), the values
    written d/m/y or m/d/y (separator ``/``, ``.`` or ``-``; ISO
    ``YYYY-MM-DD`` is not ambiguous) are read as the column says: some first
    field above 12 -> day-first; some second field above 12 -> month-first;
    both -> an error naming a row of each; neither, while some value reads
    differently both ways (both fields <= 12 and unequal, e.g. ``05/04/2024``)
    -> an error naming the column, that value and the format to give
    (``--set data.time_format=%d/%m/%Y`` or ``%m/%d/%Y``).

    Args:
        values: the raw column (strings or datetimes).
        column: its name, for error messages.
        where: what is being read, for error messages (e.g. a file name).
        fmt: an optional ``strftime`` format tried first (fast path); with
            ``exact``, the format every value must match (``data.time_format``).
        exact: ``fmt`` is the user's: no other reading is tried.

    Returns:
        A ``datetime64`` Series with the index of ``values`` (object if the
        values carry different UTC offsets).

    Raises:
        SchemaError: naming the column, the first bad row and its value, for
            missing or unparseable timestamps, values not matching an exact
            ``fmt``, and ambiguous or mixed day/month orders.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif fmt and exact:
        try:
            parsed = pd.to_datetime(values, errors="coerce", format=fmt)
        except ValueError as e:  # not a format pandas understands
            raise SchemaError(f"{where}: column {column!r}: cannot use data.time_format={fmt!r} ({e})") from None
        _raise_unparsed(values, parsed, column, where, f" with data.time_format={fmt!r}")
    else:
        parsed = pd.to_datetime(values, errors="coerce", format=fmt) if fmt else _iso_times(values)
        if parsed is None or (parsed.isna().to_numpy().any() and not values.isna().to_numpy().all()):
            text = _dates_as_iso(values, column, where)
            try:
                with warnings.catch_warnings():  # "Could not infer format": the per-element retry below
                    warnings.simplefilter("ignore", UserWarning)
                    parsed = pd.to_datetime(text, errors="coerce")  # the format inferred from the first value
                if parsed.isna().to_numpy().any() and not text.isna().to_numpy().all():
                    # Several formats: element by element (no d/m/y value is left to guess: they are ISO now).
                    retry = pd.to_datetime(text, errors="coerce", format="mixed")
                    if retry.isna().sum() < parsed.isna().sum():
                        parsed = retry
            except ValueError as e:  # e.g. pandas refuses to mix time zones
                raise SchemaError(f"{where}: column {column!r}: cannot read the timestamps together ({e}); "
                                  "if some carry a UTC offset and others another or none, write them all "
                                  "in one time zone") from None
    _raise_unparsed(values, parsed, column, where)
    return parsed


def _iso_times(values: pd.Series) -> pd.Series | None:
    """``values`` parsed as ISO 8601 (never ambiguous; the fast common case), or None if one is not."""
    try:
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    except (ValueError, TypeError):  # e.g. several UTC offsets: the general path says so
        return None
    return None if (parsed.isna().to_numpy() & values.notna().to_numpy()).any() else parsed


def _raise_unparsed(values: pd.Series, parsed: pd.Series, column: str, where: str, how: str = "") -> None:
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw = values.iloc[i]
        what = ("missing timestamp" if pd.isna(raw)
                else f"cannot parse {str(raw)[:60]!r} as a timestamp{how}")
        raise SchemaError(f"{where}: column {column!r}, {row_ref(values.index[i])}: {what} "
                          f"({int(bad.sum())} such rows)")


def date_order(values: pd.Series, column: str, where: str = "data", parts: pd.DataFrame | None = None
               ) -> str | None:
    """How the d/m/y-or-m/d/y values of a column are to be read: "day", "month" or None.

    None: no value has that shape, or none is ambiguous (each reads the same
    both ways). See :func:`parse_times`. ``parts``: :func:`_dmy_parts` of ``values`` if known.

    Raises:
        SchemaError: values of both orders, or ambiguous values and none that decides.
    """
    parts = _dmy_parts(values) if parts is None else parts
    if parts is None:
        return None
    a, b = parts["a"].astype(int), parts["b"].astype(int)
    day_first, month_first = (a > 12).to_numpy(), (b > 12).to_numpy()
    if day_first.any() and month_first.any():
        i, j = int(np.flatnonzero(day_first)[0]), int(np.flatnonzero(month_first)[0])
        raise SchemaError(
            f"{where}: column {column!r} mixes day-first and month-first dates: "
            f"{row_ref(parts.index[i])} has {str(values.loc[parts.index[i]])!r} (day {a.iloc[i]} first), "
            f"{row_ref(parts.index[j])} has {str(values.loc[parts.index[j]])!r} (month {a.iloc[j]} first); "
            "write them all in one order")
    if day_first.any():
        return "day"
    if month_first.any():
        return "month"
    ambiguous = ((a != b) & (a <= 12) & (b <= 12)).to_numpy()
    if not ambiguous.any():
        return None
    i = int(np.flatnonzero(ambiguous)[0])
    example = str(values.loc[parts.index[i]])
    sep, sep2, short = parts["sep"].iloc[i], parts["sep2"].iloc[i], len(parts["y"].iloc[i]) == 2
    time = _time_format(parts["rest"].iloc[i])
    year = "%y" if short else "%Y"
    formats = [f"{x}{sep}{y}{sep2}{year}{time}" for x, y in (("%d", "%m"), ("%m", "%d"))]
    quote = (lambda f: f'"data.time_format={f}"') if " " in time else (lambda f: f"data.time_format={f}")
    raise SchemaError(
        f"{where}: column {column!r}: {row_ref(parts.index[i])} has {example!r}, which reads as "
        f"day {a.iloc[i]} month {b.iloc[i]} (day-first) or month {a.iloc[i]} day {b.iloc[i]} "
        f"(month-first), and no date in the column has a day above 12 to tell which "
        f"({int(ambiguous.sum())} such rows); give the format: --set {quote(formats[0])} (day first) "
        f"or --set {quote(formats[1])} (month first)")


def _dmy_parts(values: pd.Series) -> pd.DataFrame | None:
    """The fields of the values written d/m/y or m/d/y (:data:`_DMY`), indexed as ``values``; None if none."""
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return None
    text = values.dropna()
    if values.dtype == object:
        text = text[text.map(lambda v: isinstance(v, str))]
    if not len(text):
        return None
    try:  # Arrow's RE2, vectorised
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.extract_regex(pa.array(text.to_numpy(dtype=object), type=pa.string()), _DMY)
        valid = found.is_valid().to_numpy(zero_copy_only=False)
        parts = pd.DataFrame({k: found.field(k).to_numpy(zero_copy_only=False) for k in
                              ("a", "sep", "b", "sep2", "y", "rest")}, index=text.index)[valid]
    except ImportError:
        parts = text.astype(str).str.extract(_DMY).dropna(subset=["a"])
    return parts.astype(object).where(parts.notna(), "") if len(parts) else None


def _time_format(rest: str) -> str:
    """The strftime format of the time after a date (" 10:15" -> " %H:%M"), "" for none."""
    import re

    rest = rest or ""
    for pattern, fmt in ((r"[ T]\d{1,2}:\d{2}:\d{2}", "%H:%M:%S"), (r"[ T]\d{1,2}:\d{2}", "%H:%M")):
        if re.fullmatch(pattern, rest):
            return rest[0] + fmt
    return "" if not rest else rest[0] + "<time format>"


def _dates_as_iso(values: pd.Series, column: str, where: str) -> pd.Series:
    """``values`` with the d/m/y or m/d/y dates rewritten ``YYYY-MM-DD`` in the order :func:`date_order`
    finds (the time after them kept), so no parser guesses it; other values as they are."""
    parts = _dmy_parts(values)
    if parts is None:
        return values
    order = date_order(values, column, where, parts)
    a, b, y = (parts[k].astype(np.int64).to_numpy() for k in ("a", "b", "y"))
    day, month = (a, b) if order == "day" else (b, a)
    year = np.where(parts["y"].str.len().to_numpy() == 2, np.where(y < 69, 2000 + y, 1900 + y), y)  # as %y
    iso = (pd.Series(year * 10000 + month * 100 + day, index=parts.index).astype(str)  # YYYYMMDD
           .str.replace(r"^(\d{4})(\d\d)(\d\d)$", r"\1-\2-\3", regex=True) + parts["rest"].astype(str))
    out = values.astype(object).copy()
    out.loc[parts.index] = iso.to_numpy(dtype=object)
    return out


def group_boundaries(codes: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in a grouped (sorted) array.

    Args:
        codes: group codes, each group contiguous.

    Returns:
        int array of the start index of every run, plus ``len(codes)`` at
        the end, so run ``g`` is ``[b[g], b[g + 1])``.
    """
    if len(codes) == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    return np.concatenate([[0], starts, [len(codes)]]).astype(np.int64)


def split_to_lists(values: np.ndarray, bounds: np.ndarray) -> list[list[Any]]:
    """Cuts ``values`` into one Python list per run given by :func:`group_boundaries`."""
    flat = values.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def keep_last_n(codes: np.ndarray, n: int | None) -> np.ndarray:
    """Mask keeping the last ``n`` rows of each contiguous group (all if ``n`` is None)."""
    if n is None:
        return np.ones(len(codes), dtype=bool)
    bounds = group_boundaries(codes)
    sizes = np.diff(bounds)
    ends = np.repeat(bounds[1:], sizes)
    return (ends - np.arange(len(codes))) <= n


def event_order(codes: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that groups events by key, oldest first within each key.

    A stable sort by time, then a stable sort by key: time order within each
    key, input order among equal times, keys in order of their first event
    in time (ties: the key seen first in the input).

    Args:
        codes: int key code per event (e.g. from ``pd.factorize``), >= 0.
        times: the events' timestamps (any sortable dtype), aligned with ``codes``.

    Returns:
        ``(order, groups)``: ``order`` indexes the input rows in that order;
        ``groups[i]`` is the rank (0, 1, ...) of the key of row ``order[i]``,
        so the groups are contiguous and ascending (for :func:`group_boundaries`).
    """
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(times, kind="stable")
    uniq, first_pos = np.unique(codes[order], return_index=True)
    rank = np.empty(codes.max() + 1, dtype=np.int64)
    rank[uniq[np.argsort(first_pos, kind="stable")]] = np.arange(len(uniq))
    order = order[np.argsort(rank[codes[order]], kind="stable")]
    return order, rank[codes[order]]


def id_keys(s: pd.Series) -> pd.Series:
    """Ids as rows are grouped and compared by (splits, leakage checks): strings without surrounding
    whitespace, an integer written as a decimal read as that integer (``"1042.0"`` is ``"1042"``: a
    spreadsheet or a float column wrote it so). Missing values are the caller's (:func:`is_missing_key`)."""
    return s.astype(str).str.strip().str.replace(r"^(-?[0-9]+)\.0+$", r"\1", regex=True)


def is_missing_key(s: pd.Series) -> np.ndarray:
    """Mask of missing or blank (whitespace-only) keys, e.g. session or customer ids."""
    missing = s.isna().to_numpy()
    if s.dtype == object or pd.api.types.is_string_dtype(s):
        blank = s.astype(str).str.strip().eq("").to_numpy()
        missing = missing | blank
    return missing


def read_event_log(path_or_df: str | Path | pd.DataFrame, schema: FeatureSchema, key: str,
                   time: str, label: str | None = None,
                   max_events: int | None = None, time_format: str = "") -> pd.DataFrame:
    """Groups a log with one row per event into one row per example.

    Events are grouped by ``key`` and ordered by ``time``, oldest first (a
    stable sort, so events with equal times keep their input order; the
    input need not be sorted). Each sequence-like column
    (``schema.sequence_like``) becomes a list with one value per event.
    Every other column (numeric, categorical, text, the label, ``time`` and
    any extra column) takes the value of the **last** event of the group,
    i.e. the most recent state of the example.

    Rows with a missing (or blank) key cannot be attributed to an example:
    they are dropped, and their number is logged as a warning.

    Args:
        path_or_df: a CSV / Parquet file (see :func:`read_raw`) or a DataFrame.
        schema: the features; its sequence-like columns must be in the log.
        key: column identifying the example (a session or customer id).
        time: column with the event timestamps.
        label: label column, required in the log if given. If None, the
            log's ``schema.label`` column is carried along when present.
        max_events: keep only the most recent ``max_events`` events of each
            example (None: all). Scalar columns still come from the last event.
        time_format: the ``strftime`` format every timestamp must match
            (``data.time_format``); empty: inferred (:func:`parse_times`).

    Returns:
        One row per key, in order of each key's first event: the ``key``
        column, the sequence-like columns as lists, and the last value of
        every other column.

    Raises:
        SchemaError: missing columns, unparseable or missing timestamps
            (naming the column and the first bad row), an unreadable file,
            or no event with a key.
    """
    if isinstance(path_or_df, pd.DataFrame):
        df, where = path_or_df, "event log"
    else:
        strings = [key] + list(schema.text) + list(schema.categorical) + list(schema.sequence_like)
        df, where = read_raw(path_or_df, string_columns=strings), str(path_or_df)
    if max_events is not None and max_events < 1:
        raise SchemaError(f"{where}: max_events must be >= 1 or None, got {max_events}")
    needed = [key, time] + list(schema.sequence_like) + ([label] if label else [])
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; the log has {list(df.columns)[:30]}")
    if len(df) == 0:
        raise SchemaError(f"{where}: the event log is empty (0 rows)")

    no_key = is_missing_key(df[key])
    if no_key.any():
        logger.warning("%s: dropped %d of %d events with a missing %r: cannot attribute them "
                       "to an example", where, int(no_key.sum()), len(df), key)
        df = df[~no_key]
        if len(df) == 0:
            raise SchemaError(f"{where}: every event has a missing {key!r}")

    times = parse_times(df[time], time, where, fmt=time_format or None, exact=bool(time_format))
    codes, _ = pd.factorize(id_keys(df[key]), sort=False)  # " 12" and "12.0" are "12"
    order, sorted_codes = event_order(codes, times.to_numpy())

    seq_cols = list(dict.fromkeys(schema.sequence_like))
    bounds = group_boundaries(sorted_codes)
    last_rows = order[bounds[1:] - 1]
    out = df.iloc[last_rows].drop(columns=seq_cols).reset_index(drop=True)
    out[time] = times.iloc[last_rows].to_numpy()
    keep = keep_last_n(sorted_codes, max_events)
    kept_order = order[keep]
    kept_bounds = group_boundaries(sorted_codes[keep])
    for name in seq_cols:
        values = df[name].to_numpy(dtype=object)[kept_order]
        out[name] = pd.Series(split_to_lists(values, kept_bounds), dtype=object)
    cols = [key] + seq_cols + [c for c in out.columns if c not in seq_cols and c != key]
    return out[cols]
