"""`qa-operator run` with issue 13's scale optimisations switched off: the baseline that
bench/scale.py and bench/apply_to_ready.py measure in the same run as the operator as shipped.

    python bench/unoptimised_operator.py run --standalone   # what the benchmarks start

Bench-only: none of these is a setting an operator's user should have. Switched off:

* the first look: a pass that creates, updates, rolls back or deletes the endpoint waits the
  poll backoff (QA_OPERATOR_POLL_MIN_SECONDS and up) before it looks again, instead of 0.2 s;
* batched observation: every pass calls DescribeEndpoint and ListTags for its endpoint (no shared
  ListEndpoints snapshot, no tag cache);
* quiet resyncs: every pass sends its whole status patch, changed or not.

Not switched off (they are not in the operator): the test stack's ListModels honouring
NameContains, which the operator's clean-up relies on.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from qa_operator import cli, handlers, reconciler  # noqa: E402
from qa_operator.aws.sagemaker import SageMakerGateway  # noqa: E402
from qa_operator.plan import Plan  # noqa: E402


def wait_the_poll_backoff(self: reconciler.Reconciler, plan: Plan, attempt: int) -> float:
    return self.backoff(attempt)


def describe_every_pass(self: reconciler.Reconciler, region: str) -> SageMakerGateway:
    return SageMakerGateway(self._aws("sagemaker", region))


def whole_status(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return dict(wanted)


def switch_off() -> None:
    setattr(reconciler.Reconciler, "next_look", wait_the_poll_backoff)  # noqa: B010
    setattr(reconciler.Reconciler, "_sagemaker", describe_every_pass)  # noqa: B010
    setattr(handlers, "status_patch", whole_status)  # noqa: B010


if __name__ == "__main__":
    switch_off()
    sys.exit(cli.main())
