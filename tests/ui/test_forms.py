"""What the pages change: deletes (and their refusals), administration, CSRF and origin
checks, hostile input, activity, and sessions shared by replicas."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import RegistryProcess
from tests.ui.browser import DESKTOP, PHONE, labels_touching_values, low_contrast, shoot
from tests.ui.conftest import PASSWORDS, Pusher, Site, sign_in

ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def signed_in(site: Site, name: str) -> requests.Session:
    """A requests session signed in through the form (the CSRF token read from the page)."""
    http = requests.Session()
    form = http.get(site.url + "/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    response = http.post(
        site.url + "/signin", data={"csrf": token, "name": name, "password": PASSWORDS[name], "next": "/"}
    )
    assert response.status_code == 200 and "berth_session" in http.cookies, response.text
    return http


def csrf_of(http: requests.Session, url: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', http.get(url).text).group(1)


def manifest_status(site: Site, repository: str, reference: str) -> int:
    return requests.head(
        f"{site.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": ACCEPT},
        auth=("alice", PASSWORDS["alice"]),
    ).status_code


def test_delete_a_tag_through_the_page(page: Any, site: Site, screenshots: Path) -> None:
    pusher = Pusher(site.url, ("alice", PASSWORDS["alice"]))
    pusher.image("team/tools", "doomed")
    sign_in(page, site.url, "alice")
    page.goto(site.url + "/repositories/team/tools")
    row = page.locator("tr", has=page.locator("a.tag:text-is('doomed')"))
    row.locator("text=Delete tag").click()
    assert "will be removed" in page.inner_text("main")
    shoot(page, screenshots, "confirm-delete")
    page.click("button.danger:text-is('Delete')")
    page.wait_for_url(re.compile(r".*/repositories/team/tools\?deleted="))
    assert "Deleted team/tools:doomed." in page.inner_text(".done")
    assert "doomed" not in page.locator("a.tag").all_inner_texts()
    assert manifest_status(site, "team/tools", "doomed") == 404
    assert manifest_status(site, "team/tools", "latest") == 200


def test_refused_deletes_show_the_reason(page: Any, site: Site) -> None:
    site.admin("immutable", "add", "team/*", "v*")
    pusher = Pusher(site.url, ("alice", PASSWORDS["alice"]))
    digest = pusher.image("team/tools", "v1")
    try:
        sign_in(page, site.url, "alice")
        page.goto(site.url + "/repositories/team/tools/-/delete?tag=v1")
        page.click("button.danger:text-is('Delete')")
        assert "immutable" in page.inner_text("#refusal")
        assert manifest_status(site, "team/tools", "v1") == 200

        # A manifest an index still references cannot go either.
        child = site.digests["team/app:1.0"]
        page.goto(site.url + f"/repositories/team/app/-/delete?digest={child}")
        page.click("button.danger:text-is('Delete')")
        assert "referenced by index" in page.inner_text("#refusal")
        assert manifest_status(site, "team/app", child) == 200
    finally:
        site.admin("immutable", "rm", "team/*", "v*")
    assert digest


def test_posts_without_the_csrf_token_or_from_another_site_change_nothing(site: Site) -> None:
    Pusher(site.url, ("alice", PASSWORDS["alice"])).image("team/tools", "keep")
    http = signed_in(site, "alice")
    url = site.url + "/repositories/team/tools/-/delete"
    token = csrf_of(http, url + "?tag=keep")
    refused = [
        http.post(url, data={"tag": "keep"}),
        http.post(url, data={"tag": "keep", "csrf": "0" * 64}),
        http.post(url, data={"tag": "keep", "csrf": token}, headers={"Origin": "http://evil.example"}),
        http.post(url, data={"tag": "keep", "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}),
        http.post(url, json={"tag": "keep", "csrf": token}),
        http.post(
            url,
            data="tag=keep&csrf=" + token + "&pad=" + "x" * 70_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        # Another session's token is no good either.
        http.post(url, data={"tag": "keep", "csrf": csrf_of(signed_in(site, "root"), site.url + "/admin")}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403, 415, 413, 403]
    assert manifest_status(site, "team/tools", "keep") == 200
    assert http.post(url, data={"tag": "keep", "csrf": token}, allow_redirects=False).status_code == 303
    assert manifest_status(site, "team/tools", "keep") == 404
    # Signing in needs the sign-in cookie's token too.
    assert (
        requests.post(site.url + "/signin", data={"name": "alice", "password": PASSWORDS["alice"]}).status_code == 403
    )


def test_hostile_query_paths_and_cookies_are_answered_plainly(site: Site) -> None:
    http = signed_in(site, "alice")
    for path in (
        "/?page=abc",
        "/?page=99999999999999999999",
        "/?page=-1",
        "/?q=" + "%" * 5000,
        "/repositories/team/app?sort=DROP%20TABLE&page=0",
        "/repositories/team/app?filter=%25_%5C",
        "/activity?before=1e9&action=<script>",
    ):
        response = http.get(site.url + path)
        assert response.status_code == 200, path
        assert "<script>" not in response.text.replace('<script src="/static/app.js" defer></script>', "")
    for path in (
        "/repositories/../../etc/passwd",
        "/repositories/Team/App",
        "/repositories/team/app/-/manifests/sha256:nothex",
        "/repositories/team/app/-/manifests/sha256:" + "0" * 64,
        "/repositories/" + "a/" * 300 + "b",
    ):
        assert http.get(site.url + path).status_code in (400, 404), path
    assert requests.get(site.url + "/static/../pages.py").status_code == 404
    # A forged, truncated or oversized cookie is simply no session.
    real = http.cookies["berth_session"]
    forged = real[:-2] + ("11" if real.endswith("00") else "00")  # the MAC's last byte changed, never kept
    for cookie in ("x", forged, "a" * 5000, "..."):
        page = requests.get(
            site.url + "/repositories/team/app", cookies={"berth_session": cookie}, allow_redirects=False
        )
        assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    # After sign-in, only local paths are followed.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        fresh = requests.Session()
        token = re.search(r'name="csrf" value="([^"]+)"', fresh.get(site.url + "/signin").text).group(1)
        response = fresh.post(
            site.url + "/signin",
            data={"csrf": token, "name": "alice", "password": PASSWORDS["alice"], "next": target},
            allow_redirects=False,
        )
        assert response.headers["location"] == "/", target


def test_administration(page: Any, site: Site, screenshots: Path) -> None:
    assert requests.get(site.url + "/admin", allow_redirects=False).headers["location"].startswith("/signin")
    site.admin(
        "upstream",
        "add",
        "hub",
        "https://mirror.example",
        "--prefix",
        "hub",
        "--username",
        "u",
        "--password-stdin",
        "--allow",
        "library/*",
        stdin="upstream-password\n",
    )
    site.admin(
        "replicate",
        "add",
        "offsite",
        "http://127.0.0.1:9",
        "--repository",
        "public/*",
        "--username",
        "r",
        "--password-stdin",
        stdin="replication-password\n",
    )
    # Nothing listens there: the run is recorded with its error.
    failed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from engine.cli import main; main()",
            "replicate",
            "run",
            "offsite",
            "--data-dir",
            str(site.process.data_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0, failed.stdout
    sign_in(page, site.url, "root")
    page.click("a[href='/admin']")
    upstreams = page.inner_text("#upstreams")
    assert "https://mirror.example" in upstreams and "library/*" in upstreams
    replication = page.locator("#replication tbody tr").first
    assert [
        replication.locator(f"td[data-label='{column}']").inner_text()
        for column in ("Name", "Direction", "Repositories", "When", "Credentials")
    ] == ["offsite", "to http://127.0.0.1:9", "public/*", "by hand", "r"]
    run = page.locator("#replication-runs tbody tr").first
    assert run.locator("td[data-label=Replication]").inner_text() == "offsite"
    assert run.locator("td[data-label=Trigger]").inner_text() == "manual"
    assert run.locator("td[data-label=Error]").inner_text() != "—"
    assert "upstream-password" not in page.content() and "replication-password" not in page.content()
    shoot(page, screenshots, "admin")
    shoot(page, screenshots, "admin", dark=True)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert labels_touching_values(page) == []
    page.set_viewport_size(DESKTOP)

    page.fill("#user-name", "bob")
    page.fill("#user-password", "bob-secret-5")
    page.click("text=Add account")
    assert "Added bob." in page.inner_text(".done")
    page.fill("#grant-principal", "bob")
    page.fill("#grant-pattern", "team/app")
    page.fill("#grant-actions", "pull")
    page.click("button:text-is('Grant')")
    assert requests.get(site.url + "/v2/team/app/tags/list", auth=("bob", "bob-secret-5")).status_code == 200

    page.fill("#quota-pattern", "team/*")
    page.fill("#quota-size", "1GiB")
    page.click("text=Set quota")
    assert "team/*" in page.inner_text("#quotas")
    page.fill("#ret-pattern", "team/tools")
    page.fill("#ret-keep", "100")
    page.click("text=Set retention")
    page.fill("#imm-pattern", "release/*")
    page.fill("#imm-tags", "v*")
    page.click("text=Make immutable")
    assert "release/*" in site.admin("immutable", "list")
    assert "team/tools" in site.admin("retention", "list")

    # Bad input: refused with a reason, nothing changes.
    before = site.admin("quota", "list")
    page.fill("#quota-pattern", "team/*")
    page.fill("#quota-size", "lots")
    page.click("text=Set quota")
    assert "is not a size" in page.inner_text("#admin-error")
    page.fill("#user-name", "../root")
    page.fill("#user-password", "x")
    page.click("text=Add account")
    assert "not a valid account name" in page.inner_text("#admin-error")
    page.fill("#grant-principal", "bob")
    page.fill("#grant-pattern", "team/<b>")
    page.fill("#grant-actions", "pull")
    page.click("button:text-is('Grant')")
    assert "not a repository pattern" in page.inner_text("#admin-error")
    assert site.admin("quota", "list") == before

    page.click("text=Run now")
    assert "Garbage collection removed" in page.inner_text(".done")
    assert "web interface (root)" in page.inner_text("#gc")
    shoot(page, screenshots, "admin-after")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert low_contrast(page) == [], scheme
    page.emulate_media(color_scheme="light")

    row = page.locator("#accounts tr", has=page.locator("td:text-is('bob')"))
    row.locator("text=Remove").click()
    assert "Removed bob." in page.inner_text(".done")
    assert page.confirms[-1] == "Remove the account bob and its grants?"
    assert requests.get(site.url + "/v2/team/app/tags/list", auth=("bob", "bob-secret-5")).status_code == 401
    site.admin("quota", "rm", "team/*")
    site.admin("retention", "rm", "team/tools", "--tags", "*")
    site.admin("immutable", "rm", "release/*", "v*")
    site.admin("upstream", "rm", "hub")
    site.admin("replicate", "rm", "offsite")


def test_robot_token_created_in_the_page_logs_in_once_shown(page: Any, site: Site) -> None:
    sign_in(page, site.url, "root")
    page.goto(site.url + "/admin")
    page.fill("#robot-name", "page-robot")
    page.fill("#robot-grants", "team/app:pull")
    page.fill("#robot-expires", "1d")
    page.click("text=Create robot token")
    secret = page.inner_text("#secret-value")
    assert secret.startswith("berth_")
    assert requests.get(site.url + "/v2/team/app/tags/list", auth=("page-robot", secret)).status_code == 200
    assert requests.get(site.url + "/v2/team/tools/tags/list", auth=("page-robot", secret)).status_code == 403
    page.reload()
    assert secret not in page.content()
    row = page.locator("#robots tr", has=page.locator("td:text-is('page-robot')"))
    row.locator("text=Revoke").click()
    assert requests.get(site.url + "/v2/team/app/tags/list", auth=("page-robot", secret)).status_code == 401


def test_admin_role_is_checked_on_every_request(site: Site) -> None:
    http = signed_in(site, "root")
    assert http.get(site.url + "/admin").status_code == 200
    site.admin("user", "add", "second", "--admin", "--password-stdin", stdin="second-secret\n")
    second = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', second.get(site.url + "/signin").text).group(1)
    second.post(site.url + "/signin", data={"csrf": token, "name": "second", "password": "second-secret"})
    token = csrf_of(http, site.url + "/admin")
    http.post(site.url + "/admin/user-admin", data={"csrf": token, "name": "second"})  # take the role
    assert second.get(site.url + "/admin").status_code == 403
    assert (
        second.post(
            site.url + "/admin/grant",
            data={"csrf": csrf_of(second, site.url + "/"), "principal": "second", "pattern": "*", "actions": "pull"},
        ).status_code
        == 403
    )
    assert "second\tuser\n" in site.admin("user", "list")
    assert not [line for line in site.admin("grants").splitlines() if line.startswith("second\t")]


def test_activity_lists_events_the_viewer_may_see(page: Any, site: Site, screenshots: Path) -> None:
    sign_in(page, site.url, "alice")
    page.goto(site.url + "/activity?action=push&repository=team/app")
    repositories = set(page.locator("td[data-label=Repository]").all_inner_texts())
    assert repositories == {"team/app"}
    assert set(page.locator("td[data-label=Who]").all_inner_texts()) == {"alice"}
    shoot(page, screenshots, "activity")

    # A pull and a delete, each with who and from where, found with the page's filters.
    Pusher(site.url, ("alice", PASSWORDS["alice"])).image("team/app", "short-lived")
    pulled = requests.get(
        f"{site.url}/v2/team/app/manifests/1.0", headers={"Accept": ACCEPT}, auth=("reader", PASSWORDS["reader"])
    )
    assert pulled.status_code == 200
    http = signed_in(site, "alice")
    delete = site.url + "/repositories/team/app/-/delete"
    http.post(delete, data={"tag": "short-lived", "csrf": csrf_of(http, delete + "?tag=short-lived")})
    assert manifest_status(site, "team/app", "short-lived") == 404
    page.goto(site.url + "/activity")
    page.select_option("#action", "pull")
    page.fill("#repository", "")
    page.fill("#actor", "read")
    page.keyboard.press("Enter")
    page.wait_for_url("**actor=read**")
    # Pulls are written in batches, within a second of being served.
    deadline = time.monotonic() + 15
    while page.locator("table.events tbody tr").count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        page.reload()
    row = page.locator("table.events tbody tr").first
    cells = ("Action", "Repository", "Tag or digest", "Who", "From")
    shown = [row.locator(f"td[data-label='{cell}']").inner_text() for cell in cells]
    assert (
        shown[:2] == ["pull", "team/app"]
        and shown[2].startswith("1.0 sha256:")
        and shown[3:] == ["reader", "127.0.0.1"]
    )
    assert set(page.locator("td[data-label=Who]").all_inner_texts()) == {"reader"}
    page.goto(site.url + "/activity?action=delete&repository=team/app")
    row = page.locator("table.events tbody tr").first
    shown = [row.locator(f"td[data-label='{cell}']").inner_text() for cell in cells]
    assert shown == ["delete", "team/app", "short-lived", "alice", "127.0.0.1"]


def test_a_session_works_on_every_replica(site: Site, tmp_path: Path) -> None:
    """A second server on the same database reads the first one's cookies: no per-process secret."""
    first = site.process.data_dir
    other = RegistryProcess(
        tmp_path / "replica",
        args=("--database-url", f"sqlite:///{first / 'registry.db'}", "--storage", f"file://{first / 'blobs'}"),
    )
    try:
        http = signed_in(site, "alice")
        cookie = {"berth_session": http.cookies["berth_session"]}
        page = requests.get(other.url + "/repositories/team/secret", cookies=cookie, allow_redirects=False)
        assert page.status_code == 200 and "team/secret" in page.text
    finally:
        other.stop()


def test_tags_page_pages_sorts_and_filters(page: Any, site: Site) -> None:
    pusher = Pusher(site.url, ("alice", PASSWORDS["alice"]))
    digest = pusher.image("team/many", "t-000")
    body = requests.get(
        f"{site.url}/v2/team/many/manifests/{digest}", headers={"Accept": ACCEPT}, auth=("alice", PASSWORDS["alice"])
    ).content
    names = [f"t-{i:03d}" for i in range(1, 61)]
    for name in names:
        pusher.manifest("team/many", name, body, "application/vnd.oci.image.manifest.v1+json")
    everything = ["t-000", *names]
    sign_in(page, site.url, "alice")
    page.goto(site.url + "/repositories/team/many")
    assert page.locator("a.tag").all_inner_texts() == everything[:50]
    page.click("a[rel=next]")
    assert page.locator("a.tag").all_inner_texts() == everything[50:]
    assert "Page 2 of 2" in page.inner_text(".pager")
    page.goto(site.url + "/repositories/team/many?sort=-pushed")
    assert page.locator("a.tag").all_inner_texts()[:3] == ["t-060", "t-059", "t-058"]
    page.fill("#filter", "t-05")
    page.keyboard.press("Enter")
    page.wait_for_url("**filter=t-05**")
    assert page.locator("a.tag").all_inner_texts() == [f"t-{i:03d}" for i in range(59, 49, -1)]
    page.goto(site.url + "/?q=many")
    assert page.locator("td[data-label=Repository]").all_inner_texts() == ["team/many"]
