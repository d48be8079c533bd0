"""The first wave: the pages after the first are asked for together with it, and kept only when the first
page's answer confirms the guess (no HTTP: a fake fetcher that records what was asked)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from exporter.pipeline import run_pipeline
from exporter.plan import Plan
from exporter.report import Counters
from exporter.responses import Page, RawPage, decode_page

PAGE = 10


class Server:
    """Serves ``n`` orders by offset, capping ``limit`` at ``cap``. With ``hold_first``, the first page is
    answered only once that many other pages have been asked for."""

    def __init__(
        self, n: int, *, cap: int = 1000, hold_first: int = 0, counts_after_first: bool = True
    ) -> None:
        self.ids = [f"o{i:04d}" for i in range(n)]
        self.cap = cap
        self.counts_after_first = counts_after_first
        self.asked: list[tuple[int, int]] = []
        self.latest_total: int | None = None
        self.hold_first = hold_first
        self.others_asked = anyio.Event()

    def _raw(self, offset: int, limit: int) -> RawPage:
        self.asked.append((offset, limit))
        items = [{"id": i} for i in self.ids[offset : offset + min(limit, self.cap)]]
        total = len(self.ids) if offset == 0 or self.counts_after_first else None
        self.latest_total = total
        return RawPage(offset=offset, body=orjson.dumps(items), total=total, request_id=None)

    async def page(self, offset: int, limit: int, **_: object) -> Page:
        if offset == 0 and self.hold_first:
            await self.others_asked.wait()
        await anyio.lowlevel.checkpoint()
        return decode_page(self._raw(offset, limit))

    async def raw_page(self, offset: int, limit: int) -> RawPage:
        await anyio.lowlevel.checkpoint()
        raw = self._raw(offset, limit)
        if len(self.asked) >= self.hold_first:
            self.others_asked.set()
        return raw

    async def decoded(self, raw: RawPage, limit: int) -> Page:
        return decode_page(raw)


async def export(server: Server, concurrency: int) -> tuple[list[Any], Counters, bool]:
    written: list[Any] = []

    async def deliver(records: list[dict[str, Any]]) -> None:
        written.extend(r["id"] for r in records)

    counters = Counters()
    with anyio.fail_after(10):
        verdict = await run_pipeline(
            server,  # type: ignore[arg-type]
            deliver,
            counters,
            page_size=PAGE,
            concurrency=concurrency,
            window=2 * concurrency,
            dedupe_horizon=1000,
            filtered=False,
        )
    return written, counters, verdict.complete


async def test_the_next_pages_are_asked_for_before_the_first_answer() -> None:
    # Without the first wave the first page would wait forever for requests that follow its answer.
    server = Server(1005, hold_first=15)
    written, counters, complete = await export(server, concurrency=16)
    assert complete
    assert written == server.ids
    planned = [0, *Plan(total=1005, page_size=PAGE).offsets()]
    # Each planned page asked for once, the guesses included, and no request for the end total: the last
    # answer carried it.
    assert sorted(offset for offset, _ in server.asked) == planned
    assert counters.total_last == 1005


async def test_guesses_are_dropped_when_the_server_caps_the_page() -> None:
    server = Server(500, cap=7)
    written, counters, complete = await export(server, concurrency=8)
    assert complete
    assert written == server.ids
    assert counters.page_size == 7
    # The guesses asked for pages of 10 every 9 orders; the plan's pages, of 7 every 6, each asked once.
    assert sorted(o for o, limit in server.asked if limit == 7) == list(
        Plan(total=500, page_size=7).offsets()
    )


@pytest.mark.parametrize("n", [0, 1, 10, 25])
async def test_a_collection_smaller_than_the_wave(n: int) -> None:
    server = Server(n)
    written, counters, complete = await export(server, concurrency=16)
    assert complete
    assert written == server.ids
    assert counters.orders_written == n


async def test_the_end_total_is_read_afresh_when_the_last_answer_had_none() -> None:
    # A server that counts only on its first page: the walk's last answer carries no total, so the first
    # page's (from the start) must not stand for the end.
    server = Server(1005, counts_after_first=False)
    written, counters, complete = await export(server, concurrency=8)
    assert complete
    assert written == server.ids
    assert server.asked[-1] == (0, 1)  # read afresh, once the walk was done
    assert counters.total_last == 1005
