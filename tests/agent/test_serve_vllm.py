"""`dsv4 serve`: vLLM's OpenAI server with our plugin answers a chat request with a tool call
parsed by our DSML parser, over 127.0.0.1 (server started and stopped here)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dsml.tokens import THINK_END
from model import DeepseekV4, ModelConfig, save_checkpoint
from model.tokenizer import build_bpe_tokenizer

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
# What the model is made to write (vLLM structured outputs): a DSML tool-call block.
CALL_TEXT = (
    "Let me check.\n\n<｜DSML｜tool_calls>\n"
    '<｜DSML｜invoke name="get_weather">\n'
    '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n'
    '<｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>\n'
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("served")
    texts = [CALL_TEXT, "The weather in Paris is sunny. What is the weather like?"] * 20
    tokenizer = build_bpe_tokenizer(texts, vocab_size=600)
    net = DeepseekV4(ModelConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    net.init_weights(seed=0)
    save_checkpoint(net, directory)
    tokenizer.save(directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def server(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    cmd = [
        sys.executable, "-m", "agent.cli", "serve", str(checkpoint),
        "--port", str(port), "--max-model-len", "1024", "--served-model-name", "tiny",
        "--vllm-args", f"--enforce-eager --kv-cache-memory-bytes {128 << 20}",
    ]  # fmt: skip
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND="nobind")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a busy shared machine starts vLLM slowly
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dsv4 serve exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"dsv4 serve not ready in 600 s:\n{log.read_text()[-4000:]}")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_chat_completion_returns_the_tool_call_our_parser_read(server: str) -> None:
    body = {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "You answer with tools."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        "tools": [TOOL],
        "max_tokens": 200,
        "temperature": 0,
        "chat_template_kwargs": {"thinking": False},
        "structured_outputs": {"regex": re.escape(CALL_TEXT)},
    }
    r = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    msg = choice["message"]
    assert msg["content"] == "Let me check."
    (call,) = msg["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    # Typed by the tool's schema: `days` is the JSON number 3, `city` the raw string.
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 3}


def test_prompt_is_rendered_by_dsml(server: str, checkpoint: Path) -> None:
    """The server's prompt is dsml.encode_messages' text (tools in the system prompt)."""
    import dsml

    messages = [{"role": "user", "content": "Hello"}]
    r = httpx.post(
        f"{server}/tokenize",
        json={"model": "tiny", "messages": messages, "tools": [TOOL],
              "chat_template_kwargs": {"thinking": True}},
        timeout=60,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    from model.tokenizer import Tokenizer

    tok = Tokenizer.from_file(checkpoint / "tokenizer.json")
    system = {"role": "system", "content": "", "tools": [TOOL]}
    want = dsml.encode_messages([system, *messages], "thinking")
    assert tok.decode(r.json()["tokens"]) == want
    assert not want.endswith(THINK_END)


def test_agent_openai_backend_gets_the_tool_call_from_the_stream(server: str) -> None:
    """The agent's `openai` backend (streamed chat completions) against `dsv4 serve`."""
    import dsml
    from agent.backends.base import CancelToken, StepRequest
    from agent.backends.openai import OpenAIBackend

    backend = OpenAIBackend(
        base_url=f"{server}/v1",
        model="tiny",
        extra_body={
            "structured_outputs": {"regex": re.escape(CALL_TEXT)},
            "chat_template_kwargs": {"thinking": False},
        },
    )
    messages = [
        dsml.SystemMessage(content="You answer with tools."),
        dsml.UserMessage(content="What is the weather in Paris?"),
    ]
    request = StepRequest(
        prompt="",
        messages=messages,
        tools=[TOOL["function"]],
        thinking_mode="chat",
        max_tokens=200,
    )
    done = backend.open_session().extend(request, lambda _: None, CancelToken())
    turn = dsml.parse_completion(done.text, "chat", tools=[TOOL["function"]])
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("get_weather", {"city": "Paris", "days": 3})
    ]
    assert turn.content == "Let me check."


def test_reasoning_parser_splits_reasoning_from_content(checkpoint: Path) -> None:
    from agent.vllm_parsers import DsmlReasoningParser, DsmlTokenizer

    tok = DsmlTokenizer.from_pretrained(checkpoint)
    thinking = DsmlReasoningParser(tok)
    chat = DsmlReasoningParser(tok, chat_template_kwargs={"thinking": False})
    text = f"I should call the tool.{THINK_END}Let me check."
    assert thinking.extract_reasoning(text, None) == ("I should call the tool.", "Let me check.")
    assert chat.extract_reasoning(text, None) == (None, text)
    end = tok.convert_tokens_to_ids(THINK_END)
    other = [i for i in range(20) if i != end][:3]
    assert thinking.is_reasoning_end([other[0], end]) and not thinking.is_reasoning_end(other)
    assert thinking.extract_content_ids([other[0], end, *other[1:]]) == other[1:]
    # Streaming: the delta that crosses </think> is split between the two fields.
    delta = thinking.extract_reasoning_streaming("I should", text, text[8:], [], [], [])
    assert (delta.reasoning, delta.content) == (" call the tool.", "Let me check.")


def test_tool_parser_streams_the_arguments_in_fragments(checkpoint: Path) -> None:
    """vLLM's streaming path: the call's JSON arguments arrive piece by piece as the DSML
    parameters do (string values escaped as they come), and join to the validated call's."""
    from types import SimpleNamespace

    from agent.vllm_parsers import DsmlTokenizer, DsmlToolParser

    parser = DsmlToolParser(DsmlTokenizer.from_pretrained(checkpoint))
    request = SimpleNamespace(tools=[TOOL])
    text = CALL_TEXT.replace("Paris", 'Paris "rive gauche"')
    names, fragments, previous = [], [], ""
    for i in range(0, len(text), 3):
        delta = text[i : i + 3]
        msg = parser.extract_tool_calls_streaming(
            previous, previous + delta, delta, [], [], [], request
        )
        previous += delta
        for call in msg.tool_calls if msg else []:
            names += [call.function.name] if call.function.name else []
            fragments += [call.function.arguments] if call.function.arguments else []
    assert names == ["get_weather"]
    assert len(fragments) > 3, fragments
    want = {"city": 'Paris "rive gauche"', "days": 3}
    # The string value went out, escaped, before the call ended.
    assert json.dumps(want["city"])[1:-1] in "".join(fragments[:-1])
    assert "".join(fragments) == json.dumps(want, ensure_ascii=False)
