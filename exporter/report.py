"""Counters kept during an export, the progress line, the summary line and the JSON run report."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from exporter.plan import ShardEdges


@dataclass
class Counters:
    """Mutable tallies shared by the fetchers and the writer (one event loop: no locks needed)."""

    started: float = field(default_factory=time.monotonic)
    total_first: int | None = None
    total_last: int | None = None
    orders_planned: int | None = None  # what this run should write if the total holds (a shard: its slice)
    page_size: int | None = None
    pages_planned: int = 0
    pages_done: int = 0
    orders_written: int = 0
    duplicates_dropped: int = 0
    orders_without_id: int = 0
    links_broken: int = 0
    bridge_requests: int = 0
    orders_bridged: int = 0
    tail_pages: int = 0
    drift_seen: bool = False
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    token_refused: int = 0
    details_missing: int = 0
    surrogates_mended: int = 0  # lone surrogate escapes in the list answers read, written as U+FFFD
    shard: ShardEdges | None = None  # a shard's edges (--shard), as in the verdict of its run

    @property
    def orders_in_output(self) -> int:
        """What the output holds: with --details, the orders gone before their detail (404) are handed on
        by the walk (and counted in ``orders_written``, whose count the verdict checks) but not written."""
        return self.orders_written - self.details_missing

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        elapsed = self.elapsed()
        return self.orders_written / elapsed if elapsed > 0 else 0.0


def build_report(
    counters: Counters,
    *,
    output: str,
    fmt: str,
    complete: bool,
    reason: str,
    error: str | None = None,
    columns_added: list[str] | None = None,
    resumed: bool = False,
) -> dict[str, Any]:
    """The run report: what ``--report`` writes and ``export()`` returns."""
    wall = counters.elapsed()
    written = counters.orders_in_output
    tallies = asdict(counters)
    tallies.pop("started")
    tallies.pop("shard")
    report: dict[str, Any] = {
        "complete": complete,
        "reason": reason,
        "error": error,
        "output": output,
        "format": fmt,
        "orders_written": written,
        "duplicates_dropped": counters.duplicates_dropped,
        "total_first": counters.total_first,
        "total_last": counters.total_last,
        "page_size": counters.page_size,
        "pages": counters.pages_done,
        "requests": counters.requests,
        "retries": counters.retries,
        "rate_limited": counters.rate_limited,
        "tokens_refused": counters.token_refused,
        "drift": {
            "detected": counters.drift_seen,
            "pages_not_linked": counters.links_broken,
            "bridge_requests": counters.bridge_requests,
            "orders_bridged": counters.orders_bridged,
            "tail_pages": counters.tail_pages,
        },
        "orders_without_id": counters.orders_without_id,
        "details_missing": counters.details_missing,
        "surrogates_mended": counters.surrogates_mended,
        "columns_added": columns_added or [],
        "resumed": resumed,
        "wall_seconds": round(wall, 3),
        "orders_per_second": round(written / wall, 1) if wall > 0 else 0.0,
        "counters": tallies,
    }
    if counters.shard is not None:
        # What the shards' manifest joins: this shard's slice, the ids at its ends, its totals.
        report["shard"] = counters.shard.to_json()
    return report


def summary_line(report: dict[str, Any]) -> str:
    """One line for the end of a run."""
    state = "complete" if report["complete"] else "INCOMPLETE"
    line = (
        f"{report['orders_written']:,} orders → {report['output']} ({report['format']}), {state}, "
        f"in {report['wall_seconds']:.1f} s ({report['orders_per_second']:,.0f} orders/s); "
        f"{report['requests']:,} requests, {report['retries']} retries, "
        f"{report['rate_limited']} rate-limited, "
        f"{report['duplicates_dropped']} duplicates dropped"
    )
    if report.get("details_missing"):
        line += f", {report['details_missing']} gone before their detail (404)"
    dataset = report.get("dataset")
    if dataset and report["complete"]:
        shard = f"shard {dataset['shard']}: " if dataset["shard"] else ""
        line += f"; {shard}{dataset['parts_written']} parts"
        if dataset["manifest"] is None:
            line += "; the manifest waits for the other shards"
    return line


def progress_line(counters: Counters) -> str:
    """Orders done of total, orders/s, ETA, retries and rate-limited answers."""
    done = counters.orders_written
    total = counters.orders_planned if counters.orders_planned is not None else counters.total_first
    rate = counters.rate()
    eta = _clock_time((total - done) / rate) if total and rate > 0 and total > done else "--:--"
    of_total = f"/{total:,}" if total is not None else ""
    return (
        f"{done:,}{of_total} orders  {rate:,.0f}/s  ETA {eta}  "
        f"retries {counters.retries}  rate-limited {counters.rate_limited}"
    )


class ProgressPrinter:
    """Rewrites one line on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0

    def show(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def _clock_time(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
