"""Running the sandbox: in the current event loop (``Sandbox``), in a thread of its own (``SandboxThread``),
or in the foreground until Ctrl-C (``run_sandbox``). Both objects offer the same attributes and the same
ground-truth reads; the threaded one runs each read on the server's own loop, so it never races the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO, TypeVar

from aiohttp import web

from exporter.sandbox.app import STATS_PATH, TOKEN_PATH, SandboxApp
from exporter.sandbox.config import SandboxConfig
from exporter.sandbox.data import JSONObject

T = TypeVar("T")

_SHUTDOWN_SECONDS = 0.5  # how long stopping waits for calls in progress (a stalled one) before cutting them


class _SandboxFacade:
    """What both ways of running the sandbox offer: where it is, its credentials, and its ground truth."""

    config: SandboxConfig
    port: int = 0

    @property
    def base_url(self) -> str:
        """The API's base URL: the exporter appends ``/ordering/b2b/v3/requests``."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return self.base_url + TOKEN_PATH

    @property
    def stats_url(self) -> str:
        """GET it for the counters, no credentials needed."""
        return self.base_url + STATS_PATH

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def _read(self, read: Callable[[SandboxApp], T]) -> T:
        raise NotImplementedError

    def expected_ids(self, filters: Mapping[str, str] | None = None, sort: str | None = None) -> list[str]:
        """The ids a full walk of the list with these filters and sort gets now, in served order.

        ``filters`` and ``sort`` take the query string's syntax; a bad one raises ``QueryError``.
        """
        return self._read(lambda app: app.expected_ids(filters, sort))

    def expected_records(
        self, filters: Mapping[str, str] | None = None, sort: str | None = None
    ) -> list[JSONObject]:
        """The list items a full walk gets now, decoded, in served order."""
        return self._read(lambda app: app.expected_records(filters, sort))

    def detail(self, order_id: str) -> JSONObject | None:
        """The detail record of an open order as GET /requests/{id} serves it, or None (a 404)."""
        return self._read(lambda app: app.detail(order_id))

    def stats(self) -> dict[str, Any]:
        """The counters, as GET /_sandbox/stats answers them."""
        return self._read(lambda app: app.stats_snapshot())

    def now(self) -> float:
        """The sandbox's clock (``time.monotonic``), to mark the start of a window for ``stable_ids``."""
        return self._read(lambda app: app.clock())

    def stable_ids(
        self, filters: Mapping[str, str] | None = None, sort: str | None = None, since: float | None = None
    ) -> list[str]:
        """Under drift, the ids of the orders that existed from ``since`` (a ``now()`` reading; by default
        the first data call, when drift starts) until now, in served order: an export over that window must
        write each of them exactly once. Without drift, the same as ``expected_ids``."""
        return self._read(lambda app: app.stable_ids(filters, sort, since))

    def issued_tokens(self) -> list[str]:
        """Every access token issued so far (tests check that none leaks into an output or a log)."""
        return self._read(lambda app: app.tokens.issued_tokens())

    def created_ids(self) -> list[str]:
        """The ids of the orders drift created so far, oldest first."""
        return self._read(lambda app: app.created_ids())

    def closed_ids(self) -> list[str]:
        """The ids of the orders drift closed so far, in the order they were closed."""
        return self._read(lambda app: app.closed_ids())


class Sandbox(_SandboxFacade):
    """The sandbox served on ``config.host``:``config.port`` inside the running event loop.

    ``async with Sandbox(config) as sb:`` generates the orders, binds (port 0: a free port) and serves
    until the block ends.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._app: SandboxApp | None = None
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Sandbox:
        app = SandboxApp(self.config)
        runner = web.AppRunner(
            app.application(), access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._app, self._runner = app, runner
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._app = self._runner = None

    def _read(self, read: Callable[[SandboxApp], T]) -> T:
        if self._app is None:
            raise RuntimeError("the sandbox is not running: use it inside `async with Sandbox(...)`")
        return read(self._app)


class SandboxThread(_SandboxFacade):
    """The sandbox served from a background thread with its own event loop: ``with SandboxThread(cfg) as sb``.

    For callers without a running loop: tests that run the CLI in a subprocess, benchmarks.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sandbox: Sandbox | None = None
        self._failure: Exception | None = None

    def __enter__(self) -> SandboxThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Generate the orders and serve; returns once the sandbox answers (or raises why it cannot)."""
        if self._thread is not None:
            raise RuntimeError("this SandboxThread was already started")
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="sandbox", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._sandbox = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with Sandbox(self.config) as sandbox:
                self._sandbox, self.port = sandbox, sandbox.port
                self._ready.set()
                await self._stop.wait()
        except Exception as error:  # handed to the starting thread, which raises it
            self._failure = error
        finally:
            self._ready.set()

    def _read(self, read: Callable[[SandboxApp], T]) -> T:
        sandbox, loop = self._sandbox, self._loop
        if sandbox is None or loop is None:
            raise RuntimeError("the sandbox is not running: use it inside `with SandboxThread(...)`")
        answer: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                answer.set_result(sandbox._read(read))
            except Exception as error:
                answer.set_exception(error)

        loop.call_soon_threadsafe(run)
        return answer.result()


def run_sandbox(config: SandboxConfig | None = None, *, out: TextIO | None = None) -> None:
    """Serve the sandbox in the foreground until Ctrl-C or SIGTERM, after printing how to reach it."""
    asyncio.run(_serve_until_stopped(config or SandboxConfig(), out or sys.stdout))


async def _serve_until_stopped(config: SandboxConfig, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Sandbox(config) as sandbox:
            print(banner(sandbox), file=out, flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("sandbox stopped", file=out, flush=True)


def banner(sandbox: _SandboxFacade) -> str:
    """How to reach a running sandbox: URLs, the (sandbox-only) credentials, and the environment to set."""
    stats = sandbox.stats()
    cfg = sandbox.config
    return "\n".join(
        [
            f"orders-export sandbox: {stats['orders']['total']} orders (seed {cfg.seed}), "
            f"generated in {stats['orders']['generation_seconds']:.2f} s",
            f"  base URL:       {sandbox.base_url}",
            f"  token URL:      {sandbox.token_url}",
            f"  client id:      {sandbox.client_id}",
            f"  client secret:  {sandbox.client_secret}",
            f"  API key:        {sandbox.api_key}",
            f"  stats:          {sandbox.stats_url}",
            "To point orders-export at it:",
            f"  export ORANGE_BASE_URL={sandbox.base_url} ORANGE_TOKEN_URL={sandbox.token_url}",
            f"  export ORANGE_CLIENT_ID={sandbox.client_id} ORANGE_CLIENT_SECRET={sandbox.client_secret}"
            f" ORANGE_API_KEY={sandbox.api_key}",
            "Ctrl-C to stop.",
        ]
    )
