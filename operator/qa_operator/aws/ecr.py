"""ECR: the repository that holds the serving image, and credentials for its registry API.

The boto3 client is passed in (the caller builds clients). ECR's control plane and its registry
(/v2) are separate endpoints; the registry one can be overridden (`QA_OPERATOR_REGISTRY_ENDPOINT`),
which is how tests pair moto's ECR control plane with a local registry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from qa_operator.registry.client import RegistryClient

REGISTRY_ENDPOINT_ENV = "QA_OPERATOR_REGISTRY_ENDPOINT"


@dataclass(frozen=True)
class RegistryCredentials:
    username: str
    password: str
    endpoint: str  # "https://<account>.dkr.ecr.<region>.amazonaws.com"

    def __repr__(self) -> str:  # keep the password out of logs
        return f"RegistryCredentials(username={self.username!r}, endpoint={self.endpoint!r})"


def ensure_repository(ecr: Any, name: str) -> str:
    """Create the repository when missing; returns its URI ("<registry host>/<name>")."""
    try:
        created = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="MUTABLE",
            imageScanningConfiguration={"scanOnPush": False},
        )
        return str(created["repository"]["repositoryUri"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
            raise
    found = ecr.describe_repositories(repositoryNames=[name])
    return str(found["repositories"][0]["repositoryUri"])


def registry_credentials(ecr: Any) -> RegistryCredentials:
    """GetAuthorizationToken, decoded: the token is base64 "AWS:<password>", valid for 12 hours."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    decoded = base64.b64decode(data["authorizationToken"]).decode()
    username, _, password = decoded.partition(":")
    endpoint = str(data["proxyEndpoint"])
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    return RegistryCredentials(username=username, password=password, endpoint=endpoint)


def ecr_registry_client(
    ecr: Any, *, registry_endpoint: str | None = None, **client_options: Any
) -> RegistryClient:
    """A registry client authenticated for ECR.

    With `registry_endpoint`, requests go there instead of ECR's proxy endpoint, and image URIs
    name that endpoint's host: whoever runs the image must be able to pull from it.
    """
    credentials = registry_credentials(ecr)
    return RegistryClient(
        registry_endpoint or credentials.endpoint,
        username=credentials.username,
        password=credentials.password,
        **client_options,
    )
