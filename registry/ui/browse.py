"""Pages for browsing: the repositories, one repository's tags, one manifest, and deletes."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.api.base import call, event
from registry.oci.digest import InvalidDigest, parse_digest
from registry.oci.reference import valid_name, valid_tag
from registry.service.browse import MAX_FILTER, TAG_ORDERS
from registry.ui.pages import (
    FormRefused,
    form,
    manifest_url,
    problem,
    public_origin,
    pull_or_refuse,
    render,
    repository_url,
    ui,
    viewer,
)

MAX_PAGE = 1_000_000


def page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return min(int(text), MAX_PAGE) if text.isdigit() and len(text) < 10 else 1


def text_param(request: Request, key: str) -> str:
    return request.query_params.get(key, "")[:MAX_FILTER]


def registry_host(request: Request) -> str:
    """The host[:port] docker pulls from: as the browser reached us, or as a trusted proxy forwards."""
    return public_origin(request).split("://", 1)[1][:255]


def checked_digest(text: str) -> str | None:
    try:
        return str(parse_digest(text)) if len(text) <= 200 else None
    except InvalidDigest:
        return None


async def repositories(request: Request) -> Response:
    current = await viewer(request)
    search = text_param(request, "q")
    listing = await call(
        request, ui(request).browse.repositories, current.pull_patterns(), search, page_number(request)
    )
    return render(request, "repositories.html", listing=listing, search=search)


async def repository(request: Request) -> Response:
    name = request.path_params["name"]
    current = await viewer(request)
    if not valid_name(name):
        return problem(request, 404, "That is not a repository name.")
    refused = await pull_or_refuse(request, name)
    if refused is not None:
        return refused
    order = request.query_params.get("sort", "name")
    order = order if order in TAG_ORDERS else "name"
    contains = text_param(request, "filter")
    tags = await call(request, ui(request).browse.tags, name, contains, order, page_number(request))
    if tags is None:
        return problem(request, 404, "No such repository, or you may not see it.")
    return render(
        request,
        "repository.html",
        name=name,
        tags=tags,
        order=order,
        contains=contains,
        host=registry_host(request),
        may_delete=current.may(name, "delete"),
        deleted=request.query_params.get("deleted", "")[:300],
    )


async def manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    current = await viewer(request)
    if not valid_name(name):
        return problem(request, 404, "That is not a repository name.")
    refused = await pull_or_refuse(request, name)
    if refused is not None:
        return refused
    if valid_tag(reference):
        digest = await call(request, ui(request).browse.digest, name, reference)
        if digest is None:
            return problem(request, 404, "No such tag.")
        return RedirectResponse(manifest_url(name, digest), status_code=303)
    digest = checked_digest(reference)
    detail = await call(request, ui(request).browse.manifest, name, digest) if digest else None
    if detail is None:
        return problem(request, 404, "No such manifest in this repository.")
    return render(
        request, "manifest.html", detail=detail, may_delete=current.may(name, "delete"), host=registry_host(request)
    )


def _target(fields: dict[str, str]) -> tuple[str, str] | None:
    """("tag", name) or ("digest", digest) from a delete form or query, when well formed."""
    if fields.get("tag"):
        return ("tag", fields["tag"]) if valid_tag(fields["tag"]) else None
    digest = checked_digest(fields.get("digest", ""))
    return ("digest", digest) if digest else None


async def delete(request: Request) -> Response:
    """GET asks for confirmation; POST deletes, or shows why it may not."""
    name = request.path_params["name"]
    current = await viewer(request)
    if not valid_name(name):
        return problem(request, 404, "That is not a repository name.")
    refused = await pull_or_refuse(request, name)
    if refused is not None:
        return refused
    if not current.may(name, "delete"):
        return problem(request, 403, f"You may not delete in {name}.")
    if request.method == "GET":
        target = _target(dict(request.query_params))
        if target is None:
            return problem(request, 400, "Say which tag or digest to delete.")
        return render(request, "confirm.html", name=name, kind=target[0], value=target[1], reason="")
    try:
        fields = await form(request, current.nonce)
    except FormRefused as refused_form:
        return problem(request, refused_form.status, refused_form.message)
    target = _target(fields)
    if target is None:
        return problem(request, 400, "Say which tag or digest to delete.")
    kind, value = target
    reason = await call(request, ui(request).browse.delete, name, value)
    if reason is not None:
        return render(request, "confirm.html", status=409, name=name, kind=kind, value=value, reason=reason)
    await call(request, event(request, "delete", name, **{kind: value}))
    label = f"{name}:{value}" if kind == "tag" else f"{name}@{value}"
    return RedirectResponse(repository_url(name) + "?" + urlencode({"deleted": label}), status_code=303)
