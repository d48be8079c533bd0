"""The Parquet writer: typed columns, schema widening without loss, segments, row groups, cleanup."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.writers import open_writer
from exporter.writers.arrowconv import Converter
from exporter.writers.kinds import (
    BOOL,
    DATE,
    FLOAT,
    INT,
    NULL,
    STRING,
    TEXT,
    TIMESTAMP,
    ListOf,
    Struct,
    changes,
    infer,
    kind_of,
    unify,
)
from exporter.writers.parquet import ParquetWriter

UTC = dt.UTC


def write(path: Path, pages: list[list[dict[str, Any]]], **options: Any) -> ParquetWriter:
    options.setdefault("sample_rows", 4)
    options.setdefault("batch_rows", 4)
    with path.open("wb") as stream:
        writer = ParquetWriter(stream, scratch_dir=path.parent, **options)
        for page in pages:
            writer.write(page)
        writer.close()
    return writer


def one_by_one(orders: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [[order] for order in orders]


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# -- kinds (pure) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, NULL),
        (True, BOOL),
        (3, INT),
        (2**63, TEXT),
        (-(2**63), INT),
        (1.5, FLOAT),
        ("x", STRING),
        ("2024-05-01T10:00:00Z", TIMESTAMP),
        ("2024-05-01T10:00:00.123456+02:00", TIMESTAMP),
        ("2024-05-01 10:00-0530", TIMESTAMP),
        ("2024-05-01T10:00:00", STRING),  # no zone: the instant is unknown
        ("2024-05-01T10:00:00.1234567Z", STRING),
        ("2024-05-01", DATE),
        ("٢٠٢٤-05-01", STRING),  # Arabic-Indic digits are not a date
        ({}, Struct(())),
        ({"a": 1, "b": None}, Struct((("a", INT), ("b", NULL)))),
        ([], ListOf(NULL)),
        ([1, 2.5, None], ListOf(FLOAT)),
        ([1, "x"], TEXT),
        ([{"a": 1}, {"b": "x"}], ListOf(Struct((("a", INT), ("b", STRING))))),
        ({"a", "b"}, TEXT),
    ],
)
def test_kind_of_a_value(value: Any, kind: Any) -> None:
    """Each JSON value gets the narrowest kind that holds it."""
    assert kind_of(value) == kind


@pytest.mark.parametrize(
    ("a", "b", "both"),
    [
        (NULL, INT, INT),
        (INT, FLOAT, FLOAT),
        (INT, STRING, TEXT),
        (BOOL, INT, TEXT),
        (TIMESTAMP, STRING, STRING),
        (TIMESTAMP, DATE, STRING),
        (DATE, DATE, DATE),
        (TEXT, Struct(()), TEXT),
        (Struct((("a", INT),)), Struct((("b", STRING), ("a", FLOAT))), Struct((("a", FLOAT), ("b", STRING)))),
        (Struct(()), Struct((("a", INT),)), Struct((("a", INT),))),
        (ListOf(INT), ListOf(FLOAT), ListOf(FLOAT)),
        (ListOf(INT), ListOf(STRING), TEXT),
        (ListOf(INT), INT, TEXT),
        (Struct(()), STRING, TEXT),
    ],
)
def test_unify_finds_the_narrowest_common_kind(a: Any, b: Any, both: Any) -> None:
    """unify is the lattice join: symmetric up to field order, NULL neutral, TEXT absorbing."""
    assert unify(a, b) == both
    assert {name for name, _ in getattr(unify(b, a), "fields", ())} == {
        name for name, _ in getattr(both, "fields", ())
    }


def test_infer_keeps_first_seen_order_and_reports_changes() -> None:
    """Fields in first-seen order; changes() names added fields and widened kinds."""
    old = infer([{"b": 1, "a": {"x": "2024-01-01"}}])
    new = infer([{"b": 1, "a": {"x": "2024-01-01"}}, {"c": None, "a": {"y": True, "x": "soon"}, "b": 1.5}])
    assert [name for name, _ in new.fields] == ["b", "a", "c"]
    assert changes(old, new) == (["a.y", "c"], ["b: int -> float", "a.x: date -> string"])


@pytest.mark.parametrize(
    ("kind_source", "value"),
    [
        ({"n": 1}, {"n": 1.5}),  # a float in an int column would be truncated
        ({"f": 1.5}, {"f": True}),  # a bool in a double column would become 1.0
        ({"l": ["a"]}, {"l": "ab"}),  # a string in a list column would be split
        ({"s": {"a": 1}}, {"s": ""}),  # "" in a struct column would be an empty struct
        ({"s": {"a": 1}}, {"s": []}),
        ({"s": {"a": 1}}, {"s": {"a": 1, "b": 2}}),  # a nested key would be dropped
        ({"l": [{"a": 1}]}, {"l": [{"a": 1, "b": 2}]}),
        ({"l": [1]}, {"l": [1.5]}),
        ({"a": 1}, {"a": 1, "z": 2}),
    ],
)
def test_fits_refuses_what_pyarrow_would_silently_change(kind_source: dict[str, Any], value: Any) -> None:
    """The C-level checks catch every silent coercion of pyarrow.array with an explicit type."""
    converter = Converter(infer([kind_source]))
    assert converter.fits([kind_source])
    assert not converter.fits([kind_source, value])


# -- the file -------------------------------------------------------------------------------------


REALISTIC = [
    {
        "id": f"3-{i:08d}",
        "customer": {"id": f"C{i}", "name": 'ACME, "SA" 東京'},
        "createdAt": "2024-05-01T10:00:00Z" if i % 2 else "2024-05-01T12:30:00.250+02:00",
        "requestedAt": "2025-01-31",
        "contract": None if i % 3 else f"CTR-{i}",
        "quantity": i,
        "amount": i + 0.5,
        "urgent": i % 2 == 0,
        "tags": ["a", "b"][: i % 3],
        "mixed": [1, "x"],
        "properties": {"site": {"city": "Paris"}} if i % 4 else None,
    }
    for i in range(10)
]


def test_columns_are_typed(tmp_path: Path) -> None:
    """Date-times: UTC timestamps; dates: date32; ints, floats, bools; objects: structs; lists: lists."""
    path = tmp_path / "out.parquet"
    write(path, [REALISTIC], sample_rows=100)
    schema = pq.read_schema(path)
    assert schema.field("createdAt").type == pa.timestamp("us", tz="UTC")
    assert schema.field("requestedAt").type == pa.date32()
    assert schema.field("quantity").type == pa.int64()
    assert schema.field("amount").type == pa.float64()
    assert schema.field("urgent").type == pa.bool_()
    assert schema.field("contract").type == pa.string()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("mixed").type == pa.string()  # not uniform: JSON text
    assert schema.field("customer").type == pa.struct([("id", pa.string()), ("name", pa.string())])
    assert schema.field("properties").type == pa.struct([("site", pa.struct([("city", pa.string())]))])
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_values_read_back_exactly(tmp_path: Path) -> None:
    """Every value comes back: timestamps equal to the parsed ISO strings (offsets converted to UTC)."""
    path = tmp_path / "out.parquet"
    write(path, [REALISTIC[:5], REALISTIC[5:]], sample_rows=100)
    rows = pq.read_table(path).to_pylist()
    assert [row["id"] for row in rows] == [order["id"] for order in REALISTIC]
    assert rows[0]["createdAt"] == dt.datetime(2024, 5, 1, 10, 30, 0, 250000, tzinfo=UTC)
    for row, order in zip(rows, REALISTIC, strict=True):
        assert row["createdAt"] == ts(order["createdAt"])
        assert row["requestedAt"] == dt.date(2025, 1, 31)
        assert row["mixed"] == '[1,"x"]'
        for key in ("id", "customer", "contract", "quantity", "amount", "urgent", "tags", "properties"):
            assert row[key] == order[key], key


def test_an_always_empty_object_is_a_struct_with_a_placeholder(tmp_path: Path) -> None:
    """Parquet has no empty struct: {} is stored as {_empty: null}, distinct from null and absent."""
    path = tmp_path / "out.parquet"
    write(path, [[{"id": "1", "properties": {}}, {"id": "2", "properties": None}, {"id": "3"}]])
    assert pq.read_schema(path).field("properties").type == pa.struct([("_empty", pa.null())])
    assert [row["properties"] for row in pq.read_table(path).to_pylist()] == [{"_empty": None}, None, None]


def test_an_empty_object_that_later_gets_fields_becomes_a_real_struct(tmp_path: Path) -> None:
    """{} in the sample, fields later: the placeholder goes, earlier {} rows keep a non-null struct."""
    early = [{"id": str(i), "properties": {} if i % 2 else None} for i in range(8)]
    late = [{"id": "late", "properties": {"site": {"city": "Lyon"}, "vlan": 7}}]
    path = tmp_path / "out.parquet"
    writer = write(path, [early[:4], early[4:], late])
    assert pq.read_schema(path).field("properties").type == pa.struct(
        [("site", pa.struct([("city", pa.string())])), ("vlan", pa.int64())]
    )
    rows = pq.read_table(path).to_pylist()
    assert rows[1]["properties"] == {"site": None, "vlan": None}
    assert rows[0]["properties"] is None
    assert rows[8]["properties"] == {"site": {"city": "Lyon"}, "vlan": 7}
    assert writer.columns_added == ["properties.site", "properties.vlan"]


def test_a_field_first_seen_late_reaches_the_file(tmp_path: Path) -> None:
    """New top-level and nested fields after the schema is fixed: in the file, null in earlier rows."""
    early = [{"id": str(i), "customer": {"id": f"C{i}"}} for i in range(10)]
    late = [{"id": "L", "customer": {"id": "CL", "tier": "gold"}, "newField": 42}]
    path = tmp_path / "out.parquet"
    writer = write(path, [early[:5], early[5:], late, early[:2]])
    rows = pq.read_table(path).to_pylist()
    assert [row["id"] for row in rows] == [*(o["id"] for o in early), "L", "0", "1"]
    assert rows[0]["customer"] == {"id": "C0", "tier": None}
    assert rows[0]["newField"] is None
    assert rows[10]["customer"] == {"id": "CL", "tier": "gold"}
    assert rows[10]["newField"] == 42
    assert writer.columns_added == ["customer.tier", "newField"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


@pytest.mark.parametrize(
    ("first", "then", "column_type", "values"),
    [
        (1, 2.5, pa.float64(), [1.0, 2.5]),
        (1, "many", pa.string(), ["1", "many"]),
        (1.5, True, pa.string(), ["1.5", "true"]),
        (True, "yes", pa.string(), ["true", "yes"]),
        ("2024-05-01T10:00:00+02:00", "not a date", pa.string(), ["2024-05-01T08:00:00Z", "not a date"]),
        ("2024-05-01", "2024-05-01T10:00:00Z", pa.string(), ["2024-05-01", "2024-05-01T10:00:00Z"]),
        ("2024-02-28", "2024-02-30", pa.string(), ["2024-02-28", "2024-02-30"]),
        ("x", {"a": 1}, pa.string(), ["x", '{"a":1}']),
        ({"a": 1}, "x", pa.string(), ['{"a":1}', "x"]),
        ([1], [1.5], pa.list_(pa.float64()), [[1.0], [1.5]]),
        ([1], ["x"], pa.string(), ["[1]", '["x"]']),
        (None, "late", pa.string(), [None, "late"]),
        (2**62, 2**64 - 1, pa.string(), [str(2**62), str(2**64 - 1)]),
    ],
)
def test_a_value_of_another_type_widens_the_column(
    tmp_path: Path, first: Any, then: Any, column_type: Any, values: list[Any]
) -> None:
    """A later value the column's type cannot hold widens the column; no value is lost."""
    orders = [{"id": str(i), "v": first, "n": {"v": first}} for i in range(6)]
    orders.append({"id": "x", "v": then, "n": {"v": then}})
    path = tmp_path / "out.parquet"
    writer = write(path, one_by_one(orders))
    table = pq.read_table(path)
    assert table.schema.field("v").type == column_type
    assert table.schema.field("n").type == pa.struct([("v", column_type)])
    column = table.column("v").to_pylist()
    nested = [n["v"] for n in table.column("n").to_pylist()]
    assert [column[0], column[-1]] == values  # the first row was written before the column widened
    assert [nested[0], nested[-1]] == values
    assert writer.columns_widened or first is None


def test_a_huge_int_among_floats_widens_to_text(tmp_path: Path) -> None:
    """An int a double cannot hold exactly is kept as text rather than rounded."""
    path = tmp_path / "out.parquet"
    write(path, one_by_one([{"v": 0.5}] * 5 + [{"v": 2**60 + 1}]))
    column = pq.read_table(path).column("v").to_pylist()
    assert [column[0], column[-1]] == ["0.5", str(2**60 + 1)]


def test_zero_orders_give_a_valid_empty_file(tmp_path: Path) -> None:
    """No order: a Parquet file with no column and no row."""
    path = tmp_path / "out.parquet"
    with path.open("wb") as stream:
        writer = open_writer("parquet", stream, scratch_dir=tmp_path)
        writer.close()
    assert pq.read_table(path).num_rows == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_a_large_export_has_several_row_groups(tmp_path: Path) -> None:
    """300,000 small orders through the defaults: one segment, row groups of 100,000, all in order."""
    path = tmp_path / "out.parquet"
    with path.open("wb") as stream:
        writer = open_writer("parquet", stream, scratch_dir=tmp_path)
        for start in range(0, 300_000, 1_000):
            writer.write([{"id": i, "at": "2024-05-01T10:00:00Z"} for i in range(start, start + 1_000)])
        writer.close()
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 300_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100_000] * 3
    assert pq.read_table(path, columns=["id"]).column("id").to_pylist() == list(range(300_000))


def test_the_rewrite_makes_full_row_groups_from_several_segments(tmp_path: Path) -> None:
    """Segments of any size are re-cut into row groups of row_group_rows in the final file."""
    orders = [{"id": i} for i in range(23)] + [{"id": 23, "late": "x"}] + [{"id": i} for i in range(24, 50)]
    path = tmp_path / "out.parquet"
    write(path, one_by_one(orders), row_group_rows=10)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 10, 10, 10]
    table = pq.read_table(path)
    assert table.column("id").to_pylist() == list(range(50))
    assert table.column("late").to_pylist() == [None] * 23 + ["x"] + [None] * 26


@pytest.mark.parametrize("as_lines", [False, True])
def test_wide_orders_make_shorter_row_groups(tmp_path: Path, as_lines: bool) -> None:
    """A row group also ends when its Arrow data reaches row_group_bytes: wide orders must not hold
    row_group_rows of them in memory. Every order still arrives, in order."""
    orders = [{"id": i, "text": f"{i:06d}" + "w" * 2_000} for i in range(600)]
    path = tmp_path / "out.parquet"
    with path.open("wb") as stream:
        options = {"sample_rows": 50, "batch_rows": 50, "lines_rows": 50, "row_group_bytes": 200_000}
        writer = ParquetWriter(stream, scratch_dir=tmp_path, **options)
        for start in range(0, 600, 50):
            page = orders[start : start + 50]
            writer.write_lines(lines_of(page)) if as_lines else writer.write(page)
        writer.close()
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 600
    assert max(sizes) <= 150, sizes  # about 100 of these orders are 200 kB of Arrow data
    assert pq.read_table(path).to_pylist() == orders


def test_the_byte_cap_leaves_narrow_orders_in_full_row_groups(tmp_path: Path) -> None:
    orders = [{"id": i, "at": "2024-05-01T10:00:00Z"} for i in range(50)]
    path = tmp_path / "out.parquet"
    write(path, [orders[k : k + 5] for k in range(0, 50, 5)], row_group_rows=10, row_group_bytes=1 << 20)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10] * 5


def test_abort_removes_every_scratch_file(tmp_path: Path) -> None:
    """abort() in the middle of an export deletes the segments and writes nothing to the stream."""
    stream = io.BytesIO()
    writer = ParquetWriter(stream, scratch_dir=tmp_path, sample_rows=2, batch_rows=2)
    writer.write([{"a": 1}, {"a": 2}])
    writer.write([{"a": "x"}, {"a": 3}])
    assert len(list(tmp_path.iterdir())) == 2
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    assert stream.getvalue() == b""
    writer.close()
    assert stream.getvalue() == b""


def test_a_failing_stream_is_an_export_error_and_cleans_up(tmp_path: Path) -> None:
    """close() that cannot write says so as an ExportError and leaves no scratch file."""

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    writer = ParquetWriter(Full(), scratch_dir=tmp_path)
    writer.write([{"a": 1}])
    from exporter.errors import ExportError

    with pytest.raises(ExportError, match="No space left"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_big_ints_written_before_a_float_arrives_are_not_rounded(tmp_path: Path) -> None:
    """int -> double would round 2**60 + 1 written earlier: that column becomes text instead, exactly."""
    orders = [{"v": 2**60 + 1, "n": {"v": [2**60 + 1]}}, *({"v": i, "n": {"v": [i]}} for i in range(5))]
    orders.append({"v": 0.5, "n": {"v": [0.5]}})
    path = tmp_path / "out.parquet"
    writer = write(path, one_by_one(orders))
    table = pq.read_table(path)
    column = table.column("v").to_pylist()
    assert column[0] == str(2**60 + 1)  # exactly, not 1.152921504606847e+18
    assert [float(text) for text in column[1:]] == [0, 1, 2, 3, 4, 0.5]  # later ones were doubles: "3.0"
    assert table.schema.field("n").type == pa.struct([("v", pa.list_(pa.string()))])
    assert table.column("n").to_pylist()[0] == {"v": [str(2**60 + 1)]}
    assert "v: float -> text" in writer.columns_widened


def test_small_ints_widen_to_double_when_a_float_arrives(tmp_path: Path) -> None:
    """Ints a double holds exactly stay numbers: the column is double."""
    path = tmp_path / "out.parquet"
    write(path, one_by_one([{"v": 2**53}, *({"v": i} for i in range(5)), {"v": 0.5}]))
    table = pq.read_table(path)
    assert table.schema.field("v").type == pa.float64()
    assert table.column("v").to_pylist() == [2.0**53, 0.0, 1.0, 2.0, 3.0, 4.0, 0.5]


def test_lists_of_nulls_survive_beside_timestamps(tmp_path: Path) -> None:
    """pyarrow 26 corrupts list<null> in a struct-wide cast; only the date-time leaves are cast."""
    orders = [
        {"at": "2024-05-01T10:00:00Z", "l": [None], "p": {"l": [None, None], "e": {}, "d": "2024-05-01"}},
        {"at": None, "l": [None, None, None], "p": None},
        {"at": "2024-05-02T10:00:00+02:00", "l": [], "p": {"l": None, "e": None, "d": None}},
    ]
    path = tmp_path / "out.parquet"
    write(path, [orders], sample_rows=100)
    table = pq.read_table(path)
    table.validate(full=True)
    rows = table.to_pylist()
    assert [row["l"] for row in rows] == [[None], [None, None, None], []]
    assert rows[0]["p"] == {"l": [None, None], "e": {"_empty": None}, "d": dt.date(2024, 5, 1)}
    assert rows[2]["at"] == dt.datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


# -- orders given as JSON lines (pyarrow's JSON reader) ---------------------------------------------

PLAIN = [
    {
        "id": f"o{i}",
        "n": i,
        "vat": 0.2 if i % 2 else 1,
        "at": "2024-05-01T10:00:00+02:00",
        "day": "2024-05-01",
        "ok": i % 3 == 0,
        "tags": ["a", None],
        "customer": {"id": "c", "seen": [{"at": "2024-05-01T10:00:00Z"}]},
        "none": None,
        "empty": {},
    }
    for i in range(6)
]


def lines_of(orders: list[dict[str, Any]]) -> list[bytes]:
    from exporter.jsoncodec import encode

    return [encode(order) for order in orders]


def test_the_json_reader_converts_plain_orders_exactly_as_the_dict_path() -> None:
    converter = Converter(infer(PLAIN))
    batch = converter.convert_lines(lines_of(PLAIN))
    assert batch is not None, "plain orders take the JSON reader's path"
    assert batch.equals(converter.convert(PLAIN))


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":"x","n":1.0}',  # a float in an int column
        b'{"id":"x","n":true}',
        b'{"id":"x","n":9223372036854775808}',  # beyond int64
        b'{"id":"x","vat":9007199254740993}',  # a double would round it
        b'{"id":"x","vat":1e300}',  # a double, but the reader's path is only for magnitudes below 2**53
        b'{"id":"x","unknown":null}',
        b'{"id":"x","customer":{"id":"c","more":1}}',  # a nested key first seen late
        b'{"id":"x","id":"y"}',  # a key twice: the dict path keeps the last
        b'{"id":"x","at":"not a date"}',
        b'{"id":"x","day":"2024-02-30"}',
        b'{"id":"x","tags":"a"}',
        b'{"id":"x","customer":""}',
        b'{"id":"x","empty":{"a":1}}',
        b'{"id":5}',
    ],
)
def test_the_json_reader_hands_on_what_it_cannot_convert_exactly(line: bytes) -> None:
    """Each of these goes to the dict path (None), which widens the kind or keeps the value exact."""
    converter = Converter(infer(PLAIN))
    assert converter.convert_lines([*lines_of(PLAIN[:2]), line]) is None


def test_the_json_reader_takes_lists_of_nulls() -> None:
    """A list<null> column from the reader (which pyarrow 26 cannot combine_chunks) converts exactly."""
    orders = [{"id": "a", "l": [None], "p": {"l": []}}, {"id": "b", "l": None, "p": None}]
    converter = Converter(infer(orders))
    batch = converter.convert_lines(lines_of(orders))
    assert batch is not None
    assert batch.equals(converter.convert(orders))


def test_a_kind_with_text_columns_has_no_json_reader_path() -> None:
    converter = Converter(infer([{"id": "x", "mixed": 1}, {"id": "y", "mixed": "a"}]))
    assert converter.convert_lines([b'{"id":"z","mixed":"b"}']) is None


@pytest.mark.parametrize("threads", [1, 2])
def test_lines_and_dicts_give_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """Orders given as lines, some of them odd (the dict path widens for those), make the file that the
    same orders given as dicts make, with or without the converting thread."""
    monkeypatch.setattr("exporter.writers.inorder.cores", lambda: threads)
    monkeypatch.setattr("exporter.writers.parquet.cores", lambda: threads)
    orders = [*PLAIN, {"id": "late", "n": 2.5, "new": {"x": 1}}, *PLAIN, {"id": "big", "vat": 2**60 + 1}]
    orders += [{**order, "id": f"again{i}"} for i, order in enumerate(PLAIN * 3)]
    tables = []
    for name in ("dicts", "lines"):
        path = tmp_path / f"{name}.parquet"
        with path.open("wb") as stream:
            writer = ParquetWriter(
                stream, scratch_dir=tmp_path, sample_rows=4, batch_rows=4, lines_rows=4, row_group_rows=5
            )
            for start in range(0, len(orders), 3):
                page = orders[start : start + 3]
                writer.write_lines(lines_of(page)) if name == "lines" else writer.write(page)
            writer.close()
        tables.append(pq.read_table(path))
        assert writer.columns_added == ["new"]
        assert "vat: float -> text" in writer.columns_widened
    assert tables[1].schema == tables[0].schema
    assert tables[1].to_pylist() == tables[0].to_pylist()
    assert tables[0].column("vat").to_pylist()[-len(PLAIN) * 3 - 1] == str(2**60 + 1)


def test_a_failure_on_the_converting_thread_reaches_the_caller_and_stops_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while a block is written on the thread comes out of a later call; from then on no commit
    may list what is held (a block is missing from it), no more orders are taken, and abort() leaves no
    scratch file."""
    from exporter.errors import ExportError
    from exporter.writers.parquet import RowGroups

    monkeypatch.setattr("exporter.writers.inorder.cores", lambda: 2)
    stream = io.BytesIO()
    writer = ParquetWriter(stream, scratch_dir=tmp_path, sample_rows=4, lines_rows=4, commit_rows=1)
    writer.write_lines(lines_of(PLAIN[:4]))
    assert writer.commit(force=True) is not None

    def full(self: Any, batch: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RowGroups, "add", full)
    writer.write_lines(lines_of(PLAIN[:4]))  # fails on the thread
    with pytest.raises(ExportError, match="No space left"):
        writer.commit(force=True)
    assert writer.commit(force=True) is None, "the last commit stays the last"
    with pytest.raises(ExportError, match="cannot go on"):
        writer.write_lines(lines_of(PLAIN[:4]))
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert stream.getvalue() == b""


def test_a_block_of_lines_is_handed_on_at_its_size_in_bytes_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large orders make blocks of fewer orders (memory follows the text, not the count of orders)."""
    monkeypatch.setattr("exporter.writers.parquet._BLOCK_BYTES", 100)
    sizes: list[int] = []
    convert_lines = Converter.convert_lines

    def spy(self: Converter, lines: list[bytes]) -> Any:
        sizes.append(len(lines))
        return convert_lines(self, lines)

    monkeypatch.setattr(Converter, "convert_lines", spy)
    path = tmp_path / "out.parquet"
    orders = [{"id": f"o{i}", "text": "x" * 30} for i in range(20)]  # 33 bytes of text each, and more
    with path.open("wb") as stream:
        writer = ParquetWriter(stream, scratch_dir=tmp_path, sample_rows=1, lines_rows=1_000)
        for order in orders:
            writer.write_lines(lines_of([order]))
        writer.close()
    assert sizes
    assert max(sizes) <= 3
    assert pq.read_table(path).column("id").to_pylist() == [order["id"] for order in orders]
