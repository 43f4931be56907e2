"""Events delivered to a webhook exactly once across a restart, metrics, health and access logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RegistryProcess
from tests.registry.conftest import Api, berth

SECRET = "webhook-secret"


class Receiver:
    """A webhook endpoint on loopback that checks signatures and keeps what it got."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.bad_signatures = 0
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if self.headers.get("X-Berth-Signature") != expected:
                    receiver.bad_signatures += 1
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.events += json.loads(body)["events"]
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()


def start(data: Path, receiver: Receiver) -> RegistryProcess:
    return RegistryProcess(data, args=("--webhook-urls", receiver.url, "--webhook-secret", SECRET))


def test_events_reach_the_webhook_exactly_once_across_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    server = start(tmp_path, receiver)
    api = Api(server.url, "ops/events", requests.Session())
    receiver.fail_next = 1  # the first delivery attempt fails and must be retried
    assert api.put_manifest("v1", api.image([b"event layer"])).status_code == 201
    assert api.http.get(api.url("manifests/v1")).status_code == 200
    server.stop()  # the pull is still in memory; stopping writes it to the outbox
    server = start(tmp_path, receiver)
    try:
        api = Api(server.url, "ops/events", requests.Session())
        assert api.http.delete(api.url("manifests/v1")).status_code == 202
        receiver.wait_for(3)
        time.sleep(2)  # room for any duplicate to show up
    finally:
        server.stop()
    actions = sorted((e["action"], e["target"]["tag"]) for e in receiver.events)
    assert actions == [("delete", "v1"), ("pull", "v1"), ("push", "v1")]
    assert len({e["id"] for e in receiver.events}) == 3
    assert receiver.bad_signatures == 0
    push = next(e for e in receiver.events if e["action"] == "push")
    assert push["target"]["repository"] == "ops/events" and push["actor"]["name"] == "anonymous"
    assert push["request"]["addr"] == "127.0.0.1" and push["request"]["id"]
    listed = berth("events", "--format", "json", "--data-dir", str(tmp_path)).splitlines()
    assert [json.loads(line)["action"] for line in listed] == ["push", "pull", "delete"]


def test_metrics_health_and_request_ids(registry_url: str) -> None:
    api = Api(registry_url, "ops/metrics", requests.Session())
    api.push_blob(b"metrics blob")
    response = requests.get(f"{registry_url}/v2/", headers={"X-Request-Id": "trace-me"})
    assert response.headers["X-Request-Id"] == "trace-me"
    assert requests.get(f"{registry_url}/v2/").headers["X-Request-Id"]
    assert requests.get(f"{registry_url}/healthz").status_code == 200
    assert requests.get(f"{registry_url}/readyz").text == "ready\n"
    text = requests.get(f"{registry_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests_total = families["berth_http_requests"]
    routes = {(s.labels["route"], s.labels["status"]) for s in requests_total.samples}
    assert ("start_upload", "201") in routes and ("api_base", "200") in routes
    assert "berth_http_request_duration_seconds" in families
    assert sum(s.value for s in families["berth_http_request_bytes"].samples) >= len(b"metrics blob")
    assert "berth_uploads_in_flight" in families and "berth_gc_runs" in families


def test_json_access_log(tmp_path: Path) -> None:
    log = (tmp_path / "out.log").open("wb")
    import subprocess
    import sys

    from tests.conftest import ROOT, free_port, wait_http

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "d"),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", process)
        requests.get(f"http://127.0.0.1:{port}/v2/x/manifests/latest", headers={"X-Request-Id": "abc123"})
    finally:
        process.terminate()
        process.wait()
    lines = [json.loads(line) for line in (tmp_path / "out.log").read_text().splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line["request_id"] == "abc123")
    assert entry["status"] == 404 and entry["route"] == "get_manifest" and entry["method"] == "GET"
