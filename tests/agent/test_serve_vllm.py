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
        deadline = time.monotonic() + 300
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
            pytest.fail(f"dsv4 serve not ready in 300 s:\n{log.read_text()[-4000:]}")
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
