"""The `embedded` backend with the tiny random model (the stand-in until the trained default
model is installed): a run ends cleanly with a status whatever the model writes, each step
prefills only the new tokens, the cache holds the exact ids, and a saved cache resumes with no
re-prefill."""

import pytest

import dsml
import tools
from agent import events as ev
from agent.api import Agent
from agent.backends import embedded
from agent.backends.base import BackendError, CancelToken, StepRequest
from agent.config import AgentConfig, load_config


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """The default embedded backend on a machine without the trained model installed."""
    import torch

    missing = tmp_path_factory.mktemp("no-model") / "default"
    original, shipped = embedded.DEFAULT_MODEL_DIR, embedded.SHIPPED_MODEL_DIR
    threads = torch.get_num_threads()
    embedded.DEFAULT_MODEL_DIR = embedded.SHIPPED_MODEL_DIR = missing
    # Small forwards on shared cores: one thread is many times faster than torch's spinning pool.
    torch.set_num_threads(1)
    try:
        cfg = load_config(
            {"backend.kind": "embedded"}, env={}, user_file=None, project_dir=missing.parent
        )
        yield embedded.from_config(cfg)
    finally:
        embedded.DEFAULT_MODEL_DIR, embedded.SHIPPED_MODEL_DIR = original, shipped
        torch.set_num_threads(threads)


@pytest.fixture
def sandbox(tmp_path):
    box = tools.LocalSandbox(tmp_path)
    yield box
    box.stop()


def small_agent(tmp_path, model, sandbox, events, sampling=None, **config):
    # A short prompt keeps the CPU prefill of the tiny model quick.
    cfg = AgentConfig(
        sessions_dir=tmp_path / "sessions",
        system_prompt="Agent.",
        approval={"mode": "auto"},
        backend={"max_tokens_per_step": 6, **(sampling or {})},
        **{"limits": {"max_steps": 2}, **config},
    )
    return Agent(
        cfg,
        backend=model,
        sandbox=sandbox,
        tools=[tools.BashTool(), tools.SubmitTool()],
        on_event=events.append,
    )


def test_without_the_trained_model_the_untrained_stand_in_says_so(backend):
    assert backend.name == "embedded" and backend.model == "untrained-tiny"
    assert "UNTRAINED" in backend.note and "default model is not installed" in backend.note
    with pytest.raises(BackendError, match="no checkpoint there"):
        embedded.from_config(AgentConfig(backend={"model": "/nonexistent/checkpoint"}))


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 7}])
def test_a_run_ends_cleanly_with_a_status_whatever_the_model_writes(
    tmp_path, backend, sandbox, sampling
):
    events = []
    agent = small_agent(tmp_path, backend, sandbox, events, sampling)
    result = agent.run("Say hello.")
    assert result.status not in (ev.RunStatus.error, ev.RunStatus.backend_error), result.summary
    assert isinstance(events[-1], ev.RunFinished) and events[-1].status == result.status
    assert events[0].note == backend.note  # the user is told up front
    assert not any(isinstance(e, ev.ErrorEvent) for e in events)


def test_each_step_prefills_only_the_new_tokens_and_the_cache_keeps_exact_ids(
    tmp_path, backend, sandbox
):
    events = []
    agent = small_agent(
        tmp_path, backend, sandbox, events, limits={"max_steps": 2, "max_format_failures": 5}
    )
    result = agent.run("Say hello.")  # greedy
    assert result.status not in (ev.RunStatus.error, ev.RunStatus.backend_error), result.summary
    assert result.totals.steps == 2
    starts = [e for e in events if isinstance(e, ev.StepStarted)]
    usages = [e.usage for e in events if isinstance(e, ev.StepFinished)]
    assert usages[0].cached_tokens == 0
    assert usages[1].cached_tokens == usages[0].context_tokens  # the whole first step reused
    assert usages[1].prompt_tokens - usages[1].cached_tokens == starts[1].prompt_tokens
    # The engine's cache is prompt, completion, prompt, completion: the exact ids, appended.
    tok = backend.tokenizer
    conv = agent.conversation
    ids = agent._session.session.token_ids
    assert len(ids) == usages[1].context_tokens and usages[1].cache_bytes > 0
    first_prompt = tok.encode(dsml.encode_messages(conv.messages[:2], "thinking"))
    first_completion = ids[len(first_prompt) : usages[0].context_tokens]
    assert ids[: len(first_prompt)] == first_prompt
    assert tok.decode(first_completion) == conv.raws[2]  # the turn as written, token for token
    # A fork shares everything so far and then goes its own way.
    twin = agent._session.fork()
    request = StepRequest(
        prompt="<｜User｜>x<｜Assistant｜><think>", messages=[], tools=[], max_tokens=1
    )
    twin.extend(request, lambda text: None, CancelToken())
    assert twin.context_tokens > len(ids) and agent._session.session.token_ids == ids
    assert twin.session.token_ids[: len(ids)] == ids


def test_a_saved_cache_resumes_without_re_prefill(tmp_path, backend, sandbox):
    events = []
    agent = small_agent(tmp_path, backend, sandbox, events, limits={"max_steps": 1})
    first = agent.run("Say hello.")
    held = list(agent._session.session.token_ids)
    agent.close()
    resumed_events = []
    cfg = agent.config.model_copy(
        update={"limits": agent.config.limits.model_copy(update={"max_steps": 1})}
    )
    again = Agent.resume(
        first.session_id,
        cfg,
        backend=backend,
        sandbox=sandbox,
        tools=[tools.BashTool(), tools.SubmitTool()],
        on_event=resumed_events.append,
    )
    assert again._session.session.token_ids == held  # loaded, not recomputed
    again.send("Go on.")
    usage = next(e.usage for e in resumed_events if isinstance(e, ev.StepFinished))
    assert usage.cached_tokens == len(held)
    step = next(e for e in resumed_events if isinstance(e, ev.StepStarted))
    assert usage.prompt_tokens - usage.cached_tokens == step.prompt_tokens < len(held) // 4


def test_without_an_installed_model_the_shipped_dsv4_tiny_is_the_default(tmp_path):
    from pathlib import Path

    import torch

    import model

    # Set both: the module fixture above may still hold them pointed at an empty folder.
    original = embedded.DEFAULT_MODEL_DIR, embedded.SHIPPED_MODEL_DIR
    threads = torch.get_num_threads()
    embedded.DEFAULT_MODEL_DIR = tmp_path / "default"
    shipped = embedded.SHIPPED_MODEL_DIR = Path(model.__file__).parent / "default"
    try:
        cfg = load_config(
            {"backend.kind": "embedded"}, env={}, user_file=None, project_dir=tmp_path
        )
        backend = embedded.from_config(cfg)
    finally:
        embedded.DEFAULT_MODEL_DIR, embedded.SHIPPED_MODEL_DIR = original
        torch.set_num_threads(threads)
    assert backend.model == "dsv4-tiny"
    assert (shipped / "model.safetensors").exists()
