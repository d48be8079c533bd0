"""The writers: one per output format, behind one small protocol, picked from a registry.

A writer gets orders page by page (already in their final order and deduplicated), writes them to a binary
stream it does not own, and completes the output at ``close()``; ``abort()`` drops its scratch files and
calls nothing on the stream. ``columns_added`` names the fields first seen after the output started.

Resume: ``commit()`` makes every order written so far durable (the caller fsyncs the stream after it) and
returns a small JSON state; after a crash, ``resume_writer`` with that state reopens the same partial
stream, cuts off what came after the commit, and goes on so that the finished output is the one an
uninterrupted run would have written. ``suspend()`` stops and keeps what the last commit listed.
``state`` has the checks a state passes before it is trusted again.

Threads: call ``write()`` from the event loop. It holds the GIL for nearly all its work (JSONL ~0.7 µs an
order, CSV ~2.5 µs, Parquet ~2.3 µs), so a worker thread would only add hand-offs. JSONL and Parquet also
take orders as their JSON lines (``write_lines``); Parquet then parses them with pyarrow's JSON reader and
encodes row groups on threads of its own, where pyarrow releases the GIL. Run ``close()`` in a
worker thread (``anyio.to_thread.run_sync``) if the loop must stay responsive: it copies or rewrites the
file (Parquet always copies its scratch segments; a rewrite takes ~1 s per million orders).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from exporter.errors import UsageError
from exporter.writers.cells import flatten_record
from exporter.writers.csv import CsvWriter
from exporter.writers.jsonl import JsonlWriter
from exporter.writers.state import refuse

__all__ = [
    "FORMATS",
    "LineWriter",
    "Writer",
    "flatten_record",
    "format_for_path",
    "open_writer",
    "resume_writer",
]

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class Writer(Protocol):
    """Writes orders in one format to a stream owned by the caller."""

    columns_added: list[str]

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write one page (or several) of orders."""

    def commit(self, *, force: bool = False) -> dict[str, Any] | None:
        """Make every order written so far durable (the caller then fsyncs the stream) and return the JSON
        state ``resume_writer`` continues from; None when not at a commit point and ``force`` is False."""

    def close(self) -> None:
        """Complete the output (flush, footers, any rewrite); the stream stays open."""

    def abort(self) -> None:
        """Give up: remove scratch files, and call nothing on the stream."""

    def suspend(self) -> None:
        """Stop, keeping the scratch files the last commit listed; nothing more goes to the stream."""


@runtime_checkable
class LineWriter(Protocol):
    """What a writer that also takes orders as their JSON lines has (JSONL and Parquet): it saves a Python
    object per order. ``isinstance(writer, LineWriter)`` tells."""

    def write_lines(self, lines: list[bytes]) -> None:
        """Write orders given as their one-line JSON texts (``responses.decode_lines``)."""


def format_for_path(path: str) -> str | None:
    """The format a file name asks for by its suffix (case-insensitive), or None."""
    return _SUFFIXES.get(Path(path).suffix.lower())


# A factory opens a writer, or continues one when given the state of a commit.
_Factory = Callable[[BinaryIO, Path | None, int, dict[str, Any] | None], Writer]


def _jsonl(
    stream: BinaryIO, scratch_dir: Path | None, commit_rows: int, state: dict[str, Any] | None
) -> Writer:
    return JsonlWriter(stream) if state is None else JsonlWriter.resume(stream, state)


def _csv(
    stream: BinaryIO, scratch_dir: Path | None, commit_rows: int, state: dict[str, Any] | None
) -> Writer:
    if state is None:
        return CsvWriter(stream, scratch_dir=scratch_dir)
    return CsvWriter.resume(stream, scratch_dir=scratch_dir, state=state)


def _parquet(
    stream: BinaryIO, scratch_dir: Path | None, commit_rows: int, state: dict[str, Any] | None
) -> Writer:
    from exporter.writers.parquet import ParquetWriter  # pyarrow loads only when Parquet is asked for

    if state is None:
        return ParquetWriter(stream, scratch_dir=scratch_dir, commit_rows=commit_rows)
    return ParquetWriter.resume(stream, scratch_dir=scratch_dir, state=state, commit_rows=commit_rows)


_REGISTRY: dict[str, _Factory] = {
    "jsonl": _jsonl,
    "csv": _csv,
    "parquet": _parquet,
}


def _factory(fmt: str) -> _Factory:
    factory = _REGISTRY.get(fmt)
    if factory is None:
        raise UsageError(f"unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return factory


def open_writer(
    fmt: str, stream: BinaryIO, *, scratch_dir: Path | None, commit_rows: int = 500_000
) -> Writer:
    """A writer of ``fmt`` into ``stream``; ``scratch_dir`` (None for stdout) may hold temporary files;
    ``commit_rows``: the orders per Parquet segment a non-forced commit waits for (JSONL/CSV ignore it)."""
    return _factory(fmt)(stream, scratch_dir, commit_rows, None)


def resume_writer(
    fmt: str,
    stream: BinaryIO,
    *,
    scratch_dir: Path | None,
    state: dict[str, Any],
    commit_rows: int = 500_000,
) -> Writer:
    """The writer of ``fmt`` continued from ``state`` (what its ``commit()`` returned) into the same partial
    ``stream``; raises ``UsageError`` when the state is of another format or its files disagree with it."""
    factory = _factory(fmt)
    if not isinstance(state, dict) or state.get("format") != fmt:
        found = state.get("format") if isinstance(state, dict) else None
        raise refuse(fmt, f"the checkpoint holds a state of {found!r} output")
    return factory(stream, scratch_dir, commit_rows, state)
