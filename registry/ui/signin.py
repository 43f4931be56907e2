"""Signing in with an account's password (robots cannot), and signing out."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.auth import Authenticator
from registry.api.base import call
from registry.errors import TooManyRequests
from registry.ui.pages import FormRefused, form, problem, public_origin, render, safe_next, ui, viewer
from registry.ui.sessions import SESSION_COOKIE, SIGNIN_COOKIE, new_nonce

SIGNIN_SECONDS = 3600
MAX_NAME = 255
MAX_PASSWORD = 1024


def _secure(request: Request) -> bool:
    return public_origin(request).startswith("https://")


def _signin_page(request: Request, status: int = 200, error: str = "", name: str = "") -> Response:
    """The form, with a fresh sign-in nonce in a cookie that its CSRF token is bound to."""
    nonce = new_nonce()
    response = render(
        request,
        "signin.html",
        status=status,
        error=error,
        name=name,
        next=safe_next(request.query_params.get("next")),
        signin_nonce=nonce,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=SIGNIN_SECONDS,
        path="/signin",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


async def signin_form(request: Request) -> Response:
    current = await viewer(request)
    if current.signed_in:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _signin_page(request)


def _person(auth: Authenticator, name: str) -> str | None:
    """The password hash of a person's account; None for a robot or no account."""
    account = auth.accounts.get(name)
    if account is None or account.kind != "user":
        return None
    return account.password_hash


async def signin(request: Request) -> Response:
    await viewer(request)
    try:
        fields = await form(request, request.cookies.get(SIGNIN_COOKIE))
    except FormRefused as refused:
        return _signin_page(request, refused.status, refused.message)
    name, password = fields.get("name", "")[:MAX_NAME], fields.get("password", "")
    target = safe_next(fields.get("next"))
    if not name or not password or len(password) > MAX_PASSWORD:
        return _signin_page(request, 400, "Give your account name and password.", name)
    auth: Authenticator = request.app.state.auth
    if await call(request, auth.is_open):
        return problem(request, 409, "This registry has no accounts yet: everyone may use it without signing in.")
    try:
        right = await auth.logins.check(name, password, auth.client_address(request))
    except TooManyRequests as exc:
        return _signin_page(request, 429, exc.message.capitalize() + ".", name)
    hashed = await call(request, _person, auth, name) if right else None
    if hashed is None:
        # Robot tokens are refused with the same words: they are for docker login, not people.
        return _signin_page(request, 401, "Wrong account name or password (robot tokens cannot sign in).", name)
    response = RedirectResponse(target, status_code=303)
    codec = ui(request).sessions
    response.set_cookie(
        SESSION_COOKIE,
        codec.issue(name, hashed),
        max_age=codec.lifetime,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


async def signout(request: Request) -> Response:
    current = await viewer(request)
    try:
        await form(request, current.nonce)
    except FormRefused as refused:
        return problem(request, refused.status, refused.message)
    if current.nonce is not None:
        expires = datetime.fromtimestamp(current.expires, UTC)
        await call(request, ui(request).signed_out.sign_out, current.nonce, expires)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response
