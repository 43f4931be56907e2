"""`/token`: Docker's token endpoint (GET with Basic credentials, and the OAuth2 POST form)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from registry.api.auth import Authenticator, client_address, decode_basic
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


def _login(auth: Authenticator, name: str, password: str, address: str) -> str:
    if not auth.check_password(name, password, address):
        raise Unauthorized("invalid username or password")
    return name


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
    if offline and principal != ANONYMOUS:
        body["refresh_token"] = auth.authority.issue(principal, [], refresh=True)[0]
    return body


def _refresh(auth: Authenticator, refresh_token: str) -> str:
    try:
        claims = auth.authority.verify(refresh_token, refresh=True)
    except InvalidToken as exc:
        raise Unauthorized(f"invalid refresh token: {exc}") from None
    if auth.accounts.get(claims.subject) is None:
        raise Unauthorized("the account of this refresh token no longer exists")
    return claims.subject


async def token(request: Request) -> Response:
    auth: Authenticator = request.app.state.auth
    address = client_address(request)
    if request.method == "POST":
        # The OAuth2 form is urlencoded; parse_qs avoids a multipart dependency.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        fields = {k: v[0] for k, v in form.items()}
        scopes = form.get("scope", [])
        service, offline = fields.get("service"), fields.get("access_type") == "offline"
        grant_type = fields.get("grant_type")
        if grant_type == "password":
            principal = await call(
                request, _login, auth, fields.get("username", ""), fields.get("password", ""), address
            )
        elif grant_type == "refresh_token":
            principal = await call(request, _refresh, auth, fields.get("refresh_token", ""))
        else:
            raise TokenRequestInvalid(f"unsupported grant_type {grant_type!r}")
    else:
        params = request.query_params
        scopes, service = params.getlist("scope"), params.get("service")
        offline = params.get("offline_token") == "true"
        principal = ANONYMOUS
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            name, password = decode_basic(header[6:])
            principal = await call(request, _login, auth, name, password, address)
    if service and service != auth.authority.service:
        raise TokenRequestInvalid(f"this server issues tokens for service {auth.authority.service!r}, not {service!r}")
    body = await call(request, _issue, auth, principal, scopes, offline)
    return Response(json.dumps(body).encode(), headers={"Content-Type": "application/json"})
