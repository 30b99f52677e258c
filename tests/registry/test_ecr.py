"""ECR control plane (moto) paired with a real registry, and the `qa-operator image` command."""

from __future__ import annotations

import argparse
import json

import pytest

from qa_operator.aws.ecr import (
    ecr_registry_client,
    ensure_repository,
    registry_credentials,
)
from qa_operator.registry import cli
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient, RegistryUnauthorized
from qa_operator.registry.images import publish_image

pytestmark = pytest.mark.e2e


def test_ensure_repository_is_idempotent(aws):
    ecr = aws.client("ecr")
    uri = ensure_repository(ecr, "qa/serving")
    assert uri.endswith("/qa/serving")
    assert aws.account_id in uri
    assert ensure_repository(ecr, "qa/serving") == uri
    assert len(ecr.describe_repositories()["repositories"]) == 1


def test_authorization_token_is_decoded(aws):
    credentials = registry_credentials(aws.client("ecr"))
    assert credentials.username == "AWS"
    assert credentials.password
    assert credentials.endpoint.startswith("https://")
    assert credentials.password not in repr(credentials)


def test_ecr_client_with_an_overridden_endpoint_publishes(
    aws, oci_registry, images, model_package, files_of
):
    ecr = aws.client("ecr")
    ensure_repository(ecr, "qa/ecr")
    client = ecr_registry_client(ecr, registry_endpoint=oci_registry.url)
    assert client.base_url == oci_registry.url
    assert client.host == oci_registry.host
    images.push_base(client, "serving/base", "ecr")

    ref = publish_image(
        client,
        base=f"{oci_registry.host}/serving/base:ecr",
        target_repository="qa/ecr",
        mode="baked",
        package_dir=model_package,
    )

    image = images.pull(client, "qa/ecr", ref.digest)
    assert {
        path.removeprefix("opt/ml/model/"): data
        for path, data in image.files.items()
        if path.startswith("opt/ml/model/")
    } == files_of(model_package)


def _args(**overrides):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = []
    for key, value in overrides.items():
        argv.append(f"--{key.replace('_', '-')}={value}")  # a value may start with "-"
    return parser.parse_args(argv)


def test_image_command_through_ecr_prints_the_image_ref(
    aws_env, oci_registry, images, model_package, capsys
):
    images.push_base(RegistryClient(oci_registry.url), "serving/base", "cli")
    args = _args(
        base=f"{oci_registry.host}/serving/base:cli",
        repository="qa/cli",
        mode="baked",
        package=model_package,
        package_digest="sha256:" + "cd" * 32,
        registry_endpoint=oci_registry.url,
    )

    assert cli.run(args) == 0

    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["tag"] == "pkg-cdcdcdcdcdcd"
    assert printed["uri"] == f"{oci_registry.host}/qa/cli@{printed['digest']}"
    assert printed["bytes_uploaded"] > 0
    # The command also made sure the ECR repository exists.
    repos = aws_env.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["qa/cli"]
    assert (
        RegistryClient(oci_registry.url).manifest_digest("qa/cli", "pkg-cdcdcdcdcdcd")
        == (printed["digest"])
    )


def test_image_command_with_explicit_credentials(
    oci_registry_with_auth, images, capsys, monkeypatch
):
    client = RegistryClient(
        oci_registry_with_auth.url,
        username=oci_registry_with_auth.username,
        password=oci_registry_with_auth.password,
    )
    base = images.push_base(client, "serving/base", "creds", media_type=DOCKER_MANIFEST)
    args = _args(
        base=f"{oci_registry_with_auth.host}/serving/base:creds",
        repository="qa/creds",
        registry_endpoint=oci_registry_with_auth.url,
        username=oci_registry_with_auth.username,
    )
    monkeypatch.setenv(cli.ENV_PASSWORD, oci_registry_with_auth.password)
    assert cli.run(args) == 0
    assert json.loads(capsys.readouterr().out)["digest"] == base.digest

    monkeypatch.setenv(cli.ENV_PASSWORD, "wrong")
    assert cli.run(args) == 1
    assert RegistryUnauthorized.__name__ in capsys.readouterr().err
