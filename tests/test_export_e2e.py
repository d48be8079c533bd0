"""End to end: export() against the sandbox on 127.0.0.1, read back, compared with the sandbox's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter import export, open_orders
from exporter.errors import ExportError
from exporter.sandbox import Sandbox, SandboxConfig
from exporter.sinks import FileSink
from tests.conftest import FORMATS, SUFFIX, export_config
from tests.readback import assert_export_matches, read_csv, read_parquet


@pytest.mark.parametrize("fmt", FORMATS)
async def test_full_export_is_exact_in_every_format(tmp_path: Path, fmt: str) -> None:
    """50,000 orders at concurrency 16: the exact ids in order, every value equal, a complete report."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=50_000, seed=11)) as sb:
        report = await export(export_config(sb, out, concurrency=16, page_size=500))
        expected = sb.expected_records()
    assert report["complete"] is True
    assert report["orders_written"] == 50_000
    assert report["duplicates_dropped"] == 0
    assert report["total_first"] == report["total_last"] == 50_000
    assert_export_matches(out, fmt, expected)
    assert not list(tmp_path.glob(".*partial")), "no temporary file is left behind"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_wide_orders_are_exact_in_every_format(tmp_path: Path, fmt: str) -> None:
    """Orders with a list of 12 line objects each (the sandbox's order_lines): nested lists of structs."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=3_000, order_lines=12)) as sb:
        report = await export(export_config(sb, out, page_size=250))
        expected = sb.expected_records()
    assert report["complete"]
    assert len(expected[0]["orderLines"]) == 12
    assert_export_matches(out, fmt, expected)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_a_server_cap_on_limit_is_followed(tmp_path: Path, fmt: str) -> None:
    """The server caps limit at 120 while 500 are asked: every order arrives once, pages of 120."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=5_000, max_page_size=120)) as sb:
        report = await export(export_config(sb, out, page_size=500))
        expected = sb.expected_records()
    assert report["page_size"] == 120
    assert report["pages"] == 43  # 5,000 orders, pages of 120 overlapping by one
    assert_export_matches(out, fmt, expected)


@pytest.mark.parametrize("style", ["wrong", "missing"])
async def test_x_result_count_is_not_trusted(tmp_path: Path, style: str) -> None:
    """A wrong or missing X-Result-Count changes nothing: the body is counted."""
    out = tmp_path / "orders.jsonl"
    async with Sandbox(SandboxConfig(orders=3_000, result_count=style)) as sb:  # type: ignore[arg-type]
        report = await export(export_config(sb, out, page_size=100))
        expected = sb.expected_records()
    assert report["complete"]
    assert_export_matches(out, "jsonl", expected)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_filter_and_sort_follow_the_api(tmp_path: Path, fmt: str) -> None:
    """--filter and --sort reach the API: the sandbox's own filtered, sorted order comes out."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    filters = (("type", "C_GENERIC_S1"),)
    async with Sandbox(SandboxConfig(orders=20_000)) as sb:
        report = await export(export_config(sb, out, filters=filters, sort="-createdAt,id", page_size=250))
        expected = sb.expected_records(filters=dict(filters), sort="-createdAt,id")
    assert 0 < len(expected) < 20_000
    assert report["orders_written"] == len(expected)
    assert_export_matches(out, fmt, expected)


async def test_a_total_that_ignores_filters_is_recognised(tmp_path: Path) -> None:
    """X-Total-Count counting all orders while the filter matches few: complete, and the report says why."""
    out = tmp_path / "orders.jsonl"
    filters = (("type", "C_GENERIC_S1"),)
    async with Sandbox(SandboxConfig(orders=4_000, total_ignores_filters=True)) as sb:
        report = await export(export_config(sb, out, filters=filters, page_size=200))
        expected = sb.expected_records(filters=dict(filters))
    assert report["complete"]
    assert "ignores the filters" in report["reason"]
    assert_export_matches(out, "jsonl", expected)


async def test_short_lived_tokens_are_renewed(tmp_path: Path) -> None:
    """Tokens of 1 s during a longer export: renewed ahead of expiry, nothing lost."""
    out = tmp_path / "orders.jsonl"
    async with Sandbox(SandboxConfig(orders=8_000, token_lifetime=1.0, latency=0.05)) as sb:
        report = await export(export_config(sb, out, page_size=100, concurrency=2))
        expected = sb.expected_records()
        tokens = sb.stats()["tokens_issued"]
    assert report["wall_seconds"] > 1.5
    assert tokens >= 2
    assert_export_matches(out, "jsonl", expected)


async def test_revoked_tokens_are_renewed_and_the_call_retried(tmp_path: Path) -> None:
    """Tokens revoked early (401 code 42): one renewal, the refused calls retried, nothing lost."""
    out = tmp_path / "orders.jsonl"
    async with Sandbox(SandboxConfig(orders=6_000, revoke_every=0.4, latency=0.05)) as sb:
        report = await export(export_config(sb, out, page_size=100, concurrency=4))
        expected = sb.expected_records()
    assert report["tokens_refused"] >= 1
    assert_export_matches(out, "jsonl", expected)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_server_errors_are_retried(tmp_path: Path, fmt: str) -> None:
    """5% 500 and 5% 503 answers: retried with backoff, the export is exact."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=20_000, fail_500=0.05, fail_503=0.05)) as sb:
        report = await export(export_config(sb, out, page_size=100))
        expected = sb.expected_records()
    assert report["retries"] > 0
    assert_export_matches(out, fmt, expected)


@pytest.mark.parametrize(
    ("style", "retry_after"), [("429", "seconds"), ("429", "none"), ("403", "date"), ("403", "none")]
)
async def test_rate_limits_are_obeyed(tmp_path: Path, style: str, retry_after: str) -> None:
    """A rate limit answered as 429 or 403 code 53, with or without Retry-After: slowed, exact."""
    out = tmp_path / "orders.jsonl"
    cfg = SandboxConfig(
        orders=4_000,
        rate_limit=60,
        burst=5,
        rate_limit_style=style,  # type: ignore[arg-type]
        retry_after=retry_after,
    )  # type: ignore[arg-type]
    async with Sandbox(cfg) as sb:
        report = await export(export_config(sb, out, page_size=100))
        expected = sb.expected_records()
    assert report["rate_limited"] > 0
    assert report["complete"]
    assert_export_matches(out, "jsonl", expected)


async def test_a_known_rate_is_never_exceeded(tmp_path: Path) -> None:
    """--rate at the server's limit: not one rate-limited answer."""
    out = tmp_path / "orders.jsonl"
    async with Sandbox(SandboxConfig(orders=3_000, rate_limit=50, burst=2)) as sb:
        report = await export(export_config(sb, out, page_size=100, rate=50))
    assert report["rate_limited"] == 0
    assert report["orders_written"] == 3_000


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_a_field_seen_only_on_late_orders_reaches_the_file(tmp_path: Path, fmt: str) -> None:
    """A field that first appears on order 40,000 is a column of the CSV and Parquet outputs."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=50_000, late_field_from=40_000)) as sb:
        report = await export(export_config(sb, out, page_size=500))
        expected = sb.expected_records()
    late = [k for k in expected[-1] if k not in expected[0]]
    assert late, "the sandbox adds a field to late orders"
    if fmt == "csv":
        header, _ = read_csv(out)
        assert any(col == late[0] or col.startswith(late[0] + ".") for col in header)
    else:
        assert late[0] in read_parquet(out)[0]
    assert report["columns_added"]
    assert_export_matches(out, fmt, expected)


async def test_zero_orders_give_a_valid_empty_file(tmp_path: Path) -> None:
    """An empty collection: a complete export of nothing, in a file a reader opens."""
    out = tmp_path / "orders.parquet"
    async with Sandbox(SandboxConfig(orders=0)) as sb:
        report = await export(export_config(sb, out))
    assert report["complete"]
    assert report["orders_written"] == 0
    assert read_parquet(out) == []


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_failure_while_finishing_gives_no_resume_advice(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output cannot be renamed into place at the very end: the merge or rewrite of close() has used
    up what the checkpoints describe, so the error must not say --resume, and nothing is left behind."""

    def refuse(self: FileSink) -> None:
        raise ExportError(f"could not finish writing {self.name}: Read-only file system")

    monkeypatch.setattr(FileSink, "commit", refuse)
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(SandboxConfig(orders=3_000, seed=2)) as sb:
        with pytest.raises(ExportError) as failure:
            await export(export_config(sb, out, page_size=100, commit_rows=500))
    assert "Read-only file system" in str(failure.value)
    assert "--resume" not in str(failure.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("output", "options", "lines"),
    [
        ("orders.jsonl", {}, True),
        ("orders.ndjson", {"sort": "-createdAt"}, True),
        ("orders.jsonl", {"details": True}, False),
        ("orders.csv", {}, False),
        ("orders.parquet", {}, True),
        ("orders.parquet", {"details": True}, False),
        ("dataset/", {}, False),
    ],
)
async def test_jsonl_and_parquet_without_details_decode_pages_into_lines(
    tmp_path: Path, simd_pages: list[int], output: str, options: dict[str, Any], lines: bool
) -> None:
    """JSONL and Parquet without --details: every list page goes through simdjson, and the file reads back
    exact; every other output (details, CSV, datasets) keeps the orders as dicts."""
    out = f"{tmp_path / output}/" if output.endswith("/") else tmp_path / output
    async with Sandbox(SandboxConfig(orders=2_000, seed=17)) as sb:
        report = await export(export_config(sb, out, page_size=100, **options))
        expected = sb.expected_records(sort=options.get("sort"))
    assert report["complete"]
    if lines:
        assert len(simd_pages) == report["requests"], "every page, the first and the last reads too"
        assert sum(simd_pages) >= 2_000
        assert_export_matches(Path(out), "parquet" if output.endswith(".parquet") else "jsonl", expected)
    else:
        assert simd_pages == []


async def test_open_orders_yields_dicts_whatever_the_output(tmp_path: Path, simd_pages: list[int]) -> None:
    """The iterator API gives dicts even for a config whose output is JSONL."""
    async with Sandbox(SandboxConfig(orders=300)) as sb:
        async with open_orders(export_config(sb, tmp_path / "unused.jsonl", page_size=100)) as orders:
            got = [order async for order in orders]
        expected = sb.expected_records()
    assert got == expected
    assert simd_pages == []
