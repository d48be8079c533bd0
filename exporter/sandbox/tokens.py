"""Access tokens: issued, expired after their lifetime, and revoked early when the config says so."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable


class TokenState(enum.Enum):
    """What the gate makes of a bearer token."""

    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"


class TokenIssuer:
    """Issues random tokens and tells valid ones from unknown, expired and revoked ones.

    With ``revoke_every``, time is cut into windows of that length from the issuer's start, and a token is
    revoked as soon as the window it was issued in ends: the server drops credentials before they expire.
    """

    def __init__(self, lifetime: float, revoke_every: float | None, clock: Callable[[], float]) -> None:
        self._lifetime = lifetime
        self._revoke_every = revoke_every
        self._clock = clock
        self._start = clock()
        self._issued_at: dict[str, float] = {}
        self.issued = 0

    def issue(self) -> str:
        """A new token, valid from now for the lifetime (unless revoked first)."""
        token = secrets.token_urlsafe(24)
        self._issued_at[token] = self._clock()
        self.issued += 1
        return token

    def issued_tokens(self) -> list[str]:
        """Every token issued so far, for tests that check no token leaks into an output."""
        return list(self._issued_at)

    def check(self, token: str) -> TokenState:
        """The state of ``token`` now."""
        issued_at = self._issued_at.get(token)
        if issued_at is None:
            return TokenState.UNKNOWN
        now = self._clock()
        if now - issued_at >= self._lifetime:
            return TokenState.EXPIRED
        every = self._revoke_every
        if every is not None and (issued_at - self._start) // every != (now - self._start) // every:
            return TokenState.REVOKED
        return TokenState.VALID

    def __repr__(self) -> str:
        return (
            f"TokenIssuer(lifetime={self._lifetime}, revoke_every={self._revoke_every}, issued={self.issued})"
        )
