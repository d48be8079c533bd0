"""Answers in the gateway's words: Orange error bodies (English, or French on request), RFC 6749 token
errors, and the Retry-After header in its three styles."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping

import orjson
from aiohttp import web

from exporter.sandbox.config import RetryAfterStyle

JSON_TYPE = "application/json; charset=UTF-8"

# code -> (message, message in French, default description), after Orange's published error codes.
_ERRORS: dict[int, tuple[str, str, str]] = {
    1: ("Internal error", "Erreur interne", "The service encountered an unexpected error."),
    5: (
        "The service is temporarily unavailable",
        "Le service est temporairement indisponible",
        "The service is down for maintenance or overloaded: try again later.",
    ),
    28: (
        "Invalid query-string parameter value",
        "Valeur de paramètre de requête invalide",
        "One of the query-string parameters is invalid.",
    ),
    40: (
        "Missing credentials",
        "Identifiants manquants",
        "The requested service needs credentials, but none were provided.",
    ),
    41: (
        "Invalid credentials",
        "Identifiants invalides",
        "The requested service needs credentials, but the ones provided were invalid.",
    ),
    42: (
        "Expired credentials",
        "Identifiants expirés",
        "The requested service needs credentials, and the ones provided were out-of-date.",
    ),
    50: (
        "Access denied",
        "Accès refusé",
        "The application that makes the request is not authorized to access this endpoint.",
    ),
    52: (
        "Forbidden user",
        "Utilisateur non autorisé",
        "The API key is not valid for this service: it is wrong, expired or revoked.",
    ),
    53: (
        "Too many requests",
        "Trop de requêtes",
        "The application has made too many calls and has exceeded the rate limit for this service.",
    ),
    60: ("Resource not found", "Ressource introuvable", "The requested URI or resource does not exist."),
    61: ("Method not allowed", "Méthode non autorisée", "The URI does not support the requested method."),
}


def wants_french(request: web.Request) -> bool:
    """Whether the caller asked for French messages (``Accept-Language: fr...``)."""
    return request.headers.get("Accept-Language", "").lstrip().lower().startswith("fr")


def orange_error(
    status: int,
    code: int,
    *,
    french: bool = False,
    description: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An Orange error answer: ``{"code", "message", "description"}``."""
    message, message_fr, default_description = _ERRORS[code]
    body = {
        "code": code,
        "message": message_fr if french else message,
        "description": description or default_description,
    }
    return web.Response(
        status=status, body=orjson.dumps(body), headers={"Content-Type": JSON_TYPE, **(headers or {})}
    )


def oauth_error(status: int, error: str, description: str) -> web.Response:
    """An RFC 6749 section 5.2 error answer of the token endpoint."""
    headers = {"Content-Type": JSON_TYPE, "Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
    body = orjson.dumps({"error": error, "error_description": description})
    return web.Response(status=status, body=body, headers=headers)


def retry_after(style: RetryAfterStyle, wait: float, wall_time: float) -> dict[str, str]:
    """The Retry-After header (as a dict to merge) for a wait of ``wait`` seconds, in ``style``.

    Whole seconds, rounded up and at least 1, so that a client that obeys it does find a free slot.
    """
    seconds = max(1, math.ceil(wait))
    if style == "seconds":
        return {"Retry-After": str(seconds)}
    if style == "date":
        return {"Retry-After": email.utils.formatdate(wall_time + seconds, usegmt=True)}
    return {}
