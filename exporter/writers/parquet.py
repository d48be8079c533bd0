"""Parquet: one file, zstd, typed columns, row groups of ``row_group_rows`` (100,000) rows.

Types: ISO 8601 date-times with a zone -> ``timestamp[us, UTC]``; ``YYYY-MM-DD`` -> ``date32``; ints ->
int64; floats -> double; bools; strings; objects -> structs (an always-empty object: a struct with one null
field ``_empty``, so that ``{}`` and null stay apart); lists of one kind -> lists; anything mixed -> its
text (strings verbatim, other values as JSON). ``kinds`` has the lattice, ``arrowconv`` the conversion.

Strategy: the kind (schema) is inferred once, from the first ``sample_rows`` orders; then orders are
converted ``batch_rows`` at a time with that kind (``pyarrow.array`` with an explicit type, after C-level
checks that nothing would be dropped or coerced), and the Arrow batches are buffered until a row group is
full. Full row groups are encoded and compressed on one background thread (pyarrow releases the GIL
there), one at a time, so memory stays about two row groups of Arrow data whatever the total.

Data goes to *segment* files in ``scratch_dir``. When a batch does not fit the kind (a field first seen
late, at the top level or nested; a value of another type; a string that is not a date-time in a
timestamp column), the batch is inferred, the kind widened (``kinds.unify``), and a new segment started
with the wider kind; nothing of the batch is dropped. At ``close()``: with one segment (the usual case)
its bytes are copied into the stream (about 25 bytes an order); with several, every segment is read back
10,000 rows at a time, widened to the final kind (``arrowconv.conform``: new columns null in earlier rows;
int -> double; date -> its text; timestamp -> ISO text in UTC, ``...Z``, same instant; anything -> its
text), re-cut into full row groups and written into the stream as one file.

Orders without any field become rows of nulls once a first field is seen; if no order ever has a field,
the file has no column and so no row (Parquet cannot count rows without a column).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from exporter.errors import ExportError, UsageError
from exporter.writers.arrowconv import (
    CONVERSION_ERRORS,
    Converter,
    conform_batch,
    exact_as_double,
    schema_of,
)
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

_COPY_CHUNK = 1 << 20
_READ_ROWS = 10_000
_TEMPORAL = frozenset({TIMESTAMP, DATE})


def _lean_memory_pool() -> None:
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


class _RowGroups:
    """A Parquet writer fed with record batches, writing full row groups (on ``pool``'s thread if given)."""

    def __init__(
        self, where: Any, schema: Any, *, rows: int, compression: str, pool: ThreadPoolExecutor | None
    ) -> None:
        self._writer = pq.ParquetWriter(where, schema, compression=compression)
        self._schema = schema
        self._rows = rows
        self._pool = pool
        self._batches: list[Any] = []
        self._buffered = 0
        self._inflight: Future[None] | None = None
        self.total = 0

    def add(self, batch: Any) -> None:
        self._batches.append(batch)
        self._buffered += batch.num_rows
        self.total += batch.num_rows
        if self._buffered >= self._rows:
            self._flush(final=False)

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


class _Segment:
    """One scratch Parquet file, all of one kind."""

    def __init__(self, path: Path, converter: Converter, row_groups: _RowGroups) -> None:
        self.path = path
        self.converter = converter
        self.row_groups = row_groups
        self.open = True


class ParquetWriter:
    """Writes orders as one Parquet file; see the module docstring."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        scratch_dir: Path | None,
        row_group_rows: int = 100_000,
        batch_rows: int = 2_000,
        sample_rows: int = 5_000,
        compression: str = "zstd",
    ) -> None:
        if scratch_dir is None:
            raise UsageError("Parquet cannot be streamed to stdout: write it to a file, or use -f jsonl/csv")
        _lean_memory_pool()
        self.columns_added: list[str] = []
        self.columns_widened: list[str] = []
        self.orders = 0
        self._stream = stream
        self._scratch_dir = scratch_dir
        self._row_group_rows = max(1, row_group_rows)
        self._batch_rows = max(1, batch_rows)
        self._sample_rows = max(1, sample_rows)
        self._compression = compression
        self._pending: list[dict[str, Any]] = []
        self._fieldless = 0
        self._segments: list[_Segment] = []
        self._pool: ThreadPoolExecutor | None = None
        self._final: _RowGroups | None = None
        self._closed = False

    @property
    def kind(self) -> Struct | None:
        """The kind of the file so far (None before the first batch is converted)."""
        return self._segments[-1].converter.kind if self._segments else None

    # -- the protocol -----------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]]) -> None:
        self._pending.extend(records)
        self.orders += len(records)
        if len(self._pending) >= (self._batch_rows if self._segments else self._sample_rows):
            try:
                self._drain()
            except OSError as exc:
                raise ExportError(
                    f"cannot write Parquet data in {self._scratch_dir}: {exc.strerror or exc}"
                ) from exc

    def close(self) -> None:
        """Convert what is pending, finish the segments, and put the one file into the stream."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drain()
            if self._segments:
                self._segments[-1].row_groups.finish()
                self._segments[-1].open = False
            if not self._segments:
                pq.ParquetWriter(self._stream, pa.schema([]), compression=self._compression).close()
            elif len(self._segments) == 1:
                with self._segments[0].path.open("rb") as source:
                    shutil.copyfileobj(source, self._stream, _COPY_CHUNK)
            else:
                self._rewrite()
            self._stream.flush()
        except OSError as exc:
            self._abandon()
            raise ExportError(f"cannot write the Parquet output: {exc.strerror or exc}") from exc
        except BaseException:
            self._abandon()
            raise
        self._cleanup()

    def abort(self) -> None:
        """Stop, remove every scratch file; nothing is written to the stream."""
        self._closed = True
        for segment in self._segments:
            if segment.open:
                segment.row_groups.discard()
                segment.open = False
        self._cleanup()

    # -- converting -------------------------------------------------------------------------------

    def _drain(self) -> None:
        records, self._pending = self._pending, []
        if not records:
            return
        if not self._segments:
            self._new_segment(infer(records))
        segment = self._segments[-1]
        converter = segment.converter
        if converter.fits(records):
            try:
                batch = converter.convert(records)
            except CONVERSION_ERRORS:
                batch = self._convert_slow(records)
        else:
            batch = self._convert_slow(records)
        if not batch.num_columns:
            # Orders without any field so far: a file without columns cannot count rows, so they wait
            # to become rows of nulls in the first segment that has a column.
            self._fieldless += batch.num_rows
            return
        row_groups = self._segments[-1].row_groups
        if self._fieldless:
            schema = batch.schema
            nulls = [pa.nulls(self._fieldless, type=field.type) for field in schema]
            row_groups.add(pa.RecordBatch.from_arrays(nulls, schema=schema))
            self._fieldless = 0
        row_groups.add(batch)

    def _convert_slow(self, records: list[dict[str, Any]]) -> Any:
        """Widen the kind until it holds ``records`` (a new segment when it changes), then convert."""
        old = self._segments[-1].converter.kind
        kind = unify(old, infer(records))
        assert isinstance(kind, Struct)
        batch = None
        # Each failed try turns at least one field into TEXT or one date-time leaf into STRING.
        for _ in range(len(kind.fields) + sum(1 for _ in leaf_paths(kind, _TEMPORAL)) + 2):
            converter = Converter(kind)
            try:
                array = converter.ingest(records)
            except CONVERSION_ERRORS as exc:
                # Only pyarrow's own limits get here (e.g. an int a double cannot hold exactly).
                bad = converter.bad_fields(records)
                if not bad:
                    raise ExportError(f"internal error: cannot convert orders to Parquet: {exc}") from exc
                kind = _replaced(kind, [(name,) for name in bad], TEXT)
                continue
            try:
                batch = converter.finish(array)
                break
            except CONVERSION_ERRORS as exc:  # a string the date-time parser of Arrow does not take
                paths = converter.bad_temporal_paths(array)
                if not paths:
                    raise ExportError(f"internal error: cannot convert orders to Parquet: {exc}") from exc
                kind = _replaced(kind, paths, STRING)
        if batch is None:
            raise ExportError("internal error: could not find a Parquet schema for a batch of orders")
        if kind != old:
            if self._segments[-1].row_groups.total:
                added, widened = changes(old, kind)
                self.columns_added.extend(added)
                self.columns_widened.extend(widened)
            self._new_segment(kind)
        return batch

    # -- segments ---------------------------------------------------------------------------------

    def _new_segment(self, kind: Struct) -> None:
        if self._segments:
            previous = self._segments[-1]
            previous.row_groups.finish()
            previous.open = False
            if not previous.row_groups.total:  # the first guess, replaced before it held anything
                self._segments.pop()
                previous.path.unlink(missing_ok=True)
        converter = Converter(kind)
        fd, name = tempfile.mkstemp(prefix=".orders-export-", suffix=".parquet", dir=self._scratch_dir)
        os.close(fd)
        path = Path(name)
        try:
            row_groups = self._row_groups(name, converter.schema)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._segments.append(_Segment(path, converter, row_groups))

    def _rewrite(self) -> None:
        """Every segment, widened to the final kind, into the stream as one file."""
        final = Converter(self._final_kind())
        # In this thread: a second thread here (with its own malloc arena and a row group in flight)
        # cost about 60 MB more peak RSS for a 10% faster close.
        self._final = self._row_groups(self._stream, final.schema, background=False)
        for segment in self._segments:
            kind = segment.converter.kind
            with pq.ParquetFile(str(segment.path), buffer_size=_COPY_CHUNK) as parquet:
                for batch in parquet.iter_batches(batch_size=_READ_ROWS, use_threads=False):
                    self._final.add(conform_batch(batch, kind, final.kind, final.schema))
        self._final.finish()
        self._final = None

    def _final_kind(self) -> Struct:
        """The last segment's kind, except int columns widened to double where an earlier segment holds an
        int a double cannot hold exactly: those become TEXT (a pre-pass over just those columns)."""
        final = self._segments[-1].converter.kind
        for segment in self._segments[:-1]:
            paths = list(paths_between(segment.converter.kind, final, INT, FLOAT))
            if not paths:
                continue
            inexact: set[KeyPath] = set()
            with pq.ParquetFile(str(segment.path), buffer_size=_COPY_CHUNK) as parquet:
                columns = sorted({str(path[0]) for path in paths})
                for batch in parquet.iter_batches(batch_size=_READ_ROWS, columns=columns, use_threads=False):
                    for path in paths:
                        if path not in inexact and not exact_as_double(batch.column(str(path[0])), path[1:]):
                            inexact.add(path)
            for path in inexact:
                self.columns_widened.append(f"{path_name(path)}: float -> text")
            final = _replaced(final, sorted(inexact, key=path_name), TEXT)
        return final

    def _row_groups(self, where: Any, schema: Any, *, background: bool = True) -> _RowGroups:
        if self._pool is None and background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")
        return _RowGroups(
            where,
            schema,
            rows=self._row_group_rows,
            compression=self._compression,
            pool=self._pool if background else None,
        )

    def _abandon(self) -> None:
        if self._final is not None:
            self._final.discard()
            self._final = None
        self.abort()

    def _cleanup(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for segment in self._segments:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
        self._segments.clear()


__all__ = ["ParquetWriter", "schema_of"]
