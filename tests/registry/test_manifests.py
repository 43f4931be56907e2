"""Manifests, tags, referrers and listings against a live registry."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import requests

from tests.registry.conftest import OCI_INDEX, OCI_MANIFEST, Api, error_code, sha256

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def test_put_get_head_by_tag_and_digest(api: Api) -> None:
    body = api.image([b"layer one", b"layer two"])
    response = api.put_manifest("v1", body)
    assert response.status_code == 201, response.text
    digest = sha256(body)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Location"] == f"/v2/{api.name}/manifests/{digest}"
    for reference in ("v1", digest):
        got = api.http.get(api.url(f"manifests/{reference}"), headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert got.content == body
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == digest
        head = api.http.head(api.url(f"manifests/{reference}"))
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(body))
        assert head.content == b""


def test_docker_schema2_and_manifest_list(api: Api) -> None:
    body = json.loads(api.image([b"docker layer"]))
    body["mediaType"] = DOCKER_MANIFEST
    raw = json.dumps(body, indent=3).encode()
    assert api.put_manifest("amd64", raw, DOCKER_MANIFEST).status_code == 201
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": sha256(raw),
                    "size": len(raw),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    response = api.put_manifest("latest", listing, DOCKER_LIST)
    assert response.status_code == 201, response.text
    got = api.http.get(api.url("manifests/latest"))
    assert got.headers["Content-Type"] == DOCKER_LIST and got.content == listing


def test_manifest_validation_errors_store_nothing(api: Api) -> None:
    cases = [
        (b"{not json", OCI_MANIFEST, "MANIFEST_INVALID"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(),
            OCI_MANIFEST,
            "MANIFEST_INVALID",
        ),
        (
            json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "UNSUPPORTED",
        ),
        (b"{" + b" " * (4 * 1024 * 1024 + 1) + b"}", OCI_MANIFEST, "MANIFEST_INVALID"),
    ]
    for body, media_type, code in cases:
        response = api.put_manifest("bad", body, media_type)
        assert response.status_code in (400, 415), (code, response.text)
        assert error_code(response) == code
    missing_blob = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"nope"), "size": 4},
            "layers": [],
        }
    ).encode()
    response = api.put_manifest("bad", missing_blob)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    missing_child = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"child"), "size": 5}],
        }
    ).encode()
    response = api.put_manifest("bad", missing_child, OCI_INDEX)
    assert response.status_code == 400 and error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert api.http.get(api.url("manifests/bad")).status_code == 404
    tags = api.http.get(api.url("tags/list"))
    assert tags.status_code == 404 and error_code(tags) == "NAME_UNKNOWN"


def test_put_by_wrong_digest_and_invalid_tag(api: Api) -> None:
    body = api.image([b"x"])
    response = api.put_manifest(sha256(b"something else"), body)
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"
    response = api.put_manifest("-bad-tag", body)
    assert response.status_code == 400 and error_code(response) == "TAG_INVALID"
    assert api.put_manifest(sha256(body), body).status_code == 201


def test_unknown_manifest_and_repository(api: Api) -> None:
    response = api.http.get(api.url("manifests/latest"))
    assert response.status_code == 404 and error_code(response) == "NAME_UNKNOWN"
    api.put_manifest("v1", api.image([b"a"]))
    response = api.http.get(api.url("manifests/v2"))
    assert response.status_code == 404 and error_code(response) == "MANIFEST_UNKNOWN"
    for method in ("GET", "HEAD", "DELETE"):
        assert api.http.request(method, api.url("manifests/.not-a-tag")).status_code == 404
    response = api.http.get(f"{api.base}/v2/{api.name}-nothing/tags/list")
    assert response.status_code == 404 and error_code(response) == "NAME_UNKNOWN"


def test_moving_a_tag(api: Api) -> None:
    first, second = api.image([b"1"]), api.image([b"2"])
    api.put_manifest("latest", first)
    api.put_manifest("latest", second)
    assert api.http.get(api.url("manifests/latest")).content == second
    assert api.http.get(api.url(f"manifests/{sha256(first)}")).content == first


def test_delete_tag_then_manifest(api: Api) -> None:
    body = api.image([b"del"])
    api.put_manifest("a", body)
    api.put_manifest("b", body)
    assert api.http.delete(api.url("manifests/a")).status_code == 202
    assert api.http.get(api.url("manifests/a")).status_code == 404
    assert api.http.get(api.url("manifests/b")).status_code == 200
    assert api.http.delete(api.url(f"manifests/{sha256(body)}")).status_code == 202
    assert api.http.get(api.url("manifests/b")).status_code == 404
    assert api.http.get(api.url(f"manifests/{sha256(body)}")).status_code == 404
    assert api.http.delete(api.url(f"manifests/{sha256(body)}")).status_code == 404


def test_index_children_and_blobs_cannot_be_deleted_from_under_it(api: Api) -> None:
    child = api.image([b"child layer"])
    api.put_manifest(sha256(child), child)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}],
        }
    ).encode()
    assert api.put_manifest("multi", index, OCI_INDEX).status_code == 201
    refused = api.http.delete(api.url(f"manifests/{sha256(child)}"))
    assert refused.status_code == 409 and error_code(refused) == "DENIED"
    layer = json.loads(child)["layers"][0]["digest"]
    assert api.http.delete(api.url(f"blobs/{layer}")).status_code == 409
    assert api.http.delete(api.url(f"manifests/{sha256(index)}")).status_code == 202
    assert api.http.delete(api.url(f"manifests/{sha256(child)}")).status_code == 202
    assert api.http.delete(api.url(f"blobs/{layer}")).status_code == 202


def test_subject_header_and_referrers(api: Api) -> None:
    subject = api.image([b"the image"])
    api.put_manifest("v1", subject)
    descriptor = {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)}
    empty = b"{}"
    signature = api.image(
        [b"sig"],
        config=empty,
        artifactType="application/vnd.example.signature",
        subject=descriptor,
        annotations={"org.example": "yes"},
    )
    response = api.put_manifest(sha256(signature), signature)
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == sha256(subject)
    sbom = api.image([b"sbom"], artifactType="application/vnd.example.sbom", subject=descriptor)
    assert api.put_manifest(sha256(sbom), sbom).status_code == 201
    listing = api.http.get(api.url(f"referrers/{sha256(subject)}"))
    assert listing.status_code == 200
    assert listing.headers["Content-Type"] == OCI_INDEX
    found = {m["digest"]: m for m in listing.json()["manifests"]}
    assert set(found) == {sha256(signature), sha256(sbom)}
    assert found[sha256(signature)]["artifactType"] == "application/vnd.example.signature"
    assert found[sha256(signature)]["annotations"] == {"org.example": "yes"}
    filtered = api.http.get(api.url(f"referrers/{sha256(subject)}?artifactType=application/vnd.example.sbom"))
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sha256(sbom)]
    nothing = api.http.get(api.url(f"referrers/{sha256(b'no such subject')}"))
    assert nothing.status_code == 200 and nothing.json()["manifests"] == []


def test_tags_list_pagination(api: Api) -> None:
    body = api.image([b"t"])
    names = sorted(f"t{i:02d}" for i in range(7))
    for name in names:
        assert api.put_manifest(name, body).status_code == 201
    assert api.http.get(api.url("tags/list")).json() == {"name": api.name, "tags": names}
    page = api.http.get(api.url("tags/list?n=3"))
    assert page.json()["tags"] == names[:3]
    link = page.headers["Link"]
    assert link.endswith('rel="next"')
    next_url = link[1 : link.index(">")]
    assert urlparse(next_url).path == f"/v2/{api.name}/tags/list"
    second = api.http.get(f"{api.base}{next_url}")
    assert second.json()["tags"] == names[3:6]
    assert api.http.get(api.url(f"tags/list?last={names[5]}")).json()["tags"] == names[6:]
    assert "Link" not in api.http.get(api.url("tags/list?n=10")).headers
    assert api.http.get(api.url("tags/list?n=0")).json()["tags"] == []
    bad = api.http.get(api.url("tags/list?n=x"))
    assert bad.status_code == 400 and error_code(bad) == "PAGINATION_NUMBER_INVALID"


def test_catalog_pagination(api: Api) -> None:
    names = [f"{api.name}/r{i}" for i in range(5)]
    for name in names:
        Api(api.base, name, api.http).push_blob(b"catalog")
    everything = requests.get(f"{api.base}/v2/_catalog").json()["repositories"]
    assert names == [n for n in everything if n.startswith(api.name + "/")]
    assert everything == sorted(everything)
    collected, url = [], f"{api.base}/v2/_catalog?n=2&last={api.name}/"
    while url:
        page = requests.get(url)
        collected += page.json()["repositories"]
        link = page.headers.get("Link")
        url = f"{api.base}{link[1 : link.index('>')]}" if link and len(collected) < 5 else ""
    assert collected[:5] == names
