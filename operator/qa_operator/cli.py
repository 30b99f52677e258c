"""`qa-operator`: run the operator, or build and publish images from a terminal."""

from __future__ import annotations

import argparse
import sys

_IMAGE_COMMANDS = ("build", "publish")


def _with_image_command(argv: list[str]) -> list[str]:
    """`qa-operator image --base ...` predates `image build`: it still means `image publish`."""
    if len(argv) > 1 and argv[0] == "image":
        first = argv[1]
        if first not in _IMAGE_COMMANDS and first.startswith("-") and first not in ("-h", "--help"):
            return ["image", "publish", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qa-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator (kopf) against the current cluster")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--standalone", action="store_true", help="no peering with other operator instances"
    )
    run.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument("--verbose", action="store_true")

    from qa_operator.imagebuild import cli as build_cli
    from qa_operator.registry import cli as publish_cli

    image = commands.add_parser(
        "image", help="build the images, or publish the serving image, through the registry API"
    )
    image_commands = image.add_subparsers(dest="image_command", required=True)
    build = image_commands.add_parser(
        "build",
        help="build the serving or operator image without Docker and push it",
        description=build_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # else --password would pass for --password-stdin
    )
    build_cli.add_arguments(build)
    publish = image_commands.add_parser(
        "publish",
        help="publish the serving image for SageMaker (s3 mode, or baked with a model)",
        description=publish_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish_cli.add_arguments(publish)

    args = parser.parse_args(_with_image_command(sys.argv[1:] if argv is None else argv))
    if args.command == "image":
        return build_cli.run(args) if args.image_command == "build" else publish_cli.run(args)
    return _run_operator(args)


def _run_operator(args: argparse.Namespace) -> int:
    kopf_args = ["run", "--module", "qa_operator.handlers"]
    if args.namespace:
        for namespace in args.namespace:
            kopf_args += ["--namespace", namespace]
    else:
        kopf_args.append("--all-namespaces")
    if args.standalone:
        kopf_args.append("--standalone")
    if args.liveness:
        kopf_args += ["--liveness", args.liveness]
    if args.verbose:
        kopf_args.append("--verbose")
    from kopf.cli import main as kopf_main

    from qa_operator.settings import OperatorSettings

    settings = OperatorSettings.from_env()
    elector = None
    if settings.leader_election:
        from qa_operator import leader

        elector = leader.wait_to_lead(settings, liveness_url=args.liveness)
    try:
        kopf_main(args=kopf_args, prog_name="qa-operator")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        if elector is not None:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
