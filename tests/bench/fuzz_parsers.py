"""Coverage-guided fuzzing of the parsers that read untrusted input (issue 11), with atheris.

    pip install atheris
    python tests/bench/fuzz_parsers.py [--seconds 300] [--corpus DIR] [--target manifest|reference|digest|range|all]

Each input is fed to one parser, chosen by its first byte: the manifest parser (bytes and a
Content-Type), the reference grammar, digest parsing, the blob Range header and the counts the
API reads from headers and queries. A parser may accept an input or refuse it with its own
error (`InvalidManifest`, `InvalidReference`, ...); any other exception, or an accepted value
that breaks the grammar's promises (a newline in a tag, a digest that does not print back the
same), is a crash: atheris stops, prints the input and writes it to `crash-<sha1>`. Make
each crash a test in tests/security/test_properties.py. Not run in CI: it has no end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["registry"]):
    from registry.api.base import count
    from registry.api.blobs import parse_range
    from registry.errors import RangeNotSatisfiable
    from registry.oci.digest import InvalidDigest, parse_digest
    from registry.oci.manifest import InvalidManifest, UnsupportedManifest, parse_manifest
    from registry.oci.reference import InvalidReference, parse_reference, valid_name, valid_tag

CONTENT_TYPES = [
    None,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "text/html; charset=utf-8",
]


def fuzz_manifest(data: atheris.FuzzedDataProvider) -> None:
    content_type = CONTENT_TYPES[data.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)]
    try:
        manifest = parse_manifest(data.ConsumeBytes(data.remaining_bytes()), content_type)
    except (InvalidManifest, UnsupportedManifest):
        return
    for descriptor in (*manifest.blobs, *manifest.manifests):
        if str(parse_digest(descriptor.digest)) != descriptor.digest or descriptor.size < 0:
            raise AssertionError(f"accepted a bad descriptor {descriptor!r}")


def fuzz_reference(data: atheris.FuzzedDataProvider) -> None:
    text = data.ConsumeUnicodeNoSurrogates(data.remaining_bytes())
    try:
        reference = parse_reference(text)
    except InvalidReference:
        return
    if not valid_name(reference.repository) or (reference.tag is not None and not valid_tag(reference.tag)):
        raise AssertionError(f"{text!r} parsed into {reference!r}, which breaks the grammar")
    if any(c.isspace() for c in str(reference)):
        raise AssertionError(f"{text!r} parsed into a reference with whitespace: {reference!r}")
    if parse_reference(str(reference)) != reference:
        raise AssertionError(f"{reference} does not parse back to itself")


def fuzz_digest(data: atheris.FuzzedDataProvider) -> None:
    text = data.ConsumeUnicodeNoSurrogates(data.remaining_bytes())
    try:
        digest = parse_digest(text)
    except InvalidDigest:
        return
    if str(digest) != text:
        raise AssertionError(f"{text!r} accepted as {digest}")


def fuzz_range(data: atheris.FuzzedDataProvider) -> None:
    size = data.ConsumeIntInRange(0, 1 << 40)
    header = data.ConsumeUnicodeNoSurrogates(data.remaining_bytes())
    value = count(header)
    if value is not None and not 0 <= value < 10**18:
        raise AssertionError(f"count({header!r}) = {value}")
    try:
        found = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if found is not None and not 0 <= found[0] < found[1] <= size:
        raise AssertionError(f"Range {header!r} of {size} bytes gave {found}")


TARGETS = {"manifest": fuzz_manifest, "reference": fuzz_reference, "digest": fuzz_digest, "range": fuzz_range}
HEX = "0123456789abcdef" * 4
SEEDS = {
    "manifest": [
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": CONTENT_TYPES[1],
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": f"sha256:{HEX}",
                    "size": 2,
                },
                "layers": [{"mediaType": "x", "digest": f"sha256:{HEX}", "size": 1, "urls": ["http://a"]}],
                "subject": {"mediaType": CONTENT_TYPES[1], "digest": f"sha256:{HEX}", "size": 3},
                "annotations": {"a": "b"},
            }
        ),
        json.dumps(
            {"schemaVersion": 2, "manifests": [{"mediaType": CONTENT_TYPES[1], "digest": f"sha256:{HEX}", "size": 9}]}
        ),
    ],
    "reference": ["registry.example:5000/team/app:v1.2", f"localhost/a/b__c@sha256:{HEX}", "busybox"],
    "digest": [f"sha256:{HEX}", f"sha512:{HEX * 2}"],
    "range": ["bytes=0-99", "bytes=-5", "bytes=7-"],
}


def write_seeds(corpus: Path, targets: list[str]) -> None:
    """Valid inputs to start from: the first byte selects ASCII text, the last the target
    (FuzzedDataProvider takes integers from the end)."""
    for number, name in enumerate(targets):
        for index, text in enumerate(SEEDS[name]):
            body = text.encode() if name == "manifest" else b"\x01" + text.encode()
            tail = bytes([1, number]) if name == "manifest" else bytes([number])
            (corpus / f"seed-{name}-{index}").write_bytes(body + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300, help="stop after this long (default 300)")
    parser.add_argument("--corpus", type=Path, help="a directory to keep interesting inputs in")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    args, rest = parser.parse_known_args()
    names = list(TARGETS) if args.target == "all" else [args.target]
    chosen = [TARGETS[name] for name in names]

    def one_input(raw: bytes) -> None:
        data = atheris.FuzzedDataProvider(raw)
        chosen[data.ConsumeIntInRange(0, len(chosen) - 1)](data)

    libfuzzer = [sys.argv[0], f"-max_total_time={args.seconds}", *rest]
    if args.corpus:
        args.corpus.mkdir(parents=True, exist_ok=True)
        write_seeds(args.corpus, names)
        libfuzzer.append(str(args.corpus))
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
