"""Administration pages for accounts with the admin role: accounts, robot tokens, grants,
quotas, retention, immutable tags, upstreams and replication (shown), and garbage collection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.base import call
from registry.service.administration import Administration, Refused
from registry.service.policies import human
from registry.ui.pages import FormRefused, Viewer, form, problem, render, to_signin, ui, viewer

MAX_GRANT_LINES = 20


def _overview(admin: Administration) -> dict[str, Any]:
    return {
        "accounts": admin.users(),
        "grants": admin.grants(),
        "quotas": admin.quotas(),
        "retention": admin.retention(),
        "immutable": admin.immutable(),
        "runs": admin.gc_runs(),
        "upstreams": admin.upstreams(),
        "replications": admin.replications(),
        "replication_runs": admin.replication_runs(),
    }


async def _admin_or_refuse(request: Request) -> Viewer | Response:
    current = await viewer(request)
    if not current.signed_in:
        return to_signin(request)
    if not current.admin:
        return problem(request, 403, "Administration is for accounts with the admin role.")
    return current


async def _page(request: Request, status: int = 200, **context: Any) -> Response:
    data = await call(request, _overview, ui(request).admin)
    context.setdefault("done", request.query_params.get("done", "")[:300])
    context.setdefault("error", "")
    context.setdefault("secret", None)
    return render(request, "admin.html", status=status, **data, **context)


async def admin_page(request: Request) -> Response:
    current = await _admin_or_refuse(request)
    if isinstance(current, Response):
        return current
    return await _page(request)


def _grant_lines(text: str) -> list[tuple[str, str]]:
    """`PATTERN:ACTIONS` per line, as `berth token create --grant` takes them."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_GRANT_LINES:
        raise Refused(f"at most {MAX_GRANT_LINES} grants")
    found = []
    for line in lines:
        pattern, _, actions = line.rpartition(":")
        if not pattern:
            raise Refused(f"{line[:80]!r} is not PATTERN:ACTIONS")
        found.append((pattern, actions))
    return found


def _collect(admin: Administration, by: str, grace: timedelta, untagged: bool) -> str:
    report = admin.collect(grace, untagged, by)
    return (
        f"Garbage collection removed {len(report.blobs)} blobs, {len(report.manifests)} manifests, "
        f"{len(report.tags)} tags and {len(report.uploads)} uploads: {human(report.bytes_reclaimed)} reclaimed."
    )


def _user_add(a: Administration, f: dict[str, str], by: str) -> str:
    a.add_user(f.get("name", ""), f.get("password", ""), f.get("admin") == "on")
    return f"Added {f.get('name')}."


def _user_admin(a: Administration, f: dict[str, str], by: str) -> str:
    admin = f.get("admin") == "on"
    a.set_admin(f.get("name", ""), admin, by)
    return f"{f.get('name')} {'has' if admin else 'no longer has'} the admin role."


def _account_remove(a: Administration, f: dict[str, str], by: str) -> str:
    a.remove_account(f.get("name", ""), by)
    return f"Removed {f.get('name')}."


def _robot_revoke(a: Administration, f: dict[str, str], by: str) -> str:
    a.revoke_robot(f.get("name", ""))
    return f"Revoked the robot token {f.get('name')}."


def _grant(a: Administration, f: dict[str, str], by: str) -> str:
    a.grant(f.get("principal", ""), f.get("pattern", ""), f.get("actions", ""))
    return f"Granted {f.get('actions')} on {f.get('pattern')} to {f.get('principal')}."


def _revoke(a: Administration, f: dict[str, str], by: str) -> str:
    a.revoke(f.get("principal", ""), f.get("pattern", ""))
    return f"Revoked the grant of {f.get('principal')} on {f.get('pattern')}."


def _quota_set(a: Administration, f: dict[str, str], by: str) -> str:
    a.set_quota(f.get("pattern", ""), f.get("size", ""))
    return f"Quota of {f.get('pattern')} set to {f.get('size')}."


def _quota_remove(a: Administration, f: dict[str, str], by: str) -> str:
    a.remove_quota(f.get("pattern", ""))
    return f"Quota of {f.get('pattern')} removed."


def _retention_set(a: Administration, f: dict[str, str], by: str) -> str:
    a.set_retention(f.get("pattern", ""), f.get("tags", "*"), f.get("keep", ""), f.get("max_age", ""))
    return f"Retention for {f.get('pattern')} set."


def _retention_remove(a: Administration, f: dict[str, str], by: str) -> str:
    a.remove_retention(f.get("pattern", ""), f.get("tags", ""))
    return f"Retention for {f.get('pattern')} removed."


def _immutable_add(a: Administration, f: dict[str, str], by: str) -> str:
    a.add_immutable(f.get("pattern", ""), f.get("tags", ""))
    return f"Tags {f.get('tags')} of {f.get('pattern')} are immutable."


def _immutable_remove(a: Administration, f: dict[str, str], by: str) -> str:
    a.remove_immutable(f.get("pattern", ""), f.get("tags", ""))
    return f"Tags {f.get('tags')} of {f.get('pattern')} are no longer immutable."


# Each action: what it does with the form's fields and the admin's name; it returns what to say after.
ACTIONS: dict[str, Callable[[Administration, dict[str, str], str], str]] = {
    "user-add": _user_add,
    "user-admin": _user_admin,
    "account-remove": _account_remove,
    "robot-revoke": _robot_revoke,
    "grant": _grant,
    "revoke": _revoke,
    "quota-set": _quota_set,
    "quota-remove": _quota_remove,
    "retention-set": _retention_set,
    "retention-remove": _retention_remove,
    "immutable-add": _immutable_add,
    "immutable-remove": _immutable_remove,
}


async def admin_action(request: Request) -> Response:
    current = await _admin_or_refuse(request)
    if isinstance(current, Response):
        return current
    action = request.path_params["action"]
    try:
        fields = await form(request, current.nonce)
    except FormRefused as refused:
        return problem(request, refused.status, refused.message)
    admin = ui(request).admin
    try:
        if action == "robot-create":
            grants = _grant_lines(fields.get("grants", ""))
            secret = await call(request, admin.create_robot, fields.get("name", ""), grants, fields.get("expires", ""))
            # Shown once, in this response only (never in a URL or a log).
            return await _page(request, secret=(fields.get("name", ""), secret))
        if action == "gc-run":
            settings = ui(request)
            untagged = fields.get("untagged") == "on" or settings.gc_untagged
            message = await call(request, _collect, admin, current.name, settings.gc_grace, untagged)
        elif action in ACTIONS:
            message = await call(request, ACTIONS[action], admin, fields, current.name)
        else:
            return problem(request, 404, "No such administrative action.")
    except Refused as refused:
        return await _page(request, status=400, error=str(refused))
    return RedirectResponse("/admin?" + urlencode({"done": message[:300]}), status_code=303)
