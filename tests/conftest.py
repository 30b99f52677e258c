"""Shared fixtures. Each test peer lives in its own plugin module under tests/support/."""

pytest_plugins = [
    "support.controlplane.fixtures",
    "support.aws",
    "support.containers",
    "support.registry",
    "support.tiny_models",
]
