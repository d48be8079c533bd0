"""Datasets (``-o DIR/``): Parquet parts, Hive partitions, one schema, a manifest written last; read back
with pyarrow.dataset and DuckDB and compared with the sandbox's own orders."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import duckdb
import orjson
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from exporter.errors import IncompleteExport, UsageError
from exporter.jobs import export
from exporter.plan import Shard
from exporter.sandbox import SandboxConfig, SandboxThread
from tests.conftest import export_config
from tests.readback import same_value

ORDERS = 6_000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxConfig(orders=ORDERS, seed=11, late_field_from=4_500)) as sb:
        yield sb


def run(sb: Any, out: str, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"page_size": 100, "concurrency": 8, "part_rows": 1_000}
    settings.update(overrides)
    return anyio.run(export, export_config(sb, out, **settings))


def month(order: dict[str, Any]) -> str:
    moment = dt.datetime.fromisoformat(order["createdAt"].replace("Z", "+00:00")).astimezone(dt.UTC)
    return moment.strftime("%Y-%m")


def manifest_of(root: Path) -> dict[str, Any]:
    return orjson.loads((root / "_manifest.json").read_bytes())  # type: ignore[no-any-return]


def test_a_partitioned_dataset_reads_back_exactly(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    report = run(sandbox, f"{root}/", partition_by=("createdAt:month",))
    assert report["complete"] is True
    expected = {order["id"]: order for order in sandbox.expected_records()}
    manifest = manifest_of(root)
    assert manifest["complete"] is True
    assert manifest["rows"] == ORDERS
    assert manifest["partitioning"] == {
        "flavor": "hive",
        "keys": [{"name": "createdAt_month", "source": "createdAt", "transform": "month", "in_files": True}],
    }

    # Every listed file is there, with its size and checksum; nothing else is a part.
    listed = {entry["path"] for entry in manifest["files"]}
    assert listed == {str(p.relative_to(root)) for p in root.rglob("*.parquet")}
    for entry in manifest["files"]:
        data = (root / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert pq.read_metadata(root / entry["path"]).num_rows == entry["rows"]
    # One schema for every part, the late field included.
    schemas = {pq.read_schema(root / entry["path"]) for entry in manifest["files"]}
    assert len(schemas) == 1
    assert "satisfaction" in schemas.pop().names
    assert [field["name"] for field in manifest["schema"]][-1] == "satisfaction"

    table = pads.dataset(root, format="parquet", partitioning="hive").to_table()
    rows = table.to_pylist()
    assert sorted(row["id"] for row in rows) == sorted(expected)
    for row in rows:
        original = expected[row["id"]]
        assert row["createdAt_month"] == month(original)
        for name, value in original.items():
            assert same_value(row[name], value), (row["id"], name)

    counts = collections.Counter(month(order) for order in expected.values())
    by_duckdb = duckdb.sql(
        f"select createdAt_month, count(*) from read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
        "group by all"
    ).fetchall()
    assert dict(by_duckdb) == counts
    assert {entry["partition"]["createdAt_month"] for entry in manifest["files"]} == set(counts)


def test_an_unpartitioned_dataset_keeps_the_api_order(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "plain"
    run(sandbox, f"{root}/", part_rows=2_500)
    manifest = manifest_of(root)
    rows = [entry["rows"] for entry in manifest["files"]]
    # Rolled at the first page boundary past 2,500 rows (pages bring 99 new orders: they overlap by one),
    # and once more where the late field widens the schema.
    assert rows[0] == 2_575
    assert sum(rows) == ORDERS
    ids = [
        row["id"] for entry in manifest["files"] for row in pq.read_table(root / entry["path"]).to_pylist()
    ]
    assert ids == [order["id"] for order in sandbox.expected_records()]
    assert manifest["parameters"]["part_rows"] == 2_500
    assert manifest["totals"] == {"first": ORDERS, "last": ORDERS}
    assert not [p for p in root.rglob("*") if p.name.startswith(".")], "no scratch file is left"


def test_partition_by_a_plain_attribute_moves_it_to_the_path(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "by-type"
    run(sandbox, f"{root}/", partition_by=("type",))
    expected = {order["id"]: order for order in sandbox.expected_records()}
    for entry in manifest_of(root)["files"]:
        assert "type" not in pq.read_schema(root / entry["path"]).names
    rows = duckdb.sql(
        f"select id, type from read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert len(rows) == ORDERS
    assert all(kind == expected[order_id]["type"] for order_id, kind in rows)


def test_a_complete_dataset_is_never_written_into_again(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "done"
    run(sandbox, f"{root}/")
    before = manifest_of(root)
    with pytest.raises(UsageError, match="already holds a complete dataset"):
        run(sandbox, f"{root}/")
    assert manifest_of(root) == before
    # A scheduler that restarts a finished shard with --resume: nothing to do, and that is a success.
    again = run(sandbox, f"{root}/", resume=True)
    assert again["complete"] is True
    assert "nothing to resume" in again["reason"]
    assert again["requests"] == 0
    assert manifest_of(root) == before
    with pytest.raises(UsageError, match="already holds a complete dataset"):
        run(sandbox, f"{root}/", resume=True, part_rows=7)  # another export's manifest


def test_dataset_options_are_checked(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="written as Parquet"):
        export_config(sandbox, f"{tmp_path}/x/", format="csv")
    with pytest.raises(UsageError, match="needs a dataset"):
        export_config(sandbox, tmp_path / "x.parquet", partition_by=("type",))
    with pytest.raises(UsageError, match="unknown transform"):
        export_config(sandbox, f"{tmp_path}/x/", partition_by=("createdAt:week",))


def test_shards_run_one_after_another_write_the_manifest_once_all_are_done(
    sandbox: Any, tmp_path: Path
) -> None:
    root = tmp_path / "sharded"
    reports = [run(sandbox, f"{root}/", shard=Shard(index, 3), partition_by=("type",)) for index in (2, 0, 1)]
    assert [report["dataset"]["manifest"] for report in reports[:2]] == [None, None]
    assert reports[2]["dataset"]["manifest"] == str(root / "_manifest.json")
    manifest = manifest_of(root)
    assert manifest["rows"] == ORDERS
    assert sum(report["orders_written"] for report in reports) == ORDERS
    ids = duckdb.sql(f"select id from read_parquet('{root}/**/*.parquet', hive_partitioning=true)").fetchall()
    assert sorted(order_id for (order_id,) in ids) == sorted(sandbox.expected_ids())
    # One schema, although only the last slice saw the late field: the others' parts were rewritten.
    assert len({pq.read_schema(root / entry["path"]) for entry in manifest["files"]}) == 1


def test_shards_of_different_exports_do_not_make_a_dataset(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    run(sandbox, f"{root}/", shard=Shard(0, 2), part_rows=1_000)
    with pytest.raises(IncompleteExport, match="other parameters"):
        run(sandbox, f"{root}/", shard=Shard(1, 2), part_rows=2_000)
    assert not (root / "_manifest.json").exists()


def test_resume_without_a_checkpoint_starts_the_export(sandbox: Any, tmp_path: Path) -> None:
    root = tmp_path / "first-run"
    report = run(sandbox, f"{root}/", resume=True)
    assert report["complete"] is True
    assert manifest_of(root)["rows"] == ORDERS
