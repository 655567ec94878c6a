"""DeepSeek-V4 inside vLLM's CPU engine (our plugin): parity with the model and prefix reuse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from model import DeepseekV4, Engine, ModelConfig, SamplingParams, load_checkpoint, save_checkpoint

MAX_NEW = 6
# Different lengths, batched together: shorter than the window (32), longer than the window and
# several ratio-4 blocks, and longer than several ratio-128 blocks.
PROMPT_LENS = (5, 45, 300, 700)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine]:
    """A tiny checkpoint stored as the release stores it (FP8 / FP4 with scales), and our own
    engine on the same file (both dequantise it with model/'s loader)."""
    directory = tmp_path_factory.mktemp("tiny-dsv4")
    net = DeepseekV4(ModelConfig.preset("tiny"))
    net.init_weights(seed=0)
    save_checkpoint(net, directory, quantize=True)
    return directory, Engine(load_checkpoint(directory))


@pytest.fixture(scope="module")
def llm(tiny: tuple[Path, DeepseekV4]):
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    import model.vllm_plugin

    model.vllm_plugin.register()
    engine = LLM(
        model=str(tiny[0]),
        config_format="dsv4",
        skip_tokenizer_init=True,
        dtype="float32",
        enforce_eager=True,
        distributed_executor_backend="uni",
        max_model_len=1024,
        block_size=128,
        # Small steps: the 700-token prompt is prefilled in chunks, batched with the others.
        max_num_batched_tokens=256,
        enable_prefix_caching=True,
        kv_cache_memory_bytes=256 << 20,
        disable_log_stats=False,
    )
    yield engine
    del engine


def _prompts(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in PROMPT_LENS]


def _greedy_reference(engine: Engine, prompt: list[int], n: int) -> list[int]:
    """model/'s own engine: prefill, then greedy decoding from its own cache."""
    session = engine.new_session()
    engine.extend(session, prompt)
    return engine.generate(session, n, SamplingParams(temperature=0.0))


def _counter(llm, name: str) -> float:
    return sum(m.value for m in llm.get_metrics() if m.name == name)


def test_greedy_batch_matches_the_model_token_for_token(llm, tiny) -> None:
    from vllm import SamplingParams

    engine = tiny[1]
    prompts = _prompts(engine.model.cfg.vocab_size)
    params = SamplingParams(temperature=0, max_tokens=MAX_NEW, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    for prompt, out in zip(prompts, outs, strict=True):
        want = _greedy_reference(engine, prompt, MAX_NEW)
        assert list(out.outputs[0].token_ids) == want, f"prompt of {len(prompt)} tokens"


def test_second_request_extending_the_first_reuses_its_cached_blocks(llm, tiny) -> None:
    from vllm import SamplingParams

    engine = tiny[1]
    vocab = engine.model.cfg.vocab_size
    g = torch.Generator().manual_seed(7)
    first = torch.randint(0, vocab, (520,), generator=g).tolist()
    second = first + torch.randint(0, vocab, (30,), generator=g).tolist()
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    llm.generate([{"prompt_token_ids": first}], params, use_tqdm=False)
    queries = _counter(llm, "vllm:prefix_cache_queries")
    hits = _counter(llm, "vllm:prefix_cache_hits")
    out = llm.generate([{"prompt_token_ids": second}], params, use_tqdm=False)[0]
    new_queries = _counter(llm, "vllm:prefix_cache_queries") - queries
    new_hits = _counter(llm, "vllm:prefix_cache_hits") - hits
    # Hits land on whole 128-token blocks: the first 512 tokens of the 550.
    assert out.num_cached_tokens == 512
    assert (new_queries, new_hits) == (len(second), 512)
    # And what follows the cached blocks is still computed right.
    assert list(out.outputs[0].token_ids) == _greedy_reference(engine, second, 4)
