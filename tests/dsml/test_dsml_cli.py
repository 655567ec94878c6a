"""`dsv4 dsml render|parse`, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsml import encode_messages

ROOT = Path(__file__).resolve().parents[2]
EOS = "<｜end▁of▁sentence｜>"


def dsv4(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=ROOT,
        timeout=120,
        input=None if stdin is None else stdin.encode(),
        capture_output=True,
    )


def test_render_prints_official_cases_exactly(v4_manifest) -> None:
    fixtures, cases = v4_manifest
    for case in (cases[0], cases[3]):  # an object with top-level tools; a chat-mode list
        done = dsv4(
            "dsml", "render", str(fixtures / case["input"]), "--mode", case["call"]["thinking_mode"]
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == (fixtures / case["expected_output"]).read_bytes()


def test_render_reads_encoder_arguments_from_stdin() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    payload = {
        "messages": messages,
        "thinking_mode": "thinking",
        "reasoning_effort": "max",
        "add_default_bos_token": False,
    }
    done = dsv4("dsml", "render", "-", stdin=json.dumps(payload))
    assert done.returncode == 0, done.stderr
    want = encode_messages(
        messages, "thinking", reasoning_effort="max", add_default_bos_token=False
    )
    assert done.stdout.decode() == want and not want.endswith("\n")


def test_render_explains_a_conversation_it_cannot_encode() -> None:
    done = dsv4("dsml", "render", "-", stdin='[{"role": "robot", "content": "x"}]')
    assert done.returncode == 2 and b"role 'robot'" in done.stderr and not done.stdout


def test_parse_prints_the_turn_as_json(tmp_path) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"n": {"type": "integer"}},
                            "required": ["n"],
                        },
                    },
                }
            ]
        )
    )
    text = (
        'why</think>ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="f">\n'
        '<｜DSML｜parameter name="n" string="false">2.0</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" + EOS
    )
    done = dsv4(
        "dsml", "parse", "-", "--mode", "thinking", "--tools", str(tools), "--strict", stdin=text
    )
    assert done.returncode == 0, done.stderr
    turn = json.loads(done.stdout)
    assert turn["reasoning_content"] == "why" and turn["content"] == "ok"
    assert turn["tool_calls"] == [{"id": "call_0", "name": "f", "arguments": {"n": 2.0}}]
    assert b'"n": 2.0' in done.stdout


@pytest.mark.parametrize("strict", [True, False])
def test_parse_reports_format_errors(tmp_path, strict) -> None:
    path = tmp_path / "completion.txt"
    path.write_text("no think end" + EOS, encoding="utf-8")
    args = ["dsml", "parse", str(path), "--mode", "thinking"] + (["--strict"] if strict else [])
    done = dsv4(*args)
    out = json.loads(done.stdout)
    if strict:
        assert done.returncode == 1
        assert out["error"]["kind"] == "missing_think_end" and out["error"]["offset"] == 12
    else:
        assert done.returncode == 0 and out["repairs"][0]["kind"] == "missing_think_end"
