"""The writers alone: orders/s and peak RSS per format, on realistic orders passed page by page.

    .venv/bin/python benchmarks/bench_writers.py [--orders 1000000] [--formats jsonl,csv,parquet]
                                                 [--pages-per-call 1] [--late]

Each format runs in a child process of its own (so each peak RSS is its own). The orders are made once per
child as the client would see them (JSON pages parsed by orjson): id ``3-00000042``, references, codes,
``customer {id, name}``, a comment with commas, quotes, newlines and non-ASCII, ``createdAt``/``updatedAt``
ISO with ``Z``, a ``requestedAt`` date, a ``contract`` null or not, a quantity, an amount, and a nested
``properties`` object that is absent from about a third of them. A pool of ``--pool`` orders is cycled to
reach ``--orders`` (the writers neither dedupe nor care). ``--late`` adds a field (top level and nested)
to every order of the last tenth, which makes CSV and Parquet rewrite their file at close.

Reported: wall seconds of all ``write()`` calls and of ``close()``, orders/s over both, CPU seconds
(Parquet encodes on a second thread, so CPU can exceed wall), output size, the RSS the writer added on
top of the pool of orders (sampled every 5 ms: peak - RSS before the writer opened; importing pyarrow
is counted apart), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.writers import FORMATS, open_writer  # noqa: E402

PAGE = 100
COMMENTS = [
    "Livraison urgente, appeler avant 10h",
    'Le client a dit "au plus vite", deux fois',
    "Ligne 1\nLigne 2\r\nLigne 3",
    "Zürich – 東京 ✓ 😀",
    "",
    "RAS",
    "Accès badge; parking, quai 3",
    None,
]


def make_pages(count: int, seed: int = 42) -> list[list[dict[str, Any]]]:
    """``count`` orders in pages of ``PAGE``, parsed from JSON as the client parses them."""
    rnd = random.Random(seed)
    orders = []
    for i in range(count):
        order: dict[str, Any] = {
            "id": f"3-{i:08d}",
            "customerReference": f"PO-{rnd.randrange(10**7):07d}",
            "type": rnd.choice(["C_GENERIC_S1", "U_GENERIC_S1", "R_BVPN_S1A", "C_BVPN_S1A"]),
            "category": rnd.choice(["R_BVPN_S1A", "C_INTERNET_S2", "U_VOICE_S1"]),
            "step": rnd.choice(["REQUEST", "VALIDATION", "DELIVERY", "CLOSED"]),
            "priority": rnd.choice(["LOW", "MEDIUM", "HIGH"]),
            "customer": {
                "id": f"C{rnd.randrange(10**6):06d}",
                "name": rnd.choice(
                    ["Société Générale, SA", "ACME", "Müller & Söhne GmbH", "Orange Business"]
                ),
            },
            "comment": rnd.choice(COMMENTS),
            "createdAt": f"2024-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}T"
            f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}Z",
            "updatedAt": f"2025-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}T"
            f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(1000):03d}Z",
            "requestedAt": f"2025-{rnd.randrange(1, 13):02d}-{rnd.randrange(1, 29):02d}",
            "contract": None if rnd.random() < 0.4 else f"CTR-{rnd.randrange(10**5):05d}",
            "quantity": rnd.randrange(1, 50),
            "amount": round(rnd.random() * 10_000, 2),
        }
        if rnd.random() < 0.67:
            order["properties"] = {
                "site": {
                    "city": rnd.choice(["Paris", "Lyon", "Köln", "Rennes"]),
                    "zip": f"{rnd.randrange(10**5):05d}",
                },
                "bandwidth": rnd.choice([10, 100, 1000]),
                "redundant": rnd.random() < 0.5,
            }
        orders.append(order)
    pages = [orders[i : i + PAGE] for i in range(0, count, PAGE)]
    return [orjson.loads(orjson.dumps(page)) for page in pages]


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(
    fmt: str, orders: int, pool: int, pages_per_call: int, late: bool, out_dir: Path
) -> dict[str, Any]:
    baseline = rss_bytes()
    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401 - measured apart: the library, not the writer's data
    library = rss_bytes() - baseline
    baseline += library
    pages = make_pages(pool)
    late_pages: list[list[dict[str, Any]]] = []
    if late:
        late_pages = [
            [
                dict(o, lateField=i, properties={**o.get("properties", {}), "vlan": 42})
                for i, o in enumerate(page)
            ]
            for page in pages
        ]
    calls = []
    n = 0
    i = 0
    while n < orders:
        use_late = late and n >= orders * 0.9
        group = [(late_pages if use_late else pages)[(i + k) % len(pages)] for k in range(pages_per_call)]
        calls.append([r for page in group for r in page] if pages_per_call > 1 else group[0])
        n += sum(len(p) for p in group)
        i += pages_per_call
    before = rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would count the making of the pool too
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    path = out_dir / f"bench-{fmt}.{fmt}"
    cpu0 = time.process_time()
    with path.open("wb") as stream:
        writer = open_writer(fmt, stream, scratch_dir=out_dir)
        t0 = time.perf_counter()
        for records in calls:
            writer.write(records)
        t1 = time.perf_counter()
        writer.close()
        t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    done.set()
    sampler.join()
    result = {
        "format": fmt,
        "orders": n,
        "write_s": round(t1 - t0, 3),
        "close_s": round(t2 - t1, 3),
        "orders_per_s": round(n / (t2 - t0)),
        "cpu_s": round(cpu, 3),
        "bytes": path.stat().st_size,
        "rss_added_mb": round(max(0, peak[0] - before) / 2**20, 1),
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "pool_rss_mb": round((before - baseline) / 2**20, 1),
        "library_rss_mb": round(library / 2**20, 1),
        "columns_added": list(writer.columns_added),
    }
    if fmt == "jsonl":  # the floor: orjson.dumps alone, each line dropped at once
        t0 = time.perf_counter()
        for records in calls:
            for record in records:
                orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        result["dumps_only_orders_per_s"] = round(n / (time.perf_counter() - t0))
    path.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--pool", type=int, default=20_000, help="distinct orders, cycled")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--pages-per-call", type=int, default=1, help="pages of 100 per write() call")
    parser.add_argument("--late", action="store_true", help="a new field in the last tenth of the orders")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench-writers-"))
    if args.one:
        result = run_one(args.one, args.orders, args.pool, args.pages_per_call, args.late, out_dir)
        print(json.dumps(result))
        return
    per_call = f"{args.pages_per_call} page(s) per write()"
    print(f"{args.orders:,} orders, pages of {PAGE}, {per_call}, late={args.late}")
    for fmt in args.formats.split(","):
        cmd = [sys.executable, __file__, "--one", fmt, "--orders", str(args.orders), "--pool", str(args.pool)]
        cmd += ["--pages-per-call", str(args.pages_per_call), "--out-dir", str(out_dir)]
        if args.late:
            cmd.append("--late")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        extra = f"  (orjson.dumps alone: {r['dumps_only_orders_per_s']:,}/s)" if fmt == "jsonl" else ""
        print(
            f"{fmt:8} {r['orders_per_s']:>10,} orders/s  write {r['write_s']:6.2f}s"
            f"  close {r['close_s']:5.2f}s  cpu {r['cpu_s']:6.2f}s  {r['bytes'] / 2**20:7.1f} MiB"
            f"  writer RSS +{r['rss_added_mb']:5.1f} MiB  (process peak {r['peak_rss_mb']:.0f} MiB:"
            f" pool of orders {r['pool_rss_mb']:.0f}, pyarrow {r['library_rss_mb']:.0f}){extra}"
        )
        if r["columns_added"]:
            print(f"         columns added: {', '.join(r['columns_added'])}")
    if not args.out_dir:
        os.rmdir(out_dir)


if __name__ == "__main__":
    main()
