"""Build (once, cached by source digest) the gopher-lua helper that runs Argo CD health scripts as
Argo CD does (see main.go); the module comes from the Go module proxy, as for the control plane."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent
SOURCES = ("go.mod", "go.sum", "main.go")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(b"".join((SOURCE / name).read_bytes() for name in SOURCES))
    return Path(base) / "qa-operator" / "gopher-lua" / digest.hexdigest()[:16]


def argocd_lua() -> Path:
    """The helper binary, built on first use; RuntimeError saying why when it cannot be."""
    target = _cache_dir()
    binary = target / "argocd-lua"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("`go` is not on PATH: Go >= 1.26 builds the gopher-lua test helper")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp:
        built = Path(tmp) / "argocd-lua"
        env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
        done = subprocess.run(
            [go, "build", "-trimpath", "-o", str(built), "."],
            cwd=SOURCE, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"building the gopher-lua helper failed:\n{done.stderr}")
        Path(tmp, "bin").mkdir()
        built.rename(Path(tmp, "bin", "argocd-lua"))
        try:
            Path(tmp, "bin").rename(target)
        except OSError:
            if not binary.is_file():  # another test process built it first: use theirs
                raise
    return binary
