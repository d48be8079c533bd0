"""Partition keys and the Parquet parts writer of datasets, without any server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from exporter.errors import UsageError
from exporter.partitions import DEFAULT_PARTITION, Partitioner, parse_specs
from exporter.writers.parts import Part, PartsWriter


def test_specs_name_their_folder_keys() -> None:
    keys = parse_specs(["createdAt:month", "type", "customer.segment"])
    assert [key.name for key in keys] == ["createdAt_month", "type", "customer_segment"]
    assert [key.strips for key in keys] == [False, True, False]


@pytest.mark.parametrize(
    ("spec", "words"),
    [("", "name an attribute"), ("createdAt:week", "unknown transform"), ("a..b", "name an attribute")],
)
def test_bad_specs_are_refused(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_specs([spec])


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="twice"):
        parse_specs(["type", "type"])


@pytest.mark.parametrize(
    ("value", "transform", "folder"),
    [
        ("2026-01-31T23:30:00Z", "month", "2026-01"),
        ("2026-01-31T23:30:00-02:00", "month", "2026-02"),  # the instant in UTC, as Parquet stores it
        ("2026-01-31 23:30:00+00:00", "hour", "2026-01-31T23"),
        ("2026-01-31T23:30:00.5+01:00", "day", "2026-01-31"),
        ("2026-12-31T23:59:59+00:00", "year", "2026"),
        ("2026-03-04", "month", "2026-03"),
        ("2026-03-04T10:00:00", "day", "2026-03-04"),  # no zone: its wall-clock date
        ("not a date", "month", DEFAULT_PARTITION),
        ("2026-13-01", "month", DEFAULT_PARTITION),
        (20260101, "month", DEFAULT_PARTITION),
        (None, "month", DEFAULT_PARTITION),
    ],
)
def test_time_buckets(value: Any, transform: str, folder: str) -> None:
    (key,) = parse_specs([f"createdAt:{transform}"])
    assert key.value({"createdAt": value}) == folder


def test_plain_values_and_escaping() -> None:
    partitioner = Partitioner(parse_specs(["type", "customer.id"]))
    order = {"id": 1, "type": "a/b=c d%", "customer": {"id": 7}}
    folder = partitioner.folder(order)
    assert folder == ("a/b=c d%", "7")
    assert partitioner.path(folder) == "type=a%2Fb%3Dc%20d%25/customer_id=7/"
    assert partitioner.stripped(order) == {"id": 1, "customer": {"id": 7}}  # type goes, nested stays
    assert partitioner.folder({"type": True}) == ("true", DEFAULT_PARTITION)
    assert partitioner.folder({"type": {"x": 1}, "customer": 3}) == (DEFAULT_PARTITION, DEFAULT_PARTITION)
    assert partitioner.folder({"type": ""}) == (DEFAULT_PARTITION, DEFAULT_PARTITION)


def _orders(start: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": f"o{i:06d}",
            "type": "AB"[i % 2],
            "createdAt": f"2026-0{1 + (i // 1000) % 9}-15T12:00:00Z",
            "amount": i * 1.5,
            **extra,
        }
        for i in range(start, start + count)
    ]


def _write(tmp: Path, orders: list[dict[str, Any]], page: int = 100, **options: Any) -> PartsWriter:
    specs = options.pop("specs", [])
    writer = PartsWriter(tmp, Partitioner(parse_specs(specs)), **options)
    for start in range(0, len(orders), page):
        writer.write(orders[start : start + page])
    writer.close()
    return writer


def _rows(ready: list[tuple[Path, Part]]) -> list[dict[str, Any]]:
    return [row for path, _ in ready for row in pq.read_table(path).to_pylist()]


def test_parts_roll_at_page_boundaries_and_keep_every_order(tmp_path: Path) -> None:
    orders = _orders(0, 2_550)
    writer = _write(tmp_path, orders, part_rows=1_000, sample_rows=50, batch_rows=30)
    parts = [part for _, part in writer.ready]
    assert [part.rows for part in parts] == [1_000, 1_000, 550]
    assert [part.name for part in parts] == [f"part-0000-0000{n}.parquet" for n in (1, 2, 3)]
    assert [row["id"] for row in _rows(writer.ready)] == [order["id"] for order in orders]
    assert all(path.stat().st_size == part.size for path, part in writer.ready)


def test_partitioned_parts_hold_their_folder_only(tmp_path: Path) -> None:
    orders = _orders(0, 3_000)
    writer = _write(tmp_path, orders, specs=["createdAt:month", "type"], part_rows=800, sample_rows=100)
    seen = 0
    for path, part in writer.ready:
        month, kind = part.folder
        assert part.name.startswith(f"createdAt_month=2026-{month[-2:]}/type={kind}/part-0000-")
        rows = pq.read_table(path).to_pylist()
        assert "type" not in rows[0]  # in the path, not in the file
        assert {row["createdAt"].strftime("%Y-%m") for row in rows} == {month}
        assert {orders[int(row["id"][1:])]["type"] for row in rows} == {kind}
        seen += len(rows)
    assert seen == len(orders)
    assert max(part.rows for _, part in writer.ready) <= 800 + 100  # a page at most past the roll


def test_commit_points_come_only_when_every_part_is_finished(tmp_path: Path) -> None:
    writer = PartsWriter(tmp_path, Partitioner(()), part_rows=250, sample_rows=10, batch_rows=10)
    points = []
    orders = _orders(0, 1_000)
    for start in range(0, 1_000, 100):
        writer.write(orders[start : start + 100])
        points.append(writer.at_commit_point)
    # 300 rows after the third page: roll; 600 after the sixth, 900 after the ninth.
    assert points == [False, False, True, False, False, True, False, False, True, False]


def test_the_same_orders_give_the_same_bytes(tmp_path: Path) -> None:
    orders = _orders(0, 1_500)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", orders, part_rows=600)
    second = _write(tmp_path / "b", orders, part_rows=600)
    assert [part.sha256 for _, part in first.ready] == [part.sha256 for _, part in second.ready]


def test_a_late_field_finishes_the_open_parts_with_the_old_kind(tmp_path: Path) -> None:
    orders = _orders(0, 300) + _orders(300, 300, late={"x": 1})
    writer = _write(tmp_path, orders, part_rows=10_000, sample_rows=100, batch_rows=100)
    kinds = [part.kind for _, part in writer.ready]
    assert len(kinds) == 2
    assert "late" not in kinds[0].by_name
    assert "late" in kinds[1].by_name
    assert writer.columns_added == ["late"]
    assert [row["id"] for row in _rows(writer.ready)] == [order["id"] for order in orders]


def test_many_folders_keep_few_rows_buffered(tmp_path: Path) -> None:
    orders = [{"id": i, "bucket": i % 40, "v": "x" * 20} for i in range(20_000)]
    writer = _write(
        tmp_path, orders, page=500, specs=["bucket"], part_rows=100_000, row_group_rows=1_000, max_open=64
    )
    assert sum(part.rows for _, part in writer.ready) == 20_000
    assert len(writer.ready) == 40
    # Row groups were written early to keep the buffers to about one row group in all.
    assert all(pq.read_metadata(path).num_row_groups > 1 for path, _ in writer.ready)


def test_wide_orders_make_shorter_row_groups_in_parts(tmp_path: Path) -> None:
    orders = [{"id": i, "bucket": i % 3, "text": f"{i:05d}" + "w" * 2_000} for i in range(1_500)]
    options = {"part_rows": 100_000, "batch_rows": 50, "sample_rows": 100, "row_group_bytes": 300_000}
    writer = _write(tmp_path, orders, specs=["bucket"], **options)
    assert sum(part.rows for _, part in writer.ready) == 1_500
    for path, _ in writer.ready:
        meta = pq.read_metadata(path)
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert max(sizes) <= 200, sizes  # 300 kB of Arrow data is about 150 of these orders, in all parts
    assert sorted(row["id"] for row in _rows(writer.ready)) == list(range(1_500))


def test_too_many_folders_roll_every_part(tmp_path: Path) -> None:
    orders = [{"id": i, "bucket": i} for i in range(100)]
    writer = _write(tmp_path, orders, page=10, specs=["bucket"], part_rows=10_000, max_open=25)
    assert len(writer.ready) == 100
    assert all(part.rows == 1 for _, part in writer.ready)


def test_abort_leaves_no_file(tmp_path: Path) -> None:
    writer = PartsWriter(tmp_path, Partitioner(()), part_rows=100, sample_rows=10)
    writer.write(_orders(0, 150))
    writer.write(_orders(150, 20))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
