"""The `openai` backend against a real HTTP server on 127.0.0.1 whose text comes from the
embedded engine (the tiny random model), in chat and raw-completions modes: like a vLLM server,
it keeps the last prompt's cache and extends it when a request continues it."""

import importlib.util
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tools
from agent import events as ev
from agent.api import Agent
from agent.backends.embedded import untrained_tiny_model
from agent.backends.openai import OpenAIBackend
from agent.config import AgentConfig

_spec = importlib.util.spec_from_file_location(
    "openai_server", Path(__file__).with_name("test_backend_openai.py")
)
_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_server)
FakeDeepSeek = _server.FakeDeepSeek


class EngineGenerator:
    """Continues prompts with the engine, reusing the cached prefix of the previous request."""

    def __init__(self) -> None:
        from model import Engine, ModelConfig, SamplingParams

        model, self.tokenizer = untrained_tiny_model(ModelConfig)
        self.engine, self.sampling = Engine(model, self.tokenizer), SamplingParams()
        self.session, self.text = None, ""
        self.lock = threading.Lock()
        self.reused: list[int] = []

    def __call__(self, prompt: str, max_tokens: int) -> Iterator[str]:
        """Stream the continuation token by token (the engine runs in a thread)."""
        pieces: queue.Queue[str | None] = queue.Queue()
        with self.lock:
            if self.session is not None and prompt.startswith(self.text):
                self.reused.append(self.session.num_tokens)
                new = prompt[len(self.text) :]
            else:
                self.reused.append(0)
                self.session, new = self.engine.new_session(), prompt
            decoder = self.tokenizer.stream()

            def generate() -> None:
                self.engine.extend(self.session, self.tokenizer.encode(new))
                self.engine.generate(
                    self.session,
                    max_tokens,
                    self.sampling,
                    stop_ids=(self.tokenizer.eos_id,),
                    on_token=lambda t: pieces.put(decoder.push(t)),
                )
                pieces.put(decoder.flush())
                pieces.put(None)

            worker = threading.Thread(target=generate)
            worker.start()
            text = ""
            while (piece := pieces.get()) is not None:
                text += piece
                if piece:
                    yield piece
            worker.join()
            self.text = prompt + text


@pytest.fixture(scope="module")
def server():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small forwards on shared cores: one thread is much faster
    server = FakeDeepSeek(EngineGenerator())
    yield server
    server.close()
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["completions", "chat"])
def test_a_run_over_http_from_the_engine_ends_with_a_status(tmp_path, server, mode):
    cfg = AgentConfig(
        sessions_dir=tmp_path / "s",
        system_prompt="Agent.",
        approval={"mode": "auto"},
        limits={"max_steps": 2},
        backend={"max_tokens_per_step": 6},
    )
    backend = OpenAIBackend(base_url=server.url, model="tiny", api_mode=mode)
    events = []
    box = tools.LocalSandbox(tmp_path)
    try:
        result = Agent(
            cfg, backend=backend, sandbox=box, tools=[tools.SubmitTool()], on_event=events.append
        ).run("Say hello.")
    finally:
        box.stop()
    assert result.status not in (ev.RunStatus.error, ev.RunStatus.backend_error), result.summary
    assert result.totals.steps == 2 and result.totals.generated_tokens > 0
    usages = [e.usage for e in events if isinstance(e, ev.StepFinished)]
    assert all(u.prompt_tokens > 0 for u in usages)
    if mode == "completions":  # the second request continued the first: the server reused it
        assert server.generate.reused[-1] > 0
