"""`qa-operator image`: publish the serving image from a terminal, exactly as the operator does.

    qa-operator image --base HOST/REPO:TAG --repository qa-serving --mode baked --package DIR

Credentials: --username/--password (or QA_OPERATOR_REGISTRY_USERNAME/_PASSWORD) for a plain
registry; otherwise ECR through boto3 (the repository is created when missing). Prints the
resulting ImageRef as one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from qa_operator.registry.client import RegistryClient, RegistryError
from qa_operator.registry.images import publish_image

_ENV_ENDPOINT = "QA_OPERATOR_REGISTRY_ENDPOINT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="serving image: HOST/REPO:TAG or @sha256:")
    parser.add_argument("--repository", required=True, help="target repository name")
    parser.add_argument("--mode", choices=("s3", "baked"), default="s3")
    parser.add_argument("--package", type=Path, help="MLflow package directory (baked mode)")
    parser.add_argument("--package-digest", help="sha256:... of the package; names the tag")
    parser.add_argument(
        "--registry-endpoint",
        default=os.environ.get(_ENV_ENDPOINT),
        help=f"registry URL to push to instead of ECR's (env {_ENV_ENDPOINT})",
    )
    parser.add_argument("--region", help="AWS region for ECR")
    parser.add_argument("--username", default=os.environ.get("QA_OPERATOR_REGISTRY_USERNAME"))
    parser.add_argument("--password", default=os.environ.get("QA_OPERATOR_REGISTRY_PASSWORD"))


def _client(args: argparse.Namespace) -> RegistryClient:
    if args.username is not None:
        if not args.registry_endpoint:
            raise SystemExit("--username needs --registry-endpoint")
        return RegistryClient(
            args.registry_endpoint, username=args.username, password=args.password
        )
    import boto3

    from qa_operator.aws.ecr import ecr_registry_client, ensure_repository

    ecr = boto3.client("ecr", region_name=args.region)
    ensure_repository(ecr, args.repository)
    return ecr_registry_client(ecr, registry_endpoint=args.registry_endpoint)


def run(args: argparse.Namespace) -> int:
    if args.mode == "baked" and args.package is None:
        print("error: --mode baked needs --package DIR", file=sys.stderr)
        return 2
    client = _client(args)
    try:
        ref = publish_image(
            client,
            base=args.base,
            target_repository=args.repository,
            mode=args.mode,
            package_dir=args.package,
            package_digest=args.package_digest,
        )
    except RegistryError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    result = dataclasses.asdict(ref) | {"bytes_uploaded": client.bytes_uploaded}
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa-operator image", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
