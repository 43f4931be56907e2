"""A private registry over TLS: docker login/push/pull/logout, a pull-only user, a robot token, and podman and
skopeo with `--creds`, `--cert-dir` and an `auth.json`.

The registry serves only HTTPS with the CA it generated (`--tls-self-signed`). dockerd finds that CA in
`/etc/docker/certs.d/HOST:PORT/ca.crt` (installed for the module, removed afterwards); podman and skopeo are
given it with `--cert-dir`, and since they do not treat loopback as insecure they prove the certificate
verifies: without the CA they refuse it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import (
    BuiltImage,
    ContainerTools,
    Docker,
    Registry,
    berth_admin,
    launch_registry,
    restore_built_image,
)
from tests.e2e.images import sha256_digest
from tests.e2e.processes import require_root

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"
DOCKER_CERTS_D = Path("/etc/docker/certs.d")
# What docker says when the registry refuses a pull without credentials.
REFUSED = ("unauthorized", "denied", "no basic auth credentials", "may require 'docker login'")


@dataclass
class PrivateRegistry:
    registry: Registry
    passwords: dict[str, str]  # account -> password; the robot's is its token
    cert_dir: Path  # holds only ca.crt, for podman/skopeo --cert-dir

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def alias(self) -> str:
        """localhost:PORT, also in the certificate but not under /etc/docker/certs.d, which containers/image
        reads too: podman and skopeo use this name, so only `--cert-dir` can make them trust the CA."""
        return "localhost:" + self.host.rsplit(":", 1)[1]

    def manifest(self, repository: str, reference: str, user: str = "pusher") -> requests.Response:
        """An authorized GET (Basic credentials) of a manifest: what the registry holds, independent of docker."""
        return self.registry.get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, auth=(user, self.passwords[user])
        )

    def tags(self, repository: str) -> requests.Response:
        return self.registry.get(f"/v2/{repository}/tags/list", auth=("pusher", self.passwords["pusher"]))

    def catalog(self) -> set[str]:
        response = self.registry.get("/v2/_catalog", auth=("pusher", self.passwords["pusher"]))
        assert response.status_code == 200, response.text
        return set(response.json()["repositories"])


@pytest.fixture(scope="module")
def private_registry(e2e_dir: Path) -> Iterator[PrivateRegistry]:
    """The registry on HTTPS only, with a pusher (pull,push on e2e/*), a pull-only reader and a CI robot token."""
    require_root("installing a CA under /etc/docker/certs.d")
    data_dir = e2e_dir / "private-registry"
    passwords = {"pusher": "pusher-secret-1", "reader": "reader-secret-2"}
    for user, password in passwords.items():
        berth_admin(data_dir, "user", "add", user, "--password-stdin", stdin=password + "\n")
    berth_admin(data_dir, "grant", "pusher", "e2e/*", "pull,push")
    berth_admin(data_dir, "grant", "reader", "e2e/*", "pull")
    robot = berth_admin(data_dir, "token", "create", "ci-robot", "--grant", "e2e/*:pull,push", "--expires", "1d")
    passwords["ci-robot"] = robot.strip()
    assert passwords["ci-robot"] and "\n" not in passwords["ci-robot"], robot

    reg = launch_registry(data_dir, e2e_dir / "private-registry.log", tls_hosts="127.0.0.1,localhost")
    assert reg.ca is not None and reg.ca.exists()
    cert_dir = e2e_dir / "private-registry-certs"
    cert_dir.mkdir()
    shutil.copy(reg.ca, cert_dir / "ca.crt")

    made_certs_d = not DOCKER_CERTS_D.exists()
    docker_ca_dir = DOCKER_CERTS_D / reg.host
    docker_ca_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(reg.ca, docker_ca_dir / "ca.crt")
    try:
        yield PrivateRegistry(registry=reg, passwords=passwords, cert_dir=cert_dir)
    finally:
        reg.stop()
        shutil.rmtree(docker_ca_dir, ignore_errors=True)
        if made_certs_d:
            try:
                DOCKER_CERTS_D.rmdir()
            except OSError:
                pass


def _login(docker: Docker, private: PrivateRegistry, user: str, check: bool = True):
    return docker(
        "login", "-u", user, "--password-stdin", private.host, stdin=private.passwords[user].encode(), check=check
    )


def _push(docker: Docker, ref: str) -> str:
    pushed = docker("push", ref).stdout
    match = re.search(r": digest: (sha256:[0-9a-f]{64}) size: \d+", pushed)
    assert match, f"docker push printed no digest:\n{pushed}"
    return match.group(1)


def _output(result) -> str:
    return result.stdout + result.stderr


def test_registry_serves_only_tls_and_challenges_anonymous(private_registry: PrivateRegistry) -> None:
    reg = private_registry.registry
    # Plain HTTP on the same port gets no registry answer: every client below must be speaking TLS.
    try:
        plain = requests.get(f"http://{reg.host}/v2/", timeout=10)
    except requests.RequestException:
        pass
    else:
        assert "Docker-Distribution-API-Version" not in plain.headers, (plain.status_code, plain.headers)
    # The certificate verifies against the generated CA for both names it was made for.
    port = reg.host.rsplit(":", 1)[1]
    for name in ("127.0.0.1", "localhost"):
        response = requests.get(f"https://{name}:{port}/v2/", timeout=10, verify=str(reg.ca))
        assert response.status_code == 401
    # Closed: anonymous gets the Docker token challenge, with an absolute HTTPS realm.
    response = reg.get("/v2/e2e/private/manifests/1")
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="https://{reg.host}/token",service="berth"'), challenge
    assert 'scope="repository:e2e/private:pull"' in challenge, challenge
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_docker_login_push_pull_logout(
    docker: Docker, private_registry: PrivateRegistry, built_image: BuiltImage
) -> None:
    host = private_registry.host
    ref = f"{host}/e2e/private:1"
    restore_built_image(docker, built_image)  # whichever e2e test ran before
    try:
        login = _login(docker, private_registry, "pusher")
        assert "Login Succeeded" in login.stdout, _output(login)
        auth = json.loads((Path(docker.env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"]
        assert host in auth, auth

        docker("tag", built_image.name, ref)
        digest = _push(docker, ref)
        response = private_registry.manifest("e2e/private", "1")
        assert response.status_code == 200, response.text
        assert response.headers["Docker-Content-Digest"] == digest == sha256_digest(response.content)
        assert response.json()["config"]["digest"] == built_image.image_id

        # At most the base layer stays local (test_docker removes it): the others come back from the registry.
        docker("rmi", ref, built_image.name)
        assert not docker.has_image(built_image.image_id)
        pulled = docker("pull", ref).stdout
        assert f"Digest: {digest}" in pulled, pulled
        downloaded, kept = pulled.count("Pull complete"), pulled.count("Already exists")
        assert downloaded >= len(built_image.diff_ids) - 1 and downloaded + kept == len(built_image.diff_ids), pulled
        assert docker.inspect(ref)["Id"] == built_image.image_id
        paths = sorted(built_image.file_sha256)
        out = docker("run", "--rm", "--network=none", ref, "sha256sum", *paths).stdout
        assert {line.split()[1]: line.split()[0] for line in out.splitlines()} == built_image.file_sha256

        logout = docker("logout", host)
        assert "Removing login credentials" in _output(logout), _output(logout)
        docker("tag", ref, built_image.name)
        docker("rmi", ref)
        refused = docker("pull", ref, check=False)
        assert refused.returncode != 0, _output(refused)
        assert any(word in _output(refused) for word in REFUSED), _output(refused)
        assert not docker.has_image(ref)
    finally:
        docker("logout", host, check=False)
        restore_built_image(docker, built_image, ref)


def _build_other_image(docker: Docker, built_image: BuiltImage, work: Path, tag: str) -> None:
    """An image with a layer the registry has never seen, so a push would have to upload it."""
    work.mkdir(exist_ok=True)
    (work / "marker.bin").write_bytes(os.urandom(64 * 1024))
    (work / "Dockerfile").write_text(f"FROM {built_image.name}\nCOPY marker.bin /marker.bin\n")
    docker("build", "--network=none", "-t", tag, work)


def test_pull_only_user_push_denied_and_registry_unchanged(
    docker: Docker, private_registry: PrivateRegistry, built_image: BuiltImage, e2e_dir: Path
) -> None:
    host = private_registry.host
    ref = f"{host}/e2e/guarded:1"
    new_repo_ref = f"{host}/e2e/reader-new:1"
    other = "berth-e2e/other:1"
    restore_built_image(docker, built_image)
    try:
        _login(docker, private_registry, "pusher")
        docker("tag", built_image.name, ref)
        digest = _push(docker, ref)
        docker("logout", host)
        tags_before = private_registry.tags("e2e/guarded").json()
        catalog_before = private_registry.catalog()
        assert tags_before == {"name": "e2e/guarded", "tags": ["1"]}

        login = _login(docker, private_registry, "reader")
        assert "Login Succeeded" in login.stdout, _output(login)
        docker("rmi", ref)
        pulled = docker("pull", ref).stdout  # reading is allowed
        assert f"Digest: {digest}" in pulled, pulled

        # Overwriting the tag with another image, and creating a repository, are both refused.
        _build_other_image(docker, built_image, e2e_dir / "other-image", other)
        for target in (ref, new_repo_ref):
            docker("tag", other, target)
            refused = docker("push", target, check=False)
            assert refused.returncode != 0, _output(refused)
            assert "denied" in _output(refused).lower(), _output(refused)

        # Unchanged, as seen by an authorized client.
        assert private_registry.tags("e2e/guarded").json() == tags_before
        response = private_registry.manifest("e2e/guarded", "1")
        assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest
        assert private_registry.catalog() == catalog_before
        assert "e2e/reader-new" not in catalog_before
        missing = private_registry.manifest("e2e/reader-new", "1")
        assert missing.status_code == 404, missing.text
        # The reader's own view agrees.
        assert private_registry.manifest("e2e/guarded", "1", user="reader").headers["Docker-Content-Digest"] == digest
    finally:
        docker("logout", host, check=False)
        for name in (new_repo_ref, other):
            docker("rmi", name, check=False)
        restore_built_image(docker, built_image, ref)


def test_robot_token_is_a_docker_login_password(
    docker: Docker, private_registry: PrivateRegistry, built_image: BuiltImage
) -> None:
    host = private_registry.host
    ref = f"{host}/e2e/robot:1"
    restore_built_image(docker, built_image)  # whichever e2e test ran before
    try:
        login = _login(docker, private_registry, "ci-robot")
        assert "Login Succeeded" in login.stdout, _output(login)
        docker("tag", built_image.name, ref)
        digest = _push(docker, ref)
        assert private_registry.manifest("e2e/robot", "1").headers["Docker-Content-Digest"] == digest
        docker("rmi", ref)
        assert f"Digest: {digest}" in docker("pull", ref).stdout
        docker("logout", host)

        # A wrong secret is refused by docker login.
        wrong = docker("login", "-u", "ci-robot", "--password-stdin", host, stdin=b"not-the-token", check=False)
        assert wrong.returncode != 0 and "unauthorized" in _output(wrong).lower(), _output(wrong)
    finally:
        docker("logout", host, check=False)
        restore_built_image(docker, built_image, ref)


# --- podman and skopeo -----------------------------------------------------------------------------------------


def _podman_digest(podman: ContainerTools, ref: str) -> str:
    return json.loads(podman.podman("image", "inspect", ref).stdout)[0]["Digest"]


def test_podman_login_push_pull_with_creds(
    podman: ContainerTools, private_registry: PrivateRegistry, built_image: BuiltImage, e2e_dir: Path
) -> None:
    host, certs = private_registry.alias, private_registry.cert_dir
    creds = f"pusher:{private_registry.passwords['pusher']}"
    image_id = built_image.image_id.removeprefix("sha256:")
    ref = f"{host}/e2e/podman-auth:1"
    assert built_image.archive is not None
    podman.podman("load", "-i", built_image.archive)

    # This registry is not in podman's insecure list: without the CA its certificate is refused.
    untrusted = podman.podman("push", "--creds", creds, image_id, f"docker://{ref}", check=False)
    assert untrusted.returncode != 0 and "certificate" in _output(untrusted), _output(untrusted)

    password = private_registry.passwords["pusher"].encode()
    login = podman.podman(
        "login", "--cert-dir", certs, "--tls-verify=true", "-u", "pusher", "--password-stdin", host, stdin=password
    )
    assert "Login Succeeded" in _output(login), _output(login)
    stored = json.loads(Path(podman.env["REGISTRY_AUTH_FILE"]).read_text())["auths"]
    assert host in stored, stored
    # The stored login is enough to push.
    podman.podman("push", "--cert-dir", certs, image_id, f"docker://{host}/e2e/podman-auth:login")
    assert private_registry.manifest("e2e/podman-auth", "login").status_code == 200
    podman.podman("logout", host)
    assert host not in json.loads(Path(podman.env["REGISTRY_AUTH_FILE"]).read_text()).get("auths", {})

    digest_file = e2e_dir / "podman-auth.digest"
    podman.podman(
        "push", "--cert-dir", certs, "--creds", creds, "--digestfile", digest_file, image_id, f"docker://{ref}"
    )
    digest = digest_file.read_text().strip()
    response = private_registry.manifest("e2e/podman-auth", "1")
    assert response.status_code == 200 and response.headers["Docker-Content-Digest"] == digest

    podman.podman("rmi", "--all", "--force")
    anonymous = podman.podman("pull", "--cert-dir", certs, ref, check=False)
    assert anonymous.returncode != 0 and "unauthorized" in _output(anonymous).lower(), _output(anonymous)
    reader = f"reader:{private_registry.passwords['reader']}"
    podman.podman("pull", "--cert-dir", certs, "--creds", reader, ref)
    assert _podman_digest(podman, ref) == digest
    podman.podman("rmi", "--all", "--force")


def test_skopeo_creds_cert_dir_and_authfile(
    skopeo: ContainerTools, private_registry: PrivateRegistry, built_image: BuiltImage, e2e_dir: Path
) -> None:
    host, certs = private_registry.alias, private_registry.cert_dir
    password = private_registry.passwords["pusher"]
    ref = f"docker://{host}/e2e/skopeo-auth:1"
    assert built_image.archive is not None
    skopeo.skopeo(
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        f"pusher:{password}",
        f"docker-archive:{built_image.archive}",
        ref,
    )
    response = private_registry.manifest("e2e/skopeo-auth", "1")
    assert response.status_code == 200, response.text
    digest = response.headers["Docker-Content-Digest"]

    inspected = json.loads(skopeo.skopeo("inspect", "--creds", f"pusher:{password}", "--cert-dir", certs, ref).stdout)
    assert inspected["Digest"] == digest
    assert inspected["Name"] == f"{host}/e2e/skopeo-auth"

    authfile = e2e_dir / "skopeo-auth.json"
    token = base64.b64encode(f"reader:{private_registry.passwords['reader']}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    with_file = json.loads(skopeo.skopeo("inspect", "--authfile", authfile, "--cert-dir", certs, ref).stdout)
    assert with_file["Digest"] == digest

    raw = skopeo.skopeo("inspect", "--raw", "--authfile", authfile, "--cert-dir", certs, ref).stdout.encode()
    assert sha256_digest(raw) == digest

    anonymous = skopeo.skopeo("inspect", "--cert-dir", certs, ref, check=False)
    assert anonymous.returncode != 0 and "unauthorized" in _output(anonymous).lower(), _output(anonymous)
    wrong = skopeo.skopeo("inspect", "--creds", "pusher:wrong", "--cert-dir", certs, ref, check=False)
    assert wrong.returncode != 0 and "unauthorized" in _output(wrong).lower(), _output(wrong)
    untrusted = skopeo.skopeo("inspect", "--creds", f"pusher:{password}", ref, check=False)
    assert untrusted.returncode != 0 and "certificate" in _output(untrusted), _output(untrusted)
