"""Hostile servers: every fault at once, stalls and trickles, answers of the wrong shape. No hang, no loss."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from exporter import IncompleteExport, RequestRejected, export
from exporter.config import Credentials, ExportConfig, RetryPolicy, Timeouts
from exporter.sandbox import Sandbox, SandboxConfig
from tests.conftest import FORMATS, SUFFIX, export_config
from tests.readback import assert_export_matches, read_csv, read_parquet

ALL_FAULTS = SandboxConfig(
    orders=20_000,
    seed=3,
    fail_500=0.025,
    fail_503=0.025,
    fail_502_html=0.01,
    drop_rate=0.01,
    truncate_rate=0.01,
    stall_rate=0.005,
    stall_seconds=3.0,
    token_lifetime=3.0,
    revoke_every=5.0,
    rate_limit=150,
    burst=10,
    rate_limit_style="403",
    retry_after="none",
)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_all_faults_at_once_still_give_an_exact_export(tmp_path: Path, fmt: str) -> None:
    """5% 500/503, 1% HTML 502, 1% drops, 1% truncations, 0.5% stalls past the read timeout, 3 s tokens
    revoked every 5 s, a 403-53 rate limit without Retry-After: exact, complete."""
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    async with Sandbox(ALL_FAULTS) as sb:
        report = await export(
            export_config(
                sb,
                out,
                page_size=100,
                concurrency=16,
                timeouts=Timeouts(connect=1.0, read=1.0, total=5.0),
                retry=RetryPolicy(attempts=12, deadline=90.0, base_delay=0.05, max_delay=1.0),
            )
        )
        expected = sb.expected_records()
        faults = sb.stats()["faults"]
    assert report["complete"]
    assert report["retries"] > 0
    assert report["rate_limited"] > 0
    assert sum(faults.values()) > 10, faults
    assert_export_matches(out, fmt, expected)


async def test_a_stall_past_the_read_timeout_costs_a_retry_not_a_hang(tmp_path: Path) -> None:
    """One answer in ten stalls 30 s; the 0.5 s read timeout turns each into a retry."""
    out = tmp_path / "orders.jsonl"
    cfg = SandboxConfig(orders=5_000, stall_rate=0.1, stall_seconds=30.0, seed=1)
    async with Sandbox(cfg) as sb:
        with anyio_fail_after(20):
            report = await export(export_config(sb, out, page_size=100, timeouts=Timeouts(0.5, 0.5, 2.0)))
    assert report["complete"]
    assert report["retries"] > 0


async def serve(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return head


def _answer(body: bytes, headers: dict[str, str] | None = None, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


TOKEN = orjson.dumps({"token_type": "Bearer", "access_token": "t0k3n-value", "expires_in": 3600})


ListHandler = Callable[[asyncio.StreamWriter, int, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(on_list: ListHandler) -> AsyncIterator[str]:
    """A bare HTTP/1.1 server on 127.0.0.1: any POST gets a token; a GET is answered by ``on_list`` with the
    request's offset and limit."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await _read_request(reader)
                if head.startswith(b"POST"):
                    writer.write(_answer(TOKEN))
                else:
                    query = parse_qs(urlsplit(head.split(b" ")[1].decode()).query)
                    await on_list(writer, int(query["offset"][0]), int(query["limit"][0]))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await serve(handle)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


@pytest.fixture
async def trickling_server() -> AsyncIterator[str]:
    """A server whose token answer is fine but whose pages trickle one byte every 0.2 s, forever."""

    async def trickle(writer: asyncio.StreamWriter, offset: int, limit: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Total-Count: 5\r\n\r\n[")
        while True:
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.2)

    async with raw_server(trickle) as base_url:
        yield base_url


def hostile_config(base_url: str, out: Path, **overrides: object) -> ExportConfig:
    settings: dict[str, object] = {
        "credentials": Credentials("id", "secret-value", "key-value"),
        "base_url": base_url,
        "output": str(out),
        "timeouts": Timeouts(connect=0.5, read=0.5, total=1.5),
        "retry": RetryPolicy(attempts=2, deadline=10.0, base_delay=0.01, max_delay=0.05),
    }
    settings.update(overrides)
    return ExportConfig(**settings)  # type: ignore[arg-type]


async def test_a_trickling_body_is_cut_by_the_total_timeout(trickling_server: str, tmp_path: Path) -> None:
    """Bytes every 0.2 s never trip the read timeout; the total timeout ends each try, then exit 5."""
    out = tmp_path / "orders.jsonl"
    with anyio_fail_after(15), pytest.raises(IncompleteExport) as caught:
        await export(hostile_config(trickling_server, out))
    assert "timed out" in str(caught.value)
    assert not out.exists()


Answer = Callable[[int, int], bytes]


@pytest.fixture
async def scripted_server() -> AsyncIterator[tuple[str, list[Answer]]]:
    """A server whose list answers come from a function of (offset, limit) the test puts in the list."""
    script: list[Answer] = []

    async def scripted(writer: asyncio.StreamWriter, offset: int, limit: int) -> None:
        writer.write(script[0](offset, limit))

    async with raw_server(scripted) as base_url:
        yield base_url, script


def serve_list(script: list[Answer], listed: list[Any], total: int | None = None) -> None:
    """Have the scripted server answer each list call with the slice of ``listed`` it asks for, and
    X-Total-Count ``total`` (the list's length unless told)."""
    count = str(len(listed) if total is None else total)

    def answer(offset: int, limit: int) -> bytes:
        return _answer(orjson.dumps(listed[offset : offset + limit]), {"X-Total-Count": count})

    script.append(answer)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (_answer(b"<html>oops</html>", {"X-Total-Count": "3"}), "not JSON"),
        (_answer(b"", {"X-Total-Count": "3"}), "empty"),
        (_answer(b'{"items": []}', {"X-Total-Count": "3"}), "expected a JSON array"),
        (_answer(b'[1, "two"]', {"X-Total-Count": "3"}), "not an order object"),
        (_answer(b'[{"id": "a"}]', {"X-Total-Count": "-4"}), "X-Total-Count"),
        (_answer(b'[{"id": "a"}]', {"X-Total-Count": "99999999999999999999"}), "X-Total-Count"),
        (_answer(b'[{"id": "a"}]', {"X-Total-Count": "lots"}), "X-Total-Count"),
        (_answer(b'[{"id": "a"}]'), "X-Total-Count"),
    ],
)
async def test_hostile_first_pages_fail_clearly(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, answer: bytes, words: str
) -> None:
    """Whatever a broken gateway sends, the export fails with exit 5 and a line that names it."""
    base_url, script = scripted_server
    script.append(lambda offset, limit: answer)
    out = tmp_path / "orders.jsonl"
    with anyio_fail_after(15), pytest.raises(IncompleteExport) as caught:
        await export(hostile_config(base_url, out))
    assert words in str(caught.value)
    assert not out.exists()


async def test_orders_without_ids_are_written_and_counted(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """A page of orders lacking ids: written (nothing dropped), counted, checked by count alone."""
    base_url, script = scripted_server
    page = _answer(orjson.dumps([{"id": "a"}, {"name": "no id"}, {"id": "c"}]), {"X-Total-Count": "3"})
    script.append(lambda offset, limit: page)
    out = tmp_path / "orders.jsonl"
    report = await export(hostile_config(base_url, out))
    assert report["complete"]
    assert report["orders_without_id"] >= 1
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()][1] == {"name": "no id"}


async def test_a_redirect_stops_the_export_without_following_it(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """An http:// base URL that the gateway redirects to https://: one request, exit 4, the address named."""
    base_url, script = scripted_server
    requests = []

    def answer(offset: int, limit: int) -> bytes:
        requests.append(offset)
        return _answer(b"", {"Location": "https://api.example/ordering"}, status="301 Moved Permanently")

    script.append(answer)
    out = tmp_path / "orders.jsonl"
    with pytest.raises(RequestRejected) as caught:
        await export(hostile_config(base_url, out))
    assert "redirect (HTTP 301) to 'https://api.example/ordering'" in str(caught.value)
    assert caught.value.exit_code == 4
    assert len(requests) <= 9, "the first page and the first wave's guesses, none asked again"
    assert not out.exists()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_orders_the_api_lists_twice_are_written_once_and_the_export_is_complete(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, fmt: str
) -> None:
    """A collection that does not move but lists two orders twice (within a page and across pages): each
    is written once, the repeats are counted, and the count of positions proves the export complete."""
    from tests.readback import assert_export_matches

    base_url, script = scripted_server
    unique = [{"id": f"o{i}", "n": i} for i in range(30)]
    serve_list(script, [*unique[:5], unique[3], *unique[5:20], unique[1], *unique[20:]])
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    report = await export(hostile_config(base_url, out, page_size=7, format=fmt))
    assert report["complete"], report["reason"]
    assert (report["orders_written"], report["duplicates_dropped"]) == (30, 2)
    assert "listed their ids twice" in report["reason"]
    assert_export_matches(out, fmt, unique)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_strings_cut_inside_a_utf16_pair_are_written_with_a_replacement_character(
    scripted_server: tuple[str, list[Answer]],
    tmp_path: Path,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Comments cut in the middle of an emoji by a UTF-16 program reach the API's JSON as a lone surrogate
    escape, which no fast decoder takes: the export is still complete and exact, each half written as
    U+FFFD (in an id and a key too), whole pairs kept, and a warning names the page."""
    from tests.readback import assert_export_matches

    base_url, script = scripted_server
    texts = [b'{"id": "o%d", "comment": "ok \\ud83d\\ude00 %d"}' % (i, i) for i in range(12)]
    texts[5] = b'{"id": "o5", "comment": "cut \\ud83d", "notes": [{"t": "\\ude00"}]}'
    texts[9] = b'{"id": "o9\\udbff", "k\\ud800": "\\\\ud800 is text"}'
    expected = [{"id": f"o{i}", "comment": f"ok \U0001f600 {i}"} for i in range(12)]
    expected[5] = {"id": "o5", "comment": "cut \ufffd", "notes": [{"t": "\ufffd"}]}
    expected[9] = {"id": "o9\ufffd", "k\ufffd": "\\ud800 is text"}

    def answer(offset: int, limit: int) -> bytes:
        body = b"[" + b",".join(texts[offset : offset + limit]) + b"]"
        return _answer(body, {"X-Total-Count": str(len(texts))})

    script.append(answer)
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    with caplog.at_level("WARNING", logger="exporter"):
        report = await export(hostile_config(base_url, out, page_size=4, format=fmt))
    assert report["complete"], report["reason"]
    assert_export_matches(out, fmt, expected)
    warnings = [r.getMessage() for r in caplog.records if "lone surrogate" in r.getMessage()]
    assert any("the page at offset 3 held 2 lone surrogate" in w for w in warnings), warnings
    # Per answer read: order 9 is in two pages, since consecutive pages overlap by one order.
    assert report["surrogates_mended"] == 6


async def test_an_api_without_a_stable_order_is_never_reported_complete(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """Each answer lists the 1,000 orders in a new random order (no default sort), the total steady. Every
    page can seem to lie behind the walk and be skipped while the links hold: this once gave "complete"
    with 100 orders. Now exit 5, no file, and the line names --sort."""
    base_url, script = scripted_server
    orders = [{"id": f"o{i:04d}"} for i in range(1000)]
    shuffles = random.Random(3)

    def answer(offset: int, limit: int) -> bytes:
        listed = orders[:]
        shuffles.shuffle(listed)
        return _answer(orjson.dumps(listed[offset : offset + limit]), {"X-Total-Count": "1000"})

    script.append(answer)
    out = tmp_path / "orders.jsonl"
    with pytest.raises(IncompleteExport) as caught:
        await export(hostile_config(base_url, out, page_size=100))
    assert "--sort" in str(caught.value)
    assert not out.exists()


async def test_a_repeat_that_pages_cannot_place_leaves_the_export_incomplete(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """Pages of one order do not overlap, so a repeat there may be a shift that skipped another order:
    exit 5, and the line says a duplicate was dropped."""
    base_url, script = scripted_server
    serve_list(script, [{"id": "a"}, {"id": "b"}, {"id": "a"}])
    out = tmp_path / "orders.jsonl"
    with pytest.raises(IncompleteExport) as caught:
        await export(hostile_config(base_url, out, page_size=1))
    assert "1 orders missing: 2 written (1 more dropped as duplicates" in str(caught.value)
    assert not out.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("missing", ["all", "some"])
async def test_orders_without_ids_across_pages_are_written_once(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, fmt: str, missing: str
) -> None:
    """Orders without an id (absent or null) on many pages, some where consecutive pages overlap: each is
    written once, in order, and the export is complete by its count (the overlap is not written twice)."""
    from tests.readback import assert_export_matches

    base_url, script = scripted_server
    orders: list[dict[str, object]] = []
    for i in range(23):
        order: dict[str, object] = {"n": i, "note": f"order {i}"}
        if missing == "some" and i % 3:
            order["id"] = f"o{i}"
        elif i % 2:
            order["id"] = None
        orders.append(order)

    serve_list(script, orders)
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    report = await export(hostile_config(base_url, out, page_size=4, format=fmt))
    assert report["complete"], report["reason"]
    assert report["orders_written"] == len(orders)
    assert_export_matches(out, fmt, orders)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_cap_on_later_pages_shorter_than_the_first_page_loses_nothing(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, fmt: str
) -> None:
    """The first page honours the page size, every later answer is cut to 4 orders (a cap that varies),
    X-Total-Count right on each: short answers are not the end of the collection while their own count
    says more follow. Every order once, in order (it used to write 13 of 60 and call that complete)."""
    from tests.readback import assert_export_matches

    base_url, script = scripted_server
    orders = [{"id": f"o{i:03d}", "n": i} for i in range(60)]

    def answer(offset: int, limit: int) -> bytes:
        size = limit if offset == 0 else min(limit, 4)
        return _answer(orjson.dumps(orders[offset : offset + size]), {"X-Total-Count": str(len(orders))})

    script.append(answer)
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    report = await export(hostile_config(base_url, out, page_size=10, concurrency=4))
    assert report["complete"], report["reason"]
    assert report["orders_written"] == len(orders)
    assert_export_matches(out, fmt, orders)


async def test_an_empty_page_in_the_middle_is_asked_again(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """One answer mid-collection comes back as an empty array, its X-Total-Count saying 1,000 orders: it is
    asked again, and the export is exact (it used to walk bridge windows towards the end, give up after
    64 of them and exit 5, "orders moved faster than the export could follow")."""
    base_url, script = scripted_server
    orders = [{"id": f"o{i:04d}"} for i in range(1000)]
    glitched: list[int] = []

    def answer(offset: int, limit: int) -> bytes:
        page = orders[offset : offset + limit]
        if offset == 270 and not glitched:
            glitched.append(offset)
            page = []
        return _answer(orjson.dumps(page), {"X-Total-Count": str(len(orders))})

    script.append(answer)
    out = tmp_path / "orders.jsonl"
    report = await export(hostile_config(base_url, out, page_size=10, concurrency=4))
    assert glitched == [270]
    assert report["complete"], report["reason"]
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == orders
    assert report["drift"]["bridge_requests"] == 0


async def test_a_server_that_stops_answering_past_an_offset_is_not_complete(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """The total says 6 but nothing comes past offset 3 (an offset cap), nothing moved: exit 5, no file."""
    base_url, script = scripted_server
    orders = [{"id": name} for name in "abcdef"]

    def capped(offset: int, limit: int) -> bytes:
        return _answer(orjson.dumps(orders[offset : min(offset + limit, 3)]), {"X-Total-Count": "6"})

    script.append(capped)
    out = tmp_path / "orders.jsonl"
    with pytest.raises(IncompleteExport) as caught:
        await export(hostile_config(base_url, out, page_size=3))
    assert "3 orders missing" in str(caught.value)
    assert not out.exists()


def anyio_fail_after(seconds: float):  # type: ignore[no-untyped-def]
    import anyio

    return anyio.fail_after(seconds)


async def test_only_the_first_and_last_reads_need_a_total(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path
) -> None:
    """A gateway that drops X-Total-Count on every page but offset 0: the export is exact all the same."""
    base_url, script = scripted_server
    orders = [{"id": f"o{i}"} for i in range(25)]

    def answer(offset: int, limit: int) -> bytes:
        headers = {"X-Total-Count": "25"} if offset == 0 else {}
        return _answer(orjson.dumps(orders[offset : offset + limit]), headers)

    script.append(answer)
    out = tmp_path / "orders.jsonl"
    report = await export(hostile_config(base_url, out, page_size=5))
    assert report["complete"]
    assert [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()] == [o["id"] for o in orders]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_integer_ids_and_odd_shapes_export_exactly(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, fmt: str
) -> None:
    """Integer ids, lists, nulls and a field that changes type: exact in every format."""
    from tests.readback import assert_export_matches

    base_url, script = scripted_server
    orders = [
        {
            "id": i,
            "tags": ["a", "b"][: i % 3],
            "qty": i if i % 7 else f"{i} units",
            "note": None if i % 2 else "x",
        }
        for i in range(1, 58)
    ]

    serve_list(script, orders)
    out = tmp_path / f"orders.{fmt}"
    report = await export(hostile_config(base_url, out, page_size=10))
    assert report["complete"]
    assert_export_matches(out, fmt, orders)


async def test_odd_pages_of_a_jsonl_export_read_back_as_orjson_reads_them(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, simd_pages: list[int]
) -> None:
    """Ids that are objects, arrays, numbers or strings, escapes, spaces, and one order with an integer
    beyond 64 bits: the pages holding it are decoded by orjson (its float), the others by simdjson; every
    line reads back as orjson reads the order the server sent, once, in order."""
    base_url, script = scripted_server
    texts = []
    for i in range(40):
        order_id = [b'{"k": %d, "j": [1]}' % i, b'[%d, "x"]' % i, b"%d" % i, b'"o\\u00e9\\/%d"' % i][i % 4]
        extra = b', "big": 18446744073709551616' if i == 18 else b', "n": %d.5e2' % i
        texts.append(b'{ "id" : ' + order_id + b', "note": "caf\\u00e9 \\"%d\\"\\n"' % i + extra + b"}")

    def answer(offset: int, limit: int) -> bytes:
        body = b"[ " + b" ,\n".join(texts[offset : offset + limit]) + b" ]"
        return _answer(body, {"X-Total-Count": str(len(texts))})

    script.append(answer)
    out = tmp_path / "orders.jsonl"
    report = await export(hostile_config(base_url, out, page_size=10))
    assert report["complete"]
    assert [orjson.loads(line) for line in out.read_bytes().splitlines()] == [orjson.loads(t) for t in texts]
    assert orjson.loads(out.read_bytes().splitlines()[18])["big"] == 1.8446744073709552e19
    # The pages at offsets 0, 9, 18, 27 and 36: the two holding order 18 (9 and 18) went to orjson.
    assert simd_pages == [10, 10, 4]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("spread", [False, True], ids=["one-line", "on-lines"])
async def test_integers_beyond_64_bits_keep_every_digit(
    scripted_server: tuple[str, list[Answer]], tmp_path: Path, fmt: str, spread: bool
) -> None:
    """An integer beyond 64 bits, at the top level, nested in a list and as an id: every format writes its
    digits (JSONL as a number, CSV and Parquet as text, since no int64 column can hold it); the big ids
    stay apart, so none is taken for a duplicate."""
    big = 10**30
    orders = [{"id": big + i, "n": i, "deep": [i, -big if i == 7 else i]} for i in range(20)]

    def answer(offset: int, limit: int) -> bytes:
        page = orders[offset : offset + limit]
        texts = [json.dumps(order, separators=(",", ":")).encode() for order in page]
        body = b"[" + (b",\n" if spread else b",").join(texts) + b"]"
        return _answer(body, {"X-Total-Count": str(len(orders))})

    base_url, script = scripted_server
    script.append(answer)
    out = tmp_path / f"orders{SUFFIX[fmt]}"
    report = await export(hostile_config(base_url, out, page_size=6, format=fmt))
    assert report["complete"], report["reason"]
    assert report["orders_written"] == len(orders)
    if fmt == "jsonl":
        assert [json.loads(line) for line in out.read_bytes().splitlines()] == orders
    elif fmt == "csv":
        _, rows = read_csv(out)
        assert [row["id"] for row in rows] == [str(order["id"]) for order in orders]
        assert rows[7]["deep"] == f"[7,{-big}]"
    else:
        rows = read_parquet(out)
        assert [row["id"] for row in rows] == [str(order["id"]) for order in orders]
        assert [row["n"] for row in rows] == list(range(20))
        assert rows[7]["deep"] == f"[7,{-big}]"
