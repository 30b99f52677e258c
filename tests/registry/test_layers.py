"""Pure parts of image publishing: deterministic layers and image references."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from qa_operator.registry.images import Reference, package_tag, parse_reference
from qa_operator.registry.layers import build_directory_layer


def _tree(root, files):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


FILES = {"MLmodel": b"flavors: {}\n", "artifacts/model/w.bin": b"\x00\x01" * 100, "b/c.txt": b"c"}


def test_same_content_same_digests_whatever_the_mtimes(tmp_path):
    first = _tree(tmp_path / "one", FILES)
    second = _tree(tmp_path / "two", dict(reversed(FILES.items())))
    for path in second.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()

    a = build_directory_layer(first, "opt/ml/model", tmp_path / "w1")
    b = build_directory_layer(second, "opt/ml/model", tmp_path / "w2")

    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.size == a.path.stat().st_size


def test_a_content_change_changes_the_digests(tmp_path):
    one = build_directory_layer(_tree(tmp_path / "one", FILES), "opt/ml/model", tmp_path)
    digests = (one.digest, one.diff_id)
    (tmp_path / "one" / "b" / "c.txt").write_bytes(b"C")
    (tmp_path / "w").mkdir()
    two = build_directory_layer(tmp_path / "one", "opt/ml/model", tmp_path / "w")
    assert two.digest != digests[0]
    assert two.diff_id != digests[1]


def test_layer_entries_are_sorted_rooted_and_owned_by_root(tmp_path):
    layer = build_directory_layer(_tree(tmp_path / "pkg", FILES), "/opt/ml/model/", tmp_path)
    raw = gzip.decompress(layer.path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == [
        "opt",
        "opt/ml",
        "opt/ml/model",
        "opt/ml/model/MLmodel",
        "opt/ml/model/artifacts",
        "opt/ml/model/artifacts/model",
        "opt/ml/model/artifacts/model/w.bin",
        "opt/ml/model/b",
        "opt/ml/model/b/c.txt",
    ]
    assert {(m.uid, m.gid, m.mtime, m.uname) for m in members} == {(0, 0, 0, "")}
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}


def test_symlinks_are_refused(tmp_path):
    root = _tree(tmp_path / "pkg", FILES)
    (root / "link").symlink_to(root / "MLmodel")
    with pytest.raises(ValueError, match="regular files"):
        build_directory_layer(root, "opt/ml/model", tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host.example/repo:1.0", Reference("host.example", "repo", "1.0", None)),
        ("127.0.0.1:5000/a/b:tag", Reference("127.0.0.1:5000", "a/b", "tag", None)),
        ("localhost/a", Reference("localhost", "a", "latest", None)),
        ("a/b", Reference(None, "a/b", "latest", None)),
        (
            "r.io:443/a/b@sha256:" + "0" * 64,
            Reference("r.io:443", "a/b", None, "sha256:" + "0" * 64),
        ),
        (
            "r.io/a:t@sha256:" + "1" * 64,
            Reference("r.io", "a", "t", "sha256:" + "1" * 64),
        ),
    ],
)
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected


def test_digest_wins_over_tag_when_fetching():
    assert parse_reference("r.io/a:t@sha256:" + "1" * 64).reference == "sha256:" + "1" * 64


def test_package_tag():
    assert package_tag("sha256:0123456789abcdef") == "pkg-0123456789ab"
