"""The writers' protocol and registry, the JSONL writer, and the cell texts shared by CSV and Parquet."""

from __future__ import annotations

import gc
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.errors import UsageError
from exporter.writers import FORMATS, flatten_record, format_for_path, open_writer
from exporter.writers.cells import column_name, leaf_cells, text_of
from exporter.writers.jsonl import JsonlWriter
from tests.fakes import Unseekable

ORDERS: list[dict[str, Any]] = [
    {
        "id": "3-00000001",
        "customer": {"id": "C1", "name": 'ACME, "the" company'},
        "comment": "line 1\nline 2\r\nline 3, with a comma\ttab",
        "createdAt": "2024-05-01T10:00:00Z",
        "contract": None,
        "quantity": 3,
        "amount": 12.5,
        "urgent": True,
        "tags": ["a", 1, None],
        "properties": {},
    },
    {"id": "3-00000002", "comment": "Zürich – 東京 😀", "amount": 1e20, "big": 18446744073709551615},
    {"id": "3-00000003", "nested": {"deeper": {"deepest": [{"x": 1}]}}, "empty_list": []},
]


# -- registry -------------------------------------------------------------------------------------


def test_formats_are_the_three_documented_ones() -> None:
    """FORMATS names exactly jsonl, csv and parquet, in that order."""
    assert FORMATS == ("jsonl", "csv", "parquet")


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("out.jsonl", "jsonl"),
        ("dir.v2/out.NDJSON", "jsonl"),
        ("out.csv", "csv"),
        ("/tmp/x.Parquet", "parquet"),
        ("out.json", None),
        ("out", None),
        ("-", None),
    ],
)
def test_format_for_path_follows_the_suffix(path: str, fmt: str | None) -> None:
    """The suffix picks the format, case-insensitively; anything else gives None."""
    assert format_for_path(path) == fmt


def test_open_writer_refuses_an_unknown_format(tmp_path: Path) -> None:
    """An unknown format is a usage error naming the choices."""
    with pytest.raises(UsageError, match="jsonl, csv, parquet"):
        open_writer("xml", io.BytesIO(), scratch_dir=tmp_path)


def test_parquet_cannot_go_to_a_stream_without_scratch_dir() -> None:
    """Parquet to stdout is refused as a usage error, before anything is written."""
    stream = Unseekable()
    with pytest.raises(UsageError, match="stdout"):
        open_writer("parquet", stream, scratch_dir=None)
    assert stream.getvalue() == b""


@pytest.mark.parametrize("fmt", FORMATS)
def test_close_leaves_the_stream_open(fmt: str, tmp_path: Path) -> None:
    """close() completes the output but the caller still owns (and can use) the stream."""
    with (tmp_path / f"out.{fmt}").open("wb") as stream:
        writer = open_writer(fmt, stream, scratch_dir=tmp_path)
        writer.write(ORDERS)
        writer.close()
        assert not stream.closed
        stream.write(b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out.{fmt}"]


# -- JSONL ----------------------------------------------------------------------------------------


def test_jsonl_is_one_exact_json_object_per_line(tmp_path: Path) -> None:
    """Every field of every order, nested kept, in order, one line each, UTF-8."""
    path = tmp_path / "out.jsonl"
    with path.open("wb") as stream:
        writer = open_writer("jsonl", stream, scratch_dir=tmp_path)
        writer.write(ORDERS[:2])
        writer.write(ORDERS[2:])
        writer.close()
    data = path.read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b""
    assert [orjson.loads(line) for line in lines[:-1]] == ORDERS
    assert "Zürich – 東京 😀".encode() in data  # UTF-8, not \u escapes


def test_jsonl_of_zero_orders_is_an_empty_file(tmp_path: Path) -> None:
    """No order: an empty file, which is a valid JSONL file of zero lines."""
    path = tmp_path / "out.jsonl"
    with path.open("wb") as stream:
        writer = open_writer("jsonl", stream, scratch_dir=tmp_path)
        writer.write([])
        writer.close()
    assert path.read_bytes() == b""


def test_jsonl_streams_to_an_unseekable_stream() -> None:
    """stdout mode: the lines reach a stream that cannot seek."""
    stream = Unseekable()
    writer = open_writer("jsonl", stream, scratch_dir=None)
    for order in ORDERS:
        writer.write([order])
    writer.close()
    assert [orjson.loads(line) for line in stream.getvalue().splitlines()] == ORDERS


def test_jsonl_abort_writes_nothing_more_to_the_stream() -> None:
    """After abort(), what was buffered never reaches the stream, not even when the writer is collected."""
    stream = io.BytesIO()
    writer = JsonlWriter(stream)
    writer.write(ORDERS)
    writer.abort()
    del writer
    gc.collect()
    assert stream.getvalue() == b""


def test_jsonl_flushes_its_buffer_when_it_is_large() -> None:
    """Big exports do not wait for close(): the buffer is passed on as it fills."""
    stream = io.BytesIO()
    writer = JsonlWriter(stream)
    writer.write([{"id": str(i), "pad": "x" * 1000} for i in range(1000)])
    assert len(stream.getvalue()) > 500_000
    writer.close()
    assert len(stream.getvalue().splitlines()) == 1000


# -- cell texts -----------------------------------------------------------------------------------


def test_flatten_record_gives_the_documented_cells() -> None:
    """Nested objects flatten to dotted names; lists are JSON; null is empty; {} stays {}."""
    assert flatten_record(ORDERS[0]) == {
        "id": "3-00000001",
        "customer.id": "C1",
        "customer.name": 'ACME, "the" company',
        "comment": "line 1\nline 2\r\nline 3, with a comma\ttab",
        "createdAt": "2024-05-01T10:00:00Z",
        "contract": "",
        "quantity": "3",
        "amount": "12.5",
        "urgent": "true",
        "tags": '["a",1,null]',
        "properties": "{}",
    }
    assert flatten_record(ORDERS[1]) == {
        "id": "3-00000002",
        "comment": "Zürich – 東京 😀",
        "amount": "1e+20",
        "big": "18446744073709551615",
    }
    assert flatten_record(ORDERS[2]) == {
        "id": "3-00000003",
        "nested.deeper.deepest": '[{"x":1}]',
        "empty_list": "[]",
    }


def test_flatten_record_keeps_the_order_of_the_fields() -> None:
    """Cells come in the order of the order's own fields, nested ones in place."""
    assert list(flatten_record({"b": 1, "a": {"z": 1, "y": 2}, "c": None})) == ["b", "a.z", "a.y", "c"]


def test_keys_holding_dots_never_share_a_column_with_nested_ones() -> None:
    """{"a.b": 1} and {"a": {"b": 2}} land in two columns; a dot or backslash in a key is escaped."""
    flat = flatten_record({"a.b": 1, "a": {"b": 2, "c\\d": 3}, "plain": 4})
    assert flat == {"a\\.b": "1", "a.b": "2", "a.c\\\\d": "3", "plain": "4"}


def test_leaf_cells_agree_with_flatten_record() -> None:
    """The slow path's raw paths give the same cells and names as flatten_record."""
    for order in [*ORDERS, {"a.b": 1, "a": {"b": 2, "x.y": {"z": None}}}]:
        assert {column_name(path): cell for path, cell in leaf_cells(order)} == flatten_record(order)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('plain, "quoted"', 'plain, "quoted"'),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        ({"a": [1, "b"]}, '{"a":[1,"b"]}'),
        ([], "[]"),
    ],
)
def test_text_of_is_verbatim_for_strings_and_json_otherwise(value: Any, text: str) -> None:
    """The text of a value that no typed column holds: strings themselves, anything else its JSON."""
    assert text_of(value) == text


class BrokenPipe(io.BytesIO):
    """A reader that went away: every write fails (and is counted)."""

    attempts = 0

    def write(self, data: Any) -> int:
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_jsonl_write_failure_is_one_export_error_and_no_retry() -> None:
    """A failing stream gives an ExportError naming the cause; the buffer is not retried when collected."""
    from exporter.errors import ExportError

    stream = BrokenPipe()
    writer = JsonlWriter(stream)
    writer.write([{"id": "1"}])
    with pytest.raises(ExportError, match="Broken pipe"):
        writer.close()
    attempts = stream.attempts
    del writer
    gc.collect()
    assert stream.attempts == attempts == 1
