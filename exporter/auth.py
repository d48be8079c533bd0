"""OAuth 2.0 client-credentials token: one shared by every request, renewed ahead of expiry, and renewed
at most once at a time however many requests find it refused together.

The HTTP call itself is the client's (``fetch``); this module only decides when to make it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable

import anyio

from exporter.responses import TokenAnswer

_MAX_MARGIN = 60.0  # renew at most this long before expiry...
_MARGIN_SHARE = 0.2  # ...and at most this share of the token's lifetime before it
_TOKENS_KEPT = 16  # the latest tokens, remembered so that no error quotes one (see ``recent_tokens``)


class TokenProvider:
    """Hands out the ``Authorization`` header value; fetches a token only when needed."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[TokenAnswer]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = anyio.Lock()
        self._header: str | None = None
        self._renew_at = 0.0
        self._recent: collections.deque[str] = collections.deque(maxlen=_TOKENS_KEPT)
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        # Never the token itself.
        state = "none" if self._header is None else f"renew in {self._renew_at - self._clock():.1f}s"
        return f"<TokenProvider {state} fetched={self.tokens_fetched}>"

    async def header(self) -> str:
        """A valid ``Authorization`` value; fetches a token when there is none or it is about to expire."""
        header = self._header
        if header is not None and self._clock() < self._renew_at:
            return header
        return await self._renew(header)

    def recent_tokens(self) -> list[str]:
        """The access tokens handed out lately: secrets that an error or a log must not quote (a server or
        a proxy may echo the Authorization header it got)."""
        return list(self._recent)

    async def refused(self, header: str) -> str:
        """The server refused ``header`` (401): get a new token unless another request already did."""
        return await self._renew(header)

    async def _renew(self, stale: str | None) -> str:
        async with self._lock:
            current = self._header
            # Someone renewed while we waited for the lock: use theirs.
            if current is not None and current != stale and self._clock() < self._renew_at:
                return current
            answer = await self._fetch()
            self.tokens_fetched += 1
            self._recent.append(answer.access_token)
            token_type = "Bearer" if answer.token_type.lower() == "bearer" else answer.token_type
            self._header = f"{token_type} {answer.access_token}"
            lifetime = answer.expires_in if answer.expires_in is not None else 3600.0
            self._renew_at = self._clock() + lifetime - min(_MAX_MARGIN, _MARGIN_SHARE * lifetime)
            return self._header
