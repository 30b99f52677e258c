"""`qa-operator image publish`: publish the serving image from a terminal, as the operator does.

    qa-operator image publish --base HOST/REPO:TAG --repository qa-serving --mode baked \\
        --package DIR

(`qa-operator image --base ...`, without `publish`, still means this.) Credentials: --username
(or QA_OPERATOR_REGISTRY_USERNAME) with the password from QA_OPERATOR_REGISTRY_PASSWORD or
--password-stdin, for a plain registry; otherwise ECR through boto3 (the repository is created
when missing). Prints the resulting ImageRef as one JSON object.
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

ENV_ENDPOINT = "QA_OPERATOR_REGISTRY_ENDPOINT"
ENV_USERNAME = "QA_OPERATOR_REGISTRY_USERNAME"
ENV_PASSWORD = "QA_OPERATOR_REGISTRY_PASSWORD"


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """Where to push and as whom; shared by `image publish` and `image build`."""
    parser.add_argument(
        "--registry-endpoint",
        default=os.environ.get(ENV_ENDPOINT),
        help=f"registry URL to push to instead of ECR's (env {ENV_ENDPOINT})",
    )
    parser.add_argument("--region", help="AWS region for ECR")
    parser.add_argument(
        "--username",
        default=os.environ.get(ENV_USERNAME),
        help=f"registry user (env {ENV_USERNAME}); without it, ECR credentials from boto3",
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the registry password from stdin (else env {ENV_PASSWORD})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="serving image: HOST/REPO:TAG or @sha256:")
    parser.add_argument("--repository", required=True, help="target repository name")
    parser.add_argument("--mode", choices=("s3", "baked"), default="s3")
    parser.add_argument("--package", type=Path, help="MLflow package directory (baked mode)")
    parser.add_argument("--package-digest", help="sha256:... of the package; names the tag")
    add_registry_arguments(parser)
    parser.add_argument("--password", action=_RefusePassword, help=argparse.SUPPRESS)


class _RefusePassword(argparse.Action):
    """Scripts written before --password-stdin get told why and what to use instead, rather than
    argparse's bare "unrecognized arguments"."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.error(
            "--password is refused: a password on the command line is visible to every user of "
            f"the machine (ps, /proc); pass it with --password-stdin or in {ENV_PASSWORD}"
        )


def registry_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get(ENV_PASSWORD)


def registry_client(args: argparse.Namespace) -> RegistryClient:
    """A client for --registry-endpoint as --username, or for ECR (creating the repository)."""
    if args.username is not None:
        if not args.registry_endpoint:
            raise SystemExit("--username needs --registry-endpoint")
        return RegistryClient(
            args.registry_endpoint, username=args.username, password=registry_password(args)
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
    client = registry_client(args)
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
    parser = argparse.ArgumentParser(prog="qa-operator image publish", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
