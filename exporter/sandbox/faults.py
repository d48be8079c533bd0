"""Injected faults: which one hits a data call (one seeded draw per call), and the answers that need more
than an error body (an HTML 502, a connection dropped mid-body, a body cut short)."""

from __future__ import annotations

import enum
import random

from aiohttp import web

from exporter.sandbox.config import SandboxConfig

BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class Fault(enum.Enum):
    """A fault kind; its value is its name in the stats."""

    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    BAD_GATEWAY_HTML = "502_html"
    DROP = "drop"
    TRUNCATE = "truncate"
    STALL = "stall"


# The faults that break an answer's body rather than replace the answer.
BODY_FAULTS = frozenset({Fault.DROP, Fault.TRUNCATE})


class FaultPlan:
    """Draws the fault (or none) of each data call from a generator seeded by the config's seed, so that a
    run that makes the same calls in the same order meets the same faults."""

    def __init__(self, cfg: SandboxConfig) -> None:
        self._rng = random.Random(f"{cfg.seed}:faults")
        rates = (
            (cfg.fail_500, Fault.SERVER_ERROR),
            (cfg.fail_503, Fault.UNAVAILABLE),
            (cfg.fail_502_html, Fault.BAD_GATEWAY_HTML),
            (cfg.drop_rate, Fault.DROP),
            (cfg.truncate_rate, Fault.TRUNCATE),
            (cfg.stall_rate, Fault.STALL),
        )
        self._thresholds: list[tuple[float, Fault]] = []
        total = 0.0
        for rate, fault in rates:
            if rate > 0:
                total += rate
                self._thresholds.append((total, fault))

    def draw(self) -> Fault | None:
        """The fault of the next data call, if any."""
        if not self._thresholds:
            return None
        x = self._rng.random()
        for threshold, fault in self._thresholds:
            if x < threshold:
                return fault
        return None


def bad_gateway() -> web.Response:
    """What a proxy in front of the API answers when the API is down: HTML, not JSON."""
    return web.Response(status=502, body=BAD_GATEWAY_HTML, headers={"Content-Type": "text/html"})


def truncated(response: web.Response) -> web.Response:
    """The same answer with its body cut in half: a complete HTTP message whose JSON is incomplete."""
    body = _body(response)
    headers = {name: value for name, value in response.headers.items() if name != "Content-Length"}
    return web.Response(status=response.status, body=body[: len(body) // 2], headers=headers)


async def send_dropped(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Send the answer's headers, with the full Content-Length, and half its body; then hang up."""
    body = _body(response)
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()  # close, not abort: what was written still goes out first
    return stream


def _body(response: web.Response) -> bytes:
    body = response.body
    return body if isinstance(body, bytes) else b""  # the handlers always give bytes
