"""desired_state and its helpers: deterministic, valid, content-addressed names."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from qa_operator.desired import (
    Artifacts,
    DesiredState,
    Owner,
    desired_state,
    endpoint_name,
    is_owned_by,
    name_stem,
    owner_prefix,
    owner_tags,
    production_variant,
    short_hash,
    source_key,
)
from qa_operator.model.limits import ServingLimits
from qa_operator.spec import DeploymentSpec, parse_spec

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE = "arn:aws:iam::123456789012:role/qa-sagemaker"
OWNER = Owner(namespace="team-a", name="squad-qa", uid="0b6f5a36-1c1e-4d5e-9c0a-3f1f3a0c8d11")
ARTIFACTS = Artifacts(
    package_digest="sha256:" + "ab" * 32,
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/qa-serving:1.0",
    model_data_url="s3://bucket/qa-operator/team-a/squad-qa/model.tar.gz",
)


def spec(
    endpoint: dict[str, Any] | None = None, model: dict[str, Any] | None = None
) -> DeploymentSpec:
    return parse_spec(
        {
            "model": model or {"huggingface": {"id": "deepset/roberta-base-squad2"}},
            "endpoint": {"instanceType": "ml.m5.xlarge", **(endpoint or {})},
        }
    )


def state(
    the_spec: DeploymentSpec | None = None,
    owner: Owner = OWNER,
    artifacts: Artifacts = ARTIFACTS,
    role: str = ROLE,
) -> DesiredState:
    return desired_state(the_spec or spec(), owner, artifacts, execution_role_arn=role)


def is_valid_name(name: str) -> bool:
    return len(name) <= 63 and SAGEMAKER_NAME.match(name) is not None


# --- endpoint names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("default", "qa", "default-qa"),
        ("team-a", "squad.v2", "team-a-squad-v2"),
        ("ml", "my_model.prod", "ml-my-model-prod"),
        ("ns", "a..b", "ns-a--b"),
        ("ns", "model.", "ns-model"),
    ],
)
def test_default_endpoint_name_is_sanitised_namespace_and_name(
    namespace: str, name: str, expected: str
) -> None:
    result = endpoint_name(Owner(namespace, name, "uid"), spec())
    assert result == expected
    assert is_valid_name(result)


def test_explicit_endpoint_name_wins() -> None:
    assert endpoint_name(OWNER, spec({"name": "Prod-QA-1"})) == "Prod-QA-1"
    assert state(spec({"name": "Prod-QA-1"})).endpoint.name == "Prod-QA-1"


def test_name_of_exactly_63_characters_is_kept() -> None:
    owner = Owner("ns", "n" * 60, "uid")  # "ns-" + 60 = 63
    assert endpoint_name(owner, spec()) == "ns-" + "n" * 60


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("ns", "n" * 61),  # 64 characters: one too many
        ("a" * 63, "b" * 253),
        ("team", "x." * 120 + "y"),
        ("team", "a" * 45 + "-" * 30 + "b"),  # the cut lands in a run of hyphens
    ],
)
def test_long_names_are_shortened_stably_and_stay_valid(namespace: str, name: str) -> None:
    owner = Owner(namespace, name, "uid-1")
    first = endpoint_name(owner, spec())
    assert is_valid_name(first)
    assert len(first) <= 63
    assert endpoint_name(Owner(namespace, name, "another-uid"), spec()) == first, (
        "the name depends on namespace/name only, so it survives a re-create of the resource"
    )
    assert re.fullmatch(r".*-[0-9a-f]{8}", first), "shortened names end with a hash"


def test_long_names_with_a_common_prefix_stay_unique() -> None:
    stem = "question-answering-model-for-the-customer-support-knowledge-base"
    names = {endpoint_name(Owner("support", f"{stem}-{i}", "uid"), spec()) for i in range(50)}
    names.add(endpoint_name(Owner("support2", stem, "uid"), spec()))
    assert len(names) == 51
    assert all(is_valid_name(n) for n in names)


def test_names_are_always_valid_for_odd_inputs() -> None:
    for namespace, name in [
        ("a", "b"),
        ("kube-system", "z" * 253),
        ("x" * 63, "." * 3 + "q"),
        ("n", "1.2.3.4"),
    ]:
        result = endpoint_name(Owner(namespace, name, "u"), spec())
        assert is_valid_name(result), (namespace, name, result)


# --- model and config names -----------------------------------------------------------------


def test_same_inputs_give_the_same_names() -> None:
    first, second = state(), state(spec())
    assert first == second
    assert first.model.name.startswith("team-a-squad-qa-")
    assert first.config.name.startswith("team-a-squad-qa-")
    assert first.model.name != first.config.name
    assert first.endpoint.config_name == first.config.name
    assert first.config.model_name == first.model.name


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"artifacts": {"package_digest": "sha256:" + "cd" * 32}}, id="package"),
        pytest.param({"artifacts": {"image_uri": "registry.local/qa-serving:1.1"}}, id="image"),
        pytest.param({"artifacts": {"model_data_url": None}}, id="baked"),
        pytest.param({"spec": spec({"environment": {"LOG_LEVEL": "debug"}})}, id="env"),
        pytest.param({"role": "arn:aws:iam::123456789012:role/other"}, id="role"),
    ],
)
def test_model_content_changes_model_and_config_names(change: dict[str, Any]) -> None:
    base = state()
    artifacts = dataclasses.replace(ARTIFACTS, **change.get("artifacts", {}))
    changed = state(change.get("spec"), artifacts=artifacts, role=change.get("role", ROLE))
    assert changed.model.name != base.model.name
    assert changed.config.name != base.config.name, "a new model needs a new endpoint config"
    assert changed.endpoint.name == base.endpoint.name
    assert is_valid_name(changed.model.name)
    assert is_valid_name(changed.config.name)


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param({"instanceType": "ml.c5.xlarge"}, id="instance-type"),
        pytest.param({"instanceType": "ml.c5.xlarge", "instanceCount": 2}, id="type-and-count"),
        pytest.param(
            {"instanceType": None, "serverless": {"memorySizeInMB": 2048}}, id="serverless"
        ),
    ],
)
def test_compute_change_changes_only_the_config_name(endpoint: dict[str, Any]) -> None:
    raw: dict[str, Any] = {"instanceType": "ml.m5.xlarge", **endpoint}
    changed = desired_state(
        parse_spec(
            {
                "model": {"huggingface": {"id": "deepset/roberta-base-squad2"}},
                "endpoint": {k: v for k, v in raw.items() if v is not None},
            }
        ),
        OWNER,
        ARTIFACTS,
        execution_role_arn=ROLE,
    )
    base = state()
    assert changed.model.name == base.model.name
    assert changed.config.name != base.config.name


def test_serverless_memory_change_changes_the_config_name() -> None:
    def serverless(memory: int) -> DesiredState:
        return desired_state(
            parse_spec(
                {
                    "model": {"s3": {"uri": "s3://bucket/m/"}},
                    "endpoint": {"serverless": {"memorySizeInMB": memory}},
                }
            ),
            OWNER,
            ARTIFACTS,
            execution_role_arn=ROLE,
        )

    assert serverless(2048).config.name != serverless(4096).config.name
    assert serverless(2048).config.name == serverless(2048).config.name


def test_environment_order_does_not_change_names() -> None:
    one = state(spec({"environment": {"A": "1", "B": "2"}}))
    two = state(spec({"environment": {"B": "2", "A": "1"}}))
    assert one.model.name == two.model.name
    assert list(one.model.environment) == ["A", "B"]


def test_user_tags_do_not_change_names() -> None:
    assert state(spec({"tags": {"team": "x"}})).model.name == state().model.name


def test_all_names_fit_for_the_longest_endpoint_names() -> None:
    long_owner = Owner("n" * 63, "m" * 253, "uid")
    for desired in (
        state(owner=long_owner),
        state(spec({"name": "e" * 63})),
        state(spec({"name": "a" + "-b" * 31})),
    ):
        for name in (desired.endpoint.name, desired.model.name, desired.config.name):
            assert is_valid_name(name), name


def test_different_owners_get_different_model_names() -> None:
    other = Owner("team-b", "squad-qa", "uid-2")
    assert state(owner=other).model.name != state().model.name


LONG_NAMESPACE = "t-test-two-long-named-resources-in-a-long-abc123"  # 48 characters
BAKED = dataclasses.replace(ARTIFACTS, model_data_url=None)  # no per-owner package URL


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            Owner(LONG_NAMESPACE, "question-answering-for-support-a", "uid-a"),
            Owner(LONG_NAMESPACE, "question-answering-for-support-b", "uid-b"),
            id="names-differ-past-the-stem",
        ),
        pytest.param(
            Owner("n" * 63, "m" * 200 + "-1", "uid-1"),
            Owner("n" * 63, "m" * 200 + "-2", "uid-2"),
            id="longest-namespace",
        ),
        pytest.param(
            Owner("team-a", "squad-qa", "uid-old"),
            Owner("team-a", "squad-qa", "uid-new"),
            id="recreated-same-name",
        ),
        pytest.param(
            Owner("team-a", "squad", "uid-1"),
            Owner("team", "a-squad", "uid-2"),
            id="same-endpoint-name",
        ),
    ],
)
def test_model_and_config_names_belong_to_one_owner(first: Owner, second: Owner) -> None:
    one, two = state(owner=first, artifacts=BAKED), state(owner=second, artifacts=BAKED)
    assert one.model.name != two.model.name
    assert one.config.name != two.config.name
    for desired in (one, two):
        for name in (desired.model.name, desired.config.name):
            assert is_valid_name(name), name
            assert name.startswith(name_stem(desired.endpoint.name) + "-")


def test_long_names_differing_past_the_stem_share_it_and_nothing_else() -> None:
    first = Owner(LONG_NAMESPACE, "question-answering-for-support-a", "uid-a")
    second = Owner(LONG_NAMESPACE, "question-answering-for-support-b", "uid-b")
    one, two = state(owner=first, artifacts=BAKED), state(owner=second, artifacts=BAKED)
    assert one.endpoint.name != two.endpoint.name
    assert name_stem(one.endpoint.name) == name_stem(two.endpoint.name), "the case this covers"
    assert one.model.name[:-10] == two.model.name[:-10]
    assert one.model.name != two.model.name


def test_names_stay_the_same_for_the_same_owner_and_content() -> None:
    owner = Owner(LONG_NAMESPACE, "question-answering-for-support-a", "uid-a")
    assert state(owner=owner) == state(owner=dataclasses.replace(owner))


# --- tags and ownership ---------------------------------------------------------------------


def test_tags_carry_owner_and_user_tags() -> None:
    desired = state(spec({"tags": {"team": "search", "env": "prod"}}))
    expected = {
        "team": "search",
        "env": "prod",
        "qaoperator.io/namespace": "team-a",
        "qaoperator.io/name": "squad-qa",
        "qaoperator.io/uid": OWNER.uid,
        "qaoperator.io/managed-by": "qa-operator",
    }
    assert dict(desired.model.tags) == expected
    assert dict(desired.config.tags) == expected
    assert dict(desired.endpoint.tags) == expected
    assert is_owned_by(desired.endpoint.tags, OWNER)


@pytest.mark.parametrize(
    ("tags", "owned"),
    [
        (owner_tags(OWNER), True),
        ({**owner_tags(OWNER), "qaoperator.io/uid": "someone-else"}, False),
        ({**owner_tags(OWNER), "qaoperator.io/managed-by": "other-tool"}, False),
        ({"qaoperator.io/uid": OWNER.uid}, False),
        ({}, False),
    ],
)
def test_is_owned_by(tags: dict[str, str], owned: bool) -> None:
    assert is_owned_by(tags, OWNER) is owned


def test_colliding_default_names_are_told_apart_by_ownership() -> None:
    # Two resources can map to one default endpoint name; the uid tag keeps them apart.
    first = Owner("a-b", "c", "uid-1")
    second = Owner("a", "b-c", "uid-2")
    assert endpoint_name(first, spec()) == endpoint_name(second, spec())
    assert not is_owned_by(owner_tags(first), second)


# --- production variant ---------------------------------------------------------------------


def test_production_variant_for_instances() -> None:
    desired = state(spec({"instanceType": "ml.g5.xlarge", "instanceCount": 2}))
    assert production_variant(desired.config) == {
        "VariantName": "AllTraffic",
        "ModelName": desired.model.name,
        "InstanceType": "ml.g5.xlarge",
        "InitialInstanceCount": 2,
        "InitialVariantWeight": 1.0,
    }


def test_production_variant_for_serverless() -> None:
    the_spec = parse_spec(
        {
            "model": {"mlflow": {"modelUri": "models:/qa/1"}},
            "endpoint": {"serverless": {"memorySizeInMB": 3072, "maxConcurrency": 7}},
        }
    )
    desired = state(the_spec)
    assert production_variant(desired.config) == {
        "VariantName": "AllTraffic",
        "ModelName": desired.model.name,
        "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 7},
    }


# --- S3 keys --------------------------------------------------------------------------------


def test_owner_prefix_is_per_owner_and_not_a_prefix_of_another_owner() -> None:
    first = owner_prefix("p", Owner("ns", "qa", "uid-1"))
    recreated = owner_prefix("p", Owner("ns", "qa", "uid-2"))
    longer = owner_prefix("p", Owner("ns", "qa-2", "uid-3"))
    assert first == "p/ns/qa-uid-1/"
    assert first != recreated
    assert not longer.startswith(first)
    assert not first.startswith(longer)


def test_source_key_changes_with_source_and_inference_only() -> None:
    base = spec()
    assert source_key(base) == source_key(spec())
    assert len(source_key(base)) == 16
    assert source_key(spec(model={"huggingface": {"id": "other/model"}})) != source_key(base)
    revision = {"huggingface": {"id": "deepset/roberta-base-squad2", "revision": "v2"}}
    assert source_key(spec(model=revision)) != source_key(base)
    stride = {
        "huggingface": {"id": "deepset/roberta-base-squad2"},
        "inference": {"docStride": 64},
    }
    assert source_key(spec(model=stride)) != source_key(base)
    assert source_key(spec({"instanceCount": 4, "tags": {"a": "b"}})) == source_key(base)


def test_default_serving_limits_keep_the_source_key_it_always_had() -> None:
    base = spec()
    before = short_hash({"source": repr(base.source), "inference": repr(base.inference)}, 16)
    assert source_key(base) == before
    assert source_key(base, ServingLimits()) == before


@pytest.mark.parametrize(
    "model",
    [
        pytest.param({"huggingface": {"id": "deepset/roberta-base-squad2"}}, id="huggingface"),
        pytest.param({"s3": {"uri": "s3://models/qa/"}}, id="s3"),
    ],
)
def test_operator_serving_limits_change_the_key_of_a_package_it_builds(
    model: dict[str, Any],
) -> None:
    base = spec(model=model)
    fewer_rows = source_key(base, ServingLimits(max_rows=8))
    assert fewer_rows != source_key(base)
    assert fewer_rows == source_key(spec(model=model), ServingLimits(max_rows=8))
    assert source_key(base, ServingLimits(max_rows=9)) != fewer_rows


def test_serving_limits_do_not_change_the_key_of_an_mlflow_source() -> None:
    mlflow = spec(model={"mlflow": {"modelUri": "models:/qa/1", "trackingUri": "http://m:5000"}})
    assert source_key(mlflow, ServingLimits(max_rows=8)) == source_key(mlflow)


def test_source_key_keeps_its_value_with_the_default_engine_and_changes_with_another() -> None:
    base = spec()
    # The repr existing resources were keyed on, from before engines existed.
    assert repr(base.inference) == (
        "InferenceConfig(max_answer_length=30, max_seq_length=384, doc_stride=128, "
        "batch_size=16, quantize='none', num_threads=None)"
    )
    model = {"huggingface": {"id": "deepset/roberta-base-squad2"}}
    onnx = spec(model={**model, "inference": {"engine": "onnxruntime"}})
    assert source_key(onnx) != source_key(base)
    assert source_key(spec(model={**model, "inference": {"engine": "torch"}})) == source_key(base)
