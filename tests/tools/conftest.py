"""Fixtures for the tools tests: the real Docker engine, brought up by `ensure_engine`."""

from __future__ import annotations

import pytest

from tools import DockerSandbox, SandboxConfig, ensure_engine


@pytest.fixture(scope="session")
def engine():
    """The same code path as `dsv4 sandbox setup`: installs, starts and builds when needed."""
    return ensure_engine()


@pytest.fixture(scope="session")
def docker_sandbox(engine):
    """One sandbox shared by the tests that leave it as they found it."""
    sandbox = DockerSandbox(SandboxConfig(memory="512m", cpus=1.0, pids=1024))
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def fresh_sandbox(engine):
    """A sandbox of its own, for tests that break or restart things."""
    sandboxes = []

    def make(**config) -> DockerSandbox:
        sandbox = DockerSandbox(SandboxConfig(**config))
        sandbox.start()
        sandboxes.append(sandbox)
        return sandbox

    yield make
    for sandbox in sandboxes:
        sandbox.stop()
