"""The admin policy: what a QAModelDeployment may reach beyond its own things.

Whoever may create a QAModelDeployment acts with the operator's AWS identity and secrets. The
policy says which S3 prefixes a source may read, which MLflow tracking servers (schemes, hosts)
the operator talks to on a resource's behalf (and sends its MLflow credentials to), which ECR
repositories it may publish to, which execution roles it may pass, and which environment keys the
serving container may be given. Deny by default: with no policy file, only the operator's own
things are allowed (its bucket, its tracking server, its repository and `qa-operator/<namespace>/*`,
its execution role) and a list of environment keys that steer the interpreter, the loader, the
serving stack or AWS access is denied.

Naming the operator's own default (`QA_OPERATOR_EXECUTION_ROLE_ARN`, `QA_OPERATOR_IMAGE_REPOSITORY`,
`MLFLOW_TRACKING_URI`) is the same as leaving the field unset: always allowed. Link-local and
metadata addresses (169.254.0.0/16, fe80::/10, AWS's fd00:ec2::/32, also embedded in IPv6 forms) and
the environment keys in ALWAYS_DENIED_ENV are denied whatever the policy says, so the CRD rejects
them at admission too. Host names are compared as written, never resolved: a name is allowed only
when the policy lists it (a wildcard trusts the whole DNS zone it names).

`parse_policy` and `check` are pure; `PolicyFile` reads the file named by QA_OPERATOR_POLICY_FILE
at every pass (parsing it again only when its content changed) and is the reconciler's one step.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import yaml

from qa_operator.aws_identity import ROLE_ARN, IdentityRules
from qa_operator.errors import TerminalError
from qa_operator.settings import OperatorSettings
from qa_operator.spec import DeploymentSpec, MlflowSource, S3Source

POLICY_DENIED = "PolicyDenied"
POLICY_INVALID = "PolicyInvalid"

# Keys that load code into every process of the serving container (the dynamic loader, the
# interpreter's import path and start-up files, glibc's iconv modules). No policy can allow them;
# the CRD rejects them at admission (keep its rule on spec.endpoint.environment in step).
ALWAYS_DENIED_ENV = (
    "LD_*",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "GCONV_PATH",
)
# Denied unless the policy's environment.allow names them (or environment.deny replaces this).
DEFAULT_DENIED_ENV = (
    *ALWAYS_DENIED_ENV,
    "PYTHON*",  # PYTHONWARNINGS, PYTHONBREAKPOINT and others import modules
    "GLIBC_TUNABLES",
    "OPENSSL_CONF",
    "PATH",
    "MLFLOW_*",  # the serving stack's own configuration
    "GUNICORN_*",
    "SM_*",  # SageMaker's contract: SM_MODEL_DIR, ...
    "SAGEMAKER_*",
    "QA_OPERATOR_*",
    "HF_*",
    "HUGGINGFACE_*",
    "TRANSFORMERS_*",
    "AWS_*",  # where the container's AWS calls go and with which credentials
    "*_PROXY",  # HTTP_PROXY, HTTPS_PROXY, NO_PROXY, ALL_PROXY
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
DEFAULT_S3_SOURCES = ("s3://{bucket}/",)
DEFAULT_MLFLOW_SCHEMES = ("http", "https")
DEFAULT_IMAGE_REPOSITORIES = ("qa-operator/{namespace}/*",)

# MLflow model URIs resolved through the tracking server (already checked as trackingUri).
_TRACKED_SCHEMES = ("models", "runs")
_BARE_SCHEMES = ("databricks", "databricks-uc", "uc")
_AWS_INSTANCE_V6 = ipaddress.IPv6Network("fd00:ec2::/32")  # IMDS (::254), DNS, NTP
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")
_HOST_PATTERN = re.compile(r"^([a-z0-9_*?.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_ENV_PATTERN = re.compile(r"^[A-Za-z0-9_*?]+$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_UNSAFE_URI = re.compile(r"[\s\\\x00-\x1f\x7f]")
MAX_SHOWN = 200

log = logging.getLogger(__name__)


class PolicyError(ValueError):
    """The policy file cannot be used as written."""


@dataclass(frozen=True)
class Rules:
    """What one namespace may do; patterns may hold {namespace} (and s3Sources {bucket})."""

    s3_sources: tuple[str, ...] = DEFAULT_S3_SOURCES
    mlflow_schemes: tuple[str, ...] = DEFAULT_MLFLOW_SCHEMES
    mlflow_hosts: tuple[str, ...] = ()
    image_repositories: tuple[str, ...] = DEFAULT_IMAGE_REPOSITORIES
    execution_roles: tuple[str, ...] = ()
    environment_deny: tuple[str, ...] = DEFAULT_DENIED_ENV
    environment_allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    rules: Rules = Rules()
    namespaces: Mapping[str, Rules] = field(default_factory=dict)  # merged over `rules`
    source: str = "the built-in defaults"
    identity: IdentityRules = field(default_factory=IdentityRules)  # aws_identity.py

    def for_namespace(self, namespace: str) -> Rules:
        return self.namespaces.get(namespace, self.rules)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Violation:
    field: str  # the spec's JSON path
    value: str  # as written, with any userinfo, query or fragment masked
    rule: str

    def __str__(self) -> str:
        return f"{self.field} {self.value!r}: {self.rule}"


# -- the file ---------------------------------------------------------------------------------

# file key -> (Rules field, the placeholders its patterns may hold)
_LIST_KEYS: dict[str, tuple[str, frozenset[str]]] = {
    "s3Sources": ("s3_sources", frozenset({"namespace", "bucket"})),
    "imageRepositories": ("image_repositories", frozenset({"namespace"})),
    "executionRoles": ("execution_roles", frozenset({"namespace"})),
}
_NESTED_KEYS: dict[str, dict[str, str]] = {
    "mlflow": {"schemes": "mlflow_schemes", "hosts": "mlflow_hosts"},
    "environment": {"deny": "environment_deny", "allow": "environment_allow"},
}


def parse_policy(text: str, source: str = "the policy") -> Policy:
    """The policy from its YAML text. Every list given replaces its default; a section under
    `namespaces` replaces, for that namespace, the lists it gives."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if raw is None:
        return Policy(source=source)
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{source}: must be a mapping of settings")
    top = {key: value for key, value in raw.items() if key != "identity"}
    rules = _parse_rules(top, Rules(), source, allow_namespaces=True)
    identity = _parse_identity(raw.get("identity"), f"{source}: identity")
    namespaces: dict[str, Rules] = {}
    sections = raw.get("namespaces") or {}
    if not isinstance(sections, Mapping):
        raise PolicyError(f"{source}: namespaces must map namespace names to settings")
    for name, section in sections.items():
        where = f"{source}: namespaces.{name}"
        if not isinstance(name, str) or not _NAMESPACE.match(name):
            raise PolicyError(f"{where}: not a namespace name")
        if not isinstance(section, Mapping):
            raise PolicyError(f"{where}: must be a mapping of settings")
        namespaces[name] = _parse_rules(section, rules, where, allow_namespaces=False)
    return Policy(rules=rules, namespaces=namespaces, source=source, identity=identity)


def _parse_identity(raw: Any, where: str) -> IdentityRules:
    """`identity: {roles: {namespace: role ARN}, allowOperatorDefault: true|false}`."""
    if raw is None:
        return IdentityRules()
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: must be a mapping (roles, allowOperatorDefault)")
    unknown = sorted(str(key) for key in raw if key not in ("roles", "allowOperatorDefault"))
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}")
    allow = raw.get("allowOperatorDefault", True)
    if not isinstance(allow, bool):
        raise PolicyError(f"{where}.allowOperatorDefault: must be true or false")
    roles = raw.get("roles") or {}
    if not isinstance(roles, Mapping):
        raise PolicyError(f"{where}.roles: must map namespace names to IAM role ARNs")
    for namespace, role in roles.items():
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise PolicyError(f"{where}.roles: {namespace!r} is not a namespace name")
        if not isinstance(role, str) or not ROLE_ARN.match(role):
            raise PolicyError(
                f"{where}.roles.{namespace}: {role!r} is not an IAM role ARN "
                "(arn:aws:iam::<account>:role/<name>)"
            )
    return IdentityRules(roles=dict(roles), allow_operator_default=allow)


def _parse_rules(
    raw: Mapping[str, Any], base: Rules, where: str, *, allow_namespaces: bool
) -> Rules:
    known = {*_LIST_KEYS, *_NESTED_KEYS} | ({"namespaces"} if allow_namespaces else set())
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {sorted(known)})")
    changes: dict[str, tuple[str, ...]] = {}
    for key, (name, placeholders) in _LIST_KEYS.items():
        if key in raw:
            changes[name] = _patterns(raw[key], f"{where}.{key}", placeholders)
    for key, nested in _NESTED_KEYS.items():
        if key not in raw:
            continue
        section = raw[key]
        if not isinstance(section, Mapping):
            raise PolicyError(f"{where}.{key}: must be a mapping ({', '.join(nested)})")
        extra = sorted(str(k) for k in section if k not in nested)
        if extra:
            raise PolicyError(f"{where}.{key}: unknown key(s) {', '.join(extra)}")
        for sub, name in nested.items():
            if sub in section:
                changes[name] = _patterns(section[sub], f"{where}.{key}.{sub}", frozenset())
    for name, values in changes.items():
        for value in values:
            _check_shape(name, value, where)
    if "mlflow_schemes" in changes:
        changes["mlflow_schemes"] = tuple(s.lower() for s in changes["mlflow_schemes"])
    return replace(base, **changes)


def _patterns(value: Any, where: str, placeholders: frozenset[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: must be a list of non-empty strings")
    for item in value:
        names = set(_PLACEHOLDER.findall(item))
        bare = _PLACEHOLDER.sub("", item)
        if not names <= placeholders or "{" in bare or "}" in bare:
            allowed = ", ".join(f"{{{p}}}" for p in sorted(placeholders)) or "none"
            raise PolicyError(f"{where}: {item!r}: unknown placeholder (allowed: {allowed})")
    return tuple(value)


def _check_shape(name: str, value: str, where: str) -> None:
    sample = value.replace("{namespace}", "ns").replace("{bucket}", "bucket")
    problem = None
    if name == "s3_sources" and not re.match(
        r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", sample
    ):
        problem = "must look like s3://bucket/prefix/"
    elif name == "s3_sources" and _dot_segments(urlsplit(sample).path):
        problem = "must not contain . or .. path segments"
    elif name == "mlflow_schemes" and not _SCHEME.match(value.lower()):
        problem = "must be a URI scheme such as https"
    elif name == "mlflow_hosts" and not _HOST_PATTERN.match(value.lower()):
        problem = "must be a host name or pattern, optionally with :port (no scheme, no path)"
    elif name == "execution_roles" and not sample.startswith("arn:"):
        problem = "must be an IAM role ARN or ARN pattern"
    elif name.startswith("environment_") and not _ENV_PATTERN.match(value):
        problem = "must be an environment variable name or pattern"
    if problem:
        raise PolicyError(f"{where}: {value!r} {problem}")


# -- the check --------------------------------------------------------------------------------


def check(
    policy: Policy, namespace: str, spec: DeploymentSpec, settings: OperatorSettings
) -> list[Violation]:
    """Every field of `spec` that the policy does not allow in `namespace`, in spec order."""
    rules = policy.for_namespace(namespace)
    found: list[Violation | None] = []
    source = spec.source
    if isinstance(source, S3Source):
        found.append(_check_s3(source.uri, "spec.model.s3.uri", rules, namespace, settings))
    elif isinstance(source, MlflowSource):
        own = settings.mlflow_tracking_uri
        if source.tracking_uri is not None and source.tracking_uri != own:
            found.append(
                _check_remote(source.tracking_uri, "spec.model.mlflow.trackingUri", rules, own)
            )
        found.append(_check_model_uri(source.model_uri, rules, namespace, settings))
    found.append(_check_repository(spec.image.repository, rules, namespace, settings))
    found.append(_check_role(spec.endpoint.execution_role_arn, rules, namespace, settings))
    found += [_check_env_key(key, rules) for key in spec.endpoint.environment]
    return [violation for violation in found if violation is not None]


def denial_message(violations: Sequence[Violation], source: str) -> str:
    return f"denied by the operator's policy ({source}): " + "; ".join(map(str, violations))


def _expand(patterns: Sequence[str], namespace: str, bucket: str | None) -> list[str]:
    expanded = []
    for pattern in patterns:
        if "{bucket}" in pattern and bucket is None:
            continue  # no QA_OPERATOR_BUCKET: nothing to allow
        expanded.append(pattern.replace("{namespace}", namespace).replace("{bucket}", bucket or ""))
    return expanded


def _allowed(patterns: Sequence[str]) -> str:
    return f"allowed: {', '.join(patterns)}" if patterns else "none allowed"


def _check_s3(
    uri: str, path: str, rules: Rules, namespace: str, settings: OperatorSettings
) -> Violation | None:
    allowed = _expand(rules.s3_sources, namespace, settings.bucket)
    shown = mask_uri(uri)
    parts = _split(uri)
    if parts is None or _UNSAFE_URI.search(uri) or _dot_segments(parts.path):
        return Violation(path, shown, "not an S3 prefix (no . or .. segments, spaces or '\\')")
    if parts.scheme.lower() != "s3" or not parts.netloc or parts.query or parts.fragment:
        return Violation(path, shown, "not an s3://bucket/prefix/ URI")
    bucket, prefix = parts.netloc, _prefix(parts.path)
    for entry in allowed:
        entry_parts = urlsplit(entry)
        if entry_parts.netloc == bucket and prefix.startswith(_prefix(entry_parts.path)):
            return None
    return Violation(path, shown, f"not under an allowed S3 prefix ({_allowed(allowed)})")


def _check_model_uri(
    uri: str, rules: Rules, namespace: str, settings: OperatorSettings
) -> Violation | None:
    path = "spec.model.mlflow.modelUri"
    parts = _split(uri)
    scheme = parts.scheme.lower() if parts is not None else ""
    if scheme in _TRACKED_SCHEMES and not _UNSAFE_URI.search(uri):
        return None  # resolved through the tracking server, checked above
    if scheme == "s3":
        return _check_s3(uri, path, rules, namespace, settings)
    if scheme == "mlflow-artifacts" and parts is not None and not parts.netloc:
        return None  # proxied by the tracking server
    return _check_remote(uri, path, rules, settings.mlflow_tracking_uri, artifact=True)


def _check_remote(
    uri: str, path: str, rules: Rules, own: str | None, *, artifact: bool = False
) -> Violation | None:
    """A URI the operator fetches from with its MLflow credentials: scheme and host allowed, and
    never a link-local or metadata address."""
    shown = mask_uri(uri)
    if _UNSAFE_URI.search(uri):
        return Violation(path, shown, "malformed URI (spaces, control characters or '\\')")
    parts = _split(uri)
    if parts is None:
        return Violation(path, shown, "malformed URI (host)")
    # MLflow takes a bare path for a local file store, and a few bare words for hosted services.
    scheme = parts.scheme.lower() or (uri if uri in _BARE_SCHEMES else "file")
    try:
        port = parts.port
    except ValueError:
        return Violation(path, shown, "malformed URI (port)")
    host = (parts.hostname or "").rstrip(".")
    if host and _forbidden_address(host):
        return Violation(path, shown, "a link-local or metadata address: always denied")
    schemes = rules.mlflow_schemes
    if scheme == "mlflow-artifacts":
        scheme_ok = bool(set(schemes) & {"http", "https"})
    else:
        scheme_ok = scheme in schemes
    if not scheme_ok:
        if artifact:
            listed = (*_TRACKED_SCHEMES, "mlflow-artifacts", "s3", *schemes)
            return Violation(
                path, shown, f"model URI scheme {scheme!r} not allowed ({_allowed(listed)})"
            )
        return Violation(
            path, shown, f"tracking URI scheme {scheme!r} not allowed ({_allowed(schemes)})"
        )
    if not host:
        if parts.netloc and scheme != "file":
            return Violation(path, shown, "malformed URI (host)")
        return None
    if "%" in host or (":" not in host and not _HOST.match(host)):
        return Violation(path, shown, "malformed URI (host)")
    hosts = list(rules.mlflow_hosts)
    own_host = _origin(own)
    if own_host is not None:
        hosts.append(own_host)
    if any(_host_matches(entry, host, port) for entry in hosts):
        return None
    return Violation(path, shown, f"host {host!r} not allowed ({_allowed(hosts)})")


def _check_repository(
    repository: str | None, rules: Rules, namespace: str, settings: OperatorSettings
) -> Violation | None:
    if repository is None or repository == settings.image_repository:
        return None
    allowed = _expand(rules.image_repositories, namespace, None)
    if settings.image_repository:
        allowed.append(settings.image_repository)
    if any(fnmatchcase(repository, pattern) for pattern in allowed):
        return None
    return Violation(
        "spec.image.repository", repository, f"repository not allowed ({_allowed(allowed)})"
    )


def _check_role(
    role: str | None, rules: Rules, namespace: str, settings: OperatorSettings
) -> Violation | None:
    if role is None or role == settings.execution_role_arn:
        return None
    allowed = _expand(rules.execution_roles, namespace, None)
    if settings.execution_role_arn:
        allowed.append(settings.execution_role_arn)
    if any(fnmatchcase(role, pattern) for pattern in allowed):
        return None
    return Violation(
        "spec.endpoint.executionRoleArn", role, f"role not allowed ({_allowed(allowed)})"
    )


def _check_env_key(key: str, rules: Rules) -> Violation | None:
    """Keys compare without case: `ld_preload` is denied like LD_PRELOAD (some programs read
    lower-case names, e.g. http_proxy)."""
    upper = key.upper()
    path = "spec.endpoint.environment"
    if hit := _first_match(upper, ALWAYS_DENIED_ENV):
        return Violation(path, key, f"key matches {hit}: always denied")
    if (hit := _first_match(upper, rules.environment_deny)) and not _first_match(
        upper, rules.environment_allow
    ):
        return Violation(path, key, f"key matches {hit}, denied by the policy")
    return None


def _first_match(key: str, patterns: Sequence[str]) -> str | None:
    return next((p for p in patterns if fnmatchcase(key, p.upper())), None)


# -- URIs and addresses -----------------------------------------------------------------------


def mask_uri(uri: str) -> str:
    """`uri` fit for status, events and logs: userinfo, query and fragment masked, bounded."""
    text = re.sub(r"(?<=//)[^/?#]*@", "***@", uri)
    text = re.sub(r"[?#].*", "?***", text, flags=re.DOTALL)
    text = _UNSAFE_URI.sub("?", text)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _split(uri: str) -> SplitResult | None:
    try:
        return urlsplit(uri)
    except ValueError:  # an unbalanced or invalid [IPv6] host
        return None


def _prefix(path: str) -> str:
    stripped = path.strip("/")
    return f"{stripped}/" if stripped else ""


def _dot_segments(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def _origin(uri: str | None) -> str | None:
    """`host[:port]` of the operator's own tracking URI (always allowed), if it has a host."""
    if not uri:
        return None
    try:
        parts = urlsplit(uri)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _host_matches(entry: str, host: str, port: int | None) -> bool:
    entry = entry.lower()
    entry_port: int | None = None
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        if rest.startswith(":"):
            entry_port = int(rest[1:])
    else:
        name, sep, maybe_port = entry.rpartition(":")
        if sep and maybe_port.isdigit():
            entry_port = int(maybe_port)
        else:
            name = entry
    if entry_port is not None and entry_port != port:
        return False
    return fnmatchcase(host.lower(), name.rstrip("."))


def _forbidden_address(host: str) -> bool:
    address = _ip(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in _AWS_INSTANCE_V6 or address.is_link_local:
            return True
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            embedded.append(address.teredo[1])
        low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _NAT64 or int(address) >> 32 == 0:  # NAT64, IPv4-compatible (::a.b.c.d)
            embedded.append(low32)
        return any(v4 is not None and v4.is_link_local for v4 in embedded)
    return address.is_link_local


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host.lower().split("%", 1)[0]  # an IPv6 zone
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(text):  # 2852039166, 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


# -- reading the file at every pass -----------------------------------------------------------


class PolicyFile:
    """The policy the file says now. Read at every pass and parsed again only when its content
    changed, so an edited ConfigMap applies at the next pass (a resync at the latest). A file that
    is missing, unreadable or malformed blocks every reconcile pass (`PolicyInvalid`) until it is
    fixed: fail closed, never an older or laxer policy. Without a path: the built-in defaults."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._digest: str | None = None
        self._policy: Policy = DEFAULT_POLICY
        self._error: str | None = None

    def current(self) -> Policy:
        if self.path is None:
            return DEFAULT_POLICY
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._failed(
                None, f"cannot read the policy file {self.path}: {exc.strerror or exc}"
            )
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if digest == self._digest:
                if self._error is not None:
                    raise PolicyError(self._error)
                return self._policy
        try:
            policy = parse_policy(data.decode("utf-8", errors="replace"), str(self.path))
        except PolicyError as exc:
            return self._failed(digest, str(exc))
        with self._lock:
            self._digest, self._policy, self._error = digest, policy, None
        log.info("policy loaded from %s (sha256 %s)", self.path, digest[:12])
        return policy

    def _failed(self, digest: str | None, message: str) -> Policy:
        with self._lock:
            if message != self._error:
                log.error("%s; every reconcile pass is blocked until it is fixed", message)
            self._digest, self._error = digest, message
        raise PolicyError(message)

    def enforce(self, namespace: str, spec: DeploymentSpec, settings: OperatorSettings) -> None:
        """The reconciler's step: raise TerminalError unless the policy allows `spec`."""
        try:
            policy = self.current()
        except PolicyError as exc:
            raise TerminalError(POLICY_INVALID, str(exc)) from exc
        violations = check(policy, namespace, spec, settings)
        if violations:
            raise TerminalError(POLICY_DENIED, denial_message(violations, policy.source))

    def identity_rules(self) -> IdentityRules:
        """The policy's identity section (aws_identity.py); TerminalError while it is invalid."""
        try:
            return self.current().identity
        except PolicyError as exc:
            raise TerminalError(POLICY_INVALID, str(exc)) from exc
