"""OperatorSettings.from_env: defaults, parsing and the errors that stop a bad start."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_operator.settings import OperatorSettings, SettingsError


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
        }
    )
    assert settings == OperatorSettings(
        default_region="eu-west-1",
        bucket="models",
        bucket_prefix="serving/qa",
        execution_role_arn="arn:aws:iam::123456789012:role/qa",
        serving_image="registry.local/qa-serving:1",
        image_repository="qa/serving",
        registry_endpoint="http://127.0.0.1:5000",
        poll_min_seconds=0.5,
        poll_max_seconds=30.0,
        resync_seconds=100.0,
        max_concurrent_packaging=4,
        work_dir=Path("/tmp/qa-work"),
    )
    assert isinstance(settings.max_concurrent_packaging, int)


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
