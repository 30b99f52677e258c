"""`qa-operator`: run the operator, or publish a serving image from a terminal."""

from __future__ import annotations

import argparse
import sys


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

    from qa_operator.registry import cli as image_cli

    image = commands.add_parser("image", help="publish the serving image through the registry API")
    image_cli.add_arguments(image)

    args = parser.parse_args(argv)
    if args.command == "image":
        return image_cli.run(args)
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

    try:
        kopf_main(args=kopf_args, prog_name="qa-operator")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
