"""OperatorSettings.from_env: defaults, parsing and the errors that stop a bad start."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_operator.model.limits import ServingLimits
from qa_operator.settings import GIB, OperatorSettings, SettingsError


def test_defaults_from_an_empty_environment() -> None:
    assert OperatorSettings.from_env({}) == OperatorSettings(
        default_region="us-east-1",
        bucket=None,
        bucket_prefix="qa-operator",
        execution_role_arn=None,
        serving_image=None,
        image_repository=None,
        registry_endpoint=None,
        poll_min_seconds=5.0,
        poll_max_seconds=60.0,
        resync_seconds=60.0,
        max_concurrent_packaging=2,
        work_dir=Path("/var/cache/qa-operator"),
        work_dir_max_bytes=15 * GIB,
        serving_limits=ServingLimits(),
    )


def test_every_setting_is_read() -> None:
    settings = OperatorSettings.from_env(
        {
            "QA_OPERATOR_DEFAULT_REGION": "eu-west-1",
            "QA_OPERATOR_BUCKET": "models",
            "QA_OPERATOR_BUCKET_PREFIX": "/serving/qa/",
            "QA_OPERATOR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/qa",
            "QA_OPERATOR_SERVING_IMAGE": "registry.local/qa-serving:1",
            "QA_OPERATOR_IMAGE_REPOSITORY": "qa/serving",
            "QA_OPERATOR_REGISTRY_ENDPOINT": "http://127.0.0.1:5000",
            "QA_OPERATOR_POLL_MIN_SECONDS": "0.5",
            "QA_OPERATOR_POLL_MAX_SECONDS": "30",
            "QA_OPERATOR_RESYNC_SECONDS": "1e2",
            "QA_OPERATOR_MAX_CONCURRENT_PACKAGING": "4",
            "QA_OPERATOR_WORK_DIR": "/tmp/qa-work",
            "QA_OPERATOR_WORK_DIR_MAX_GB": "2.5",
            "QA_OPERATOR_SERVING_MAX_BODY_BYTES": "1048576",
            "QA_OPERATOR_SERVING_MAX_ROWS": "16",
            "QA_OPERATOR_SERVING_MAX_TEXT_CHARS": "5000",
            "QA_OPERATOR_SERVING_MAX_QUESTION_CHARS": "200",
            "QA_OPERATOR_SERVING_MAX_WINDOWS_PER_ROW": "8",
            "QA_OPERATOR_SERVING_MAX_BATCH_TOKENS": "4096",
            "QA_OPERATOR_SERVING_MAX_JSON_DEPTH": "6",
            "QA_OPERATOR_SMOKE_TEST": "off",
            "QA_OPERATOR_SMOKE_TEST_ATTEMPTS": "5",
            "QA_OPERATOR_POLICY_FILE": "/etc/qa-operator/policy/policy.yaml",
            "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
            "QA_OPERATOR_SERVING_IMAGE_ONNXRUNTIME": "registry.local/qa-serving:1-onnxruntime",
        }
    )
    assert settings == OperatorSettings(
        default_region="eu-west-1",
        bucket="models",
        bucket_prefix="serving/qa",
        execution_role_arn="arn:aws:iam::123456789012:role/qa",
        serving_image="registry.local/qa-serving:1",
        serving_image_onnxruntime="registry.local/qa-serving:1-onnxruntime",
        image_repository="qa/serving",
        registry_endpoint="http://127.0.0.1:5000",
        poll_min_seconds=0.5,
        poll_max_seconds=30.0,
        resync_seconds=100.0,
        max_concurrent_packaging=4,
        work_dir=Path("/tmp/qa-work"),
        work_dir_max_bytes=int(2.5 * GIB),
        serving_limits=ServingLimits(
            max_body_bytes=1048576,
            max_rows=16,
            max_text_chars=5000,
            max_question_chars=200,
            max_windows_per_row=8,
            max_batch_tokens=4096,
            max_json_depth=6,
        ),
        smoke_test_default=False,
        smoke_test_attempts=5,
        policy_file=Path("/etc/qa-operator/policy/policy.yaml"),
        mlflow_tracking_uri="https://mlflow.example.com",
    )
    assert isinstance(settings.max_concurrent_packaging, int)
    assert isinstance(settings.work_dir_max_bytes, int)


def test_blank_values_mean_unset() -> None:
    settings = OperatorSettings.from_env(
        {
            "QA_OPERATOR_BUCKET": "  ",
            "QA_OPERATOR_POLL_MAX_SECONDS": "",
            "QA_OPERATOR_BUCKET_PREFIX": " ",
            "QA_OPERATOR_SERVING_IMAGE": " img:1 ",
        }
    )
    assert settings.bucket is None
    assert settings.poll_max_seconds == 60.0
    assert settings.bucket_prefix == "qa-operator"
    assert settings.serving_image == "img:1"


@pytest.mark.parametrize(
    ("env", "policy_file", "tracking_uri"),
    [
        ({}, None, None),
        ({"QA_OPERATOR_POLICY_FILE": " "}, None, None),
        ({"QA_OPERATOR_POLICY_FILE": " /etc/p.yaml "}, Path("/etc/p.yaml"), None),
        ({"POLICY_FILE": "/etc/p.yaml"}, None, None),
        ({"MLFLOW_TRACKING_URI": " http://mlflow:5000 "}, None, "http://mlflow:5000"),
        ({"MLFLOW_TRACKING_URI": ""}, None, None),
        ({"QA_OPERATOR_MLFLOW_TRACKING_URI": "http://mlflow:5000"}, None, None),
    ],
)
def test_policy_file_and_the_operators_own_tracking_uri(
    env: dict[str, str], policy_file: Path | None, tracking_uri: str | None
) -> None:
    settings = OperatorSettings.from_env(env)
    assert (settings.policy_file, settings.mlflow_tracking_uri) == (policy_file, tracking_uri)


def test_unprefixed_names_are_ignored() -> None:
    assert OperatorSettings.from_env({"BUCKET": "x", "POLL_MIN_SECONDS": "bad"}).bucket is None


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"AWS_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_DEFAULT_REGION": "eu-north-1"}, "eu-north-1"),
        ({"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-north-1"}, "ap-south-1"),
        (
            {"QA_OPERATOR_DEFAULT_REGION": "us-west-2", "AWS_REGION": "ap-south-1"},
            "us-west-2",
        ),
        ({"QA_OPERATOR_DEFAULT_REGION": " ", "AWS_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-north-1"}, "eu-north-1"),
        ({}, "us-east-1"),
    ],
)
def test_region_fallback(env: dict[str, str], region: str) -> None:
    assert OperatorSettings.from_env(env).default_region == region


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_OPERATOR_BUCKET", "from-process-env")
    monkeypatch.setenv("QA_OPERATOR_DEFAULT_REGION", "sa-east-1")
    settings = OperatorSettings.from_env()
    assert (settings.bucket, settings.default_region) == ("from-process-env", "sa-east-1")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"QA_OPERATOR_POLL_MIN_SECONDS": "fast"}, "QA_OPERATOR_POLL_MIN_SECONDS='fast'"),
        ({"QA_OPERATOR_POLL_MAX_SECONDS": "1m"}, "is not a number"),
        (
            {"QA_OPERATOR_RESYNC_SECONDS": "0"},
            "QA_OPERATOR_RESYNC_SECONDS must be a positive number",
        ),
        ({"QA_OPERATOR_RESYNC_SECONDS": "-5"}, "must be a positive number"),
        ({"QA_OPERATOR_MAX_CONCURRENT_PACKAGING": "two"}, "not a number"),
        ({"QA_OPERATOR_MAX_CONCURRENT_PACKAGING": "0"}, "must be a positive number"),
        ({"QA_OPERATOR_SMOKE_TEST": "maybe"}, "QA_OPERATOR_SMOKE_TEST must be on or off"),
        ({"QA_OPERATOR_SMOKE_TEST_ATTEMPTS": "0"}, "must be a positive number"),
        (
            {"QA_OPERATOR_POLL_MIN_SECONDS": "90"},
            "QA_OPERATOR_POLL_MIN_SECONDS exceeds QA_OPERATOR_POLL_MAX_SECONDS",
        ),
        (
            {"QA_OPERATOR_POLL_MIN_SECONDS": "10", "QA_OPERATOR_POLL_MAX_SECONDS": "9"},
            "exceeds",
        ),
    ],
)
def test_bad_values_raise_settings_error(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        OperatorSettings.from_env(env)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_equal_poll_bounds_are_allowed() -> None:
    env = {"QA_OPERATOR_POLL_MIN_SECONDS": "7", "QA_OPERATOR_POLL_MAX_SECONDS": "7"}
    settings = OperatorSettings.from_env(env)
    assert (settings.poll_min_seconds, settings.poll_max_seconds) == (7.0, 7.0)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"QA_OPERATOR_POLL_MIN_SECONDS": "nan"}, id="nan-poll"),
        pytest.param({"QA_OPERATOR_RESYNC_SECONDS": "nan"}, id="nan-resync"),
        pytest.param({"QA_OPERATOR_MAX_CONCURRENT_PACKAGING": "0.5"}, id="fraction-to-zero"),
    ],
)
def test_nan_and_fractions_that_round_to_zero_are_rejected(env: dict[str, str]) -> None:
    try:
        settings = OperatorSettings.from_env(env)
    except SettingsError:
        return
    raise AssertionError(f"accepted {env} as {settings}")


@pytest.mark.parametrize(
    ("env", "limits"),
    [
        pytest.param({}, ServingLimits(), id="unset-is-default"),
        pytest.param({"QA_OPERATOR_SERVING_MAX_ROWS": " "}, ServingLimits(), id="blank"),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_ROWS": "32"}, ServingLimits(max_rows=32), id="one-limit"
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_BODY_BYTES": "1e6"},
            ServingLimits(max_body_bytes=1_000_000),
            id="exponent",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_JSON_DEPTH": "4"},
            ServingLimits(max_json_depth=4),
            id="least-json-depth",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_BATCH_TOKENS": "512.0"},
            ServingLimits(max_batch_tokens=512),
            id="whole-float",
        ),
    ],
)
def test_serving_limits_are_read(env: dict[str, str], limits: ServingLimits) -> None:
    settings = OperatorSettings.from_env(env)
    assert settings.serving_limits == limits
    assert all(isinstance(v, int) for v in settings.serving_limits.to_dict().values())


@pytest.mark.parametrize(
    ("env", "limit_bytes"),
    [
        pytest.param({}, 15 * GIB, id="default"),
        pytest.param({"QA_OPERATOR_WORK_DIR_MAX_GB": "1"}, GIB, id="whole"),
        pytest.param({"QA_OPERATOR_WORK_DIR_MAX_GB": "0.5"}, GIB // 2, id="fraction"),
    ],
)
def test_work_dir_bound_is_read_in_gib(env: dict[str, str], limit_bytes: int) -> None:
    assert OperatorSettings.from_env(env).work_dir_max_bytes == limit_bytes


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_ROWS": "many"},
            "QA_OPERATOR_SERVING_MAX_ROWS='many' is not a number",
            id="not-a-number",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_TEXT_CHARS": "0"},
            "QA_OPERATOR_SERVING_MAX_TEXT_CHARS must be a positive number, not '0'",
            id="zero",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_QUESTION_CHARS": "-1"},
            "QA_OPERATOR_SERVING_MAX_QUESTION_CHARS must be a positive number, not '-1'",
            id="negative",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_WINDOWS_PER_ROW": "2.5"},
            "QA_OPERATOR_SERVING_MAX_WINDOWS_PER_ROW must be a whole number",
            id="fraction",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_BODY_BYTES": "inf"},
            "QA_OPERATOR_SERVING_MAX_BODY_BYTES must be a positive number, not 'inf'",
            id="infinite",
        ),
        pytest.param(
            {"QA_OPERATOR_SERVING_MAX_JSON_DEPTH": "3"},
            "QA_OPERATOR_SERVING_MAX_JSON_DEPTH must be at least 4",
            id="json-depth-too-small",
        ),
        pytest.param(
            {"QA_OPERATOR_WORK_DIR_MAX_GB": "0"},
            "QA_OPERATOR_WORK_DIR_MAX_GB must be a positive number, not '0'",
            id="work-dir-zero",
        ),
        pytest.param(
            {"QA_OPERATOR_WORK_DIR_MAX_GB": "15Gi"},
            "QA_OPERATOR_WORK_DIR_MAX_GB='15Gi' is not a number",
            id="work-dir-unit",
        ),
    ],
)
def test_bad_serving_limits_and_work_dir_bound_stop_the_start(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        OperatorSettings.from_env(env)
    assert message in str(caught.value)


def test_metrics_and_leader_election_settings() -> None:
    defaults = OperatorSettings.from_env({})
    assert (defaults.metrics_port, defaults.leader_election) == (0, False)
    assert (defaults.lease_name, defaults.lease_namespace, defaults.lease_seconds) == (
        "qa-operator",
        None,
        15.0,
    )
    settings = OperatorSettings.from_env(
        {
            "QA_OPERATOR_METRICS_PORT": "8081",
            "QA_OPERATOR_LEADER_ELECTION": "on",
            "QA_OPERATOR_LEASE_NAME": "qa-operator-blue",
            "QA_OPERATOR_LEASE_NAMESPACE": "ops",
            "QA_OPERATOR_LEASE_SECONDS": "30",
        }
    )
    assert (settings.metrics_port, settings.leader_election) == (8081, True)
    assert (settings.lease_name, settings.lease_namespace, settings.lease_seconds) == (
        "qa-operator-blue",
        "ops",
        30.0,
    )


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"QA_OPERATOR_LEADER_ELECTION": "yes"}, "QA_OPERATOR_LEADER_ELECTION must be on or off"),
        ({"QA_OPERATOR_METRICS_PORT": "80.5"}, "must be a whole number"),
        ({"QA_OPERATOR_METRICS_PORT": "65536"}, "must be a TCP port"),
        ({"QA_OPERATOR_LEASE_SECONDS": "0"}, "must be a positive number"),
    ],
)
def test_bad_operations_settings_stop_the_start(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        OperatorSettings.from_env(env)


def test_lifecycle_settings_deadlines_and_preflight() -> None:
    defaults = OperatorSettings.from_env({})
    assert (defaults.create_timeout_seconds, defaults.update_timeout_seconds) == (3600.0, 5400.0)
    assert defaults.preflight is True
    assert OperatorSettings.from_env({"QA_OPERATOR_PREFLIGHT": "off"}).preflight is False
    custom = OperatorSettings.from_env(
        {
            "QA_OPERATOR_CREATE_TIMEOUT_SECONDS": "1800",
            "QA_OPERATOR_UPDATE_TIMEOUT_SECONDS": "600",
            "QA_OPERATOR_PREFLIGHT": "on",
        }
    )
    assert (custom.create_timeout_seconds, custom.update_timeout_seconds) == (1800.0, 600.0)
    assert custom.preflight is True
    for bad in ({"QA_OPERATOR_CREATE_TIMEOUT_SECONDS": "0"}, {"QA_OPERATOR_PREFLIGHT": "maybe"}):
        with pytest.raises(SettingsError):
            OperatorSettings.from_env(bad)
