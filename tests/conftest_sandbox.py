"""Helpers for the sandbox's own tests: a running sandbox with a logged-in aiohttp client, and replies read
in full. Imported by tests/test_sandbox*.py (``from conftest_sandbox import ...``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from exporter.sandbox import Sandbox, SandboxConfig

REQUESTS = "/ordering/b2b/v3/requests"


@dataclass
class Reply:
    """An HTTP answer, read in full."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def code(self) -> int:
        """The Orange error code of the body."""
        return int(self.json()["code"])

    @property
    def request_id(self) -> str:
        return self.headers["X-OAPI-Request-Id"]


@dataclass
class Api:
    """A client of one running sandbox, holding a valid token."""

    sb: Sandbox
    session: aiohttp.ClientSession
    token: str = ""

    def headers(self, **override: str | None) -> dict[str, str]:
        """The headers of a good data call; ``Name=None`` drops one, ``Name="x"`` replaces it."""
        headers: dict[str, str | None] = {
            "X-Api-Key": self.sb.api_key,
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
        }
        headers.update({name.replace("_", "-"): value for name, value in override.items()})
        return {name: value for name, value in headers.items() if value is not None}

    async def request_token(self, **form: str) -> Reply:
        """POST the token endpoint with the right credentials and ``form`` (client_credentials by default)."""
        auth = aiohttp.BasicAuth(self.sb.client_id, self.sb.client_secret)
        return await self.call(
            "POST", self.sb.token_url, auth=auth, data=form or {"grant_type": "client_credentials"}
        )

    async def login(self) -> None:
        reply = await self.request_token()
        assert reply.status == 200, reply.body
        self.token = reply.json()["access_token"]

    async def get(
        self,
        path: str = REQUESTS,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """GET ``path`` with good credentials unless ``headers`` says otherwise."""
        return await self.call(
            "GET", self.sb.base_url + path, params=params, headers=headers or self.headers()
        )

    async def page(self, **params: str | int) -> Reply:
        """One page of the list with these query parameters."""
        return await self.get(params={name: str(value) for name, value in params.items()})

    async def call(self, method: str, url: str, **kwargs: Any) -> Reply:
        started = time.perf_counter()
        async with self.session.request(method, url, **kwargs) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body, time.perf_counter() - started)

    async def walk(self, limit: int, **params: str) -> list[dict[str, Any]]:
        """Every page of the list, ``limit`` at a time, until a short page."""
        records: list[dict[str, Any]] = []
        while True:
            reply = await self.page(offset=len(records), limit=limit, **params)
            assert reply.status == 200, reply.body
            page = reply.json()
            records.extend(page)
            if len(page) < limit:
                return records


@asynccontextmanager
async def serve(**knobs: Any) -> AsyncIterator[Api]:
    """A sandbox with these knobs (100 orders unless told) and a client logged in to it."""
    config = SandboxConfig(**{"orders": 100, **knobs})
    async with Sandbox(config) as sb, aiohttp.ClientSession() as session:
        api = Api(sb, session)
        await api.login()
        yield api


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]
