"""The sandbox's misbehaviour knobs, each shown against the running server: rate limit, latency, faults,
drift."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import orjson
import pytest
from conftest_sandbox import REQUESTS, ids, serve

# -- rate limit ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("style", "status"), [("429", 429), ("403", 403)])
async def test_rate_limit_answers_429_or_403_code_53_beyond_the_burst(style: str, status: int) -> None:
    """With rate_limit=1/s and burst=3, three calls at once pass and the next ones get code 53."""
    async with serve(rate_limit=1, burst=3, rate_limit_style=style) as api:
        replies = [await api.page(limit=1) for _ in range(5)]
        assert [reply.status for reply in replies] == [200, 200, 200, status, status]
        assert {replies[3].code, replies[4].code} == {53}
        assert replies[3].headers["Retry-After"] == "1"
        assert api.sb.stats()["rate_limited"] == 2


async def test_rate_limit_refills_at_its_rate() -> None:
    """A refused caller that waits 1/rate seconds gets through."""
    async with serve(rate_limit=10, burst=1) as api:
        assert (await api.page()).status == 200
        assert (await api.page()).status == 429
        await asyncio.sleep(0.12)
        assert (await api.page()).status == 200


async def test_retry_after_rounds_up_the_wait_to_whole_seconds() -> None:
    """At 0.25 request/s, the wait for the next token is about 4 s: Retry-After says 4."""
    async with serve(rate_limit=0.25, burst=1) as api:
        await api.page()
        assert (await api.page()).headers["Retry-After"] == "4"


async def test_retry_after_can_be_an_http_date() -> None:
    """retry_after="date" gives an HTTP date a second or so from now."""
    async with serve(rate_limit=1, burst=1, retry_after="date") as api:
        await api.page()
        reply = await api.page()
        moment = email.utils.parsedate_to_datetime(reply.headers["Retry-After"]).timestamp()
        assert reply.headers["Retry-After"].endswith("GMT")
        assert time.time() - 1 <= moment <= time.time() + 2.5


async def test_retry_after_can_be_absent() -> None:
    """retry_after="none" sends the 429 without Retry-After."""
    async with serve(rate_limit=1, burst=1, retry_after="none") as api:
        await api.page()
        reply = await api.page()
        assert reply.status == 429
        assert "Retry-After" not in reply.headers


async def test_rate_limit_spares_the_stats_endpoint() -> None:
    """GET /_sandbox/stats is never rate limited."""
    async with serve(rate_limit=1, burst=1) as api:
        await api.page()
        assert [(await api.get("/_sandbox/stats")).status for _ in range(3)] == [200, 200, 200]


# -- latency -------------------------------------------------------------------------------------------------


async def test_latency_delays_every_data_call_but_not_stats() -> None:
    """latency=0.2 makes each data call take at least 0.2 s; the stats endpoint answers at once."""
    async with serve(latency=0.2) as api:
        assert (await api.page()).seconds >= 0.2
        assert (await api.get(f"{REQUESTS}/3-00000001")).seconds >= 0.2
        assert (await api.get("/_sandbox/stats")).seconds < 0.1


async def test_jitter_adds_a_uniform_random_delay() -> None:
    """jitter=0.15 adds 0..0.15 s: delays vary, and none exceeds it by much."""
    async with serve(jitter=0.15) as api:
        delays = [(await api.page(limit=1)).seconds for _ in range(6)]
        assert max(delays) - min(delays) > 0.01
        assert max(delays) < 0.15 + 0.1


# -- faults --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "status", "code", "fault"),
    [("fail_500", 500, 1, "500"), ("fail_503", 503, 5, "503")],
)
async def test_server_errors_come_with_orange_bodies(knob: str, status: int, code: int, fault: str) -> None:
    """fail_500 and fail_503 answer data calls with 500 code 1 and 503 code 5 (with Retry-After)."""
    async with serve(**{knob: 1.0}) as api:
        reply = await api.page()
        assert (reply.status, reply.code) == (status, code)
        assert reply.request_id
        assert (status != 503) or reply.headers["Retry-After"] == "1"
        assert (await api.request_token()).status == 200  # the token endpoint is spared
        assert api.sb.stats()["faults"] == {fault: 1}


async def test_bad_gateway_answers_html() -> None:
    """fail_502_html answers 502 with an HTML body, as a proxy would."""
    async with serve(fail_502_html=1.0) as api:
        reply = await api.page()
        assert reply.status == 502
        assert reply.headers["Content-Type"].startswith("text/html")
        assert reply.body.startswith(b"<html>")
        with pytest.raises(orjson.JSONDecodeError):
            reply.json()


async def test_dropped_connection_cuts_the_body_short_of_its_length() -> None:
    """drop_rate sends the headers and half the body, then closes: the client sees a payload error."""
    async with serve(drop_rate=1.0) as api:
        async with api.session.get(api.sb.base_url + REQUESTS, headers=api.headers()) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) > 1000
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        assert api.sb.stats()["faults"] == {"drop": 1}


async def test_truncated_body_is_a_complete_answer_of_cut_json() -> None:
    """truncate_rate answers 200 with a Content-Length that matches a body cut in the middle of the JSON."""
    async with serve(truncate_rate=1.0) as api:
        reply = await api.page(limit=10)
        assert reply.status == 200
        assert int(reply.headers["Content-Length"]) == len(reply.body) > 0
        assert reply.body.startswith(b'[{"id":')
        with pytest.raises(orjson.JSONDecodeError):
            reply.json()
        assert api.sb.stats()["faults"] == {"truncate": 1}


async def test_faults_spare_answers_that_are_not_200() -> None:
    """A drop or truncation only hits answers with data: a refused call is answered whole."""
    async with serve(truncate_rate=1.0) as api:
        reply = await api.page(limit="x")
        assert (reply.status, reply.code) == (400, 28)
        assert api.sb.stats()["faults"] == {}


async def test_stalled_answer_comes_late_or_times_the_client_out() -> None:
    """stall_rate holds the answer stall_seconds: a patient client gets it, an impatient one times out."""
    async with serve(stall_rate=1.0, stall_seconds=0.3) as api:
        reply = await api.page(limit=5)
        assert reply.status == 200
        assert reply.seconds >= 0.3
        timeout = aiohttp.ClientTimeout(total=0.1)
        with pytest.raises(TimeoutError):
            await api.call("GET", api.sb.base_url + REQUESTS, headers=api.headers(), timeout=timeout)
        assert api.sb.stats()["faults"] == {"stall": 2}


async def test_fault_rates_are_probabilities_drawn_reproducibly() -> None:
    """fail_500=0.3 fails about 30% of calls, and the same seed fails the same calls."""
    runs = []
    for _ in range(2):
        async with serve(fail_500=0.3, seed=11) as api:
            runs.append([(await api.page(limit=1)).status for _ in range(150)])
    assert runs[0] == runs[1]
    assert 25 <= runs[0].count(500) <= 70
    assert set(runs[0]) == {200, 500}


# -- drift ---------------------------------------------------------------------------------------------------


async def test_drift_waits_for_the_first_data_call() -> None:
    """No order is created or closed before the first data call."""
    async with serve(drift_create_per_s=100, drift_close_per_s=100) as api:
        await asyncio.sleep(0.15)
        assert api.sb.created_ids() == api.sb.closed_ids() == []
        await api.page()
        await asyncio.sleep(0.15)
        assert api.sb.created_ids()
        assert api.sb.closed_ids()


async def test_drift_creates_orders_that_sort_last_by_created_at() -> None:
    """drift_create_per_s=40 adds about 40 orders a second; they are the newest and sort last."""
    async with serve(orders=100, drift_create_per_s=40) as api:
        await api.page()
        await asyncio.sleep(0.5)
        created = api.sb.created_ids()
        assert 15 <= len(created) <= 30
        walked = await api.walk(limit=50, sort="createdAt")
        assert ids(walked)[100 : 100 + len(created)] == created
        assert ids(walked)[:100] == [f"3-{n:08d}" for n in range(1, 101)]
        assert walked[100]["createdAt"] > walked[99]["createdAt"]
        assert int((await api.page()).headers["X-Total-Count"]) >= 100 + len(created)


async def test_drift_closes_orders_they_leave_list_and_detail() -> None:
    """drift_close_per_s=40 removes about 40 orders a second: gone from the list and from detail (404)."""
    async with serve(orders=100, drift_close_per_s=40) as api:
        await api.page()
        await asyncio.sleep(0.5)
        closed = api.sb.closed_ids()
        assert 15 <= len(closed) <= 30
        assert len(set(closed)) == len(closed)
        reply = await api.page(limit=1000)
        listed = ids(reply.json())
        assert not set(closed) & set(listed)
        assert len(listed) + len(api.sb.closed_ids()) >= 100
        assert int(reply.headers["X-Total-Count"]) == len(listed)
        assert (await api.get(f"{REQUESTS}/{closed[0]}")).status == 404


async def test_stable_ids_are_the_orders_that_existed_throughout() -> None:
    """stable_ids: open now and already there at the start (the first data call, or a given time)."""
    async with serve(orders=100, drift_create_per_s=50, drift_close_per_s=50) as api:
        await api.page()
        await asyncio.sleep(0.2)
        mark = api.sb.now()
        await asyncio.sleep(0.2)
        closed_before = set(api.sb.closed_ids())
        stable = api.sb.stable_ids()
        created, closed_after = api.sb.created_ids(), set(api.sb.closed_ids())
        initial = {f"3-{n:08d}" for n in range(1, 101)}
        assert initial - closed_after <= set(stable) <= initial - closed_before
        assert stable == sorted(stable)  # served order: insertion order by default
        since_mark = api.sb.stable_ids(since=mark, sort="createdAt")
        assert set(since_mark) - initial  # orders created before the mark count...
        assert not set(since_mark) & closed_before
        assert created[-1] not in since_mark  # ...orders created after it do not
        assert since_mark == sorted(since_mark)
