"""Pure: fresh sources. A source is packaged once per source key; with `spec.model.refresh:
OnResync` the key also holds a version of what the source holds now, so new weights under the
same S3 prefix change the key, are packaged, and roll out like any model change.

The version of an S3 source is a hash of its objects' keys and ETags (one ListObjectsV2, no
download); that of a HuggingFace source the commit its revision (a branch or tag) resolves to (one
revision-info request to the hub, no download; a revision that is already a 40-hex commit cannot
move and needs no request). With `Never` (the default) no version is asked and the key is the one
it always was.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Literal

from qa_operator.spec import HuggingFaceSource, ModelSource, S3Source

Refresh = Literal["Never", "OnResync"]
REFRESH_POLICIES: tuple[Refresh, ...] = ("Never", "OnResync")
Lookup = Literal["s3", "huggingface"]
COMMIT = re.compile(r"^[0-9a-f]{40}$")
HF_PREFIX = "hf-"


def lookup(refresh: Refresh, source: ModelSource) -> Lookup | None:
    """What a pass asks to learn what the source holds now: nothing with `Never`, nor for an
    mlflow source, nor for a HuggingFace revision pinned to a commit."""
    if refresh != "OnResync":
        return None
    if isinstance(source, S3Source):
        return "s3"
    if isinstance(source, HuggingFaceSource) and not is_commit(source.revision):
        return "huggingface"
    return None


def is_commit(revision: str) -> bool:
    return COMMIT.match(revision) is not None


def s3_version(listing: Iterable[tuple[str, str]]) -> str:
    """A short, order-independent hash of (key, ETag) pairs; folder markers do not count."""
    pairs = sorted((key, etag.strip('"')) for key, etag in listing if not key.endswith("/"))
    return "s3-" + hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def huggingface_version(commit: str) -> str:
    """The version of a HuggingFace source: the commit its revision resolved to."""
    if not is_commit(commit):
        raise ValueError(f"the hub resolved the revision to {commit!r}, not a 40-hex commit")
    return HF_PREFIX + commit


def huggingface_commit(version: str | None) -> str | None:
    """The commit a HuggingFace source's version names (packaging fetches that commit, so the
    package is the one its key says), or None."""
    if version and version.startswith(HF_PREFIX) and is_commit(version[len(HF_PREFIX) :]):
        return version[len(HF_PREFIX) :]
    return None
