"""What a model source holds now, cheaply (freshness.py): an S3 prefix's keys and ETags."""

from __future__ import annotations

from typing import Any

from qa_operator.aws.s3 import list_objects, split_s3_uri


class SourceVersions:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def s3_listing(self, uri: str) -> list[tuple[str, str]]:
        bucket, prefix = split_s3_uri(uri)
        return [(o["Key"], str(o.get("ETag", ""))) for o in list_objects(self._s3, bucket, prefix)]
