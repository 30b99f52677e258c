"""Fixtures for the devstack tests; the shared ones are in support/containers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devstack_images import ImagePusher

from qa_operator.registry.client import RegistryClient
from support.registry import Registry


@pytest.fixture
def registry_client(oci_registry: Registry) -> Iterator[RegistryClient]:
    client = RegistryClient(oci_registry.url)
    yield client
    client.close()


@pytest.fixture
def pusher(registry_client: RegistryClient) -> ImagePusher:
    return ImagePusher(registry_client)
