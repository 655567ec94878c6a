"""The `openai` backend against a real HTTP server on 127.0.0.1: an OpenAI-compatible server in
this file (chat completions with tools and reasoning_content, raw completions, SSE streaming)
whose text comes from the embedded engine's tiny random model or from a fixed completion.
Also retries on 429/5xx and clear errors on 4xx."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import dsml
import tools
from agent import events as ev
from agent.api import Agent
from agent.backends import make_backend
from agent.backends.base import BackendError, CancelToken, StepRequest
from agent.backends.openai import OpenAIBackend
from agent.config import AgentConfig, load_config

EOS = "<｜end▁of▁sentence｜>"
Generate = Callable[[str, int], Iterator[str]]


class FakeDeepSeek:
    """An OpenAI-compatible server: renders chat requests with dsml (as DeepSeek's API does),
    continues the prompt with `generate`, and streams the answer back as SSE chunks."""

    def __init__(self, generate: Generate) -> None:
        self.generate = generate
        self.requests: list[tuple[str, dict]] = []
        self.auth: list[str | None] = []
        self.failures: list[tuple[int, dict]] = []  # (status, headers) answered first, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                server.auth.append(self.headers.get("Authorization"))
                if server.failures:
                    status, headers = server.failures.pop(0)
                    payload = json.dumps({"error": {"message": f"status {status} for test"}})
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload.encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = (
                    server._chat(body)
                    if self.path.endswith("/chat/completions")
                    else server._complete(body)
                )
                try:
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a cancel)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _usage(self, prompt: str, generated: int) -> dict:
        prompt_tokens = len(prompt) // 4
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": generated,
            "prompt_cache_hit_tokens": prompt_tokens // 2,
        }

    def _complete(self, body: dict) -> Iterator[dict]:
        text, n = "", 0
        for piece in self.generate(body["prompt"], body["max_tokens"]):
            n += 1
            if piece == EOS:  # like vLLM: the stop token ends the text and is not sent
                yield {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
                break
            text += piece
            yield {"choices": [{"index": 0, "text": piece, "finish_reason": None}]}
        else:
            yield {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        yield {"choices": [], "usage": self._usage(body["prompt"], n)}

    def _chat(self, body: dict) -> Iterator[dict]:
        messages = dsml.from_openai_messages(body["messages"])
        if body.get("tools"):
            messages[0].tools = [dsml.ToolSpec.coerce(t) for t in body["tools"]]
        prompt = dsml.encode_messages(messages, "thinking")
        parser = dsml.StreamParser("thinking", tools=body.get("tools"))
        n, finish = 0, "length"

        def delta(d):
            return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}

        for piece in self.generate(prompt, body["max_tokens"]):
            n += 1
            for event in parser.feed(piece):
                match event:
                    case dsml.events.ReasoningDelta(text=t):
                        yield delta({"reasoning_content": t})
                    case dsml.events.ContentDelta(text=t):
                        yield delta({"content": t})
                    case dsml.events.ToolCallFinished(index=i, call=call) if call is not None:
                        yield delta(
                            {
                                "tool_calls": [
                                    {
                                        "index": i,
                                        "id": f"srv_{i}",
                                        "type": "function",
                                        "function": {
                                            "name": call.name,
                                            "arguments": json.dumps(call.arguments),
                                        },
                                    }
                                ]
                            }
                        )
                    case dsml.events.TurnEnded(turn=turn):
                        finish = "tool_calls" if turn.tool_calls else "stop"
            if finish != "length":
                break
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {"choices": [], "usage": self._usage(prompt, n)}


def fixed(*completions: str, delay: float = 0.0) -> Generate:
    """A generator that writes the given completions, one per request, in 7-character pieces."""
    queue = list(completions)

    def generate(prompt: str, max_tokens: int) -> Iterator[str]:
        text = queue.pop(0)
        body, eos = (text[: -len(EOS)], True) if text.endswith(EOS) else (text, False)
        for i in range(0, len(body), 7):
            time.sleep(delay)
            yield body[i : i + 7]
        if eos:
            yield EOS

    return generate


def turn(reasoning="", *calls, content=""):
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


@pytest.fixture
def sandbox(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    box = tools.DockerSandbox(tools.SandboxConfig(project_dir=project, mount="bind"))
    yield box
    box.stop()


def agent_for(server, tmp_path, sandbox, mode, events=None, **backend):
    cfg = AgentConfig(
        sessions_dir=tmp_path / "sessions", approval={"mode": "auto"}, limits={"max_steps": 6}
    )
    b = OpenAIBackend(
        base_url=server.url,
        model="deepseek-chat",
        api_key="sk-test",
        api_mode=mode,
        retry_backoff_s=0.01,
        **backend,
    )
    return Agent(
        cfg, backend=b, sandbox=sandbox, on_event=events.append if events is not None else None
    )


def test_chat_mode_sends_reasoning_and_tool_calls_back_as_deepseek_requires(tmp_path, sandbox):
    server = FakeDeepSeek(
        fixed(
            turn("I should list.", ("bash", {"command": "echo hi"})),
            turn("Now submit.", ("submit", {"summary": "listed"})),
        )
    )
    events = []
    try:
        result = agent_for(server, tmp_path, sandbox, "chat", events).run("list things")
    finally:
        server.close()
    assert result.status == ev.RunStatus.submitted and result.summary == "listed"
    (_, first), (_, second) = server.requests
    assert first["stream"] and [t["function"]["name"] for t in first["tools"]][0] == "bash"
    assert "tools" not in first["messages"][0]  # sent once, as the request's `tools`
    assistant = second["messages"][2]
    assert assistant["reasoning_content"] == "I should list."
    call_id = assistant["tool_calls"][0]["id"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"command": "echo hi"}
    assert second["messages"][3] == {
        "role": "tool",
        "tool_call_id": call_id,
        "content": "hi\n[exit code 0]",
    }
    assert [e.text for e in events if isinstance(e, ev.ReasoningDelta)][0].startswith("I")
    usage = [e.usage for e in events if isinstance(e, ev.StepFinished)][0]
    assert usage.prompt_tokens > 0 and usage.cached_tokens == usage.prompt_tokens // 2


def test_completions_mode_sends_our_prompt_and_only_ever_appends(tmp_path, sandbox):
    script = [turn("a", ("bash", {"command": "echo one"})), turn("b", ("submit", {"summary": "s"}))]
    server = FakeDeepSeek(fixed(*script))
    try:
        agent = agent_for(server, tmp_path, sandbox, "completions")
        result = agent.run("go")
    finally:
        server.close()
    assert result.status == ev.RunStatus.submitted
    (path, first), (_, second) = server.requests
    assert path == "/v1/completions" and first["skip_special_tokens"] is False
    assert second["prompt"].startswith(first["prompt"] + script[0])  # EOS kept in the prompt
    conv = agent.conversation
    held = agent._session.prompt  # everything sent and received, exactly
    assert held == dsml.encode_messages(conv.messages[: conv.in_context], "thinking")


def test_429_and_5xx_are_retried_with_backoff(tmp_path, sandbox):
    server = FakeDeepSeek(fixed(turn("", content="fine")))
    server.failures = [(429, {"Retry-After": "0"}), (503, {}), (500, {})]
    try:
        result = agent_for(server, tmp_path, sandbox, "chat").run("hello")
    finally:
        server.close()
    assert result.status == ev.RunStatus.answered and result.summary == "fine"
    assert len(server.requests) == 4


def test_retries_give_up_after_max_retries_with_a_clear_error(tmp_path, sandbox):
    server = FakeDeepSeek(fixed())
    server.failures = [(503, {})] * 3
    try:
        result = agent_for(server, tmp_path, sandbox, "chat", max_retries=2).run("hello")
    finally:
        server.close()
    assert result.status == ev.RunStatus.backend_error and "HTTP 503" in result.summary
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "status,hint", [(401, "DEEPSEEK_API_KEY"), (404, "base_url"), (400, "rejected")]
)
def test_4xx_is_not_retried_and_says_what_to_check(status, hint):
    server = FakeDeepSeek(fixed())
    server.failures = [(status, {})]
    backend = OpenAIBackend(base_url=server.url, model="m", api_mode="chat")
    request = StepRequest(prompt="", messages=[dsml.UserMessage(content="hi")], tools=[])
    try:
        with pytest.raises(BackendError, match=f"HTTP {status}.*{hint}"):
            backend.open_session().extend(request, lambda t: None, CancelToken())
    finally:
        server.close()
    assert len(server.requests) == 1


def test_a_connection_refused_is_a_backend_error_not_a_crash(tmp_path, sandbox):
    cfg = AgentConfig(sessions_dir=tmp_path / "s")
    backend = OpenAIBackend(
        base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, retry_backoff_s=0.01
    )
    result = Agent(cfg, backend=backend, sandbox=sandbox).run("hello")
    assert result.status == ev.RunStatus.backend_error and "connection failed" in result.summary


def test_cancel_stops_the_stream_and_the_session_continues(tmp_path, sandbox):
    long = turn("thinking " * 200, ("bash", {"command": "echo x"}))
    server = FakeDeepSeek(fixed(long, turn("", content="ok"), delay=0.005))
    try:
        agent = agent_for(server, tmp_path, sandbox, "completions")
        n = []

        def cancel_soon(event):
            if event.type == "reasoning_delta":
                n.append(1)
                if len(n) == 10:
                    agent.cancel()

        agent.subscribe(cancel_soon)
        assert agent.run("go").status == ev.RunStatus.cancelled
        assert agent.send("just say ok").status == ev.RunStatus.answered
    finally:
        server.close()
    second = server.requests[1][1]["prompt"]
    assert "</think><｜end▁of▁sentence｜><｜User｜>just say ok" in second


def test_the_api_key_comes_from_deepseek_api_key_through_the_config(tmp_path, sandbox):
    server = FakeDeepSeek(fixed(turn("", content="hi")))
    cfg = load_config(
        {"backend": {"kind": "openai", "base_url": server.url, "model": "deepseek-chat"}},
        env={"DEEPSEEK_API_KEY": "sk-from-env"},
        user_file=None,
        project_dir=tmp_path,
    )
    cfg.sessions_dir = tmp_path / "sessions"
    try:
        result = Agent(cfg, backend=make_backend(cfg), sandbox=sandbox).run("hello")
    finally:
        server.close()
    assert result.status == ev.RunStatus.answered and server.auth == ["Bearer sk-from-env"]
