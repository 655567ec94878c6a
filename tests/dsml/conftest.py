"""Shared fixtures of the dsml tests: the official V4 conformance cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dsml" / "v4"
CASES = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["cases"]


def _load(case: dict) -> tuple[list[dict], str, str]:
    data = json.loads((FIXTURES / case["input"]).read_text(encoding="utf-8"))
    if isinstance(data, dict):  # "attach the top-level tools list to the first message"
        messages = data["messages"]
        messages[0]["tools"] = data["tools"]
    else:
        messages = data
    expected = (FIXTURES / case["expected_output"]).read_text(encoding="utf-8")
    return messages, case["call"]["thinking_mode"], expected


@pytest.fixture(params=CASES, ids=lambda c: f"case{c['id']}")
def v4_case(request) -> tuple[list[dict], str, str]:
    """(messages, thinking_mode, expected prompt) of one official case."""
    return _load(request.param)


@pytest.fixture(scope="session")
def v4_cases() -> list[tuple[list[dict], str, str]]:
    return [_load(c) for c in CASES]


@pytest.fixture(scope="session")
def v4_manifest() -> tuple[Path, list[dict]]:
    """(fixture directory, manifest cases)."""
    return FIXTURES, CASES
