"""Pure planning: (desired, observed, history) -> what to do next.

No SDK here. The reconciler observes SageMaker, asks for a plan, performs its actions and reports
its verdict. Every branch is one row of a table test in tests/unit/test_plan.py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qa_operator.desired import DesiredState

TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# While SageMaker patches or resizes an endpoint it keeps serving the config it had: when that is
# the desired config, the deployment is Ready, and only waits before changing anything.
SERVING_TRANSITIONAL = frozenset({"Updating", "SystemUpdating"})
SMOKE_TEST_CAUSE = "SmokeTest"
# Statuses SageMaker does not leave by itself: report them rather than wait on them.
STUCK = {
    "OutOfService": "EndpointOutOfService",
    "UpdateRollbackFailed": "EndpointUpdateRollbackFailed",
}


class Action(enum.Enum):
    CREATE_MODEL = "CreateModel"
    CREATE_ENDPOINT_CONFIG = "CreateEndpointConfig"
    CREATE_ENDPOINT = "CreateEndpoint"
    UPDATE_ENDPOINT = "UpdateEndpoint"
    DELETE_ENDPOINT = "DeleteEndpoint"
    DELETE_SUPERSEDED = "DeleteSuperseded"
    DELETE_OWNED = "DeleteOwned"
    SYNC_TAGS = "SyncTags"
    SMOKE_TEST = "SmokeTest"  # ask the endpoint a question before calling it Ready
    ROLL_BACK = "RollBack"  # UpdateEndpoint back to the last known good config


ENDPOINT_WORK = frozenset(
    {Action.CREATE_ENDPOINT, Action.UPDATE_ENDPOINT, Action.ROLL_BACK, Action.DELETE_ENDPOINT}
)


class State(enum.Enum):
    """Where the deployment stands after the plan's actions; conditions are derived from it."""

    CREATING = "Creating"
    UPDATING = "Updating"
    WAITING = "Waiting"
    READY = "Ready"
    SERVING_BUSY = "ServingBusy"  # serves the desired config while SageMaker works on it
    VERIFYING = "Verifying"  # InService on the desired config, the smoke test not passed yet
    SMOKE_RETRYING = "SmokeRetrying"  # the smoke test failed; it is asked again, a bounded number
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"  # back to the last known good config after a failed smoke test
    ROLLED_BACK = "RolledBack"
    CONFLICT = "Conflict"
    DELETING = "Deleting"
    DELETED = "Deleted"
    SUSPENDING = "Suspending"  # spec.suspend: the endpoint is being deleted, config kept
    SUSPENDED = "Suspended"  # spec.suspend: no endpoint, config and model kept (suspend.py)


@dataclass(frozen=True)
class ObservedEndpoint:
    name: str
    arn: str
    status: str
    config_name: str
    failure_reason: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    owned: bool = True
    # DesiredInstanceCount per production variant (capacity.py); None when not observed.
    variant_counts: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Observed:
    endpoint: ObservedEndpoint | None
    model_exists: bool = False
    config_exists: bool = False
    # The desired Model / EndpointConfig name exists but is not tagged with this owner's uid:
    # someone else's, never to be reused (deleting its owner would pull it from under us).
    model_foreign: bool = False
    config_foreign: bool = False


@dataclass(frozen=True)
class Identity:
    """Where the endpoint lives: the name and region that never change under a resource."""

    name: str
    region: str


@dataclass(frozen=True)
class History:
    """What earlier passes recorded in status, so a failed config is not retried blindly."""

    generation: int
    attempted_config: str | None = None
    attempted_generation: int | None = None
    failed_config: str | None = None
    failed_generation: int | None = None
    applied_tags: tuple[str, ...] = ()  # user tag keys an earlier pass put on the endpoint
    # The config for which superseded configs, models and packages were last deleted; cleared
    # whenever a pass creates or uploads something, so one clean-up follows each change.
    superseded_deleted_for: str | None = None
    failure_cause: str | None = None  # SMOKE_TEST_CAUSE when the smoke test failed the config
    failure_reason: str | None = None  # what the failure of failed_config said
    smoke_required: bool = False  # Ready only once the endpoint answered the smoke test
    verified_config: str | None = None  # the config that passed the current smoke test
    last_known_good: str | None = None  # the config that last passed (or was Ready without one)

    def needs_verification(self, config_name: str) -> bool:
        return self.smoke_required and self.verified_config != config_name

    def smoke_failed(self, config_name: str) -> bool:
        """The smoke test failed this config at the current generation."""
        return self.blocks(config_name) and self.failure_cause == SMOKE_TEST_CAUSE

    def blocks(self, config_name: str) -> bool:
        """This config failed at the current generation: wait for a new spec."""
        return self._failed_since(config_name, self.generation)

    def attempt_generation(self, config_name: str) -> int:
        """The generation at which this config was last tried (the current one if unrecorded)."""
        if self.attempted_config == config_name and self.attempted_generation is not None:
            return self.attempted_generation
        return self.generation

    def is_new_failure(self, config_name: str) -> bool:
        """A failure of this config that is not yet recorded for its latest attempt."""
        return not self._failed_since(config_name, self.attempt_generation(config_name))

    def _failed_since(self, config_name: str, generation: int) -> bool:
        return (
            self.failed_config == config_name
            and self.failed_generation is not None
            and self.failed_generation >= generation
        )


@dataclass(frozen=True)
class Plan:
    state: State
    reason: str
    message: str
    actions: tuple[Action, ...] = ()
    failure_generation: int | None = None  # record the desired config as failed at this generation
    failure_cause: str | None = None  # what failed it, when not SageMaker (SMOKE_TEST_CAUSE)
    failure_reason: str | None = None  # why, when not SageMaker's FailureReason

    @property
    def settled(self) -> bool:
        """Nothing will change without a new spec or an outside change: poll slowly."""
        return self.state in (
            State.READY,
            State.FAILED,
            State.ROLLED_BACK,
            State.CONFLICT,
            State.SUSPENDED,
        )

    @property
    def starts_endpoint_work(self) -> bool:
        """The pass asks SageMaker to change the endpoint, which it may finish at once (an
        endpoint already provisioned, a fast update): the next look comes without waiting."""
        return any(action in ENDPOINT_WORK for action in self.actions)


def plan_identity(
    recorded_name: str | None, recorded_region: str | None, desired: Identity
) -> Plan | None:
    """A terminal conflict when the spec now names another endpoint than the one recorded in
    status (set, changed or removed `endpoint.name` or `endpoint.region`): creating the new one
    would leave the recorded one running, billed, and forgotten at delete. None when they agree
    or nothing is recorded yet."""
    recorded = Identity(recorded_name or desired.name, recorded_region or desired.region)
    if recorded == desired:
        return None
    return Plan(
        State.CONFLICT,
        "EndpointIdentityChanged",
        f"this resource's endpoint is {recorded.name} in {recorded.region}, but the spec now "
        f"names {desired.name} in {desired.region}; spec.endpoint.name and spec.endpoint.region "
        "cannot change after creation: restore them, or create a new QAModelDeployment "
        f"(deleting this one deletes {recorded.name})",
    )


def plan_reconcile(desired: DesiredState, observed: Observed, history: History) -> Plan:
    endpoint = observed.endpoint
    config_name = desired.config.name
    if endpoint is None:
        if foreign := _foreign_conflict(desired, observed):
            return foreign
        return Plan(
            State.CREATING,
            "CreatingEndpoint",
            f"creating endpoint {desired.endpoint.name} with config {config_name}",
            (*_prerequisites(observed), Action.CREATE_ENDPOINT),
        )
    if not endpoint.owned:
        return Plan(
            State.CONFLICT,
            "EndpointNameConflict",
            f"endpoint {endpoint.name} exists in SageMaker but is not managed by this resource; "
            "choose another spec.endpoint.name or delete that endpoint",
        )
    if endpoint.status in TRANSITIONAL and history.smoke_failed(config_name):
        return Plan(
            State.ROLLING_BACK,
            "SmokeTestFailedRolledBack",
            f"config {config_name} failed its smoke test ({history.failure_reason}); endpoint "
            f"{endpoint.name} is {endpoint.status} on its way back to "
            f"{history.last_known_good or 'its last config'}",
        )
    if (
        endpoint.status in SERVING_TRANSITIONAL
        and endpoint.config_name == config_name
        and not history.needs_verification(config_name)
    ):
        return Plan(
            State.SERVING_BUSY,
            f"Endpoint{endpoint.status}",
            f"endpoint {endpoint.name} serves config {config_name} while SageMaker reports "
            f"{endpoint.status}; waiting before any change",
        )
    if endpoint.status in TRANSITIONAL:
        return Plan(
            State.WAITING,
            f"Endpoint{endpoint.status}",
            f"endpoint {endpoint.name} is {endpoint.status}; waiting before any change",
        )
    if endpoint.status == "Failed":
        return _plan_failed(desired, endpoint, history)
    if endpoint.status in STUCK:
        return Plan(
            State.FAILED,
            STUCK[endpoint.status],
            f"endpoint {endpoint.name} is {endpoint.status} on config {endpoint.config_name}: "
            f"{endpoint.failure_reason or 'SageMaker gave no FailureReason'}; it needs attention "
            "in SageMaker (or delete this resource)",
        )
    if endpoint.status != "InService":
        return Plan(
            State.WAITING,
            "EndpointNotInService",
            f"endpoint {endpoint.name} is {endpoint.status}; waiting for InService",
        )
    if endpoint.config_name == config_name:
        if history.smoke_failed(config_name):
            return Plan(
                State.FAILED,
                "SmokeTestFailed",
                f"endpoint {endpoint.name} is InService on config {config_name} but failed its "
                f"smoke test: {history.failure_reason}; change the spec to try again",
            )
        if history.needs_verification(config_name):
            return Plan(
                State.VERIFYING,
                "SmokeTesting",
                f"endpoint {endpoint.name} is InService on config {config_name}; asking it the "
                "smoke test question",
                (Action.SMOKE_TEST,),
            )
        return plan_ready(desired, endpoint, history)
    if history.smoke_failed(config_name):
        return Plan(
            State.ROLLED_BACK,
            "SmokeTestFailedRolledBack",
            f"config {config_name} failed its smoke test ({history.failure_reason}), so endpoint "
            f"{endpoint.name} was rolled back to {endpoint.config_name}, which passed; change the "
            "spec to try again",
        )
    rolled_back = (
        history.attempted_config == config_name
        and bool(endpoint.failure_reason)
        and history.is_new_failure(config_name)
    )
    if history.blocks(config_name) or rolled_back:
        return Plan(
            State.ROLLED_BACK,
            "UpdateRolledBack",
            f"update to config {config_name} failed and SageMaker rolled back to "
            f"{endpoint.config_name}: {endpoint.failure_reason or 'no reason given'}; "
            "change the spec to try again",
            failure_generation=history.attempt_generation(config_name) if rolled_back else None,
        )
    if foreign := _foreign_conflict(desired, observed):
        return foreign
    return Plan(
        State.UPDATING,
        "UpdatingEndpoint",
        f"updating endpoint {endpoint.name} from config {endpoint.config_name} to {config_name}",
        (*_prerequisites(observed), Action.UPDATE_ENDPOINT),
    )


def plan_ready(
    desired: DesiredState,
    endpoint: ObservedEndpoint,
    history: History,
    *,
    answered: bool | None = None,
) -> Plan:
    """Ready on the desired config: what follows is the clean-up of what it superseded and the
    endpoint's tags. `answered` (default: the history says the config passed its smoke test)
    picks the reason, the same on the pass that ran the test and on every resync after it."""
    config_name = desired.config.name
    if answered is None:
        answered = history.smoke_required and history.verified_config == config_name
    in_service = f"endpoint {endpoint.name} is InService on config {config_name}"
    return Plan(
        State.READY,
        "SmokeTestPassed" if answered else "EndpointInService",
        f"{in_service} and answered its smoke test" if answered else in_service,
        ((Action.DELETE_SUPERSEDED,) if history.superseded_deleted_for != config_name else ())
        + ((Action.SYNC_TAGS,) if any(tag_delta(desired, endpoint, history)) else ()),
    )


def _plan_failed(desired: DesiredState, endpoint: ObservedEndpoint, history: History) -> Plan:
    reason = endpoint.failure_reason or "SageMaker gave no FailureReason"
    config_name = desired.config.name
    new_failure = endpoint.config_name == config_name and history.is_new_failure(config_name)
    if history.blocks(config_name) or new_failure:
        return Plan(
            State.FAILED,
            "EndpointFailed",
            f"endpoint {endpoint.name} failed on config {endpoint.config_name}: {reason}; "
            "change the spec to try again",
            failure_generation=history.attempt_generation(config_name) if new_failure else None,
        )
    return Plan(
        State.DELETING,
        "RecreatingFailedEndpoint",
        f"endpoint {endpoint.name} failed ({reason}); deleting it to create it again "
        f"with config {config_name}",
        (Action.DELETE_ENDPOINT,),
    )


def tag_delta(
    desired: DesiredState, endpoint: ObservedEndpoint, history: History
) -> tuple[dict[str, str], list[str]]:
    """Endpoint tags to set, and user tags to remove: only those an earlier pass applied, so
    that tags other tools put on the endpoint are left alone."""
    wanted = desired.endpoint.tags
    to_set = {key: value for key, value in wanted.items() if endpoint.tags.get(key) != value}
    to_remove = sorted(
        key for key in history.applied_tags if key not in wanted and key in endpoint.tags
    )
    return to_set, to_remove


def applied_tags(plan: Plan, user_tags: Iterable[str], history: History) -> tuple[str, ...]:
    """The user tag keys to record as on the endpoint after this plan's actions: the spec's once
    the endpoint was created with them or synced to them (Ready), else what was recorded before.
    Recording them earlier (say, with an update) would forget a removed key before it is removed."""
    if plan.state is State.READY or Action.CREATE_ENDPOINT in plan.actions:
        return tuple(sorted(user_tags))
    return history.applied_tags


def _foreign_conflict(desired: DesiredState, observed: Observed) -> Plan | None:
    """A Model or EndpointConfig under our deterministic name that another owner tagged (or
    nobody did) is a conflict, never something to serve from."""
    taken = [
        (kind, name)
        for kind, name, foreign in (
            ("Model", desired.model.name, observed.model_foreign),
            ("EndpointConfig", desired.config.name, observed.config_foreign),
        )
        if foreign
    ]
    if not taken:
        return None
    kind, name = taken[0]
    return Plan(
        State.CONFLICT,
        f"{kind}NameConflict",
        f"{kind} {name} exists in SageMaker but is not tagged as this resource's "
        "(qaoperator.io/uid); it is never reused: delete it or rename this resource "
        f"(endpoint {desired.endpoint.name} is left as it is)",
    )


def _prerequisites(observed: Observed) -> tuple[Action, ...]:
    actions = []
    if not observed.model_exists:
        actions.append(Action.CREATE_MODEL)
    if not observed.config_exists:
        actions.append(Action.CREATE_ENDPOINT_CONFIG)
    return tuple(actions)


def plan_delete(endpoint: ObservedEndpoint | None) -> Plan:
    """Deletion with the Delete policy: endpoint first, then everything else this owner tagged."""
    if endpoint is not None and endpoint.owned:
        if endpoint.status in TRANSITIONAL:
            return Plan(
                State.DELETING,
                f"Endpoint{endpoint.status}",
                f"endpoint {endpoint.name} is {endpoint.status}; deleting once it settles",
            )
        return Plan(
            State.DELETING,
            "DeletingEndpoint",
            f"deleting endpoint {endpoint.name}",
            (Action.DELETE_ENDPOINT,),
        )
    return Plan(
        State.DELETED,
        "Deleted",
        "deleted every endpoint config, model and package this resource owned",
        (Action.DELETE_OWNED,),
    )


# -- what a clean-up deletes ------------------------------------------------------------------


def package_prefixes(
    current: tuple[str, str] | None, recorded_uris: Iterable[str | None], owner_segment: str
) -> list[tuple[str, str]]:
    """The (bucket, prefix) places that hold this owner's packages: the one the current settings
    name, and the owner prefix of every recorded package URI, so that a bucket or prefix setting
    changed since the upload orphans nothing. A recorded URI whose path does not end in this
    owner's segment ("<name>-<uid>") gives no prefix: never list another owner's objects."""
    places = [current] if current is not None else []
    for uri in recorded_uris:
        if not uri or not uri.startswith("s3://"):
            continue
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        # "<owner prefix><digest>/model.tar.gz"
        owner_dir = key.rsplit("/", 2)[0]
        if bucket and key.count("/") >= 2 and owner_dir.rsplit("/", 1)[-1] == owner_segment:
            places.append((bucket, owner_dir + "/"))
    return sorted(set(places))


def packages_to_delete(
    listed: Iterable[tuple[str, str]], recorded_uris: Iterable[str | None], keep: str | None
) -> list[tuple[str, str]]:
    """(bucket, key) objects to delete: those listed under the owner's prefixes and every recorded
    package URI, except the package still served (`keep`, an s3:// URI)."""
    doomed = set(listed)
    for uri in recorded_uris:
        if uri and uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            if bucket and key:
                doomed.add((bucket, key))
    if keep:
        bucket, _, key = keep.removeprefix("s3://").partition("/")
        doomed.discard((bucket, key))
    return sorted(doomed)


BAKED_TAG_PREFIX = "pkg-"


@dataclass(frozen=True)
class PushedImage:
    repository: str
    digest: str


def pushed_image(recorded: Mapping[str, object]) -> PushedImage | None:
    """The baked image this resource recorded pushing (status.image), the only kind of image it
    ever deletes: a shared `s3`-mode serving image, or a record from before pushes were recorded,
    gives None. Each owner bakes its own image (publish_image's `owner`), so deleting it never
    deletes another resource's."""
    repository, digest, tag = (recorded.get(k) for k in ("repository", "digest", "tag"))
    if recorded.get("pushed") is not True or not isinstance(tag, str):
        return None
    if not tag.startswith(BAKED_TAG_PREFIX) or not isinstance(repository, str) or not repository:
        return None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return None
    return PushedImage(repository, digest)


def superseded_image(
    previous: Mapping[str, object], current: Mapping[str, object]
) -> PushedImage | None:
    """The baked image a new one replaces: pushed by this resource, and not the one it serves."""
    old = pushed_image(previous)
    if old is None or old.digest == current.get("digest"):
        return None
    return old


def images_to_delete(
    superseded: Iterable[Mapping[str, object]], current: Mapping[str, object], *, finalizing: bool
) -> list[PushedImage]:
    """The recorded baked images to delete: superseded ones, never the image still served, and
    on delete the served one too."""
    records = [*superseded, current] if finalizing else list(superseded)
    served = current.get("digest")
    found = [pushed_image(r) for r in records]
    return sorted(
        {i for i in found if i is not None and (finalizing or i.digest != served)},
        key=lambda i: (i.repository, i.digest),
    )
