"""``export()`` and ``open_orders()``: a sink, a writer, a client and the pipeline, put together."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from exporter.auth import TokenProvider
from exporter.checkpoint import Checkpoint, WalkState, orders_kept
from exporter.checkpoint import load as load_checkpoint
from exporter.checkpoint import remove as remove_checkpoint
from exporter.checkpoint import save as save_checkpoint
from exporter.client import ApiClient
from exporter.config import ExportConfig
from exporter.details import details_stage
from exporter.errors import (
    NOTHING_KEPT,
    AlreadyComplete,
    ExportError,
    IncompleteExport,
    Interrupted,
    UsageError,
)
from exporter.fetch import Fetcher
from exporter.pipeline import Deliver, OnPage, Records, run_pipeline, task_group
from exporter.plan import Shard, Verdict, plan_from_first_page
from exporter.ratelimit import RateLimiter
from exporter.report import Counters, ProgressPrinter, build_report, progress_line
from exporter.responses import Decode, Items, decode_lines, decode_page
from exporter.sinks import checkpoint_path_for, open_sink
from exporter.storage import is_object_url, open_store
from exporter.writers import LineWriter, open_writer, resume_writer

if TYPE_CHECKING:
    from exporter.dataset import DatasetOutput

_PROGRESS_EVERY = 0.5
_COMMIT_EVERY = 1.0  # seconds between checkpoints: what a kill -9 can cost


@contextlib.asynccontextmanager
async def _fetcher(
    config: ExportConfig, counters: Counters, *, decode: Decode = decode_page
) -> AsyncIterator[Fetcher]:
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
            decode=decode,
            secrets=config.credentials.secrets(),
        )


async def _pipeline(
    config: ExportConfig,
    fetcher: Fetcher,
    deliver: Any,
    counters: Counters,
    *,
    resume: WalkState | None = None,
    on_page: OnPage | None = None,
    shard: Shard | None = None,
) -> Verdict:
    async def walk(deliver: Deliver, on_page: OnPage | None) -> Verdict:
        return await run_pipeline(
            fetcher,
            deliver,
            counters,
            page_size=config.page_size,
            concurrency=config.concurrency,
            window=config.window_pages,
            dedupe_horizon=config.dedupe_horizon,
            filtered=bool(config.filters),
            resume=resume,
            on_page=on_page,
            shard=shard,
        )

    if not config.details:
        return await walk(deliver, on_page)
    async with details_stage(
        deliver, on_page or _no_checkpoint, fetcher, counters, concurrency=config.concurrency
    ) as (details, checkpoints):
        return await walk(details, checkpoints)


async def _no_checkpoint(state: Callable[[], WalkState]) -> None:
    return None


class _Output:
    """One export's output: the sink, the writer, and the checkpoints that let ``--resume`` continue it."""

    def __init__(self, config: ExportConfig) -> None:
        self.format = config.resolved_format
        self.fingerprint = _fingerprint(config)
        self.checkpoint_path = checkpoint_path_for(config.output, s3_endpoint=config.s3_endpoint)
        self.resumed: Checkpoint | None = None
        if config.resume:
            if self.checkpoint_path is None:
                raise UsageError("--resume needs an output file: stdout cannot be taken back or continued")
            self.resumed = load_checkpoint(self.checkpoint_path, self.fingerprint)
        # Before any request: an unwritable output fails here.
        self.sink = open_sink(config.output, resume=config.resume, s3_endpoint=config.s3_endpoint)
        if self.resumed is None and self.checkpoint_path is not None:
            # A fresh start: an earlier run's checkpoint must not outlive the partial file it described.
            remove_checkpoint(self.checkpoint_path)
        try:
            if self.resumed is not None:
                self.writer = resume_writer(
                    self.format,
                    self.sink.stream,
                    scratch_dir=self.sink.scratch_dir,
                    state=self.resumed.writer,
                    commit_rows=config.commit_rows,
                )
            else:
                self.writer = open_writer(
                    self.format,
                    self.sink.stream,
                    scratch_dir=self.sink.scratch_dir,
                    commit_rows=config.commit_rows,
                )
        except BaseException:
            self.sink.keep() if self.resumed is not None else self.sink.abort()
            raise
        # Without details, an order is needed only as its text and its id: the pages are decoded straight
        # into lines (simdjson, msgspec) for a writer that takes them (JSONL writes them as they are,
        # Parquet parses them with pyarrow's JSON reader, off the event loop's thread).
        self._write: Callable[[Items], None] = self.writer.write
        self.decode: Decode = decode_page
        if isinstance(self.writer, LineWriter) and not config.details:
            self._write = self.writer.write_lines
            self.decode = decode_lines
        self.latest: Callable[[], WalkState] | None = None
        self._last_commit = time.monotonic()
        self._closing = False
        self.kept_orders: int | None = None  # the orders in the output at the last commit

    async def deliver(self, records: Items) -> None:
        """One page of new orders: dicts, or JSON lines when ``decode`` is ``decode_lines``."""
        self._write(records)

    async def on_page(self, state: Callable[[], WalkState]) -> None:
        """After each page: remember how to tell where the walk stands; commit about once a second."""
        self.latest = state
        if self.checkpoint_path is not None and time.monotonic() - self._last_commit >= _COMMIT_EVERY:
            checkpoint = self._checkpoint(force=False)
            if checkpoint is not None:
                # fsync can take a while: on a worker thread, the fetchers keep going meanwhile.
                await anyio.to_thread.run_sync(self._make_durable, checkpoint)

    def commit(self, *, force: bool) -> bool:
        """Make what was written durable and record the checkpoint; False when there was nothing to commit
        (no page yet) or the writer is between commit points."""
        checkpoint = self._checkpoint(force=force)
        if checkpoint is None:
            return False
        self._make_durable(checkpoint)
        return True

    def _checkpoint(self, *, force: bool) -> Checkpoint | None:
        """The writer's commit point and the walk's state at it, or None when there is none."""
        if self.checkpoint_path is None or self.latest is None:
            return None
        writer_state = self.writer.commit(force=force)
        if writer_state is None:
            return None
        return Checkpoint(self.fingerprint, self.latest(), writer_state)

    def _make_durable(self, checkpoint: Checkpoint) -> None:
        assert self.checkpoint_path is not None
        self.sink.sync()
        save_checkpoint(self.checkpoint_path, checkpoint)
        self._last_commit = time.monotonic()
        self.kept_orders = orders_kept(checkpoint.walk.counters)

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def columns_added(self) -> list[str]:
        return self.writer.columns_added

    def report_fields(self) -> dict[str, Any]:
        return {}

    def finish(self, verdict: Verdict, counters: Counters) -> None:
        # Closing rewrites or merges what the checkpoints describe: from here a failure cannot be resumed.
        self._closing = True
        self.writer.close()
        self.sink.commit()
        if self.checkpoint_path is not None:
            remove_checkpoint(self.checkpoint_path)

    def discard(self) -> None:
        self.writer.abort()
        self.sink.abort()
        if self.checkpoint_path is not None:
            remove_checkpoint(self.checkpoint_path)

    def suspend(self) -> bool:
        """Stop, keeping everything committed for ``--resume``; False when nothing could be kept."""
        if self._closing:
            self.discard()
            return False
        try:
            kept = self.commit(force=True) or (
                self.checkpoint_path is not None and self.checkpoint_path.exists()
            )
        except (OSError, ExportError):
            kept = False
        if not kept:
            self.discard()
            return False
        self.writer.suspend()
        self.sink.keep()
        return True


async def export(config: ExportConfig) -> dict[str, Any]:
    """Export every order to ``config.output``; return the run report. Raises an ``ExportError`` (the
    report, with ``complete: false``, is still written to ``config.report_path``) when it cannot.

    A failure that another run may get past (interrupted, retries exhausted, credentials refused) leaves
    the partial output and a checkpoint beside it: the same call with ``resume=True`` continues it."""
    counters = Counters()
    _check_report_path(config)  # before any request: a report that cannot be written is bad usage
    try:
        output = _open_output(config)
    except AlreadyComplete as done:
        report = build_report(counters, output=done.uri, fmt="parquet", complete=True, reason=str(done))
        _write_report(config, report)
        return report
    resume = output.resumed.walk if output.resumed is not None else None
    try:
        async with (
            _fetcher(config, counters, decode=output.decode) as fetcher,
            task_group() as tg,
            _fewer_collections(),
        ):
            if config.progress:
                tg.start_soon(_show_progress, counters)
            verdict = await _pipeline(
                config,
                fetcher,
                output.deliver,
                counters,
                resume=resume,
                on_page=output.on_page,
                shard=config.shard,
            )
            tg.cancel_scope.cancel()
        if not verdict.complete:
            # Found at the end: going on cannot help, only a new run can give a complete file.
            raise IncompleteExport(f"the export is not complete: {verdict.reason}", resumable=False)
        output.finish(verdict, counters)
    except BaseException as exc:
        error = _settle(exc, output, counters)
        report = build_report(
            counters,
            output=output.name,
            fmt=output.format,
            complete=False,
            reason=str(error),
            error=type(error).__name__,
            columns_added=list(output.columns_added),
            resumed=resume is not None,
        )
        report.update(output.report_fields())
        _write_report(config, report)
        if error is exc:
            raise
        raise error from exc
    report = build_report(
        counters,
        output=output.name,
        fmt=output.format,
        complete=True,
        reason=verdict.reason,
        columns_added=list(output.columns_added),
        resumed=resume is not None,
    )
    report.update(output.report_fields())
    _write_report(config, report)
    return report


_GC_YOUNG = 10_000  # allocations between two collections of the youngest generation during an export
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, ...] = ()


@contextlib.asynccontextmanager
async def _fewer_collections() -> AsyncIterator[None]:
    """While an export runs, the cyclic GC runs after 10,000 allocations instead of 700.

    Orders are freed by reference counting; the collector only finds nothing, and with the default
    threshold it ran about 1,000 times per 200,000 Parquet orders, 8 of them full collections over every
    module object: 0.25 s of a 1.6 s export. Nested or concurrent exports share one setting; the last to
    finish puts the previous thresholds back."""
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            young, *older = _gc_saved
            gc.set_threshold(max(young, _GC_YOUNG), *older)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)


def _open_output(config: ExportConfig) -> _Output | DatasetOutput:
    """The output ``-o`` names: a dataset when it ends with a slash, else one file (or stdout)."""
    if config.is_dataset:
        from exporter.dataset import DatasetOutput  # pyarrow loads only when Parquet is asked for

        return DatasetOutput(config, open_store(config.output, s3_endpoint=config.s3_endpoint))
    return _Output(config)


def _settle(exc: BaseException, output: _Output | DatasetOutput, counters: Counters) -> BaseException:
    """Keep or drop the partial output after ``exc``; the error to raise instead (with how to resume)."""
    interrupted = isinstance(exc, KeyboardInterrupt | Interrupted) or _is_cancellation(exc)
    if isinstance(exc, UsageError) or (isinstance(exc, IncompleteExport) and not exc.resumable):
        output.discard()
        return exc
    if not interrupted and not isinstance(exc, ExportError):
        output.discard()
        return exc
    kept = output.suspend()
    count = output.kept_orders if output.kept_orders is not None else counters.orders_in_output
    how = f"{count:,} orders are kept; run the same command with --resume to continue"
    if interrupted:
        return Interrupted(f"interrupted: {how}" if kept else NOTHING_KEPT)
    assert isinstance(exc, ExportError)
    if kept:
        exc.message = f"{exc.message}; {how}"
    return exc


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, anyio.get_cancelled_exc_class())


def _fingerprint(config: ExportConfig) -> dict[str, Any]:
    """What makes two exports write the same file: the API, the query, the format, the output (a local
    path resolved against the working folder; stdout and URLs as given). No credential."""
    output = config.output
    if output != "-" and not is_object_url(output):
        output = str(Path(output).resolve())
    return {**config.query_key(), "output": output}


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
                raise IncompleteExport(f"the export is not complete: {verdict.reason}", resumable=False)

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


def _check_report_path(config: ExportConfig) -> None:
    """Refuse a ``--report`` path that cannot be written, before the export starts: found only at the end,
    it failed a complete export (exit 5) after its file had been put under the final name."""
    if not config.report_path:
        return
    path = Path(config.report_path)
    problem = None
    if path.is_dir():
        problem = "it is a directory"
    elif not path.parent.is_dir():
        problem = f"the folder {path.parent} does not exist"
    elif not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = "permission denied"
    if problem is not None:
        raise UsageError(
            f"cannot write the report to {config.report_path}: {problem}; choose another --report"
        )


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
        first = await fetcher.page(0, config.page_size, need_total=True)
    assert first.total is not None
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
            results[index] = await fetcher.order(ids[index])

    async with _fetcher(config, counters) as fetcher, task_group() as tg:
        for index in range(len(ids)):
            tg.start_soon(one, fetcher, index)
    return results


async def drain(config: ExportConfig) -> dict[str, Any]:
    """Fetch every page as an export would and write nothing: how fast this API can be drained."""
    counters = Counters()

    async def discard(records: Records) -> None:
        return None

    async with _fetcher(config, counters) as fetcher:
        verdict = await _pipeline(config, fetcher, discard, counters)
    seconds = counters.elapsed()
    return {
        "complete": verdict.complete,
        "reason": verdict.reason,
        "orders": counters.orders_written,
        "pages": counters.pages_done,
        "page_size": counters.page_size,
        "requests": counters.requests,
        "retries": counters.retries,
        "rate_limited": counters.rate_limited,
        "seconds": round(seconds, 3),
        "orders_per_second": round(counters.orders_written / seconds, 1) if seconds else 0.0,
        "requests_per_second": round(counters.requests / seconds, 1) if seconds else 0.0,
    }
