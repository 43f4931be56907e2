"""The web interface with the real docker CLI: browse to an image docker pushed, compare the
pages with the registry's API, delete a tag in the page and see `docker pull` of it fail,
create a robot token in the page and `docker login` with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import BuiltImage, Docker, Registry, berth_admin, launch_registry, restore_built_image
from tests.ui.browser import shoot
from tests.ui.conftest import sign_in

pytestmark = pytest.mark.e2e

ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
ADMIN = ("admin", "admin-secret-7")


@pytest.fixture(scope="module")
def ui_registry(e2e_dir: Path) -> Iterator[Registry]:
    """A registry with one admin account, who may push, pull and delete in e2e/*."""
    data_dir = e2e_dir / "ui-registry"
    berth_admin(data_dir, "user", "add", ADMIN[0], "--admin", "--password-stdin", stdin=ADMIN[1] + "\n")
    berth_admin(data_dir, "grant", ADMIN[0], "e2e/*", "pull,push,delete")
    reg = launch_registry(data_dir, e2e_dir / "ui-registry.log")
    yield reg
    reg.stop()


def test_docker_image_through_the_web_interface(
    docker: Docker,
    built_image: BuiltImage,
    ui_registry: Registry,
    chromium: Any,
    screenshots: Path,
) -> None:
    host = ui_registry.host
    refs = [f"{host}/e2e/web:1", f"{host}/e2e/web:2"]
    restore_built_image(docker, built_image)
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        docker("login", "-u", ADMIN[0], "--password-stdin", host, stdin=ADMIN[1].encode())
        digests = {}
        for ref in refs:
            docker("tag", built_image.name, ref)
            pushed = docker("push", ref).stdout
            digests[ref] = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed).group(1)
        docker("logout", host)

        sign_in(page, ui_registry.url, ADMIN[0], ADMIN[1])
        page.click("text=e2e/web")
        page.wait_for_url(ui_registry.url + "/repositories/e2e/web")
        api_tags = ui_registry.get("/v2/e2e/web/tags/list", auth=ADMIN).json()["tags"]
        assert sorted(page.locator("a.tag").all_inner_texts()) == sorted(api_tags) == ["1", "2"]
        for ref in refs:
            tag = ref.rsplit(":", 1)[1]
            row = page.locator("tr", has=page.locator(f"a.tag:text-is('{tag}')"))
            assert row.locator("code.digest").get_attribute("title") == digests[ref]
            assert row.locator("td[data-label=Platforms]").inner_text() == f"{built_image_os_arch(docker, built_image)}"
            assert row.locator("td[data-label=By]").inner_text() == ADMIN[0]
        shoot(page, screenshots, "docker-repository")

        page.click("a.tag:text-is('1')")
        manifest = ui_registry.get("/v2/e2e/web/manifests/1", headers={"Accept": ACCEPT}, auth=ADMIN).json()
        layers = page.locator("#layers ~ table code.digest").evaluate_all("nodes => nodes.map(n => n.title)")
        assert layers == [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        # docker build's history: the Dockerfile's steps, with a layer for each COPY and RUN.
        history = page.locator("ol.history code.instruction").all_inner_texts()
        assert any("COPY" in step and "payload.bin" in step for step in history), history
        assert "/bin/sh" in page.inner_text("#config ~ dl")
        shoot(page, screenshots, "docker-manifest")

        # Delete tag 1 through the page: docker can no longer pull it, tag 2 still pulls.
        page.goto(ui_registry.url + "/repositories/e2e/web/-/delete?tag=1")
        page.click("button.danger:text-is('Delete')")
        page.wait_for_url(re.compile(r".*\?deleted="))
        for ref in refs:
            docker("rmi", ref, check=False)
        docker("login", "-u", ADMIN[0], "--password-stdin", host, stdin=ADMIN[1].encode())
        gone = docker("pull", refs[0], check=False)
        assert gone.returncode != 0 and "not found" in (gone.stdout + gone.stderr).lower(), gone.stderr
        docker("logout", host)
        # The page's own pull line (e2e/web has no `latest`) names a tag docker can pull.
        command, pull, pulled = page.inner_text(".pull code").split()
        assert (command, pull) == ("docker", "pull") and pulled == refs[1], pulled

        # A robot token made in the page is a docker login password.
        page.goto(ui_registry.url + "/admin")
        page.fill("#robot-name", "web-robot")
        page.fill("#robot-grants", "e2e/*:pull")
        page.click("text=Create robot token")
        secret = page.inner_text("#secret-value")
        login = docker("login", "-u", "web-robot", "--password-stdin", host, stdin=secret.encode())
        assert "Login Succeeded" in login.stdout
        assert f"Digest: {digests[refs[1]]}" in docker("pull", pulled).stdout
    finally:
        context.close()
        docker("logout", host, check=False)
        restore_built_image(docker, built_image, *refs)


def built_image_os_arch(docker: Docker, built_image: BuiltImage) -> str:
    info = docker.inspect(built_image.name)
    return f"{info['Os']}/{info['Architecture']}"


def test_web_interface_is_off_with_no_ui(e2e_dir: Path) -> None:
    reg = launch_registry(e2e_dir / "no-ui", e2e_dir / "no-ui.log", "--no-ui")
    try:
        assert requests.get(reg.url + "/", timeout=10).status_code == 404
        assert requests.get(reg.url + "/v2/", timeout=10).status_code == 200
    finally:
        reg.stop()


def test_cookies_are_secure_under_tls(e2e_dir: Path) -> None:
    data_dir = e2e_dir / "ui-tls"
    berth_admin(data_dir, "user", "add", ADMIN[0], "--password-stdin", stdin=ADMIN[1] + "\n")
    reg = launch_registry(data_dir, e2e_dir / "ui-tls.log", tls_hosts="127.0.0.1")
    try:
        http = requests.Session()
        form = http.get(reg.url + "/signin", timeout=10, verify=str(reg.ca))
        assert "secure" in form.headers["set-cookie"].lower()
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        signed = http.post(
            reg.url + "/signin",
            data={"csrf": token, "name": ADMIN[0], "password": ADMIN[1], "next": "/"},
            allow_redirects=False,
            timeout=30,
            verify=str(reg.ca),
        )
        cookie = next(c for c in signed.raw.headers.getlist("set-cookie") if c.startswith("berth_session="))
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "secure", "samesite", "max-age"} <= flags and "samesite=lax" in cookie.lower()
    finally:
        reg.stop()
