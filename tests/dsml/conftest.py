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


def _completions(expected: str) -> list[tuple[str, str]]:
    """Every assistant turn of a rendered prompt, as (completion text, thinking_mode)."""
    out = []
    for opening, mode in (
        ("<｜Assistant｜><think>", "thinking"),
        ("<｜Assistant｜></think>", "chat"),
    ):
        start = expected.find(opening)
        while start >= 0:
            begin = start + len(opening)
            if expected.startswith("<｜action｜>", begin):
                begin += len("<｜action｜>")
            end = expected.find("<｜end▁of▁sentence｜>", begin)
            out.append((expected[begin : end + len("<｜end▁of▁sentence｜>")], mode))
            start = expected.find(opening, begin)
    return out


@pytest.fixture(scope="session")
def fixture_completions() -> list[tuple[str, str, list[dict] | None]]:
    """(completion, thinking_mode, tools) for every assistant turn of the official cases."""
    found = []
    for case in CASES:
        messages, _, expected = _load(case)
        tools = next((m["tools"] for m in messages if m.get("tools")), None)
        found += [(text, mode, tools) for text, mode in _completions(expected)]
    return found


def _reassemble(events: list) -> dict:
    """What a consumer of the events knows at the end: texts, calls, argument texts."""
    from dsml import (
        ContentDelta,
        ReasoningDelta,
        ToolCallArgumentDelta,
        ToolCallFinished,
        ToolCallStarted,
        TurnEnded,
    )

    out = {"reasoning": "", "content": "", "started": {}, "args": {}, "finished": {}, "ended": []}
    for e in events:
        if isinstance(e, ReasoningDelta):
            out["reasoning"] += e.text
        elif isinstance(e, ContentDelta):
            out["content"] += e.text
        elif isinstance(e, ToolCallStarted):
            out["started"][e.index] = (e.id, e.name)
        elif isinstance(e, ToolCallArgumentDelta):
            key = (e.index, e.parameter)
            text, _ = out["args"].get(key, ("", e.string))
            out["args"][key] = (text + e.text, e.string)
        elif isinstance(e, ToolCallFinished):
            assert e.index not in out["finished"], "a call finished twice"
            out["finished"][e.index] = e
        elif isinstance(e, TurnEnded):
            out["ended"].append(e)
    return out


@pytest.fixture(scope="session")
def reassemble():
    return _reassemble


@pytest.fixture(scope="session")
def assert_stream_matches():
    """Check streamed events against the whole-completion parse of the same text."""
    import json as _json

    def check(events: list, turn) -> None:
        got = _reassemble(events)
        assert len(got["ended"]) == 1 and events[-1] is got["ended"][0]
        assert got["ended"][0].turn == turn
        assert got["reasoning"] == (turn.reasoning_content or "")
        assert got["content"] == turn.content
        for e in events:
            text = getattr(e, "text", None)
            if text is not None and not hasattr(e, "parameter"):
                assert "｜DSML｜" not in text and "<｜end▁of▁sentence｜>" not in text
        valid = {c.id: c for c in turn.tool_calls}
        failed = {c.index: c for c in turn.errors}
        assert len(got["finished"]) == len(valid) + len(failed)
        for index, fin in got["finished"].items():
            if fin.call is not None:
                assert valid[fin.id] == fin.call and fin.error is None
                assert got["started"][index] == (fin.id, fin.call.name)
                for name, value in fin.call.arguments.items():
                    # An empty value has no delta.
                    text, string = got["args"].get((index, name), ("", True))
                    assert (text if string else _json.loads(text)) == value
            else:
                assert failed[index].message == fin.error
        assert [c.id for c in turn.tool_calls] == [
            f.id for _, f in sorted(got["finished"].items()) if f.call is not None
        ]

    return check
