"""Frozen configuration, built once by the CLI or the caller and passed down. No I/O here."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from exporter.errors import UsageError
from exporter.partitions import parse_specs
from exporter.plan import Shard
from exporter.writers import FORMATS, format_for_path

LIST_PATH = "/ordering/b2b/v3/requests"
TOKEN_PATH = "/oauth/v3/token"


@dataclass(frozen=True)
class Credentials:
    """Client id/secret for the token endpoint and the API key. Secrets never show in ``repr``."""

    client_id: str
    client_secret: str = field(repr=False)
    api_key: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        """The values that must never reach output, logs or errors: the client secret, the API key, and
        the HTTP Basic credential made of the client id and secret (what the token call sends)."""
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode("ascii")
        return tuple(s for s in (self.client_secret, self.api_key, basic if self.client_secret else "") if s)


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every HTTP call, in seconds: connecting, between two reads of the body, and in all."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """Retries per request: at most ``attempts`` tries and ``deadline`` seconds, exponential backoff with
    full jitter between ``base_delay`` and ``max_delay``. Rate-limited answers are bounded by the deadline
    only: they mean "later", not "broken"."""

    attempts: int = 8
    deadline: float = 300.0
    base_delay: float = 0.2
    max_delay: float = 20.0


@dataclass(frozen=True)
class ExportConfig:
    """Everything one export needs."""

    credentials: Credentials
    base_url: str
    token_url: str | None = None
    output: str = "-"
    format: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    sort: str | None = None
    page_size: int = 500
    concurrency: int = 16
    rate: float | None = None
    window: int | None = None
    report_path: str | None = None
    progress: bool = False
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    dedupe_horizon: int = 50_000
    resume: bool = False
    commit_rows: int = 500_000
    details: bool = False
    s3_endpoint: str | None = None  # for s3:// outputs; None: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or AWS
    part_rows: int = 1_000_000
    partition_by: tuple[str, ...] = ()
    shard: Shard | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"--base-url must start with http:// or https://, got {self.base_url!r}")
        if self.page_size < 1:
            raise UsageError("--page-size must be at least 1")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be a positive number of requests per second")
        if self.commit_rows < 1:
            raise UsageError("--commit-rows must be at least 1")
        if self.window is not None and self.window < 1:
            raise UsageError("the reorder window must hold at least 1 page")
        for name, _ in self.filters:
            if name in ("offset", "limit", "sort") or not name:
                raise UsageError(f"--filter {name!r}: use --sort/--page-size, filters name order attributes")
        if self.sort is not None and self.sort.strip():
            for part in (part.strip() for part in self.sort.split(",")):
                name = part.removeprefix("-")
                if not name or name.startswith("-") or any(c.isspace() for c in name):
                    what = f"{part!r} is not a field name" if part else "a field name is empty"
                    raise UsageError(
                        f"--sort {self.sort!r}: {what}; write FIELD or -FIELD (descending), comma-separated, "
                        "e.g. --sort -createdAt,id"
                    )
        fmt = self.resolved_format
        self._check_dataset(fmt)
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
        if self.output == "-" and fmt == "parquet":
            raise UsageError("Parquet cannot be streamed to stdout: give -o FILE.parquet, or -f jsonl/csv")

    @property
    def is_dataset(self) -> bool:
        """An output that ends with a slash is a dataset: Parquet part files and a manifest."""
        return self.output.endswith("/")

    def _check_dataset(self, fmt: str) -> None:
        if self.part_rows < 1:
            raise UsageError("--part-rows must be at least 1")
        if self.is_dataset:
            if fmt != "parquet":
                raise UsageError(f"a dataset (-o ending with /) is written as Parquet, not {fmt}; drop -f")
            parse_specs(self.partition_by)
            return
        if self.partition_by:
            raise UsageError("--partition-by needs a dataset: end -o with / (e.g. -o out/ or s3://bucket/x/)")
        if self.shard is not None and self.shard.count > 1:
            raise UsageError("--shard needs a dataset all shards write into: end -o with /")

    @property
    def resolved_format(self) -> str:
        """The format asked for, else the one the output's suffix names, else JSONL."""
        if self.format:
            return self.format
        if self.output == "-":
            return "jsonl"
        if self.is_dataset:
            return "parquet"
        fmt = format_for_path(self.output)
        if fmt is not None:
            return fmt
        raise UsageError(
            f"cannot tell the format of {self.output!r}: end it with .jsonl, .csv or .parquet, or give -f"
        )

    def query_key(self) -> dict[str, object]:
        """What decides which records an export writes and how: the API, the query, the format. No
        credential. Checkpoints, shard records and manifests are matched by it."""
        return {
            "base_url": self.base_url.rstrip("/"),
            "filters": [list(f) for f in self.filters],
            "sort": self.sort,
            "format": self.resolved_format,
            "page_size": self.page_size,
            "details": self.details,
        }

    @property
    def resolved_token_url(self) -> str:
        return self.token_url or self.base_url.rstrip("/") + TOKEN_PATH

    @property
    def list_url(self) -> str:
        return self.base_url.rstrip("/") + LIST_PATH

    @property
    def window_pages(self) -> int:
        """Pages fetched but not yet written, at most: enough to keep every fetcher busy past a slow page."""
        return self.window or max(4, 4 * self.concurrency)
