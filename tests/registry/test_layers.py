"""Pure parts of image publishing: deterministic layers and image references."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path

import pytest

from qa_operator.registry.images import Reference, package_tag, parse_reference
from qa_operator.registry.layers import (
    Compression,
    Layer,
    build_directory_layer,
    build_tree_layer,
    tree_members,
)


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


def test_the_tar_is_what_it_has_always_been(tmp_path):
    """Pinned: a model package's layer must not change when the layer writer does, or every
    baked image would be repushed. (The tar's digest; the gzip bytes depend on zlib's build.)"""
    layer = build_directory_layer(_tree(tmp_path / "pkg", FILES), "opt/ml/model", tmp_path)
    assert layer.diff_id == (
        "sha256:bdf6102d9579b757a75888e20024b3f24c17be819c8c3f73a0b1e4c537a27c13"
    )


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


# -- whole image subtrees (build_tree_layer): links kept, owners, gzip in parallel blocks -------


def _venv_tree(root: Path) -> Path:
    """A venv-like tree: nested files, an executable, symlinks (absolute and relative), a
    hardlink, an empty directory owned by someone else."""
    site = root / "opt/venv/lib/python3.11/site-packages/pkg"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("VALUE = 1\n")
    (site / "data.bin").write_bytes(bytes(range(256)) * 512)
    script = root / "opt/venv/bin/tool"
    script.parent.mkdir(parents=True)
    script.write_text("#!/opt/venv/bin/python\n")
    script.chmod(0o750)
    (root / "opt/venv/bin/python").symlink_to("/usr/local/bin/python3.11")
    (root / "opt/venv/lib64").symlink_to("lib")
    os.link(site / "data.bin", site / "data-copy.bin")
    (root / "home/serving").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/passwd").chmod(0o600)
    return root


OWNERS = {"home/serving": (10001, 10001)}


def _members(layer: Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.path.read_bytes()))) as tar:
        return tar.getmembers()


def test_same_tree_same_digest_twice_links_included(tmp_path: Path) -> None:
    one = _venv_tree(tmp_path / "one")
    two = _venv_tree(tmp_path / "two")
    for path in two.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    a = build_tree_layer(one, tmp_path / "a.tar.gz", owners=OWNERS)
    b = build_tree_layer(two, tmp_path / "b.tar.gz", owners=OWNERS)
    again = build_tree_layer(one, tmp_path / "a2.tar.gz", owners=OWNERS)
    assert (
        (a.digest, a.diff_id, a.size)
        == (b.digest, b.diff_id, b.size)
        == (
            again.digest,
            again.diff_id,
            again.size,
        )
    )
    assert a.path.read_bytes() == b.path.read_bytes()


def test_entries_sorted_normalised_links_kept(tmp_path: Path) -> None:
    layer = build_tree_layer(_venv_tree(tmp_path / "t"), tmp_path / "l.tar.gz", owners=OWNERS)
    members = {m.name: m for m in _members(layer)}
    names = list(members)
    assert names == sorted(names, key=lambda n: n + "/" if members[n].isdir() else n)
    python = members["opt/venv/bin/python"]
    assert python.issym() and python.linkname == "/usr/local/bin/python3.11"
    assert python.mode == 0o777
    assert members["opt/venv/lib64"].issym() and members["opt/venv/lib64"].linkname == "lib"
    pkg = "opt/venv/lib/python3.11/site-packages/pkg"
    # The first name in sorted order ("-" < ".") holds the content, the other links to it.
    assert members[f"{pkg}/data-copy.bin"].isfile()
    second = members[f"{pkg}/data.bin"]
    assert second.islnk() and second.linkname == f"{pkg}/data-copy.bin"
    assert members["opt/venv/bin/tool"].mode == 0o755
    assert members["etc/passwd"].mode == 0o644
    assert {m.mode for m in members.values() if m.isdir()} == {0o755}
    assert (members["home/serving"].uid, members["home/serving"].gid) == (10001, 10001)
    others = [m for name, m in members.items() if name != "home/serving"]
    assert {(m.uid, m.gid, m.mtime, m.uname, m.gname) for m in others} == {(0, 0, 0, "", "")}


def test_an_owner_for_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not under"):
        tree_members(_venv_tree(tmp_path / "t"), {"home/nobody": (1, 1)})


def test_sockets_and_devices_are_refused(tmp_path: Path) -> None:
    root = _venv_tree(tmp_path / "t")
    os.mkfifo(root / "fifo")
    with pytest.raises(ValueError, match="only files, directories and symlinks"):
        tree_members(root)


@pytest.mark.parametrize("level", [1, 6])
def test_block_gzip_is_plain_gzip_and_independent_of_threads(tmp_path: Path, level: int) -> None:
    root = _venv_tree(tmp_path / "t")
    (root / "big.bin").write_bytes(os.urandom(300_000) + b"\0" * 300_000 + os.urandom(100_000))
    layers = [
        build_tree_layer(
            root,
            tmp_path / f"{threads}.tar.gz",
            compression=Compression(level=level, block_size=64 * 1024, threads=threads),
        )
        for threads in (1, 2, 5)
    ]
    assert len({layer.digest for layer in layers}) == 1
    assert len({layer.diff_id for layer in layers}) == 1
    data = layers[0].path.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\0\0\0\0"  # no name, mtime 0
    stream = build_tree_layer(root, tmp_path / "stream.tar.gz", compression=Compression(level))
    assert gzip.decompress(data) == gzip.decompress(stream.path.read_bytes())
    assert stream.diff_id == layers[0].diff_id  # same tar, other compression
    decompressor = zlib.decompressobj(31)
    decompressor.decompress(data)
    assert decompressor.eof and decompressor.unused_data == b""  # one gzip member


def test_compression_identity_names_what_decides_the_bytes() -> None:
    assert Compression(level=1, block_size=1 << 20).identity == (
        f"gzip-1-blocks1048576-zlib{zlib.ZLIB_RUNTIME_VERSION}"
    )
    assert Compression().identity.startswith("gzip-6-stream-")
    assert Compression(level=1, block_size=8, threads=2).identity == (
        Compression(level=1, block_size=8, threads=7).identity
    )


def test_an_empty_tree_makes_a_valid_layer(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    layer = build_tree_layer(
        tmp_path / "empty", tmp_path / "e.tar.gz", compression=Compression(block_size=1024)
    )
    assert _members(layer) == []
