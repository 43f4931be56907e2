"""Every URL of the web interface, in one table, and how the app factory builds it."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from registry.metadata.web_sessions import WebSessions
from registry.service.administration import Administration
from registry.service.browse import BrowseService
from registry.ui import activity, admin, browse, signin
from registry.ui.pages import UI, make_templates
from registry.ui.sessions import SessionCodec

HERE = Path(__file__).parent
SESSION_SECONDS = 12 * 3600
REPOSITORY = "/repositories/{name:path}"

ROUTES: list[BaseRoute] = [
    Route("/", browse.repositories, methods=["GET"]),
    Route("/signin", signin.signin_form, methods=["GET"]),
    Route("/signin", signin.signin, methods=["POST"]),
    Route("/signout", signin.signout, methods=["POST"]),
    Route("/activity", activity.activity, methods=["GET"]),
    Route("/admin", admin.admin_page, methods=["GET"]),
    Route("/admin/{action}", admin.admin_action, methods=["POST"]),
    # Repository names contain slashes: the fixed `/-/` part (never a name component) ends them.
    Route(f"{REPOSITORY}/-/manifests/{{reference}}", browse.manifest, methods=["GET"]),
    Route(f"{REPOSITORY}/-/delete", browse.delete, methods=["GET", "POST"]),
    Route(REPOSITORY, browse.repository, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
]


def build_ui(
    session_key: str,
    signed_out: WebSessions,
    browse_service: BrowseService,
    administration: Administration,
    gc_grace: timedelta,
    untagged: bool,
) -> UI:
    return UI(
        templates=make_templates(HERE / "templates"),
        sessions=SessionCodec(bytes.fromhex(session_key), SESSION_SECONDS),
        signed_out=signed_out,
        browse=browse_service,
        admin=administration,
        gc_grace=gc_grace,
        gc_untagged=untagged,
    )


def new_session_key() -> str:
    return secrets.token_hex(32)
