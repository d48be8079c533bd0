"""The only module that imports aiohttp: one session, its pool and timeouts, and the mapping of aiohttp's
failures into our errors. Reading answers is ``responses``' job; deciding retries is ``fetch``'s."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from exporter.config import LIST_PATH, Credentials, Timeouts
from exporter.errors import TransportError
from exporter.responses import RawPage, TokenAnswer, check_page, error_for, parse_object, parse_token

_USER_AGENT = "orders-export/0.1"


class ApiClient:
    """HTTP calls to the Ordering API and its token endpoint. Use as an async context manager."""

    def __init__(
        self,
        *,
        base_url: str,
        token_url: str,
        credentials: Credentials,
        timeouts: Timeouts | None = None,
        pool_size: int = 16,
    ) -> None:
        self._list_url = base_url.rstrip("/") + LIST_PATH
        self._token_url = token_url
        self._credentials = credentials
        self._timeouts = timeouts or Timeouts()
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        t = self._timeouts
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=t.total, connect=t.connect, sock_read=t.read),
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request_token(self) -> TokenAnswer:
        """POST the client credentials to the token endpoint."""
        creds = self._credentials
        basic = base64.b64encode(f"{creds.client_id}:{creds.client_secret}".encode()).decode("ascii")
        status, body, headers = await self._call(
            "POST",
            self._token_url,
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            data=b"grant_type=client_credentials",
            offset=None,
        )
        if status >= 300:
            raise error_for(status, body, headers, now=time.time(), token_call=True)
        return parse_token(body, headers)

    async def get_page(
        self,
        offset: int,
        limit: int,
        authorization: str,
        *,
        filters: Sequence[tuple[str, str]] = (),
        sort: str | None = None,
        need_total: bool = True,
    ) -> RawPage:
        """One page of the list, from ``offset``, at most ``limit`` orders; checked, not decoded."""
        query = [("offset", str(offset)), ("limit", str(limit))]
        if sort:
            query.append(("sort", sort))
        query.extend(filters)
        status, body, headers = await self._call(
            "GET", self._list_url, params=query, headers=self._data_headers(authorization), offset=offset
        )
        if status >= 300:
            raise error_for(status, body, headers, offset=offset, now=time.time())
        return check_page(body, headers, offset, need_total=need_total)

    async def get_order(self, order_id: str, authorization: str) -> dict[str, Any]:
        """One order's detail record."""
        url = f"{self._list_url}/{quote(order_id, safe='')}"
        status, body, headers = await self._call(
            "GET", url, headers=self._data_headers(authorization), offset=None
        )
        if status >= 300:
            raise error_for(status, body, headers, now=time.time())
        return parse_object(body, headers)

    def _data_headers(self, authorization: str) -> dict[str, str]:
        return {"X-Api-Key": self._credentials.api_key, "Authorization": authorization}

    async def _call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        offset: int | None,
        data: bytes | None = None,
        params: Sequence[tuple[str, str]] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        session = self._session
        if session is None:
            raise RuntimeError("ApiClient used outside its 'async with' block")
        try:
            async with session.request(
                method, url, params=params, headers=headers, data=data, allow_redirects=False
            ) as resp:
                body = await resp.read()
                return resp.status, body, resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # str(exc) of aiohttp errors names the URL and the cause, never our headers.
            raise TransportError(f"{_describe(exc)} on {method} {url}", offset=offset, url=url) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the body was cut short"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    text = str(exc) or type(exc).__name__
    return f"connection failed ({text})"
