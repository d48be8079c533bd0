"""The CSV writer: RFC 4180 text, cells equal to flatten_record, late columns in file and stream mode."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.writers import flatten_record, open_writer
from exporter.writers.csv import EXTRA_COLUMN, CsvWriter, pad_pieces
from exporter.writers.rows import Layout, encode_rows
from tests.fakes import Unseekable


def parse(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    return (rows[0], rows[1:]) if rows else ([], [])


def write_file(path: Path, pages: list[list[dict[str, Any]]], **options: Any) -> CsvWriter:
    with path.open("wb") as stream:
        writer = CsvWriter(stream, scratch_dir=path.parent, **options)
        for page in pages:
            writer.write(page)
        writer.close()
    return writer


def assert_rows_hold(header: list[str], rows: list[list[str]], orders: list[dict[str, Any]]) -> None:
    """Each row is flatten_record of its order, every other cell empty; the header has no duplicate."""
    assert len(header) == len(set(header))
    assert len(rows) == len(orders)
    for row, order in zip(rows, orders, strict=True):
        assert len(row) == len(header)
        cells = dict(zip(header, row, strict=True))
        flat = flatten_record(order)
        assert {name: cells[name] for name in flat} == flat
        assert all(cells[name] == "" for name in cells.keys() - flat.keys())


TRICKY = [
    "plain",
    "comma, inside",
    'quote " inside',
    '"starts and ends with quotes"',
    "LF\ninside",
    "CR\rinside",
    "CRLF\r\ninside",
    "tab\tinside",
    "  spaces around  ",
    "emoji 😀 and CJK 東京 and RTL עברית",
    "",
    "\u2028 line separator, NUL \x00",
]


def test_rfc4180_text_quotes_only_what_needs_it(tmp_path: Path) -> None:
    """Exact bytes: CRLF rows, quotes doubled, quoting only for comma/quote/CR/LF, UTF-8 without BOM."""
    path = tmp_path / "out.csv"
    write_file(path, [[{"id": "1", "v": "a,b"}, {"id": "2", "v": 'say "hi"'}, {"id": "3", "v": "x\r\ny"}]])
    assert path.read_bytes() == b'id,v\r\n1,"a,b"\r\n2,"say ""hi"""\r\n3,"x\r\ny"\r\n'
    path2 = tmp_path / "out2.csv"
    write_file(path2, [[{"name": "東京 😀", "tab": "a\tb", "n": 1.5, "ok": False, "none": None}]])
    assert path2.read_bytes() == "name,tab,n,ok,none\r\n東京 😀,a\tb,1.5,false,\r\n".encode()


def test_every_tricky_string_reads_back_verbatim(tmp_path: Path) -> None:
    """Commas, quotes, CR, LF, CRLF, tabs, emoji, CJK, NUL, spaces: csv.reader gives each string back."""
    orders = [{"id": str(i), "text": text, "nested": {"text": text}} for i, text in enumerate(TRICKY)]
    path = tmp_path / "out.csv"
    write_file(path, [orders])
    header, rows = parse(path.read_bytes())
    assert header == ["id", "text", "nested.text"]
    assert [row[1] for row in rows] == TRICKY
    assert [row[2] for row in rows] == TRICKY
    assert not path.read_bytes().startswith(b"\xef\xbb\xbf")


def test_cells_are_flatten_record_with_nulls_and_absent_fields_empty(tmp_path: Path) -> None:
    """Nested objects, lists, nulls, absent fields, {}: every row equals flatten_record of its order."""
    orders = [
        {"id": "1", "customer": {"id": "C1", "name": "A"}, "tags": ["x", 2], "contract": None, "p": {}},
        {"id": "2", "customer": None, "amount": 3.25, "p": {"site": {"city": "Lyon"}}},
        {"id": "3", "urgent": True},
    ]
    path = tmp_path / "out.csv"
    write_file(path, [orders])
    header, rows = parse(path.read_bytes())
    assert header == ["id", "customer.id", "customer.name", "tags", "contract", "p", "customer", "amount",
                      "p.site.city", "urgent"]  # fmt: skip
    assert rows[0] == ["1", "C1", "A", '["x",2]', "", "{}", "", "", "", ""]
    assert_rows_hold(header, rows, orders)


def test_a_late_column_is_in_the_header_and_earlier_rows_are_padded(tmp_path: Path) -> None:
    """A field first seen after the header (top level and nested) gets a column; earlier rows are empty."""
    early = [{"id": str(i), "comment": f'multi\r\nline, {i} "q"', "p": {"a": i}} for i in range(50)]
    late = [{"id": "L1", "p": {"a": 1, "b": "new nested"}, "late": "new top"}]
    later = [{"id": "L2", "comment": "after", "late": None, "p": None}]
    path = tmp_path / "out.csv"
    writer = write_file(path, [early[:25], early[25:], late, later], header_rows=10)
    header, rows = parse(path.read_bytes())
    assert header == ["id", "comment", "p.a", "p.b", "late", "p"]
    assert writer.columns_added == ["p.b", "late", "p"]
    assert rows[0] == ["0", 'multi\r\nline, 0 "q"', "0", "", "", ""]
    assert rows[50] == ["L1", "", "1", "new nested", "new top", ""]
    assert_rows_hold(header, rows, early + late + later)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_late_columns_are_kept_when_the_stream_cannot_be_read_back(tmp_path: Path) -> None:
    """A seekable stream without a file behind it: rows are spooled in scratch_dir, then copied."""
    stream = io.BytesIO()
    writer = CsvWriter(stream, scratch_dir=tmp_path, header_rows=1)
    orders = [{"id": "1"}, {"id": "2", "x": "a,b"}, {"id": "3", "y": {"z": 1}}]
    for order in orders:
        writer.write([order])
    assert len(list(tmp_path.iterdir())) == 1  # the spool
    writer.close()
    header, rows = parse(stream.getvalue())
    assert header == ["id", "x", "y.z"]
    assert rows == [["1", "", ""], ["2", "a,b", ""], ["3", "", "1"]]
    assert list(tmp_path.iterdir()) == []


def test_a_value_changing_type_is_just_another_cell(tmp_path: Path) -> None:
    """An int, then a string, then an object in one field: each row holds its own text."""
    orders = [{"v": 1}, {"v": "one"}, {"v": {"w": True}}, {"v": [1]}, {"v": None}]
    path = tmp_path / "out.csv"
    write_file(path, [[o] for o in orders], header_rows=1)
    header, rows = parse(path.read_bytes())
    assert header == ["v", "v.w"]
    assert rows == [["1", ""], ["one", ""], ["", "true"], ["[1]", ""], ["", ""]]


def test_orders_without_fields_before_any_column_still_get_rows(tmp_path: Path) -> None:
    """Empty orders seen before the first column are rows of empty cells, not lost."""
    path = tmp_path / "out.csv"
    write_file(path, [[{}, {}], [{"a": "1"}]], header_rows=1)
    assert parse(path.read_bytes()) == (["a"], [[""], [""], ["1"]])


@pytest.mark.parametrize("scratch", [True, False])
def test_zero_orders_give_an_empty_output(tmp_path: Path, scratch: bool) -> None:
    """No order: no header either (there is no column to name), in file and in stream mode."""
    stream = io.BytesIO() if scratch else Unseekable()
    writer = open_writer("csv", stream, scratch_dir=tmp_path if scratch else None)
    writer.write([])
    writer.close()
    assert stream.getvalue() == b""
    assert list(tmp_path.iterdir()) == []


def test_stream_mode_puts_fields_outside_the_header_into_extra() -> None:
    """stdout: header = first orders' columns + _extra; later fields go into _extra as JSON; none lost."""
    stream = Unseekable()
    writer = open_writer("csv", stream, scratch_dir=None)
    first = [{"id": str(i), "p": {"a": i}} for i in range(1000)]
    late = [{"id": "L", "p": {"a": 1, "b": "x,y"}, "late": 5, EXTRA_COLUMN: "mine"}]
    writer.write(first)
    writer.write(late)
    writer.write([{"id": "M", "late": None}])
    writer.close()
    header, rows = parse(stream.getvalue())
    assert header == ["id", "p.a", EXTRA_COLUMN]
    assert rows[0] == ["0", "0", ""]
    assert rows[1000][:2] == ["L", "1"]
    assert orjson.loads(rows[1000][2]) == {"p.b": "x,y", "late": "5", EXTRA_COLUMN: "mine"}
    assert orjson.loads(rows[1001][2]) == {"late": ""}
    assert writer.columns_added == ["p.b", "late", EXTRA_COLUMN]
    for row, order in zip(rows, [*first, *late, {"id": "M", "late": None}], strict=True):
        cells = {name: cell for name, cell in zip(header[:-1], row[:-1], strict=True) if cell}
        cells.update(orjson.loads(row[-1]) if row[-1] else {})
        assert cells == {name: cell for name, cell in flatten_record(order).items() if cell or name == "late"}


def test_stream_mode_header_waits_for_the_first_orders() -> None:
    """Nothing is written before header_rows orders (or close), so their columns are all in the header."""
    stream = Unseekable()
    writer = CsvWriter(stream, scratch_dir=None, header_rows=3)
    writer.write([{"a": "1"}])
    writer.write([{"b": "2"}])
    assert stream.getvalue() == b""
    writer.write([{"c": "3"}])
    assert parse(stream.getvalue())[0] == ["a", "b", "c", EXTRA_COLUMN]


def test_abort_removes_scratch_files_and_leaves_the_stream_alone(tmp_path: Path) -> None:
    """abort() deletes the spool file and writes nothing more."""
    stream = io.BytesIO()
    writer = CsvWriter(stream, scratch_dir=tmp_path, header_rows=1)
    writer.write([{"a": "1"}])
    assert list(tmp_path.iterdir())
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    assert stream.getvalue() == b""


def test_close_after_abort_does_nothing(tmp_path: Path) -> None:
    """A writer aborted, then closed (an error path), neither raises nor writes."""
    stream = io.BytesIO()
    writer = CsvWriter(stream, scratch_dir=tmp_path)
    writer.write([{"a": "1"}])
    writer.abort()
    writer.close()
    assert stream.getvalue() == b""


def test_encode_rows_quotes_a_lone_empty_cell() -> None:
    """A one-column row with an empty cell is "" so it does not read as a blank line."""
    assert encode_rows([[""], ["x"]]) == '""\r\nx\r\n'
    assert list(csv.reader(io.StringIO(encode_rows([[""], ["x"]]), newline=""))) == [[""], ["x"]]


def test_layout_row_raises_for_a_leaf_without_column() -> None:
    """Layout.row places known leaves by raw key and refuses unknown ones (the caller's slow path)."""
    layout = Layout()
    for path in [("id",), ("p", "a"), ("p",)]:
        assert layout.add(path)
    assert not layout.add(("p", "a"))
    assert layout.row({"p": {"a": 1}, "id": "x"}) == ["x", "1", ""]
    assert layout.row({"p": {}}) == ["", "", "{}"]
    with pytest.raises(KeyError):
        layout.row({"p": {"b": 1}})
    with pytest.raises(KeyError):
        layout.row({"q": None})
    with pytest.raises(KeyError):
        layout.row({"p.a": 1})  # a dotted key is not the nested column


@pytest.mark.parametrize(
    ("pieces", "quoted", "expected"),
    [
        ([b"a,b", b"c,d"], False, (b"a,b,,\r\nc,d,,\r\n", False)),
        ([b'a,"x', b'y",b'], False, (b'a,"x\r\ny",b,,\r\n', False)),
        ([b'a,"x', b"y"], False, (b'a,"x\r\ny\r\n', True)),
        ([b'y",b', b"c"], True, (b'y",b,,\r\nc,,\r\n', False)),
        ([b'"he said ""hi""",1'], False, (b'"he said ""hi""",1,,\r\n', False)),
        ([], False, (b"", False)),
    ],
)
def test_pad_pieces_pads_only_row_ends(
    pieces: list[bytes], quoted: bool, expected: tuple[bytes, bool]
) -> None:
    """Empty cells go before the CRLFs that end rows, never before one inside a quoted cell."""
    assert pad_pieces(pieces, b",,", quoted) == expected


def test_the_rewrite_pads_rows_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows with CRLF inside cells, read back in chunks smaller than a row, are padded right."""
    monkeypatch.setattr("exporter.writers.csv._COPY_CHUNK", 7)
    orders = [{"id": str(i), "t": "x\r\n" * (i % 3) + '"q",', "u": "\r\n"} for i in range(40)]
    path = tmp_path / "out.csv"
    write_file(path, [orders[:20], [{"id": "late", "new": "1"}], orders[20:]], header_rows=5)
    header, rows = parse(path.read_bytes())
    assert header == ["id", "t", "u", "new"]
    assert_rows_hold(header, rows, [*orders[:20], {"id": "late", "new": "1"}, *orders[20:]])


def test_columns_of_the_first_header_rows_orders_need_no_rewrite(tmp_path: Path) -> None:
    """A column first seen within the first header_rows orders is simply in the header."""
    orders = [{"id": str(i)} for i in range(900)] + [{"id": "x", "rare": "1"}] + [{"id": "y"}] * 99
    path = tmp_path / "out.csv"
    writer = write_file(path, [orders[i : i + 100] for i in range(0, 1000, 100)])
    header, rows = parse(path.read_bytes())
    assert header == ["id", "rare"]
    assert writer.columns_added == []
    assert_rows_hold(header, rows, orders)


def test_a_stream_known_only_by_its_descriptor_is_read_back_in_place(tmp_path: Path) -> None:
    """A file opened from a bare descriptor (its name is an int) is read back through /proc/self/fd."""
    fd, name = tempfile.mkstemp(dir=tmp_path, suffix=".csv")
    with os.fdopen(fd, "wb") as stream:
        writer = CsvWriter(stream, scratch_dir=tmp_path, header_rows=1)
        writer.write([{"a": "1"}])
        assert sorted(tmp_path.iterdir()) == [Path(name)]  # no spool file: rows go straight in
        writer.write([{"a": "2", "b": "late"}])
        writer.close()
    assert parse(Path(name).read_bytes()) == (["a", "b"], [["1", ""], ["2", "late"]])
    assert sorted(tmp_path.iterdir()) == [Path(name)]
