"""``orders-export sandbox``: one option per knob of SandboxConfig, then serve until Ctrl-C."""

from __future__ import annotations

from typing import Any

import click

from exporter.sandbox.config import (
    RATE_LIMIT_STYLES,
    RESULT_COUNT_STYLES,
    RETRY_AFTER_STYLES,
    SandboxConfig,
)
from exporter.sandbox.server import run_sandbox

_D = SandboxConfig()
_RATE = click.FloatRange(0, 1)
_SECONDS = click.FloatRange(min=0)

# Options whose name differs from their config field.
_FIELD_OF = {"drift_create": "drift_create_per_s", "drift_close": "drift_close_per_s"}


@click.command("sandbox", context_settings={"show_default": True, "max_content_width": 110})
@click.option("--host", default=_D.host, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="Port (0: any free port).")
@click.option("--orders", type=click.IntRange(min=0), default=100_000, help="Orders generated at start.")
@click.option("--seed", type=int, default=_D.seed, help="Same seed and orders, same data, byte for byte.")
@click.option(
    "--late-field-from", type=click.IntRange(min=0), help="Orders from this index on carry a new field."
)
@click.option(
    "--order-lines",
    type=click.IntRange(min=0),
    default=_D.order_lines,
    help="Each order carries this many line objects (~120 bytes each): wide orders.",
)
@click.option("--default-page-size", type=click.IntRange(min=1), default=_D.default_page_size)
@click.option(
    "--max-page-size", type=click.IntRange(min=1), default=_D.max_page_size, help="Larger limits are capped."
)
@click.option("--latency", type=_SECONDS, default=_D.latency, help="Seconds added to every data call.")
@click.option("--jitter", type=_SECONDS, default=_D.jitter, help="Up to this many more seconds, uniformly.")
@click.option("--client-id", default=_D.client_id)
@click.option("--client-secret", default=_D.client_secret)
@click.option("--api-key", default=_D.api_key)
@click.option("--token-lifetime", type=click.FloatRange(min=0, min_open=True), default=_D.token_lifetime)
@click.option(
    "--revoke-every", type=click.FloatRange(min=0, min_open=True), help="Revoke all tokens every N s."
)
@click.option("--expires-in-string", is_flag=True, help='Answer "expires_in" as a string.')
@click.option(
    "--token-rate-limit", type=click.FloatRange(min=0, min_open=True), help="Token requests per minute."
)
@click.option(
    "--rate-limit", type=click.FloatRange(min=0, min_open=True), help="Data calls per second, all clients."
)
@click.option(
    "--burst", type=click.IntRange(min=1), default=_D.burst, help="Calls allowed at once by --rate-limit."
)
@click.option(
    "--rate-limit-style",
    type=click.Choice(RATE_LIMIT_STYLES),
    default=_D.rate_limit_style,
    help="429, or 403 with Orange code 53.",
)
@click.option("--retry-after", type=click.Choice(RETRY_AFTER_STYLES), default=_D.retry_after)
@click.option(
    "--fail-500", type=_RATE, default=_D.fail_500, help="Probability of a 500 (code 1) per data call."
)
@click.option("--fail-503", type=_RATE, default=_D.fail_503, help="Probability of a 503 (code 5).")
@click.option("--fail-502-html", type=_RATE, default=_D.fail_502_html, help="Probability of a 502 with HTML.")
@click.option(
    "--drop-rate", type=_RATE, default=_D.drop_rate, help="Probability of a connection dropped mid-body."
)
@click.option(
    "--truncate-rate", type=_RATE, default=_D.truncate_rate, help="Probability of a 200 with cut JSON."
)
@click.option("--stall-rate", type=_RATE, default=_D.stall_rate, help="Probability of a stalled answer.")
@click.option("--stall-seconds", type=_SECONDS, default=_D.stall_seconds)
@click.option(
    "--result-count",
    type=click.Choice(RESULT_COUNT_STYLES),
    default=_D.result_count,
    help="X-Result-Count: correct, wrong or missing.",
)
@click.option(
    "--total-ignores-filters", is_flag=True, help="X-Total-Count counts all orders, filters or not."
)
@click.option(
    "--drift-create", type=_SECONDS, default=_D.drift_create_per_s, help="Orders created per second."
)
@click.option("--drift-close", type=_SECONDS, default=_D.drift_close_per_s, help="Orders closed per second.")
def sandbox_command(**options: Any) -> None:
    """Serve a simulator of the Ordering API v3 on HOST:PORT until Ctrl-C.

    It prints its base URL, token URL and the sandbox credentials to use. Drift starts with the first data
    call. GET /_sandbox/stats (no credentials) gives its counters.
    """
    fields = {_FIELD_OF.get(name, name): value for name, value in options.items()}
    try:
        config = SandboxConfig(**fields)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    run_sandbox(config)
