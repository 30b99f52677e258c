"""`python -m devstack up`: start the local stack and keep it up until Ctrl-C (or SIGTERM).
`python -m devstack env`: the shell lines that point another terminal at the running stack.

    python -m devstack up [--operator] [--state-dir DIR]
    eval "$(python -m devstack env)"      # in another terminal

With --operator it also pushes the serving image, puts the tiny QA model in S3 and runs the
operator (`qa-operator run`, as in `make demo`), so that `kubectl apply -f
manifests/examples/tiny-qa.yaml` becomes an endpoint that answers.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from devstack.stack import (
    DEFAULT_STATE_DIR,
    REPO,
    LocalStack,
    StackBusy,
    interrupt_on_signals,
    stack_env_lines,
)
from qa_operator.model.trained import POST_TEXT

READY_LINE = "The local stack is up."


def _up(state_dir: Path, with_operator: bool) -> int:
    interrupt_on_signals()
    try:
        with LocalStack(state_dir) as stack:
            if with_operator:
                _start_operator(stack)
            _usage(stack, with_operator)
            while True:
                signal.pause()
    except StackBusy as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


def _start_operator(stack: LocalStack) -> None:
    import yaml

    from devstack.demo import (
        EXAMPLE,
        local_operator_env,
        push_serving_image,
        start_operator,
        upload_model,
    )

    print("  serving image: build (or reuse) and push ...", flush=True)
    image = push_serving_image(stack)
    model_uri = yaml.safe_load(EXAMPLE.read_text())["spec"]["model"]["s3"]["uri"]
    upload_model(stack.client("s3"), model_uri)
    env = local_operator_env(stack, image, stack.run_dir / "operator-work")
    env["KUBECONFIG"] = str(stack.operator_kubeconfig())
    operator = start_operator(env, stack.run_dir / "operator.log")
    stack.on_stop(operator.stop)
    print(f"  operator: running (pid {operator.process.pid}), log {operator.log_path}", flush=True)


USAGE = """
{ready} Logs: {run_dir}

In another terminal, from {repo}:

  export KUBECONFIG={kubeconfig}
  export PATH="{bin_dir}:$PATH"  # its kubectl, built with the API server
  source {aws_env}  # AWS_ENDPOINT_URL, dummy credentials
  # or the three at once: eval "$({python} -m devstack env{state_arg})"

  kubectl get qamd -A
  aws sagemaker list-endpoints
{operator}
Once an endpoint is Ready, ask it (AWS CLI v2: add --cli-binary-format raw-in-base64-out):

  aws sagemaker-runtime invoke-endpoint --endpoint-name default-tiny-qa \\
    --content-type application/json --body '{body}' /dev/stdout

  {python} -c '{python_code}'

Ctrl-C stops everything."""

OPERATOR_RUNS = """
  kubectl apply -f manifests/examples/tiny-qa.yaml
  kubectl get qamd -o wide -w
"""
PYTHON_CODE = (
    'import boto3, json; print(boto3.client("sagemaker-runtime").invoke_endpoint('
    'EndpointName="default-tiny-qa", ContentType="application/json", Body=json.dumps({body}))'
    '["Body"].read().decode())'
)
NO_OPERATOR = """
  (no operator runs: `python -m devstack up --operator` also pushes the serving image, puts the
  tiny QA model in S3 and runs the operator)
"""


def _usage(stack: LocalStack, with_operator: bool) -> None:
    def shown(path: Path) -> str:
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

    default = stack.state_dir == DEFAULT_STATE_DIR.resolve()
    body = json.dumps({"question": "Where do I live?", "text": POST_TEXT})
    print(
        USAGE.format(
            ready=READY_LINE,
            run_dir=stack.run_dir,
            repo=REPO,
            kubeconfig=stack.kubeconfig,
            bin_dir=stack.bin_dir,
            aws_env=shown(stack.aws_env_file),
            python=shown(Path(sys.executable)),
            state_arg="" if default else f" --state-dir {stack.state_dir}",
            operator=OPERATOR_RUNS if with_operator else NO_OPERATOR,
            body=body,
            python_code=PYTHON_CODE.format(
                body=json.dumps({"question": "How old am I?", "text": POST_TEXT})
            ),
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the local stack; Ctrl-C stops it")
    up.add_argument(
        "--operator",
        action="store_true",
        help="also push the serving image, upload the tiny model and run the operator",
    )
    env = commands.add_parser("env", help="print `export` lines for the running stack")
    for command in (up, env):
        command.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    if args.command == "up":
        return _up(args.state_dir, args.operator)
    try:
        print("\n".join(stack_env_lines(args.state_dir)))
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
