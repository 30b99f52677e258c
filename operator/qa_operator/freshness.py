"""Pure: fresh sources. A source is packaged once per source key; with `spec.model.refresh:
OnResync` the key also holds a version of what the source holds now, so new weights under the
same S3 prefix change the key, are packaged, and roll out like any model change.

The version of an S3 source is a hash of its objects' keys and ETags (one ListObjectsV2, no
download). With `Never` (the default) no version is asked and the key is the one it always was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Literal

Refresh = Literal["Never", "OnResync"]
REFRESH_POLICIES: tuple[Refresh, ...] = ("Never", "OnResync")


def s3_version(listing: Iterable[tuple[str, str]]) -> str:
    """A short, order-independent hash of (key, ETag) pairs; folder markers do not count."""
    pairs = sorted((key, etag.strip('"')) for key, etag in listing if not key.endswith("/"))
    return "s3-" + hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]
