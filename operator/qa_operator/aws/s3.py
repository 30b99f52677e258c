"""S3 adapter for model packages: content-addressed uploads that skip what is already there."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from qa_operator.aws.errors import ErrorClass, as_operator_error, classify

T = TypeVar("T")
DIGEST_METADATA = "qa-operator-digest"


def split_s3_uri(uri: str) -> tuple[str, str]:
    without_scheme = uri.removeprefix("s3://")
    bucket, _, key = without_scheme.partition("/")
    return bucket, key


class PackageStore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            raise as_operator_error(exc, operation) from exc

    def stored_digest(self, bucket: str, key: str) -> str | None:
        try:
            head = self._client.head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if classify(exc) is ErrorClass.NOT_FOUND:
                return None
            raise as_operator_error(exc, "HeadObject") from exc
        return head.get("Metadata", {}).get(DIGEST_METADATA)

    def upload(self, archive: Path, bucket: str, key: str, digest: str) -> bool:
        """Upload unless an object with the same digest is there. True when bytes were sent."""
        if self.stored_digest(bucket, key) == digest:
            return False
        self._call(
            "PutObject",
            lambda: self._client.upload_file(
                str(archive), bucket, key, ExtraArgs={"Metadata": {DIGEST_METADATA: digest}}
            ),
        )
        return True

    def keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(
                "ListObjectsV2",
                lambda kw=kwargs: self._client.list_objects_v2(**kw),  # type: ignore[misc]
            )
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not token:
                return keys

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        batch = [{"Key": key} for key in keys]
        for start in range(0, len(batch), 1000):
            chunk = batch[start : start + 1000]
            self._call(
                "DeleteObjects",
                lambda c=chunk: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=bucket, Delete={"Objects": c, "Quiet": True}
                ),
            )
