"""--details: each order's detail record, in API order, through the same limiter and retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import export
from exporter.report import summary_line
from exporter.sandbox import Sandbox, SandboxConfig
from tests.conftest import SUFFIX, export_config
from tests.readback import assert_export_matches, read_jsonl


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_details_replace_list_items_in_api_order(tmp_path: Path, fmt: str) -> None:
    """5,000 orders with --details: every record is the detail the API serves, with its detail-only fields."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=5_000, seed=8)) as sb:
        report = await export(export_config(sb, out, page_size=250, concurrency=16, details=True))
        expected = [sb.detail(order_id) for order_id in sb.expected_ids()]
    assert all(record is not None and "lines" in record for record in expected)
    assert report["complete"]
    assert report["details_missing"] == 0
    assert_export_matches(out, fmt, expected)  # type: ignore[arg-type]


async def test_an_order_gone_before_its_detail_is_counted_not_fatal(tmp_path: Path) -> None:
    """Orders closed between the list and their detail (404): left out, counted, the export completes."""
    out = tmp_path / "orders.jsonl"
    cfg = SandboxConfig(orders=2_000, drift_close_per_s=150, latency=0.01, seed=2)
    async with Sandbox(cfg) as sb:
        report = await export(export_config(sb, out, page_size=100, concurrency=16, details=True))
        closed = set(sb.closed_ids())
    written = read_jsonl(out)
    assert report["complete"]
    assert report["details_missing"] > 0
    assert all("lines" in record for record in written)
    assert not {record["id"] for record in written} & closed - {record["id"] for record in written}
    assert len(written) == report["orders_written"]  # what the file holds
    assert report["counters"]["orders_written"] == len(written) + report["details_missing"]  # what was listed
    assert f", {report['details_missing']} gone before their detail (404)" in summary_line(report)
