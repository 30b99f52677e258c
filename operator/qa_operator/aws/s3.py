"""S3 adapter for model packages: content-addressed uploads that skip what is already there."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qa_operator import metrics
from qa_operator.aws.errors import aws_call, aws_call_or_none
from qa_operator.desired import Owner
from qa_operator.keyed_locks import KeyedLocks
from qa_operator.package_refs import SharedPackage, plan_release

DIGEST_METADATA = "qa-operator-digest"


def split_s3_uri(uri: str) -> tuple[str, str]:
    without_scheme = uri.removeprefix("s3://")
    bucket, _, key = without_scheme.partition("/")
    return bucket, key


class PackageStore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def stored_digest(self, bucket: str, key: str) -> str | None:
        head = aws_call_or_none(
            "HeadObject", lambda: self._client.head_object(Bucket=bucket, Key=key)
        )
        if head is None:
            return None
        return head.get("Metadata", {}).get(DIGEST_METADATA)

    def upload(self, archive: Path, bucket: str, key: str, digest: str) -> bool:
        """Upload unless an object with the same digest is there. True when bytes were sent."""
        if self.stored_digest(bucket, key) == digest:
            return False
        started = time.monotonic()
        aws_call(
            "PutObject",
            lambda: self._client.upload_file(
                str(archive), bucket, key, ExtraArgs={"Metadata": {DIGEST_METADATA: digest}}
            ),
        )
        metrics.record_package_upload(archive.stat().st_size, time.monotonic() - started)
        return True

    def put_marker(self, bucket: str, key: str) -> None:
        aws_call("PutObject", lambda: self._client.put_object(Bucket=bucket, Key=key, Body=b""))

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return [obj["Key"] for obj in list_objects(self._client, bucket, prefix)]

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        batch = [{"Key": key} for key in keys]
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            aws_call(
                "DeleteObjects",
                lambda c=chunk: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=bucket, Delete={"Objects": c, "Quiet": True}
                ),
            )

    def abort_uploads(self, bucket: str, prefix: str) -> int:
        """Abort the multipart uploads left under `prefix` (their parts are billed until then)."""
        aborted = 0
        markers: dict[str, Any] = {}
        while True:
            page = aws_call(
                "ListMultipartUploads",
                lambda m=markers: self._client.list_multipart_uploads(  # type: ignore[misc]
                    Bucket=bucket, Prefix=prefix, **m
                ),
            )
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                aws_call_or_none(
                    "AbortMultipartUpload",
                    lambda k=key, u=upload_id: self._client.abort_multipart_upload(  # type: ignore[misc]
                        Bucket=bucket, Key=k, UploadId=u
                    ),
                )
                aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }


def list_objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under the prefix, ListObjectsV2 page by page."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = aws_call(
            "ListObjectsV2",
            lambda kw=kwargs: client.list_objects_v2(**kw),  # type: ignore[misc]
        )
        yield from page.get("Contents", [])
        token = page.get("NextContinuationToken")
        if not token:
            return


class SharedPackageStore:
    """Shared packages and their reference markers (package_refs.py). Reference changes to one
    digest are serialised by an in-process lock: only the leader reconciles (leader.py), so
    no other process changes them at the same time."""

    def __init__(self, store: PackageStore, locks: KeyedLocks) -> None:
        self._store = store
        self._locks = locks

    def acquire(self, package: SharedPackage, owner: Owner, archive: Path, digest: str) -> bool:
        """Register `owner`'s reference, then make sure the object is there. True when bytes
        were sent."""
        with self._locks.hold(package.uri):
            self._store.put_marker(package.bucket, package.ref_key(owner))
            return self._store.upload(archive, package.bucket, package.key, digest)

    def release(self, package: SharedPackage, owner: Owner) -> int:
        """Drop `owner`'s reference; delete the object with the last one. Returns how many
        package objects were deleted (0 or 1)."""
        with self._locks.hold(package.uri):
            listed = self._store.keys(package.bucket, package.prefix)
            doomed = plan_release(package, owner, listed)
            self._store.delete(package.bucket, doomed)
            if package.key in doomed:
                self._store.abort_uploads(package.bucket, package.prefix)
                return 1
            return 0
