"""Layer cache keys: each changes exactly when something that decides its layer changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qa_operator.imagebuild.cache import cache_key
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.plan import Toolchain, layer_plans, requirement_lines
from qa_operator.imagebuild.recipes import OPERATOR, SERVING
from qa_operator.imagebuild.target import TargetPython

BASELINE: dict[str, Any] = {
    "recipe": SERVING,
    "target": TargetPython(),
    "toolchain": Toolchain(pip="26.3", pyc="3.11.7"),
    "requirements": {"serving/requirements.txt": "mlflow==3.17.2\ntransformers==5.24.0\n"},
    "constraints": "torch==2.15.0\nmlflow==3.17.2\n",
    "torch_index_url": None,
    "sources_digest": "sha256:" + "1" * 64,
    "python": "/usr/local/bin/python3.11",
    "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
    "group": b"root:x:0:\n",
}


def _keys(**changes: Any) -> dict[str, str]:
    arguments = BASELINE | changes
    recipe, target, toolchain = (arguments.pop(k) for k in ("recipe", "target", "toolchain"))
    return {plan.name: plan.key for plan in layer_plans(recipe, target, toolchain, **arguments)}


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("nothing", {}, set()),
    (
        "a requirement",
        {"requirements": {"serving/requirements.txt": "mlflow==3.17.3\ntransformers==5.24.0\n"}},
        {"dependencies"},
    ),
    (
        "only a comment in the requirements",
        {
            "requirements": {
                "serving/requirements.txt": (
                    "# pins\nmlflow==3.17.2  # tracking\n\ntransformers==5.24.0\n"
                )
            }
        },
        set(),
    ),
    (
        "the constraints",
        {"constraints": "torch==2.15.1\nmlflow==3.17.2\n"},
        {"torch", "dependencies", "app"},
    ),
    (
        "the torch index",
        {"torch_index_url": "https://download.pytorch.org/whl/cpu"},
        {"torch", "dependencies"},
    ),
    ("the project's sources", {"sources_digest": "sha256:" + "2" * 64}, {"app"}),
    ("the base's interpreter", {"python": "/usr/bin/python3.11"}, {"app"}),
    ("the base's /etc/passwd", {"passwd": b"root:x:0:0::/root:/bin/sh\n"}, {"app"}),
    ("the base's /etc/group", {"group": None}, {"app"}),
    ("pip", {"toolchain": Toolchain(pip="26.4", pyc="3.11.7")}, {"torch", "dependencies", "app"}),
    (
        "the Python compiling .pyc",
        {"toolchain": Toolchain(pip="26.3", pyc=None)},
        {"torch", "dependencies", "app"},
    ),
    ("the target glibc", {"target": TargetPython(glibc=(2, 28))}, {"torch", "dependencies", "app"}),
    (
        "the account",
        {
            "recipe": dataclasses.replace(
                SERVING, account=dataclasses.replace(SERVING.account, uid=2000)
            )
        },
        {"app"},
    ),
]


@pytest.mark.parametrize(("what", "changes", "changed"), CASES, ids=[case[0] for case in CASES])
def test_a_key_changes_exactly_when_its_layer_would(
    what: str, changes: dict[str, Any], changed: set[str]
) -> None:
    before, after = _keys(), _keys(**changes)
    assert {name for name in before if before[name] != after.get(name)} == changed, what


def test_the_operator_image_has_no_torch_layer() -> None:
    keys = _keys(recipe=OPERATOR, requirements={"requirements/operator.txt": "kopf\n"})
    assert list(keys) == ["dependencies", "app"]
    assert keys["app"] != _keys()["app"]  # another account and directories


def test_layers_keep_their_keys_across_recipes_with_the_same_inputs() -> None:
    serving = _keys()
    again = _keys(recipe=dataclasses.replace(SERVING, labels=()))  # config only
    assert serving == again


def test_cache_key_is_stable_and_covers_the_format() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert len(cache_key({})) == 64


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a==1\n\n# c\nb>=2  # why\n", ["a==1", "b>=2"]),
        ("  spaced==1  \n", ["spaced==1"]),
        ("url @ https://x/y.whl#sha256=abc\n", ["url @ https://x/y.whl#sha256=abc"]),
    ],
)
def test_requirement_lines(text: str, lines: list[str]) -> None:
    assert requirement_lines(text, source="t") == lines


@pytest.mark.parametrize("line", ["-r other.txt", "--requirement=x", "-c c.txt", "--constraint c"])
def test_nested_requirement_files_are_refused(line: str) -> None:
    with pytest.raises(ImageBuildError, match="nested"):
        requirement_lines(line, source="t")
