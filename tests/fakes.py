"""Small real fakes shared by the unit tests."""

from __future__ import annotations

import io
from typing import Any


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class Unseekable(io.BytesIO):
    """A stdout-like stream: bytes go in, nothing can seek, tell or give a file descriptor."""

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise io.UnsupportedOperation("seek")

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")
