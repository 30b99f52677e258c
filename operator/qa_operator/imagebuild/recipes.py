"""What goes into each image: the serving image and the operator image, as data.

Each recipe mirrors the final stage of the Dockerfile that builds the same image with Docker
(serving/Dockerfile, Dockerfile); tests/imagebuild/test_dockerfile_contract.py keeps the two
identical, requirement files included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CONSTRAINTS_FILE = "constraints.txt"


@dataclass(frozen=True)
class Account:
    """The user the container runs as, written into /etc/passwd and /etc/group as `useradd
    --user-group --create-home` would (Debian's default shell /bin/sh)."""

    name: str
    uid: int
    home: str
    shell: str = "/bin/sh"

    @property
    def gid(self) -> int:
        return self.uid  # --user-group: a group of the same name and number


@dataclass(frozen=True)
class Recipe:
    name: str
    dockerfile: str  # relative to the project directory
    requirement_files: tuple[str, ...]  # relative to the project directory
    with_torch: bool  # torch (and its dependency closure) in a layer of its own, under it
    account: Account
    # Empty directories the app layer creates: root-owned, and owned by the account.
    directories: tuple[str, ...]
    account_directories: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    # Applied in order, as Dockerfile ENV: "$NAME" / "${NAME}" expand to the value so far.
    env: tuple[tuple[str, str], ...]
    working_dir: str | None  # None: the base image's
    exposed_ports: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]

    @property
    def user(self) -> str:
        return str(self.account.uid)


_LICENSE = ("org.opencontainers.image.licenses", "Apache-2.0")

SERVING = Recipe(
    name="serving",
    dockerfile="serving/Dockerfile",
    requirement_files=("serving/requirements.txt",),
    with_torch=True,
    account=Account(name="serving", uid=10001, home="/home/serving"),
    # SageMaker puts the model here (S3 mode), or it comes as a baked layer: both find it.
    directories=("/opt/ml/model",),
    account_directories=("/home/serving",),
    entrypoint=("python", "-m", "qa_operator.model.serving"),
    cmd=("serve",),
    env=(
        ("PATH", "/opt/venv/bin:$PATH"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HOME", "/home/serving"),
    ),
    working_dir="/home/serving",
    exposed_ports=("8080/tcp",),
    labels=(
        ("org.opencontainers.image.title", "qa-operator serving"),
        (
            "org.opencontainers.image.description",
            "MLflow scoring server for extractive QA on SageMaker",
        ),
        _LICENSE,
    ),
)

# The serving image without torch, for packages of engine onnxruntime (which need only ONNX
# Runtime, transformers' tokenizers and MLflow): serving/Dockerfile with TORCH_VARIANT=none.
SERVING_ONNXRUNTIME = replace(SERVING, name="serving-onnxruntime", with_torch=False)

OPERATOR = Recipe(
    name="operator",
    dockerfile="Dockerfile",
    requirement_files=("requirements/operator.txt",),
    with_torch=False,
    account=Account(name="operator", uid=10001, home="/home/operator"),
    directories=(),
    account_directories=("/home/operator", "/var/cache/qa-operator"),
    entrypoint=("qa-operator",),
    cmd=("run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"),
    env=(
        ("PATH", "/opt/venv/bin:$PATH"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("HOME", "/home/operator"),
        ("QA_OPERATOR_WORK_DIR", "/var/cache/qa-operator"),
    ),
    working_dir=None,
    exposed_ports=("8080/tcp",),
    labels=(
        ("org.opencontainers.image.title", "qa-operator"),
        (
            "org.opencontainers.image.description",
            "Kubernetes operator: QAModelDeployment to SageMaker endpoint",
        ),
        _LICENSE,
    ),
)

RECIPES = {recipe.name: recipe for recipe in (SERVING, SERVING_ONNXRUNTIME, OPERATOR)}


def recipe_named(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"no image recipe {name!r}; known: {', '.join(RECIPES)}") from None
