"""Upload behaviour a real registry will not show on demand: a failed upload restarts cleanly."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path

from client.copy import copy_image
from client.layout import Layout
from client.location import Options, open_source, open_target, parse_location
from tests.client.fakes import ScriptedServer, reply
from tests.client.images import build_image


def test_an_upload_refused_with_503_restarts_from_a_new_session(tmp_path: Path) -> None:
    state = {"puts": 0, "sessions": 0}

    def handle(request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = request.path
        if request.command == "HEAD":
            reply(request, 404)
        elif request.command == "POST":
            state["sessions"] += 1
            reply(request, 202, headers={"Location": f"/v2/app/blobs/uploads/s{state['sessions']}"})
        elif request.command == "PUT" and "/blobs/uploads/" in path:
            state["puts"] += 1
            if state["puts"] == 1:
                reply(request, 503, b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}')
            else:
                assert len(body) == length
                reply(request, 201)
        elif request.command == "PUT":
            reply(request, 201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})
        else:
            reply(request, 204)

    server = ScriptedServer(handle)
    try:
        layout = Layout.open(tmp_path / "oci", create=True)
        build_image(layout, "v1", [{"only": b"one layer"}])
        source = open_source(parse_location(f"oci:{tmp_path / 'oci'}:v1"), Options())
        target = open_target(parse_location(f"{server.host}/app:v1"), Options(jobs=1))
        result = copy_image(source, target, jobs=1)
        assert set(result.blobs.values()) == {"pushed"}
        methods = [(m, p.split("?")[0]) for m, p, _ in server.seen if m != "GET"]
        assert methods.count(("POST", "/v2/app/blobs/uploads/")) == 3, "two blobs, one of them twice"
        assert methods[-1] == ("PUT", "/v2/app/manifests/v1"), "the manifest goes last"
    finally:
        server.stop()
