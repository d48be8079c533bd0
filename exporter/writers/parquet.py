"""Parquet: one file, zstd, typed columns, row groups of ``row_group_rows`` (100,000) rows, or fewer when
their Arrow data reaches ``row_group_bytes`` (32 MiB) first.

Types: ISO 8601 date-times with a zone -> ``timestamp[us, UTC]``; ``YYYY-MM-DD`` -> ``date32``; ints ->
int64; floats -> double; bools; strings; objects -> structs (an always-empty object: a struct with one null
field ``_empty``, so that ``{}`` and null stay apart); lists of one kind -> lists; anything mixed -> its
text (strings verbatim, other values as JSON). ``kinds`` has the lattice, ``arrowconv`` the conversion.

Strategy: the kind (schema) is inferred once, from the first ``sample_rows`` orders; then orders are
converted ``batch_rows`` at a time with that kind (``pyarrow.array`` with an explicit type, after C-level
checks that nothing would be dropped or coerced), and the Arrow batches are buffered until a row group is
full. Full row groups are encoded and compressed on one background thread when the process may use a
second core (pyarrow releases the GIL there; on one core the thread's GIL hand-offs cost more than they
save, so it encodes in line), one at a time, so memory stays about two row groups of Arrow data whatever
the total; the byte cap keeps that bounded whatever the orders' width too. The sandbox's orders (100,000
are 22 MB of Arrow data) fill whole row groups; 200,000 orders of 2.7 kB (``--order-lines 20``) took 458 MB
of peak RSS with row groups of 100,000 rows and blocks of 8 MiB, 253 MB with the caps.

Orders given as JSON lines (``write_lines``, the export's usual path) are converted ``lines_rows`` (5,000,
or 2 MiB of text if that comes first, so that large orders do not make large blocks) at a time by pyarrow's
JSON reader (``Converter.convert_lines``), which gives the batch ``pyarrow.array`` would, or says it
cannot; then the lines are decoded and take the dict path, widening included. With a
second core this runs on a converting thread of its own (``inorder.InOrder``), at most ``_JOBS_AHEAD``
blocks behind the caller (who waits beyond that), blocks strictly in order: the reader releases the GIL,
so the event loop goes on fetching and checking pages meanwhile (200,000 orders against the sandbox on
this 2-core machine: 1.26 s -> 0.95 s). The thread alone touches the writer's state between
``write_lines`` and the next ``commit``, ``close`` or ``write``, which wait for it first. An error on the
thread comes out of a later call, and marks the writer broken: a block is missing, so no commit may list
what it holds.

Data goes to *segment* files in ``scratch_dir`` (named after the partial output, see ``segments``). When a
batch does not fit the kind (a field first seen late, at the top level or nested; a value of another type;
a string that is not a date-time in a timestamp column), the batch is inferred, the kind widened
(``kinds.unify``), and a new segment started with the wider kind; nothing of the batch is dropped. At
``close()``: with one segment (the usual case) its bytes are copied into the stream (about 25 bytes an
order); with several of one kind, their bytes are joined under one merged footer (``footer.join``), as
fast as a copy; with several kinds, every segment is read back 10,000 rows at a time, widened to the
final kind (``arrowconv.conform``: new columns null in earlier rows; int -> double; date -> its text;
timestamp -> ISO text in UTC, ``...Z``, same instant; anything -> its text), re-cut into full row groups
and written into the stream as one file.

Commit and resume: a commit closes the current segment (once it holds ``commit_rows`` orders, or whatever
it holds when forced: what is pending is converted first, so a forced commit in the first ``sample_rows``
orders infers the kind from fewer of them), fsyncs it, and returns the list of finished segments (name,
rows, size, kind) with the current kind and counters; the next orders start a new segment of the same
kind, so the stream only ever receives the finished file. A resume checks each listed segment (there,
same size, a readable footer with the rows and schema committed), deletes every other segment of the same
output (the unfinished one of a killed run has no footer; one finished after the last commit is not
listed either: their orders come again), and goes on with the saved kind. Each segment ends with a short
row group (its rows beyond the last full one), which the byte join keeps. A segment boundary, wherever it
falls, can change two odd cases, as a batch boundary already can: an empty object in a struct column
later widened to text reads ``{"a":null}`` rather than ``{}``, and an int beyond 2**53 nested in a
column later widened to double makes that leaf text rather than the whole top-level field.

Orders without any field become rows of nulls once a first field is seen; if no order ever has a field,
``close`` refuses (``fieldless_error``): a file without columns cannot count rows, and a file of none
would claim fewer orders than the export wrote.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from exporter import jsoncodec
from exporter.errors import ExportError, UsageError
from exporter.writers.arrowconv import (
    CONVERSION_ERRORS,
    Converter,
    conform_batch,
    exact_as_double,
    schema_of,
)
from exporter.writers.footer import join
from exporter.writers.inorder import InOrder, cores
from exporter.writers.kinds import (
    DATE,
    FLOAT,
    INT,
    STRING,
    TEXT,
    TIMESTAMP,
    KeyPath,
    Kind,
    Struct,
    changes,
    infer,
    leaf_paths,
    path_name,
    paths_between,
    replace,
    unify,
)
from exporter.writers.segments import Committed, Segment, segment_path, segment_prefix, sweep, sync
from exporter.writers.state import cut

_COPY_CHUNK = 1 << 20
ROW_GROUP_BYTES = 32 << 20  # a row group ends at row_group_rows orders or this much Arrow data
_READ_ROWS = 10_000
_JOBS_AHEAD = 2  # blocks of lines handed to the converting thread and not yet written
_BLOCK_BYTES = 2 << 20  # a block of lines is handed on at lines_rows orders or this much text, if sooner
_BROKEN = "the Parquet output lost orders to an earlier error: it cannot go on"
_TEMPORAL = frozenset({TIMESTAMP, DATE})


def fieldless_error(count: int) -> ExportError:
    """The error for orders none of which has a field: Parquet cannot hold rows without a column."""
    return ExportError(
        f"{count:,} orders have no field at all: a Parquet file cannot hold rows without a column; "
        "export them to JSONL or CSV"
    )


def lean_memory_pool() -> None:
    """Use jemalloc for Arrow memory unless the user chose a pool (``ARROW_DEFAULT_MEMORY_POOL``).

    With a row group encoded on another thread, mimalloc (pyarrow's default) kept about 50 MB more RSS
    than jemalloc for a 1,000,000-order export here, at the same speed.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or pa.default_memory_pool().backend_name != "mimalloc":
        return
    with contextlib.suppress(NotImplementedError, pa.ArrowException):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


def _replaced(kind: Struct, paths: list[KeyPath], new: Kind) -> Struct:
    for path in paths:
        changed = replace(kind, path, new)
        assert isinstance(changed, Struct)
        kind = changed
    return kind


class RowGroups:
    """A Parquet writer fed with record batches, writing full row groups (on ``pool``'s thread if given)."""

    def __init__(
        self,
        where: Any,
        schema: Any,
        *,
        rows: int,
        compression: str,
        pool: ThreadPoolExecutor | None,
        max_bytes: int | None = None,
    ) -> None:
        self._writer = pq.ParquetWriter(where, schema, compression=compression)
        self._schema = schema
        self._rows = rows
        self._max_bytes = max_bytes
        self._pool = pool
        self._batches: list[Any] = []
        self._buffered = 0
        self._buffered_bytes = 0
        self._inflight: Future[None] | None = None
        self.total = 0

    def add(self, batch: Any) -> None:
        self._batches.append(batch)
        self._buffered += batch.num_rows
        self._buffered_bytes += batch.nbytes
        self.total += batch.num_rows
        if self._buffered >= self._rows:
            self._flush(final=False)
        elif self._max_bytes is not None and self._buffered_bytes >= self._max_bytes:
            self.flush()  # wide orders: a shorter row group, so that memory stays bounded

    @property
    def buffered(self) -> int:
        """Rows added but not yet handed to the Parquet writer."""
        return self._buffered

    @property
    def buffered_bytes(self) -> int:
        """Their Arrow data, in bytes."""
        return self._buffered_bytes

    def flush(self) -> None:
        """Write what is buffered now, as a (possibly short) row group."""
        self._flush(final=True)

    def finish(self) -> None:
        """Write what is buffered, wait for the background write, and write the footer."""
        self._flush(final=True)
        self._wait()
        self._writer.close()

    def discard(self) -> None:
        """Stop without raising (the output is being abandoned)."""
        with contextlib.suppress(Exception):
            self._wait()
        with contextlib.suppress(Exception):
            self._writer.close()

    def _flush(self, *, final: bool) -> None:
        table = pa.Table.from_batches(self._batches, schema=self._schema)
        whole = table.num_rows if final else table.num_rows - table.num_rows % self._rows
        rest = table.slice(whole)
        self._batches = rest.to_batches() if rest.num_rows else []
        self._buffered = rest.num_rows
        self._buffered_bytes = rest.nbytes if rest.num_rows else 0
        if not whole:
            return
        if self._pool is None:
            self._writer.write_table(table.slice(0, whole), self._rows)
        else:
            self._wait()
            self._inflight = self._pool.submit(self._writer.write_table, table.slice(0, whole), self._rows)

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()


class _Open:
    """The segment being written."""

    def __init__(self, path: Path, kind: Struct, row_groups: RowGroups) -> None:
        self.path = path
        self.kind = kind
        self.row_groups = row_groups


class ParquetWriter:
    """Writes orders as one Parquet file; see the module docstring."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        scratch_dir: Path | None,
        row_group_rows: int = 100_000,
        row_group_bytes: int = ROW_GROUP_BYTES,
        batch_rows: int = 500,
        sample_rows: int = 5_000,
        compression: str = "zstd",
        commit_rows: int = 500_000,
        prefix: str | None = None,
        lines_rows: int = 5_000,
    ) -> None:
        if scratch_dir is None:
            raise UsageError("Parquet cannot be streamed to stdout: write it to a file, or use -f jsonl/csv")
        lean_memory_pool()
        self.columns_added: list[str] = []
        self.columns_widened: list[str] = []
        self.orders = 0
        self._stream = stream
        self._scratch_dir = scratch_dir
        self._row_group_rows = max(1, row_group_rows)
        self._row_group_bytes = max(1, row_group_bytes)
        self._batch_rows = max(1, batch_rows)
        self._sample_rows = max(1, sample_rows)
        self._commit_rows = max(1, commit_rows)
        self._compression = compression
        self._pending: list[dict[str, Any]] = []
        self._lines: list[bytes] = []  # orders as JSON lines, not yet handed on (write_lines)
        self._lines_bytes = 0
        self._lines_rows = max(1, lines_rows)
        self._order = InOrder("parquet-converter", ahead=_JOBS_AHEAD, broken=_BROKEN)  # blocks of lines
        self._orders_at_commit = 0
        self._fieldless = 0
        self._converter: Converter | None = None  # of the current kind, once the first batch is seen
        self._open: _Open | None = None
        self._done: list[Segment] = []
        self._committed = 0  # how many of _done the last commit listed
        self._pool: ThreadPoolExecutor | None = None
        self._final: RowGroups | None = None
        self._closed = False
        self._base = _position(stream)
        if prefix is None:  # a new output: what an earlier run of it left is of no use
            prefix = segment_prefix(stream)
            sweep(scratch_dir, prefix)
        self._prefix = prefix
        self._next = 1

    @property
    def kind(self) -> Struct | None:
        """The kind of the file so far (None before the first batch is converted)."""
        return self._converter.kind if self._converter is not None else None

    # -- the protocol -----------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]]) -> None:
        if self._lines or self._order.pending:
            self._settle_lines()  # the converting thread is done with the state before it is touched here
        self._pending.extend(records)
        self.orders += len(records)
        if len(self._pending) >= (self._batch_rows if self._converter is not None else self._sample_rows):
            self._order.run(self._drain_told)

    def write_lines(self, lines: list[bytes]) -> None:
        """Write orders given as their one-line JSON texts (``responses.decode_lines``). They are converted
        ``lines_rows`` at a time by pyarrow's JSON reader (``Converter.convert_lines``; the dict path when it
        cannot), on a thread of the writer's own when the process may use a second core: the reader and
        the encoder release the GIL, so the event loop goes on fetching and checking the next pages."""
        self._lines.extend(lines)
        self._lines_bytes += sum(map(len, lines))
        self.orders += len(lines)
        if len(self._lines) >= self._lines_rows or self._lines_bytes >= _BLOCK_BYTES:
            self._hand_on()

    def _hand_on(self) -> None:
        """The lines held, converted and written (on the converting thread when there is one)."""
        block, self._lines, self._lines_bytes = self._lines, [], 0
        if block:
            self._order.submit(lambda: self._take_lines(block))

    def _settle_lines(self) -> None:
        """Every line held converted and written (raising the first error of a block)."""
        self._hand_on()
        self._order.settle()

    def _take_lines(self, lines: list[bytes]) -> None:
        converter = self._converter
        batch = converter.convert_lines(lines) if converter is not None and not self._pending else None
        with self._scratch_errors():
            if batch is not None:
                self._add(batch)
                return
            try:
                records = jsoncodec.decode_texts(lines)
            except jsoncodec.DECODE_ERRORS as exc:  # simdjson took them: only msgspec's nesting limit is left
                raise ExportError(f"cannot convert orders to Parquet: {exc}") from exc
            self._pending.extend(records)
            self._drain()

    def _drain_told(self) -> None:
        with self._scratch_errors():
            self._drain()

    @contextlib.contextmanager
    def _scratch_errors(self) -> Iterator[None]:
        """An OSError told as an ExportError that names the scratch folder."""
        try:
            yield
        except OSError as exc:
            raise ExportError(
                f"cannot write Parquet data in {self._scratch_dir}: {exc.strerror or exc}"
            ) from exc

    def commit(self, *, force: bool = False) -> dict[str, Any] | None:
        """Close the current segment once it holds ``commit_rows`` orders (whatever it holds if ``force``),
        fsync it, and return the state: every finished segment, the kind, the counters. None otherwise."""
        if self._closed:
            return None
        # Held now is at most what came since the last commit: below commit_rows, no need to wait for
        # the converting thread to know.
        if not force and self.orders - self._orders_at_commit < self._commit_rows:
            return None
        self._settle_lines()
        if self._order.broken:  # its error has been raised: the last commit stays the last
            return None
        held = len(self._pending) + (self._open.row_groups.total if self._open is not None else 0)
        if not force and held < self._commit_rows:
            return None
        with self._scratch_errors():
            self._drain()
            self._finish_open()
            sync(self._done, self._scratch_dir)
        self._committed = len(self._done)
        self._orders_at_commit = self.orders
        return self._state()

    def close(self) -> None:
        """Convert what is pending, finish the segments, and put the one file into the stream."""
        if self._closed:
            return
        self._closed = True
        try:
            self._settle_lines()
            self._drain()
            self._finish_open()
            if self._fieldless:  # no order had a field: left out, they would make a file of no rows
                raise fieldless_error(self._fieldless)
            if not self._done:
                pq.ParquetWriter(self._stream, pa.schema([]), compression=self._compression).close()
            elif len(self._done) == 1:
                with self._done[0].path.open("rb") as source:
                    shutil.copyfileobj(source, self._stream, _COPY_CHUNK)
            elif not self._one_kind() or not join(
                [segment.path for segment in self._done], self._stream, chunk=_COPY_CHUNK
            ):
                self._rewrite()
            self._stream.flush()
        except OSError as exc:
            self._release()
            raise ExportError(f"cannot write the Parquet output: {exc.strerror or exc}") from exc
        except BaseException:
            self._release()
            raise
        self._cleanup()

    def abort(self) -> None:
        """Stop, remove every scratch file; nothing is written to the stream."""
        self._closed = True
        self._release()
        self._cleanup()

    def suspend(self) -> None:
        """Stop, keeping the segments the last commit listed; nothing is written to the stream."""
        self._closed = True
        self._release()

    # -- resuming ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return Committed(
            base=self._base,
            orders=self.orders,
            prefix=self._prefix,
            following=self._next,
            segments=list(self._done),
            kind=self.kind,
            fieldless=self._fieldless,
            columns_added=list(self.columns_added),
            columns_widened=list(self.columns_widened),
        ).to_state()

    @classmethod
    def resume(
        cls, stream: BinaryIO, *, scratch_dir: Path | None, state: dict[str, Any], **options: Any
    ) -> ParquetWriter:
        """The writer of a commit's ``state``: its segments checked and kept, any other segment of the same
        output deleted (a killed run's, unfinished or uncommitted), the stream cut back to where it was."""
        if scratch_dir is None:
            raise UsageError("Parquet cannot be streamed to stdout: write it to a file, or use -f jsonl/csv")
        committed = Committed.from_state(state, scratch_dir)
        cut(stream, committed.base, "parquet")
        sweep(
            scratch_dir, committed.prefix, keep=frozenset(segment.path.name for segment in committed.segments)
        )
        writer = cls(stream, scratch_dir=scratch_dir, prefix=committed.prefix, **options)
        writer._base = committed.base
        writer._done = committed.segments
        writer._committed = len(committed.segments)
        writer._next = committed.following
        writer._converter = Converter(committed.kind) if committed.kind is not None else None
        writer._fieldless = committed.fieldless
        writer.orders = writer._orders_at_commit = committed.orders
        writer.columns_added = committed.columns_added
        writer.columns_widened = committed.columns_widened
        return writer

    # -- converting -------------------------------------------------------------------------------

    def _drain(self) -> None:
        records, self._pending = self._pending, []
        if not records:
            return
        if self._converter is None:
            self._converter = Converter(infer(records))
        converter = self._converter
        if converter.fits(records):
            try:
                batch = converter.convert(records)
            except CONVERSION_ERRORS:
                batch = self._convert_slow(records)
        else:
            batch = self._convert_slow(records)
        self._add(batch)

    def _add(self, batch: Any) -> None:
        """A converted batch into the open segment (one is opened if needed)."""
        if not batch.num_columns:
            # Orders without any field so far: a file without columns cannot count rows, so they wait
            # to become rows of nulls in the first segment that has a column.
            self._fieldless += batch.num_rows
            return
        if self._open is None:
            self._open_segment()
        assert self._open is not None
        row_groups = self._open.row_groups
        if self._fieldless:
            schema = batch.schema
            nulls = [pa.nulls(self._fieldless, type=field.type) for field in schema]
            row_groups.add(pa.RecordBatch.from_arrays(nulls, schema=schema))
            self._fieldless = 0
        row_groups.add(batch)

    def _convert_slow(self, records: list[dict[str, Any]]) -> Any:
        """Widen the kind until it holds ``records`` (a new segment when it changes), then convert."""
        assert self._converter is not None
        old = self._converter.kind
        converter, batch = widen_and_convert(self._converter, records)
        if converter.kind != old:
            stored = sum(segment.rows for segment in self._done)
            if stored or (self._open is not None and self._open.row_groups.total):
                added, widened = changes(old, converter.kind)
                self.columns_added.extend(added)
                self.columns_widened.extend(widened)
            self._finish_open()  # the next rows start a segment of the new kind
            self._converter = converter
        return batch

    # -- segments ---------------------------------------------------------------------------------

    def _open_segment(self) -> None:
        assert self._converter is not None
        path = segment_path(self._scratch_dir, self._prefix, self._next)
        self._next += 1
        row_groups = self._row_groups(str(path), self._converter.schema)
        self._open = _Open(path, self._converter.kind, row_groups)

    def _finish_open(self) -> None:
        """Write the open segment's footer; keep it if it holds rows (a first guess replaced before it held
        anything is dropped)."""
        segment = self._open
        if segment is None:
            return
        segment.row_groups.finish()
        self._open = None
        if segment.row_groups.total:
            size = segment.path.stat().st_size
            self._done.append(Segment(segment.path, segment.kind, segment.row_groups.total, size))
        else:
            segment.path.unlink(missing_ok=True)

    def _one_kind(self) -> bool:
        first = self._done[0].kind
        return all(segment.kind == first for segment in self._done)

    def _rewrite(self) -> None:
        """Every segment, widened to the final kind, into the stream as one file."""
        final = Converter(self._final_kind())
        # In this thread: a second thread here (with its own malloc arena and a row group in flight)
        # cost about 60 MB more peak RSS for a 10% faster close.
        self._final = self._row_groups(self._stream, final.schema, background=False)
        for segment in self._done:
            with pq.ParquetFile(str(segment.path), buffer_size=_COPY_CHUNK) as parquet:
                for batch in parquet.iter_batches(batch_size=_READ_ROWS, use_threads=False):
                    self._final.add(conform_batch(batch, segment.kind, final.kind, final.schema))
        self._final.finish()
        self._final = None

    def _final_kind(self) -> Struct:
        """The last segment's kind, with the exactness check of ``exact_kind``."""
        final, widened = exact_kind(
            [(segment.kind, _column_reader(segment.path)) for segment in self._done[:-1]], self._done[-1].kind
        )
        self.columns_widened.extend(widened)
        return final

    def _row_groups(self, where: Any, schema: Any, *, background: bool = True) -> RowGroups:
        # A thread only pays when a second core can run it: on one core its GIL hand-offs with the event
        # loop cost more than the overlap gains (200k orders: 2.2 s with it, 1.8 s without, one core).
        background = background and cores() > 1
        if self._pool is None and background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        return RowGroups(
            where,
            schema,
            rows=self._row_group_rows,
            compression=self._compression,
            pool=self._pool if background else None,
            max_bytes=self._row_group_bytes,
        )

    def _release(self) -> None:
        """Stop writing; delete every segment the last commit did not list (the listed ones stay)."""
        self._lines, self._lines_bytes = [], 0
        self._stop_threads()  # every block and row group done with before their files go
        if self._final is not None:
            self._final.discard()
            self._final = None
        if self._open is not None:
            self._open.row_groups.discard()
            self._open.path.unlink(missing_ok=True)
            self._open = None
        for segment in self._done[self._committed :]:
            segment.path.unlink(missing_ok=True)
        del self._done[self._committed :]

    def _cleanup(self) -> None:
        """After the output is complete or given up: no segment is needed any more."""
        self._stop_threads()
        for segment in self._done:
            segment.path.unlink(missing_ok=True)
        self._done.clear()
        self._committed = 0

    def _stop_threads(self) -> None:
        self._order.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def widen_and_convert(converter: Converter, records: list[dict[str, Any]]) -> tuple[Converter, Any]:
    """Convert ``records`` with ``converter``'s kind, widened first until it holds them; the converter of
    the kind used (``converter`` itself when nothing had to change) and the record batch."""
    kind = unify(converter.kind, infer(records))
    assert isinstance(kind, Struct)
    # Each failed try turns at least one field into TEXT or one date-time leaf into STRING.
    for _ in range(len(kind.fields) + sum(1 for _ in leaf_paths(kind, _TEMPORAL)) + 2):
        wider = converter if kind == converter.kind else Converter(kind)
        try:
            array = wider.ingest(records)
        except CONVERSION_ERRORS as exc:
            # Only pyarrow's own limits get here (e.g. an int a double cannot hold exactly).
            bad = wider.bad_fields(records)
            if not bad:
                raise ExportError(f"internal error: cannot convert orders to Parquet: {exc}") from exc
            kind = _replaced(kind, [(name,) for name in bad], TEXT)
            continue
        try:
            return wider, wider.finish(array)
        except CONVERSION_ERRORS as exc:  # a string the date-time parser of Arrow does not take
            paths = wider.bad_temporal_paths(array)
            if not paths:
                raise ExportError(f"internal error: cannot convert orders to Parquet: {exc}") from exc
            kind = _replaced(kind, paths, STRING)
    raise ExportError("internal error: could not find a Parquet schema for a batch of orders")


# Reads the named top-level columns of a stored file, a batch at a time.
ColumnReader = Callable[[list[str]], Iterator[Any]]


def exact_kind(stored: list[tuple[Struct, ColumnReader]], final: Struct) -> tuple[Struct, list[str]]:
    """``final``, except int columns widened to double where a file of an earlier kind holds an int a
    double cannot hold exactly: those become TEXT (a pass over just those columns). Also the widenings
    made, as ``"path: float -> text"``."""
    notes: list[str] = []
    for kind, read in stored:
        paths = list(paths_between(kind, final, INT, FLOAT))
        if not paths:
            continue
        inexact: set[KeyPath] = set()
        for batch in read(sorted({str(path[0]) for path in paths})):
            for path in paths:
                if path not in inexact and not exact_as_double(batch.column(str(path[0])), path[1:]):
                    inexact.add(path)
        notes.extend(f"{path_name(path)}: float -> text" for path in sorted(inexact, key=path_name))
        final = _replaced(final, sorted(inexact, key=path_name), TEXT)
    return final, notes


def _column_reader(path: Path) -> ColumnReader:
    def read(columns: list[str]) -> Iterator[Any]:
        with pq.ParquetFile(str(path), buffer_size=_COPY_CHUNK) as parquet:
            yield from parquet.iter_batches(batch_size=_READ_ROWS, columns=columns, use_threads=False)

    return read


def _position(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0


__all__ = [
    "ROW_GROUP_BYTES",
    "ParquetWriter",
    "RowGroups",
    "exact_kind",
    "fieldless_error",
    "lean_memory_pool",
    "schema_of",
    "widen_and_convert",
]
