"""The sandbox's OAuth2: the token endpoint and the bearer-token check of every API request.

The token table (token -> tenant, monotonic expiry) is the app's (tests read it); these
functions issue into it and check against it, under the app's lock.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from typing import TypeAlias

from werkzeug.wrappers import Request, Response

from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.responses import json_response, problem

Tokens: TypeAlias = OrderedDict[str, tuple[str, float]]  # token -> (tenant, monotonic expiry)


def token_response(
    config: SandboxConfig, tokens: Tokens, request: Request, rid: str, tenant: str
) -> Response:
    """The token endpoint: OAuth2 client credentials (basic auth or form), a new bearer token
    recorded in `tokens` (expired ones dropped)."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        client_id, client_secret = auth.username or "", auth.password or ""
    else:
        client_id = request.form.get("client_id", "")
        client_secret = request.form.get("client_secret", "")
    clients = {config.client_id: config.client_secret, **config.more_clients}
    expected_secret = clients.get(client_id)
    if expected_secret is None or not hmac.compare_digest(
        client_secret.encode(), expected_secret.encode()
    ):
        body = {"error": "invalid_client", "error_description": "Invalid client credentials"}
        return json_response({**body, "request_id": rid}, 401)
    if request.form.get("grant_type") != "client_credentials":
        body = {
            "error": "unsupported_grant_type",
            "error_description": "Only grant_type=client_credentials is supported",
        }
        return json_response({**body, "request_id": rid}, 400)
    now = time.monotonic()
    # Issued in order of expiry (one TTL per sandbox): the expired ones are the oldest, and
    # dropping them costs what expired, not every token still live.
    while tokens and next(iter(tokens.values()))[1] <= now:
        tokens.popitem(last=False)
    token = secrets.token_urlsafe(32)
    tokens[token] = (tenant, now + config.token_ttl)
    response = json_response(
        {
            "access_token": token,
            # Rounded down, so a client that renews at expiry never holds an expired token.
            "expires_in": int(config.token_ttl),
            "token_type": "Bearer",
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def authorize(tokens: Tokens, request: Request, rid: str, tenant: str) -> Response | None:
    """None when the request carries a live bearer token of `tenant`; else the 401/403."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        response = problem(401, rid, error_code="unauthorized", message="Missing access token.")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    issued = tokens.get(token)
    if issued is None or issued[1] <= time.monotonic():
        return problem(403, rid, error_code="forbidden", message="Invalid or expired access token.")
    if issued[0] != tenant:
        return problem(
            403,
            rid,
            error_code="forbidden",
            message="The access token was not issued for this tenant.",
        )
    return None
