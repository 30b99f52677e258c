"""The Argo CD health check shipped in manifests/argocd, run on statuses written by the operator's
own condition code, so the two cannot drift apart; in two real interpreters: Lua 5.4 (lupa) and
gopher-lua as Argo CD runs it (tests/support/gopherlua: only the base, table and package
libraries, the object converted as Argo CD converts it)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lupa
import pytest
import yaml

from qa_operator.conditions import Verdict, blocked, merge_conditions, retrying, verdict_for
from qa_operator.plan import State
from support.gopherlua import argocd_lua

PATCH = Path(__file__).resolve().parents[2] / "manifests/argocd/argocd-cm-health.yaml"
HEALTH_KEY = "resource.customizations.health.serving.qaoperator.io_QAModelDeployment"
NOW = "2026-11-25T12:00:00Z"


Assess = Callable[[dict[str, Any]], dict[str, str]]


def _script() -> str:
    return str(yaml.safe_load(PATCH.read_text())["data"][HEALTH_KEY])


def assess_in_lua54(resource: dict[str, Any]) -> dict[str, str]:
    """Run the script with the resource as global `obj`."""
    lua = lupa.LuaRuntime()
    lua.globals().obj = lua.table_from(resource, recursive=True)
    return dict(lua.execute(_script()))


@pytest.fixture(scope="module")
def script_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("argocd") / "health.lua"
    path.write_text(_script())
    return path


@pytest.fixture(params=["lua5.4", "gopher-lua"])
def assess(request: pytest.FixtureRequest, script_file: Path) -> Assess:
    if request.param == "lua5.4":
        return assess_in_lua54
    try:
        helper = argocd_lua()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)

    def in_gopher_lua(resource: dict[str, Any]) -> dict[str, str]:
        done = subprocess.run(
            [str(helper), str(script_file)],
            input=json.dumps(resource), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return {key: str(value) for key, value in json.loads(done.stdout).items()}

    return in_gopher_lua


def resource(generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "serving.qaoperator.io/v1alpha1",
        "kind": "QAModelDeployment",
        "metadata": {"name": "squad", "namespace": "team-a", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = status
    return body


def reported(
    verdict: Verdict, generation: int, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The status after one pass reporting `verdict`, as the reconciler merges it."""
    conditions = merge_conditions(
        (before or {}).get("conditions"), verdict.conditions, generation=generation, now=NOW
    )
    return {"phase": verdict.phase, "observedGeneration": generation, "conditions": conditions}


def state(kind: State, reason: str = "SomeReason", message: str = "what happened") -> Verdict:
    return verdict_for(kind, reason, message)


@pytest.mark.parametrize(
    ("kind", "health"),
    [
        (State.READY, "Healthy"),
        (State.CREATING, "Progressing"),
        (State.UPDATING, "Progressing"),
        (State.WAITING, "Progressing"),
        (State.DELETING, "Progressing"),
        (State.FAILED, "Degraded"),
        (State.ROLLED_BACK, "Degraded"),
        (State.CONFLICT, "Degraded"),
    ],
)
def test_every_state_the_operator_reports_has_a_health(
    kind: State, health: str, assess: Assess
) -> None:
    result = assess(resource(3, reported(state(kind, "EndpointSomething", "detail"), 3)))
    assert result["status"] == health
    assert result["message"] == "EndpointSomething: detail"


def test_a_rejected_spec_is_degraded_with_its_reason(assess: Assess) -> None:
    status = reported(blocked("InvalidSpec", "spec.endpoint.instanceCount must be >= 1"), 2)
    assert assess(resource(2, status)) == {
        "status": "Degraded",
        "message": "InvalidSpec: spec.endpoint.instanceCount must be >= 1",
    }


def test_before_the_operator_has_reported_anything_it_is_progressing(assess: Assess) -> None:
    assert assess(resource(1)) == {
        "status": "Progressing",
        "message": "waiting for qa-operator to report on generation 1",
    }


def test_a_new_generation_is_not_healthy_on_the_old_ones_report(assess: Assess) -> None:
    ready_at_1 = reported(state(State.READY), 1)
    assert assess(resource(2, ready_at_1))["status"] == "Progressing"
    degraded_at_1 = reported(state(State.FAILED), 1)
    assert assess(resource(2, degraded_at_1))["status"] == "Progressing"


def test_a_transient_error_on_a_ready_endpoint_stays_healthy(assess: Assess) -> None:
    ready = reported(state(State.READY), 4)
    throttled = reported(retrying("Throttled", "SageMaker throttled DescribeEndpoint"), 4, ready)
    assert assess(resource(4, throttled))["status"] == "Healthy"


def test_a_transient_error_during_a_change_is_progressing_with_its_reason(assess: Assess) -> None:
    ready = reported(state(State.READY), 4)
    throttled = reported(retrying("Throttled", "SageMaker throttled CreateModel"), 5, ready)
    assert assess(resource(5, throttled)) == {
        "status": "Progressing",
        "message": "Throttled: SageMaker throttled CreateModel",
    }
