"""What every page handler shares: who is looking, rendering with strict headers, forms
with their CSRF check, and the redirects to sign-in."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from registry.api.auth import Authenticator
from registry.api.base import call
from registry.auth.access import ANONYMOUS, Grants
from registry.metadata.web_sessions import WebSessions
from registry.service.administration import Administration
from registry.service.browse import BrowseService
from registry.service.policies import human
from registry.ui.sessions import SESSION_COOKIE, SessionCodec, fingerprint

MAX_FORM = 64 * 1024
MAX_FIELDS = 64
# (X-Content-Type-Options: nosniff comes with every response, from the Observe middleware.)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class UI:
    templates: jinja2.Environment
    sessions: SessionCodec
    signed_out: WebSessions
    browse: BrowseService
    admin: Administration
    gc_grace: timedelta
    gc_untagged: bool


@dataclass
class Viewer:
    """Who looks at a page: an account with a session, or `anonymous`."""

    name: str = ANONYMOUS
    signed_in: bool = False
    admin: bool = False
    open_registry: bool = False
    grants: Grants = field(default_factory=lambda: Grants([]))
    nonce: str | None = None
    expires: int = 0  # the session's, in epoch seconds

    def may(self, repository: str, action: str) -> bool:
        return self.open_registry or self.grants.allows(repository, action)

    def may_pull(self, repository: str) -> bool:
        return self.may(repository, "pull")

    def pull_patterns(self) -> list[str] | None:
        """The name patterns of the viewer's pull grants (None: everything, an open registry)."""
        return None if self.open_registry else [p for p, actions in self.grants.rows if "pull" in actions]


class FormRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def ui(request: Request) -> UI:
    return request.app.state.ui


def _resolve(auth: Authenticator, state: UI, cookie: str | None) -> Viewer:
    """The viewer behind a session cookie; the account is read every time, so a removed
    account, a changed password, a lost role or a sign-out takes effect on the next page."""
    if auth.is_open():
        return Viewer(open_registry=True)
    session = state.sessions.read(cookie)
    if session is not None and not state.signed_out.signed_out(session.nonce):
        account = auth.accounts.get(session.name)
        valid = (
            account is not None
            and account.kind == "user"
            and (account.expires_at is None or account.expires_at > datetime.now(UTC))
            and fingerprint(account.password_hash) == session.fingerprint
        )
        if account is not None and valid:
            return Viewer(
                account.name, True, account.admin, False, auth.grants(account.name), session.nonce, session.expires
            )
    return Viewer(grants=auth.grants(ANONYMOUS))


async def viewer(request: Request) -> Viewer:
    """Who is looking (every handler asks first, which also starts the page's clock)."""
    found: Viewer | None = getattr(request.state, "viewer", None)
    if found is None:
        request.state.started = time.perf_counter()
        found = await call(request, _resolve, request.app.state.auth, ui(request), request.cookies.get(SESSION_COOKIE))
        request.state.viewer = found
        request.scope["berth.user"] = found.name
    return found


# rendering ---------------------------------------------------------------------------


def repository_url(name: str) -> str:
    return "/repositories/" + quote(name)


def manifest_url(name: str, digest: str) -> str:
    return f"/repositories/{quote(name)}/-/manifests/{quote(digest, safe=':')}"


def delete_url(name: str) -> str:
    return f"/repositories/{quote(name)}/-/delete"


def page_url(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed."""
    params = dict(request.query_params)
    params.update({k: str(v) for k, v in changes.items()})
    return request.url.path + "?" + urlencode({k: v for k, v in params.items() if v != ""})


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def seconds(value: int | None) -> str:
    """A policy's age as the `berth` commands take it (30d, 12h, 90m, 45s)."""
    if not value:
        return "—"
    for unit, length in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if value % length == 0:
            return f"{value // length}{unit}"
    return f"{value}s"


def short_digest(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else digest


def make_templates(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=human, when=when, short=short_digest, argv=shlex.join, seconds=seconds)
    env.globals.update(
        repository_url=repository_url, manifest_url=manifest_url, delete_url=delete_url, page_url=page_url
    )
    return env


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    started = time.perf_counter()
    current: Viewer = request.state.viewer
    nonce = current.nonce or context.pop("signin_nonce", None)
    html = (
        ui(request)
        .templates.get_template(template)
        .render(
            request=request,
            viewer=current,
            csrf=ui(request).sessions.csrf(nonce) if nonce else "",
            **context,
        )
    )
    now = time.perf_counter()
    # The whole handler (from the viewer's lookup) and the template alone: the benchmark reads both.
    timing = f"app;dur={(now - request.state.started) * 1000:.1f}, render;dur={(now - started) * 1000:.1f}"
    headers = {**HEADERS, "Server-Timing": timing}
    return HTMLResponse(html, status_code=status, headers=headers)


def problem(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "problem.html", status=status, message=message)


def to_signin(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)


async def pull_or_refuse(request: Request, repository: str) -> Response | None:
    """None when the viewer may pull `repository`; otherwise the sign-in redirect (anonymous)
    or a not-found page that does not tell whether the repository exists."""
    current = await viewer(request)
    if current.may(repository, "pull"):
        return None
    if not current.signed_in and not current.open_registry:
        return to_signin(request)
    return problem(request, 404, "No such repository, or you may not see it.")


def safe_next(target: str | None) -> str:
    """A local path to return to after sign-in; anything else (another site) goes home."""
    if not target or len(target) > 2048 or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return "/"
    return target


# forms -------------------------------------------------------------------------------


def public_origin(request: Request) -> str:
    """scheme://host as the browser sees it: the request's, or what a trusted proxy forwards
    (the same rule as the token realm's)."""
    return request.app.state.auth.realm(request).removesuffix("/token")


def same_origin(request: Request) -> bool:
    """A browser names the page a POST comes from; refuse one from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    direct = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin in (direct, public_origin(request))


async def form(request: Request, nonce: str | None) -> dict[str, str]:
    """The fields of a same-origin, urlencoded POST that carries the right CSRF token."""
    if not same_origin(request):
        raise FormRefused(403, "This form was sent from another site.")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise FormRefused(415, "Forms are sent as application/x-www-form-urlencoded.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormRefused(413, "The form is too large.")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "The form could not be read.") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    if not ui(request).sessions.check_csrf(nonce, fields.get("csrf")):
        raise FormRefused(403, "The form's security token is missing or stale; reload the page and try again.")
    return fields
