"""`qa-operator`, the console script, as users call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qa_operator.registry.client import RegistryClient
from support.images import Images


def _qa_operator(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "qa-operator"
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        input=stdin,
        check=False,
    )


def test_help_names_both_commands() -> None:
    result = _qa_operator("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "image" in result.stdout


def test_image_help_names_build_and_publish() -> None:
    result = _qa_operator("image", "--help")
    assert result.returncode == 0
    assert "build" in result.stdout and "publish" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "nope"], "invalid choice"),
        (["--recipe", "serving", "--torch-variant", "gpu"], "torch variant 'gpu'"),
        (["--recipe", "serving", "--password", "secret"], "unrecognized arguments: --password"),
    ],
)
def test_image_build_refuses_bad_arguments(args: list[str], message: str) -> None:
    result = _qa_operator("image", "build", "--base", "127.0.0.1:1/b:t", "--repository", "r", *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("command", [["image", "publish"], ["image"]])
def test_image_publish_refuses_a_password_on_the_command_line(command: list[str]) -> None:
    result = _qa_operator(
        *command, "--base", "127.0.0.1:1/b:t", "--repository", "r", "--password", "hunter2"
    )
    assert result.returncode == 2
    assert "--password is refused" in result.stderr and "--password-stdin" in result.stderr
    assert "hunter2" not in result.stderr


def test_run_without_a_cluster_fails_with_a_message_not_a_hang(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "missing-kubeconfig"
    result = _qa_operator("run", "--standalone", "-n", "x", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode != 0
    assert "Ran out of valid credentials" in result.stderr


@pytest.mark.e2e
def test_image_command_publishes_a_baked_image(oci_registry: Any, tmp_path: Path) -> None:
    client = RegistryClient(oci_registry.url)
    base = Images().push_base(client, "serving-base", "cli")
    package = tmp_path / "package"
    package.mkdir()
    (package / "MLmodel").write_text("flavors: {}\n")
    result = _qa_operator(
        "image",
        "--base",
        f"{oci_registry.host}/serving-base:cli",
        "--repository",
        "qa-cli",
        "--mode",
        "baked",
        "--package",
        str(package),
        "--registry-endpoint",
        oci_registry.url,
        "--username",
        "u",
        env={"QA_OPERATOR_REGISTRY_PASSWORD": "p"},
    )
    assert result.returncode == 0, result.stderr
    ref = json.loads(result.stdout)
    assert ref["digest"].startswith("sha256:") and ref["digest"] != base.image_digest
    assert ref["uri"] == f"{oci_registry.host}/qa-cli@{ref['digest']}"
    pulled = Images().pull(client, "qa-cli", ref["digest"])
    assert pulled.files["opt/ml/model/MLmodel"] == b"flavors: {}\n"


@pytest.mark.e2e
def test_image_publish_reads_the_password_from_stdin(oci_registry_with_auth: Any) -> None:
    registry = oci_registry_with_auth
    client = RegistryClient(registry.url, username=registry.username, password=registry.password)
    Images().push_base(client, "serving-base", "stdin")
    arguments = [
        "image",
        "publish",
        "--base",
        f"{registry.host}/serving-base:stdin",
        "--repository",
        "qa-stdin",
        "--registry-endpoint",
        registry.url,
        "--username",
        registry.username,
    ]
    refused = _qa_operator(*arguments, "--password-stdin", stdin="wrong\n")
    assert refused.returncode == 1 and "RegistryUnauthorized" in refused.stderr
    result = _qa_operator(*arguments, "--password-stdin", stdin=f"{registry.password}\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["uri"].startswith(f"{registry.host}/qa-stdin@sha256:")
