"""Shared model packages in S3: one object per distinct package, deleted with its last reference.

A package's object lives at `<prefix>/_packages/<digest>/model.tar.gz`, whatever resource asked
for it, so N resources with one source upload it once. Each resource that uses it holds a
reference: an empty marker object `<prefix>/_packages/<digest>/refs/<namespace>.<name>.<uid>`.
`_packages` can never be a namespace (a DNS label has no `_`), so an owner's own prefix
(`<prefix>/<namespace>/<name>-<uid>/`, where packages were kept before) never overlaps it.

The sequences, run by the S3 adapter under one in-process lock per digest (only the leader
reconciles, leader.py):
- acquire: put the owner's marker, then make sure the object is there (upload when missing).
  The marker first: a release that lists the references after it sees it and keeps the object;
  one that deleted the object before it is answered by the upload.
- release: list what is under the digest's prefix, delete the owner's marker, and with it the
  object when no other owner's marker is listed (`plan_release`).

Records from before (a per-owner key in status) stay valid and are deleted as they always were
(plan.packages_to_delete); only shared URIs are released here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qa_operator.desired import Owner

SHARED_DIR = "_packages"
ARCHIVE_NAME = "model.tar.gz"
REFS_DIR = "refs"


@dataclass(frozen=True)
class SharedPackage:
    bucket: str
    prefix: str  # "<prefix>/_packages/<digest>/"

    @property
    def key(self) -> str:
        return self.prefix + ARCHIVE_NAME

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def refs_prefix(self) -> str:
        return f"{self.prefix}{REFS_DIR}/"

    def ref_key(self, owner: Owner) -> str:
        return f"{self.refs_prefix}{ref_name(owner)}"


def ref_name(owner: Owner) -> str:
    # Dots never occur in a namespace, and the uid (no dots) ends it: one name per owner.
    return f"{owner.namespace}.{owner.name}.{owner.uid}"


def shared_package(bucket: str, prefix: str, digest: str) -> SharedPackage:
    """Where the package with `digest` is kept for every resource that uses it."""
    stem = prefix.strip("/")
    return SharedPackage(
        bucket, f"{stem + '/' if stem else ''}{SHARED_DIR}/{digest.replace(':', '-')}/"
    )


def parse_shared(uri: str | None) -> SharedPackage | None:
    """The shared package an s3:// URI names, or None (a per-owner key from before, a baked
    image's empty URI, anything else)."""
    if not uri or not uri.startswith("s3://"):
        return None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    parts = key.split("/")
    if not bucket or len(parts) < 3 or parts[-1] != ARCHIVE_NAME or parts[-3] != SHARED_DIR:
        return None
    if not parts[-2] or any(not part for part in parts[:-3]):
        return None
    return SharedPackage(bucket, key.removesuffix(ARCHIVE_NAME))


def split_recorded(
    uris: Iterable[str | None],
) -> tuple[list[SharedPackage], list[str | None]]:
    """Recorded package URIs, split into shared packages (released) and the rest (per-owner
    keys from before, deleted by plan.packages_to_delete)."""
    shared: list[SharedPackage] = []
    others: list[str | None] = []
    for uri in uris:
        package = parse_shared(uri)
        if package is None:
            others.append(uri)
        elif package not in shared:
            shared.append(package)
    return shared, others


def to_release(recorded: Iterable[str | None], keep: str | None) -> list[SharedPackage]:
    """The shared packages whose reference this owner drops: every recorded one but `keep` (the
    package still served; None when finalizing)."""
    kept = parse_shared(keep)
    shared, _ = split_recorded(recorded)
    return [package for package in shared if package != kept]


def plan_release(package: SharedPackage, owner: Owner, listed: Iterable[str]) -> list[str]:
    """The keys to delete when `owner` drops its reference, given the keys listed under the
    package's prefix: its marker, and the object and everything else under the prefix when no
    other owner's marker is listed."""
    mine = package.ref_key(owner)
    listed = sorted(set(listed))
    others = [k for k in listed if k.startswith(package.refs_prefix) and k != mine]
    if others:
        return [mine]
    return sorted({mine, *listed})
