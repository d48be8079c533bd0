"""A dataset output: ``-o DIR/`` or ``-o s3://bucket/prefix/``, Parquet part files and a manifest.

Layout (``storage`` hides whether the root is a local folder or an object-store prefix)::

    <root>/[key=value/...]part-SSSS-NNNNN.parquet     parts of shard SSSS (0 unsharded), numbered
    <root>/_orders-export/checkpoint-K-of-N.json       what --resume of shard K needs (while it runs)
    <root>/_orders-export/shard-K-of-N.json            what shard K wrote, once it is complete
    <root>/_manifest.json                              written last: the dataset is complete

Strategy: ``PartsWriter`` rolls parts at points that depend on the orders only; each finished part is
published at once (a rename, or an upload under a temporary key copied into place) and, at such a point,
the checkpoint is saved in the dataset itself, so a resumed run (on this machine or another) continues
from the parts the checkpoint lists and deletes any other part of its shard. A commit only happens there:
an interrupted run gives up what its open parts held rather than closing them early, so a resumed
dataset equals an uninterrupted one, part for part.

At the end a shard writes its record (parts, rows, kinds, edges, totals); whichever shard finds every
record present merges them: one schema for all parts (parts of a narrower kind are rewritten, as the
single-file writer rewrites segments), the shards' joins checked (``plan.join_shards``), then
``_manifest.json``. Two shards finishing together write the same manifest. Parts hold a shard number so
shards never write the same name. A dataset that already has a manifest is never written into again.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio
import orjson
import pyarrow.parquet as pq

from exporter.checkpoint import Checkpoint, WalkState, orders_kept, parse_checkpoint
from exporter.config import ExportConfig
from exporter.errors import AlreadyComplete, ExportError, IncompleteExport, UsageError
from exporter.partitions import Partitioner, parse_specs
from exporter.plan import Shard, ShardEdges, Verdict, join_shards
from exporter.report import Counters
from exporter.responses import Decode, decode_page
from exporter.storage import Store
from exporter.writers.arrowconv import Converter, conform_batch
from exporter.writers.kinds import Struct, kind_from_json, kind_to_json, unify
from exporter.writers.parquet import RowGroups, exact_kind
from exporter.writers.parts import Part, PartsWriter, file_digest

MANIFEST = "_manifest.json"
STATE_DIR = "_orders-export"
MANIFEST_VERSION = 1
_READ_ROWS = 10_000
_log = logging.getLogger(__name__)


def parameters(config: ExportConfig) -> dict[str, Any]:
    """What makes two exports write the same dataset, without the shard and without any credential."""
    return {
        **config.query_key(),
        "part_rows": config.part_rows,
        "partition_by": list(config.partition_by),
        "shards": config.shard.count if config.shard else 1,
    }


def _rows_if_same(manifest: bytes, params: dict[str, Any]) -> int | None:
    """The rows of a manifest written with ``params``; None for another export's (or an unreadable one)."""
    try:
        found = orjson.loads(manifest)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(found, dict) or found.get("parameters") != params or not found.get("complete"):
        return None
    rows = found.get("rows")
    return rows if isinstance(rows, int) else None


class DatasetOutput:
    """One run's (one shard's) share of a dataset; the same methods as the single-file output."""

    format = "parquet"
    decode: Decode = staticmethod(decode_page)  # Parquet parts are written from dicts

    def __init__(self, config: ExportConfig, store: Store) -> None:
        self.store = store
        self.name = store.uri
        self.shard = config.shard or Shard(0, 1)
        self.parameters = parameters(config)
        self.fingerprint = {**self.parameters, "output": store.uri, "shard": self.shard.index}
        tag = f"{self.shard.index}-of-{self.shard.count}"
        self._checkpoint_name = f"{STATE_DIR}/checkpoint-{tag}.json"
        self._record_name = f"{STATE_DIR}/shard-{tag}.json"
        self._own = re.compile(rf"(?:.*/)?part-{self.shard.index:04d}-[0-9]+\.parquet")
        self.parts: list[Part] = []
        self.resumed: Checkpoint | None = None
        self.manifest_written = False
        self.latest: Any = None
        self._unsaved = False
        self._finished = False
        self.kept_orders: int | None = None  # the orders in the parts the last checkpoint lists
        existing = store.get_bytes(MANIFEST)
        if existing is not None:
            rows = _rows_if_same(existing, self.parameters)
            if config.resume and rows is not None:
                raise AlreadyComplete(
                    f"{store.uri} is already complete ({rows:,} rows, {MANIFEST}): nothing to resume",
                    store.uri,
                )
            raise UsageError(
                f"{store.uri} already holds a complete dataset ({MANIFEST}); remove it or choose another -o"
            )
        state: dict[str, Any] = {}
        data = store.get_bytes(self._checkpoint_name) if config.resume else None
        if data is not None:
            self.resumed = parse_checkpoint(data, self.fingerprint, store.uri_of(self._checkpoint_name))
            state = self.resumed.writer
            self.parts = _parts_of(state, store.uri_of(self._checkpoint_name))
        elif config.resume:
            # Nothing committed yet (or this shard never ran): start it, so that one command serves both
            # the first run and every restart of a scheduled job.
            _log.info("--resume: no checkpoint for shard %s in %s; starting it", self.shard, store.uri)
        self._sweep()
        if self.resumed is None:
            store.delete(self._checkpoint_name)
            store.delete(self._record_name)
        self._scratch = _scratch_dir(store, tag)
        try:
            kind = _struct(state["kind"]) if state.get("kind") is not None else None
            next_number, orders = int(state.get("next", 1)), int(state.get("orders", 0))
            columns_added = [str(name) for name in state.get("columns_added", [])]
        except (TypeError, ValueError, RecursionError) as exc:
            raise UsageError(
                f"--resume: the checkpoint in {store.uri} cannot be read ({exc}); run without --resume"
            ) from exc
        self.writer = PartsWriter(
            self._scratch,
            Partitioner(parse_specs(config.partition_by)),
            part_rows=config.part_rows,
            shard=self.shard.index,
            kind=kind,
            next_number=next_number,
            orders=orders,
        )
        self.writer.columns_added = columns_added

    @property
    def columns_added(self) -> list[str]:
        return self.writer.columns_added

    # -- the run ----------------------------------------------------------------------------------

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        self.writer.write(records)
        if self.writer.ready:
            await anyio.to_thread.run_sync(self._publish)

    async def on_page(self, state: Any) -> None:
        """After each page: at a commit point with new parts, save the checkpoint (in a worker thread)."""
        self.latest = state
        if self._unsaved and self.writer.at_commit_point:
            await anyio.to_thread.run_sync(self._put_checkpoint, self._checkpoint())

    def commit(self, *, force: bool) -> bool:
        """Save the checkpoint if the writer is at a commit point; open parts are never closed early."""
        if self.latest is None or not self.writer.at_commit_point:
            return False
        if self._unsaved:
            self._put_checkpoint(self._checkpoint())
        return True

    def finish(self, verdict: Verdict, counters: Counters) -> None:
        """The shard is complete: finish its parts, record it, and merge the dataset if every shard is."""
        self.writer.close()
        self._publish()
        record = {
            "version": MANIFEST_VERSION,
            "parameters": self.parameters,
            "shard": [self.shard.index, self.shard.count],
            "verdict": {"complete": verdict.complete, "reason": verdict.reason},
            "edges": _edges_json(verdict),
            "orders": counters.orders_in_output,
            "totals": {"first": counters.total_first, "last": counters.total_last},
            "writer": self._state(),
        }
        self.store.put_bytes(self._record_name, orjson.dumps(record))
        self.store.delete(self._checkpoint_name)
        self._cleanup()
        # From here this shard's parts are the dataset's: a merge that fails keeps them (every shard
        # must run again anyway, and each fresh run replaces its own).
        self._finished = True
        self.manifest_written = merge(self.store, self.parameters, self.shard.count)

    def discard(self) -> None:
        """Give up: this shard's parts, checkpoint and scratch files go."""
        if self._finished:
            return
        self.writer.abort()
        self.parts = []
        self._sweep()
        self.store.delete(self._checkpoint_name)
        self._cleanup()

    def suspend(self) -> bool:
        """Stop, keeping what the last checkpoint lists (parts published after it are deleted)."""
        if self._finished:
            return True
        with contextlib.suppress(ExportError, OSError):
            self.commit(force=False)
        self.writer.abort()
        data = self.store.get_bytes(self._checkpoint_name)
        if data is None:
            self.discard()
            return False
        with contextlib.suppress(ExportError, UsageError):
            where = self.store.uri_of(self._checkpoint_name)
            committed = parse_checkpoint(data, self.fingerprint, where)
            self.parts = _parts_of(committed.writer, where)
            self.kept_orders = orders_kept(committed.walk.counters)
            self._sweep()
        self._cleanup()
        return True

    def report_fields(self) -> dict[str, Any]:
        """What the run report says of the dataset."""
        return {
            "dataset": {
                "shard": str(self.shard) if self.shard.count > 1 else None,
                "parts_written": len(self.parts),
                "manifest": self.store.uri_of(MANIFEST) if self.manifest_written else None,
            }
        }

    # -- parts and checkpoints --------------------------------------------------------------------

    def _publish(self) -> None:
        ready, self.writer.ready = self.writer.ready, []
        for path, part in ready:
            self.store.put_file(path, part.name)
            path.unlink(missing_ok=True)
            self.parts.append(part)
            self._unsaved = True

    def _checkpoint(self) -> bytes:
        walk: WalkState = self.latest()
        return Checkpoint(self.fingerprint, walk, self._state()).to_bytes()

    def _put_checkpoint(self, data: bytes) -> None:
        self.store.put_bytes(self._checkpoint_name, data)
        self._unsaved = False

    def _state(self) -> dict[str, Any]:
        kind = self.writer.kind
        return {
            "format": "dataset",
            "orders": self.writer.orders,
            "next": self.writer.next_number,
            "kind": kind_to_json(kind) if kind is not None else None,
            "parts": [_part_json(part) for part in self.parts],
            "columns_added": list(self.writer.columns_added),
        }

    def _sweep(self) -> None:
        """Delete this shard's parts that ``self.parts`` does not list (a killed run's, or all of them)."""
        keep = {part.name for part in self.parts}
        listed = self.store.list()
        for part in self.parts:
            if listed.get(part.name) != part.size:
                raise UsageError(
                    f"--resume: the part {self.store.uri_of(part.name)} the checkpoint lists is missing or "
                    "changed; run without --resume to start over"
                )
        for name in listed:
            if self._own.fullmatch(name) and name not in keep:
                self.store.delete(name)

    def _cleanup(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def _scratch_dir(store: Store, tag: str) -> Path:
    """Where parts are written before they are published: in a local dataset, a hidden folder of its own
    (a rename publishes them; a killed run's leftovers go when the same shard runs again); else a
    temporary folder."""
    if store.local_root is None:
        return Path(tempfile.mkdtemp(prefix="orders-export-"))
    scratch = store.local_root / f".orders-export-{tag}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return scratch


def _edges_json(verdict: Verdict) -> dict[str, Any] | None:
    edges = getattr(verdict, "edges", None)
    return edges.to_json() if edges is not None else None


def _part_json(part: Part) -> dict[str, Any]:
    return {
        "path": part.name,
        "partition": list(part.folder),
        "rows": part.rows,
        "bytes": part.size,
        "sha256": part.sha256,
        "kind": kind_to_json(part.kind),
    }


def _parts_of(state: Any, where: str) -> list[Part]:
    """The parts a checkpoint or a shard record lists; ``IncompleteExport`` naming ``where`` if malformed."""
    try:
        parts = [
            Part(
                str(entry["path"]),
                tuple(entry["partition"]),
                int(entry["rows"]),
                int(entry["bytes"]),
                str(entry["sha256"]),
                _struct(entry["kind"]),
            )
            for entry in state["parts"]
        ]
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise IncompleteExport(
            f"{where} does not list its parts properly ({exc}); run that shard again without --resume",
            resumable=False,
        ) from exc
    return parts


def _struct(data: Any) -> Struct:
    kind = kind_from_json(data)
    if not isinstance(kind, Struct):
        raise TypeError("not an object kind")
    return kind


# -- the merge ------------------------------------------------------------------------------------


def merge(store: Store, params: dict[str, Any], count: int) -> bool:
    """Write the manifest if every shard's record is there; False when some shard is still running.
    ``IncompleteExport`` when the shards are all there but do not add up."""
    records = []
    for index in range(count):
        name = f"{STATE_DIR}/shard-{index}-of-{count}.json"
        data = store.get_bytes(name)
        if data is None:
            return False
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise IncompleteExport(
                f"the record {store.uri_of(name)} cannot be read ({exc}); run shard {index}/{count} again",
                resumable=False,
            ) from exc
        if not isinstance(record, dict) or record.get("parameters") != params:
            raise IncompleteExport(
                f"shard {index} of {count} in {store.uri} was exported with other parameters; "
                "run every shard with the same options",
                resumable=False,
            )
        records.append(record)
    verdict = _joined(records)
    if not verdict.complete:
        raise IncompleteExport(f"the dataset is not complete: {verdict.reason}", resumable=False)
    parts = [
        part
        for index, record in enumerate(records)
        for part in _parts_of(
            record.get("writer"), store.uri_of(f"{STATE_DIR}/shard-{index}-of-{count}.json")
        )
    ]
    final = _one_schema(store, parts)
    manifest = {
        "format": "orders-export dataset",
        "version": MANIFEST_VERSION,
        "complete": True,
        "reason": verdict.reason,
        "rows": sum(part.rows for part in parts),
        "files": [
            {"path": part.name, "rows": part.rows, "bytes": part.size, "sha256": part.sha256}
            | ({"partition": dict(zip(_key_names(params), part.folder, strict=True))} if part.folder else {})
            for part in parts
        ],
        "schema": _schema_json(final),
        "partitioning": _partitioning(params),
        "shards": [
            {"shard": record["shard"][0], "orders": record["orders"], "totals": record["totals"]}
            for record in records
        ],
        "totals": {
            "first": records[0]["totals"]["first"],
            "last": max(record["totals"]["last"] or 0 for record in records),
        },
        "parameters": params,
    }
    store.put_bytes(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return True


def _partitioning(params: dict[str, Any]) -> dict[str, Any] | None:
    keys = parse_specs(params["partition_by"])
    if not keys:
        return None
    return {
        "flavor": "hive",
        "keys": [
            {
                "name": key.name,
                "source": ".".join(key.source),
                "transform": key.transform,
                "in_files": not key.strips,
            }
            for key in keys
        ],
    }


def _key_names(params: dict[str, Any]) -> list[str]:
    return [key.name for key in parse_specs(params["partition_by"])]


def _joined(records: list[dict[str, Any]]) -> Verdict:
    try:
        if len(records) == 1:
            verdict = records[0]["verdict"]
            return Verdict(bool(verdict["complete"]), str(verdict["reason"]))
        return join_shards([ShardEdges.from_json(record["edges"]) for record in records])
    except (KeyError, TypeError, ValueError) as exc:
        raise IncompleteExport(
            f"a shard's record does not say how it ended ({exc}); run the shards again", resumable=False
        ) from exc


def _one_schema(store: Store, parts: list[Part]) -> Struct | None:
    """Give every part the dataset's final kind (rewriting those of a narrower one); that kind."""
    if not parts:
        return None
    final: Struct = parts[0].kind
    for part in parts[1:]:
        wider = unify(final, part.kind)
        assert isinstance(wider, Struct)
        final = wider
    final, _ = exact_kind([(part.kind, _column_reader(store, part)) for part in parts], final)
    converter = Converter(final)
    # Two shards may merge at once: each in a folder of its own.
    scratch = Path(tempfile.mkdtemp(prefix=".orders-export-merge-", dir=store.local_root))
    try:
        for index, part in enumerate(parts):
            if part.kind != final:
                parts[index] = _rewrite(store, part, converter, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def _column_reader(store: Store, part: Part) -> Any:
    def read(columns: list[str]) -> Any:
        yield from _batches(store, part, columns)

    return read


def _batches(store: Store, part: Part, columns: list[str] | None = None) -> Any:
    data = store.get_bytes(part.name)
    if data is None:
        raise ExportError(f"the part {store.uri_of(part.name)} is missing; export the dataset again")
    with pq.ParquetFile(io.BytesIO(data)) as parquet:
        yield from parquet.iter_batches(batch_size=_READ_ROWS, columns=columns, use_threads=False)


def _rewrite(store: Store, part: Part, converter: Converter, scratch: Path) -> Part:
    path = scratch / Path(part.name).name
    row_groups = RowGroups(str(path), converter.schema, rows=100_000, compression="zstd", pool=None)
    for batch in _batches(store, part):
        row_groups.add(conform_batch(batch, part.kind, converter.kind, converter.schema))
    row_groups.finish()
    size, digest = file_digest(path)
    store.put_file(path, part.name)
    path.unlink(missing_ok=True)
    return Part(part.name, part.folder, part.rows, size, digest, converter.kind)


def _schema_json(kind: Struct | None) -> list[dict[str, str]]:
    if kind is None:
        return []
    return [{"name": field.name, "type": str(field.type)} for field in Converter(kind).schema]


__all__ = ["MANIFEST", "DatasetOutput", "merge"]
