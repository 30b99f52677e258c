"""The admin policy: parsing the file, and every rule allowed and denied (policy.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from qa_operator.errors import TerminalError
from qa_operator.policy import (
    ALWAYS_DENIED_ENV,
    DEFAULT_POLICY,
    Policy,
    PolicyError,
    PolicyFile,
    check,
    mask_uri,
    parse_policy,
)
from qa_operator.settings import OperatorSettings
from qa_operator.spec import DeploymentSpec, parse_spec

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
SETTINGS = OperatorSettings(
    default_region="us-east-1",
    bucket="qa-packages",
    execution_role_arn=ROLE,
    image_repository="qa-serving",
    mlflow_tracking_uri="https://mlflow.internal:5000",
)
NAMESPACE = "team-a"


def _spec(
    *,
    source: dict[str, Any] | None = None,
    repository: str | None = None,
    role: str | None = None,
    environment: dict[str, str] | None = None,
) -> DeploymentSpec:
    endpoint: dict[str, Any] = {"instanceType": "ml.m5.large"}
    if role is not None:
        endpoint["executionRoleArn"] = role
    if environment is not None:
        endpoint["environment"] = environment
    raw: dict[str, Any] = {
        "model": source or {"huggingface": {"id": "distilbert-base-cased-distilled-squad"}},
        "endpoint": endpoint,
    }
    if repository is not None:
        raw["image"] = {"repository": repository}
    return parse_spec(raw)


def s3(uri: str) -> DeploymentSpec:
    return _spec(source={"s3": {"uri": uri}})


def tracking(uri: str, model_uri: str = "models:/qa/1") -> DeploymentSpec:
    return _spec(source={"mlflow": {"modelUri": model_uri, "trackingUri": uri}})


def model(uri: str) -> DeploymentSpec:
    return _spec(source={"mlflow": {"modelUri": uri}})


def _fields(
    spec: DeploymentSpec, policy: Policy = DEFAULT_POLICY, namespace: str = NAMESPACE
) -> list[str]:
    return [v.field for v in check(policy, namespace, spec, SETTINGS)]


ADMIN = parse_policy(
    """
s3Sources: ["s3://models/shared/", "s3://tenants/{namespace}/", "s3://{bucket}/sources/"]
mlflow:
  schemes: [HTTPS]
  hosts: [mlflow.example.com, "*.mlflow.example.com", "registry.example.com:8443", "*"]
imageRepositories: ["qa/{namespace}/*", "shared-serving"]
executionRoles: ["arn:aws:iam::123456789012:role/qa-{namespace}-*"]
environment:
  allow: [PYTHONUNBUFFERED, HF_HUB_OFFLINE, LD_PRELOAD]
""",
    "admin.yaml",
)
HOSTS_ONLY = parse_policy("mlflow: {hosts: [mlflow.example.com, '127.0.0.1', '[fd12::1]']}")
WILDCARD = parse_policy("mlflow: {hosts: ['*']}")
LISTED_METADATA = parse_policy("mlflow: {hosts: ['169.254.169.254']}")


# (case, spec, policy, fields denied)
CASES: list[tuple[str, DeploymentSpec, Policy, list[str]]] = [
    # S3 sources: the operator's bucket by default; prefixes compare by whole segments.
    ("own bucket", s3("s3://qa-packages/any/"), DEFAULT_POLICY, []),
    ("another bucket", s3("s3://finance-data/models/"), DEFAULT_POLICY, ["spec.model.s3.uri"]),
    ("bucket name prefix", s3("s3://qa-packages-evil/x/"), DEFAULT_POLICY, ["spec.model.s3.uri"]),
    ("listed prefix", s3("s3://models/shared/bert/"), ADMIN, []),
    ("listed prefix, no slash", s3("s3://models/shared"), ADMIN, []),
    ("prefix-other", s3("s3://models/shared-other/"), ADMIN, ["spec.model.s3.uri"]),
    ("above the prefix", s3("s3://models/"), ADMIN, ["spec.model.s3.uri"]),
    ("dot-dot escape", s3("s3://models/shared/../private/"), ADMIN, ["spec.model.s3.uri"]),
    ("{namespace} prefix", s3("s3://tenants/team-a/m/"), ADMIN, []),
    ("other namespace", s3("s3://tenants/team-b/m/"), ADMIN, ["spec.model.s3.uri"]),
    ("{bucket} prefix", s3("s3://qa-packages/sources/m/"), ADMIN, []),
    ("own bucket replaced", s3("s3://qa-packages/qa-operator/"), ADMIN, ["spec.model.s3.uri"]),
    # MLflow tracking URIs: http(s) by default, hosts only the operator's own unless listed.
    ("own tracking URI", tracking("https://mlflow.internal:5000"), DEFAULT_POLICY, []),
    ("own tracking host", tracking("http://mlflow.internal:5000/x"), DEFAULT_POLICY, []),
    ("own host other port", tracking("https://mlflow.internal:6000"), DEFAULT_POLICY, ["t"]),
    ("unlisted host", tracking("https://evil.example.com"), DEFAULT_POLICY, ["t"]),
    ("listed host", tracking("http://mlflow.example.com:5000"), HOSTS_ONLY, []),
    ("host trailing dot", tracking("http://MLflow.Example.com./"), HOSTS_ONLY, []),
    ("loopback listed", tracking("http://127.0.0.1:5000"), HOSTS_ONLY, []),
    ("loopback other form", tracking("http://127.1:5000"), HOSTS_ONLY, ["t"]),
    ("listed IPv6", tracking("http://[fd12::1]:80/"), HOSTS_ONLY, []),
    ("file scheme", tracking("file:///var/run/secrets"), HOSTS_ONLY, ["t"]),
    ("uppercase file scheme", tracking("FILE:///tmp/mlruns"), HOSTS_ONLY, ["t"]),
    ("bare path is file", tracking("/tmp/mlruns"), HOSTS_ONLY, ["t"]),
    ("sqlite", tracking("sqlite:///tmp/mlflow.db"), HOSTS_ONLY, ["t"]),
    ("databricks", tracking("databricks"), HOSTS_ONLY, ["t"]),
    ("uppercase http", tracking("HTTP://mlflow.example.com"), HOSTS_ONLY, []),
    ("userinfo trick", tracking("http://mlflow.example.com@evil.com/"), HOSTS_ONLY, ["t"]),
    ("userinfo on listed", tracking("http://u:p@mlflow.example.com/"), HOSTS_ONLY, []),
    ("backslash trick", tracking("http://evil.com\\@mlflow.example.com/"), HOSTS_ONLY, ["t"]),
    ("percent host", tracking("http://mlflow%2eexample.com/"), WILDCARD, ["t"]),
    ("bad port", tracking("http://mlflow.example.com:99999/"), HOSTS_ONLY, ["t"]),
    ("unbalanced IPv6", tracking("http://[::1/"), WILDCARD, ["t"]),
    ("nip.io name not listed", tracking("http://169.254.169.254.nip.io/"), HOSTS_ONLY, ["t"]),
    ("wildcard trusts DNS", tracking("http://169.254.169.254.nip.io/"), WILDCARD, []),
    ("https only", tracking("http://mlflow.example.com"), ADMIN, ["t"]),
    ("wildcard subdomain", tracking("https://eu.mlflow.example.com"), ADMIN, []),
    ("host with port entry", tracking("https://registry.example.com:8443"), ADMIN, []),
    ("host other port", tracking("https://registry.example.com:443"), ADMIN, []),  # "*" allows
    # Link-local and metadata addresses: always denied, in every spelling.
    ("metadata IPv4", tracking("http://169.254.169.254/"), WILDCARD, ["t"]),
    ("ECS metadata", tracking("http://169.254.170.2/v2/credentials"), WILDCARD, ["t"]),
    ("decimal IPv4", tracking("http://2852039166/"), WILDCARD, ["t"]),
    ("hex IPv4", tracking("http://0xa9fea9fe/"), WILDCARD, ["t"]),
    ("octal IPv4", tracking("http://0251.0376.0251.0376/"), WILDCARD, ["t"]),
    ("short IPv4", tracking("http://169.254.43518/"), WILDCARD, ["t"]),
    ("IPv4-mapped", tracking("http://[::ffff:169.254.169.254]/"), WILDCARD, ["t"]),
    ("IPv4-mapped hex", tracking("http://[::ffff:a9fe:a9fe]/"), WILDCARD, ["t"]),
    ("IPv4-compatible", tracking("http://[::169.254.169.254]/"), WILDCARD, ["t"]),
    ("NAT64", tracking("http://[64:ff9b::a9fe:a9fe]/"), WILDCARD, ["t"]),
    ("6to4", tracking("http://[2002:a9fe:a9fe::1]/"), WILDCARD, ["t"]),
    ("IPv6 link-local", tracking("http://[fe80::1]/"), WILDCARD, ["t"]),
    ("AWS IPv6 metadata", tracking("http://[fd00:ec2::254]/"), WILDCARD, ["t"]),
    ("AWS IPv6 DNS", tracking("http://[fd00:ec2:0:0::253]/"), WILDCARD, ["t"]),
    ("not AWS's range", tracking("http://[fd00:ec3::254]/"), WILDCARD, []),
    ("IPv6 zone", tracking("http://[fe80::1%25eth0]/"), WILDCARD, ["t"]),
    ("metadata with userinfo", tracking("http://a:b@169.254.169.254/"), WILDCARD, ["t"]),
    ("metadata listed anyway", tracking("http://169.254.169.254/"), LISTED_METADATA, ["t"]),
    ("public IPv4", tracking("http://203.0.113.7/"), WILDCARD, []),
    # MLflow model URIs: through the tracking server, S3 by the S3 rule, anything else by host.
    ("models:/", model("models:/qa/3"), DEFAULT_POLICY, []),
    ("runs:/", model("runs:/0123/model"), DEFAULT_POLICY, []),
    ("mlflow-artifacts proxied", model("mlflow-artifacts:/1/abc/artifacts/m"), DEFAULT_POLICY, []),
    ("artifacts on a host", model("mlflow-artifacts://evil.com/1/m"), DEFAULT_POLICY, ["m"]),
    ("s3 model own bucket", model("s3://qa-packages/m/"), DEFAULT_POLICY, []),
    ("s3 model elsewhere", model("s3://finance-data/m/"), DEFAULT_POLICY, ["m"]),
    ("S3 uppercase scheme", model("S3://finance-data/m/"), DEFAULT_POLICY, ["m"]),
    ("file model", model("file:///etc"), DEFAULT_POLICY, ["m"]),
    ("local path model", model("/var/run/secrets/"), DEFAULT_POLICY, ["m"]),
    ("https model listed", model("https://mlflow.example.com/m"), HOSTS_ONLY, []),
    ("gs model", model("gs://bucket/m"), HOSTS_ONLY, ["m"]),
    ("metadata model", model("http://169.254.169.254/latest/"), WILDCARD, ["m"]),
    ("both denied", tracking("file:///x", "s3://elsewhere/m"), DEFAULT_POLICY, ["t", "m"]),
    # Image repositories: the operator's own, qa-operator/<namespace>/* unless replaced.
    ("own repository", _spec(repository="qa-serving"), DEFAULT_POLICY, []),
    ("namespace area", _spec(repository="qa-operator/team-a/bert"), DEFAULT_POLICY, []),
    ("other namespace area", _spec(repository="qa-operator/team-b/x"), DEFAULT_POLICY, ["r"]),
    ("area prefix only", _spec(repository="qa-operator/team-a"), DEFAULT_POLICY, ["r"]),
    ("someone's repository", _spec(repository="payments/api"), DEFAULT_POLICY, ["r"]),
    ("listed pattern", _spec(repository="qa/team-a/x"), ADMIN, []),
    ("listed name", _spec(repository="shared-serving"), ADMIN, []),
    ("listed name, longer", _spec(repository="shared-serving-evil"), ADMIN, ["r"]),
    ("own kept when replaced", _spec(repository="qa-serving"), ADMIN, []),
    # Execution roles: the operator's own unless patterns are listed.
    ("own role", _spec(role=ROLE), DEFAULT_POLICY, []),
    ("another role", _spec(role="arn:aws:iam::123456789012:role/Admin"), DEFAULT_POLICY, ["x"]),
    ("role pattern", _spec(role="arn:aws:iam::123456789012:role/qa-team-a-ro"), ADMIN, []),
    ("role other ns", _spec(role="arn:aws:iam::123456789012:role/qa-team-b-ro"), ADMIN, ["x"]),
    ("role other account", _spec(role="arn:aws:iam::999999999999:role/qa-team-a-x"), ADMIN, ["x"]),
    # Environment keys: compared without case; the always-denied ones whatever the policy says.
    ("harmless key", _spec(environment={"OMP_NUM_THREADS": "2"}), DEFAULT_POLICY, []),
    ("LD_PRELOAD", _spec(environment={"LD_PRELOAD": "/x.so"}), DEFAULT_POLICY, ["e"]),
    ("ld_preload lower", _spec(environment={"ld_preload": "/x.so"}), DEFAULT_POLICY, ["e"]),
    ("LD_PRELOAD allowed?", _spec(environment={"LD_PRELOAD": "/x.so"}), ADMIN, ["e"]),
    ("PYTHONPATH", _spec(environment={"PYTHONPATH": "/tmp"}), DEFAULT_POLICY, ["e"]),
    ("PYTHONWARNINGS", _spec(environment={"PYTHONWARNINGS": "x"}), DEFAULT_POLICY, ["e"]),
    ("PYTHONUNBUFFERED", _spec(environment={"PYTHONUNBUFFERED": "1"}), DEFAULT_POLICY, ["e"]),
    ("PYTHONUNBUFFERED allowed", _spec(environment={"PYTHONUNBUFFERED": "1"}), ADMIN, []),
    ("pythonunbuffered allowed", _spec(environment={"pythonunbuffered": "1"}), ADMIN, []),
    ("MLFLOW_", _spec(environment={"MLFLOW_TRACKING_URI": "x"}), DEFAULT_POLICY, ["e"]),
    ("SM_", _spec(environment={"SM_MODEL_DIR": "/"}), DEFAULT_POLICY, ["e"]),
    ("SAGEMAKER_", _spec(environment={"SAGEMAKER_PROGRAM": "x"}), DEFAULT_POLICY, ["e"]),
    ("AWS_", _spec(environment={"AWS_ENDPOINT_URL": "x"}), DEFAULT_POLICY, ["e"]),
    ("https_proxy", _spec(environment={"https_proxy": "x"}), DEFAULT_POLICY, ["e"]),
    ("HF_ allowed one", _spec(environment={"HF_HUB_OFFLINE": "1"}), ADMIN, []),
    ("HF_ other", _spec(environment={"HF_ENDPOINT": "x"}), ADMIN, ["e"]),
    ("two keys", _spec(environment={"LD_AUDIT": "x", "PATH": "/"}), DEFAULT_POLICY, ["e", "e"]),
]
SHORT = {
    "t": "spec.model.mlflow.trackingUri",
    "m": "spec.model.mlflow.modelUri",
    "r": "spec.image.repository",
    "x": "spec.endpoint.executionRoleArn",
    "e": "spec.endpoint.environment",
}


@pytest.mark.parametrize(
    ("spec", "policy", "denied"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_allows_and_denies(
    spec: DeploymentSpec, policy: Policy, denied: list[str]
) -> None:
    assert _fields(spec, policy) == [SHORT.get(d, d) for d in denied]


def test_without_an_operator_bucket_no_s3_source_is_allowed_by_default() -> None:
    settings = OperatorSettings(default_region="us-east-1")
    (violation,) = check(DEFAULT_POLICY, NAMESPACE, s3("s3://qa-packages/m/"), settings)
    assert violation.rule == "not under an allowed S3 prefix (none allowed)"


def test_a_violation_names_the_field_the_value_and_the_rule() -> None:
    (violation,) = check(DEFAULT_POLICY, NAMESPACE, s3("s3://finance-data/m/"), SETTINGS)
    assert str(violation) == (
        "spec.model.s3.uri 's3://finance-data/m/': not under an allowed S3 prefix "
        "(allowed: s3://qa-packages/)"
    )
    (env,) = check(DEFAULT_POLICY, NAMESPACE, _spec(environment={"LD_PRELOAD": "x"}), SETTINGS)
    assert str(env) == "spec.endpoint.environment 'LD_PRELOAD': key matches LD_*: always denied"


@pytest.mark.parametrize(
    "uri",
    [
        "https://alice:s3cr3t@evil.example.com/?token=s3cr3t",
        "http://s3cr3t@169.254.169.254/#s3cr3t",
        "http://x:s3cr3t@[::ffff:169.254.169.254]/",
        "file:///tmp?s3cr3t",
        "http://a@b:s3cr3t@evil.com/",
    ],
)
def test_secrets_in_uris_never_reach_the_message(uri: str) -> None:
    violations = check(DEFAULT_POLICY, NAMESPACE, tracking(uri, uri), SETTINGS)
    assert len(violations) == 2
    for violation in violations:
        assert "s3cr3t" not in str(violation)
    assert "s3cr3t" not in mask_uri(uri)


def test_mask_uri_keeps_what_identifies_the_place() -> None:
    assert mask_uri("https://u:p@host:5000/path?q=1#f") == "https://***@host:5000/path?***"
    assert mask_uri("s3://bucket/prefix/") == "s3://bucket/prefix/"
    assert len(mask_uri("http://host/" + "a" * 500)) == 200


# -- the file ---------------------------------------------------------------------------------


def test_an_empty_file_is_the_defaults() -> None:
    assert parse_policy("# nothing yet\n", "p.yaml") == Policy(source="p.yaml")


def test_a_namespace_section_replaces_only_the_lists_it_gives() -> None:
    policy = parse_policy(
        """
s3Sources: ["s3://models/"]
environment: {allow: [PYTHONUNBUFFERED]}
namespaces:
  team-b:
    s3Sources: ["s3://team-b-models/"]
    environment: {deny: ["*"], allow: [OMP_NUM_THREADS]}
"""
    )
    team_b, team_a = policy.for_namespace("team-b"), policy.for_namespace("team-a")
    assert team_b.s3_sources == ("s3://team-b-models/",)
    assert team_b.image_repositories == team_a.image_repositories
    assert team_a.s3_sources == ("s3://models/",)
    assert team_a.environment_allow == ("PYTHONUNBUFFERED",)
    assert _fields(s3("s3://team-b-models/m/"), policy, "team-b") == []
    assert _fields(s3("s3://team-b-models/m/"), policy, "team-a") == ["spec.model.s3.uri"]
    spec = _spec(environment={"OMP_NUM_THREADS": "1", "TZ": "UTC"})
    assert _fields(spec, policy, "team-b") == ["spec.endpoint.environment"]  # TZ: deny *
    assert _fields(spec, policy, "team-a") == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("s3Sources: [", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("s3Source: []", "unknown key(s) s3Source"),
        ("s3Sources: s3://models/", "must be a list of non-empty strings"),
        ("s3Sources: ['https://models/']", "must look like s3://bucket/prefix/"),
        ("s3Sources: ['s3://models/a/../b/']", "must not contain . or .."),
        ("s3Sources: ['s3://{tenant}/']", "unknown placeholder"),
        ("imageRepositories: ['{bucket}/x']", "unknown placeholder (allowed: {namespace})"),
        ("mlflow: {hosts: ['https://mlflow.example.com']}", "must be a host name or pattern"),
        ("mlflow: {schemes: ['http:']}", "must be a URI scheme"),
        ("mlflow: {host: []}", "unknown key(s) host"),
        ("mlflow: [https]", "must be a mapping"),
        ("executionRoles: ['role/*']", "must be an IAM role ARN"),
        ("environment: {deny: ['LD PRELOAD']}", "must be an environment variable name"),
        ("namespaces: {Team_A: {}}", "not a namespace name"),
        ("namespaces: {team-a: {namespaces: {}}}", "unknown key(s) namespaces"),
        ("namespaces: [team-a]", "namespaces must map"),
    ],
)
def test_a_malformed_policy_is_an_error_naming_where(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.yaml")
    assert str(raised.value).startswith("policy.yaml")
    assert error in str(raised.value)


def test_the_crd_rejects_the_same_always_denied_keys() -> None:
    """The admission rule on spec.endpoint.environment lists ALWAYS_DENIED_ENV (tested against the
    API server in tests/e2e/test_policy.py)."""
    crd = (Path(__file__).resolve().parents[2] / "crds").glob("*.yaml")
    text = "".join(path.read_text() for path in crd)
    for pattern in ALWAYS_DENIED_ENV:
        literal = pattern.rstrip("*")
        assert f"'{literal}'" in text, pattern


# -- reading it at every pass -----------------------------------------------------------------


def test_the_file_is_read_again_when_it_changes_and_a_broken_one_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("s3Sources: ['s3://models/']\n")
    policy_file = PolicyFile(path)
    allowed, denied = s3("s3://models/m/"), s3("s3://finance/m/")
    policy_file.enforce(NAMESPACE, allowed, SETTINGS)
    with pytest.raises(TerminalError) as raised:
        policy_file.enforce(NAMESPACE, denied, SETTINGS)
    assert raised.value.reason == "PolicyDenied"
    assert raised.value.message == (
        f"denied by the operator's policy ({path}): spec.model.s3.uri 's3://finance/m/': not "
        "under an allowed S3 prefix (allowed: s3://models/)"
    )

    path.write_text("s3Sources: ['s3://finance/']\n")
    policy_file.enforce(NAMESPACE, denied, SETTINGS)

    caplog.set_level(logging.ERROR, "qa_operator.policy")
    path.write_text("s3Sources: s3://finance/\n")
    for _ in range(3):  # fail closed, not the last good policy; logged once
        with pytest.raises(TerminalError) as raised:
            policy_file.enforce(NAMESPACE, denied, SETTINGS)
        assert raised.value.reason == "PolicyInvalid"
        assert "s3Sources: must be a list" in raised.value.message
    assert len(caplog.records) == 1

    path.unlink()
    with pytest.raises(TerminalError) as raised:
        policy_file.enforce(NAMESPACE, allowed, SETTINGS)
    assert raised.value.reason == "PolicyInvalid"
    assert "cannot read the policy file" in raised.value.message

    path.write_text("")
    policy_file.enforce(NAMESPACE, s3("s3://qa-packages/m/"), SETTINGS)  # the defaults


def test_without_a_file_the_defaults_apply() -> None:
    assert PolicyFile(None).current() is DEFAULT_POLICY
