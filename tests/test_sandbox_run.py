"""Running the sandbox: from a background thread, and as the `sandbox` command in its own process."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.sandbox import SandboxConfig, SandboxThread
from exporter.sandbox.cli import sandbox_command

ROOT = Path(__file__).resolve().parent.parent


def _token(token_url: str, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    request = urllib.request.Request(
        token_url, data=b"grant_type=client_credentials", headers={"Authorization": f"Basic {basic}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["access_token"])


def _list(base_url: str, api_key: str, token: str, query: str = "") -> tuple[list[dict[str, object]], str]:
    request = urllib.request.Request(
        f"{base_url}/ordering/b2b/v3/requests{query}",
        headers={"X-Api-Key": api_key, "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response), response.headers["X-Total-Count"]


def test_sandbox_thread_serves_blocking_clients_and_stops() -> None:
    """SandboxThread serves from its own loop; its ground truth matches; after exit the port is closed."""
    with SandboxThread(SandboxConfig(orders=30, seed=2)) as sb:
        token = _token(sb.token_url, sb.client_id, sb.client_secret)
        page, total = _list(sb.base_url, sb.api_key, token, "?limit=10&sort=-createdAt")
        assert total == "30"
        assert [order["id"] for order in page] == sb.expected_ids(sort="-createdAt")[:10]
        assert sb.stats()["tokens_issued"] == 1
        port = sb.port
    with pytest.raises(urllib.error.URLError):
        _list(f"http://127.0.0.1:{port}", "k", "t")


def test_sandbox_thread_raises_when_it_cannot_bind() -> None:
    """A port already taken makes start() raise the bind error, not hang."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError), SandboxThread(SandboxConfig(orders=1, port=taken.getsockname()[1])):
            pass


def test_sandbox_command_serves_until_sigterm() -> None:
    """`sandbox --port 0` prints URL and credentials, answers the seed's calls, and exits 0 on SIGTERM."""
    code = "from exporter.sandbox.cli import sandbox_command; sandbox_command()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--orders", "25", "--client-secret", "s3cret"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner: dict[str, str] = {}
        for line in process.stdout:
            name, _, value = line.strip().partition(":")
            banner[name.strip()] = value.strip()
            if line.startswith("Ctrl-C"):
                break
        assert banner["client secret"] == "s3cret"
        token = _token(banner["token URL"], banner["client id"], "s3cret")
        page, total = _list(banner["base URL"], banner["API key"], token, "?type=C_GENERIC_S1")
        assert total == str(len(page))
        assert {order["type"] for order in page} == {"C_GENERIC_S1"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_sandbox_command_has_an_option_per_knob() -> None:
    """--help lists an option for every knob."""
    result = CliRunner().invoke(sandbox_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--port", "--orders", "--seed", "--default-page-size", "--max-page-size", "--latency", "--jitter",
        "--rate-limit", "--burst", "--rate-limit-style", "--retry-after", "--token-lifetime",
        "--revoke-every",
        "--expires-in-string", "--token-rate-limit", "--fail-500", "--fail-503", "--fail-502-html",
        "--drop-rate", "--truncate-rate", "--stall-rate", "--stall-seconds", "--result-count",
        "--total-ignores-filters", "--drift-create", "--drift-close", "--late-field-from", "--client-id",
        "--client-secret", "--api-key", "--host",
    ):  # fmt: skip
        assert option in result.output, option


def test_sandbox_command_refuses_a_bad_config_as_usage_error() -> None:
    """A contradictory config exits 2 with the reason."""
    result = CliRunner().invoke(sandbox_command, ["--fail-500", "0.7", "--fail-503", "0.7"])
    assert result.exit_code == 2
    assert "fault rates must sum to at most 1" in result.output
