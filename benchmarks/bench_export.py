"""Export 200,000 orders from a sandbox in another process, in each format, beside the naive client;
then a rate-bound run (sandbox at 50 requests/s, --rate 50). Writes its section of RESULTS.md.

Usage: python benchmarks/bench_export.py [--orders N] [--runs K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import credentials_env, machine, measure, sandbox_process, write_section

PAGE_SIZE = 100


def export_cmd(out: Path, report: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "-o",
        str(out),
        "--report",
        str(report),
        "--page-size",
        str(PAGE_SIZE),
        "--no-progress",
        "-q",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate-pages", type=int, default=500)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process("--orders", str(args.orders)) as sb:
        env = credentials_env(sb)
        work = Path(tmp)
        naive = [
            measure(
                [
                    sys.executable,
                    str(Path(__file__).parent / "naive.py"),
                    sb.base_url,
                    str(work / "naive.jsonl"),
                    str(PAGE_SIZE),
                ],
                env,
            )
            for _ in range(args.runs)
        ]
        assert all(m.returncode == 0 for m in naive), naive[0].stderr
        naive_rate = args.orders / statistics.median(m.wall for m in naive)
        rows.append(("naive sequential (JSONL)", naive_rate, max(m.peak_rss_mb for m in naive), 1.0, None))
        for fmt in ("jsonl", "csv", "parquet"):
            runs = []
            for _ in range(args.runs):
                m = measure(export_cmd(work / f"out.{fmt}", work / "report.json"), env)
                assert m.returncode == 0, m.stderr
                report = orjson.loads((work / "report.json").read_bytes())
                assert report["orders_written"] == args.orders and report["complete"]
                runs.append(m)
            rate = args.orders / statistics.median(m.wall for m in runs)
            target = 2.0 if fmt == "jsonl" else 1.5
            rows.append(
                (f"orders-export {fmt}", rate, max(m.peak_rss_mb for m in runs), rate / naive_rate, target)
            )

    orders = args.rate_pages * PAGE_SIZE
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process("--orders", str(orders), "--rate-limit", "50", "--burst", "5") as sb,
    ):
        work = Path(tmp)
        m = measure(
            export_cmd(work / "rate.jsonl", work / "report.json", "--rate", "50"), credentials_env(sb)
        )
        assert m.returncode == 0, m.stderr
        report = orjson.loads((work / "report.json").read_bytes())
        ideal = args.rate_pages / 50

    lines = [
        f"## Export throughput (issue 3), {date.today().isoformat()}",
        "",
        f"Machine: {machine()}.",
        "Sandbox in its own process on core 0, client on core 1, loopback, no latency.",
        f"{args.orders:,} orders, pages of {PAGE_SIZE}, concurrency 16, median of {args.runs} runs;",
        "wall time of the whole command (interpreter start-up included).",
        "Reproduce: `.venv/bin/python benchmarks/bench_export.py`.",
        "",
        "| client | orders/s | peak RSS (MB) | x naive | target |",
        "|---|---:|---:|---:|---|",
    ]
    for name, rate, rss, ratio, target in rows:
        goal = (
            ""
            if target is None
            else f">= {target}x naive, < 200 MB: {'met' if ratio >= target and rss < 200 else 'MISSED'}"
        )
        lines.append(f"| {name} | {rate:,.0f} | {rss:.0f} | {ratio:.2f} | {goal} |")
    over = m.wall / ideal - 1
    lines += [
        "",
        f"Rate-bound: sandbox limited to 50 requests/s (burst 5), `--rate 50`, {args.rate_pages} pages: "
        f"{m.wall:.2f} s wall against {ideal:.1f} s ideal ({over:+.1%}), {report['requests']} requests, "
        f"{report['rate_limited']} rate-limited answers (target: 0 and at most +5%: "
        f"{'met' if report['rate_limited'] == 0 and over <= 0.05 else 'MISSED'}).",
    ]
    write_section("export", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
