"""The container runner: pulling (verified), unpacking (layers, whiteouts, escapes), running."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import time
from pathlib import Path

import pytest
from devstack_images import ImagePusher, Member, PushedImage, tar_bytes

from devstack.containers import (
    SAGEMAKER_MODEL_DIR,
    ContainerError,
    ContainerRuntime,
    ImageError,
    Mount,
    UnpackedImage,
    extract_model_archive,
    run_sagemaker_container,
    sagemaker_environment,
    wait_http,
)
from devstack.debian_base import DebianBase
from devstack.processes import free_port
from qa_operator.registry.client import DigestMismatch, RegistryClient, sha256_digest
from support.containers import DEBIAN_BASE_REPOSITORY
from support.images import Images
from support.registry import Registry


@pytest.fixture
def runtime(tmp_path: Path) -> ContainerRuntime:
    """A runtime with its own empty cache, for tests that look at unpacking."""
    return ContainerRuntime(tmp_path / "rootfs-cache")


def unique_repository() -> str:
    return f"devstack/test-{secrets.token_hex(4)}"


def pull(runtime: ContainerRuntime, client: RegistryClient, image: PushedImage) -> UnpackedImage:
    return runtime.pull(image.reference(client.host), client=client)


# -- unpacking ------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_layers_apply_in_order_with_whiteouts_opaque_dirs_and_links(runtime, pusher):
    lower = tar_bytes(
        [
            Member("etc/", kind="dir", mode=0o755),
            Member("etc/keep", b"kept\n"),
            Member("etc/gone", b"to be whited out\n"),
            Member("etc/script", b"#!/bin/sh\n", mode=0o4755),
            Member("opt/app/", kind="dir", mode=0o750),
            Member("opt/app/old", b"old\n"),
            Member("opt/app/sub/older", b"older\n"),
            Member("etc/link", kind="symlink", target="keep"),
            Member("etc/absolute", kind="symlink", target="/etc/keep"),
            Member("etc/hard", kind="hardlink", target="etc/keep"),
            Member("var/replaced/inner", b"a directory becomes a file\n"),
        ]
    )
    upper = tar_bytes(
        [
            Member("etc/.wh.gone"),
            Member("opt/app/.wh..wh..opq"),
            Member("opt/app/new", b"new\n"),
            Member("opt/app/sub/newer", b"newer\n"),
            Member("etc/fresh", b"written and whited out in the same layer: stays\n"),
            Member("etc/.wh.fresh"),
            Member("var/replaced", b"now a file\n"),
        ]
    )
    image = pusher.push(unique_repository(), [lower, upper])
    root = pull(runtime, pusher.client, image).rootfs

    assert (root / "etc/keep").read_text() == "kept\n"
    assert not (root / "etc/gone").exists()
    assert not (root / "etc/.wh.gone").exists()
    assert (root / "etc/fresh").exists()
    assert sorted(
        p.relative_to(root / "opt/app").as_posix() for p in (root / "opt/app").rglob("*")
    ) == [
        "new",
        "sub",
        "sub/newer",
    ]
    assert (root / "opt/app").stat().st_mode & 0o7777 == 0o750
    assert (root / "etc/script").stat().st_mode & 0o7777 == 0o4755
    assert os.readlink(root / "etc/link") == "keep"
    assert os.readlink(root / "etc/absolute") == "/etc/keep"  # a link, never followed on the host
    assert (root / "etc/hard").stat().st_ino == (root / "etc/keep").stat().st_ino
    assert (root / "var/replaced").read_text() == "now a file\n"
    for mount_point in ("dev", "proc", "tmp", "etc/hosts", "etc/resolv.conf"):
        assert (root / mount_point).exists()  # what Docker's init layer adds


@pytest.mark.e2e
def test_an_oci_index_resolves_to_its_linux_amd64_image(runtime, registry_client):
    repository = unique_repository()
    base = Images().push_base(registry_client, repository, "multi", as_index=True)
    image = runtime.pull(
        f"{registry_client.host}/{repository}@{base.digest}", client=registry_client
    )
    assert image.digest == base.image_digest
    assert (image.rootfs / "etc/os-release").read_text() == "NAME=synthetic\n"
    assert not (image.rootfs / "etc/arch").exists()
    assert image.runtime.working_dir == "/app" and image.runtime.user == "1000"


@pytest.mark.e2e
def test_entries_leaving_the_root_are_refused(runtime, pusher):
    for member in (
        Member("../escaped", b"x"),
        Member("etc/../../escaped", b"x"),
        Member("etc/passwd-link", kind="hardlink", target="../../etc/passwd"),
    ):
        image = pusher.push(unique_repository(), [tar_bytes([member])])
        with pytest.raises(ImageError, match="leaves the root"):
            pull(runtime, pusher.client, image)
    assert list(runtime.cache_dir.iterdir()) == []  # nothing half-unpacked is left behind


@pytest.mark.e2e
def test_links_are_followed_inside_the_root_never_out_of_it(runtime, pusher, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    climbing = "../" * 30 + str(outside).lstrip("/")
    image = pusher.push(
        unique_repository(),
        [
            tar_bytes([Member("absolute", kind="symlink", target=str(outside))]),
            tar_bytes(
                [
                    Member("climbing", kind="symlink", target=climbing),
                    Member("absolute/through-absolute", b"x"),
                    Member("climbing/through-climbing", b"x"),
                ]
            ),
        ],
    )
    root = pull(runtime, pusher.client, image).rootfs
    assert list(outside.iterdir()) == []
    inside = root / str(outside).lstrip("/")
    assert sorted(p.name for p in inside.iterdir()) == ["through-absolute", "through-climbing"]


@pytest.mark.e2e
def test_a_link_replaced_by_a_directory_is_no_longer_followed(runtime, pusher):
    image = pusher.push(
        unique_repository(),
        [
            tar_bytes(
                [
                    Member("target/", kind="dir", mode=0o755),
                    Member("place", kind="symlink", target="target"),
                    Member("place/through-link", b"lower\n"),
                ]
            ),
            tar_bytes([Member("place/", kind="dir", mode=0o755), Member("place/own", b"upper\n")]),
        ],
    )
    root = pull(runtime, pusher.client, image).rootfs
    assert (root / "place").is_dir() and not (root / "place").is_symlink()
    assert sorted(p.name for p in (root / "place").iterdir()) == ["own"]
    assert sorted(p.name for p in (root / "target").iterdir()) == ["through-link"]


def blob_file(registry: Registry, digest: str) -> Path:
    hex_digest = digest.removeprefix("sha256:")
    return (
        registry.storage_dir
        / "docker/registry/v2/blobs/sha256"
        / hex_digest[:2]
        / hex_digest
        / "data"
    )


@pytest.mark.e2e
def test_a_tampered_layer_is_refused(runtime, pusher, oci_registry):
    layer = tar_bytes([Member("data", secrets.token_bytes(64 * 1024))])
    image = pusher.push(unique_repository(), [layer])
    stored = blob_file(oci_registry, image.layer_digests[0])
    content = bytearray(stored.read_bytes())
    content[len(content) // 2] ^= 0xFF  # the registry now serves other bytes under the digest
    stored.write_bytes(bytes(content))

    with pytest.raises(DigestMismatch):
        pull(runtime, pusher.client, image)
    assert list(runtime.cache_dir.iterdir()) == []


@pytest.mark.e2e
def test_a_layer_that_does_not_match_its_diff_id_is_refused(runtime, pusher):
    layer = tar_bytes([Member("data", b"x")])
    image = pusher.push(unique_repository(), [layer], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(ImageError, match="diff_id"):
        pull(runtime, pusher.client, image)
    assert list(runtime.cache_dir.iterdir()) == []

    # In the parent chain: neither the chain nor the image is left, half-unpacked or whole.
    top = tar_bytes([Member("top", b"y")])
    chained = pusher.push(
        unique_repository(),
        [layer, layer, top],
        diff_ids=[sha256_digest(layer), "sha256:" + "0" * 64, sha256_digest(top)],
    )
    with pytest.raises(ImageError, match="diff_id"):
        pull(runtime, pusher.client, chained)
    assert list(runtime.cache_dir.iterdir()) == []

    named_oddly = pusher.push(unique_repository(), [layer, top], diff_ids=["../x", "../y"])
    with pytest.raises(ImageError, match="not a sha256 digest"):
        pull(runtime, pusher.client, named_oddly)


@pytest.mark.e2e
def test_what_is_not_a_container_image_is_refused(runtime, pusher):
    artifact = pusher.push(
        unique_repository(),
        [tar_bytes([Member("data", b"x")])],
        config_media_type="application/vnd.example.model.config.v1+json",
    )
    with pytest.raises(ImageError, match="not a container image"):
        pull(runtime, pusher.client, artifact)

    with pytest.raises(ValueError, match="by digest"):
        runtime.pull(f"{pusher.client.host}/some/image:latest", client=pusher.client)
    with pytest.raises(ValueError, match="not a sha256 digest"):
        runtime.pull(f"{pusher.client.host}/some/image@sha256:../../elsewhere")


@pytest.mark.e2e
def test_the_rootfs_cache_is_reused_for_the_same_digest(runtime, pusher):
    image = pusher.push(unique_repository(), [tar_bytes([Member("data", b"x")])])
    first = pull(runtime, pusher.client, image)
    marker = first.rootfs / "data"
    inode = marker.stat().st_ino

    dead = RegistryClient("http://127.0.0.1:9")  # nothing listens: the cache must answer
    again = runtime.pull(image.reference(pusher.client.host), client=dead)

    assert not first.from_cache and again.from_cache
    assert again.rootfs == first.rootfs and marker.stat().st_ino == inode
    assert [entry.name for entry in runtime.cache_dir.iterdir()] == [
        image.digest.removeprefix("sha256:")
    ]


# -- running --------------------------------------------------------------------------------------

APP = """
import json, os, sys
print(json.dumps({
    "argv": sys.argv[1:],
    "uid": os.getuid(),
    "gid": os.getgid(),
    "cwd": os.getcwd(),
    "greeting": os.environ.get("GREETING"),
    "extra": os.environ.get("EXTRA"),
    "host_env": os.environ.get("QA_DEVSTACK_HOST_ONLY"),
}))
print("to stderr", file=sys.stderr)
"""


@pytest.fixture
def app_image(
    pusher: ImagePusher,
    debian_python_base: DebianBase,
    container_runtime: ContainerRuntime,
) -> UnpackedImage:
    """The Debian base plus /app/main.py, with an Entrypoint, Cmd, Env, User and WorkingDir."""
    image = pusher.push(
        DEBIAN_BASE_REPOSITORY,
        [tar_bytes([Member("app/", kind="dir", mode=0o755), Member("app/main.py", APP.encode())])],
        media_type="application/vnd.docker.distribution.manifest.v2+json",
        base_digest=debian_python_base.digest,
        runtime={
            "Entrypoint": ["python3.11", "/app/main.py"],
            "Cmd": ["from-cmd"],
            "Env": ["PATH=/usr/bin:/bin", "GREETING=hello"],
            "User": "4242:4243",
            "WorkingDir": "/app",
        },
    )
    return pull(container_runtime, pusher.client, image)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_image_config_decides_how_it_runs(
    app_image: UnpackedImage, start_container, monkeypatch
):
    monkeypatch.setenv("QA_DEVSTACK_HOST_ONLY", "leaks?")
    first = start_container(app_image, env={"EXTRA": "given"})
    assert first.wait(30) == 0, first.log_text()
    output = first.log_text().splitlines()
    assert "to stderr" in output
    assert json.loads(next(line for line in output if line.startswith("{"))) == {
        "argv": ["from-cmd"],
        "uid": 4242,
        "gid": 4243,
        "cwd": "/app",
        "greeting": "hello",
        "extra": "given",
        "host_env": None,
    }

    second = start_container(app_image, command=["serve"], user="0", env={"GREETING": "over"})
    assert second.wait(30) == 0, second.log_text()
    result = json.loads(next(line for line in second.log_text().splitlines() if "{" in line))
    assert (result["argv"], result["uid"], result["greeting"]) == (["serve"], 0, "over")


@pytest.mark.e2e
@pytest.mark.slow
def test_stop_sends_sigterm_then_sigkill(debian_python_image: UnpackedImage, start_container):
    sleeper = start_container(
        debian_python_image,
        command=["python3.11", "-c", "import time; print('up', flush=True); time.sleep(600)"],
    )
    wait_for_log(sleeper, "up")
    main = sleeper.main_pids()
    assert len(main) == 1
    started = time.monotonic()
    assert sleeper.stop(timeout=10) == 128 + 15  # bubblewrap passes on "killed by SIGTERM"
    assert time.monotonic() - started < 5
    assert not Path(f"/proc/{main[0]}").exists()

    stubborn = start_container(
        debian_python_image,
        command=[
            "python3.11",
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(600)",
        ],
    )
    wait_for_log(stubborn, "up")
    main = stubborn.main_pids()
    started = time.monotonic()
    assert stubborn.stop(timeout=1) == -9
    assert 1 <= time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while Path(f"/proc/{main[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the sandbox dies with bubblewrap (--die-with-parent)
    assert not Path(f"/proc/{main[0]}").exists()


def wait_for_log(container, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in container.log_text():
        assert container.running(), container.log_text()
        assert time.monotonic() < deadline, container.log_text()
        time.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.slow
def test_wait_http_reports_an_early_exit_with_the_log(
    debian_python_image: UnpackedImage, start_container
):
    failing = start_container(
        debian_python_image, command=["python3.11", "-c", "raise SystemExit('no model here')"]
    )
    with pytest.raises(ContainerError, match="no model here"):
        wait_http(f"http://127.0.0.1:{free_port()}/ping", 30, container=failing)


# -- SageMaker ------------------------------------------------------------------------------------

SERVE = """
import http.server, json, os, sys

if sys.argv[1:] != ["serve"]:
    raise SystemExit(f"SageMaker runs the image with 'serve', not {sys.argv[1:]}")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        model = "/opt/ml/model"
        body = json.dumps({
            "files": sorted(os.listdir(model)),
            "weights": open(os.path.join(model, "weights.txt")).read(),
            "name": os.environ.get("MODEL_NAME"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def model_archive(path: Path, members: list[Member]) -> Path:
    path.write_bytes(gzip.compress(tar_bytes(members), mtime=0))
    return path


@pytest.mark.e2e
@pytest.mark.slow
def test_a_sagemaker_container_serves_the_extracted_model(
    pusher: ImagePusher,
    debian_python_base: DebianBase,
    container_runtime: ContainerRuntime,
    tmp_path: Path,
):
    image = pull(
        container_runtime,
        pusher.client,
        pusher.push(
            DEBIAN_BASE_REPOSITORY,
            [tar_bytes([Member("app/serve.py", SERVE.encode())])],
            media_type="application/vnd.docker.distribution.manifest.v2+json",
            base_digest=debian_python_base.digest,
            runtime={"Entrypoint": ["python3.11", "/app/serve.py"], "Cmd": ["train"]},
        ),
    )
    archive = model_archive(
        tmp_path / "model.tar.gz",
        [
            Member("weights.txt", b"0.5 0.25\n", mode=0o600),
            Member("code/", kind="dir", mode=0o700),
            Member("code/inference.py", b"# handler\n", mode=0o700),
        ],
    )
    model_dir = extract_model_archive(archive, tmp_path / "model")
    port = free_port()
    with run_sagemaker_container(
        container_runtime,
        image,
        model_dir=model_dir,
        port=port,
        log_path=tmp_path / "sagemaker.log",
        model_environment={"MODEL_NAME": "tiny-qa", "SAGEMAKER_BIND_TO_PORT": "8080"},
    ) as container:
        answer = wait_http(f"http://127.0.0.1:{port}/ping", 30, container=container).json()
    assert answer == {"files": ["code", "weights.txt"], "weights": "0.5 0.25\n", "name": "tiny-qa"}
    assert container.returncode is not None


def test_model_archives_extract_world_readable_and_never_outside(tmp_path):
    archive = model_archive(
        tmp_path / "model.tar.gz",
        [
            Member("private/", kind="dir", mode=0o700),
            Member("private/weights.bin", b"w", mode=0o600),
            Member("run.sh", b"#!/bin/sh\n", mode=0o700),
        ],
    )
    model = extract_model_archive(archive, tmp_path / "model")
    assert (model / "private").stat().st_mode & 0o777 == 0o755
    assert (model / "private/weights.bin").stat().st_mode & 0o777 == 0o644
    assert (model / "run.sh").stat().st_mode & 0o777 == 0o755

    absolute = extract_model_archive(
        model_archive(tmp_path / "absolute.tar.gz", [Member("/etc/absolute", b"x")]),
        tmp_path / "absolute",
    )
    assert (absolute / "etc/absolute").read_bytes() == b"x"  # as tar does: the "/" is dropped

    for bad in (
        Member("../escaped", b"x"),
        Member("link", kind="symlink", target="/etc/passwd"),
        Member("link", kind="symlink", target="../../escaped"),
    ):
        target = tmp_path / f"bad-{secrets.token_hex(3)}"
        with pytest.raises(ValueError):
            extract_model_archive(model_archive(tmp_path / "bad.tar.gz", [bad]), target)
        assert list(target.iterdir()) == []
    assert not (tmp_path / "escaped").exists()


def test_sagemaker_environment_puts_the_port_over_the_models_environment():
    assert sagemaker_environment({"MODEL_NAME": "m", "SAGEMAKER_BIND_TO_PORT": "1"}, port=4321) == {
        "MODEL_NAME": "m",
        "SAGEMAKER_BIND_TO_PORT": "4321",
    }
    assert sagemaker_environment(port=8080) == {"SAGEMAKER_BIND_TO_PORT": "8080"}
    assert SAGEMAKER_MODEL_DIR == "/opt/ml/model"


@pytest.mark.e2e
@pytest.mark.slow
def test_a_missing_mount_source_is_reported(debian_python_image, container_runtime, tmp_path):
    with pytest.raises(ContainerError, match="does not exist"):
        container_runtime.run(
            debian_python_image,
            command=["true"],
            mounts=[Mount(tmp_path / "nope", "/x")],
            log_path=tmp_path / "log",
        )


def test_a_missing_bubblewrap_is_named_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerError, match="apt-get install bubblewrap"):
        ContainerRuntime(tmp_path / "cache").bwrap()
