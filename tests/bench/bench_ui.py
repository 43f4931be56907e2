"""Benchmark of the web interface: server time of its heaviest pages, and navigation in Chromium.

    python tests/bench/bench_ui.py [--quick] [--json out.json]

One registry (`python -m registry`, one worker, SQLite and files) holding a repository with
10,000 tags and 10,000 repositories in 100 namespaces. One real image is pushed over the API;
the rest are rows cloned from it with SQL (the index as 10,000 pushes would leave it, made in
seconds), with a push event per tag. A signed-in account whose grants cover everything views:

- the repository page: first page by name, a page deep in the list (OFFSET 4,950), newest
  push first, and a filter;
- the repositories page: first page, the last page, and a search.

Server time is the page's own `Server-Timing: app` (from the viewer's lookup to the rendered
HTML; median of the runs); target of issue 17: under 100 ms. Navigation is timed by the
browser: Debian's chromium under Playwright loads each page and reports the Navigation Timing
entry (`loadEventEnd`, from navigation start); target: under 300 ms on loopback. `--quick`
runs 5 requests per page instead of 20.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import create_engine, insert, select

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from registry.metadata.models import (  # noqa: E402
    Blob,
    Event,
    Manifest,
    ManifestBlob,
    Repository,
    RepositoryBlob,
    Tag,
)
from tests.bench.registry_servers import ours, scratch_dir  # noqa: E402
from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

TAGS = 10_000
REPOSITORIES = 10_000
NAMESPACES = 100
USER, PASSWORD = "bench", "bench-secret-1"
SERVER_TARGET_MS = 100.0
NAVIGATION_TARGET_MS = 300.0


def berth(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "engine", *args, "--data-dir", str(data_dir)],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
        cwd=REPO_ROOT,
    )


def push_image(base: str) -> str:
    """One real image in bench/tags:seed, pushed over the API; returns its digest."""
    auth = (USER, PASSWORD)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "history": [{"created_by": "ADD rootfs /"}],
            "rootfs": {"type": "layers", "diff_ids": []},
        }
    ).encode()
    layer = b"bench layer " * 1000
    descriptors = []
    for data, media_type in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar"),
    ):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = requests.post(
            f"{base}/v2/bench/tags/blobs/uploads/", params={"digest": digest}, data=data, auth=auth
        )
        response.raise_for_status()
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    response = requests.put(
        f"{base}/v2/bench/tags/manifests/seed",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        auth=auth,
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def clone_rows(database: Path, digest: str) -> None:
    """10,000 tags on the seed manifest, and 10,000 repositories each holding it under one tag."""
    engine = create_engine(f"sqlite:///{database}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        seed = conn.execute(select(Manifest).where(Manifest.digest == digest)).mappings().one()
        blob_ids = list(conn.execute(select(Blob.id)).scalars())
        repository_id = seed["repository_id"]
        conn.execute(
            insert(Tag),
            [
                {
                    "repository_id": repository_id,
                    "name": f"build-{i:05d}",
                    "manifest_id": seed["id"],
                    "updated_at": now - timedelta(minutes=i),
                }
                for i in range(TAGS)
            ],
        )
        names = [f"ns{i % NAMESPACES:03d}/repo{i:05d}" for i in range(REPOSITORIES)]
        conn.execute(insert(Repository), [{"name": name, "created_at": now} for name in names])
        ids = dict(conn.execute(select(Repository.name, Repository.id).where(Repository.name.in_(names))).all())
        manifest_columns = {k: v for k, v in seed.items() if k not in ("id", "repository_id")}
        conn.execute(insert(Manifest), [{**manifest_columns, "repository_id": ids[name]} for name in names])
        manifests = dict(
            conn.execute(
                select(Manifest.repository_id, Manifest.id).where(Manifest.repository_id.in_(ids.values()))
            ).all()
        )
        conn.execute(
            insert(Tag),
            [
                {"repository_id": ids[n], "name": "latest", "manifest_id": manifests[ids[n]], "updated_at": now}
                for n in names
            ],
        )
        conn.execute(
            insert(ManifestBlob), [{"manifest_id": m, "blob_id": b} for m in manifests.values() for b in blob_ids]
        )
        conn.execute(
            insert(RepositoryBlob),
            [{"repository_id": r, "blob_id": b, "created_at": now} for r in ids.values() for b in blob_ids],
        )
        events = [("bench/tags", f"build-{i:05d}") for i in range(TAGS)] + [(n, "latest") for n in names]
        conn.execute(
            insert(Event),
            [
                {
                    "at": now,
                    "action": "push",
                    "repository": repo,
                    "digest": digest,
                    "tag": tag,
                    "actor": USER,
                    "address": "127.0.0.1",
                }
                for repo, tag in events
            ],
        )
    engine.dispose()


def sign_in(base: str) -> requests.Session:
    http = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', http.get(base + "/signin").text).group(1)
    response = http.post(base + "/signin", data={"csrf": token, "name": USER, "password": PASSWORD, "next": "/"})
    response.raise_for_status()
    return http


def server_ms(http: requests.Session, url: str, runs: int) -> tuple[float, float]:
    """Median server time (Server-Timing app) and median loopback round trip, in ms."""
    http.get(url).raise_for_status()  # warm: templates compiled, configs cached
    app, wall = [], []
    for _ in range(runs):
        response = http.get(url)
        response.raise_for_status()
        app.append(float(re.search(r"app;dur=([\d.]+)", response.headers["Server-Timing"]).group(1)))
        wall.append(response.elapsed.total_seconds() * 1000)
    return statistics.median(app), statistics.median(wall)


def navigation_ms(base: str, cookie: str, paths: list[str], runs: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    found = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_cookies([{"name": "berth_session", "value": cookie, "url": base}])
        page = context.new_page()
        for path in paths:
            page.goto(base + path)  # warm
            times = []
            for _ in range(runs):
                page.goto(base + path, wait_until="load")
                times.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            found[path] = statistics.median(times)
        browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    options = parser.parse_args()
    runs = 5 if options.quick else 20
    scratch = scratch_dir()
    data = scratch / "data"
    berth(data, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    berth(data, "grant", USER, "*", "pull,push,delete")
    server = ours(scratch, workers=1, data_dir=data)
    server.auth = "basic"
    server.start()
    try:
        digest = push_image(server.base)
        clone_rows(data / "registry.db", digest)
        http = sign_in(server.base)
        pages = {
            "repository, first page": "/repositories/bench/tags",
            "repository, page 100": "/repositories/bench/tags?page=100",
            "repository, newest first": "/repositories/bench/tags?sort=-pushed",
            "repository, filter": "/repositories/bench/tags?filter=build-09",
            "repositories, first page": "/",
            "repositories, last page": "/?page=201",
            "repositories, search": "/?q=repo09",
        }
        results: dict[str, dict[str, float]] = {}
        print(f"{'page':32} {'server ms':>10} {'loopback ms':>12} {'browser load ms':>16}")
        navigation = navigation_ms(server.base, http.cookies["berth_session"], list(pages.values()), runs)
        for label, path in pages.items():
            app, wall = server_ms(http, server.base + path, runs)
            results[label] = {"server_ms": app, "round_trip_ms": wall, "navigation_ms": navigation[path]}
            verdict = "PASS" if app < SERVER_TARGET_MS and navigation[path] < NAVIGATION_TARGET_MS else "FAIL"
            print(f"{label:32} {app:10.1f} {wall:12.1f} {navigation[path]:16.1f}  {verdict}")
        if options.json:
            Path(options.json).write_text(json.dumps(results, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
