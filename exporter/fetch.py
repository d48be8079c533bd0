"""One request, done right: rate limiter, then the auth header, then HTTP, then the retry policy.

Every fetcher task goes through one ``Fetcher``, so the limiter, the token and the counters are shared.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

from exporter.auth import TokenProvider
from exporter.client import ApiClient
from exporter.config import RetryPolicy
from exporter.errors import (
    ApiError,
    BadResponse,
    CredentialsRefused,
    IncompleteExport,
    RateLimited,
    RequestRejected,
    RetryableError,
    Unauthorized,
    scrub,
)
from exporter.ratelimit import RateLimiter
from exporter.report import Counters
from exporter.responses import Decode, Page, RawPage, decode_page
from exporter.retry import backoff_delay, should_retry

T = TypeVar("T")
log = logging.getLogger("exporter")
_EXPIRED = 42  # Orange's code for expired (or revoked) credentials


class Fetcher:
    """Fetches pages and orders with the shared limiter, token and retry policy, counting as it goes.

    ``decode`` turns every list page it gives (``page``, ``decoded``, ``refetch``) into orders: dicts
    (``responses.decode_page``, the default), or JSON lines (``responses.decode_lines``) for an export that
    writes JSONL and needs nothing else of the orders."""

    def __init__(
        self,
        client: ApiClient,
        *,
        auth: TokenProvider,
        limiter: RateLimiter,
        policy: RetryPolicy,
        counters: Counters,
        filters: Sequence[tuple[str, str]] = (),
        sort: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
        decode: Decode = decode_page,
        secrets: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._secrets = tuple(secrets)
        self._auth = auth
        self._limiter = limiter
        self._policy = policy
        self._counters = counters
        self._filters = tuple(filters)
        self._sort = sort
        # X-Total-Count of the list answer that arrived last (with the filters): the walk's end total.
        self.latest_total: int | None = None
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._decode = decode

    async def page(self, offset: int, limit: int, *, filtered: bool = True, need_total: bool = False) -> Page:
        """The page at ``offset``, decoded (``filtered=False``: without the filters, to compare totals;
        ``need_total``: an answer without a usable X-Total-Count is a bad one, to retry)."""
        filters = self._filters if filtered else ()

        async def call(authorization: str) -> Page:
            raw = await self._client.get_page(
                offset, limit, authorization, filters=filters, sort=self._sort, need_total=need_total
            )
            page = self._decoded_now(raw)
            if filtered:
                self._saw_total(raw)
            return page

        return await self._retrying(call, f"the page at offset {offset}")

    async def raw_page(self, offset: int, limit: int) -> RawPage:
        """The page at ``offset``, checked but not decoded (see ``responses.RawPage``)."""

        async def call(authorization: str) -> RawPage:
            raw = await self._client.get_page(
                offset, limit, authorization, filters=self._filters, sort=self._sort, need_total=False
            )
            self._saw_total(raw)
            return raw

        return await self._retrying(call, f"the page at offset {offset}")

    def _saw_total(self, raw: RawPage) -> None:
        # None when the latest answer had none: then the end total must be read afresh, not taken from
        # an earlier answer (a server may count only on its first page).
        self.latest_total = raw.total

    async def decoded(self, raw: RawPage, limit: int) -> Page:
        """``raw`` decoded; when its body turns out broken, the page fetched again (with retries)."""
        try:
            return self._decoded_now(raw)
        except BadResponse as exc:
            return await self.refetch(raw, limit, exc)

    def _decoded_now(self, raw: RawPage) -> Page:
        page = self._decode(raw)
        self._counters.surrogates_mended += page.mended
        return page

    async def refetch(self, raw: RawPage, limit: int, exc: BadResponse) -> Page:
        """The page of ``raw``, whose body the decoder refused with ``exc``, fetched again."""
        self._counters.retries += 1
        self._note(f"the page at offset {raw.offset}", exc, 0.0)
        return await self.page(raw.offset, limit)

    async def order(self, order_id: str) -> dict[str, Any] | None:
        """One order's details; None when the API does not know it (404: closed since it was listed, or
        never there)."""

        async def call(authorization: str) -> dict[str, Any]:
            return await self._client.get_order(order_id, authorization)

        try:
            return await self._retrying(call, f"order {order_id}")
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            return None

    async def _retrying(self, call: Callable[[str], Awaitable[T]], what: str) -> T:
        policy, counters, limiter = self._policy, self._counters, self._limiter
        started = self._clock()
        failures = 0
        just_renewed = False
        stale: str | None = None  # a refused Authorization, to renew before the next try
        while True:
            await limiter.acquire()
            authorization = ""
            try:
                try:
                    if stale is not None:
                        # Inside the try: a renewal that fails (429, 5xx, a reset) is retried like a request.
                        await self._auth.refused(stale)
                        stale = None
                    authorization = await self._auth.header()
                    counters.requests += 1
                    result = await call(authorization)
                except ApiError as exc:
                    # Before anyone logs, shows or reports it: the server's words may quote a secret.
                    scrub(exc, [*self._secrets, *self._auth.recent_tokens()])
                    raise
            except Unauthorized as exc:
                counters.token_refused += 1
                if just_renewed:
                    # A renewed token refused again: "invalid" means our credentials are no good; "expired"
                    # (42) can be a revocation racing us, worth a retry within the usual bounds.
                    failures += 1
                    if exc.code != _EXPIRED or failures >= policy.attempts:
                        raise CredentialsRefused(
                            f"a newly issued access token was refused too: {exc.message}",
                            status=exc.status,
                            code=exc.code,
                            request_id=exc.request_id,
                            offset=exc.offset,
                        ) from exc
                just_renewed = True
                counters.retries += 1
                self._note(what, exc, 0.0)
                stale = authorization
                continue
            except RateLimited as exc:
                just_renewed = just_renewed and stale is not None  # the renewal itself was refused
                counters.rate_limited += 1
                pause = limiter.on_rate_limited(exc.retry_after)
                waited = self._clock() - started
                if waited + pause >= policy.deadline:
                    why = (
                        f"the server asks to wait {pause:.0f} s more, past the {policy.deadline:.0f} s a "
                        f"request may take (rate limited for {waited:.0f} s so far)"
                        if exc.retry_after is not None
                        else f"still rate limited after {waited:.0f} s"
                    )
                    raise IncompleteExport(f"gave up on {what}: {why}: {exc}") from exc
                counters.retries += 1
                self._note(what, exc, pause)
                continue
            except RetryableError as exc:
                just_renewed = just_renewed and stale is not None
                failures += 1
                delay = backoff_delay(policy, failures, self._rand(), exc.retry_after)
                if not should_retry(policy, exc, failures, self._clock() - started, delay):
                    raise IncompleteExport(
                        f"gave up on {what} after {failures} tries in {self._clock() - started:.1f} s: {exc}"
                    ) from exc
                counters.retries += 1
                self._note(what, exc, delay)
                await self._sleep(delay)
                continue
            limiter.on_success()
            return result

    @staticmethod
    def _note(what: str, exc: Exception, delay: float) -> None:
        log.info("retrying %s in %.2f s: %s", what, delay, exc)
