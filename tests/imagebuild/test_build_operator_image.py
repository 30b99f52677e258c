"""End to end: the operator image built onto a small synthetic base in a real local registry.

One cold build, a second identical build, and a build after a change to one source file, all
into the same repository with the same layer cache; the tests read the results and the pushed
image back. The base is OCI (converted to Docker v2 on the way) and is read through another
client than the target's, so its layers travel by download and upload.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qa_operator.imagebuild import OPERATOR, BuildResult, build_image
from qa_operator.imagebuild.imageconfig import DOCKER_CONFIG, DOCKER_LAYER
from qa_operator.imagebuild.recipes import CONSTRAINTS_FILE
from qa_operator.imagebuild.sources import copy_sources, project_files
from qa_operator.registry.client import DOCKER_MANIFEST, OCI_MANIFEST, RegistryClient
from support.images import Images

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "imagebuild/operator"
SITE = "opt/venv/lib/python3.11/site-packages"
BASE_PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
BASE_FILES = {
    "usr/bin/python3.11": b"\x7fELF not really",
    "etc/passwd": BASE_PASSWD,
    "etc/group": b"root:x:0:\n",
}

pytestmark = pytest.mark.slow


@dataclass
class Builds:
    client: RegistryClient
    base_layers: list[str]
    cold: BuildResult
    warm: BuildResult
    changed: BuildResult


def _copy_project(destination: Path) -> Path:
    files = [CONSTRAINTS_FILE, *OPERATOR.requirement_files, *project_files(ROOT)]
    copy_sources(ROOT, files, destination)
    return destination


@pytest.fixture(scope="module")
def builds(oci_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    client = RegistryClient(oci_registry.url)
    base_reader = RegistryClient(oci_registry.url)
    base = Images().push_base(
        client, "imagebuild/base", "py311", media_type=OCI_MANIFEST, layers_files=[BASE_FILES]
    )
    project = _copy_project(tmp_path_factory.mktemp("project"))
    cache = tmp_path_factory.mktemp("cache")

    def build(reader: RegistryClient | None = None) -> BuildResult:
        return build_image(
            client,
            recipe=OPERATOR,
            base=f"{oci_registry.host}/imagebuild/base:py311",
            repository=REPOSITORY,
            tag="test",
            project_dir=project,
            cache_dir=cache,
            base_client=reader,
        )

    cold = build(base_reader)
    warm = build()
    cli = project / "operator/qa_operator/cli.py"
    cli.write_text(cli.read_text() + "\n# a change to the project's code\n")
    changed = build()
    yield Builds(client, base.layer_digests, cold, warm, changed)
    client.close()
    base_reader.close()


def _layers(client: RegistryClient, digest: str) -> list[dict[str, Any]]:
    return list(client.get_manifest(REPOSITORY, digest).json()["layers"])


def _tar(client: RegistryClient, layer: dict[str, Any]) -> tarfile.TarFile:
    blob = client.get_blob(REPOSITORY, layer["digest"])
    return tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)))


def test_manifest_is_docker_v2_with_the_bases_layers_first(builds: Builds) -> None:
    manifest = builds.client.get_manifest(REPOSITORY, "test")
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.digest == builds.changed.digest
    body = manifest.json()
    assert body["config"]["mediaType"] == DOCKER_CONFIG
    assert {layer["mediaType"] for layer in body["layers"]} == {DOCKER_LAYER}
    assert [layer["digest"] for layer in body["layers"]][:1] == builds.base_layers
    assert [layer.name for layer in builds.cold.layers] == ["base/0", "dependencies", "app"]
    assert builds.cold.uri == f"{builds.client.host}/{REPOSITORY}@{builds.cold.digest}"


def test_config_carries_the_operator_contract(builds: Builds) -> None:
    body = builds.client.get_manifest(REPOSITORY, builds.cold.digest).json()
    config = json.loads(builds.client.get_blob(REPOSITORY, body["config"]["digest"]))
    runtime = config["config"]
    assert runtime["Entrypoint"] == ["qa-operator"]
    assert runtime["Cmd"] == ["run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
    assert runtime["User"] == "10001"
    assert runtime["ExposedPorts"] == {"8080/tcp": {}}
    env = dict(entry.split("=", 1) for entry in runtime["Env"])
    assert env["PATH"] == "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["HOME"] == "/home/operator"
    assert env["QA_OPERATOR_WORK_DIR"] == "/var/cache/qa-operator"
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    assert len(config["rootfs"]["diff_ids"]) == len(body["layers"]) == 3
    assert config["created"] == "2024-01-01T00:00:00Z"  # the base's: no clock in the image


def test_dependency_layer_holds_the_operators_packages_with_pycs(builds: Builds) -> None:
    dependencies = _layers(builds.client, builds.cold.digest)[1]
    with _tar(builds.client, dependencies) as tar:
        members = {member.name: member for member in tar.getmembers()}
        kopf_script = tar.extractfile(members["opt/venv/bin/kopf"])
        assert kopf_script is not None
        assert kopf_script.readline() == b"#!/opt/venv/bin/python\n"
    for package in ("kopf", "kubernetes", "boto3", "mlflow", "yaml", "requests", "safetensors"):
        assert f"{SITE}/{package}/__init__.py" in members, package
        assert f"{SITE}/{package}/__pycache__/__init__.cpython-311.pyc" in members, package
    assert not any(name.startswith(f"{SITE}/torch/") for name in members)
    assert not any(name.endswith("direct_url.json") for name in members)
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, 0)}


def test_app_layer_holds_the_package_the_venv_and_the_user(builds: Builds) -> None:
    app = _layers(builds.client, builds.cold.digest)[2]
    with _tar(builds.client, app) as tar:
        members = {member.name: member for member in tar.getmembers()}

        def read(name: str) -> bytes:
            handle = tar.extractfile(members[name])
            assert handle is not None
            return handle.read()

        passwd = read("etc/passwd")
        pyvenv = read("opt/venv/pyvenv.cfg").decode()
        script = read("opt/venv/bin/qa-operator")
    assert passwd == BASE_PASSWD + b"operator:x:10001:10001::/home/operator:/bin/sh\n"
    assert "home = /usr/bin\n" in pyvenv  # found in the base: usr/bin/python3.11
    assert members["opt/venv/bin/python"].linkname == "/usr/bin/python3.11"
    assert script.startswith(b"#!/opt/venv/bin/python\n")
    assert f"{SITE}/qa_operator/__pycache__/cli.cpython-311.pyc" in members
    assert not any(name.endswith("direct_url.json") for name in members)
    for directory in ("home/operator", "var/cache/qa-operator"):
        assert (members[directory].uid, members[directory].gid) == (10001, 10001)
        assert members[directory].mode == 0o755


def test_a_second_build_uploads_nothing(builds: Builds) -> None:
    cold, warm = builds.cold, builds.warm
    assert cold.bytes_uploaded > 50_000_000
    assert warm.bytes_uploaded == 0
    assert warm.digest == cold.digest
    assert [(layer.name, layer.origin) for layer in warm.layers] == [
        ("base/0", "base"),
        ("dependencies", "cache"),
        ("app", "cache"),
    ]
    assert [layer.origin for layer in cold.layers[1:]] == ["built", "built"]


def test_a_code_change_uploads_only_the_app_layer_config_and_manifest(builds: Builds) -> None:
    warm, changed = builds.warm, builds.changed
    assert changed.digest != warm.digest
    by_name = {layer.name: layer for layer in changed.layers}
    assert by_name["dependencies"].origin == "cache"
    assert by_name["dependencies"].bytes_uploaded == 0
    assert by_name["app"].origin == "built"
    assert by_name["app"].digest != {layer.name: layer for layer in warm.layers}["app"].digest
    config_size = builds.client.get_manifest(REPOSITORY, changed.digest).json()["config"]["size"]
    manifest_size = len(builds.client.get_manifest(REPOSITORY, changed.digest).body)
    assert changed.bytes_uploaded == by_name["app"].size + config_size + manifest_size


def test_the_venv_imports_its_packages_from_the_precompiled_pycs(
    builds: Builds, tmp_path: Path
) -> None:
    """The image's filesystem, unpacked, with the venv pointed at this machine's CPython 3.11
    (the base's was a stand-in): packages import from the image's site-packages, code from the
    .pyc files the builder wrote."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("needs a CPython 3.11 to stand in for the base's")
    root = tmp_path / "rootfs"
    for layer in _layers(builds.client, builds.cold.digest):
        with _tar(builds.client, layer) as tar:
            tar.extractall(root, filter="tar")
    interpreter = os.path.realpath(sys.executable)
    venv = root / "opt/venv"
    (venv / "bin/python").unlink()
    (venv / "bin/python").symlink_to(interpreter)
    (venv / "pyvenv.cfg").write_text(
        f"home = {os.path.dirname(interpreter)}\ninclude-system-site-packages = false\n"
    )
    code = "import kopf, kubernetes, boto3, yaml, qa_operator.handlers; print(kopf.__file__)"
    result = subprocess.run(
        [str(venv / "bin/python"), "-v", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"{root}/{SITE}/kopf/__init__.py"
    assert f"code object from '{root}/{SITE}/kopf/__pycache__/__init__.cpython-311.pyc'" in (
        result.stderr
    )
    shutil.rmtree(root)
