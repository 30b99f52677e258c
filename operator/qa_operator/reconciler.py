"""One idempotent pass: observe SageMaker, compute the desired state, plan, act, report.

It knows nothing of kopf: it takes the resource as plain data and returns an Outcome (one status
patch, the events to post, when to look again). kopf's handlers are thin wrappers around it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from qa_operator import (
    adoption,
    autoscaling,
    aws_identity,
    capacity,
    conditions,
    deadlines,
    freshness,
    preflight,
    schedule,
    smoke,
    suspend,
)
from qa_operator.artifacts import ModelPackager, PackagingJobs, describe_source
from qa_operator.aws.autoscaling import AutoscalingGateway
from qa_operator.aws.capacity import CapacityGateway
from qa_operator.aws.observation import Observations
from qa_operator.aws.preflight import PreflightGateway
from qa_operator.aws.roles import AssumedRoles
from qa_operator.aws.runtime import SageMakerRuntimeGateway
from qa_operator.aws.s3 import PackageStore, SharedPackageStore
from qa_operator.aws.sagemaker import SageMakerGateway
from qa_operator.aws.source_versions import SourceVersions
from qa_operator.aws_identity import AwsIdentity
from qa_operator.conditions import Verdict
from qa_operator.desired import (
    Artifacts,
    DesiredState,
    Owner,
    desired_state,
    endpoint_name,
    is_owned_by,
    name_stem,
    owner_prefix,
)
from qa_operator.endpoint_options import async_status
from qa_operator.errors import INTERNAL_ERROR, OperatorError, RetryableError, TerminalError
from qa_operator.images import ImageResolver
from qa_operator.keyed_locks import KeyedLocks
from qa_operator.observation import resync_timing
from qa_operator.package_refs import shared_package, split_recorded, to_release
from qa_operator.packaging_process import ChildProcess
from qa_operator.plan import (
    Action,
    History,
    Identity,
    Observed,
    ObservedEndpoint,
    Plan,
    State,
    applied_tags,
    images_to_delete,
    package_prefixes,
    packages_to_delete,
    plan_delete,
    plan_identity,
    plan_reconcile,
    superseded_image,
    tag_delta,
)
from qa_operator.policy import PolicyFile
from qa_operator.settings import OperatorSettings
from qa_operator.spec import DeploymentSpec, HuggingFaceSource, S3Source, SpecError, parse_spec

AwsClientFactory = Callable[[str, str], Any]
RoleClientFactory = Callable[[str, str, str, str], Any]  # (role ARN, namespace, service, region)
log = logging.getLogger(__name__)


class PackagingPending(Exception):
    """The pass needs a package its job is still building: it ends here and looks again, or
    is woken when `job` ends."""

    def __init__(self, message: str, job: Future[Any] | None) -> None:
        super().__init__(message)
        self.message = message
        self.job = job


@dataclass(frozen=True)
class Acting:
    """Whom this thread's pass acts as in AWS: set once the pass has decided, for every client
    it (and the packager and image resolver it calls) asks for."""

    namespace: str
    identity: AwsIdentity


_ACTING: contextvars.ContextVar[Acting | None] = contextvars.ContextVar("acting", default=None)


@dataclass(frozen=True)
class Resource:
    owner: Owner
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    message: str = ""
    done: bool = True
    transient_error: bool = False  # requeued because of an error, not to wait on SageMaker
    # spec.schedule changes state this soon, before the next resync: look again then.
    wake_after: float | None = None
    # The packaging job this pass waited for: the handler may run the pass again when it ends.
    waiting_on: Future[Any] | None = None


DELETING_PHASE = "Deleting"
# After a pass that asked SageMaker to change the endpoint: look again this soon (SageMaker may
# already be done), then back off from poll_min_seconds.
FIRST_LOOK_SECONDS = 0.2
# A pass woken for a schedule boundary runs this much after it: never just before it.
BOUNDARY_MARGIN_SECONDS = 0.5
# While its package is built in the packaging pool: look again this soon, then twice as late
# each time up to poll_min_seconds: each look is a kopf retry, which PATCHes the resource, so
# the change handler first waits for the job itself (handlers.py) and asks for these only when
# its wait runs out.
PACKAGING_LOOK_SECONDS = 0.5
# The actions a preflight must pass before (preflight.py): the calls that create or change.
PREFLIGHT_GUARDS = frozenset(
    {
        Action.CREATE_MODEL,
        Action.CREATE_ENDPOINT_CONFIG,
        Action.CREATE_ENDPOINT,
        Action.UPDATE_ENDPOINT,
    }
)


def invocation_url(region: str, endpoint: str) -> str:
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{endpoint}/invocations"


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        aws_client: AwsClientFactory,
        *,
        roles: RoleClientFactory | None = None,
        packager: ModelPackager | None = None,
        images: ImageResolver | None = None,
        policy: PolicyFile | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._operator_aws = aws_client
        self._roles = (
            roles
            or AssumedRoles(
                lambda: aws_client("sts", settings.default_region),
                lambda session, service, region: session.client(service, region_name=region),
            ).client
        )
        self._packager = packager or ModelPackager(
            settings.work_dir,
            max_concurrent=settings.max_concurrent_packaging,
            s3_client=lambda region: self._aws("s3", region),
            limits=settings.serving_limits,
            max_bytes=settings.work_dir_max_bytes,
            builder=ChildProcess(
                settings.max_concurrent_packaging, idle_seconds=settings.packaging_idle_seconds
            ),
        )
        self._packaging = PackagingJobs(
            self._packager, max_concurrent=settings.max_concurrent_packaging
        )
        self._images = images or ImageResolver(settings, lambda region: self._aws("ecr", region))
        self._policy = policy or PolicyFile(settings.policy_file)
        self._now = now
        self._jitter = jitter
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._package_refs = KeyedLocks()  # one digest's reference changes at a time
        # One ListEndpoints per region and identity per tenth of the resync interval, shared by
        # every resync; an out-of-band change shows within one resync interval
        # (observation.ResyncTiming). Per identity, since two roles may see different endpoints.
        timing = resync_timing(settings.resync_seconds)
        self._observations = Observations(max_age=timing.snapshot_max_age)

    def _aws(self, service: str, region: str) -> Any:
        """A client as the identity this pass acts as (aws_identity.py)."""
        acting = _ACTING.get()
        if acting is None or acting.identity.role_arn is None:
            return self._operator_aws(service, region)
        return self._roles(acting.identity.role_arn, acting.namespace, service, region)

    def _sagemaker(self, region: str) -> SageMakerGateway:
        acting = _ACTING.get()
        role = acting.identity.role_arn if acting is not None else None
        return SageMakerGateway(
            self._aws("sagemaker", region), self._observations.region(region, role)
        )

    def lock_for(self, uid: str) -> threading.Lock:
        """Create/update handlers and the timer may fire together for one resource."""
        with self._locks_guard:
            return self._locks.setdefault(uid, threading.Lock())

    def forget(self, uid: str) -> None:
        with self._locks_guard:
            self._locks.pop(uid, None)

    def backoff(self, attempt: int) -> float:
        base = min(
            self.settings.poll_max_seconds, self.settings.poll_min_seconds * 1.5 ** max(attempt, 0)
        )
        return round(base * (0.8 + 0.4 * self._jitter()), 2)

    def next_look(self, plan: Plan, attempt: int) -> float:
        """When to observe an unsettled endpoint again: at once after starting work on it, since
        nothing says SageMaker is not done already; then with the growing backoff."""
        if plan.starts_endpoint_work:
            return min(FIRST_LOOK_SECONDS, self.settings.poll_min_seconds)
        return self.backoff(attempt)

    def packaging_look(self, attempt: int) -> float:
        """When to look again for a package being built."""
        return min(
            max(self.settings.poll_min_seconds, PACKAGING_LOOK_SECONDS),
            PACKAGING_LOOK_SECONDS * 2 ** max(attempt, 0),
        )

    # -- create, update, resume, resync ------------------------------------------------------

    def reconcile(self, resource: Resource, attempt: int = 0, *, resync: bool = False) -> Outcome:
        """One pass. `resync`: the periodic look at a resource kopf saw no change of; it reads the
        endpoint from the shared ListEndpoints snapshot where that shows no change."""
        token = _ACTING.set(None)
        try:
            return self._reconcile_pass(resource, attempt, resync=resync)
        finally:
            _ACTING.reset(token)

    def _reconcile_pass(self, resource: Resource, attempt: int, *, resync: bool) -> Outcome:
        outcome = Outcome()
        try:
            spec = parse_spec(resource.spec)
        except SpecError as exc:
            return self._finish(resource, outcome, conditions.blocked("InvalidSpec", str(exc)))
        try:
            plan = self._reconcile(resource, spec, outcome, resync=resync)
        except PackagingPending as pending:
            outcome.requeue_after = self.packaging_look(attempt)
            outcome.waiting_on = pending.job
            return self._finish(resource, outcome, conditions.packaging(pending.message))
        except TerminalError as exc:
            if not _already_blocked(resource, exc.reason, exc.message):
                outcome.events.append(Event("Warning", exc.reason, exc.message))
            return self._finish(resource, outcome, conditions.blocked(exc.reason, exc.message))
        except RetryableError as exc:
            outcome.requeue_after = self.backoff(attempt)
            outcome.transient_error = True
            if not _already_reported(resource, conditions.PROGRESSING, exc.reason):
                outcome.events.append(Event("Warning", exc.reason, exc.message))
            return self._finish(resource, outcome, conditions.retrying(exc.reason, exc.message))
        except Exception as exc:  # the status must tell, whatever went wrong
            return self._finish(
                resource, outcome, self._internal_error(resource, exc, outcome, attempt)
            )
        verdict = conditions.verdict_for(plan.state, plan.reason, plan.message)
        if not plan.settled:
            outcome.requeue_after = self.next_look(plan, attempt)
        outcome.wake_after = self.schedule_wake(spec)
        return self._finish(resource, outcome, verdict)

    def schedule_wake(self, spec: DeploymentSpec) -> float | None:
        """When spec.schedule next suspends or resumes, if before the next resync would look:
        the pass at that boundary acts on it (schedule.py), not up to a resync interval later."""
        if spec.suspend:
            return None  # suspend wins over the schedule: no boundary changes anything
        seconds = schedule.seconds_until_transition(spec.schedule, self._now())
        if seconds is None or seconds >= self.settings.resync_seconds:
            return None
        return round(seconds + BOUNDARY_MARGIN_SECONDS, 2)

    def _reconcile(
        self, resource: Resource, spec: DeploymentSpec, outcome: Outcome, *, resync: bool
    ) -> Plan:
        owner, status = resource.owner, resource.status
        # The admin policy, before anything is fetched (MLflow credentials included) or created.
        self._policy.enforce(owner.namespace, spec, self.settings)
        self._act_as(owner, status, outcome)
        identity = self._identity(owner, spec, status)
        # Before anything is packaged or created, and before status records the new identity:
        # the recorded endpoint stays the one this resource reports and finally deletes.
        changed = plan_identity(status.get("endpointName"), status.get("region"), identity)
        if changed is not None:
            return changed
        name, region = identity.name, identity.region
        role = spec.endpoint.execution_role_arn or self.settings.execution_role_arn
        if role is None:
            raise TerminalError(
                "NoExecutionRole",
                "set spec.endpoint.executionRoleArn or QA_OPERATOR_EXECUTION_ROLE_ARN",
            )
        sagemaker = self._sagemaker(region)
        outcome.status.update(
            region=region, endpointName=name, invocationUrl=invocation_url(region, name)
        )
        spec = self._with_source_version(spec, region)
        spec = self._read_as_acting_role(spec)
        artifacts = self._artifacts(resource, spec, region, outcome)
        desired = desired_state(spec, owner, artifacts, execution_role_arn=role)
        outcome.status.update(modelName=desired.model.name, endpointConfigName=desired.config.name)
        outcome.status.update(async_status(spec.endpoint, status))

        endpoint = sagemaker.observe_endpoint(name, owner, changing=not resync)
        endpoint = self._adopt(spec, owner, name, endpoint, sagemaker, outcome)
        needs_prerequisites = endpoint is None or endpoint.config_name != desired.config.name
        observed = self._observe(desired, endpoint, owner, sagemaker, needs_prerequisites)
        history = _history(resource, spec, self.settings)
        plan = plan_reconcile(desired, observed, history)
        plan = self._deadline(resource, spec, desired, endpoint, plan, outcome)
        plan = self._suspension(resource, spec, desired, endpoint, plan, outcome)
        self._preflight(resource, spec, desired, plan, region, outcome)
        if Action.SMOKE_TEST in plan.actions and endpoint is not None:
            plan = self._smoke_test(resource, spec, desired, endpoint, history, region, outcome)
        plan = self._scale_in_place(plan, spec, endpoint, region, outcome)
        self._sync_autoscaling(plan, spec, name, region, status, outcome)
        if plan.failure_generation is not None:
            # Recorded before acting: a failed roll back must not make the config look untried.
            outcome.status["lastFailure"] = {
                "config": desired.config.name,
                "generation": plan.failure_generation,
                "reason": plan.failure_reason
                or (endpoint.failure_reason if endpoint else None)
                or plan.message,
                "cause": plan.failure_cause,
            }
            outcome.events.append(Event("Warning", plan.reason, plan.message))
        self._act(plan, resource, desired, history, sagemaker, region, outcome)
        if Action.SYNC_TAGS in plan.actions and endpoint is not None:
            self._sync_tags(desired, endpoint, history, sagemaker, outcome)
        outcome.status["appliedTags"] = list(applied_tags(plan, spec.endpoint.tags, history))
        if any(
            a in plan.actions
            for a in (Action.CREATE_ENDPOINT, Action.UPDATE_ENDPOINT, Action.ROLL_BACK)
        ):
            endpoint = sagemaker.describe_endpoint(name, owner) or endpoint
        self._record_endpoint(endpoint, outcome)
        if plan.state is State.READY:
            outcome.status["lastKnownGood"] = {
                "config": desired.config.name,
                "model": desired.model.name,
                "generation": resource.generation,
            }
        return plan

    def _act_as(self, owner: Owner, status: Mapping[str, Any], outcome: Outcome) -> None:
        """The AWS identity of the rest of the pass (aws_identity.py), recorded before any call."""
        identity = aws_identity.identity_to_act_as(
            owner.namespace,
            self._policy.identity_rules(),
            AwsIdentity.from_status(status.get("awsIdentity")),
        )
        outcome.status["awsIdentity"] = identity.to_status()
        _ACTING.set(Acting(owner.namespace, identity))

    @staticmethod
    def _read_as_acting_role(spec: DeploymentSpec) -> DeploymentSpec:
        """An S3 source is read as the pass's role: the packager's cache, shared by source key,
        must not hand one role's read to a resource of another (aws_identity.py)."""
        acting = _ACTING.get()
        if (
            acting is None
            or acting.identity.role_arn is None
            or not isinstance(spec.source, S3Source)
        ):
            return spec
        return dataclasses.replace(spec, source_reader=acting.identity.role_arn)

    def _with_source_version(self, spec: DeploymentSpec, region: str) -> DeploymentSpec:
        """spec.model.refresh OnResync: the source key holds what the source holds now
        (freshness.py), so new weights under the same S3 prefix, or a moved HuggingFace branch,
        are packaged and rolled out."""
        lookup = freshness.lookup(spec.refresh, spec.source)
        if lookup == "s3" and isinstance(spec.source, S3Source):
            listing = SourceVersions(self._aws("s3", region)).s3_listing(spec.source.uri)
            return dataclasses.replace(spec, source_version=freshness.s3_version(listing))
        if lookup == "huggingface" and isinstance(spec.source, HuggingFaceSource):
            commit = self._packager.hub_commit(spec.source)
            return dataclasses.replace(spec, source_version=freshness.huggingface_version(commit))
        return spec

    def _adopt(
        self,
        spec: DeploymentSpec,
        owner: Owner,
        name: str,
        endpoint: ObservedEndpoint | None,
        sagemaker: SageMakerGateway,
        outcome: Outcome,
    ) -> ObservedEndpoint | None:
        """spec.adoption (adoption.py): an endpoint made outside becomes ours by its tags."""
        step = adoption.plan_adoption(spec.adoption, endpoint, name, owner, self._now())
        if step.missing is not None:
            raise TerminalError("NothingToAdopt", step.missing)
        if step.tags_to_set and step.endpoint is not None:
            sagemaker.set_tags(step.endpoint.arn, step.tags_to_set)
            outcome.status["adopted"] = dict(step.record or {})
            outcome.events.append(
                Event(
                    "Normal",
                    "AdoptedEndpoint",
                    f"adopted endpoint {name} (its config {step.endpoint.config_name} is left "
                    "as found); it is now reconciled to the spec",
                )
            )
        return step.endpoint

    def _deadline(
        self,
        resource: Resource,
        spec: DeploymentSpec,
        desired: DesiredState,
        endpoint: ObservedEndpoint | None,
        plan: Plan,
        outcome: Outcome,
    ) -> Plan:
        """Past the create/update deadline, the plan becomes the timeout's (deadlines.py)."""
        if self._suspended_by(spec):
            return plan  # nothing is created or updated while suspended: nothing to time
        check = deadlines.check_deadline(
            plan,
            endpoint,
            desired.config.name,
            resource.generation,
            deadlines.Clock.from_status(resource.status.get("deadline")),
            spec.endpoint.timeouts,
            (self.settings.create_timeout_seconds, self.settings.update_timeout_seconds),
            self._now(),
        )
        if check.clock is not None or resource.status.get("deadline"):
            outcome.status["deadline"] = check.clock.to_status() if check.clock else None
        if check.timed_out_now:
            outcome.events.append(Event("Warning", check.plan.reason, check.plan.message))
        return check.plan

    def _suspension(
        self,
        resource: Resource,
        spec: DeploymentSpec,
        desired: DesiredState,
        endpoint: ObservedEndpoint | None,
        plan: Plan,
        outcome: Outcome,
    ) -> Plan:
        """spec.suspend (or spec.schedule outside its awake windows) replaces the plan
        (suspend.py); status.suspension times the resume."""
        by = self._suspended_by(spec)
        if by is not None:
            plan = suspend.plan_suspended(plan, endpoint, desired, by_schedule=by == "schedule")
            # A resumed endpoint is a new one: its smoke test is asked again before Ready.
            if resource.status.get("smokeTest"):
                outcome.status["smokeTest"] = None
        previous = suspend.Suspension.from_status(resource.status.get("suspension"))
        step = suspend.next_record(previous, by is not None, plan.state, self._now())
        if step.record != previous:
            outcome.status["suspension"] = step.record.to_status()
        if step.resumed_now:
            outcome.events.append(
                Event(
                    "Normal",
                    "Resumed",
                    f"endpoint {desired.endpoint.name} Ready again {step.record.resume_seconds:g}s "
                    "after it was resumed",
                )
            )
        return plan

    def _suspended_by(self, spec: DeploymentSpec) -> str | None:
        if spec.suspend:
            return "suspend"
        if schedule.asleep(spec.schedule, self._now()):
            return "schedule"
        return None

    def _preflight(
        self,
        resource: Resource,
        spec: DeploymentSpec,
        desired: DesiredState,
        plan: Plan,
        region: str,
        outcome: Outcome,
    ) -> None:
        """Before the plan's first Create or Update call: raises PreflightFailed (terminal, so
        nothing is created) when a check fails. Once per generation and config."""
        if not self.settings.preflight or not any(a in PREFLIGHT_GUARDS for a in plan.actions):
            return
        record = preflight.Record.from_status(resource.status.get("preflight"))
        if record is None or not record.covers(resource.generation, desired.config.name):
            compute = spec.endpoint.compute
            facts = PreflightGateway(lambda service: self._aws(service, region)).facts(
                role_arn=desired.model.execution_role_arn,
                image_uri=desired.model.image_uri,
                package_url=desired.model.model_data_url,
                instance_type=getattr(compute, "instance_type", None),
                instance_count=getattr(compute, "instance_count", 1),
            )
            record = preflight.Record(
                resource.generation, desired.config.name, preflight.judge(facts)
            )
            outcome.status["preflight"] = record.to_status()
        if (failed := record.failure) is not None:
            raise TerminalError("PreflightFailed", preflight.failure_message(failed))

    def _smoke_test(
        self,
        resource: Resource,
        spec: DeploymentSpec,
        desired: DesiredState,
        endpoint: ObservedEndpoint,
        history: History,
        region: str,
        outcome: Outcome,
    ) -> Plan:
        """Ask the endpoint the smoke question; the answer decides what the pass does next."""
        test = spec.smoke_test
        runtime = SageMakerRuntimeGateway(self._aws("sagemaker-runtime", region))
        result = smoke.judge(test, runtime.invoke(endpoint.name, smoke.request_body(test)))
        record = smoke.next_record(
            smoke.SmokeRecord.from_status(resource.status.get("smokeTest")),
            desired.config.name,
            smoke.smoke_key(test),
            resource.generation,
            result,
        )
        outcome.status["smokeTest"] = record.to_status()
        if record.passed:
            outcome.events.append(Event("Normal", "SmokeTestPassed", record.message))
        return smoke.plan_after_smoke(
            desired, endpoint, history, record, self.settings.smoke_test_attempts
        )

    def _scale_in_place(
        self,
        plan: Plan,
        spec: DeploymentSpec,
        endpoint: ObservedEndpoint | None,
        region: str,
        outcome: Outcome,
    ) -> Plan:
        """A count that differs from the spec on an endpoint Ready on the desired config is set
        in place (capacity.py): no new Model or EndpointConfig."""
        counts = endpoint.variant_counts if endpoint is not None else None
        change = capacity.capacity_change(
            spec.endpoint.compute, counts, autoscaled=spec.endpoint.autoscaling is not None
        )
        scaled = capacity.plan_scaling(plan, change, endpoint.name if endpoint else "")
        if scaled is not plan and endpoint is not None and change is not None:
            with self._sagemaker(region).writing_endpoint(endpoint.name):
                CapacityGateway(self._aws("sagemaker", region)).apply(endpoint.name, change)
            outcome.events.append(Event("Normal", "ScalingEndpoint", scaled.message))
        else:
            change = None
        outcome.status.update(capacity.desired_instance_count(counts, change))
        return scaled

    def _sync_autoscaling(
        self,
        plan: Plan,
        spec: DeploymentSpec,
        name: str,
        region: str,
        status: Mapping[str, Any],
        outcome: Outcome,
    ) -> None:
        """Application Auto Scaling as the spec wants it (autoscaling.py), on an endpoint that
        serves the desired config: registered, its policy put, drift repaired, or deregistered."""
        desired = autoscaling.desired_scaling(name, spec.endpoint.autoscaling)
        recorded = bool(status.get("autoscaling"))
        if (desired is None and not recorded) or plan.state not in (
            State.READY,
            State.SERVING_BUSY,
        ):
            return
        gateway = AutoscalingGateway(self._aws("application-autoscaling", region))
        observed = gateway.observe(autoscaling.resource_id(name))
        for action in autoscaling.plan_scaling_sync(desired, observed, recorded=recorded):
            if action is autoscaling.ScalingAction.REGISTER and desired is not None:
                gateway.register(desired)
            elif action is autoscaling.ScalingAction.PUT_POLICY and desired is not None:
                gateway.put_policy(desired)
            elif action is autoscaling.ScalingAction.DEREGISTER:
                gateway.deregister(autoscaling.resource_id(name))
            outcome.events.append(
                Event("Normal", action.value, f"{action.value} for endpoint {name}")
            )
        outcome.status.update(autoscaling.scaling_status(desired, recorded))

    def _delete_endpoint(
        self, name: str, region: str, status: Mapping[str, Any], sagemaker: SageMakerGateway
    ) -> None:
        """Its autoscaling first: a scalable target must not outlive the variant it scales (on
        delete, suspend and a create deadline's clean-up alike)."""
        if status.get("autoscaling"):
            gateway = AutoscalingGateway(self._aws("application-autoscaling", region))
            gateway.deregister(autoscaling.resource_id(name))
        sagemaker.delete_endpoint(name)

    def _identity(self, owner: Owner, spec: DeploymentSpec, status: Mapping[str, Any]) -> Identity:
        """The endpoint the spec asks for. Without a region in the spec, the recorded one wins
        over the operator's default, so changing that default never moves an endpoint."""
        region = spec.endpoint.region or status.get("region") or self.settings.default_region
        return Identity(endpoint_name(owner, spec), str(region))

    @staticmethod
    def _observe(
        desired: DesiredState,
        endpoint: ObservedEndpoint | None,
        owner: Owner,
        sagemaker: SageMakerGateway,
        needs_prerequisites: bool,
    ) -> Observed:
        """The endpoint, and (only when a create or update would need them) whether the desired
        Model and EndpointConfig exist, and whether they are ours."""
        if not needs_prerequisites:
            return Observed(endpoint=endpoint)
        model_arn = sagemaker.model_arn(desired.model.name)
        config_arn = sagemaker.endpoint_config_arn(desired.config.name)

        def foreign(arn: str | None) -> bool:
            return arn is not None and not is_owned_by(sagemaker.tags(arn), owner)

        return Observed(
            endpoint=endpoint,
            model_exists=model_arn is not None,
            config_exists=config_arn is not None,
            model_foreign=foreign(model_arn),
            config_foreign=foreign(config_arn),
        )

    def _artifacts(
        self, resource: Resource, spec: DeploymentSpec, region: str, outcome: Outcome
    ) -> Artifacts:
        status = resource.status
        key = self._packager.key(spec)
        recorded_package = status.get("modelPackage") or {}
        recorded_image = status.get("image") or {}
        needs_bucket = spec.image.mode == "s3"
        bucket = self.settings.bucket
        if needs_bucket and bucket is None:
            raise TerminalError(
                "NoBucket", "image.mode s3 needs an S3 bucket: set QA_OPERATOR_BUCKET"
            )
        if recorded_package.get("sourceKey") == key and recorded_image.get("key") == (
            self._images.cache_key(spec.image, recorded_package.get("digest", ""))
        ):
            outcome.status["modelPackage"] = dict(recorded_package)
            outcome.status["image"] = dict(recorded_image)
            return Artifacts(
                package_digest=recorded_package["digest"],
                image_uri=recorded_image["uri"],
                model_data_url=recorded_package.get("uri") if needs_bucket else None,
            )

        prepared = self._packaging.ready(spec, region)
        if prepared is None:
            raise PackagingPending(
                f"packaging {describe_source(spec)}", self._packaging.job_of(spec)
            )
        model_data_url: str | None = None
        if needs_bucket:
            assert bucket is not None
            package = shared_package(bucket, self.settings.bucket_prefix, prepared.digest)
            if self._shared_packages(region).acquire(
                package, resource.owner, prepared.archive, prepared.digest
            ):
                outcome.status["supersededDeletedFor"] = None
                outcome.events.append(Event("Normal", "UploadedPackage", f"uploaded {package.uri}"))
            model_data_url = package.uri
        image = self._images.resolve(
            spec.image, region, prepared.package_dir, prepared.digest, owner=resource.owner.uid
        )
        outcome.status["modelPackage"] = {
            "uri": model_data_url,
            "digest": prepared.digest,
            "sourceKey": key,
            **({"sourceVersion": spec.source_version} if spec.source_version else {}),
        }
        outcome.status["image"] = {
            "uri": image.uri,
            "digest": image.digest,
            "key": self._images.cache_key(spec.image, prepared.digest),
            "repository": image.repository,
            "tag": image.tag,
            "pushed": image.pushed,
        }
        # What the new artifacts replace is deleted once the endpoint serves them (or with the
        # resource): remembered here, as the next status write forgets the old records.
        old_uri = recorded_package.get("uri")
        if old_uri and old_uri != model_data_url:
            outcome.status["supersededPackages"] = sorted(
                {*(status.get("supersededPackages") or ()), old_uri}
            )
        if old_image := superseded_image(recorded_image, outcome.status["image"]):
            outcome.status["supersededImages"] = [
                *(status.get("supersededImages") or ()),
                {**recorded_image, "repository": old_image.repository},
            ]
        return Artifacts(prepared.digest, image.uri, model_data_url)

    def _act(
        self,
        plan: Plan,
        resource: Resource,
        desired: DesiredState,
        history: History,
        sagemaker: SageMakerGateway,
        region: str,
        outcome: Outcome,
    ) -> None:
        owner, generation = resource.owner, resource.generation

        def note(reason: str, message: str) -> None:
            outcome.events.append(Event("Normal", reason, message))

        for action in plan.actions:
            if action in (Action.CREATE_MODEL, Action.CREATE_ENDPOINT_CONFIG):
                outcome.status["supersededDeletedFor"] = None
            if action is Action.CREATE_MODEL:
                sagemaker.create_model(desired.model, owner)
                note("CreatedModel", f"created SageMaker model {desired.model.name}")
            elif action is Action.CREATE_ENDPOINT_CONFIG:
                sagemaker.create_endpoint_config(desired.config, owner)
                note("CreatedEndpointConfig", f"created endpoint config {desired.config.name}")
            elif action is Action.CREATE_ENDPOINT:
                outcome.status["lastAttempt"] = _attempt(desired, generation)
                sagemaker.create_endpoint(desired.endpoint, owner)
                note("CreatingEndpoint", plan.message)
            elif action is Action.UPDATE_ENDPOINT:
                outcome.status["lastAttempt"] = _attempt(desired, generation)
                sagemaker.update_endpoint(
                    desired.endpoint.name, desired.config.name, **desired.endpoint.update_options
                )
                note("UpdatingEndpoint", plan.message)
            elif action is Action.ROLL_BACK and history.last_known_good is not None:
                sagemaker.update_endpoint(desired.endpoint.name, history.last_known_good)
                note(
                    "RollingBack",
                    f"updating endpoint {desired.endpoint.name} back to config "
                    f"{history.last_known_good}",
                )
            elif action is Action.DELETE_ENDPOINT:
                self._delete_endpoint(desired.endpoint.name, region, resource.status, sagemaker)
                note("DeletingEndpoint", plan.message)
            elif action is Action.DELETE_SUPERSEDED:
                status = {**resource.status, **outcome.status}  # with this pass's records
                self._delete_superseded(status, desired, owner, sagemaker, region, outcome)
                outcome.status["supersededDeletedFor"] = desired.config.name

    def _sync_tags(
        self,
        desired: DesiredState,
        endpoint: ObservedEndpoint,
        history: History,
        sagemaker: SageMakerGateway,
        outcome: Outcome,
    ) -> None:
        to_set, to_remove = tag_delta(desired, endpoint, history)
        # The endpoint's delta goes to the model and config it serves as well: they were
        # created with the same tags, and tags alone never replace them.
        serving = (
            sagemaker.endpoint_config_arn(desired.config.name),
            sagemaker.model_arn(desired.model.name),
        )
        for arn in (endpoint.arn, *filter(None, serving)):
            sagemaker.set_tags(arn, to_set)
            sagemaker.remove_tags(arn, to_remove)
        outcome.events.append(
            Event(
                "Normal",
                "UpdatedTags",
                f"tags set {sorted(to_set)}, removed {to_remove} on the endpoint, its config "
                "and model",
            )
        )

    def _delete_superseded(
        self,
        status: Mapping[str, Any],
        desired: DesiredState,
        owner: Owner,
        sagemaker: SageMakerGateway,
        region: str,
        outcome: Outcome,
    ) -> None:
        stem = name_stem(desired.endpoint.name)
        configs = [
            c for c in sagemaker.owned_endpoint_configs(stem, owner) if c != desired.config.name
        ]
        models = [m for m in sagemaker.owned_models(stem, owner) if m != desired.model.name]
        for config in configs:
            sagemaker.delete_endpoint_config(config)
        for model in models:
            sagemaker.delete_model(model)
        packages, _ = self._delete_packages(
            owner, region, status, keep=outcome.status["modelPackage"].get("uri")
        )
        images = self._delete_images(region, status, finalizing=False)
        outcome.status.update(supersededPackages=None, supersededImages=None)
        if configs or models or packages or images:
            outcome.events.append(
                Event(
                    "Normal",
                    "DeletedSuperseded",
                    f"deleted superseded endpoint configs {configs or '[]'}, models "
                    f"{models or '[]'}, {packages} package object(s) and images "
                    f"{images or '[]'}",
                )
            )

    def _delete_packages(
        self, owner: Owner, region: str, status: Mapping[str, Any], keep: str | None
    ) -> tuple[int, int]:
        """Drop this owner's references to the shared packages it recorded but `keep`, and delete
        its own package objects (per-owner keys of earlier versions), wherever the current
        settings or the recorded URIs put them; with no `keep` (finalizing), abort its unfinished
        multipart uploads too. Returns how many objects were deleted and uploads aborted."""
        recorded = [
            (status.get("modelPackage") or {}).get("uri"),
            *(status.get("supersededPackages") or ()),
        ]
        # Shared packages lose this owner's reference (and go with the last one); the
        # per-owner keys of earlier versions, and the owner's prefix, are deleted as before.
        released = sum(
            self._shared_packages(region).release(package, owner)
            for package in to_release(recorded, keep)
        )
        _, own_keys = split_recorded(recorded)
        bucket = self.settings.bucket
        current = (bucket, owner_prefix(self.settings.bucket_prefix, owner)) if bucket else None
        places = package_prefixes(current, own_keys, f"{owner.name}-{owner.uid}")
        if not places and not any(own_keys):
            return released, 0
        store = PackageStore(self._aws("s3", region))
        listed = [(b, key) for b, prefix in places for key in store.keys(b, prefix)]
        doomed = packages_to_delete(listed, own_keys, keep)
        for doomed_bucket in sorted({b for b, _ in doomed}):
            store.delete(doomed_bucket, [key for b, key in doomed if b == doomed_bucket])
        aborted = 0
        if keep is None:
            aborted = sum(store.abort_uploads(b, prefix) for b, prefix in places)
        return released + len(doomed), aborted

    def _shared_packages(self, region: str) -> SharedPackageStore:
        return SharedPackageStore(PackageStore(self._aws("s3", region)), self._package_refs)

    def _delete_images(
        self, region: str, status: Mapping[str, Any], *, finalizing: bool
    ) -> list[str]:
        doomed = images_to_delete(
            status.get("supersededImages") or (), status.get("image") or {}, finalizing=finalizing
        )
        return [
            f"{image.repository}@{image.digest}"
            for image in doomed
            if self._images.delete(region, image.repository, image.digest)
        ]

    def _record_endpoint(self, endpoint: ObservedEndpoint | None, outcome: Outcome) -> None:
        if endpoint is None or not endpoint.owned:
            outcome.status.update(endpointArn=None, endpointStatus=None, failureReason=None)
            return
        outcome.status.update(
            endpointArn=endpoint.arn,
            endpointStatus=endpoint.status,
            failureReason=endpoint.failure_reason,
        )

    # -- delete ------------------------------------------------------------------------------

    def finalize(self, resource: Resource, attempt: int = 0) -> Outcome:
        """One pass of deletion; `done` tells the finalizer it may let go."""
        outcome = Outcome()
        policy = resource.spec.get("deletionPolicy", "Delete")
        if policy == "Retain":
            outcome.events.append(
                Event(
                    "Normal",
                    "Retained",
                    f"deletionPolicy Retain: endpoint {resource.status.get('endpointName')} "
                    "and its configs, models and packages are left in AWS",
                )
            )
            return outcome
        step = ["looking up the endpoint to delete"]  # what the pass was doing, for errors
        token = _ACTING.set(None)
        try:
            return self._finalize(resource, outcome, attempt, step)
        except OperatorError as exc:
            outcome.done = False
            outcome.transient_error = True
            outcome.requeue_after = self.backoff(attempt)
            message = f"{step[-1]}: {exc.message}"
            if not _already_reported(resource, conditions.PROGRESSING, exc.reason):
                outcome.events.append(Event("Warning", exc.reason, message))
            verdict = conditions.retrying(exc.reason, message, phase=DELETING_PHASE)
            return self._finish(resource, outcome, verdict)
        except Exception as exc:  # the status must tell, whatever went wrong
            outcome.done = False
            verdict = self._internal_error(resource, exc, outcome, attempt, phase=DELETING_PHASE)
            return self._finish(resource, outcome, verdict)
        finally:
            _ACTING.reset(token)

    def _finalize(
        self, resource: Resource, outcome: Outcome, attempt: int, step: list[str]
    ) -> Outcome:
        owner, status = resource.owner, resource.status
        recorded = AwsIdentity.from_status(status.get("awsIdentity"))
        made_anything = bool(status.get("endpointName") or status.get("modelPackage"))
        identity = aws_identity.identity_to_delete_as(
            owner.namespace,
            self._policy.identity_rules() if recorded is None and not made_anything else None,
            recorded,
            made_anything,
        )
        if identity is None:
            return outcome  # no identity could have made anything
        _ACTING.set(Acting(owner.namespace, identity))
        # The recorded endpoint, not the one the spec would name now: a reconcile pass never
        # records another identity (plan_identity), so this is the one that was created.
        name = status.get("endpointName")
        region = status.get("region")
        if name is None or region is None:
            try:
                spec = parse_spec(resource.spec)
            except SpecError:
                return outcome  # never valid, so nothing was ever created
            name = name or endpoint_name(owner, spec)
            region = region or spec.endpoint.region or self.settings.default_region
        sagemaker = self._sagemaker(region)
        plan = plan_delete(sagemaker.describe_endpoint(name, owner))
        step.append(plan.message)
        if Action.DELETE_ENDPOINT in plan.actions:
            self._delete_endpoint(name, region, status, sagemaker)
            outcome.events.append(Event("Normal", "DeletingEndpoint", plan.message))
        if plan.state is State.DELETING:
            outcome.done = False
            outcome.requeue_after = self.next_look(plan, attempt)
            return self._finish(
                resource, outcome, conditions.verdict_for(plan.state, plan.reason, plan.message)
            )
        step.append(f"deleting the endpoint configs, models and packages of {name}")
        configs = sagemaker.owned_endpoint_configs(name_stem(name), owner)
        models = sagemaker.owned_models(name_stem(name), owner)
        for config in configs:
            sagemaker.delete_endpoint_config(config)
        for model in models:
            sagemaker.delete_model(model)
        packages, uploads = self._delete_packages(owner, region, status, keep=None)
        images = self._delete_images(region, status, finalizing=True)
        outcome.events.append(
            Event(
                "Normal",
                "Deleted",
                f"deleted endpoint {name}, {len(configs)} endpoint config(s), "
                f"{len(models)} model(s), {packages} package object(s) and "
                f"{len(images)} image(s)"
                + (f"; aborted {uploads} unfinished upload(s)" if uploads else ""),
            )
        )
        return outcome

    # -- reporting ---------------------------------------------------------------------------

    def _internal_error(
        self,
        resource: Resource,
        exc: Exception,
        outcome: Outcome,
        attempt: int,
        phase: str = "",
    ) -> Verdict:
        """A bug or an unclassified failure: logged with its traceback, reported, retried with a
        growing delay (never a hot loop), one Warning event per streak."""
        log.error("unexpected error reconciling %s", resource.owner, exc_info=exc)
        outcome.requeue_after = self.backoff(attempt)
        outcome.transient_error = True
        verdict = conditions.internal_error(exc, outcome.requeue_after, phase)
        if not _already_reported(resource, conditions.DEGRADED, INTERNAL_ERROR):
            outcome.events.append(Event("Warning", INTERNAL_ERROR, verdict.conditions[-1].message))
        return verdict

    def _finish(self, resource: Resource, outcome: Outcome, verdict: Verdict) -> Outcome:
        now = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        outcome.status["conditions"] = conditions.merge_conditions(
            resource.status.get("conditions"),
            verdict.conditions,
            generation=resource.generation,
            now=now,
        )
        outcome.status["observedGeneration"] = resource.generation
        if verdict.phase:
            outcome.status["phase"] = verdict.phase
        outcome.message = "; ".join(f"{c.type}={c.status} ({c.reason})" for c in verdict.conditions)
        return outcome


def _already_reported(resource: Resource, kind: str, reason: str) -> bool:
    """The status already reports this trouble: one Warning event per streak."""
    return any(
        c.get("type") == kind and c.get("status") == "True" and c.get("reason") == reason
        for c in resource.status.get("conditions") or ()
    )


def _already_blocked(resource: Resource, reason: str, message: str) -> bool:
    """This generation is already reported blocked for the same cause: resyncs stay quiet, and a
    new spec that fails again posts again."""
    if resource.status.get("observedGeneration") != resource.generation:
        return False
    return any(
        c.get("type") == conditions.DEGRADED
        and c.get("status") == "True"
        and (c.get("reason"), c.get("message")) == (reason, message)
        for c in resource.status.get("conditions") or ()
    )


def _attempt(desired: DesiredState, generation: int) -> dict[str, Any]:
    return {"config": desired.config.name, "generation": generation}


def _history(resource: Resource, spec: DeploymentSpec, settings: OperatorSettings) -> History:
    attempt = resource.status.get("lastAttempt") or {}
    failure = resource.status.get("lastFailure") or {}
    smoke_test = spec.smoke_test
    required = smoke_test.enabled if smoke_test.enabled is not None else settings.smoke_test_default
    latest = smoke.SmokeRecord.from_status(resource.status.get("smokeTest"))
    return History(
        generation=resource.generation,
        attempted_config=attempt.get("config"),
        attempted_generation=attempt.get("generation"),
        failed_config=failure.get("config"),
        failed_generation=failure.get("generation"),
        applied_tags=tuple(resource.status.get("appliedTags") or ()),
        superseded_deleted_for=resource.status.get("supersededDeletedFor"),
        failure_cause=failure.get("cause"),
        failure_reason=failure.get("reason"),
        smoke_required=required,
        verified_config=smoke.verified_config(latest, smoke_test),
        last_known_good=(resource.status.get("lastKnownGood") or {}).get("config"),
    )
