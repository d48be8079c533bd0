"""The writers: one per output format, behind one small protocol, picked from a registry.

A writer gets orders page by page (already in their final order and deduplicated), writes them to a binary
stream it does not own, and completes the output at ``close()``; ``abort()`` drops its scratch files and
calls nothing on the stream. ``columns_added`` names the fields first seen after the output started.

Threads: call ``write()`` from the event loop. It holds the GIL for nearly all its work (JSONL ~0.7 µs an
order, CSV ~2.5 µs, Parquet ~2.3 µs; Parquet already encodes and compresses row groups on a thread of its
own, where pyarrow releases the GIL), so a worker thread would only add hand-offs. Run ``close()`` in a
worker thread (``anyio.to_thread.run_sync``) if the loop must stay responsive: it copies or rewrites the
file (Parquet always copies its scratch segment; a rewrite takes ~1 s per million orders).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from exporter.errors import UsageError
from exporter.writers.cells import flatten_record
from exporter.writers.csv import CsvWriter
from exporter.writers.jsonl import JsonlWriter

__all__ = ["FORMATS", "Writer", "flatten_record", "format_for_path", "open_writer"]

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")

_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class Writer(Protocol):
    """Writes orders in one format to a stream owned by the caller."""

    columns_added: list[str]

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write one page (or several) of orders."""

    def close(self) -> None:
        """Complete the output (flush, footers, any rewrite); the stream stays open."""

    def abort(self) -> None:
        """Give up: remove scratch files, and call nothing on the stream."""


def format_for_path(path: str) -> str | None:
    """The format a file name asks for by its suffix (case-insensitive), or None."""
    return _SUFFIXES.get(Path(path).suffix.lower())


def _jsonl(stream: BinaryIO, scratch_dir: Path | None) -> Writer:
    return JsonlWriter(stream)


def _csv(stream: BinaryIO, scratch_dir: Path | None) -> Writer:
    return CsvWriter(stream, scratch_dir=scratch_dir)


def _parquet(stream: BinaryIO, scratch_dir: Path | None) -> Writer:
    from exporter.writers.parquet import ParquetWriter  # pyarrow loads only when Parquet is asked for

    return ParquetWriter(stream, scratch_dir=scratch_dir)


_REGISTRY: dict[str, Callable[[BinaryIO, Path | None], Writer]] = {
    "jsonl": _jsonl,
    "csv": _csv,
    "parquet": _parquet,
}


def open_writer(fmt: str, stream: BinaryIO, *, scratch_dir: Path | None) -> Writer:
    """A writer of ``fmt`` into ``stream``; ``scratch_dir`` (None for stdout) may hold temporary files."""
    factory = _REGISTRY.get(fmt)
    if factory is None:
        raise UsageError(f"unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return factory(stream, scratch_dir)
