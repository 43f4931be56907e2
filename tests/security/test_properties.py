"""Property-based tests (Hypothesis) of what parses untrusted input: any input gets a valid
result or the parser's own refusal, and over HTTP a 4xx, never a 500 or a dropped connection.

The pure functions (registry/oci, the API's counts, the Range header) get many examples;
the live server gets fewer, since each is a request.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from registry.api.base import count
from registry.api.blobs import parse_range
from registry.errors import RangeNotSatisfiable
from registry.oci.digest import InvalidDigest, parse_digest
from registry.oci.manifest import InvalidManifest, UnsupportedManifest, parse_manifest
from registry.oci.reference import InvalidReference, parse_reference, valid_name, valid_tag
from tests.registry.conftest import OCI_MANIFEST, Api, sha256

MEDIA_TYPES = st.sampled_from(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "text/html",
        "",
    ]
)
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
DIGESTS = st.one_of(HEX.map(lambda h: f"sha256:{h}"), st.text(max_size=80))
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
DESCRIPTOR = st.fixed_dictionaries(
    {
        "mediaType": st.one_of(MEDIA_TYPES, JSON),
        "digest": st.one_of(DIGESTS, JSON),
        "size": st.one_of(st.integers(), JSON),
    },
    optional={"urls": JSON, "annotations": JSON, "platform": JSON, "artifactType": JSON},
)
MANIFESTS = st.fixed_dictionaries(
    {"schemaVersion": st.one_of(st.just(2), JSON)},
    optional={
        "mediaType": st.one_of(MEDIA_TYPES, JSON),
        "config": st.one_of(DESCRIPTOR, JSON),
        "layers": st.one_of(st.lists(DESCRIPTOR, max_size=3), JSON),
        "manifests": st.one_of(st.lists(DESCRIPTOR, max_size=3), JSON),
        "subject": st.one_of(DESCRIPTOR, JSON),
        "annotations": JSON,
        "artifactType": JSON,
    },
)
REFERENCE_TEXT = st.text(string.ascii_letters + string.digits + "._-/:@\n\t %" + "Ωé²", max_size=80)
COUNT_TEXT = st.one_of(st.integers(min_value=-5).map(str), st.text("0123456789²٣ +-_.e\n", max_size=25))
RANGES = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.integers(-3, 10**20), st.just("")), st.integers(-3, 10**20)),
    st.text(max_size=40),
)
TAG_TEXT = st.text(string.ascii_letters + "._-\n%", min_size=1, max_size=20)
PURE = settings(max_examples=200, deadline=None)
LIVE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_accepted(manifest: Any) -> None:
    for descriptor in (*manifest.blobs, *manifest.manifests):
        assert str(parse_digest(descriptor.digest)) == descriptor.digest
        assert isinstance(descriptor.size, int) and descriptor.size >= 0


@PURE
@given(document=MANIFESTS, content_type=st.one_of(st.none(), MEDIA_TYPES))
def test_manifest_parser_accepts_or_refuses_json(document: dict[str, Any], content_type: str | None) -> None:
    try:
        manifest = parse_manifest(json.dumps(document).encode(), content_type)
    except (InvalidManifest, UnsupportedManifest):
        return
    _check_accepted(manifest)


@PURE
@given(data=st.binary(max_size=2000))
@example(data=b"[" * 100_000 + b"]" * 100_000)
@example(data=b'{"a":' * 50_000)
@example(data=b"\xff\xfe{}")
def test_manifest_parser_accepts_or_refuses_any_bytes(data: bytes) -> None:
    try:
        _check_accepted(parse_manifest(data, None))
    except (InvalidManifest, UnsupportedManifest):
        pass


@PURE
@given(text=REFERENCE_TEXT)
@example(text="registry.example/team/app:v1\n")
@example(text="app@sha256:" + "a" * 64 + "\n")
def test_reference_grammar_round_trips(text: str) -> None:
    try:
        reference = parse_reference(text)
    except InvalidReference:
        return
    assert valid_name(reference.repository)
    assert reference.tag is None or valid_tag(reference.tag)
    assert not any(c.isspace() for c in str(reference))
    assert parse_reference(str(reference)) == reference


@PURE
@given(text=st.one_of(DIGESTS, HEX.map(lambda h: f"sha256:{h}\n"), st.text(max_size=140)))
def test_a_digest_parses_to_exactly_itself(text: str) -> None:
    try:
        digest = parse_digest(text)
    except InvalidDigest:
        return
    assert str(digest) == text


@PURE
@given(text=COUNT_TEXT)
def test_counts_are_small_ascii_numbers(text: str) -> None:
    value = count(text)
    assert value is None or (0 <= value < 10**18 and int(text) == value and text.isascii())


@PURE
@given(header=RANGES, size=st.integers(0, 1 << 40))
def test_a_blob_range_is_inside_the_blob_or_refused(header: str, size: int) -> None:
    try:
        found = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        assert exc.status == 416
        return
    assert found is None or 0 <= found[0] < found[1] <= size


# -- over HTTP, against the real server


@pytest.fixture(scope="module")
def live(registry_url: str) -> Api:
    api = Api(registry_url, "properties/live", requests.Session())
    api.put_manifest("base", api.image([b"live layer"]))
    return api


@LIVE
@given(
    document=MANIFESTS, content_type=MEDIA_TYPES, tag=st.text(string.ascii_letters + "._-\n%", min_size=1, max_size=20)
)
def test_manifest_puts_get_a_4xx_or_a_201(live: Api, document: dict[str, Any], content_type: str, tag: str) -> None:
    response = live.http.put(
        live.url(f"manifests/{quote(tag, safe='')}"),
        data=json.dumps(document).encode(),
        headers={"Content-Type": content_type or OCI_MANIFEST},
    )
    assert response.status_code < 500 and response.status_code in (201, 400, 404, 405, 415), response.text


@LIVE
@given(reference=st.one_of(DIGESTS, REFERENCE_TEXT.filter(bool)))
def test_any_reference_or_digest_in_a_url_gets_an_answer(live: Api, reference: str) -> None:
    quoted = quote(reference, safe="")
    for path in (f"manifests/{quoted}", f"blobs/{quoted}", f"referrers/{quoted}"):
        response = live.http.get(live.url(path))
        assert response.status_code < 500, (path, response.text)


@LIVE
@given(content_range=st.one_of(RANGES.map(lambda r: r.removeprefix("bytes=")), st.text(max_size=30)))
def test_any_content_range_gets_a_202_or_a_4xx(live: Api, content_range: str) -> None:
    location = live.http.post(live.url("blobs/uploads/")).headers["Location"]
    try:
        headers = {"Content-Range": content_range.encode("latin-1", "replace").decode("latin-1")}
        response = live.http.patch(f"{live.base}{location}", data=b"abc", headers=headers)
    except (ValueError, requests.exceptions.InvalidHeader):
        return  # not a header requests will send
    assert response.status_code in (202, 400, 416), response.text
    if response.status_code == 202:
        done = live.http.put(f"{live.base}{response.headers['Location']}?digest={sha256(b'abc')}")
        assert done.status_code == 201


@LIVE
@given(n=COUNT_TEXT, last=st.text(max_size=30))
def test_any_page_parameters_get_a_200_or_a_400(live: Api, n: str, last: str) -> None:
    for path in (live.url("tags/list"), f"{live.base}/v2/_catalog"):
        response = live.http.get(path, params={"n": n, "last": last})
        assert response.status_code in (200, 400), (path, response.text)
