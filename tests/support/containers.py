"""pytest plugin: containers from the local stack (devstack/), run from the session registry.

The Debian base is built once per machine (cached under `debian-base` in the user cache) and
pushed to the session's `oci_registry`; images unpack into the user cache's `rootfs`, so a
second run reuses both. Containers run under bubblewrap; if it is missing the fixtures fail
(never skip). See devstack/README.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devstack.containers import Container, ContainerRuntime, UnpackedImage
from devstack.debian_base import DebianBase, push_debian_python_base
from devstack.images import DEBIAN_BASE_REPOSITORY, SERVING_REPOSITORY, build_project_image
from qa_operator.imagebuild.results import BuildResult
from qa_operator.registry.client import RegistryClient

if TYPE_CHECKING:  # imported for real by pytest_plugins, so that its asserts are rewritten
    from support.registry import Registry

__all__ = ["DEBIAN_BASE_REPOSITORY", "SERVING_REPOSITORY"]


@pytest.fixture(scope="session")
def debian_python_base(oci_registry: Registry) -> DebianBase:
    """Debian bookworm with CPython 3.11 (`.python`), pushed as Docker v2 to `oci_registry`;
    `.reference` is host/repository@sha256:..."""
    client = RegistryClient(oci_registry.url)
    try:
        return push_debian_python_base(client, DEBIAN_BASE_REPOSITORY)
    finally:
        client.close()


@pytest.fixture(scope="session")
def serving_image(oci_registry: Registry, debian_python_base: DebianBase) -> BuildResult:
    """The serving image of this checkout, built onto the Debian base and pushed as
    SERVING_REPOSITORY:test (layers from the builder's cache: only a machine's first build pays
    for torch)."""
    return build_project_image(
        oci_registry.url,
        "serving",
        SERVING_REPOSITORY,
        base=debian_python_base.reference,
        tag="test",
    )


@pytest.fixture(scope="session")
def container_runtime() -> ContainerRuntime:
    """Pulls into the user cache's rootfs directory, runs with bubblewrap."""
    runtime = ContainerRuntime()
    runtime.bwrap()  # fail here, with the install hint, when bubblewrap is missing
    return runtime


@pytest.fixture(scope="session")
def debian_python_image(
    container_runtime: ContainerRuntime, debian_python_base: DebianBase
) -> UnpackedImage:
    """The Debian base, pulled and unpacked, ready for `container_runtime.run`."""
    return container_runtime.pull(debian_python_base.reference)


@pytest.fixture
def start_container(
    container_runtime: ContainerRuntime, tmp_path: Path
) -> Iterator[Callable[..., Container]]:
    """`start_container(image, **run_options)` -> a running Container, logging to
    <tmp_path>/container-N.log unless `log_path` is given; stopped after the test."""
    started: list[Container] = []

    def start(image: UnpackedImage, **options: Any) -> Container:
        options.setdefault("log_path", tmp_path / f"container-{len(started)}.log")
        container = container_runtime.run(image, **options)
        started.append(container)
        return container

    yield start
    for container in started:
        container.stop(timeout=5)
