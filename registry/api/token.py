"""`/token`: Docker's token endpoint (GET with Basic credentials, and the OAuth2 POST form)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from registry.api.auth import Authenticator, decode_basic
from registry.api.base import call
from registry.auth.access import ACTIONS, ANONYMOUS, Access, Grants, parse_scopes
from registry.auth.tokens import InvalidToken
from registry.errors import RegistryError, Unauthorized


class TokenRequestInvalid(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "invalid token request"


def _grants(auth: Authenticator, principal: str) -> Grants:
    if auth.is_open():
        return Grants([("*", ACTIONS)])
    return auth.grants(principal)


def _issue(auth: Authenticator, principal: str, scopes: list[str], offline: bool) -> dict[str, object]:
    wanted: list[Access] = parse_scopes(scopes)
    granted = _grants(auth, principal).grant(wanted)
    token, lifetime = auth.authority.issue("" if principal == ANONYMOUS else principal, granted)
    body: dict[str, object] = {
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
        "issued_at": datetime.now(UTC).isoformat(),
    }
    if offline and auth.refresh_tokens and principal != ANONYMOUS:
        body["refresh_token"] = auth.logins.refresh_token(principal)
    return body


def _refresh(auth: Authenticator, refresh_token: str) -> str:
    if not auth.refresh_tokens:
        raise Unauthorized("this registry issues no refresh tokens; log in with a password")
    try:
        claims = auth.authority.verify(refresh_token, refresh=True)
    except InvalidToken as exc:
        raise Unauthorized(f"invalid refresh token: {exc}") from None
    return auth.logins.refreshed(claims)


async def token(request: Request) -> Response:
    auth: Authenticator = request.app.state.auth
    if request.method == "POST":
        # The OAuth2 form is urlencoded; parse_qs avoids a multipart dependency.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        fields = {k: v[0] for k, v in form.items()}
        scopes = form.get("scope", [])
        service, offline = fields.get("service"), fields.get("access_type") == "offline"
        grant_type = fields.get("grant_type")
        if grant_type == "password":
            principal = fields.get("username", "")
            await auth.login(request, principal, fields.get("password", ""), challenge=False)
        elif grant_type == "refresh_token":
            principal = await call(request, _refresh, auth, fields.get("refresh_token", ""))
            # A refresh renews access, never itself: the refresh token keeps its own expiry.
            offline = False
        else:
            raise TokenRequestInvalid(f"unsupported grant_type {grant_type!r}")
    else:
        params = request.query_params
        scopes, service = params.getlist("scope"), params.get("service")
        offline = params.get("offline_token") == "true"
        principal = ANONYMOUS
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            principal, password = decode_basic(header[6:])
            await auth.login(request, principal, password, challenge=False)
    if service and service != auth.authority.service:
        raise TokenRequestInvalid(f"this server issues tokens for service {auth.authority.service!r}, not {service!r}")
    body = await call(request, _issue, auth, principal, scopes, offline)
    return Response(json.dumps(body).encode(), headers={"Content-Type": "application/json"})
