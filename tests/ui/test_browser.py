"""The web interface in a real headless Chromium: sign-in, what each viewer sees, the pages
against the registry's API, deletes, escaping, CSP, keyboard, narrow windows and dark mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from registry.service.policies import human
from tests.ui.browser import labels_touching_values, low_contrast, shoot
from tests.ui.conftest import EVIL, PASSWORDS, Pusher, Site, sign_in

ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def api(site: Site, path: str, user: str = "alice", **kwargs: Any) -> requests.Response:
    return requests.get(site.url + path, auth=(user, PASSWORDS[user]), timeout=30, **kwargs)


def test_anonymous_sees_only_public_and_private_pages_ask_to_sign_in(page: Any, site: Site, screenshots: Path) -> None:
    page.goto(site.url + "/")
    assert texts(page, "table.cards tbody td[data-label=Repository]") == ["public/base"]
    assert page.locator("text=Sign in").count() == 1
    assert page.locator("a[href='/admin']").count() == 0
    shoot(page, screenshots, "repositories-anonymous")

    page.goto(site.url + "/repositories/team/secret?sort=-pushed")
    assert page.url.startswith(site.url + "/signin?next=")
    # After signing in, the viewer lands where it was going.
    page.fill("#name", "alice")
    page.fill("#password", PASSWORDS["alice"])
    page.keyboard.press("Enter")
    page.wait_for_url(site.url + "/repositories/team/secret?sort=-pushed")
    assert texts(page, "a.tag") == ["1"]


def test_sign_in_refuses_wrong_passwords_robots_and_throttles(page: Any, site: Site, screenshots: Path) -> None:
    robot = site.admin("token", "create", "ui-robot", "--grant", "team/*:pull").strip()
    sign_in(page, site.url, "ui-robot", robot)
    assert "robot tokens cannot sign in" in page.inner_text("#signin-error")
    assert page.context.cookies() == [c for c in page.context.cookies() if c["name"] != "berth_session"]
    sign_in(page, site.url, "alice", "wrong")
    assert "Wrong account name or password" in page.inner_text("#signin-error")
    shoot(page, screenshots, "signin-error")

    # The same throttle as the API: after five failures from this address, even the right password waits.
    for _ in range(5):
        sign_in(page, site.url, "victim", "nope")
    sign_in(page, site.url, "victim")
    assert "too many failed logins" in page.inner_text("#signin-error").lower()
    assert api(site, "/v2/team/app/tags/list", user="victim").status_code == 429


def test_session_cookie_flags_sign_out_and_password_change(page: Any, site: Site) -> None:
    sign_in(page, site.url, "alice")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "berth_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain HTTP here
    assert cookie["expires"] > 0  # expiring, not a browser-session cookie
    assert page.evaluate("document.cookie") == ""
    copied = {"berth_session": cookie["value"]}
    assert "team/secret" in requests.get(site.url + "/", cookies=copied).text
    page.click("text=Sign out")
    page.wait_for_url(site.url + "/")
    assert not [c for c in page.context.cookies() if c["name"] == "berth_session"]
    # Signing out ends the session on the server too: a copy of the cookie is refused.
    assert "team/secret" not in requests.get(site.url + "/", cookies=copied).text

    # A copied cookie stops working when the password changes.
    sign_in(page, site.url, "alice")
    session = {c["name"]: c["value"] for c in page.context.cookies()}["berth_session"]
    assert "team/secret" in requests.get(site.url + "/", cookies={"berth_session": session}).text
    site.admin("user", "passwd", "alice", "--password-stdin", stdin=PASSWORDS["alice"] + "-new\n")
    try:
        assert "team/secret" not in requests.get(site.url + "/", cookies={"berth_session": session}).text
    finally:
        site.admin("user", "passwd", "alice", "--password-stdin", stdin=PASSWORDS["alice"] + "\n")


def test_reader_sees_neither_repositories_nor_actions_it_may_not_have(page: Any, site: Site, screenshots: Path) -> None:
    sign_in(page, site.url, "reader")
    # As on the API, an account has its own grants only (not anonymous's).
    assert texts(page, "td[data-label=Repository]") == ["team/app"]
    assert page.locator("a[href='/admin']").count() == 0
    page.click("text=team/app")
    page.wait_for_url(site.url + "/repositories/team/app")
    assert page.locator("text=Delete tag").count() == 0
    shoot(page, screenshots, "repository-reader")
    page.click("a.tag >> text=1.0")
    assert page.locator("text=Delete this manifest").count() == 0

    for path in ("/repositories/team/secret", f"/repositories/team/secret/-/manifests/{site.digests['team/secret:1']}"):
        response = page.goto(site.url + path)
        assert response.status == 404 and "may not see it" in page.inner_text("main")
    assert page.goto(site.url + "/repositories/team/app/-/delete?tag=1.0").status == 403
    assert page.goto(site.url + "/admin").status == 403
    page.goto(site.url + "/activity")
    assert set(texts(page, "td[data-label=Repository]")) == {"team/app"}


def test_repositories_show_tags_sizes_and_namespace_usage_against_the_api(page: Any, site: Site) -> None:
    site.admin("quota", "set", "public/*", "1GiB")
    try:
        sign_in(page, site.url, "alice")
        for name in ("public/base", "team/app", "team/secret", "team/tools"):
            row = page.locator("tr", has=page.locator(f"td[data-label=Repository] a:text-is('{name}')"))
            tags = api(site, f"/v2/{name}/tags/list").json()["tags"]
            assert row.locator("td[data-label=Tags]").inner_text() == str(len(tags))
            assert row.locator("td[data-label='Last push'] time").get_attribute("datetime")
        # public/base is its namespace's only repository: the namespace stores what it stores
        # (each blob once, as its quota counts them).
        manifest = api(site, "/v2/public/base/manifests/latest", headers={"Accept": ACCEPT}).json()
        stored = human(manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]))
        public = page.locator("section.namespace", has=page.locator("h2:text-is('public')"))
        assert public.locator("td[data-label=Size]").inner_text() == stored
        usage = " ".join(public.locator(".usage").inner_text().split())
        assert usage.startswith(f"{stored} stored · quota public/*: {stored} of 1.0 GiB"), usage
        assert public.locator("meter").get_attribute("max") == str(1024**3)
        team = page.locator("section.namespace", has=page.locator("h2:text-is('team')"))
        assert "quota" not in team.locator(".usage").inner_text()
    finally:
        site.admin("quota", "rm", "public/*")


def test_pages_show_what_the_api_serves(page: Any, site: Site, screenshots: Path) -> None:
    sign_in(page, site.url, "alice")
    shoot(page, screenshots, "repositories")
    shoot(page, screenshots, "repositories", dark=True)
    page.click("text=team/app")
    tags = api(site, "/v2/team/app/tags/list").json()["tags"]
    assert sorted(texts(page, "a.tag")) == sorted(tags)
    for tag in tags:
        row = page.locator("tr", has=page.locator(f"a.tag:text-is('{tag}')"))
        digest = api(site, f"/v2/team/app/manifests/{tag}", headers={"Accept": ACCEPT}).headers["Docker-Content-Digest"]
        assert row.locator("code.digest").get_attribute("title") == digest
        assert row.locator("td[data-label=By]").inner_text() == "alice"
    multi = page.locator("tr", has=page.locator("a.tag:text-is('multi')"))
    assert multi.locator("td[data-label=Platforms]").inner_text() == "linux/amd64, linux/arm64"
    host = site.url.split("://")[1]
    # team/app has no `latest`: the pull line names the tag pushed last, so that it pulls something.
    assert page.inner_text(".pull code") == f"docker pull {host}/team/app:multi"
    shoot(page, screenshots, "repository")
    shoot(page, screenshots, "repository", dark=True)

    page.click("a.tag:text-is('1.0')")
    manifest = api(site, "/v2/team/app/manifests/1.0", headers={"Accept": ACCEPT}).json()
    assert page.locator("h1 code").inner_text() == site.digests["team/app:1.0"]
    layer_digests = [layer["digest"] for layer in manifest["layers"]]
    shown = page.locator("#layers ~ table code.digest").evaluate_all("nodes => nodes.map(n => n.title)")
    assert shown == [manifest["config"]["digest"], *layer_digests]
    assert "--serve 'x y'" in page.inner_text("main")
    assert texts(page, "ol.history code.instruction") == ["ADD rootfs.tar /", "ENV MODE=web", "COPY app /bin/app"]
    referrers = api(site, f"/v2/team/app/referrers/{site.digests['team/app:1.0']}").json()["manifests"]
    assert [r["digest"] for r in referrers] == [site.digests["sbom"]]
    assert "application/spdx+json" in page.inner_text("#referrers ~ table")
    shoot(page, screenshots, "manifest")
    shoot(page, screenshots, "manifest", dark=True)

    page.goto(site.url + "/repositories/team/app/-/manifests/multi")
    assert page.locator("h1 code").inner_text() == site.digests["team/app:multi"]
    assert texts(page, "td[data-label=Platform]") == ["linux/amd64", "linux/arm64"]
    shoot(page, screenshots, "index")


def test_labels_and_annotations_show_as_text(page: Any, site: Site) -> None:
    sign_in(page, site.url, "alice")
    page.goto(site.url + f"/repositories/team/app/-/manifests/{site.digests['team/app:evil']}")
    assert EVIL in texts(page, "td.label-value")
    assert page.locator("script:not([src])").count() == 0
    page.goto(site.url + f"/repositories/team/app/-/manifests/{site.digests['sbom']}")
    assert EVIL in page.inner_text("#annotations ~ table")
    # The page fixture fails the test if alert() ran.


def test_responses_carry_a_strict_content_security_policy(site: Site) -> None:
    for path in ("/", "/signin", "/activity", "/repositories/public/base"):
        response = requests.get(site.url + path)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_keyboard_alone_reaches_a_tag_and_copies_its_pull_command(page: Any, site: Site) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(site.url + "/signin")
    # The name field takes the focus by itself (autofocus); typing before it has, loses keys.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORDS["alice"])
    page.keyboard.press("Enter")
    page.wait_for_url(site.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.locator("a", has_text="team/tools").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(site.url + "/repositories/team/tools")
    page.locator("button.copy").first.focus()
    page.keyboard.press("Enter")
    host = site.url.split("://")[1]
    assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {host}/team/tools"

    # A form by keyboard: delete a tag, tabbing from its link to the confirmation's button.
    Pusher(site.url, ("alice", PASSWORDS["alice"])).image("team/tools", "by-keyboard")
    page.goto(site.url + "/repositories/team/tools")
    page.locator("tr", has=page.locator("a.tag:text-is('by-keyboard')")).locator("a.danger").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/-/delete?tag=by-keyboard")
    for _ in range(20):
        if page.evaluate("document.activeElement.matches('button.danger')"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**deleted=**")
    assert "by-keyboard" not in texts(page, "a.tag")


def test_dark_mode_follows_the_system(page: Any, site: Site) -> None:
    page.goto(site.url + "/")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(255, 255, 255)" and dark == "rgb(13, 17, 23)"


def test_text_is_readable_in_light_and_dark(page: Any, site: Site) -> None:
    """WCAG AA contrast for all text of every page, in both color schemes."""
    sign_in(page, site.url, "alice", "wrong")
    paths = [
        "/signin",
        "/",
        "/repositories/team/app",
        f"/repositories/team/app/-/manifests/{site.digests['team/app:1.0']}",
        f"/repositories/team/app/-/manifests/{site.digests['team/app:multi']}",
        "/repositories/team/app/-/delete?tag=1.0",
        "/activity",
    ]
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert low_contrast(page) == [], (scheme, "sign-in error")
    sign_in(page, site.url, "alice")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for path in paths:
            page.goto(site.url + path)
            assert low_contrast(page) == [], (scheme, path)


def test_narrow_window_has_no_horizontal_scroll_and_labels_clear_of_values(page: Any, site: Site) -> None:
    sign_in(page, site.url, "alice")
    page.set_viewport_size({"width": 360, "height": 740})
    for path in (
        "/",
        "/repositories/team/app",
        f"/repositories/team/app/-/manifests/{site.digests['team/app:1.0']}",
        f"/repositories/team/app/-/manifests/{site.digests['team/app:multi']}",
        f"/repositories/team/app/-/manifests/{site.digests['sbom']}",
        "/repositories/team/app/-/delete?tag=1.0",
        "/activity",
    ):
        page.goto(site.url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
        assert labels_touching_values(page) == [], path
