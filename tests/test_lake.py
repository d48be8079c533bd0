"""Datasets on object storage (moto's S3 server on 127.0.0.1), killed and resumed, and written by three
shard processes at once: the real command line, real HTTP on both sides."""

from __future__ import annotations

import collections
import datetime as dt
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.dataset as pads
import pytest
from fsspec.implementations.arrow import ArrowFSWrapper

from exporter.sandbox import SandboxConfig, SandboxThread
from tests.readback import same_value
from tests.s3server import S3Server

ORDERS = 12_000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    # Latency makes an export last a few seconds: long enough to be killed after a commit.
    with SandboxThread(SandboxConfig(orders=ORDERS, latency=0.03, seed=5)) as sb:
        yield sb


def command(sb: Any, s3: S3Server, out: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "-o",
        out,
        "--s3-endpoint",
        s3.endpoint,
        "--page-size",
        "100",
        "--concurrency",
        "4",
        "--part-rows",
        "1500",
        "--partition-by",
        "createdAt:month",
        "--no-progress",
        "--base-url",
        sb.base_url,
        "--client-id",
        sb.client_id,
        *extra,
    ]


def env(sb: Any, **extra: str) -> dict[str, str]:
    return {**os.environ, "ORANGE_CLIENT_SECRET": sb.client_secret, "ORANGE_API_KEY": sb.api_key, **extra}


def run(sb: Any, s3: S3Server, out: str, *extra: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(sb, s3, out, *extra), env=env(sb, **environ), capture_output=True, text=True, check=False
    )


def manifest(s3: S3Server, bucket: str, prefix: str) -> dict[str, Any]:
    return orjson.loads(s3.read(bucket, f"{prefix}/_manifest.json"))  # type: ignore[no-any-return]


def month(order: dict[str, Any]) -> str:
    moment = dt.datetime.fromisoformat(order["createdAt"].replace("Z", "+00:00")).astimezone(dt.UTC)
    return moment.strftime("%Y-%m")


class _S3(ArrowFSWrapper):  # type: ignore[misc]
    """pyarrow's S3 client as an fsspec filesystem for DuckDB, whose own S3 support (the httpfs
    extension) would be downloaded at run time."""

    protocol = "s3"


def test_a_month_partitioned_dataset_on_s3_reads_back_exactly(sandbox: Any, s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    result = run(sandbox, s3_server, f"s3://{bucket}/lake/orders/")
    assert result.returncode == 0, result.stderr
    assert "parts" in result.stderr  # the summary line
    expected = {order["id"]: order for order in sandbox.expected_records()}
    counts = collections.Counter(month(order) for order in expected.values())

    found = manifest(s3_server, bucket, "lake/orders")
    assert found["complete"] is True
    assert found["rows"] == ORDERS
    parts = {key for key in s3_server.objects(bucket) if key.endswith(".parquet")}
    assert parts == {f"lake/orders/{entry['path']}" for entry in found["files"]}
    assert not [key for key in s3_server.paths(bucket) if "/." in key or key.endswith(".tmp")]
    by_partition: collections.Counter[str] = collections.Counter()
    for entry in found["files"]:
        by_partition[entry["partition"]["createdAt_month"]] += entry["rows"]
    assert by_partition == counts

    dataset = pads.dataset(
        f"{bucket}/lake/orders", filesystem=s3_server.fs, format="parquet", partitioning="hive"
    )
    rows = dataset.to_table().to_pylist()
    assert sorted(row["id"] for row in rows) == sorted(expected)
    for row in rows:
        original = expected[row["id"]]
        assert row["createdAt_month"] == month(original)
        assert all(same_value(row[name], value) for name, value in original.items()), row["id"]

    con = duckdb.connect()
    con.register_filesystem(_S3(s3_server.fs))
    duck = con.sql(
        f"select createdAt_month, count(*), count(distinct id) from read_parquet("
        f"'s3://{bucket}/lake/orders/**/*.parquet', hive_partitioning=true) group by all"
    ).fetchall()
    assert {name: (n, distinct) for name, n, distinct in duck} == {m: (n, n) for m, n in counts.items()}


def test_a_killed_dataset_export_resumes_to_the_same_dataset(
    sandbox: Any, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    reference = run(sandbox, s3_server, f"s3://{bucket}/ref/")
    assert reference.returncode == 0, reference.stderr

    out = f"s3://{bucket}/killed/"
    # Two requests in flight: the export lasts a couple of seconds, the kill comes well before its end.
    slow = command(sandbox, s3_server, out, "--concurrency", "2")
    proc = subprocess.Popen(slow, env=env(sandbox), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while "killed/_orders-export/checkpoint-0-of-1.json" not in s3_server.objects(bucket):
        assert proc.poll() is None, f"ended before a commit: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, "no checkpoint after 30 s"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))
    assert proc.poll() is None, "the export ended before it could be killed: make it longer"
    proc.kill()
    proc.communicate()
    assert "killed/_manifest.json" not in s3_server.objects(bucket), "a killed export is not complete"

    report = tmp_path / "resumed.json"
    resumed = run(sandbox, s3_server, out, "--resume", "--report", str(report))
    assert resumed.returncode == 0, resumed.stderr
    figures = orjson.loads(report.read_bytes())
    assert figures["resumed"] is True
    assert figures["orders_written"] == ORDERS
    assert figures["requests"] < ORDERS // 99, "the resumed run went on from the checkpoint"
    assert manifest(s3_server, bucket, "killed") == manifest(s3_server, bucket, "ref")
    for entry in manifest(s3_server, bucket, "ref")["files"]:
        assert s3_server.read(bucket, f"killed/{entry['path']}") == s3_server.read(
            bucket, f"ref/{entry['path']}"
        )
    leftovers = {
        key for key in s3_server.objects(bucket) if key.startswith("killed/") and key.endswith(".parquet")
    }
    assert len(leftovers) == len(manifest(s3_server, bucket, "ref")["files"])


def test_three_shard_processes_make_one_dataset(sandbox: Any, s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    single = run(sandbox, s3_server, f"s3://{bucket}/single/")
    assert single.returncode == 0, single.stderr

    out = f"s3://{bucket}/sharded/"
    procs = [
        subprocess.Popen(
            command(sandbox, s3_server, out, "--shard", "0/3"),
            env=env(sandbox),
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            command(sandbox, s3_server, out, "--shard", "1/3"),
            env=env(sandbox),
            stderr=subprocess.PIPE,
            text=True,
        ),
        # The third as a Kubernetes Indexed Job runs it.
        subprocess.Popen(
            command(sandbox, s3_server, out, "--shards", "3"),
            env=env(sandbox, JOB_COMPLETION_INDEX="2"),
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    sharded = manifest(s3_server, bucket, "sharded")
    whole = manifest(s3_server, bucket, "single")
    assert sharded["complete"] is True
    assert sharded["rows"] == whole["rows"] == ORDERS
    assert [shard["shard"] for shard in sharded["shards"]] == [0, 1, 2]
    assert sum(shard["orders"] for shard in sharded["shards"]) == ORDERS
    assert sharded["schema"] == whole["schema"]
    manifests = [key for key in s3_server.objects(bucket) if key.startswith("sharded/") and "manifest" in key]
    assert manifests == ["sharded/_manifest.json"]

    def ids(prefix: str) -> collections.Counter[str]:
        table = pads.dataset(
            f"{bucket}/{prefix}", filesystem=s3_server.fs, format="parquet", partitioning="hive"
        )
        return collections.Counter(table.to_table(columns=["id"]).column("id").to_pylist())

    assert ids("sharded") == ids("single")
    assert max(ids("sharded").values()) == 1

    def per_partition(found: dict[str, Any]) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for entry in found["files"]:
            counts[entry["partition"]["createdAt_month"]] += entry["rows"]
        return counts

    assert per_partition(sharded) == per_partition(whole)


def test_sigterm_on_a_local_dataset_keeps_the_committed_parts(
    sandbox: Any, s3_server: S3Server, tmp_path: Path
) -> None:
    reference = run(sandbox, s3_server, f"{tmp_path}/ref/")
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        command(sandbox, s3_server, f"{out}/"), env=env(sandbox), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not (out / "_orders-export" / "checkpoint-0-of-1.json").exists():
        assert proc.poll() is None, f"ended before a commit: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, "no checkpoint after 30 s"
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert len(err.strip().splitlines()) == 1
    listed = orjson.loads((out / "_orders-export" / "checkpoint-0-of-1.json").read_bytes())["writer"]["parts"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == sorted(
        entry["path"] for entry in listed
    ), "exactly the committed parts are kept"

    resumed = run(sandbox, s3_server, f"{out}/", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "_manifest.json").read_bytes() == (tmp_path / "ref" / "_manifest.json").read_bytes()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "no scratch folder is left"
