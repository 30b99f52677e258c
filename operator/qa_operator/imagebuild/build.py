"""`build_image`: the serving or operator image, assembled from wheels and pushed through the
registry API. No Docker daemon, and nothing runs inside the image.

The image is the base's layers as they are, then [torch,] dependencies and app layers, each
built reproducibly and cached by a key over its inputs (plan.py), then a Docker v2 config and
manifest. Every blob is uploaded only when the registry lacks it, the manifest last.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa_operator.imagebuild.accounts import with_account
from qa_operator.imagebuild.base import (
    BaseFacts,
    BaseImage,
    base_source,
    copy_base_layers,
    facts_overlay,
    resolve_base,
)
from qa_operator.imagebuild.cache import BuildCache, CachedLayer, default_cache_dir
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.imageconfig import (
    Descriptor,
    HistoryLayer,
    config_blob,
    docker_manifest,
    image_config,
)
from qa_operator.imagebuild.install import (
    building_python,
    can_compile_for,
    compile_pycs,
    installed_dists,
    leftovers,
    pip_install,
    pip_version,
    stage_dists,
)
from qa_operator.imagebuild.plan import LayerPlan, Toolchain, layer_plans
from qa_operator.imagebuild.recipes import CONSTRAINTS_FILE, Recipe, recipe_named
from qa_operator.imagebuild.results import BuildResult, LayerReport, Origin
from qa_operator.imagebuild.sources import copy_sources, project_files, sources_digest
from qa_operator.imagebuild.target import VENV, TargetPython
from qa_operator.imagebuild.venvlayout import interpreter_links, pyvenv_cfg, split_dists
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient, sha256_digest
from qa_operator.registry.images import parse_reference
from qa_operator.registry.layers import Layer, build_tree_layer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Inputs:
    """Everything read from the project and the base before any layer is built. The project's
    files are a snapshot: an edit made during the build cannot slip into a layer cached under
    the key of the content before it."""

    recipe: Recipe
    target: TargetPython
    project_dir: Path  # the snapshot
    constraints: Path
    requirements: tuple[Path, ...]
    sources: list[str]  # the package's files, relative to project_dir
    torch_index_url: str | None
    python: str
    facts: BaseFacts


@dataclass(frozen=True)
class _BuiltLayer:
    plan: LayerPlan
    cached: CachedLayer
    origin: Origin
    timings: dict[str, float]


def build_image(
    client: RegistryClient,
    *,
    recipe: Recipe | str,
    base: str,
    repository: str,
    tag: str | None = None,
    project_dir: Path,
    torch_index_url: str | None = None,
    cache_dir: Path | None = None,
    base_client: RegistryClient | None = None,
    python: str | None = None,
    target: TargetPython | None = None,
) -> BuildResult:
    """Build `recipe` ("serving", "operator" or a Recipe) on `base` and push it to `repository`
    on `client`'s registry, tagged `tag` when given.

    `base`: "[host/]repo:tag" or "...@sha256:..."; read with `base_client`, else `client` when it
    names no other host, else anonymously. `project_dir`: this repository (its package,
    constraints.txt and requirement files). `torch_index_url`: where torch comes from (None: the
    configured index; PyPI's Linux torch is the CUDA build). `python`: the base's CPython
    (default: found in its layers). Layers are cached under `cache_dir` (default
    $QA_OPERATOR_CACHE/image-build or ~/.cache/qa-operator/image-build).
    """
    started = time.monotonic()
    uploaded_before = client.bytes_uploaded
    recipe = recipe_named(recipe) if isinstance(recipe, str) else recipe
    target = target or TargetPython()
    project_dir = Path(project_dir).resolve()
    cache = BuildCache(Path(cache_dir) if cache_dir else default_cache_dir())
    _warn_if_markers_differ(target)
    reference = parse_reference(base)

    with base_source(client, reference, base_client) as source:
        base_image = resolve_base(source, reference)
        facts = cache.base_facts(base_image.manifest.digest)
        overlay = facts_overlay(target.interpreter_candidates) if facts is None else None
        reports = copy_base_layers(source, client, repository, base_image, overlay)
        if overlay is not None:
            facts = BaseFacts.from_overlay(overlay, target.interpreter_candidates)
            cache.store_base_facts(base_image.manifest.digest, facts)
    assert facts is not None
    interpreter = python or facts.python
    if interpreter is None:
        raise ImageBuildError(
            f"{base} has no /{' nor /'.join(target.interpreter_candidates)}: the venv needs the "
            f"base's CPython {target.version}; pass its path (--python) or use a base with it"
        )
    with cache.workdir("inputs") as snapshot:
        inputs = _snapshot_inputs(
            recipe, target, project_dir, snapshot, torch_index_url, interpreter, facts
        )
        built = _layers(cache, _plans(inputs), inputs)
    reports += _upload_layers(client, repository, built)
    digest, config_digest = _push_image(client, repository, tag, base_image, recipe, built)
    return BuildResult(
        uri=f"{client.host}/{repository}@{digest}",
        digest=digest,
        tag=tag,
        config_digest=config_digest,
        layers=tuple(reports),
        bytes_uploaded=client.bytes_uploaded - uploaded_before,
        seconds=time.monotonic() - started,
    )


def _warn_if_markers_differ(target: TargetPython) -> None:
    here = (sys.platform, platform.machine(), f"{sys.version_info[0]}.{sys.version_info[1]}")
    if here != ("linux", target.machine, target.version):
        log.warning(
            "building on %s %s with Python %s: pip evaluates environment markers for this "
            "machine, not for the image (linux %s, Python %s); dependencies chosen by markers "
            "may differ",
            *here,
            target.machine,
            target.version,
        )


def _snapshot_inputs(
    recipe: Recipe,
    target: TargetPython,
    project_dir: Path,
    snapshot: Path,
    torch_index_url: str | None,
    python: str,
    facts: BaseFacts,
) -> _Inputs:
    sources = project_files(project_dir)
    copy_sources(project_dir, [CONSTRAINTS_FILE, *recipe.requirement_files, *sources], snapshot)
    return _Inputs(
        recipe=recipe,
        target=target,
        project_dir=snapshot,
        constraints=snapshot / CONSTRAINTS_FILE,
        requirements=tuple(snapshot / name for name in recipe.requirement_files),
        sources=sources,
        torch_index_url=torch_index_url,
        python=python,
        facts=facts,
    )


def _layers(cache: BuildCache, plans: Sequence[LayerPlan], inputs: _Inputs) -> list[_BuiltLayer]:
    """Each planned layer from the cache, or built and cached, bottom first."""
    built = []
    provided: dict[str, str] = {}  # distributions the layers so far hold: name -> version
    for plan in plans:
        started = time.monotonic()
        timings: dict[str, float] = {}
        cached = cache.layer(plan.key)
        origin: Origin = "cache"
        if cached is None:
            origin = "built"
            with cache.workdir(plan.name) as work:
                layer, meta = _build_layer(plan, inputs, provided, work, timings)
                step = time.monotonic()
                cached = cache.store_layer(plan.key, layer, meta)
            timings["store"] = time.monotonic() - step
        timings["build" if origin == "built" else "lookup"] = time.monotonic() - started
        log.info("%s layer (%s): %s", plan.name, origin, cached.layer.digest)
        provided |= cached.meta.get("dists", {})
        built.append(_BuiltLayer(plan, cached, origin, timings))
    return built


def _upload_layers(
    client: RegistryClient, repository: str, built: Sequence[_BuiltLayer]
) -> list[LayerReport]:
    reports = []
    for entry in built:
        started = time.monotonic()
        before = client.bytes_uploaded
        layer = entry.cached.layer
        if not client.blob_exists(repository, layer.digest):
            with layer.open() as handle:
                client.upload_blob(repository, layer.digest, handle, layer.size)
        entry.timings["upload"] = time.monotonic() - started
        reports.append(
            LayerReport(
                name=entry.plan.name,
                digest=layer.digest,
                diff_id=layer.diff_id,
                size=layer.size,
                bytes_uploaded=client.bytes_uploaded - before,
                origin=entry.origin,
                seconds=sum(entry.timings.get(step, 0.0) for step in ("build", "lookup", "upload")),
                timings=entry.timings,
            )
        )
    return reports


def _plans(inputs: _Inputs) -> Sequence[LayerPlan]:
    toolchain = Toolchain(
        pip=pip_version(), pyc=building_python() if can_compile_for(inputs.target) else None
    )
    return layer_plans(
        inputs.recipe,
        inputs.target,
        toolchain,
        requirements={
            path.relative_to(inputs.project_dir).as_posix(): path.read_text()
            for path in inputs.requirements
        },
        constraints=inputs.constraints.read_text(),
        torch_index_url=inputs.torch_index_url,
        sources_digest=sources_digest(inputs.project_dir, inputs.sources),
        python=inputs.python,
        passwd=inputs.facts.passwd,
        group=inputs.facts.group,
    )


def _pip_arguments(plan: LayerPlan, inputs: _Inputs, work: Path) -> list[str]:
    """What `pip install --target` gets for the layer: wheels for the target's tags only."""
    constraints = ["-c", str(inputs.constraints)]
    if plan.name == "torch":
        index = inputs.torch_index_url
        arguments = ["torch", *constraints, *inputs.target.pip_arguments(generic_linux=bool(index))]
        if index:
            # An extra index: torch's local version (2.15.0+cpu) outranks PyPI's 2.15.0 under the
            # same pin, while its dependencies still resolve under constraints.txt.
            arguments += ["--extra-index-url", index]
        return arguments
    if plan.name == "dependencies":
        requirements = [f"--requirement={path}" for path in inputs.requirements]
        return [*requirements, *constraints, *inputs.target.pip_arguments()]
    # The app: this project alone, built from a copy of its files (never in the project tree).
    source = work / "source"
    copy_sources(inputs.project_dir, inputs.sources, source)
    return ["--no-deps", "--build-constraint", str(inputs.constraints), str(source)]


def _build_layer(
    plan: LayerPlan,
    inputs: _Inputs,
    provided: dict[str, str],
    work: Path,
    timings: dict[str, float],
) -> tuple[Layer, dict[str, Any]]:
    target = inputs.target
    stage = work / "stage"
    stage.mkdir()
    installed = work / "installed"
    owners: dict[str, tuple[int, int]] = {}
    arguments = _pip_arguments(plan, inputs, work)
    step = time.monotonic()
    pip_install(installed, arguments)
    timings["pip"] = time.monotonic() - step
    step = time.monotonic()
    kept, dropped = split_dists(installed_dists(installed), provided)
    stage_dists(installed, kept, stage, target)
    stray = leftovers(installed, dropped)
    if stray:
        log.warning("%s layer: files no distribution recorded, left out: %s", plan.name, stray[:10])
    if plan.name == "app":
        owners = _write_app_extras(stage, inputs)
    timings["stage"] = time.monotonic() - step
    step = time.monotonic()
    compile_pycs(stage / target.site_packages, target.site_packages, target)
    timings["compile"] = time.monotonic() - step
    step = time.monotonic()
    layer = build_tree_layer(
        stage, work / "layer.tar.gz", owners=owners, compression=plan.compression
    )
    timings["pack"] = time.monotonic() - step
    log.info(
        "%s layer built: %d distributions, %.1f MB compressed; pip %.1fs, compile %.1fs, "
        "pack %.1fs",
        plan.name,
        len(kept),
        layer.size / 1e6,
        timings["pip"],
        timings["compile"],
        timings["pack"],
    )
    meta = {
        "inputs": dict(plan.inputs),
        "compression": plan.compression.identity,
        "dists": {dist.name: dist.version for dist in kept},
    }
    return layer, meta


def _write_app_extras(stage: Path, inputs: _Inputs) -> dict[str, tuple[int, int]]:
    """The venv's own files, the accounts and the empty directories; returns their owners."""
    target, recipe = inputs.target, inputs.recipe
    venv = stage / VENV
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "pyvenv.cfg").write_bytes(pyvenv_cfg(inputs.python, target))
    for link, destination in interpreter_links(inputs.python, target).items():
        (stage / link).symlink_to(destination)
    (venv / "lib64").symlink_to("lib")  # as `python -m venv` makes on 64-bit Linux
    passwd, group = with_account(inputs.facts.passwd, inputs.facts.group, recipe.account)
    (stage / "etc").mkdir(exist_ok=True)
    (stage / "etc" / "passwd").write_bytes(passwd)
    (stage / "etc" / "group").write_bytes(group)
    for directory in (*recipe.directories, *recipe.account_directories):
        (stage / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    account = recipe.account
    return {
        directory.lstrip("/"): (account.uid, account.gid)
        for directory in recipe.account_directories
    }


def _push_image(
    client: RegistryClient,
    repository: str,
    tag: str | None,
    base: BaseImage,
    recipe: Recipe,
    built: Sequence[_BuiltLayer],
) -> tuple[str, str]:
    """Config, then manifest (by tag, or by digest), each only when the registry lacks it."""
    config = image_config(
        base.config,
        recipe,
        [
            HistoryLayer(
                entry.cached.layer.diff_id, f"qa-operator image build: {entry.plan.created_by}"
            )
            for entry in built
        ],
    )
    config_body, config_descriptor = config_blob(config)
    if not client.blob_exists(repository, config_descriptor.digest):
        client.upload_blob(repository, config_descriptor.digest, config_body)
    layers = [
        *base.layers,
        *(Descriptor(entry.cached.layer.digest, entry.cached.layer.size) for entry in built),
    ]
    manifest = docker_manifest(config_descriptor, layers)
    digest = sha256_digest(manifest)
    reference = tag or digest
    if client.manifest_digest(repository, reference) != digest:
        client.put_manifest(repository, reference, manifest, DOCKER_MANIFEST)
    return digest, config_descriptor.digest
