"""The sandbox's token endpoint and the gate in front of /ordering: credentials, tokens, API key, ids."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest_sandbox import REQUESTS, serve


async def test_token_is_issued_for_the_right_client_credentials() -> None:
    """Basic auth + grant_type=client_credentials gives a Bearer token with an integer expires_in."""
    async with serve(token_lifetime=3600) as api:
        reply = await api.request_token()
        body = reply.json()
        assert reply.status == 200
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert body["access_token"]
        assert body["access_token"] != api.token
        assert reply.headers["Cache-Control"] == "no-store"
        assert api.sb.stats()["tokens_issued"] == 2


async def test_expires_in_is_a_string_when_the_knob_says() -> None:
    """expires_in_string answers "3600" instead of 3600."""
    async with serve(expires_in_string=True) as api:
        assert (await api.request_token()).json()["expires_in"] == "3600"


@pytest.mark.parametrize(
    "auth",
    [aiohttp.BasicAuth("sandbox-client", "wrong"), aiohttp.BasicAuth("someone", "sandbox-secret"), None],
)
async def test_wrong_or_missing_client_credentials_are_401_invalid_client(
    auth: aiohttp.BasicAuth | None,
) -> None:
    """A bad client id or secret, or none, is refused with an RFC 6749 body."""
    async with serve() as api:
        reply = await api.call("POST", api.sb.token_url, auth=auth, data={"grant_type": "client_credentials"})
        assert reply.status == 401
        assert reply.json()["error"] == "invalid_client"
        assert reply.json()["error_description"]
        assert reply.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "b2b:ordering:readonly"}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "admin"}, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "b2b:ordering:readonly"}, 200, None),
    ],
)
async def test_token_form_is_checked(form: dict[str, str], status: int, error: str | None) -> None:
    """Only grant_type=client_credentials is accepted, with the ordering scope or none."""
    async with serve() as api:
        reply = await api.request_token(**form)
        assert reply.status == status
        assert reply.json().get("error") == error


async def test_token_expires_after_its_lifetime() -> None:
    """A token is refused with 401 code 42 once its lifetime is over; expires_in rounds the lifetime up."""
    async with serve(token_lifetime=0.3) as api:
        assert (await api.request_token()).json()["expires_in"] == 1
        assert (await api.page()).status == 200
        await asyncio.sleep(0.35)
        reply = await api.page()
        assert (reply.status, reply.code) == (401, 42)
        await api.login()
        assert (await api.page()).status == 200


async def test_tokens_are_revoked_before_they_expire() -> None:
    """With revoke_every, a token valid for an hour is refused (401 code 42) after the revocation."""
    async with serve(token_lifetime=3600, revoke_every=0.3) as api:
        assert (await api.page()).status == 200
        await asyncio.sleep(0.35)
        reply = await api.page()
        assert (reply.status, reply.code) == (401, 42)
        assert "revoked" in reply.json()["description"]
        await api.login()
        assert (await api.page()).status == 200


async def test_token_endpoint_has_its_own_rate_limit() -> None:
    """token_rate_limit=60 per minute allows one token a second: the next one at once gets 429 code 53."""
    async with serve(token_rate_limit=60) as api:  # serve() took the one token allowed now
        reply = await api.request_token()
        assert (reply.status, reply.code) == (429, 53)
        assert reply.headers["Retry-After"] == "1"
        assert (await api.page()).status == 200  # data calls are not limited by it


@pytest.mark.parametrize(
    ("override", "status", "code"),
    [
        ({"X_Api_Key": None}, 403, 50),
        ({"X_Api_Key": "not-the-key"}, 403, 52),
        ({"Authorization": None}, 401, 40),
        ({"Authorization": "TOKEN"}, 401, 40),  # the seed's curl: the token without "Bearer "
        ({"Authorization": "Basic abc"}, 401, 40),
        ({"Authorization": "Bearer not-a-token"}, 401, 41),
    ],
)
async def test_gate_refuses_bad_key_or_token_with_orange_codes(
    override: dict[str, str | None], status: int, code: int
) -> None:
    """Every /ordering call needs the API key (else 403 50/52) and a Bearer token (else 401 40/41)."""
    async with serve() as api:
        headers = api.headers(**override)
        for path in (REQUESTS, REQUESTS + "/3-00000001"):
            reply = await api.get(path, headers=headers)
            assert (reply.status, reply.code) == (status, code)
            assert set(reply.json()) == {"code", "message", "description"}


async def test_bearer_prefix_is_named_when_missing() -> None:
    """The 401 for a token sent without "Bearer " says so."""
    async with serve() as api:
        reply = await api.get(headers=api.headers(Authorization=api.token))
        assert "Bearer" in reply.json()["description"]


async def test_messages_are_french_on_request() -> None:
    """Accept-Language: fr switches the error message to French."""
    async with serve() as api:
        reply = await api.get(headers=api.headers(Authorization=None, Accept_Language="fr-FR,fr;q=0.9"))
        assert reply.json()["message"] == "Identifiants manquants"
        reply = await api.get(headers=api.headers(Authorization=None))
        assert reply.json()["message"] == "Missing credentials"


async def test_every_response_carries_a_unique_request_id() -> None:
    """X-OAPI-Request-Id is on every kind of answer (ok, errors, 404, 405, token, stats), never twice."""
    async with serve() as api:
        replies = [
            await api.page(),
            await api.page(limit="x"),
            await api.get(headers=api.headers(Authorization=None)),
            await api.get(headers=api.headers(X_Api_Key=None)),
            await api.get(REQUESTS + "/nope"),
            await api.get("/nowhere"),
            await api.call("DELETE", api.sb.base_url + REQUESTS),
            await api.request_token(grant_type="password"),
            await api.request_token(),
            await api.get("/_sandbox/stats"),
        ]
        assert [reply.status for reply in replies] == [200, 400, 401, 403, 404, 404, 405, 400, 200, 200]
        request_ids = [reply.request_id for reply in replies]
        assert all(request_ids)
        assert len(set(request_ids)) == len(request_ids)


async def test_unknown_paths_and_methods_get_orange_bodies() -> None:
    """404 code 60 for a path that is not served, 405 code 61 for a method that is not allowed."""
    async with serve() as api:
        reply = await api.get("/ordering/b2b/v3/nothing")
        assert (reply.status, reply.code) == (404, 60)
        reply = await api.call("POST", api.sb.base_url + REQUESTS, headers=api.headers())
        assert (reply.status, reply.code) == (405, 61)
