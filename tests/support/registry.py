"""pytest plugin: a real OCI registry (distribution 2.8, Debian's `docker-registry`) on loopback,
started by devstack.registry. Logs: see tests/README.md."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.registry import Registry, start_registry, stop_registry

__all__ = ["Registry", "oci_registry", "oci_registry_with_auth"]


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An open registry; log at <basetemp>/registry0/registry.log."""
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    stop_registry(registry)


@pytest.fixture(scope="session")
def oci_registry_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind htpasswd basic auth (.username/.password); log under
    <basetemp>/registry-auth0/registry.log."""
    registry = start_registry(tmp_path_factory.mktemp("registry-auth"), username="qa-tester")
    yield registry
    stop_registry(registry)
