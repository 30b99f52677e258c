"""What a model source holds now, cheaply (freshness.py): an S3 prefix's keys and ETags."""

from __future__ import annotations

from typing import Any

from qa_operator.aws.errors import aws_call
from qa_operator.aws.s3 import split_s3_uri


class SourceVersions:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def s3_listing(self, uri: str) -> list[tuple[str, str]]:
        bucket, prefix = split_s3_uri(uri)
        listing: list[tuple[str, str]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = aws_call(
                "ListObjectsV2",
                lambda kw=kwargs: self._s3.list_objects_v2(**kw),  # type: ignore[misc]
            )
            listing += [(o["Key"], str(o.get("ETag", ""))) for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return listing
