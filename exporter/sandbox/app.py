"""The HTTP face of the sandbox: routes, the gate every /ordering call passes, the handlers, ground truth.

Strategy: a data call takes the steps a real gateway takes, in its order: latency, API key, rate limit,
bearer token, then maybe an injected fault, then the answer. Drift is brought up to date just before the
answer is computed, and every ground-truth read does the same, so tests compare like with like. Every
response, errors included, gets its ``X-OAPI-Request-Id`` and is counted in one place, the
``on_response_prepare`` signal.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import BasicAuth, web

from exporter.sandbox.answers import JSON_TYPE, oauth_error, orange_error, retry_after, wants_french
from exporter.sandbox.config import SandboxConfig
from exporter.sandbox.data import JSONObject, detail_extras, id_of, index_of
from exporter.sandbox.drift import Drift
from exporter.sandbox.faults import BODY_FAULTS, Fault, FaultPlan, bad_gateway, send_dropped, truncated
from exporter.sandbox.query import RESERVED, QueryError, parse_page, parse_selection, selection_of
from exporter.sandbox.ratelimit import TokenBucket
from exporter.sandbox.stats import Stats
from exporter.sandbox.store import OrderStore, View
from exporter.sandbox.tokens import TokenIssuer, TokenState

TOKEN_PATH = "/oauth/v3/token"
REQUESTS_PATH = "/ordering/b2b/v3/requests"
STATS_PATH = "/_sandbox/stats"
SCOPES = frozenset({"b2b:ordering:readonly"})
_FORM_TYPE = "application/x-www-form-urlencoded"

DataHandler = Callable[[web.Request], web.Response]


class SandboxApp:
    """The sandbox's state (orders, tokens, limits, faults, counters) and the aiohttp application over it."""

    def __init__(self, cfg: SandboxConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        started = time.perf_counter()
        self.store = OrderStore(
            cfg.seed,
            cfg.orders,
            cfg.late_field_from,
            growing=cfg.drift_create_per_s > 0,
            order_lines=cfg.order_lines,
        )
        self.generation_seconds = time.perf_counter() - started
        self.stats = Stats()
        self.tokens = TokenIssuer(cfg.token_lifetime, cfg.revoke_every, clock)
        self.drift = Drift(cfg, self.store)
        self._limiter = TokenBucket(cfg.rate_limit, cfg.burst, clock) if cfg.rate_limit else None
        # The token endpoint's limit has no burst: one token per 60/N seconds.
        self._token_limiter = (
            TokenBucket(cfg.token_rate_limit / 60, 1, clock) if cfg.token_rate_limit else None
        )
        self._faults = FaultPlan(cfg)
        self._jitter = random.Random(f"{cfg.seed}:jitter")
        self._request_ids = itertools.count(1)
        self._request_id_prefix = f"sbx-{secrets.token_hex(4)}"

    def application(self) -> web.Application:
        """A new aiohttp application serving this sandbox."""
        app = web.Application()
        app.on_response_prepare.append(self._on_response_prepare)
        router = app.router
        router.add_post(TOKEN_PATH, self._token)
        router.add_route("*", TOKEN_PATH, self._not_allowed)
        router.add_get(REQUESTS_PATH, self._list_route)
        router.add_route("*", REQUESTS_PATH, self._not_allowed)
        router.add_get(REQUESTS_PATH + "/{id}", self._detail_route)
        router.add_route("*", REQUESTS_PATH + "/{id}", self._not_allowed)
        router.add_get(STATS_PATH, self._stats)
        router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    # -- ground truth ------------------------------------------------------------------------------------

    def expected_ids(self, filters: Mapping[str, str] | None, sort: str | None) -> list[str]:
        """The ids a full walk of the list with these filters and sort gets now, in served order."""
        return [id_of(i) for i in self._view(filters, sort).open]

    def expected_records(self, filters: Mapping[str, str] | None, sort: str | None) -> list[JSONObject]:
        """The list items a full walk gets now, decoded, in served order."""
        return [self.store.order(i) for i in self._view(filters, sort).open]

    def detail(self, order_id: str) -> JSONObject | None:
        """The detail record of an open order, as served, or None."""
        self.drift.catch_up(self.clock())
        index = index_of(order_id)
        if index is None or not self.store.is_open(index):
            return None
        decoded: JSONObject = orjson.loads(self._detail_body(index))
        return decoded

    def stable_ids(
        self, filters: Mapping[str, str] | None, sort: str | None, since: float | None
    ) -> list[str]:
        """The ids of the orders that existed from ``since`` (a ``clock()`` reading; None: the first data
        call) until now, in served order: what an export running over that window must write."""
        view = self._view(filters, sort)
        if since is None:
            since = self.drift.started_at if self.drift.started_at is not None else math.inf
        return [id_of(i) for i in self.store.existed_since(view, since)]

    def created_ids(self) -> list[str]:
        """The ids of the orders drift created, oldest first."""
        self.drift.catch_up(self.clock())
        return [id_of(i) for i in self.store.created]

    def closed_ids(self) -> list[str]:
        """The ids of the orders drift closed, in the order they were closed."""
        self.drift.catch_up(self.clock())
        return [id_of(i) for i in self.store.closed]

    def stats_snapshot(self) -> dict[str, Any]:
        """What GET /_sandbox/stats answers."""
        self.drift.catch_up(self.clock())
        store = self.store
        snapshot = self.stats.as_json()
        snapshot["orders"] = {
            "total": len(store),
            "open": store.open_count,
            "created": len(store.created),
            "closed": len(store.closed),
            "generation_seconds": round(self.generation_seconds, 3),
        }
        return snapshot

    def _view(self, filters: Mapping[str, str] | None, sort: str | None) -> View:
        self.drift.catch_up(self.clock())
        return self.store.view(selection_of(filters, sort, self.store.known_fields))

    # -- every response ------------------------------------------------------------------------------------

    async def _on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-OAPI-Request-Id"] = f"{self._request_id_prefix}-{next(self._request_ids):08d}"
        if request.path != STATS_PATH:
            self.stats.by_status[response.status] += 1

    def _error(
        self, request: web.Request, status: int, code: int, description: str | None = None, **headers: str
    ) -> web.Response:
        return orange_error(
            status, code, french=wants_french(request), description=description, headers=headers
        )

    # -- data calls ------------------------------------------------------------------------------------------

    async def _list_route(self, request: web.Request) -> web.StreamResponse:
        return await self._data_call(request, self._list)

    async def _detail_route(self, request: web.Request) -> web.StreamResponse:
        return await self._data_call(request, self._detail)

    async def _data_call(self, request: web.Request, handler: DataHandler) -> web.StreamResponse:
        stats = self.stats
        stats.started()
        stats.data_requests += 1
        self.drift.start(self.clock())
        try:
            if self.cfg.latency or self.cfg.jitter:
                await asyncio.sleep(self.cfg.latency + self._jitter.uniform(0, self.cfg.jitter))
            refusal = self._gate(request)
            if refusal is not None:
                return refusal
            fault = self._faults.draw()
            if fault is Fault.STALL:
                stats.faults[fault.value] += 1
                await asyncio.sleep(self.cfg.stall_seconds)
            elif fault is not None and fault not in BODY_FAULTS:
                stats.faults[fault.value] += 1
                return self._fault_answer(request, fault)
            self.drift.catch_up(self.clock())
            response = handler(request)
            if fault is not None and fault in BODY_FAULTS and response.status == 200:
                stats.faults[fault.value] += 1  # counted when applied: only an answer with data gets cut
                return await send_dropped(request, response) if fault is Fault.DROP else truncated(response)
            return response
        finally:
            stats.finished()

    def _gate(self, request: web.Request) -> web.Response | None:
        """The refusal a data call gets from the gateway, or None when it may pass."""
        headers = request.headers
        key = headers.get("X-Api-Key")
        if key is None:
            return self._error(request, 403, 50, "The X-Api-Key header is missing.")
        if key != self.cfg.api_key:
            return self._error(request, 403, 52)
        if self._limiter is not None:
            wait = self._limiter.take()
            if wait:
                return self._rate_limited(request, wait)
        authorization = headers.get("Authorization")
        if authorization is None:
            return self._error(request, 401, 40, "The Authorization header is missing.")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return self._error(request, 401, 40, 'The Authorization header lacks the "Bearer " prefix.')
        state = self.tokens.check(token.strip())
        if state is TokenState.UNKNOWN:
            return self._error(request, 401, 41)
        if state is TokenState.EXPIRED:
            return self._error(request, 401, 42)
        if state is TokenState.REVOKED:
            return self._error(request, 401, 42, "The access token was revoked before it expired.")
        return None

    def _rate_limited(self, request: web.Request, wait: float) -> web.Response:
        self.stats.rate_limited += 1
        status = 429 if self.cfg.rate_limit_style == "429" else 403
        return self._error(request, status, 53, **retry_after(self.cfg.retry_after, wait, time.time()))

    def _fault_answer(self, request: web.Request, fault: Fault) -> web.Response:
        if fault is Fault.SERVER_ERROR:
            return self._error(request, 500, 1)
        if fault is Fault.UNAVAILABLE:
            return self._error(request, 503, 5, **retry_after(self.cfg.retry_after, 1, time.time()))
        return bad_gateway()

    def _list(self, request: web.Request) -> web.Response:
        cfg, query = self.cfg, request.query
        try:
            offset, limit = parse_page(
                query.get("offset"), query.get("limit"), cfg.default_page_size, cfg.max_page_size
            )
            filters = [(name, value) for name, value in query.items() if name not in RESERVED]
            selection = parse_selection(query.get("sort"), filters, self.store.known_fields)
        except QueryError as error:
            return self._error(request, 400, 28, str(error))
        items, total = self.store.page(selection, offset, limit)
        if cfg.total_ignores_filters:
            total = self.store.open_count
        headers = {"Content-Type": JSON_TYPE, "X-Total-Count": str(total)}
        if cfg.result_count == "correct":
            headers["X-Result-Count"] = str(len(items))
        elif cfg.result_count == "wrong":
            headers["X-Result-Count"] = str(2 * len(items) + 7)  # never the real count
        return web.Response(body=b"[" + b",".join(items) + b"]", headers=headers)

    def _detail(self, request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        index = index_of(order_id)
        if index is None or not self.store.is_open(index):
            return self._error(request, 404, 60, f"No order has the id {order_id!r}.")
        return web.Response(body=self._detail_body(index), headers={"Content-Type": JSON_TYPE})

    def _detail_body(self, index: int) -> bytes:
        order = self.store.order(index)
        return orjson.dumps({**order, **detail_extras(self.cfg.seed, index, order)})

    # -- the token endpoint ------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats.started()
        stats.token_requests += 1
        try:
            return await self._token_answer(request)
        finally:
            stats.finished()

    async def _token_answer(self, request: web.Request) -> web.Response:
        cfg = self.cfg
        if self._token_limiter is not None:
            wait = self._token_limiter.take()
            if wait:
                return self._rate_limited(request, wait)
        try:
            credentials = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return oauth_error(401, "invalid_client", "Client authentication failed: use HTTP Basic.")
        if (credentials.login, credentials.password) != (cfg.client_id, cfg.client_secret):
            return oauth_error(
                401, "invalid_client", "Client authentication failed: unknown client or secret."
            )
        if request.content_type != _FORM_TYPE:
            return oauth_error(400, "invalid_request", f"The body must be {_FORM_TYPE}.")
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type is None:
            return oauth_error(400, "invalid_request", "The grant_type parameter is missing.")
        if grant_type != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported.")
        scope = form.get("scope")
        if isinstance(scope, str) and not SCOPES.issuperset(scope.split()):
            return oauth_error(400, "invalid_scope", f"Known scopes: {' '.join(sorted(SCOPES))}.")
        token = self.tokens.issue()
        self.stats.tokens_issued += 1
        expires_in = math.ceil(cfg.token_lifetime)
        body = {
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": str(expires_in) if cfg.expires_in_string else expires_in,
        }
        headers = {"Content-Type": JSON_TYPE, "Cache-Control": "no-store", "Pragma": "no-cache"}
        return web.Response(body=orjson.dumps(body), headers=headers)

    # -- the rest ------------------------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.stats_snapshot()), headers={"Content-Type": JSON_TYPE})

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error(request, 404, 60, f"Nothing is served at {request.path}.")

    async def _not_allowed(self, request: web.Request) -> web.Response:
        return self._error(request, 405, 61, f"{request.method} is not allowed on {request.path}.")
