"""A kopf operator, started the way users start one (`kopf run`), reconciles a custom resource
against the local API server. This is the path our own operator's end-to-end tests take."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.controlplane.fixtures import Cluster

pytestmark = pytest.mark.e2e

GROUP = "kopf-harness.qa-operator.test"
PLURAL = "greetings"
ANNOTATION = f"{GROUP}/greeted-generation"
DEADLINE_S = 60.0

GREETING_CRD = textwrap.dedent(
    f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {PLURAL}.{GROUP}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: greeting, kind: Greeting}}
      versions:
        - name: v1
          served: true
          storage: true
          subresources: {{status: {{}}}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    name: {{type: string}}
                status:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
    """
)

OPERATOR = textwrap.dedent(
    f"""\
    import kopf


    @kopf.on.create("{GROUP}", "v1", "{PLURAL}")
    @kopf.on.update("{GROUP}", "v1", "{PLURAL}")
    def greet(spec, meta, patch, **_):
        patch.status["message"] = f"hello {{spec['name']}}"
        patch.metadata.annotations["{ANNOTATION}"] = str(meta["generation"])
    """
)


def kopf_executable() -> str:
    beside_python = Path(sys.executable).with_name("kopf")
    found = str(beside_python) if beside_python.exists() else shutil.which("kopf")
    if found is None:
        pytest.fail("the kopf command is not installed next to this Python nor on PATH")
    return found


@pytest.fixture
def greeting_crd(kube_cluster: Cluster, tmp_path: Path) -> str:
    path = tmp_path / "greetings.yaml"
    path.write_text(GREETING_CRD)
    kube_cluster.kubectl("apply", "-f", str(path))
    name = f"{PLURAL}.{GROUP}"
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    return name


@pytest.fixture
def operator_run(
    kube_cluster: Cluster, namespace: str, tmp_path: Path, greeting_crd: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    script = tmp_path / "greeter.py"
    script.write_text(OPERATOR)
    log = tmp_path / "kopf.log"
    command = [kopf_executable(), "run", "--standalone", "--namespace", namespace, str(script)]
    env = dict(os.environ, KUBECONFIG=str(kube_cluster.kubeconfig))
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(
    what: str,
    probe: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    log: Path,
) -> dict[str, Any]:
    """Poll `probe` until `done` holds, failing with the operator's log at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    seen = probe()
    while not done(seen):
        if time.monotonic() > deadline:
            pytest.fail(
                f"gave up waiting for {what}; last object:\n{json.dumps(seen, indent=1)}\n"
                f"kopf log:\n{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.2)
        seen = probe()
    return seen


def test_kopf_run_reconciles_a_custom_resource(
    kube_cluster: Cluster,
    namespace: str,
    greeting_crd: str,
    operator_run: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, log = operator_run
    manifest = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Greeting",
        "metadata": {"name": "first"},
        "spec": {"name": "world"},
    }
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def probe() -> dict[str, Any]:
        got: dict[str, Any] = json.loads(
            kube_cluster.kubectl("get", "-n", namespace, greeting_crd, "first", "-o", "json").stdout
        )
        return got

    def greeted(message: str, generation: str) -> Callable[[dict[str, Any]], bool]:
        def check(obj: dict[str, Any]) -> bool:
            annotations = obj["metadata"].get("annotations", {})
            return (
                obj.get("status", {}).get("message") == message
                and annotations.get(ANNOTATION) == generation
            )

        return check

    wait_for("the create handler", probe, greeted("hello world", "1"), log)

    kube_cluster.kubectl(
        *("patch", "-n", namespace, greeting_crd, "first", "--type=merge"),
        "-p",
        '{"spec": {"name": "again"}}',
    )
    wait_for("the update handler", probe, greeted("hello again", "2"), log)

    assert process.poll() is None, "the operator exited while reconciling"
    process.send_signal(signal.SIGINT)
    process.wait(30)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    assert "Handler 'greet' succeeded" in output
