"""The exception tree of orders-export.

::

    ExportError                      exit 5 unless a subclass says otherwise
    ├── UsageError                   exit 2: bad option, unwritable output, --resume that does not match
    ├── ApiError                     an answer of the API (or of a proxy in front of it)
    │   ├── CredentialsRefused       exit 3: client id/secret refused, or a 401 right after renewal
    │   ├── ApiKeyRefused            exit 3: 403 codes 50/51/52, the API key must be renewed through Orange
    │   ├── Unauthorized             401 codes 40/41/42 on a data call: renew the token once, then retry
    │   ├── RequestRejected          exit 4: 400 (bad parameter, filter or sort), 404, or a redirect
    │   └── RetryableError           worth another try after a delay
    │       ├── RateLimited          429 or 403 code 53; carries the server's Retry-After, if any
    │       ├── ServerError          500, 502, 503, 504 (and any other 5xx)
    │       ├── TransportError       connection refused/reset, timeout, body cut short
    │       └── BadResponse          a 200 whose body is not the JSON the call promises
    ├── IncompleteExport             exit 5: retries exhausted, or a gap the totals do not explain
    └── Interrupted                  exit 130: Ctrl-C or SIGTERM

"Retryable" is a class so that the retry loop's test is one ``isinstance``. Every error carries what a
person (or Orange support) needs: HTTP status, Orange code, request id, and the page offset; and none of
them ever holds a secret: messages are built from the server's words and our own, never from headers.
"""

from __future__ import annotations

from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret in it (of 3 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def scrub(exc: ExportError, secrets: Iterable[str]) -> None:
    """Take ``secrets`` out of the words of ``exc``: its message, and an API error's description (a server
    or a proxy may quote what it was sent: an API key, a token)."""
    secrets = tuple(secrets)
    exc.message = redact(exc.message, secrets)
    if isinstance(exc, ApiError) and exc.description:
        exc.description = redact(exc.description, secrets)


class ExportError(Exception):
    """Base of every error orders-export raises on purpose."""

    exit_code = 5

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ExportError):
    """The command or configuration cannot work as given."""

    exit_code = 2


class ApiError(ExportError):
    """An answer of the API (or of whatever stands between us and it) that is not the expected one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        description: str | None = None,
        request_id: str | None = None,
        offset: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.description = description
        self.request_id = request_id
        self.offset = offset
        self.url = url

    def __str__(self) -> str:
        parts = [self.message]
        if self.description and self.description != self.message:
            parts.append(f"({self.description})")
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code is not None:
            details.append(f"code {self.code}")
        if self.offset is not None:
            details.append(f"offset {self.offset}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if details:
            parts.append("[" + ", ".join(details) + "]")
        return " ".join(parts)


class CredentialsRefused(ApiError):
    """The token endpoint refused the client id/secret, or a renewed token was refused too."""

    exit_code = 3


class ApiKeyRefused(ApiError):
    """403 codes 50/51/52: the API key is wrong or expired and must be renewed through Orange."""

    exit_code = 3


class Unauthorized(ApiError):
    """401 on a data call: the token is missing, invalid or expired; renew it once and retry."""

    exit_code = 3


class RequestRejected(ApiError):
    """400 or 404: the API refused what was asked (a parameter, a filter, a sort, an unknown id)."""

    exit_code = 4


class RetryableError(ApiError):
    """A failure that another try, after a delay, may get past. ``retry_after``: the server's wish, in
    seconds, when it said one."""

    exit_code = 5
    retry_after: float | None = None


class RateLimited(RetryableError):
    """429, or 403 code 53: too many requests."""


class ServerError(RetryableError):
    """A 5xx answer."""


class TransportError(RetryableError):
    """The connection failed, timed out, or the body was cut short."""


class BadResponse(RetryableError):
    """A 2xx answer whose body or headers are not what the call promises (HTML, empty, not a JSON array)."""


class IncompleteExport(ExportError):
    """The export could not be proven complete: retries exhausted, or a gap the totals do not explain.
    ``resumable``: whether ``--resume`` can go on from what was committed (not when the gap was found at
    the end)."""

    exit_code = 5

    def __init__(self, message: str, *, resumable: bool = True) -> None:
        super().__init__(message)
        self.resumable = resumable


class Interrupted(ExportError):
    """Stopped by Ctrl-C or SIGTERM; what was committed is kept."""

    exit_code = 130


#: The message of an interruption that kept nothing.
NOTHING_KEPT = "interrupted: nothing was written under the final name"


class AlreadyComplete(Exception):
    """``--resume`` of a dataset whose manifest, written with the same parameters, is already there: a
    scheduler restarted a shard after the dataset was finished. Nothing is left to do; the run succeeds."""

    def __init__(self, message: str, uri: str) -> None:
        super().__init__(message)
        self.uri = uri
