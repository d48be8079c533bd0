"""Crash and resume: SIGKILL at a random point, then --resume, equals an uninterrupted export; SIGTERM stops
fast, keeps what is committed and says how to go on; a --resume of another export is refused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from exporter.sandbox import SandboxConfig, SandboxThread
from tests.conftest import FORMATS, SUFFIX
from tests.readback import read_jsonl

ORDERS = 12_000
PAGE = 100
CONCURRENCY = 2


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    # Latency makes the export last a few seconds, long enough to commit and be killed.
    with SandboxThread(SandboxConfig(orders=ORDERS, latency=0.05, seed=21)) as sb:
        yield sb


def command(sb: Any, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "-o",
        str(out),
        "--page-size",
        str(PAGE),
        "--concurrency",
        str(CONCURRENCY),
        "--commit-rows",
        "2000",
        "--no-progress",
        "-q",
        "--base-url",
        sb.base_url,
        "--client-id",
        sb.client_id,
        *extra,
    ]


def env(sb: Any) -> dict[str, str]:
    return {**os.environ, "ORANGE_CLIENT_SECRET": sb.client_secret, "ORANGE_API_KEY": sb.api_key}


def export_run(sb: Any, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The export command run to its end."""
    return subprocess.run(command(sb, out, *extra), env=env(sb), capture_output=True, text=True, check=False)


def checkpoint_of(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoint.json"


def start_and_wait_for_a_commit(sb: Any, out: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(command(sb, out, *extra), env=env(sb), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not checkpoint_of(out).exists():
        assert proc.poll() is None, (
            f"the export ended before its first commit: {proc.stderr.read() if proc.stderr else ''}"
        )
        assert time.monotonic() < deadline, "no checkpoint after 30 s"
        time.sleep(0.02)
    return proc


def same_output(a: Path, b: Path, fmt: str) -> bool:
    if fmt == "parquet":
        left, right = pq.read_table(a), pq.read_table(b)
        return bool(left.schema.equals(right.schema) and left.equals(right))
    return a.read_bytes() == b.read_bytes()


@pytest.fixture(scope="module")
def reference(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted export per format."""
    folder = tmp_path_factory.mktemp("reference")
    outputs = {}
    for fmt in FORMATS:
        out = folder / f"orders{SUFFIX[fmt]}"
        result = export_run(sandbox, out)
        assert result.returncode == 0, result.stderr
        outputs[fmt] = out
    return outputs


@pytest.mark.parametrize("fmt", FORMATS)
def test_sigkill_then_resume_equals_an_uninterrupted_export(
    sandbox: Any, reference: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    """kill -9 at a random point after a commit; --resume finishes it; the file equals the reference and
    the resumed run fetched no more than the uncommitted pages and the reorder window."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    proc = start_and_wait_for_a_commit(sandbox, out)
    time.sleep(random.uniform(0.0, 1.5))
    proc.kill()
    proc.communicate()
    assert not out.exists(), "nothing under the final name after a crash"
    committed = orjson.loads(checkpoint_of(out).read_bytes())["walk"]
    remaining = ORDERS - (committed["next_offset"] if committed["next_offset"] is not None else ORDERS)
    before = sandbox.stats()["data_requests"]
    resumed = export_run(sandbox, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    fetched = sandbox.stats()["data_requests"] - before
    window = 4 * CONCURRENCY
    assert fetched <= remaining // (PAGE - 1) + 1 + window + 3, (fetched, remaining)
    assert same_output(out, reference[fmt], fmt)
    if fmt == "jsonl":
        assert read_jsonl(out) == sandbox.expected_records(), "every order as served, once, in order"
    assert not checkpoint_of(out).exists()
    assert not list(tmp_path.glob(".*partial*")), "no partial file left behind"


def test_sigterm_stops_within_two_seconds_and_says_how_to_resume(
    sandbox: Any, reference: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM: exit 130 within 2 s, one line naming --resume; the resumed export equals the reference."""
    out = tmp_path / "orders.csv"
    proc = start_and_wait_for_a_commit(sandbox, out)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert proc.returncode == 130
    assert "--resume" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    kept = int(stderr.split(" orders are kept")[0].rsplit(" ", 1)[-1].replace(",", ""))
    committed = orjson.loads(checkpoint_of(out).read_bytes())["walk"]["counters"]["orders_written"]
    assert kept == committed, "the line counts what the last commit holds"
    resumed = export_run(sandbox, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert same_output(out, reference["csv"], "csv")


def test_resume_of_another_export_is_refused(sandbox: Any, tmp_path: Path) -> None:
    """A --resume whose filters or format differ from the interrupted run: exit 2, one clear line."""
    out = tmp_path / "orders.jsonl"
    proc = start_and_wait_for_a_commit(sandbox, out)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    other = export_run(sandbox, out, "--resume", "--filter", "type=C_GENERIC_S1")
    assert other.returncode == 2
    assert "different export" in other.stderr
    assert "filters" in other.stderr
    again = export_run(sandbox, out, "--resume", "-f", "csv")
    assert again.returncode == 2
    assert "format" in again.stderr
    fresh = export_run(sandbox, out)
    assert fresh.returncode == 0, fresh.stderr
    assert not checkpoint_of(out).exists(), "a fresh start drops the old checkpoint"
    assert len(out.read_bytes().splitlines()) == ORDERS


def test_resume_with_nothing_to_resume_is_refused(sandbox: Any, tmp_path: Path) -> None:
    """--resume with no checkpoint: exit 2 saying so."""
    result = export_run(sandbox, tmp_path / "o.jsonl", "--resume")
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[Any]:
    with SandboxThread(SandboxConfig(orders=1_500, latency=0.02, seed=8)) as sb:
        yield sb


def test_sigkill_with_details_resumes_to_every_detail_once(small_sandbox: Any, tmp_path: Path) -> None:
    """--details fetches the next pages' details while a page's are still out: a checkpoint must still
    never claim a page whose details were not written. kill -9, --resume: each detail exactly once."""
    out = tmp_path / "details.jsonl"
    options = ("--details", "--page-size", "20", "--concurrency", "8")
    proc = start_and_wait_for_a_commit(small_sandbox, out, *options)
    time.sleep(random.uniform(0.0, 1.0))
    proc.kill()
    proc.communicate()
    resumed = export_run(small_sandbox, out, *options, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [record["id"] for record in written] == small_sandbox.expected_ids()
    assert all("history" in record for record in written)  # detail-only fields
