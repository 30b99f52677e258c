"""The Debian base image: built from .deb files without running them, pushed, and run."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest
from devstack_images import Member, tar_bytes

from devstack.containers import Container, ContainerRuntime, Mount, UnpackedImage, wait_http
from devstack.debian_base import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    PYTHON,
    DebianBase,
    build_rootfs_layer,
    push_debian_python_base,
)
from devstack.processes import free_port
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient
from support.containers import DEBIAN_BASE_REPOSITORY


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out.write(header.encode() + data + (b"\n" if len(data) % 2 else b""))
    return out.getvalue()


def fake_deb(path: Path, name: str, members: list[Member]) -> Path:
    """A .deb as dpkg-deb builds it: debian-binary, control.tar.xz, data.tar.xz."""
    control = f"Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\n".encode()
    control_tar = tar_bytes([Member("./control", control)])
    data_tar = tar_bytes(members)
    path.write_bytes(
        _ar(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar.xz", lzma.compress(control_tar)),
                ("data.tar.xz", lzma.compress(data_tar)),
            ]
        )
    )
    return path


def layer_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_packages_become_a_reproducible_merged_usr_layer(tmp_path):
    deb = fake_deb(
        tmp_path / "tool_1.0-1_amd64.deb",
        "tool",
        [
            Member("./", kind="dir", mode=0o755),
            Member("./bin/", kind="dir", mode=0o755),
            Member("./bin/tool", b"#!tool\n", mode=0o755),
            Member("./bin/alias", kind="symlink", target="../usr/bin/real"),
            Member("./lib/x86_64-linux-gnu/libtool.so.1.0", b"\x7fELF"),
            Member("./lib/x86_64-linux-gnu/libtool.so.1", kind="symlink", target="libtool.so.1.0"),
            Member("./usr/bin/real", b"real\n", mode=0o755),
            Member("./usr/bin/hard", kind="hardlink", target="./bin/tool"),
            Member("./usr/share/doc/tool/README", b"docs\n"),
            Member("./usr/share/doc/tool/copyright", b"licence\n"),
            Member("./usr/share/man/man1/tool.1.gz", b"man\n"),
        ],
    )
    first, packages = build_rootfs_layer([deb], tmp_path / "first.tar.gz")
    second, _ = build_rootfs_layer([deb], tmp_path / "second.tar.gz")

    assert [p.pin for p in packages] == ["tool=1.0-1"]
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert (tmp_path / "first.tar.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime
    members = layer_members(first.path)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
    by_name = {m.name: m for m in members}
    for link in ("bin", "sbin", "lib", "lib64"):
        assert by_name[link].issym() and by_name[link].linkname == f"usr/{link}"
    assert by_name["usr/bin/hard"].mode == by_name["usr/bin/tool"].mode == 0o755
    # the alias moved from /bin to /usr/bin and still reaches /usr/bin/real
    assert by_name["usr/bin/alias"].linkname == "real"
    assert by_name["usr/lib/x86_64-linux-gnu/libtool.so.1"].linkname == "libtool.so.1.0"
    # the first name of a hard-linked pair (in layer order) holds the content
    assert by_name["usr/bin/hard"].isfile() and by_name["usr/bin/tool"].islnk()
    assert by_name["usr/bin/tool"].linkname == "usr/bin/hard"
    assert "usr/share/doc/tool/copyright" in by_name
    assert "usr/share/doc/tool/README" not in by_name
    assert not any(name.startswith("usr/share/man") for name in names)
    assert by_name["tmp"].mode == 0o1777 and by_name["root"].mode == 0o700
    with tarfile.open(first.path) as tar:
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        assert [line.split(":")[0] for line in passwd.read().decode().splitlines()] == [
            "root",
            "nobody",
        ]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_base_is_docker_v2_and_a_second_push_uploads_nothing(
    oci_registry, debian_python_base: DebianBase
):
    client = RegistryClient(oci_registry.url)
    manifest = client.get_manifest(DEBIAN_BASE_REPOSITORY, debian_python_base.digest)
    body = manifest.json()
    config = json.loads(client.get_blob(DEBIAN_BASE_REPOSITORY, body["config"]["digest"]))

    assert manifest.media_type == DOCKER_MANIFEST == body["mediaType"]
    assert body["config"]["mediaType"] == DOCKER_CONFIG
    assert [layer["mediaType"] for layer in body["layers"]] == [DOCKER_LAYER]
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Cmd"] == ["python3.11"]
    assert "LANG=C.UTF-8" in config["config"]["Env"]
    assert config["rootfs"]["diff_ids"] == [debian_python_base.diff_id]
    assert debian_python_base.reference == (
        f"{oci_registry.host}/{DEBIAN_BASE_REPOSITORY}@{debian_python_base.digest}"
    )
    assert debian_python_base.python == PYTHON
    assert any(pin.startswith("python3.11=3.11.") for pin in debian_python_base.packages)

    before = client.bytes_uploaded
    again = push_debian_python_base(client, DEBIAN_BASE_REPOSITORY)
    assert again.digest == debian_python_base.digest
    assert again.bytes_uploaded == 0 and client.bytes_uploaded == before
    assert again.built_from_cache
    client.close()


def run_to_end(container: Container, timeout: float = 30.0) -> str:
    status = container.wait(timeout)
    assert status == 0, container.log_text()
    return container.log_text()


PROBE = """
import ctypes, json, os, ssl, sqlite3, zoneinfo
for library in ("libstdc++.so.6", "libgomp.so.1", "libgcc_s.so.1"):  # torch, tokenizers
    ctypes.CDLL(library)  # found without an ld.so.cache: glibc's multiarch default paths
result = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "cwd": os.getcwd(),
    "home": os.environ.get("HOME"),
    "sqlite": sqlite3.sqlite_version,
    "cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "zone": str(zoneinfo.ZoneInfo("Europe/Copenhagen")),
}
for place in ("/probe", "/usr/lib/probe", "/etc/passwd"):
    try:
        open(place, "a").close()
        result[place] = "written"
    except OSError as error:
        result[place] = error.errno
with open("/tmp/probe", "w") as handle:
    handle.write("x")
result["/tmp"] = "written"
print(json.dumps(result))
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_python_runs_as_an_unprivileged_user_on_a_read_only_root(
    debian_python_image: UnpackedImage, start_container
):
    container = start_container(
        debian_python_image, command=["python3.11", "-c", PROBE], user="10001"
    )
    result = json.loads(run_to_end(container).splitlines()[-1])

    assert (result["uid"], result["gid"], result["cwd"], result["home"]) == (10001, 0, "/", "/")
    assert result["sqlite"].startswith("3.")
    assert result["cas"] > 100  # the CA bundle the ca-certificates postinst would have made
    assert result["zone"] == "Europe/Copenhagen"
    erofs = 30
    assert result["/probe"] == result["/usr/lib/probe"] == result["/etc/passwd"] == erofs
    assert result["/tmp"] == "written"


@pytest.mark.e2e
@pytest.mark.slow
def test_an_http_server_in_the_base_answers_on_loopback_with_a_read_only_mount(
    debian_python_image: UnpackedImage, start_container, tmp_path
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello from the host")
    port = free_port()
    server = start_container(
        debian_python_image,
        command=[
            "python3.11",
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            "/srv/site",
        ],
        mounts=[Mount(site, "/srv/site")],
        user="10001",
    )
    assert wait_http(f"http://127.0.0.1:{port}/index.html", 30, container=server).text == (
        "hello from the host"
    )

    writer = start_container(
        debian_python_image,
        command=["python3.11", "-c", "open('/srv/site/new', 'w')"],
        mounts=[Mount(site, "/srv/site")],
    )
    assert writer.wait(30) != 0
    assert "Read-only file system" in writer.log_text()
    assert not (site / "new").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_the_runtime_reuses_an_unpacked_base(
    debian_python_base: DebianBase, debian_python_image: UnpackedImage, tmp_path
):
    runtime = ContainerRuntime(debian_python_image.rootfs.parent.parent)
    dead_registry = RegistryClient("http://127.0.0.1:9")  # the cache needs no registry
    again = runtime.pull_digest(dead_registry, DEBIAN_BASE_REPOSITORY, debian_python_base.digest)
    assert again.from_cache and again.rootfs == debian_python_image.rootfs
