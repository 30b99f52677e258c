"""freshness.py and the source key: what the source holds now, and when it changes the key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qa_operator.desired import source_key
from qa_operator.freshness import huggingface_commit, huggingface_version, lookup, s3_version
from qa_operator.spec import SpecError, parse_spec

LISTING = [("tiny/config.json", '"aaa"'), ("tiny/model.safetensors", '"bbb"')]


@pytest.mark.parametrize(
    ("name", "listing", "same"),
    [
        ("the same objects in another order", list(reversed(LISTING)), True),
        ("ETags with or without quotes", [(k, e.strip('"')) for k, e in LISTING], True),
        ("a folder marker does not count", [*LISTING, ("tiny/", '"d41d"')], True),
        ("new weights: another ETag", [LISTING[0], ("tiny/model.safetensors", '"ccc"')], False),
        ("a file added", [*LISTING, ("tiny/vocab.txt", '"ddd"')], False),
        ("a file removed", LISTING[:1], False),
        ("a file renamed", [LISTING[0], ("tiny/weights.safetensors", '"bbb"')], False),
    ],
)
def test_s3_version(name: str, listing: list[tuple[str, str]], same: bool) -> None:
    assert (s3_version(listing) == s3_version(LISTING)) is same


RAW: dict[str, Any] = {
    "model": {"s3": {"uri": "s3://bucket/tiny/"}},
    "endpoint": {"instanceType": "ml.m5.large"},
}


def test_the_source_key_holds_the_version_only_when_refreshing() -> None:
    spec = parse_spec(RAW)
    refreshing = parse_spec({**RAW, "model": {**RAW["model"], "refresh": "OnResync"}})
    assert spec.refresh == "Never" and refreshing.refresh == "OnResync"
    # Without a version (refresh Never), the key is the one it always was.
    assert source_key(refreshing) == source_key(spec)
    versioned = dataclasses.replace(spec, source_version=s3_version(LISTING))
    newer = dataclasses.replace(spec, source_version=s3_version(LISTING[:1]))
    assert len({source_key(spec), source_key(versioned), source_key(newer)}) == 3


def test_spec_refresh_is_never_or_on_resync() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({**RAW, "model": {**RAW["model"], "refresh": "Always"}})
    assert error.value.field_path == "model.refresh"


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("name", "model", "expected"),
    [
        ("never: nothing asked", {"s3": {"uri": "s3://bucket/tiny/"}}, None),
        (
            "s3 refreshing: listed",
            {"s3": {"uri": "s3://bucket/tiny/"}, "refresh": "OnResync"},
            "s3",
        ),
        (
            "a branch refreshing: resolved",
            {"huggingface": {"id": "acme/qa"}, "refresh": "OnResync"},
            "huggingface",
        ),
        (
            "a tag refreshing: resolved",
            {"huggingface": {"id": "acme/qa", "revision": "v1.2"}, "refresh": "OnResync"},
            "huggingface",
        ),
        (
            "a pinned commit cannot move: not asked",
            {"huggingface": {"id": "acme/qa", "revision": COMMIT}, "refresh": "OnResync"},
            None,
        ),
        (
            "upper-case hex is a name, not a commit",
            {"huggingface": {"id": "acme/qa", "revision": COMMIT.upper()}, "refresh": "OnResync"},
            "huggingface",
        ),
        ("a branch, never", {"huggingface": {"id": "acme/qa"}}, None),
        (
            "mlflow: not looked at",
            {"mlflow": {"modelUri": "models:/qa/3"}, "refresh": "OnResync"},
            None,
        ),
    ],
)
def test_what_a_pass_asks_to_know_what_a_source_holds(
    name: str, model: dict[str, Any], expected: str | None
) -> None:
    spec = parse_spec({**RAW, "model": model})
    assert lookup(spec.refresh, spec.source) == expected


def test_a_huggingface_version_names_its_commit() -> None:
    version = huggingface_version(COMMIT)
    assert version == f"hf-{COMMIT}"
    assert huggingface_commit(version) == COMMIT
    assert huggingface_commit(s3_version(LISTING)) is None
    assert huggingface_commit(None) is None
    with pytest.raises(ValueError, match="40-hex"):
        huggingface_version("main")


def test_a_moved_branch_changes_the_source_key() -> None:
    spec = parse_spec({**RAW, "model": {"huggingface": {"id": "acme/qa"}, "refresh": "OnResync"}})
    keys = {
        source_key(dataclasses.replace(spec, source_version=huggingface_version(c)))
        for c in (COMMIT, COMMIT[::-1])
    }
    assert len(keys) == 2 and source_key(spec) not in keys
