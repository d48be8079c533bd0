"""``export()`` and ``open_orders()``: a sink, a writer, a client and the pipeline, put together."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson

from exporter.auth import TokenProvider
from exporter.client import ApiClient
from exporter.config import ExportConfig
from exporter.errors import ExportError, IncompleteExport, RequestRejected
from exporter.fetch import Fetcher
from exporter.pipeline import Records, run_pipeline, task_group
from exporter.plan import Verdict, plan_from_first_page
from exporter.ratelimit import RateLimiter
from exporter.report import Counters, ProgressPrinter, build_report, progress_line
from exporter.sinks import open_sink
from exporter.writers import open_writer

_PROGRESS_EVERY = 0.5


@contextlib.asynccontextmanager
async def _fetcher(config: ExportConfig, counters: Counters) -> AsyncIterator[Fetcher]:
    async with ApiClient(
        base_url=config.base_url,
        token_url=config.resolved_token_url,
        credentials=config.credentials,
        timeouts=config.timeouts,
        pool_size=config.concurrency + 2,
    ) as client:
        yield Fetcher(
            client,
            auth=TokenProvider(client.request_token),
            limiter=RateLimiter(config.rate),
            policy=config.retry,
            counters=counters,
            filters=config.filters,
            sort=config.sort,
        )


async def _pipeline(config: ExportConfig, fetcher: Fetcher, deliver: Any, counters: Counters) -> Verdict:
    return await run_pipeline(
        fetcher,
        deliver,
        counters,
        page_size=config.page_size,
        concurrency=config.concurrency,
        window=config.window_pages,
        dedupe_horizon=config.dedupe_horizon,
        filtered=bool(config.filters),
    )


async def export(config: ExportConfig) -> dict[str, Any]:
    """Export every order to ``config.output``; return the run report. Raises an ``ExportError`` (the
    report, with ``complete: false``, is still written to ``config.report_path``) when it cannot."""
    fmt = config.resolved_format
    counters = Counters()
    sink = open_sink(config.output)  # before any request: an unwritable output fails here
    writer = open_writer(fmt, sink.stream, scratch_dir=sink.scratch_dir)

    async def deliver(records: Records) -> None:
        writer.write(records)

    report: dict[str, Any]
    try:
        async with _fetcher(config, counters) as fetcher, task_group() as tg:
            if config.progress:
                tg.start_soon(_show_progress, counters)
            verdict = await _pipeline(config, fetcher, deliver, counters)
            tg.cancel_scope.cancel()
        if not verdict.complete:
            raise IncompleteExport(f"the export is not complete: {verdict.reason}")
        writer.close()
        sink.commit()
    except BaseException as exc:
        writer.abort()
        sink.abort()
        error = exc if isinstance(exc, ExportError) else None
        report = build_report(
            counters,
            output=sink.name,
            fmt=fmt,
            complete=False,
            reason=str(error) if error else type(exc).__name__,
            error=type(exc).__name__,
            columns_added=list(writer.columns_added),
        )
        _write_report(config, report)
        raise
    report = build_report(
        counters,
        output=sink.name,
        fmt=fmt,
        complete=True,
        reason=verdict.reason,
        columns_added=list(writer.columns_added),
    )
    _write_report(config, report)
    return report


@contextlib.asynccontextmanager
async def open_orders(config: ExportConfig) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Every order, in API order, for callers who want records rather than a file::

        async with open_orders(config) as orders:
            async for order in orders:
                ...

    The export runs while the block iterates; leaving the block early stops it. An export that cannot be
    proven complete raises ``IncompleteExport`` at the end of the iteration."""
    counters = Counters()
    pages_tx, pages_rx = anyio.create_memory_object_stream[Records](1)

    async def produce(fetcher: Fetcher) -> None:
        async with pages_tx:
            verdict = await _pipeline(config, fetcher, pages_tx.send, counters)
            if not verdict.complete:
                raise IncompleteExport(f"the export is not complete: {verdict.reason}")

    async def orders() -> AsyncIterator[dict[str, Any]]:
        async with pages_rx:
            async for page in pages_rx:
                for order in page:
                    yield order

    async with _fetcher(config, counters) as fetcher, task_group() as tg:
        tg.start_soon(produce, fetcher)
        iterator = orders()
        try:
            yield iterator
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()


async def _show_progress(counters: Counters) -> None:
    printer = ProgressPrinter(sys.stderr)
    try:
        while True:
            printer.show(progress_line(counters))
            await anyio.sleep(_PROGRESS_EVERY)
    finally:
        printer.clear()


def _write_report(config: ExportConfig, report: dict[str, Any]) -> None:
    if not config.report_path:
        return
    try:
        with open(config.report_path, "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise ExportError(
            f"could not write the report to {config.report_path}: {exc.strerror or exc}"
        ) from exc


async def count(config: ExportConfig) -> dict[str, Any]:
    """How many orders match, the page size the server really uses, and the pages that makes."""
    counters = Counters()
    async with _fetcher(config, counters) as fetcher:
        first = await fetcher.page(0, config.page_size)
    plan = plan_from_first_page(config.page_size, len(first.items), first.total)
    return {
        "total": first.total,
        "page_size": plan.page_size,
        "pages": plan.pages,
        "rate": config.rate,
        "seconds_at_rate": plan.pages / config.rate if config.rate else None,
    }


async def get_orders(config: ExportConfig, ids: list[str]) -> list[dict[str, Any] | None]:
    """The detail records of ``ids``, in that order; None for an id the API does not know (404)."""
    counters = Counters()
    results: list[dict[str, Any] | None] = [None] * len(ids)
    slots = anyio.CapacityLimiter(config.concurrency)

    async def one(fetcher: Fetcher, index: int) -> None:
        async with slots:
            try:
                results[index] = await fetcher.order(ids[index])
            except RequestRejected as exc:
                if exc.status != 404:
                    raise

    async with _fetcher(config, counters) as fetcher, task_group() as tg:
        for index in range(len(ids)):
            tg.start_soon(one, fetcher, index)
    return results
