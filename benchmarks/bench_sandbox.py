"""How fast the sandbox serves, and what a million orders cost it.

    .venv/bin/python benchmarks/bench_sandbox.py [--orders 100000] [--seconds 8] [--concurrency 32]

1. Serves ``--orders`` orders from a child process pinned to CPU 0 and fetches ``limit=100`` pages at random
   offsets for ``--seconds`` from this process, pinned to CPU 1, with a concurrent aiohttp client that reads
   every body (without parsing it, so that the client stays ahead of the server). It reports pages/s and the
   server's CPU use over the run: pages/s divided by that is what one core of server gives.
2. Starts a sandbox of ``--big`` orders (default 1,000,000) in a child process and reports its generation time
   and its RSS once serving, then the first pages of a sorted walk (the first one builds the sorted view),
   and the RSS after it and at its peak.

Prints a markdown snippet.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = "/ordering/b2b/v3/requests"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int) -> bool:
    """Pin ``pid`` (0: this process) to one CPU, if the platform and the machine allow it."""
    if not hasattr(os, "sched_setaffinity") or cpu >= (os.cpu_count() or 1):
        return False
    os.sched_setaffinity(pid, {cpu})
    return True


def start_server(orders: int, cpu: int | None) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    """A sandbox child process; returns it, its base URL and the banner's fields (once it serves)."""
    code = (
        "import sys; from exporter.sandbox import SandboxConfig, run_sandbox; "
        "run_sandbox(SandboxConfig(orders=int(sys.argv[1]), max_page_size=1000))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(orders)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if cpu is not None:
        pin(process.pid, cpu)
    fields: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        match = re.match(r"\s+([\w ]+):\s+(\S+)", line)
        if match:
            fields[match.group(1).strip()] = match.group(2)
        if line.startswith("Ctrl-C"):
            return process, fields["base URL"], fields
    raise RuntimeError(f"the sandbox did not start (exit code {process.wait()})")


def stop_server(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int, field: str) -> float:
    """A memory figure of ``pid`` from /proc (VmRSS: resident now, VmHWM: the peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def server_stats(stats_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(stats_url, timeout=10) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


async def token(session: aiohttp.ClientSession, fields: dict[str, str]) -> str:
    auth = aiohttp.BasicAuth(fields["client id"], fields["client secret"])
    async with session.post(fields["token URL"], auth=auth, data={"grant_type": "client_credentials"}) as r:
        r.raise_for_status()
        return str((await r.json())["access_token"])


async def hammer(
    base_url: str, fields: dict[str, str], orders: int, seconds: float, concurrency: int
) -> tuple[int, int, float]:
    """Fetch random ``limit=100`` pages with ``concurrency`` workers for ``seconds``.

    Returns (pages, bytes, elapsed seconds)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"X-Api-Key": fields["API key"], "Authorization": f"Bearer {await token(session, fields)}"}
        url = base_url + REQUESTS
        deadline = time.perf_counter() + seconds
        rng = random.Random(1)
        pages = 0
        received = 0

        async def worker() -> None:
            nonlocal pages, received
            while time.perf_counter() < deadline:
                params = {"offset": str(rng.randrange(0, max(1, orders - 100))), "limit": "100"}
                async with session.get(url, params=params, headers=headers) as response:
                    body = await response.read()
                    if response.status != 200 or not body.startswith(b"["):
                        raise RuntimeError(f"unexpected answer {response.status}")
                pages += 1
                received += len(body)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return pages, received, time.perf_counter() - started


async def sorted_walk(base_url: str, fields: dict[str, str], pages: int) -> list[float]:
    """Fetch the first ``pages`` pages sorted by -createdAt; the seconds each took."""
    seconds = []
    async with aiohttp.ClientSession() as session:
        headers = {"X-Api-Key": fields["API key"], "Authorization": f"Bearer {await token(session, fields)}"}
        for page in range(pages):
            params = {"offset": str(page * 100), "limit": "100", "sort": "-createdAt"}
            started = time.perf_counter()
            async with session.get(base_url + REQUESTS, params=params, headers=headers) as response:
                await response.read()
                response.raise_for_status()
            seconds.append(time.perf_counter() - started)
    return seconds


def throughput(orders: int, seconds: float, concurrency: int) -> dict[str, float]:
    pinned = pin(0, 1)
    process, base_url, fields = start_server(orders, cpu=0 if pinned else None)
    try:
        asyncio.run(hammer(base_url, fields, orders, 1.0, concurrency))  # warm up connections and caches
        cpu_before = cpu_seconds(process.pid)
        pages, received, elapsed = asyncio.run(hammer(base_url, fields, orders, seconds, concurrency))
        server_cpu = (cpu_seconds(process.pid) - cpu_before) / elapsed
    finally:
        stop_server(process)
    return {
        "pinned": float(pinned),
        "pages": pages,
        "elapsed": elapsed,
        "pages_per_s": pages / elapsed,
        "mib_per_s": received / elapsed / 2**20,
        "server_cpu": server_cpu,
        "pages_per_server_cpu_s": pages / elapsed / max(server_cpu, 1e-9),
    }


def footprint(orders: int) -> dict[str, float]:
    started = time.perf_counter()
    process, base_url, fields = start_server(orders, cpu=None)
    try:
        ready = time.perf_counter() - started
        generation = server_stats(fields["stats"])["orders"]["generation_seconds"]
        rss_serving = memory_mib(process.pid, "VmRSS")
        walk = asyncio.run(sorted_walk(base_url, fields, 10))
        rss_sorted = memory_mib(process.pid, "VmRSS")
        peak = memory_mib(process.pid, "VmHWM")
    finally:
        stop_server(process)
    return {
        "generation": generation,
        "ready": ready,
        "rss_serving": rss_serving,
        "first_sorted_page": walk[0],
        "next_sorted_page": sum(walk[1:]) / max(1, len(walk) - 1),
        "rss_sorted": rss_sorted,
        "peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--big", type=int, default=1_000_000, help="orders for the memory measure (0: skip)")
    args = parser.parse_args()

    run = throughput(args.orders, args.seconds, args.concurrency)
    big = footprint(args.big) if args.big else None

    print(report(args, run, big))


def report(args: argparse.Namespace, run: dict[str, float], big: dict[str, float] | None) -> str:
    """The measures as a markdown snippet for benchmarks/RESULTS.md."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    command = (
        f"`.venv/bin/python benchmarks/bench_sandbox.py --orders {args.orders} --seconds {args.seconds:g} "
        f"--concurrency {args.concurrency} --big {args.big}`"
    )
    placement = "server on CPU 0, client on CPU 1" if run["pinned"] else "not pinned"
    rows = [
        (
            f"pages of 100 orders ({args.orders:,} orders, {placement}, {args.concurrency} connections)",
            f"{run['pages_per_s']:,.0f} pages/s ({run['pages']:,.0f} in {run['elapsed']:.1f} s, "
            f"{run['mib_per_s']:,.0f} MiB/s)",
        ),
        (
            "server CPU during the run",
            f"{run['server_cpu']:.0%} of one core"
            + (" (below 90%: the client, not the server, set the pace)" if run["server_cpu"] < 0.9 else ""),
        ),
        ("pages/s per fully used server core", f"{run['pages_per_server_cpu_s']:,.0f}"),
    ]
    if big is not None:
        rows += [
            (
                f"generation of {args.big:,} orders",
                f"{big['generation']:.1f} s (serving after {big['ready']:.1f} s)",
            ),
            (f"RSS serving {args.big:,} orders", f"{big['rss_serving']:,.0f} MiB"),
            (
                "first page sorted by `-createdAt` (builds the sorted view), then each next page",
                f"{big['first_sorted_page']:.1f} s, then {big['next_sorted_page'] * 1000:.1f} ms",
            ),
            (
                "RSS after that sorted walk / peak RSS of the run",
                f"{big['rss_sorted']:,.0f} MiB / {big['peak']:,.0f} MiB",
            ),
        ]
    lines = [
        f"### Sandbox ({dt.date.today().isoformat()}, {python}, {os.cpu_count()} CPUs)",
        "",
        command,
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {measure} | {value} |" for measure, value in rows),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
