"""Property tests: random JSON-ish orders, split into random pages, survive each writer."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exporter.errors import ExportError
from exporter.jsoncodec import encode
from exporter.writers import flatten_record
from exporter.writers.csv import EXTRA_COLUMN, CsvWriter
from exporter.writers.jsonl import JsonlWriter
from exporter.writers.parquet import ParquetWriter

KEYS = st.sampled_from(["id", "a", "b", "c.d", "e\\f", "_extra", "ü", "", "x y"])
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
DATES = st.sampled_from(
    ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5+02:00", "2024-05-01", "2024-02-30", "2024-05-01T10:00:00"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["a,b", 'say "hi"', "l1\nl2", "c\r\nd", "\r", "😀東京"])
    | DATES
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
ORDERS = st.lists(st.dictionaries(KEYS, VALUES, max_size=5), max_size=25)
CUTS = st.lists(st.integers(min_value=0, max_value=25), max_size=4)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pages_of(orders: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    bounds = sorted({0, len(orders), *(min(c, len(orders)) for c in cuts)})
    return [orders[a:b] for a, b in itertools.pairwise(bounds)]


def parquet_table(
    path: Path, pages: list[list[dict[str, Any]]], *, lines: bool = False, **options: Any
) -> Any:
    """The table of a Parquet file written page by page: the orders as dicts, or as their JSON lines."""
    with path.open("wb") as stream:
        writer = ParquetWriter(stream, scratch_dir=path.parent, row_group_rows=7, **options)
        for page in pages:
            if lines:
                writer.write_lines([encode(order) for order in page])
            else:
                writer.write(page)
        writer.close()
    return pq.read_table(path)


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))


@SETTINGS
@given(ORDERS, CUTS)
def test_jsonl_round_trips_exactly(orders: list[dict[str, Any]], cuts: list[int]) -> None:
    """Each line reads back as exactly the order that was written, in order."""
    stream = io.BytesIO()
    writer = JsonlWriter(stream)
    for page in pages_of(orders, cuts):
        writer.write(page)
    writer.close()
    assert [orjson.loads(line) for line in stream.getvalue().splitlines()] == orders


@SETTINGS
@given(ORDERS, CUTS, st.integers(min_value=1, max_value=6))
def test_csv_file_rows_equal_flatten_record(
    orders: list[dict[str, Any]], cuts: list[int], header_rows: int
) -> None:
    """File mode, late columns included: each row is flatten_record of its order, other cells empty."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.csv"
        with path.open("wb") as stream:
            writer = CsvWriter(stream, scratch_dir=Path(tmp), header_rows=header_rows)
            for page in pages_of(orders, cuts):
                writer.write(page)
            writer.close()
        rows = parse(path.read_bytes())
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["out.csv"]
    flats = [flatten_record(order) for order in orders]
    if not any(flats):
        assert rows == []
        return
    header, body = rows[0], rows[1:]
    assert len(header) == len(set(header))
    assert len(body) == len(orders)
    for row, flat in zip(body, flats, strict=True):
        cells = dict(zip(header, row, strict=True))
        assert {name: cells[name] for name in flat} == flat
        assert all(cells[name] == "" for name in cells.keys() - flat.keys())


@SETTINGS
@given(ORDERS, CUTS, st.integers(min_value=1, max_value=6))
def test_csv_stream_rows_with_extra_equal_flatten_record(
    orders: list[dict[str, Any]], cuts: list[int], header_rows: int
) -> None:
    """Stream mode: header cells plus the _extra JSON give back flatten_record of each order."""
    stream = io.BytesIO()
    writer = CsvWriter(stream, scratch_dir=None, header_rows=header_rows)
    for page in pages_of(orders, cuts):
        writer.write(page)
    writer.close()
    rows = parse(stream.getvalue())
    if not orders:
        assert rows == []
        return
    header, body = rows[0], rows[1:]
    assert header[-1] == EXTRA_COLUMN
    assert len(body) == len(orders)
    for row, order in zip(body, orders, strict=True):
        flat = flatten_record(order)
        cells = dict(zip(header[:-1], row[:-1], strict=True))
        extra = orjson.loads(row[-1]) if row[-1] else {}
        assert not extra.keys() & cells.keys()
        assert {name: cell for name, cell in cells.items() if name in flat} | extra == flat
        assert all(cell == "" for name, cell in cells.items() if name not in flat)


def _instant(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else None


def holds(stored: Any, original: Any) -> bool:
    """Whether a value read back from Parquet stands for the JSON value written."""
    if original is None:
        return stored is None or (isinstance(stored, dict) and all(v is None for v in stored.values()))
    if isinstance(original, dict):
        if isinstance(stored, str):  # JSON text (its date-times may have been written in UTC)
            return holds(orjson.loads(stored), original)
        return (
            isinstance(stored, dict)
            and all(holds(stored.get(k), v) for k, v in original.items())
            and all(stored[k] is None for k in stored.keys() - original.keys())
        )
    if isinstance(original, list):
        if isinstance(stored, str):
            return holds(orjson.loads(stored), original)
        return (
            isinstance(stored, list)
            and len(stored) == len(original)
            and all(holds(s, o) for s, o in zip(stored, original, strict=True))
        )
    if isinstance(original, str):
        if isinstance(stored, dt.datetime):
            return stored == _instant(original)
        if isinstance(stored, dt.date):
            return stored.isoformat() == original
        if stored == original:
            return True
        # a date-time written before its column became text keeps its instant, written in UTC
        return (
            isinstance(stored, str)
            and _instant(stored) is not None
            and _instant(stored) == _instant(original)
        )
    if isinstance(stored, str):
        return stored == (
            "true" if original is True else "false" if original is False else orjson.dumps(original).decode()
        )
    if isinstance(original, bool) or isinstance(stored, bool):
        return stored is original
    return bool(stored == original)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ORDERS, CUTS, st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=6))
def test_parquet_holds_every_value(
    orders: list[dict[str, Any]], cuts: list[int], sample_rows: int, batch_rows: int
) -> None:
    """Whatever the kinds and their changes, every field of every order is in the file, in order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.parquet"
        if orders and not any(orders):  # no field at all: a file without columns cannot hold rows
            with pytest.raises(ExportError, match="no field at all"):
                parquet_table(path, pages_of(orders, cuts), sample_rows=sample_rows, batch_rows=batch_rows)
            assert [p.name for p in Path(tmp).iterdir()] == ["out.parquet"]  # the stream only, empty
            return
        table = parquet_table(path, pages_of(orders, cuts), sample_rows=sample_rows, batch_rows=batch_rows)
        rows = table.to_pylist()
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["out.parquet"]
    assert len(rows) == len(orders)
    for row, order in zip(rows, orders, strict=False):
        for key, value in order.items():
            assert key in row
            assert holds(row[key], value), (key, row[key], value)
        assert all(holds(row[key], None) for key in row.keys() - order.keys())


# Orders of one shape (each key keeps one kind of value), now and then an odd value or key: the JSON
# reader's path converts most batches, the dict path takes the odd ones.
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SHAPES = st.sampled_from(
    [
        INTS,
        st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-1000, max_value=1000),
        TEXT,
        st.booleans(),
        DATES,
        st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5+02:00", "2024-05-01 10:00-0530"]),
        st.fixed_dictionaries({"x": INTS | st.none(), "y": TEXT}, optional={"z": st.just({})}),
        st.lists(st.integers(min_value=-5, max_value=5) | st.none(), max_size=3),
        st.lists(TEXT | st.sampled_from(['say "hi"', "a\\b", "a,b", "é"]) | st.none(), max_size=3),
        st.lists(st.booleans(), max_size=2),
        st.lists(st.fixed_dictionaries({"t": DATES | st.none()}), max_size=2),
        st.just({}),
    ]
)


@st.composite
def shaped_orders(draw: st.DrawFn) -> list[dict[str, Any]]:
    keys = draw(st.lists(KEYS, unique=True, min_size=1, max_size=4))
    order = st.fixed_dictionaries({}, optional={key: draw(SHAPES) | st.none() for key in keys})
    orders = draw(st.lists(order, min_size=12, max_size=40))
    odd = st.tuples(st.integers(min_value=0, max_value=len(orders) - 1), KEYS, VALUES)
    for index, key, value in draw(st.lists(odd, max_size=2)):
        orders[index] = {**orders[index], key: value}
    return orders


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_orders(), CUTS, st.integers(min_value=1, max_value=6))
def test_parquet_from_json_lines_is_the_file_from_dicts(
    orders: list[dict[str, Any]], cuts: list[int], rows: int
) -> None:
    """Orders given as their JSON lines (pyarrow's JSON reader, the dict path where it cannot be exact)
    make the same file as the same orders given as dicts, cut into the same batches."""
    assume(any(orders))  # orders without any field make no Parquet file (test_parquet_holds_every_value)
    with tempfile.TemporaryDirectory() as tmp:
        tables = [
            parquet_table(
                Path(tmp) / f"{lines}.parquet",
                pages_of(orders, cuts),
                lines=lines,
                sample_rows=rows,
                batch_rows=rows,
                lines_rows=rows,
            )
            for lines in (False, True)
        ]
    assert tables[1].schema == tables[0].schema
    assert tables[1].to_pylist() == tables[0].to_pylist()
