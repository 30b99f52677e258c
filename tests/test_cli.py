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


def _qa_operator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "qa-operator"
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_names_both_commands() -> None:
    result = _qa_operator("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "image" in result.stdout


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
        "--password",
        "p",
    )
    assert result.returncode == 0, result.stderr
    ref = json.loads(result.stdout)
    assert ref["digest"].startswith("sha256:") and ref["digest"] != base.image_digest
    assert ref["uri"] == f"{oci_registry.host}/qa-cli@{ref['digest']}"
    pulled = Images().pull(client, "qa-cli", ref["digest"])
    assert pulled.files["opt/ml/model/MLmodel"] == b"flavors: {}\n"
