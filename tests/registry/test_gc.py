"""Garbage collection: grace periods, untagged manifests, and pushes racing collection."""

from __future__ import annotations

import json
import os
import threading
from datetime import timedelta

import requests
from sqlalchemy import text

from registry.service.gc import GarbageCollector
from tests.conftest import RegistryProcess
from tests.registry.conftest import OCI_INDEX, OCI_MANIFEST, Api, ManualClock, berth, in_process, sha256


def berth_gc(server: RegistryProcess, *args: str) -> str:
    return berth("gc", *args, *server.settings_flags())


def in_process_collector(server: RegistryProcess, ahead: timedelta = timedelta(0)) -> GarbageCollector:
    """The server's collector in this process, its clock `ahead` of the wall clock."""
    clock = ManualClock()
    clock.advance(ahead)
    return in_process(server, clock).collector


def test_unreferenced_blob_survives_grace_then_goes(server: RegistryProcess) -> None:
    api = Api(server.url, "gc/grace", requests.Session())
    kept = api.image([b"referenced layer"])
    assert api.put_manifest("v1", kept).status_code == 201
    loose = api.push_blob(b"uploaded, never referenced")
    out = berth_gc(server, "--grace", "1h")
    assert loose not in out
    assert api.http.head(api.url(f"blobs/{loose}")).status_code == 200
    dry = berth_gc(server, "--grace", "0", "--dry-run")
    assert f"would remove blob {loose}" in dry
    assert api.http.head(api.url(f"blobs/{loose}")).status_code == 200
    out = berth_gc(server, "--grace", "0")
    assert f"removed blob {loose}" in out and "reclaimed" in out
    assert api.http.head(api.url(f"blobs/{loose}")).status_code == 404
    for layer in json.loads(kept)["layers"]:
        assert api.http.get(api.url(f"blobs/{layer['digest']}")).content == b"referenced layer"


def test_expired_upload_sessions_are_removed(server: RegistryProcess) -> None:
    api = Api(server.url, "gc/uploads", requests.Session())
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    api.http.patch(f"{server.url}{location}", data=b"abandoned bytes")
    assert location.rsplit("/", 1)[1] not in berth_gc(server, "--grace", "1h")
    report = in_process_collector(server, ahead=timedelta(hours=2)).run(grace=timedelta(hours=1))
    assert report is not None and location.rsplit("/", 1)[1] in report.uploads
    assert api.http.get(f"{server.url}{location}").status_code == 404


def test_ended_sessions_stay_unknown_until_their_ids_expire(server: RegistryProcess) -> None:
    """A completed session leaves a tombstone that collection keeps for the id's lifetime."""
    api = Api(server.url, "gc/tombstones", requests.Session())
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    assert api.http.put(f"{server.url}{location}?digest={sha256(b'done')}", data=b"done").status_code == 201
    collector = in_process_collector(server)

    def rows() -> int:
        with collector.collector.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM upload WHERE id = :id"), {"id": upload_id}).scalar_one()

    assert rows() == 1
    collector.run(grace=timedelta(0))
    assert rows() == 1
    again = api.http.put(f"{server.url}{location}?digest={sha256(b'again')}", data=b"again")
    assert again.status_code == 404
    collector.session_lifetime = timedelta(0)
    collector.run(grace=timedelta(0))
    assert rows() == 0


def test_untagged_cleanup_keeps_what_tagged_things_need(server: RegistryProcess) -> None:
    api = Api(server.url, "gc/untagged", requests.Session())
    platforms = [api.image([f"platform {arch}".encode()]) for arch in ("amd64", "arm64")]
    for body in platforms:
        assert api.put_manifest(sha256(body), body).status_code == 201
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b), "size": len(b)} for b in platforms],
        }
    ).encode()
    assert api.put_manifest("multi", index, OCI_INDEX).status_code == 201
    tagged = api.image([b"tagged image"])
    api.put_manifest("v1", tagged)
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(tagged), "size": len(tagged)}
    signature = api.image([b"signature"], artifactType="application/vnd.example.sig", subject=subject)
    api.put_manifest(sha256(signature), signature)
    orphan = api.image([b"orphan layer"])
    api.put_manifest("old", orphan)
    api.http.delete(api.url("manifests/old"))
    out = berth_gc(server, "--grace", "0", "--untagged")
    assert f"removed manifest gc/untagged@{sha256(orphan)}" in out
    for body in (*platforms, index, tagged, signature):
        assert api.http.head(api.url(f"manifests/{sha256(body)}")).status_code == 200, body[:80]
    assert api.http.head(api.url(f"manifests/{sha256(orphan)}")).status_code == 404
    orphan_layer = json.loads(orphan)["layers"][0]["digest"]
    assert api.http.head(api.url(f"blobs/{orphan_layer}")).status_code == 404
    api.http.delete(api.url("manifests/multi"))
    out = berth_gc(server, "--grace", "0", "--untagged")
    for body in (*platforms, index):
        assert sha256(body) in out


def test_pushes_racing_collection_end_complete(server: RegistryProcess) -> None:
    """Many pushes while collection runs in a loop with a one-second grace: every manifest the
    registry accepted stays pullable, with every blob's bytes intact."""
    collector = in_process_collector(server)
    stop = threading.Event()
    runs = []

    def collect() -> None:
        while not stop.is_set():
            report = collector.run(grace=timedelta(seconds=1), untagged=True)
            runs.append(report)

    def push(worker: int) -> list[tuple[str, bytes]]:
        api = Api(server.url, f"gc/race{worker}", requests.Session())
        accepted = []
        for round_ in range(8):
            shared = b"shared base layer"  # the same blob pushed again and again, racing its collection
            body = api.image([shared, os.urandom(2000)], config=json.dumps({"round": round_}).encode())
            response = api.put_manifest(f"r{round_}", body)
            assert response.status_code in (201, 404), response.text
            if response.status_code == 201:
                accepted.append((f"r{round_}", body))
        return accepted

    thread = threading.Thread(target=collect)
    thread.start()
    results: list[list[tuple[str, bytes]]] = [[] for _ in range(4)]
    workers = [threading.Thread(target=lambda i=i: results.__setitem__(i, push(i))) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    thread.join()
    assert len(runs) >= 2
    accepted = sum(len(r) for r in results)
    assert accepted >= 16
    # Everything pushed is now older than the grace period: a last run considers it all.
    in_process_collector(server, ahead=timedelta(hours=2)).run(grace=timedelta(hours=1), untagged=True)
    for worker, pushed in enumerate(results):
        api = Api(server.url, f"gc/race{worker}", requests.Session())
        for tag, body in pushed:
            assert api.http.get(api.url(f"manifests/{tag}")).content == body
            document = json.loads(body)
            for descriptor in [document["config"], *document["layers"]]:
                blob = api.http.get(api.url(f"blobs/{descriptor['digest']}"))
                assert blob.status_code == 200 and sha256(blob.content) == descriptor["digest"]
