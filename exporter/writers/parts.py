"""The Parquet part files of a dataset: orders routed to their partition folders, rolled into parts.

Every part shares one kind (schema) with the whole dataset: it is inferred once, from the first
``sample_rows`` orders, and widened as the Parquet writer widens it (``parquet.widen_and_convert``);
when it widens, the open parts are finished with the old kind and the dataset's close rewrites them
(``exact_kind`` and ``conform_batch``, as the single-file writer does with its segments).

Part boundaries are a function of the orders alone, never of time, so a resumed export writes the same
parts, byte for byte, as one that was never stopped: after a page, once the open parts hold
``part_rows`` orders in all (or ``max_open`` folders have an open part), *every* open part is finished.
That is also the only point where nothing is held outside a finished part, so it is where the dataset
commits (``at_commit_point``). A part therefore holds from ``part_rows`` up to a page more orders when
the dataset is not partitioned, and less when several folders share the ``part_rows``.

Memory: at most ``batch_rows`` orders wait per folder before conversion, ``sample_rows`` in all; when
the open parts together buffer more than ``row_group_rows`` rows of Arrow data (or more than
``row_group_bytes``, 32 MiB, of it: wide orders), the largest buffer is written as a (shorter) row group.
Both depend on the orders and the pages alone, so a resumed dataset still writes the same bytes.

Finished parts wait in ``ready`` (a local file and its ``Part``) for the caller to publish.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from exporter.errors import ExportError
from exporter.partitions import Partitioner
from exporter.writers.arrowconv import CONVERSION_ERRORS, Converter
from exporter.writers.inorder import cores
from exporter.writers.kinds import Struct, changes, infer
from exporter.writers.parquet import (
    ROW_GROUP_BYTES,
    RowGroups,
    fieldless_error,
    lean_memory_pool,
    widen_and_convert,
)

Folder = tuple[str, ...]
_HASH_CHUNK = 1 << 20


@dataclass
class Part:
    """A finished part file: where it goes in the dataset and what it holds."""

    name: str  # relative path in the dataset, '/'-separated
    folder: Folder  # its partition values (unescaped), one per key
    rows: int
    size: int
    sha256: str
    kind: Struct


class _Open:
    def __init__(self, folder: Folder, number: int, path: Path, kind: Struct, row_groups: RowGroups) -> None:
        self.folder = folder
        self.number = number
        self.path = path
        self.kind = kind
        self.row_groups = row_groups


class PartsWriter:
    """Writes orders into part files under ``scratch_dir``; see the module docstring."""

    def __init__(
        self,
        scratch_dir: Path,
        partitioner: Partitioner,
        *,
        part_rows: int,
        shard: int = 0,
        kind: Struct | None = None,
        next_number: int = 1,
        orders: int = 0,
        max_open: int = 64,
        row_group_rows: int = 100_000,
        row_group_bytes: int = ROW_GROUP_BYTES,
        batch_rows: int = 500,
        sample_rows: int = 5_000,
        compression: str = "zstd",
    ) -> None:
        lean_memory_pool()
        self.ready: list[tuple[Path, Part]] = []
        self.orders = orders
        self.next_number = next_number
        self.columns_added: list[str] = []
        self.columns_widened: list[str] = []
        self._scratch_dir = scratch_dir
        self._partitioner = partitioner
        self._part_rows = max(1, part_rows)
        self._shard = shard
        self._max_open = max(1, max_open)
        self._row_group_rows = max(1, row_group_rows)
        self._row_group_bytes = max(1, row_group_bytes)
        self._batch_rows = max(1, batch_rows)
        self._sample_rows = max(1, sample_rows)
        self._compression = compression
        self._converter = Converter(kind) if kind is not None else None
        self._pending: defaultdict[Folder, list[dict[str, Any]]] = defaultdict(list)
        self._pending_rows = 0
        self._fieldless: defaultdict[Folder, int] = defaultdict(int)
        self._open: dict[Folder, _Open] = {}
        self._started = orders > 0  # rows went into a part: a wider kind then adds or widens columns
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="parquet-parts") if cores() > 1 else None

    @property
    def kind(self) -> Struct | None:
        return self._converter.kind if self._converter is not None else None

    @property
    def at_commit_point(self) -> bool:
        """Nothing is held outside a finished part."""
        return not self._open and not self._pending_rows and not self._fieldless

    def write(self, records: list[dict[str, Any]]) -> None:
        """One page of orders; parts that fill up are finished and put in ``ready``."""
        pending = self._pending
        for folder, orders in self._partitioner.split(records).items():
            pending[folder].extend(orders)
        self._pending_rows += len(records)
        self.orders += len(records)
        try:
            if self._pending_rows >= self._sample_rows:  # many folders: convert them all
                for folder in list(pending):
                    self._convert(folder)
            elif self._converter is not None:
                for folder in [f for f, rows in pending.items() if len(rows) >= self._batch_rows]:
                    self._convert(folder)
            held = self._pending_rows + sum(part.row_groups.total for part in self._open.values())
            if held >= self._part_rows or len(self._open.keys() | pending.keys()) >= self._max_open:
                self._finish_all()
        except OSError as exc:
            raise ExportError(
                f"cannot write Parquet parts in {self._scratch_dir}: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        """Finish every open part (into ``ready``)."""
        try:
            self._finish_all()
        except OSError as exc:
            raise ExportError(
                f"cannot write Parquet parts in {self._scratch_dir}: {exc.strerror or exc}"
            ) from exc
        if self._fieldless:
            raise fieldless_error(sum(self._fieldless.values()))
        self._shutdown()

    def abort(self) -> None:
        """Stop: drop the open parts and the ready ones not yet published."""
        for part in self._open.values():
            part.row_groups.discard()
            part.path.unlink(missing_ok=True)
        self._open.clear()
        for path, _ in self.ready:
            path.unlink(missing_ok=True)
        self.ready.clear()
        self._pending.clear()
        self._pending_rows = 0
        self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- converting -------------------------------------------------------------------------------

    def _convert(self, folder: Folder) -> None:
        records = self._pending.pop(folder)
        self._pending_rows -= len(records)
        if self._converter is None:
            sample = [order for rows in (records, *self._pending.values()) for order in rows]
            self._converter = Converter(infer(sample))
        converter = self._converter
        batch = None
        if converter.fits(records):
            try:
                batch = converter.convert(records)
            except CONVERSION_ERRORS:
                batch = None
        if batch is None:
            wider, batch = widen_and_convert(converter, records)
            if wider is not converter:
                self._widened(wider)
        if not batch.num_columns:
            self._fieldless[folder] += batch.num_rows
            return
        self._add(folder, batch)

    def _widened(self, wider: Converter) -> None:
        """The dataset's kind widened: open parts finish with the old one (the dataset's close rewrites
        them)."""
        assert self._converter is not None
        old = self._converter.kind
        if self._started:
            added, widened = changes(old, wider.kind)
            self.columns_added.extend(added)
            self.columns_widened.extend(widened)
        for folder in list(self._open):
            self._finish(folder)
        self._converter = wider

    def _add(self, folder: Folder, batch: Any) -> None:
        part = self._open.get(folder)
        if part is None:
            part = self._open_part(folder)
        fieldless = self._fieldless.pop(folder, 0)
        if fieldless:
            nulls = [pa.nulls(fieldless, type=field.type) for field in batch.schema]
            part.row_groups.add(pa.RecordBatch.from_arrays(nulls, schema=batch.schema))
        part.row_groups.add(batch)
        self._started = True
        groups = [open_part.row_groups for open_part in self._open.values()]
        if sum(group.buffered for group in groups) > self._row_group_rows:
            max(groups, key=lambda group: group.buffered).flush()
        elif sum(group.buffered_bytes for group in groups) > self._row_group_bytes:  # wide orders
            max(groups, key=lambda group: group.buffered_bytes).flush()

    # -- parts ------------------------------------------------------------------------------------

    def _open_part(self, folder: Folder) -> _Open:
        assert self._converter is not None
        number = self.next_number
        self.next_number += 1
        path = self._scratch_dir / f"part-{self._shard:04d}-{number:05d}.parquet.partial"
        row_groups = RowGroups(
            str(path),
            self._converter.schema,
            rows=self._row_group_rows,
            compression=self._compression,
            pool=self._pool,
        )
        part = _Open(folder, number, path, self._converter.kind, row_groups)
        self._open[folder] = part
        return part

    def _finish_all(self) -> None:
        for folder in list(self._pending):
            self._convert(folder)
        if self._fieldless and self._converter is not None and self._converter.kind.fields:
            schema = self._converter.schema
            for folder, count in list(self._fieldless.items()):
                del self._fieldless[folder]
                self._add(
                    folder,
                    pa.RecordBatch.from_arrays([pa.nulls(count, f.type) for f in schema], schema=schema),
                )
        for folder in list(self._open):
            self._finish(folder)

    def _finish(self, folder: Folder) -> None:
        part = self._open.pop(folder)
        part.row_groups.finish()
        if not part.row_groups.total:
            part.path.unlink(missing_ok=True)
            return
        name = f"{self._partitioner.path(folder)}part-{self._shard:04d}-{part.number:05d}.parquet"
        size, digest = file_digest(part.path)
        self.ready.append((part.path, Part(name, folder, part.row_groups.total, size, digest, part.kind)))


def file_digest(path: Path) -> tuple[int, str]:
    """The size and SHA-256 (hex) of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
