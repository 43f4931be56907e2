"""Accounts, grants, tokens and their refusals, against a live registry that has accounts."""

from __future__ import annotations

import base64
import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import RegistryProcess
from tests.registry.conftest import Api, berth, error_code, sha256

PASSWORDS = {"alice": "alice-secret", "reader": "reader-secret", "ops": "ops-secret"}


def admin(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    return berth(*args, "--data-dir", str(data_dir), stdin=stdin)


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    data = tmp_path_factory.mktemp("auth")
    for name, password in PASSWORDS.items():
        admin(data, "user", "add", name, "--password-stdin", stdin=password + "\n")
    admin(data, "grant", "alice", "team/*", "pull,push,delete")
    admin(data, "grant", "reader", "team/*", "pull")
    admin(data, "grant", "ops", "*", "pull")
    admin(data, "grant", "anonymous", "public/*", "pull")
    server = RegistryProcess(data)
    yield server
    server.stop()


def token_for(url: str, user: str | None, scope: str, **params: str) -> dict:
    auth = (user, PASSWORDS[user]) if user else None
    response = requests.get(f"{url}/token", params={"service": "berth", "scope": scope, **params}, auth=auth)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_anonymous_gets_a_bearer_challenge(closed: RegistryProcess) -> None:
    base = requests.get(f"{closed.url}/v2/")
    assert base.status_code == 401 and error_code(base) == "UNAUTHORIZED"
    assert base.headers["WWW-Authenticate"] == f'Bearer realm="{closed.url}/token",service="berth"'
    pull = requests.get(f"{closed.url}/v2/team/app/manifests/latest")
    assert pull.status_code == 401
    assert 'scope="repository:team/app:pull"' in pull.headers["WWW-Authenticate"]
    push = requests.post(f"{closed.url}/v2/team/app/blobs/uploads/")
    assert 'scope="repository:team/app:pull,push"' in push.headers["WWW-Authenticate"]


def test_token_flow_push_and_pull(closed: RegistryProcess) -> None:
    granted = token_for(closed.url, "alice", "repository:team/app:pull,push")
    assert granted["token"] == granted["access_token"] and granted["expires_in"] == 300
    claims = jwt.decode(granted["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert claims["sub"] == "alice" and claims["aud"] == "berth"
    api = Api(closed.url, "team/app", bearer(granted["token"]))
    body = api.image([b"private layer"])
    assert api.put_manifest("v1", body).status_code == 201
    assert requests.get(f"{closed.url}/v2/").status_code == 401
    assert api.http.get(f"{closed.url}/v2/").status_code == 200
    reader = Api(
        closed.url, "team/app", bearer(token_for(closed.url, "reader", "repository:team/app:pull,push")["token"])
    )
    assert reader.http.get(reader.url("manifests/v1")).content == body


def test_read_only_user_is_denied_and_nothing_changes(closed: RegistryProcess) -> None:
    token = token_for(closed.url, "reader", "repository:team/ro:pull,push")
    assert jwt.decode(token["token"], options={"verify_signature": False})["access"][0]["actions"] == ["pull"]
    reader = Api(closed.url, "team/ro", bearer(token["token"]))
    refused = reader.http.post(reader.url("blobs/uploads/"))
    assert refused.status_code == 403 and error_code(refused) == "DENIED"
    basic = requests.Session()
    basic.auth = ("reader", PASSWORDS["reader"])
    assert basic.post(f"{closed.url}/v2/team/ro/blobs/uploads/").status_code == 403
    assert basic.get(f"{closed.url}/v2/team/ro/tags/list").status_code == 404
    alice = requests.Session()
    alice.auth = ("alice", PASSWORDS["alice"])
    assert alice.get(f"{closed.url}/v2/team/ro/tags/list").status_code == 404


def test_narrow_token_is_asked_to_come_back_with_more(closed: RegistryProcess) -> None:
    token = token_for(closed.url, "alice", "repository:team/narrow:pull")["token"]
    response = bearer(token).post(f"{closed.url}/v2/team/narrow/blobs/uploads/")
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_basic_auth_on_the_api_and_delete_grant(closed: RegistryProcess) -> None:
    http = requests.Session()
    http.auth = ("alice", PASSWORDS["alice"])
    api = Api(closed.url, "team/basic", http)
    digest = api.push_blob(b"basic auth blob")
    ops = requests.Session()
    ops.auth = ("ops", PASSWORDS["ops"])
    assert ops.get(api.url(f"blobs/{digest}")).content == b"basic auth blob"
    assert ops.delete(api.url(f"blobs/{digest}")).status_code == 403
    assert http.delete(api.url(f"blobs/{digest}")).status_code == 202
    wrong = requests.get(f"{closed.url}/v2/", auth=("alice", "wrong"))
    assert wrong.status_code == 401


def test_catalog_lists_only_what_the_caller_may_pull(closed: RegistryProcess) -> None:
    alice = ("alice", PASSWORDS["alice"])
    requests.post(f"{closed.url}/v2/team/one/blobs/uploads/?digest={sha256(b'1')}", data=b"1", auth=alice)
    requests.post(
        f"{closed.url}/v2/other/two/blobs/uploads/?digest={sha256(b'2')}", data=b"2", auth=alice
    )  # refused: alice has no grant on other/*
    alice_catalog = requests.get(f"{closed.url}/v2/_catalog", auth=alice).json()["repositories"]
    assert "team/one" in alice_catalog and "other/two" not in alice_catalog
    assert all(name.startswith("team/") for name in alice_catalog)
    assert requests.get(f"{closed.url}/v2/_catalog").json()["repositories"] == []


def test_anonymous_grant_makes_a_namespace_public(closed: RegistryProcess) -> None:
    alice = requests.Session()
    alice.auth = ("ops", PASSWORDS["ops"])
    writer = requests.Session()
    writer.auth = ("alice", PASSWORDS["alice"])
    anonymous = token_for(closed.url, None, "repository:public/tool:pull,push")
    claims = jwt.decode(anonymous["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "public/tool", "actions": ["pull"]}]
    assert requests.post(f"{closed.url}/v2/public/tool/blobs/uploads/").status_code == 401
    private = requests.get(f"{closed.url}/v2/team/app/tags/list")
    assert private.status_code == 401
    assert requests.get(f"{closed.url}/v2/public/tool/tags/list").status_code == 404


def test_mount_needs_pull_on_the_source(closed: RegistryProcess) -> None:
    alice = ("alice", PASSWORDS["alice"])
    digest = sha256(b"mount me")
    requests.post(f"{closed.url}/v2/team/src/blobs/uploads/?digest={digest}", data=b"mount me", auth=alice)
    mounted = requests.post(f"{closed.url}/v2/team/dst/blobs/uploads/?mount={digest}&from=team/src", auth=alice)
    assert mounted.status_code == 201
    admin(closed.data_dir, "user", "add", "mallory", "--password-stdin", stdin="mallory-secret\n")
    admin(closed.data_dir, "grant", "mallory", "mallory/*", "pull,push")
    mallory = ("mallory", "mallory-secret")
    refused = requests.post(f"{closed.url}/v2/mallory/steal/blobs/uploads/?mount={digest}&from=team/src", auth=mallory)
    assert refused.status_code == 202
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 8},
            "layers": [],
        }
    ).encode()
    stolen = requests.put(
        f"{closed.url}/v2/mallory/steal/manifests/x",
        data=body,
        auth=mallory,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert stolen.status_code == 400 and error_code(stolen) == "MANIFEST_BLOB_UNKNOWN"


def _server_key(closed: RegistryProcess) -> object:
    with sqlite3.connect(closed.data_dir / "registry.db") as conn:
        pem = conn.execute("select private_pem from signing_key").fetchone()[0]
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem.encode(), password=None)


def test_forged_expired_and_foreign_tokens_are_refused(closed: RegistryProcess) -> None:
    now = int(time.time())
    good = {
        "iss": "berth",
        "sub": "alice",
        "aud": "berth",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    key = _server_key(closed)
    url = f"{closed.url}/v2/team/app/tags/list"
    assert bearer(jwt.encode(good, key, algorithm="ES256")).get(url).status_code in (200, 404)
    forged = [
        jwt.encode(good, None, algorithm="none"),
        jwt.encode(good, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
        jwt.encode({**good, "exp": now - 3600, "iat": now - 4000, "nbf": now - 4000}, key, algorithm="ES256"),
        jwt.encode({**good, "aud": "another-registry"}, key, algorithm="ES256"),
        jwt.encode(good, "a-shared-secret-long-enough-for-hs256!!", algorithm="HS256"),
        base64.b64encode(b"garbage").decode(),
    ]
    for token in forged:
        response = bearer(token).get(url)
        assert response.status_code == 401, token
        assert error_code(response) == "UNAUTHORIZED"
    assert (
        requests.get(f"{closed.url}/token", params={"service": "other"}, auth=("alice", PASSWORDS["alice"])).status_code
        == 400
    )


def test_robot_token(closed: RegistryProcess) -> None:
    secret = admin(closed.data_dir, "token", "create", "ci-bot", "--grant", "team/ci:pull,push", "--expires", "1d")
    secret = secret.strip()
    assert secret.startswith("berth_") and "\n" not in secret  # only the secret on stdout, notes on stderr
    with sqlite3.connect(closed.data_dir / "registry.db") as conn:
        stored = conn.execute("select password_hash from account where name='ci-bot'").fetchone()[0]
    assert secret not in stored and stored.startswith("$2b$")
    response = requests.get(
        f"{closed.url}/token", params={"scope": "repository:team/ci:pull,push"}, auth=("ci-bot", secret)
    )
    assert response.status_code == 200
    api = Api(closed.url, "team/ci", bearer(response.json()["token"]))
    api.push_blob(b"from ci")
    admin(closed.data_dir, "token", "revoke", "ci-bot")
    assert requests.get(f"{closed.url}/token", auth=("ci-bot", secret)).status_code == 401


def test_failed_logins_are_throttled(closed: RegistryProcess) -> None:
    for _ in range(5):
        assert requests.get(f"{closed.url}/token", auth=("ops", "wrong")).status_code == 401
    throttled = requests.get(f"{closed.url}/token", auth=("ops", PASSWORDS["ops"]))
    assert throttled.status_code == 429 and error_code(throttled) == "TOOMANYREQUESTS"


def test_timing_does_not_reveal_accounts(closed: RegistryProcess) -> None:
    def timed(name: str) -> float:
        start = time.perf_counter()
        requests.get(f"{closed.url}/token", auth=(name, "not-the-password"))
        return time.perf_counter() - start

    existing = statistics.median(timed("reader") for _ in range(3))
    missing = statistics.median(timed(f"ghost{i}") for i in range(3))
    assert existing > 0.02 and missing > 0.02
    assert 0.5 < existing / missing < 2.0


def test_realm_follows_forwarded_headers_only_when_trusted(
    closed: RegistryProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}
    untrusted = requests.get(f"{closed.url}/v2/", headers=forwarded).headers["WWW-Authenticate"]
    assert f'realm="{closed.url}/token"' in untrusted
    data = tmp_path_factory.mktemp("proxied")
    admin(data, "user", "add", "someone", "--password-stdin", stdin="a-password\n")
    proxied = RegistryProcess(data, args=("--trust-proxy",))
    try:
        challenge = requests.get(f"{proxied.url}/v2/", headers=forwarded).headers["WWW-Authenticate"]
        assert 'realm="https://registry.example.com/token"' in challenge
    finally:
        proxied.stop()


def test_an_anonymous_token_without_access_is_told_its_scope_is_insufficient(closed: RegistryProcess) -> None:
    """Distribution's answer, which docker reads as final (DENIED); no token at all gets the plain challenge."""
    anonymous = requests.get(f"{closed.url}/token", params={"service": "berth", "scope": "repository:team/x:push,pull"})
    response = bearer(anonymous.json()["token"]).post(f"{closed.url}/v2/team/x/blobs/uploads/")
    assert response.status_code == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    plain = requests.post(f"{closed.url}/v2/team/x/blobs/uploads/")
    assert plain.status_code == 401 and "error=" not in plain.headers["WWW-Authenticate"]
