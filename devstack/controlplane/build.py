"""Find or build the test control plane binaries: kube-apiserver, etcd and kubectl.

Lookup order, the same as controller-runtime's envtest so that envtest users skip the build:

1. ``TEST_ASSET_KUBE_APISERVER``, ``TEST_ASSET_ETCD``, ``TEST_ASSET_KUBECTL`` (one binary each);
2. ``KUBEBUILDER_ASSETS``, a directory holding ``kube-apiserver``, ``etcd`` and ``kubectl``;
3. our build cache, ``${XDG_CACHE_HOME:-~/.cache}/qa-operator/controlplane/k8s-<v>-etcd-<v>/``,
   filled by ``python -m devstack.controlplane.build`` from the Go module next to this file;
4. for kubectl only: a ``kubectl`` on PATH within one minor version of the API server.

The versions come from ``go.mod`` beside this file, the single place where they are pinned.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent
GO_MOD = MODULE_DIR / "go.mod"

KUBE_APISERVER_PKG = "k8s.io/kubernetes/cmd/kube-apiserver"
KUBECTL_PKG = "k8s.io/kubernetes/cmd/kubectl"
ETCD_PKG = "go.etcd.io/etcd/server/v3"
# `go build -o DIR/` names a binary after its package path, dropping a /vN suffix.
BUILT_NAMES = {"kube-apiserver": "kube-apiserver", "kubectl": "kubectl", "etcd": "server"}

# Bump when the way we build changes, so that caches from an older recipe are rebuilt.
RECIPE = 2

ENV_ASSETS_DIR = "KUBEBUILDER_ASSETS"
ENV_BINARY = {
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kubectl": "TEST_ASSET_KUBECTL",
}


class ControlPlaneBinariesMissing(RuntimeError):
    """The binaries are neither configured nor built; the message says how to get them."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str  # e.g. v1.37.2
    etcd: str  # e.g. v3.7.0

    @property
    def kubernetes_minor(self) -> int:
        return int(self.kubernetes.lstrip("v").split(".")[1])


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kubectl: Path


def pinned_versions(go_mod: Path = GO_MOD) -> Versions:
    text = go_mod.read_text()

    def required(module: str) -> str:
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"{go_mod} does not require {module}")
        return match.group(1)

    return Versions(kubernetes=required("k8s.io/kubernetes"), etcd=required(ETCD_PKG))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qa-operator" / "controlplane"


def cache_dir(versions: Versions | None = None) -> Path:
    v = versions or pinned_versions()
    return cache_root() / f"k8s-{v.kubernetes}-etcd-{v.etcd}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def build_stamp(versions: Versions) -> str:
    return f"kubernetes={versions.kubernetes}\netcd={versions.etcd}\nrecipe={RECIPE}\n"


def _is_built(directory: Path, versions: Versions) -> bool:
    stamp = directory / "VERSIONS"
    return (
        stamp.is_file()
        and stamp.read_text() == build_stamp(versions)
        and all(_executable(directory / name) for name in BUILT_NAMES)
    )


def version_ldflags(versions: Versions) -> str:
    """Stamp the version the way Kubernetes' release build does (hack/lib/version.sh); an
    unstamped kubectl refuses to parse its own version and skew checks go wrong."""
    major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": versions.kubernetes,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return " ".join(flags)


def kubectl_client_minor(kubectl: str | Path) -> int | None:
    """The client minor version of a kubectl, or None if it does not answer sensibly."""
    try:
        done = subprocess.run(
            [str(kubectl), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        minor = json.loads(done.stdout)["clientVersion"]["minor"]
        return int(re.sub(r"\D.*$", "", minor))
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def path_kubectl(versions: Versions) -> Path | None:
    """A kubectl on PATH within one minor version of our API server (the supported skew)."""
    found = shutil.which("kubectl")
    if found is None:
        return None
    minor = kubectl_client_minor(found)
    if minor is None or abs(minor - versions.kubernetes_minor) > 1:
        return None
    return Path(found)


def _configured(name: str, built: Path, versions: Versions) -> Path | None:
    override = os.environ.get(ENV_BINARY[name])
    if override:
        return Path(override)
    assets = os.environ.get(ENV_ASSETS_DIR)
    if assets and _executable(Path(assets) / name):
        return Path(assets) / name
    if _is_built(built, versions):
        return built / name
    return None


def locate(versions: Versions | None = None) -> Binaries:
    """The binaries to run, or ControlPlaneBinariesMissing saying what is missing and how to fix."""
    v = versions or pinned_versions()
    built = cache_dir(v)
    apiserver = _configured("kube-apiserver", built, v)
    etcd = _configured("etcd", built, v)
    kubectl = _configured("kubectl", built, v) or path_kubectl(v)
    missing = [
        name
        for name, path in (("kube-apiserver", apiserver), ("etcd", etcd), ("kubectl", kubectl))
        if path is None or not _executable(path)
    ]
    if missing or apiserver is None or etcd is None or kubectl is None:
        raise ControlPlaneBinariesMissing(
            f"control plane binaries missing: {', '.join(missing)}. Build them with "
            f"`make test-peers` (or `python -m devstack.controlplane.build`), or point "
            f"{ENV_ASSETS_DIR} at a directory with kube-apiserver, etcd and kubectl "
            f"(searched the build cache {built})."
        )
    return Binaries(kube_apiserver=apiserver, etcd=etcd, kubectl=kubectl)


def locate_kubectl(versions: Versions | None = None) -> Path:
    """kubectl alone, for a cluster we did not start (QA_TEST_KUBECONFIG)."""
    v = versions or pinned_versions()
    found = _configured("kubectl", cache_dir(v), v) or path_kubectl(v)
    if found is None or not _executable(found):
        raise ControlPlaneBinariesMissing(
            "kubectl missing: build it with `make test-peers`, set TEST_ASSET_KUBECTL, or put a "
            f"kubectl within one minor version of {v.kubernetes} on PATH"
        )
    return found


def build(versions: Versions | None = None, *, force: bool = False) -> Path:
    """Build the three binaries into the versioned cache dir (atomically); return that dir."""
    v = versions or pinned_versions()
    target = cache_dir(v)
    if not force and _is_built(target, v):
        return target
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneBinariesMissing(
            "`go` is not on PATH: install Go >= 1.26 to build the test control plane, or set "
            f"{ENV_ASSETS_DIR} to a directory with kube-apiserver, etcd and kubectl."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        out = Path(tmp) / "bin"
        out.mkdir()
        command = [go, "build", "-trimpath", f"-ldflags={version_ldflags(v)}", "-o", f"{out}/"]
        command += [KUBE_APISERVER_PKG, KUBECTL_PKG, ETCD_PKG]
        print(f"building {v.kubernetes} and etcd {v.etcd} into {target}", flush=True)
        print("$ " + " ".join(command), flush=True)
        started = time.monotonic()
        subprocess.run(command, cwd=MODULE_DIR, env=env, check=True)
        for name, built_as in BUILT_NAMES.items():
            if built_as != name:
                (out / built_as).rename(out / name)
        (out / "VERSIONS").write_text(build_stamp(v))
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
        print(f"built in {time.monotonic() - started:.1f} s", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache has them")
    args = parser.parse_args(argv)
    v = pinned_versions()
    if not args.force:
        try:
            found = locate(v)
        except ControlPlaneBinariesMissing:
            pass
        else:
            print(
                f"control plane binaries ready: kube-apiserver={found.kube_apiserver} "
                f"etcd={found.etcd} kubectl={found.kubectl}"
            )
            return 0
    try:
        target = build(v, force=args.force)
    except (ControlPlaneBinariesMissing, subprocess.CalledProcessError) as error:
        print(f"control plane build failed: {error}", file=sys.stderr)
        return 1
    print(f"control plane binaries ready in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
