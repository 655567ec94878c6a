"""Limits (steps, generated tokens, wall time, cost, context) each stop a run with its own
status and are reported; cancel stops the generation or the tool in flight, keeps the state, and
the session goes on."""

import asyncio
import contextlib
import threading
import time

import pytest

import dsml
import tools
from agent import events as ev
from agent.api import Agent
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig


def turn(reasoning="", *calls, content=""):
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


ECHO = turn("Next.", ("bash", {"command": "echo step"}))
SUBMIT = turn("Done.", ("submit", {"summary": "finished"}))


@pytest.fixture
def sandbox(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    box = tools.DockerSandbox(tools.SandboxConfig(project_dir=project, mount="bind"))
    yield box
    box.stop()


def make_agent(tmp_path, sandbox, script, backend_kwargs=None, **config):
    cfg = AgentConfig(
        sessions_dir=tmp_path / "sessions", **{"approval": {"mode": "auto"}, **config}
    )
    events = []
    backend = ScriptedBackend(script, **(backend_kwargs or {}))
    return Agent(cfg, backend=backend, sandbox=sandbox, on_event=events.append), events


def test_step_limit(tmp_path, sandbox):
    agent, _ = make_agent(tmp_path, sandbox, [ECHO] * 10, limits={"max_steps": 3})
    result = agent.run("go")
    assert result.status == ev.RunStatus.step_limit and result.status.is_limit
    assert result.totals.steps == 3 and "3 steps" in result.summary


def test_generated_token_limit_also_caps_each_step(tmp_path, sandbox):
    agent, events = make_agent(tmp_path, sandbox, [ECHO] * 10, limits={"max_generated_tokens": 40})
    result = agent.run("go")
    assert result.status == ev.RunStatus.token_limit
    assert result.totals.generated_tokens == 40  # the last step was cut to what was left
    assert [e.finish_reason for e in events if isinstance(e, ev.StepFinished)][-1] == "length"


def test_cost_limit_from_the_price_table(tmp_path, sandbox):
    prices = {
        "priced": {
            "input_per_mtok": 100.0,
            "cached_input_per_mtok": 10.0,
            "output_per_mtok": 1000.0,
        }
    }
    agent, events = make_agent(
        tmp_path, sandbox, [ECHO] * 10, {"model": "priced"}, prices=prices, limits={"max_cost": 0.3}
    )
    result = agent.run("go")
    usages = [e.usage for e in events if isinstance(e, ev.StepFinished)]
    first = usages[0]
    expected = (first.prompt_tokens * 100 + first.generated_tokens * 1000) / 1e6
    assert first.cached_tokens == 0 and first.cost == pytest.approx(expected)
    second = usages[1]
    assert second.cached_tokens == first.context_tokens  # the cache held the whole first step
    assert result.status == ev.RunStatus.cost_limit
    assert (
        result.totals.cost == pytest.approx(sum(u.cost for u in usages))
        and result.totals.cost >= 0.3
    )


def test_wall_time_limit_stops_a_generation_in_flight(tmp_path, sandbox):
    agent, events = make_agent(
        tmp_path, sandbox, [ECHO * 50, SUBMIT], {"delay_s": 0.01}, limits={"max_wall_time_s": 0.5}
    )
    result = agent.run("go")
    assert result.status == ev.RunStatus.time_limit and result.totals.steps == 1
    assert [e.finish_reason for e in events if isinstance(e, ev.StepFinished)] == ["cancelled"]
    agent.config.limits.max_wall_time_s = None
    assert agent.send("go on").status == ev.RunStatus.submitted  # the session continues


def test_context_limit_stops_before_the_window_is_full(tmp_path, sandbox):
    agent, _ = make_agent(
        tmp_path,
        sandbox,
        [ECHO] * 10,
        {"context_limit": 2500},
        limits={"context_margin_tokens": 500},
    )
    result = agent.run("go")
    assert result.status == ev.RunStatus.context_limit
    assert "context limit" in result.summary and result.totals.context_tokens <= 2000
    # Nothing was summarised or dropped: the conversation holds every step.
    assert sum(m.role == "assistant" for m in agent.conversation.messages) == result.totals.steps


def test_cancel_during_generation_keeps_the_partial_turn_and_the_session_continues(
    tmp_path, sandbox
):
    slow = turn("Thinking very slowly. " * 40, ("bash", {"command": "echo never"}))
    agent, events = make_agent(tmp_path, sandbox, [slow, SUBMIT], {"delay_s": 0.01})
    deltas = []

    def cancel_after_some_reasoning(event):
        if event.type == "reasoning_delta":
            deltas.append(event.text)
            if len(deltas) == 5:
                agent.cancel()

    agent.subscribe(cancel_after_some_reasoning)
    result = agent.run("go")
    assert result.status == ev.RunStatus.cancelled
    partial = agent.conversation.raws[len(agent.conversation.messages) - 1]
    assert 0 < len(partial) < len(slow) and not any(isinstance(e, ev.ToolOutput) for e in events)
    result = agent.send("please finish")
    assert result.status == ev.RunStatus.submitted, result.summary
    prompts = agent._session.prompts
    # The open turn is closed, then the new message is appended; nothing before is rewritten.
    assert (
        prompts[1] == "</think><｜end▁of▁sentence｜><｜User｜>please finish<｜Assistant｜><think>"
    )


def test_cancel_during_a_tool_kills_its_command_and_the_session_continues(tmp_path, sandbox):
    sleep = "sleep 60.37"  # a duration of our own: the count below sees only this command
    count = f"pgrep -cfx '{sleep}'"
    script = [
        turn(
            "",
            ("bash", {"command": f"echo begun; {sleep}; echo late"}),
            ("bash", {"command": "echo second"}),
        ),
        SUBMIT,
    ]
    agent, events = make_agent(tmp_path, sandbox, script)

    def cancel_when_running(event):
        if isinstance(event, ev.ToolCallFinished):
            threading.Timer(0.5, agent.cancel).start()

    agent.subscribe(cancel_when_running)
    t0 = time.monotonic()
    result = agent.run("go")
    assert result.status == ev.RunStatus.cancelled
    assert time.monotonic() - t0 < 15  # not the 60 s the command would take
    assert sandbox.exec(count, timeout=10).output.strip() == "0"  # killed, not left running
    outputs = [e for e in events if isinstance(e, ev.ToolOutput)]
    assert outputs[0].text.startswith("Interrupted") and outputs[1].text.startswith("Not run")
    assert "begun" in outputs[0].text and "late" not in outputs[0].text
    assert "[interrupted:" in outputs[0].text and outputs[0].data["interrupted"] is True
    result = agent.send(None)  # the two results go to the model; it submits
    assert result.status == ev.RunStatus.submitted
    assert agent._session.prompts[1].count("<tool_result>") == 2
    assert "[interrupted:" in agent._session.prompts[1]


def test_leaving_the_event_stream_early_cancels_the_run(tmp_path, sandbox):
    agent, _ = make_agent(tmp_path, sandbox, [ECHO * 40, SUBMIT], {"delay_s": 0.01})

    async def first_deltas():
        n = 0
        async with contextlib.aclosing(agent.stream("go")) as events:
            async for event in events:
                n += event.type.endswith("_delta")
                if n == 3:
                    break

    asyncio.run(first_deltas())
    assert agent.last_result.status == ev.RunStatus.cancelled
    assert agent.send("finish").status == ev.RunStatus.submitted
