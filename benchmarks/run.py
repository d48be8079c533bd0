"""Every export scenario against a sandbox in its own process; writes its sections of RESULTS.md.

    .venv/bin/python benchmarks/run.py [--runs 3]
        [--only naive200k,cpu,latency,rate,unknown,memory,wide,details]

Each scenario runs, in the same invocation, the exporter and the two references: the naive sequential
client (benchmarks/naive.py: aiohttp, one page at a time, JSONL) and the floor probe (benchmarks/floor.py:
same concurrency, fetch + orjson.loads, writes nothing). Times are taken inside each process, from its
first request to its last byte written (interpreter start-up is not throughput); peak RSS is the whole
process's, from wait4. Figures are medians of --runs runs; where clients are compared, they take turns run
by run (this VM's speed drifts within minutes). The sandbox is pinned to CPU 0 (unpinned, the scheduler
sometimes put it and a client on one core and the figures swung by 2x), and each single-threaded client
to CPU 1: free to run on CPU 0, a client was at times woken there beside the sandbox (latency-bound: 1.13x
the ideal instead of 1.08x; CPU-bound JSONL: 0.70x the floor probe instead of 0.75-0.79x). A Parquet
export is not single-threaded: its writer converts and encodes on threads of its own, so where CPU is what
is measured it may use both cores, as on any machine (its threads then share CPU 0 with the sandbox), and
it is also measured pinned to CPU 1 (its threads then run in line, as on a one-core machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import credentials_env, machine, measure, sandbox_process, write_section

HERE = Path(__file__).resolve().parent
FORMATS = ("jsonl", "csv", "parquet")
SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
ONE_CORE = {1}  # the sandbox runs on CPU 0
WHOLE_MACHINE = set(range(os.cpu_count() or 1))
THREADED = frozenset({"parquet"})  # formats whose writer has threads of its own: given both cores


@dataclass
class Run:
    orders: int
    seconds: float
    rss_mb: float
    requests: int = 0
    rate_limited: int = 0

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


def median_run(runs: list[Run]) -> Run:
    runs = sorted(runs, key=lambda r: r.seconds)
    middle = runs[len(runs) // 2]
    return Run(
        middle.orders, middle.seconds, max(r.rss_mb for r in runs), middle.requests, middle.rate_limited
    )


def settled(once: Callable[[], Run]) -> Run:
    """One run, then every dirty page of the machine written out, so that the next client (the exporter
    fsyncs its output at each commit) does not wait for the disk to write what the last one left in the
    page cache. Times are taken inside each process: the sync is counted to no one."""
    run = once()
    if hasattr(os, "sync"):
        os.sync()
    return run


def repeat(times: int, once: Callable[[], Run]) -> Run:
    return interleaved(times, {"": once})[""]


def interleaved(times: int, clients: dict[str, Callable[[], Run]]) -> dict[str, Run]:
    """Each client's median run, the clients taking turns: one run of each, then again. This VM's speed
    drifts by tens of percent within minutes, so clients measured one after the other (all the floor
    probe's runs, then all the exporter's) were compared across different speeds."""
    runs: dict[str, list[Run]] = {name: [] for name in clients}
    for _ in range(times):
        for name, once in clients.items():
            runs[name].append(settled(once))
    return {name: median_run(done) for name, done in runs.items()}


def cpus_for(fmt: str) -> set[int]:
    return WHOLE_MACHINE if fmt in THREADED else ONE_CORE


def exporter(base_env: dict[str, str], out: Path, *extra: str, cpus: set[int] = ONE_CORE) -> Run:
    report = out.with_suffix(".report.json")
    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "export",
        "-o",
        str(out),
        "--report",
        str(report),
        "-q",
        "--no-progress",
        *extra,
    ]
    m = measure(cmd, base_env, cpus=cpus)
    assert m.returncode == 0, m.stderr
    data = orjson.loads(report.read_bytes())
    assert data["complete"], data
    return Run(
        data["orders_written"], data["wall_seconds"], m.peak_rss_mb, data["requests"], data["rate_limited"]
    )


def probe(script: str, base_env: dict[str, str], *args: str, cpus: set[int] = ONE_CORE) -> Run:
    m = measure([sys.executable, str(HERE / script), *args], base_env, cpus=cpus)
    assert m.returncode == 0, m.stderr
    data = orjson.loads(m.stdout)
    return Run(data["orders"], data["seconds"], m.peak_rss_mb)


def cpu_bound(runs: int, orders: int, title: str, naive_targets: dict[str, float] | None) -> str:
    page, conc = 100, 16
    lines = []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process("--orders", str(orders)) as sb:
        env, work = credentials_env(sb), Path(tmp)
        clients: dict[str, Callable[[], Run]] = {
            "floor": lambda: probe("floor.py", env, sb.base_url, str(page), str(conc)),
            "naive": lambda: probe("naive.py", env, sb.base_url, str(work / "naive.jsonl"), str(page)),
        }
        options = ("--page-size", str(page), "--concurrency", str(conc))
        for fmt in FORMATS:
            clients[fmt] = lambda fmt=fmt: exporter(
                env, work / f"out{SUFFIX[fmt]}", *options, cpus=cpus_for(fmt)
            )
        for fmt in sorted(THREADED):
            clients[f"{fmt}, one core"] = lambda fmt=fmt: exporter(env, work / f"one{SUFFIX[fmt]}", *options)
        results = interleaved(runs, clients)
        floor, naive = results.pop("floor"), results.pop("naive")
    lines += [
        f"### {title}",
        "",
        f"{orders:,} orders, pages of {page}, concurrency {conc}, no latency; median of {runs} runs. The "
        "sandbox on CPU 0, each client on CPU 1, but Parquet (its writer has threads) on both where said.",
        "",
        "| client | orders/s | requests/s | seconds | peak RSS (MB) | x floor | x naive | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        f"| floor probe (fetch + orjson.loads) | {floor.rate:,.0f} | {orders / page / floor.seconds:,.0f} | "
        f"{floor.seconds:.2f} | {floor.rss_mb:.0f} | 1.00 | {floor.rate / naive.rate:.2f} | |",
        f"| naive sequential (JSONL) | {naive.rate:,.0f} | {orders / page / naive.seconds:,.0f} | "
        f"{naive.seconds:.2f} | {naive.rss_mb:.0f} | {naive.rate / floor.rate:.2f} | 1.00 | |",
    ]
    for fmt, run in results.items():
        x_floor, x_naive = run.rate / floor.rate, run.rate / naive.rate
        goals = []
        if fmt.endswith(", one core"):
            goals.append("for comparison: the client pinned to CPU 1")
        elif naive_targets is not None:
            goal = naive_targets[fmt]
            goals.append(f">= {goal}x naive: {'met' if x_naive >= goal else 'missed'}")
            goals.append(f"< 200 MB: {'met' if run.rss_mb < 200 else 'missed'}")
        else:
            goal = 0.75 if fmt == "jsonl" else 0.6
            goals.append(f">= {goal}x floor: {'met' if x_floor >= goal else 'missed'}")
        label = f"{fmt}, both cores" if fmt in THREADED else fmt
        lines.append(
            f"| orders-export {label} | {run.rate:,.0f} | {run.requests / run.seconds:,.0f} | "
            f"{run.seconds:.2f} | {run.rss_mb:.0f} | {x_floor:.2f} | {x_naive:.2f} | {'; '.join(goals)} |"
        )
    return "\n".join(lines)


def latency_bound(runs: int) -> str:
    pages, page, conc, latency = 1000, 100, 32, 0.05
    ideal = pages * latency / conc
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process("--orders", str(pages * page), "--latency", str(latency)) as sb,
    ):
        env, work = credentials_env(sb), Path(tmp)
        measured = interleaved(
            runs,
            {
                "floor": lambda: probe("floor.py", env, sb.base_url, str(page), str(conc)),
                "export": lambda: exporter(
                    env, work / "out.jsonl", "--page-size", str(page), "--concurrency", str(conc)
                ),
            },
        )
        floor, run = measured["floor"], measured["export"]
    ratio = run.seconds / ideal
    return "\n".join(
        [
            "### Latency-bound",
            "",
            f"{pages} pages of {page} with {latency * 1000:.0f} ms latency, concurrency {conc}: ideal "
            f"pages x latency / concurrency = {ideal:.2f} s; median of {runs} runs.",
            "",
            "| client | seconds | x ideal | requests | target |",
            "|---|---:|---:|---:|---|",
            f"| floor probe | {floor.seconds:.2f} | {floor.seconds / ideal:.2f} | {pages} | |",
            f"| orders-export jsonl | {run.seconds:.2f} | {ratio:.2f} | {run.requests} | <= 1.10x ideal: "
            f"{'met' if ratio <= 1.10 else 'missed'} |",
            "",
            f"The exporter's pages overlap by one order (see the README), so it needs {run.requests} "
            f"requests where the floor probe needs {pages}: the ratio counts that against it.",
        ]
    )


def rate_bound(runs: int, pages: int, known: bool, burst: int = 5) -> str:
    page, rate = 100, 50
    options = ["--orders", str(pages * page), "--rate-limit", str(rate), "--burst", str(burst)]
    if not known:
        options += ["--rate-limit-style", "429", "--retry-after", "seconds"]
    ideal = pages / rate
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(*options) as sb:
        env, work = credentials_env(sb), Path(tmp)
        extra = ["--rate", str(rate)] if known else []
        run = repeat(runs, lambda: exporter(env, work / "out.jsonl", "--page-size", str(page), *extra))
    ratio = run.seconds / ideal
    limited = run.rate_limited / run.requests
    if known:
        title, goal = "Rate-bound, `--rate 50`", ratio <= 1.03 and run.rate_limited == 0
        target = "<= 1.03x and no rate-limited answer"
    else:
        title, goal = (
            "Rate unknown (no `--rate`, the sandbox answers 429 with Retry-After)",
            (ratio <= 1.2 and limited <= 0.05),
        )
        target = "<= 1.2x and <= 5% rate-limited"
    return "\n".join(
        [
            f"### {title}",
            "",
            f"Sandbox limited to {rate} requests/s (burst {burst}); {pages} pages of {page}: ideal "
            f"{ideal:.1f} s; median of {runs} runs.",
            "",
            "| seconds | x ideal | requests | rate-limited | target |",
            "|---:|---:|---:|---:|---|",
            f"| {run.seconds:.2f} | {ratio:.3f} | {run.requests} | {run.rate_limited} ({limited:.1%}) | "
            f"{target}: {'met' if goal else 'missed'} |",
        ]
    )


def details(runs: int) -> str:
    orders, page, conc, latency = 5_000, 100, 16, 0.02
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process("--orders", str(orders), "--latency", str(latency)) as sb,
    ):
        env, work = credentials_env(sb), Path(tmp)
        concurrency = ("--concurrency", str(conc))
        # List pages of 2 overlap by one order: one request per order, as many requests as --details makes.
        listed = repeat(runs, lambda: exporter(env, work / "list.jsonl", "--page-size", "2", *concurrency))
        detailed = repeat(
            runs,
            lambda: exporter(
                env, work / "details.jsonl", "--page-size", str(page), *concurrency, "--details"
            ),
        )
    ideal = conc / latency
    list_rate, detail_rate = listed.requests / listed.seconds, detailed.requests / detailed.seconds
    return "\n".join(
        [
            "### `--details` against list pages",
            "",
            f"{orders:,} orders, {latency * 1000:.0f} ms latency, concurrency {conc}: at most {ideal:.0f} "
            f"requests/s; median of {runs} runs. The list export asks pages of 2 (they overlap by one "
            "order), so it makes one request per order, as `--details` does (pages of "
            f"{page}, then a detail request per order).",
            "",
            "| export | requests | seconds | requests/s | x list |",
            "|---|---:|---:|---:|---:|",
            f"| list pages | {listed.requests:,} | {listed.seconds:.2f} | {list_rate:,.0f} | 1.00 |",
            f"| `--details` | {detailed.requests:,} | {detailed.seconds:.2f} | {detail_rate:,.0f} | "
            f"{detail_rate / list_rate:.2f} |",
            "",
            "Details are fetched across pages, at most --concurrency at a time, while pages still reach "
            "the writer whole and in order (and a checkpoint only after its page's details are written).",
        ]
    )


def memory(runs: int) -> str:
    lines = [
        "### Memory: 100,000 vs 1,000,000 orders",
        "",
        f"Peak RSS of the whole exporter process; pages of 500, concurrency 16; max of {runs} runs.",
        "",
        "| format | 100,000 orders (MB) | 1,000,000 orders (MB) | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    peaks: dict[str, dict[int, float]] = {fmt: {} for fmt in FORMATS}
    for orders in (100_000, 1_000_000):
        with tempfile.TemporaryDirectory() as tmp, sandbox_process("--orders", str(orders)) as sb:
            env, work = credentials_env(sb), Path(tmp)
            for fmt in FORMATS:
                out = work / f"out{SUFFIX[fmt]}"
                once = lambda env=env, out=out, fmt=fmt: exporter(env, out, cpus=cpus_for(fmt))  # noqa: E731
                peaks[fmt][orders] = repeat(runs, once).rss_mb
    for fmt in FORMATS:
        small, big = peaks[fmt][100_000], peaks[fmt][1_000_000]
        lines.append(
            f"| {fmt} | {small:.0f} | {big:.0f} | {big / small:.2f} | <= 1.15: "
            f"{'met' if big / small <= 1.15 else 'missed'} |"
        )
    return "\n".join(lines)


def wide(runs: int) -> str:
    """Peak RSS with orders several times the sandbox's usual size: what bounds memory per order."""
    orders, order_lines = 200_000, 20
    lines = [
        f"### Wide orders: {orders:,} orders of about 2.7 kB",
        "",
        f"The sandbox's `--order-lines {order_lines}` (each order carries {order_lines} line objects, six "
        f"times the usual order's size); pages of 100, concurrency 16; peak RSS is the max of {runs} runs, "
        "seconds the median. No issue sets a target here: the 200 MB of issue 3 is for the usual orders.",
        "",
        "| format | orders/s | seconds | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    options = ("--page-size", "100", "--concurrency", "16")
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process("--orders", str(orders), "--order-lines", str(order_lines)) as sb,
    ):
        env, work = credentials_env(sb), Path(tmp)
        results = interleaved(
            runs,
            {
                fmt: lambda fmt=fmt: exporter(env, work / f"out{SUFFIX[fmt]}", *options, cpus=cpus_for(fmt))
                for fmt in FORMATS
            },
        )
    for fmt, run in results.items():
        lines.append(f"| {fmt} | {run.rate:,.0f} | {run.seconds:.2f} | {run.rss_mb:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="naive200k,cpu,latency,rate,unknown,memory,wide,details")
    parser.add_argument("--rate-pages", type=int, default=500)
    args = parser.parse_args()
    chosen = args.only.split(",")
    header = [
        f"## Export scenarios, {date.today().isoformat()}",
        "",
        f"Machine: {machine()}. Reproduce: `.venv/bin/python benchmarks/run.py` (`--only` picks scenarios).",
        "Times are measured inside each process (start-up excluded); see the script's docstring.",
    ]
    if "naive200k" in chosen:
        body = cpu_bound(
            args.runs,
            200_000,
            "Export vs the naive client (issue 3 targets), 200,000 orders",
            {"jsonl": 2.0, "csv": 1.5, "parquet": 1.5},
        )
        write_section("export-200k", "\n".join([*header, "", body]))
        print(body, flush=True)
    scenarios: list[tuple[str, Callable[[], str]]] = [
        ("cpu", lambda: cpu_bound(args.runs, 500_000, "CPU-bound (issue 5 targets), 500,000 orders", None)),
        ("latency", lambda: latency_bound(args.runs)),
        ("rate", lambda: rate_bound(args.runs, args.rate_pages, known=True)),
        (
            "unknown",
            # The same, three times longer: what learning the limit costs once, against the steady state.
            lambda: (
                rate_bound(args.runs, args.rate_pages, known=False)
                + "\n\n"
                + rate_bound(1, 3 * args.rate_pages, known=False)
                # And with the sandbox's default burst, twice as large: a burst is not a rate.
                + "\n\n"
                + rate_bound(max(1, args.runs - 2), args.rate_pages, known=False, burst=10)
            ),
        ),
        ("memory", lambda: memory(max(1, args.runs - 2))),
        ("wide", lambda: wide(max(1, args.runs - 2))),
    ]
    for name, scenario in scenarios:
        if name in chosen:  # each scenario has a section of its own: --only leaves the others as they are
            body = scenario()
            write_section(name, "\n".join([*header, "", body]))
            print(body, flush=True)
    if "details" in chosen:  # a section of its own: issue 6's figure, not one of issue 5's scenarios
        body = details(args.runs)
        write_section("details", "\n".join([*header, "", body]))
        print(body, flush=True)


if __name__ == "__main__":
    main()
