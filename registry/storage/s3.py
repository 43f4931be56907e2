"""Blobs in an S3 bucket (or any S3-compatible store) through boto3.

An upload is a series of part objects under `uploads/<id>/`; every part but the last is
at least 5 MiB (a small part is merged with the next write), so the parts can be read
back for re-hashing on any replica and joined at commit by a server-side multipart copy
straight to the blob's key. The blob appears only when that multipart upload completes;
a failed commit aborts it. S3's 5 MiB and 5 GiB rules live only in this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from registry.storage.base import UploadState

MIN_PART = 5 * 1024 * 1024
MAX_COPY = 5 * 1024 * 1024 * 1024
READ_CHUNK = 1024 * 1024
PRESIGN_SECONDS = 600


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3Storage:
    write_batch = 8 * 1024 * 1024

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, redirect: bool = False):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.redirect = redirect
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"}),
        )

    def _key(self, digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        return f"{self.prefix}blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}"

    def _part_key(self, state: UploadState, number: int) -> str:
        upload_id = state["id"]
        if "/" in upload_id or upload_id.startswith("."):
            raise ValueError(f"bad upload state {state!r}")
        return f"{self.prefix}uploads/{upload_id}/{number:05d}"

    def stat(self, digest: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(digest))["ContentLength"]
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def _read_key(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        extra: dict[str, Any] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self._read_key(self._key(digest), start, end)

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def redirect_url(self, digest: str) -> str | None:
        if not self.redirect:
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(digest)}, ExpiresIn=PRESIGN_SECONDS
        )

    def put(self, digest: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data)

    def start_upload(self, upload_id: str) -> UploadState:
        return {"id": upload_id, "parts": []}

    def write_upload(
        self, state: UploadState, offset: int, chunks: Sequence[bytes], writeback: bool = True
    ) -> UploadState:
        data = b"".join(chunks)
        parts: list[int] = list(state["parts"])
        if offset != sum(parts):
            raise OSError(f"upload {state['id']} is at {sum(parts)} bytes, not {offset}")
        if parts and parts[-1] < MIN_PART:
            previous = b"".join(self._read_key(self._part_key(state, len(parts) - 1)))
            data = previous + data
            parts.pop()
        self.client.put_object(Bucket=self.bucket, Key=self._part_key(state, len(parts)), Body=data)
        return {**state, "parts": [*parts, len(data)]}

    def read_upload(self, state: UploadState, size: int) -> Iterator[bytes]:
        remaining = size
        for number, part_size in enumerate(state["parts"]):
            if remaining <= 0:
                return
            yield from self._read_key(self._part_key(state, number), 0, min(part_size, remaining))
            remaining -= part_size
        if remaining > 0:
            raise OSError(f"upload {state['id']} is shorter than {size} bytes")

    def commit_upload(self, state: UploadState, size: int, digest: str) -> None:
        parts: list[int] = state["parts"]
        if sum(parts) != size:
            raise OSError(f"upload {state['id']} holds {sum(parts)} bytes, not {size}")
        key = self._key(digest)
        if len(parts) == 0:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")
        elif len(parts) == 1:
            source = {"Bucket": self.bucket, "Key": self._part_key(state, 0)}
            if parts[0] <= MAX_COPY:
                self.client.copy_object(Bucket=self.bucket, Key=key, CopySource=source)
            else:
                self.client.copy(source, self.bucket, key, Config=TransferConfig(multipart_chunksize=512 * 1024 * 1024))
        else:
            self._join(state, key)
        self.cancel_upload(state)

    def _join(self, state: UploadState, key: str) -> None:
        multipart = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            etags = []
            for number in range(len(state["parts"])):
                copied = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=multipart,
                    PartNumber=number + 1,
                    CopySource={"Bucket": self.bucket, "Key": self._part_key(state, number)},
                )
                etags.append({"PartNumber": number + 1, "ETag": copied["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=multipart, MultipartUpload={"Parts": etags}
            )
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart)
            raise

    def cancel_upload(self, state: UploadState) -> None:
        """Delete every part object, also those a crashed writer never recorded in the state."""
        prefix = self._part_key(state, 0).rpartition("/")[0] + "/"
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def sweep_uploads(self, older_than: float, active: set[str]) -> int:
        freed = 0
        prefix = f"{self.prefix}uploads/"
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            stale = [
                item
                for item in page.get("Contents", [])
                if item["Key"][len(prefix) :].split("/")[0] not in active
                and item["LastModified"].timestamp() < older_than
            ]
            if stale:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": i["Key"]} for i in stale], "Quiet": True}
                )
                freed += sum(item["Size"] for item in stale)
        for page in self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < older_than:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        return freed
