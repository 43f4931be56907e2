"""The event log (pushes, pulls, deletes), filtered, limited to what the viewer may pull."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.base import call
from registry.service.browse import PAGE
from registry.ui.browse import text_param
from registry.ui.pages import render, ui, viewer

ACTIONS = ("", "push", "pull", "delete")


async def activity(request: Request) -> Response:
    current = await viewer(request)
    action = request.query_params.get("action", "")
    action = action if action in ACTIONS else ""
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    repository, actor = text_param(request, "repository"), text_param(request, "actor")
    events = await call(request, ui(request).browse.events, current.may_pull, before, action, repository, actor)
    return render(
        request,
        "activity.html",
        events=events,
        action=action,
        repository=repository,
        actor=actor,
        actions=ACTIONS,
        older=events[-1].id if len(events) == PAGE else None,
    )
