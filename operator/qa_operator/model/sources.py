"""Resolving a QAModelDeployment's model source to a local directory.

Three sources: the HuggingFace hub (a HuggingFace model directory), S3 (every object under a
prefix: a HuggingFace model directory), MLflow (a model URI: already an MLflow package, so pass
the result to `packaging.load_package`). A hub model comes down in two steps, the small files
the QA checks read first (`fetch_huggingface_metadata`), the weights only after them. Adapter
code: importing it loads neither torch nor transformers, and huggingface_hub and mlflow only when
used.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from qa_operator.errors import TerminalError
from qa_operator.model.validation import CONVERTIBLE_VOCABULARIES, TOKENIZER_FILE

# Weights for other frameworks that a PyTorch QA model never needs: skip the gigabytes.
HF_IGNORE_PATTERNS = [
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.onnx",
    "*.tflite",
    "*.mlmodel",
    "onnx/*",
    "coreml/*",
    "tf_model*",
    "flax_model*",
    "rust_model*",
]
# What the QA checks read (model.validation: config.json, the top-level tokenizer files) and what
# a slow vocabulary needs to convert: kilobytes, fetched before the weights.
HF_METADATA_FILES = [
    "config.json",
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    *CONVERTIBLE_VOCABULARIES,
]
# MLflow URIs that only a tracking server (or its model registry) can resolve.
SERVER_URI_SCHEMES = ("models:/", "runs:/")


def fetch_huggingface(
    model_id: str,
    revision: str,
    cache_dir: Path,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download `model_id` at `revision` (a branch, tag or commit; pin a commit for
    reproducible packages) into the hub cache at `cache_dir`; return the snapshot directory."""
    return _snapshot(
        model_id, revision, cache_dir, token, endpoint, ignore_patterns=HF_IGNORE_PATTERNS
    )


def resolve_huggingface_revision(
    model_id: str,
    revision: str,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """The commit `revision` (a branch or tag) of `model_id` points to now: one revision-info
    request (`GET /api/models/<id>/revision/<revision>`, only its `sha` asked), no download."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint, token=token).model_info(
        model_id, revision=revision, expand=["sha"]
    )
    if not info.sha:
        raise ValueError(f"the hub named no commit for {model_id}@{revision}")
    return str(info.sha)


def fetch_huggingface_metadata(
    model_id: str,
    revision: str,
    cache_dir: Path,
    *,
    token: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download only the files of `model_id` at `revision` that the QA checks read
    (HF_METADATA_FILES, those the repository has) into the hub cache at `cache_dir`; return the
    snapshot directory. Its name is the commit `revision` resolved to: fetch the rest with that
    commit as the revision (no second resolution, and a push in between cannot pair these files
    with other weights); the files already here are not downloaded again."""
    return _snapshot(
        model_id, revision, cache_dir, token, endpoint, allow_patterns=HF_METADATA_FILES
    )


def _snapshot(
    model_id: str,
    revision: str,
    cache_dir: Path,
    token: str | None,
    endpoint: str | None,
    *,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
) -> Path:
    if not model_id or not revision:
        raise ValueError("a HuggingFace source needs both a model id and a revision")
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id=model_id,
        revision=revision,
        cache_dir=str(cache_dir),
        token=token,  # None: HF_TOKEN or a stored login, as the hub's own tools do
        endpoint=endpoint,
        allow_patterns=allow_patterns,
        ignore_patterns=ignore_patterns,
    )
    return Path(path)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "prefix/") from "s3://bucket/prefix"; the prefix is empty or ends with "/"."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI (s3://bucket/prefix): {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI without a bucket: {uri!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def fetch_s3(uri: str, dest: Path, s3_client: Any) -> Path:
    """Download every object under the S3 prefix `uri` into `dest`, keeping the key layout
    below the prefix; return `dest`. An empty prefix is an error (FileNotFoundError)."""
    bucket, prefix = parse_s3_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key: str = obj["Key"]
            if key.endswith("/"):
                continue  # a "folder" marker, not a file
            relative = PurePosixPath(key[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"refusing S3 key that escapes the destination: {key!r}")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(bucket, key, str(target))
            count += 1
    if count == 0:
        raise FileNotFoundError(f"no objects under {uri}")
    return dest


def fetch_mlflow(model_uri: str, dest: Path, *, tracking_uri: str | None = None) -> Path:
    """Download the MLflow model at `model_uri` (models:/name/version, models:/name@alias,
    runs:/id/path, or an artifact URI) into `dest`; return the MLflow model directory.
    models:/ and runs:/ need a tracking server: `tracking_uri`, else MLFLOW_TRACKING_URI."""
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if tracking_uri is None and model_uri.startswith(SERVER_URI_SCHEMES):
        # MLflow's own default would be a local SQLite file: an empty registry, a misleading
        # "not found".
        raise TerminalError(
            "NoTrackingUri",
            f"{model_uri} is resolved by an MLflow tracking server: set "
            "spec.model.mlflow.trackingUri (or MLFLOW_TRACKING_URI for the operator)",
        )
    import mlflow.artifacts

    dest.mkdir(parents=True, exist_ok=True)
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=_registry_source(model_uri, tracking_uri),
        dst_path=str(dest),
        tracking_uri=tracking_uri,
    )
    return Path(path)


def _registry_source(model_uri: str, tracking_uri: str | None) -> str:
    """models:/ URIs resolved to the version's artifact location, through the registry at
    `tracking_uri` (MLflow's own models:/ download consults the default registry in places)."""
    if not model_uri.startswith("models:/"):
        return model_uri
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name_and_ref = model_uri.removeprefix("models:/").strip("/")
    if "@" in name_and_ref:
        name, alias = name_and_ref.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    else:
        name, _, version = name_and_ref.rpartition("/")
        if not name:
            raise ValueError(
                f"{model_uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>"
            )
        if not version.isdigit():
            latest = client.get_latest_versions(name, stages=[version])
            if not latest:
                raise ValueError(f"{model_uri!r}: no version of {name} in stage {version}")
            version = latest[0].version
    return str(client.get_model_version_download_uri(name, version))
