"""One request done right, against single odd answers (aioresponses): retries, rate limits, tokens."""

from __future__ import annotations

import base64
import email.utils
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aioresponses import CallbackResult, aioresponses

from exporter import export
from exporter.auth import TokenProvider
from exporter.client import ApiClient
from exporter.config import Credentials, ExportConfig, RetryPolicy
from exporter.errors import (
    ApiKeyRefused,
    CredentialsRefused,
    ExportError,
    IncompleteExport,
    RequestRejected,
)
from exporter.fetch import Fetcher
from exporter.ratelimit import RateLimiter
from exporter.report import Counters
from exporter.responses import RawPage, TokenAnswer, decode_lines
from tests.fakes import FakeClock

BASE = "http://api.test"
TOKEN_URL = BASE + "/oauth/v3/token"
LIST = re.compile(r"^http://api\.test/ordering/b2b/v3/requests\?.*$")
CREDS = Credentials("client-1", "s3cr3t-value", "key-abc-123")
PAGE = orjson.dumps([{"id": "3-1"}, {"id": "3-2"}])


@pytest.fixture
def mocked() -> aioresponses:
    with aioresponses() as mock:
        yield mock


class Sleeps(FakeClock):
    """A fake clock whose sleeps are recorded, not slept."""

    @property
    def calls(self) -> list[float]:
        return self.sleeps


@pytest.fixture
async def client() -> AsyncIterator[ApiClient]:
    async with ApiClient(base_url=BASE, token_url=TOKEN_URL, credentials=CREDS) as api:
        yield api


def make_fetcher(client: ApiClient, sleeps: Sleeps, counters: Counters, attempts: int = 5) -> Fetcher:
    return Fetcher(
        client,
        auth=TokenProvider(client.request_token),
        limiter=RateLimiter(None, clock=sleeps, sleep=sleeps.sleep),
        policy=RetryPolicy(attempts=attempts, base_delay=0.1, max_delay=1.0),
        counters=counters,
        clock=sleeps,
        sleep=sleeps.sleep,
        rand=lambda: 0.5,
    )


def token_ok(mocked: aioresponses, expires_in: object = 3600, token: str = "tok-1") -> None:
    mocked.post(TOKEN_URL, payload={"token_type": "Bearer", "access_token": token, "expires_in": expires_in})


async def test_html_502_is_retried_then_the_page_comes(mocked: aioresponses, client: ApiClient) -> None:
    """A proxy's HTML 502 costs one retry with backoff, then the page arrives."""
    token_ok(mocked)
    mocked.get(LIST, status=502, body="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    sleeps, counters = Sleeps(), Counters()
    page = await make_fetcher(client, sleeps, counters).page(0, 100)
    assert [o["id"] for o in page.items] == ["3-1", "3-2"]
    assert counters.retries == 1
    assert sleeps.calls == [0.05]


async def test_403_code_53_with_an_http_date_pauses_then_retries(
    mocked: aioresponses, client: ApiClient
) -> None:
    """403 code 53 + HTTP-date Retry-After: counted as rate limited, the limiter pauses that long."""
    token_ok(mocked)
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    mocked.get(
        LIST,
        status=403,
        body=orjson.dumps({"code": 53, "message": "Too many requests"}),
        headers={"Retry-After": when},
    )
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    sleeps, counters = Sleeps(), Counters()
    page = await make_fetcher(client, sleeps, counters).page(0, 100)
    assert len(page.items) == 2
    assert counters.rate_limited == 1
    assert sleeps.calls
    assert 1.0 <= max(sleeps.calls) <= 3.5


async def test_string_expires_in_is_accepted(mocked: aioresponses, client: ApiClient) -> None:
    """A token answer with expires_in "3600" works like 3600."""
    token_ok(mocked, expires_in="3600")
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    page = await make_fetcher(client, Sleeps(), Counters()).page(0, 100)
    assert page.total == 2


def _authorizations_sent(mocked: aioresponses) -> list[str]:
    """The Authorization header of each GET made, in order."""
    return [
        call.kwargs["headers"]["Authorization"]
        for key, calls in mocked.requests.items()
        if key[0] == "GET"
        for call in calls
    ]


async def test_expired_token_is_renewed_once_and_the_call_retried(
    mocked: aioresponses, client: ApiClient
) -> None:
    """401 code 42: a new token, then the same request succeeds with it."""
    token_ok(mocked, token="tok-1")
    token_ok(mocked, token="tok-2")
    mocked.get(LIST, status=401, body=orjson.dumps({"code": 42, "message": "Expired credentials"}))
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    counters = Counters()
    await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert _authorizations_sent(mocked) == ["Bearer tok-1", "Bearer tok-2"]
    assert counters.token_refused == 1


async def test_a_fresh_token_refused_again_fails_with_exit_3(mocked: aioresponses, client: ApiClient) -> None:
    """401 right after a renewal: CredentialsRefused, no endless loop."""
    token_ok(mocked, token="tok-1")
    token_ok(mocked, token="tok-2")
    mocked.get(
        LIST, status=401, body=orjson.dumps({"code": 41, "message": "Invalid credentials"}), repeat=True
    )
    with pytest.raises(CredentialsRefused) as caught:
        await make_fetcher(client, Sleeps(), Counters()).page(0, 100)
    assert caught.value.exit_code == 3


async def test_a_revocation_racing_the_renewal_is_retried(mocked: aioresponses, client: ApiClient) -> None:
    """401 code 42 twice in a row (revoked again right after renewal): renewed again, then the page."""
    for n in (1, 2, 3):
        token_ok(mocked, token=f"tok-{n}")
    expired = orjson.dumps({"code": 42, "message": "Expired credentials"})
    mocked.get(LIST, status=401, body=expired)
    mocked.get(LIST, status=401, body=expired)
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    counters = Counters()
    page = await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert page.total == 2
    assert counters.token_refused == 2


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (429, b'{"code": 53, "message": "Too many requests"}', {"Retry-After": "2"}),
        (503, b"<html>busy</html>", {}),
    ],
)
async def test_a_renewal_that_fails_for_a_while_is_retried(
    mocked: aioresponses, client: ApiClient, status: int, body: bytes, headers: dict[str, str]
) -> None:
    """401 code 42 mid-run, and the token endpoint (rate limited at about 50 a minute) answers the renewal
    with a 429 or a 503: the renewal is retried like any request, then the page comes with the new token
    (it used to end the export at once with exit 5)."""
    token_ok(mocked, token="tok-1")
    mocked.post(TOKEN_URL, status=status, body=body, headers=headers)
    token_ok(mocked, token="tok-2")
    mocked.get(LIST, status=401, body=orjson.dumps({"code": 42, "message": "Expired credentials"}))
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    counters = Counters()
    page = await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert page.total == 2
    assert _authorizations_sent(mocked) == ["Bearer tok-1", "Bearer tok-2"]
    assert counters.retries == 2


async def test_wrong_api_key_is_not_retried(mocked: aioresponses, client: ApiClient) -> None:
    """403 code 52: ApiKeyRefused at once, a single request made."""
    token_ok(mocked)
    mocked.get(LIST, status=403, body=orjson.dumps({"code": 52, "message": "Forbidden"}), repeat=True)
    counters = Counters()
    with pytest.raises(ApiKeyRefused):
        await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert counters.requests == 1


async def test_a_bad_sort_is_not_retried(mocked: aioresponses, client: ApiClient) -> None:
    """400 code 28: RequestRejected (exit 4) at once, with the API's message."""
    token_ok(mocked)
    mocked.get(LIST, status=400, body=orjson.dumps({"code": 28, "message": "Invalid sort field: nope"}))
    with pytest.raises(RequestRejected) as caught:
        await make_fetcher(client, Sleeps(), Counters()).page(0, 100)
    assert "Invalid sort field: nope" in str(caught.value)
    assert caught.value.exit_code == 4


async def test_retries_are_bounded(mocked: aioresponses, client: ApiClient) -> None:
    """Endless 503s: IncompleteExport after the configured attempts, naming the last error."""
    token_ok(mocked)
    mocked.get(
        LIST, status=503, body=orjson.dumps({"code": 5, "message": "Service unavailable"}), repeat=True
    )
    counters = Counters()
    with pytest.raises(IncompleteExport) as caught:
        await make_fetcher(client, Sleeps(), counters, attempts=3).page(0, 100)
    assert counters.requests == 3
    assert "Service unavailable" in str(caught.value)


async def test_a_truncated_body_is_retried(mocked: aioresponses, client: ApiClient) -> None:
    """A 200 whose JSON is cut short is a transient failure."""
    token_ok(mocked)
    mocked.get(LIST, status=200, body=PAGE[:-7], headers={"X-Total-Count": "2"})
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    counters = Counters()
    await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert counters.retries == 1


async def test_refused_client_secret_fails_at_once(mocked: aioresponses, client: ApiClient) -> None:
    """401 invalid_client from the token endpoint: CredentialsRefused, no data request, no secret shown."""
    mocked.post(TOKEN_URL, status=401, payload={"error": "invalid_client", "error_description": "Bad client"})
    counters = Counters()
    with pytest.raises(CredentialsRefused) as caught:
        await make_fetcher(client, Sleeps(), counters).page(0, 100)
    assert CREDS.client_secret not in str(caught.value)
    assert "invalid_client" in str(caught.value)


async def test_many_refusals_at_once_renew_the_token_once() -> None:
    """Sixteen requests that find the token refused together cause one token fetch, not sixteen."""
    fetched = 0

    async def fetch() -> TokenAnswer:
        nonlocal fetched
        fetched += 1
        await anyio.sleep(0.01)
        return TokenAnswer("Bearer", f"tok-{fetched}", 3600)

    provider = TokenProvider(fetch)
    stale = await provider.header()
    results: list[str] = []

    async def refuse() -> None:
        results.append(await provider.refused(stale))

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(refuse)
    assert fetched == 2
    assert set(results) == {"Bearer tok-2"}


async def test_tokens_are_renewed_ahead_of_expiry() -> None:
    """A 1-second token is replaced before it runs out."""
    now = [0.0]
    answers = iter([TokenAnswer("Bearer", "a", 1), TokenAnswer("Bearer", "b", 1)])

    async def fetch() -> TokenAnswer:
        return next(answers)

    provider = TokenProvider(fetch, clock=lambda: now[0])
    assert await provider.header() == "Bearer a"
    now[0] = 0.5
    assert await provider.header() == "Bearer a"
    now[0] = 0.85
    assert await provider.header() == "Bearer b"
    assert "a" not in repr(provider).replace("fetched", "")


async def test_a_lines_fetcher_decodes_every_page_into_lines(mocked: aioresponses, client: ApiClient) -> None:
    """decode=decode_lines: pages come as JSON lines with their ids, a refetched page too (a body that turns
    out broken at its turn is fetched again and decoded the same way)."""
    token_ok(mocked)
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    mocked.get(LIST, status=200, body=PAGE, headers={"X-Total-Count": "2"})
    counters = Counters()
    fetcher = Fetcher(
        client,
        auth=TokenProvider(client.request_token),
        limiter=RateLimiter(None),
        policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0),
        counters=counters,
        decode=decode_lines,
    )
    page = await fetcher.page(0, 100)
    assert page.items == [b'{"id":"3-1"}', b'{"id":"3-2"}']
    assert page.ids == ["3-1", "3-2"]
    broken = RawPage(offset=0, body=b'[{"id":"3-1"},{"id":]', total=None, request_id=None)
    again = await fetcher.decoded(broken, 100)
    assert again.items == [b'{"id":"3-1"}', b'{"id":"3-2"}']
    assert counters.retries == 1


def _export_config(tmp_path: Path, **overrides: object) -> ExportConfig:
    settings: dict[str, object] = {
        "credentials": CREDS,
        "base_url": BASE,
        "output": str(tmp_path / "o.jsonl"),
        "report_path": str(tmp_path / "r.json"),
        "retry": RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
    }
    settings.update(overrides)
    return ExportConfig(**settings)  # type: ignore[arg-type]


def _basic() -> str:
    return base64.b64encode(f"{CREDS.client_id}:{CREDS.client_secret}".encode()).decode()


async def test_secrets_a_gateway_echoes_reach_no_error_log_or_report(
    mocked: aioresponses, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose answers quote the API key and the bearer token they got (a 401 first, then a 403):
    the error, the log at -v and the --report name neither."""
    token_ok(mocked, token="tok-echoed-0001")
    token_ok(mocked, token="tok-echoed-0002")

    def echo(status: int, code: int) -> Callable[..., CallbackResult]:
        def answer(url: object, **kwargs: Any) -> CallbackResult:
            headers = kwargs["headers"]
            body = {
                "code": code,
                "message": f"refused key {headers['X-Api-Key']}",
                "description": f"you sent {headers['Authorization']}",
            }
            return CallbackResult(status=status, body=orjson.dumps(body))

        return answer

    mocked.get(LIST, callback=echo(401, 42))
    mocked.get(LIST, callback=echo(403, 52), repeat=True)
    caplog.set_level(logging.INFO, logger="exporter")
    with pytest.raises(ApiKeyRefused) as caught:
        await export(_export_config(tmp_path, concurrency=1))
    shown = str(caught.value)
    assert "refused key" in shown
    for text in (shown, caplog.text, (tmp_path / "r.json").read_text()):
        for secret in ("tok-echoed-0001", "tok-echoed-0002", CREDS.api_key):
            assert secret not in text


async def test_a_token_answer_cut_short_is_not_quoted(mocked: aioresponses, tmp_path: Path) -> None:
    """A 200 token answer cut after the token: retried, then exit 5 naming the token endpoint, without
    quoting the body that holds the token; a 401 that quotes the Basic credential does not show it."""
    mocked.post(
        TOKEN_URL,
        status=200,
        body=b'{"token_type": "Bearer", "access_token": "tok-cut-0003", "exp',
        repeat=True,
    )
    with pytest.raises(IncompleteExport) as caught:
        await export(_export_config(tmp_path, concurrency=1))
    assert "token" in str(caught.value)
    assert "tok-cut-0003" not in str(caught.value) + (tmp_path / "r.json").read_text()

    mocked.clear()
    mocked.post(
        TOKEN_URL,
        status=401,
        body=orjson.dumps({"error": "invalid_client", "error_description": f"bad Basic {_basic()}"}),
        repeat=True,
    )
    with pytest.raises(CredentialsRefused) as refused:
        await export(_export_config(tmp_path, concurrency=1))
    assert "invalid_client" in str(refused.value)
    assert _basic() not in str(refused.value) + (tmp_path / "r.json").read_text()


async def test_a_retry_after_past_the_deadline_is_named_as_such(
    mocked: aioresponses, client: ApiClient
) -> None:
    """A 429 whose Retry-After (an hour: a per-hour window) lies past the deadline: exit 5 at once, the
    line saying the server asked for that wait, not that the export waited the whole deadline."""
    token_ok(mocked)
    mocked.get(
        LIST,
        status=429,
        body=orjson.dumps({"code": 53, "message": "Too many requests"}),
        headers={"Retry-After": "3600"},
        repeat=True,
    )
    sleeps = Sleeps()
    with pytest.raises(IncompleteExport) as caught:
        await make_fetcher(client, sleeps, Counters()).page(0, 100)
    assert "asks to wait 3600 s" in str(caught.value)
    assert "Too many requests" in str(caught.value)
    assert sleeps.calls == []


async def test_a_proxy_page_instead_of_a_token_answer_is_still_quoted(
    mocked: aioresponses, client: ApiClient
) -> None:
    """A 200 HTML page where the token answer should be: retried, and the error quotes the page (it holds
    no token), which is what tells a proxy's login page apart."""
    mocked.post(TOKEN_URL, status=200, body=b"<html><title>Proxy login</title></html>", repeat=True)
    with pytest.raises(IncompleteExport) as caught:
        await make_fetcher(client, Sleeps(), Counters(), attempts=2).page(0, 100)
    assert "Proxy login" in str(caught.value)


async def test_orders_without_any_field_are_refused_by_parquet_not_lost(
    mocked: aioresponses, tmp_path: Path
) -> None:
    """An API whose orders are all {}: a Parquet file cannot hold rows without a column, so the export
    fails (exit 5) naming what to do, instead of a complete file of no rows."""
    token_ok(mocked)
    mocked.get(LIST, body=b"[{},{},{}]", headers={"X-Total-Count": "3"}, repeat=True)
    out = tmp_path / "o.parquet"
    with pytest.raises(ExportError, match=r"3 orders have no field at all.*JSONL or CSV") as caught:
        await export(_export_config(tmp_path, output=str(out), concurrency=1))
    assert caught.value.exit_code == 5
    assert not out.exists()
    assert orjson.loads((tmp_path / "r.json").read_bytes())["complete"] is False
