"""The Dockerfiles and the builder's recipes describe the same images.

Each Dockerfile's final stage (ENTRYPOINT, CMD, ENV, USER, WORKDIR, EXPOSE, LABEL, the user it
adds and the directories it makes) must equal its recipe exactly, and both must install from the
same requirement files under the same constraints.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qa_operator.imagebuild.recipes import (
    CONSTRAINTS_FILE,
    OPERATOR,
    SERVING,
    SERVING_ONNXRUNTIME,
    Recipe,
)

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENT_FILE = re.compile(r"(^|/)(constraints|[\w-]*requirements|requirements/[\w-]+)\.txt$")


@dataclass
class Stage:
    """A Dockerfile stage as the image config sees it, plus what its RUN lines do."""

    args: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[tuple[str, str]] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    expose: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    copies: list[list[str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments): continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    found = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def _pairs(arguments: str) -> list[tuple[str, str]]:
    pairs = []
    for token in shlex.split(arguments):
        name, _, value = token.partition("=")
        pairs.append((name, value))
    return pairs


def parse_stages(text: str) -> list[Stage]:
    """Every stage; ARGs before the first FROM are defaults for all of them."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            stages.append(Stage(args=dict(global_args)))
            continue
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            (stages[-1].args if stages else global_args)[name] = default
            continue
        stage = stages[-1]
        if keyword == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif keyword == "CMD":
            stage.cmd = json.loads(rest)
        elif keyword == "ENV":
            stage.env += _pairs(rest)
        elif keyword == "USER":
            stage.user = _substitute(rest, stage.args)
        elif keyword == "WORKDIR":
            stage.workdir = rest
        elif keyword == "EXPOSE":
            stage.expose += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif keyword == "LABEL":
            stage.labels |= dict(_pairs(rest))
        elif keyword == "RUN":
            stage.runs.append(_substitute(rest, stage.args))
        elif keyword == "COPY":
            stage.copies.append(rest.split())
    return stages


def _dockerfile(recipe: Recipe) -> list[Stage]:
    return parse_stages((ROOT / recipe.dockerfile).read_text())


RECIPES = [
    pytest.param(SERVING, id="serving"),
    pytest.param(SERVING_ONNXRUNTIME, id="serving-onnxruntime"),
    pytest.param(OPERATOR, id="operator"),
]


@pytest.mark.parametrize("recipe", RECIPES)
def test_final_stage_runtime_equals_the_recipe(recipe: Recipe) -> None:
    final = _dockerfile(recipe)[-1]
    assert final.entrypoint == list(recipe.entrypoint)
    assert final.cmd == list(recipe.cmd)
    assert final.env == list(recipe.env)
    assert final.user == recipe.user
    assert final.workdir == recipe.working_dir
    assert final.expose == list(recipe.exposed_ports)
    assert final.labels == dict(recipe.labels)


@pytest.mark.parametrize("recipe", RECIPES)
def test_final_stage_user_and_directories_equal_the_recipe(recipe: Recipe) -> None:
    run = " ".join(_dockerfile(recipe)[-1].runs)
    useradd = re.search(r"useradd ([^&]*)", run)
    assert useradd, "the final stage adds no user"
    words = useradd[1].split()
    assert words[words.index("--uid") + 1].strip('"') == str(recipe.account.uid)
    assert words[words.index("--home-dir") + 1] == recipe.account.home
    assert {"--user-group", "--create-home"} <= set(words)
    assert words[-1] == recipe.account.name
    for directory in (*recipe.directories, *recipe.account_directories):
        assert directory in run


@pytest.mark.parametrize("recipe", RECIPES)
def test_dockerfile_and_builder_read_the_same_requirement_files(recipe: Recipe) -> None:
    stages = _dockerfile(recipe)
    copied = {
        source
        for stage in stages
        for copy in stage.copies
        if not copy[0].startswith("--from")
        for source in copy[:-1]
        if REQUIREMENT_FILE.search(source)
    }
    assert copied == {CONSTRAINTS_FILE, *recipe.requirement_files}
    installs = " ".join(run for stage in stages for run in stage.runs if "pip install" in run)
    for name in recipe.requirement_files:
        assert f"-r /tmp/build/{Path(name).name}" in installs
    assert "-c /tmp/build/constraints.txt" in installs
    for name in copied:
        assert (ROOT / name).is_file()


def test_serving_torch_version_is_the_constraints_pin() -> None:
    """The builder installs torch at the constraints' pin; the Dockerfile's ARG must agree."""
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / CONSTRAINTS_FILE).read_text().split()
        if "==" in line
    )
    build = _dockerfile(SERVING)[0]
    assert build.args["TORCH_VERSION"] == pins["torch"]


def test_the_torchless_serving_recipe_is_the_dockerfiles_no_torch_variant() -> None:
    """serving-onnxruntime is serving/Dockerfile with TORCH_VARIANT=none: torch's install is
    skipped for that value, and nothing else differs from the serving recipe."""
    assert SERVING_ONNXRUNTIME.dockerfile == SERVING.dockerfile
    assert not SERVING_ONNXRUNTIME.with_torch and SERVING.with_torch
    assert SERVING_ONNXRUNTIME.requirement_files == SERVING.requirement_files
    (torch_install,) = [
        rest
        for keyword, rest in instructions((ROOT / SERVING.dockerfile).read_text())
        if keyword == "RUN" and "torch==" in rest
    ]
    assert torch_install.startswith('if [ "${TORCH_VARIANT}" != none ]; then')
    for name in SERVING.requirement_files:
        lines = (ROOT / name).read_text().splitlines()
        pins = [line.split("==")[0].strip() for line in lines if not line.startswith("#")]
        assert "torch" not in pins, name


@pytest.mark.parametrize(
    ("text", "env", "user", "expose"),
    [
        (
            'ARG UID=7\nFROM x\nENV A=1 \\\n    B="two words"\nUSER ${UID}\nEXPOSE 80 53/udp\n',
            [("A", "1"), ("B", "two words")],
            "7",
            ["80/tcp", "53/udp"],
        ),
        (
            "FROM x AS build\nUSER 1\nFROM y\nARG UID=9\n# comment\nUSER $UID\n",
            [],
            "9",
            [],
        ),
    ],
)
def test_the_parser_itself(
    text: str, env: list[tuple[str, str]], user: str, expose: list[str]
) -> None:
    final = parse_stages(text)[-1]
    assert (final.env, final.user, final.expose) == (env, user, expose)
