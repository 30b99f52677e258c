"""The project's own images, built onto the Debian base with the product's builder
(`qa_operator.imagebuild`) and pushed to a local registry: what the tests, the local stack and
`make demo` serve from."""

from __future__ import annotations

from pathlib import Path

from devstack.debian_base import push_debian_python_base
from qa_operator.imagebuild.build import build_image
from qa_operator.imagebuild.results import BuildResult
from qa_operator.registry.client import RegistryClient

REPO = Path(__file__).resolve().parents[1]
DEBIAN_BASE_REPOSITORY = "devstack/debian-python"
SERVING_REPOSITORY = "qa/serving"
OPERATOR_REPOSITORY = "qa/operator"


def build_project_image(
    registry_url: str,
    recipe: str,
    repository: str,
    *,
    base: str | None = None,
    tag: str = "dev",
) -> BuildResult:
    """Build `recipe` ("serving" or "operator") from this checkout onto `base` (default: the
    Debian base, built or taken from its cache and pushed first) and push it. Layers come from
    the builder's cache, so only the first build on a machine installs and compresses torch."""
    client = RegistryClient(registry_url)
    try:
        if base is None:
            base = push_debian_python_base(client, DEBIAN_BASE_REPOSITORY).reference
        return build_image(
            client, recipe=recipe, base=base, repository=repository, tag=tag, project_dir=REPO
        )
    finally:
        client.close()
