"""The agent's `vllm` backend: our model in vLLM's engine in this process, several sessions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.backends.base import CancelToken, Sampling, StepRequest
from model import DeepseekV4, Engine, ModelConfig, SamplingParams, load_checkpoint, save_checkpoint
from model.tokenizer import build_bpe_tokenizer

TEXT = "Run the tests. Read the file, fix the bug, write it back, and run the tests again. "


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("vllm-backend")
    tokenizer = build_bpe_tokenizer([TEXT] * 50, vocab_size=400)
    net = DeepseekV4(ModelConfig.preset("tiny", vocab_size=tokenizer.vocab_size))
    net.init_weights(seed=3)
    save_checkpoint(net, directory)
    tokenizer.save(directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def backend(checkpoint: Path):
    from agent.backends.vllm import VllmBackend

    b = VllmBackend(checkpoint, context_limit=1024, kv_cache_bytes=128 << 20)
    yield b
    b.close()


def _step(session, prompt: str, n: int, streamed: list[str] | None = None):
    req = StepRequest(prompt=prompt, messages=[], tools=[], max_tokens=n)
    return session.extend(req, (streamed if streamed is not None else []).append, CancelToken())


def test_sessions_stream_cache_and_match_the_engine(backend, checkpoint: Path) -> None:
    engine = Engine(load_checkpoint(checkpoint))
    tok = backend.tokenizer
    s = backend.open_session()
    streamed: list[str] = []
    first = _step(s, TEXT * 12, 8, streamed)
    assert first.text == "".join(streamed)
    assert first.generated_tokens == len(s.token_ids) - len(tok.encode(TEXT * 12))
    # The next step resends the whole context: vLLM serves its full blocks from the cache.
    second = _step(s, "Done?", 8)
    assert second.prompt_tokens == len(s.token_ids) - second.generated_tokens
    computed = first.prompt_tokens + first.generated_tokens - 1  # the last token is not fed yet
    assert first.prompt_tokens > 128
    assert second.cached_tokens == computed // 128 * 128
    # Same tokens as model/'s engine over the same two steps.
    ref = engine.new_session()
    for prompt, got in ((TEXT * 12, first), ("Done?", second)):
        engine.extend(ref, tok.encode(prompt))
        out = engine.generate(ref, 8, SamplingParams(), stop_ids=(tok.eos_id,))
        assert tok.decode(out) == got.text


def test_forks_run_concurrently_and_agree_with_running_alone(backend) -> None:
    base = backend.open_session()
    _step(base, TEXT * 3, 4)
    forks = [base.fork() for _ in range(3)]
    alone = _step(base.fork(), "Which test fails?", 6).text
    results: list[str | None] = [None] * 3

    def run(i: int) -> None:
        results[i] = _step(forks[i], "Which test fails?", 6).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert results == [alone] * 3


def test_cancel_stops_generation(backend) -> None:
    s = backend.open_session()
    cancel = CancelToken()
    cancel.cancel()
    req = StepRequest(prompt=TEXT, messages=[], tools=[], max_tokens=200, sampling=Sampling())
    done = s.extend(req, lambda _: None, cancel)
    assert done.finish_reason == "cancelled"
    assert done.generated_tokens < 200


def test_saved_session_loads_with_its_tokens(backend, tmp_path: Path) -> None:
    s = backend.open_session()
    _step(s, TEXT, 4)
    s.save(tmp_path)
    loaded = backend.load_session(tmp_path)
    assert loaded.token_ids == s.token_ids
    assert loaded.context_tokens == len(s.token_ids)
