"""Shared packages and their references (package_refs.py): keys, parsing, what a release deletes."""

from __future__ import annotations

import pytest

from qa_operator.desired import Owner, owner_prefix
from qa_operator.package_refs import (
    SharedPackage,
    parse_shared,
    plan_release,
    shared_package,
    split_recorded,
    to_release,
)

A = Owner("team-a", "squad", "uid-1")
B = Owner("team-b", "squad", "uid-2")
PKG = shared_package("bucket", "/qa-operator/", "sha256:abc")
OTHER = shared_package("bucket", "qa-operator", "sha256:def")
LEGACY = "s3://bucket/qa-operator/team-a/squad-uid-1/sha256-abc/model.tar.gz"


def test_a_shared_package_is_keyed_by_its_digest_alone() -> None:
    assert PKG.key == "qa-operator/_packages/sha256-abc/model.tar.gz"
    assert PKG.uri == "s3://bucket/qa-operator/_packages/sha256-abc/model.tar.gz"
    assert PKG.ref_key(A) == "qa-operator/_packages/sha256-abc/refs/team-a.squad.uid-1"
    assert PKG.ref_key(A) != PKG.ref_key(B)
    assert shared_package("bucket", "", "sha256:abc").key == "_packages/sha256-abc/model.tar.gz"


@pytest.mark.parametrize("namespace", ["packages", "p", "team-a"])
def test_no_owner_prefix_overlaps_the_shared_packages(namespace: str) -> None:
    # A namespace is a DNS label: "_packages" is never one, whatever the resource's name.
    prefix = owner_prefix("qa-operator", Owner(namespace, "sha256-abc", "uid"))
    assert not PKG.key.startswith(prefix)
    assert not prefix.startswith(PKG.prefix)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        (PKG.uri, PKG),
        (
            "s3://bucket/_packages/sha256-abc/model.tar.gz",
            SharedPackage("bucket", "_packages/sha256-abc/"),
        ),
        (LEGACY, None),  # a per-owner key from before
        ("s3://bucket/qa-operator/_packages/sha256-abc/other.tar.gz", None),
        ("s3://bucket/qa-operator/_packages//model.tar.gz", None),
        ("s3://bucket/a//_packages/d/model.tar.gz", None),
        ("s3:///qa-operator/_packages/d/model.tar.gz", None),
        ("https://bucket/_packages/d/model.tar.gz", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_shared(uri: str | None, parsed: SharedPackage | None) -> None:
    assert parse_shared(uri) == parsed


def test_split_recorded_keeps_the_rest_for_the_per_owner_clean_up() -> None:
    shared, others = split_recorded([PKG.uri, LEGACY, None, PKG.uri, OTHER.uri])
    assert shared == [PKG, OTHER]
    assert others == [LEGACY, None]


@pytest.mark.parametrize(
    ("recorded", "keep", "released"),
    [
        ([PKG.uri, OTHER.uri], PKG.uri, [OTHER]),  # superseded: the served one stays referenced
        ([PKG.uri, OTHER.uri], None, [PKG, OTHER]),  # finalizing: every reference goes
        ([PKG.uri, LEGACY], None, [PKG]),  # a per-owner key is not released, it is deleted
        ([LEGACY, None], LEGACY, []),
        ([], None, []),
    ],
)
def test_to_release(
    recorded: list[str | None], keep: str | None, released: list[SharedPackage]
) -> None:
    assert to_release(recorded, keep) == released


@pytest.mark.parametrize(
    ("listed", "doomed"),
    [
        # The last reference: the marker, the object and anything else under the digest go.
        ([PKG.ref_key(A), PKG.key], [PKG.key, PKG.ref_key(A)]),
        # Another owner still refers to it: only this owner's marker goes.
        ([PKG.ref_key(A), PKG.ref_key(B), PKG.key], [PKG.ref_key(A)]),
        ([PKG.ref_key(B), PKG.key], [PKG.ref_key(A)]),  # already released: nothing of B's
        # No marker left at all (released twice, or the marker never written): the object goes.
        ([PKG.key], [PKG.key, PKG.ref_key(A)]),
        ([], [PKG.ref_key(A)]),
        # A stray object beside the archive (a half-written upload's leftover) goes with it.
        (
            [PKG.ref_key(A), PKG.key, PKG.prefix + "model.tar.gz.tmp"],
            [PKG.key, PKG.prefix + "model.tar.gz.tmp", PKG.ref_key(A)],
        ),
    ],
)
def test_plan_release(listed: list[str], doomed: list[str]) -> None:
    assert plan_release(PKG, A, listed) == doomed
