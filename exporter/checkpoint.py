"""What ``--resume`` needs: a small JSON file beside the partial output, replaced atomically at each commit.

A checkpoint says which export made it (the fingerprint: everything that changes what the output holds),
where the walk stood (the next planned offset, the ids of the last page taken, the counters; for a shard,
which one and its anchor), and what the writer needs to continue its file (bytes committed, columns,
segments). It holds no secret: credentials are not part of the fingerprint, and ids are the only data it
keeps.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from exporter.errors import UsageError
from exporter.report import Counters

VERSION = 1


@dataclass
class WalkState:
    """Where the pipeline stood at a commit: enough to go on as if it had never stopped."""

    total_first: int
    page_size: int
    next_offset: int | None  # the next planned page not yet taken; None once past the plan (tail)
    previous: list[Any]  # ids of the last page taken, for the link check of the next one
    last_offset: int
    ended: bool
    proven: bool
    drift_seen: bool
    counters: dict[str, Any] = field(default_factory=dict)
    shard: str | None = None  # "K/N" when the walk covers one shard's slice of the plan (--shard)
    head: Any = None  # a shard's anchor: the id of its slice's first order, which the shard before writes
    passed_over: list[Any] = field(default_factory=list)  # ids met behind the walk, not written yet


def orders_kept(counters: dict[str, Any]) -> int:
    """The orders in the output at a commit: ``Counters.orders_in_output`` of its saved counters."""
    known = {counter.name for counter in fields(Counters)}
    return Counters(**{name: value for name, value in counters.items() if name in known}).orders_in_output


@dataclass
class Checkpoint:
    """One commit of one export."""

    fingerprint: dict[str, Any]
    walk: WalkState
    writer: dict[str, Any]
    version: int = VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        raw = orjson.loads(data)
        if raw.get("version") != VERSION:
            raise ValueError(f"checkpoint version {raw.get('version')!r}, expected {VERSION}")
        return cls(fingerprint=raw["fingerprint"], walk=WalkState(**raw["walk"]), writer=raw["writer"])


def checkpoint_path(output: str) -> Path:
    """The checkpoint beside ``output``."""
    path = Path(output)
    return path.parent / f".{path.name}.checkpoint.json"


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint durably and atomically: the old one or the new one, never half of either."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as fh:
        fh.write(checkpoint.to_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)


def load(path: Path, fingerprint: dict[str, Any]) -> Checkpoint:
    """The checkpoint at ``path``, refused unless it was made by an export with this ``fingerprint``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"--resume: no checkpoint at {path}: nothing to resume; run without --resume to start"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"--resume: the checkpoint {path} cannot be read ({exc}); run without --resume"
        ) from exc
    return parse_checkpoint(data, fingerprint, str(path))


def parse_checkpoint(data: bytes, fingerprint: dict[str, Any], where: str) -> Checkpoint:
    """The checkpoint in ``data`` (read from ``where``, for the messages), refused unless it was made by an
    export with this ``fingerprint``."""
    try:
        checkpoint = Checkpoint.from_bytes(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"--resume: the checkpoint {where} cannot be read ({exc}); run without --resume"
        ) from exc
    differ = sorted(
        k
        for k in fingerprint.keys() | checkpoint.fingerprint.keys()
        if fingerprint.get(k) != checkpoint.fingerprint.get(k)
    )
    if differ:
        raise UsageError(
            f"--resume: the checkpoint was made by a different export ({', '.join(differ)} differ); "
            "run the same command as before, or run without --resume to start over"
        )
    return checkpoint


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
