"""Credentials from docker's config.json, credential helpers and podman's auth.json."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from client.credentials import Credentials, erase_credentials, load_credentials, store_credentials
from client.layout import Layout, store_name
from tests.client.conftest import USERS, Berth
from tests.client.images import build_image

HELPER = """#!{python}
import json, sys
from pathlib import Path
store = Path({store!r})
data = json.loads(store.read_text()) if store.exists() else {{}}
action = sys.argv[1]
if action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": server, **data[server]}}))
elif action == "store":
    entry = json.loads(sys.stdin.read())
    data[entry["ServerURL"]] = {{"Username": entry["Username"], "Secret": entry["Secret"]}}
    store.write_text(json.dumps(data))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    store.write_text(json.dumps(data))
"""


@pytest.fixture
def helper(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker-credential-berthtest` on PATH that keeps secrets in a JSON file."""
    bin_dir = isolated / "bin"
    bin_dir.mkdir()
    store = isolated / "helper-store.json"
    script = bin_dir / "docker-credential-berthtest"
    script.write_text(HELPER.format(python=sys.executable, store=str(store)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return store


def _config(isolated: Path, data: dict) -> None:
    path = isolated / "docker-config" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_auths_entries_in_their_several_spellings(isolated: Path) -> None:
    encoded = base64.b64encode(b"bob:pw:with:colons").decode()
    _config(
        isolated,
        {
            "auths": {
                "https://registry.example:5000/v1/": {"auth": encoded},
                "https://index.docker.io/v1/": {"identitytoken": "refresh-me"},
            }
        },
    )
    assert load_credentials("registry.example:5000") == Credentials("bob", "pw:with:colons")
    assert load_credentials("registry-1.docker.io") == Credentials(identity_token="refresh-me")
    assert load_credentials("other.example") is None


def test_podman_auth_file_is_a_fallback(isolated: Path) -> None:
    (isolated / "containers-auth.json").write_text(
        json.dumps({"auths": {"quay.example": {"auth": base64.b64encode(b"p:q").decode()}}})
    )
    assert load_credentials("quay.example") == Credentials("p", "q")


def test_store_and_erase_keep_the_file_private(isolated: Path) -> None:
    _config(isolated, {"auths": {}, "currentContext": "default"})
    store_credentials("reg.example", Credentials("u", "p"))
    path = isolated / "docker-config" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["currentContext"] == "default"
    assert load_credentials("reg.example") == Credentials("u", "p")
    assert erase_credentials("reg.example")
    assert load_credentials("reg.example") is None
    assert not erase_credentials("reg.example")


def test_creds_store_helper_round_trip(isolated: Path, helper: Path) -> None:
    _config(isolated, {"credsStore": "berthtest"})
    assert load_credentials("reg.example") is None
    store_credentials("reg.example", Credentials("carol", "s3cret"))
    assert json.loads(helper.read_text())["reg.example"] == {"Username": "carol", "Secret": "s3cret"}
    assert load_credentials("reg.example") == Credentials("carol", "s3cret")
    erase_credentials("reg.example")
    assert load_credentials("reg.example") is None


def test_cred_helpers_per_registry_and_identity_tokens(isolated: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example": {"Username": "<token>", "Secret": "idt"}}))
    _config(isolated, {"credHelpers": {"reg.example": "berthtest"}})
    assert load_credentials("reg.example") == Credentials(identity_token="idt")


def test_a_docker_login_through_a_helper_serves_berth(
    htpasswd_registry, isolated: Path, helper: Path, store: Layout, berth: Berth
) -> None:
    """What `docker login` left in a credential helper is used without a second login."""
    user, password = next(iter(USERS.items()))
    helper.write_text(json.dumps({htpasswd_registry.host: {"Username": user, "Secret": password}}))
    _config(isolated, {"credsStore": "berthtest"})
    ref = f"{htpasswd_registry.host}/helper/app:v1"
    pushed = build_image(store, store_name(ref), [{"h": b"helper"}])
    out = json.loads(berth("push", ref, "--format", "json").stdout)
    assert out["digest"] == pushed.digest


def test_login_through_a_helper_stores_there(htpasswd_registry, isolated: Path, helper: Path, berth: Berth) -> None:
    _config(isolated, {"credsStore": "berthtest"})
    berth("login", "-u", "alice", "--password-stdin", htpasswd_registry.host, input="wonderland\n")
    assert json.loads(helper.read_text())[htpasswd_registry.host]["Secret"] == "wonderland"
    config = json.loads((isolated / "docker-config" / "config.json").read_text())
    assert "auth" not in config["auths"].get(htpasswd_registry.host, {})
