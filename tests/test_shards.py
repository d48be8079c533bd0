"""Shards end to end: N runs of ``--shard K/N`` against one sandbox, each its own slice of the pages; their
orders, concatenated in shard order, equal one unsharded export, and ``join_shards`` proves it from their
edges (or refuses when the collection moved between the shards' runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from exporter.checkpoint import Checkpoint, WalkState
from exporter.errors import UsageError
from exporter.jobs import _fetcher, _pipeline
from exporter.pipeline import OnPage
from exporter.plan import Shard, ShardEdges, Verdict, join_shards
from exporter.report import Counters, build_report, progress_line
from exporter.sandbox import Sandbox, SandboxConfig
from tests.conftest import export_config


@dataclass
class Run:
    """What one run wrote (ids, in order), its verdict, and its counters."""

    ids: list[str] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict(False, "not run"))
    counters: Counters = field(default_factory=Counters)

    @property
    def edges(self) -> ShardEdges:
        assert self.verdict.edges is not None
        return self.verdict.edges


async def run(
    sb: Any,
    shard: Shard | None,
    *,
    page_size: int,
    sort: str | None = None,
    resume: WalkState | None = None,
    on_page: OnPage | None = None,
    into: Run | None = None,
) -> Run:
    """One export's walk (``shard`` of it, or all) into a list: the pipeline as export() drives it."""
    config = export_config(sb, "-", page_size=page_size, sort=sort, concurrency=4)
    result = into or Run()

    async def deliver(records: list[dict[str, Any]]) -> None:
        result.ids.extend(record["id"] for record in records)

    async with _fetcher(config, result.counters) as fetcher:
        result.verdict = await _pipeline(
            config, fetcher, deliver, result.counters, resume=resume, on_page=on_page, shard=shard
        )
    return result


async def run_shards(sb: Any, count: int, *, page_size: int, sort: str | None = None) -> list[Run]:
    return [await run(sb, Shard(index, count), page_size=page_size, sort=sort) for index in range(count)]


def concatenated(runs: list[Run]) -> list[str]:
    return [order_id for one in runs for order_id in one.ids]


@pytest.mark.parametrize(("orders", "page_size"), [(5_000, 100), (4_999, 37)])
async def test_three_shards_equal_one_export(orders: int, page_size: int) -> None:
    """Three shards, each its own slice: concatenated they are the unsharded export, order for order; each
    is complete on its own, consecutive edges meet, and the join is complete."""
    async with Sandbox(SandboxConfig(orders=orders, seed=3)) as sb:
        whole = await run(sb, None, page_size=page_size)
        shards = await run_shards(sb, 3, page_size=page_size)
        expected = sb.expected_ids()
    assert whole.verdict.complete
    assert whole.verdict.edges is None
    assert whole.ids == expected
    assert concatenated(shards) == expected
    for one in shards:
        assert one.verdict.complete, one.verdict.reason
        assert one.edges.written == len(one.ids) > 0
        assert one.edges.total_first == one.edges.total_last == orders
        # The progress line counts against the shard's own slice, not the whole collection.
        assert one.counters.orders_planned == len(one.ids)
        assert progress_line(one.counters).startswith(f"{len(one.ids):,}/{len(one.ids):,} orders")
    assert whole.counters.orders_planned == orders
    first, middle, last = (one.edges for one in shards)
    assert first.head is None
    assert last.tail is None
    assert first.tail == middle.head == shards[0].ids[-1]
    assert middle.tail == last.head == shards[1].ids[-1]
    assert middle.first_offset == middle.first_page * (page_size - 1)
    joined = join_shards([one.edges for one in shards])
    assert joined.complete, joined.reason
    assert f"all {orders} orders" in joined.reason


async def test_shards_without_pages_write_nothing_and_succeed() -> None:
    """150 orders in pages of 100 make two pages: of five shards, three have none. They write nothing, are
    complete, and the join skips them."""
    async with Sandbox(SandboxConfig(orders=150, seed=4)) as sb:
        shards = await run_shards(sb, 5, page_size=100)
        expected = sb.expected_ids()
    assert [len(one.ids) for one in shards] == [0, 0, 100, 0, 50]
    assert concatenated(shards) == expected
    assert all(one.verdict.complete for one in shards)
    assert shards[0].edges.head is None
    assert shards[0].edges.tail is None
    assert shards[2].edges.tail == shards[4].edges.head == expected[99]
    assert join_shards([one.edges for one in shards]).complete


async def test_a_shards_report_has_its_edges() -> None:
    """The run report of a shard carries a ``shard`` section (its edges); an unsharded one has none."""
    async with Sandbox(SandboxConfig(orders=500, seed=5)) as sb:
        whole = await run(sb, None, page_size=100)
        middle = await run(sb, Shard(1, 3), page_size=100)
    common: dict[str, Any] = {"output": "-", "fmt": "jsonl", "complete": True, "reason": ""}
    assert "shard" not in build_report(whole.counters, **common)
    section = build_report(middle.counters, **common)["shard"]
    assert section["shard"] == "1/3"
    assert section == middle.edges.to_json()
    assert ShardEdges.from_json(section) == middle.edges


@pytest.mark.parametrize("where", ["before its first page", "half way"])
async def test_a_shard_resumes_within_its_slice(where: str) -> None:
    """A shard stopped at a checkpoint (before its anchor page, or half way) and resumed from the checkpoint's
    JSON writes exactly what an uninterrupted run of that shard writes, and reports the same edges."""
    shard = Shard(1, 3)
    states: list[tuple[WalkState, int]] = []
    async with Sandbox(SandboxConfig(orders=5_000, seed=6)) as sb:
        full = Run()

        async def record(state: Any) -> None:
            states.append((state(), len(full.ids)))

        await run(sb, shard, page_size=100, on_page=record, into=full)
        state, kept = states[0] if where == "before its first page" else states[len(states) // 2]
        saved = Checkpoint.from_bytes(Checkpoint({}, state, {}).to_bytes()).walk
        resumed = Run(ids=full.ids[:kept])
        await run(sb, shard, page_size=100, resume=saved, into=resumed)
        with pytest.raises(UsageError, match="made by shard 1/3, not by shard 2/3"):
            await run(sb, Shard(2, 3), page_size=100, resume=saved)
    assert (kept == 0) == (where == "before its first page")
    assert resumed.ids == full.ids
    assert resumed.verdict.complete, resumed.verdict.reason
    assert resumed.edges.head == full.edges.head is not None
    assert resumed.edges.tail == full.edges.tail is not None
    assert resumed.edges.written == full.edges.written == len(full.ids)


async def test_orders_created_between_shards_break_the_join() -> None:
    """Newest first, orders created between shard 0's run and shard 1's push every order on: shard 1's
    anchor is no longer shard 0's last order. Each shard is fine on its own; the join says they do not
    meet."""
    cfg = SandboxConfig(orders=5_000, seed=7, drift_create_per_s=100)
    async with Sandbox(cfg) as sb:
        shards = [await run(sb, Shard(0, 3), page_size=100, sort="-createdAt")]
        await anyio.sleep(0.3)
        shards += [await run(sb, Shard(index, 3), page_size=100, sort="-createdAt") for index in (1, 2)]
    for one in shards:
        assert one.verdict.complete, one.verdict.reason
    assert shards[0].edges.tail != shards[1].edges.head
    joined = join_shards([one.edges for one in shards])
    assert not joined.complete
    assert joined.reason.startswith("shards 0 and 1 do not join"), joined.reason


async def test_orders_created_at_the_end_between_shards_still_join() -> None:
    """Oldest first, orders created between the shards' runs land after every slice but the last: the
    totals differ, yet each shard begins where the one before ended, so the join is complete, and every
    order present throughout is written exactly once, in order."""
    cfg = SandboxConfig(orders=5_000, seed=8, drift_create_per_s=20)
    async with Sandbox(cfg) as sb:
        initial = sb.expected_ids(sort="createdAt")
        shards = [await run(sb, Shard(0, 3), page_size=100, sort="createdAt")]
        await anyio.sleep(0.3)
        shards += [await run(sb, Shard(index, 3), page_size=100, sort="createdAt") for index in (1, 2)]
        created = sb.created_ids()
    written = concatenated(shards)
    assert created, "the drift really created orders"
    assert len(written) == len(set(written)), "no order twice"
    assert written[: len(initial)] == initial
    assert set(written[len(initial) :]) <= set(created)
    assert len({one.edges.total_first for one in shards}) > 1, "the shards saw different totals"
    joined = join_shards([one.edges for one in shards])
    assert joined.complete, joined.reason
    assert "while the collection moved" in joined.reason
