"""The agent loop with the scripted backend and tools in a real Docker sandbox: submitting,
answering, several calls in a turn, malformed calls, tool errors, approval, append-only prompts."""

import asyncio
import json
from pathlib import Path

import pytest

import dsml
import tools
from agent import events as ev
from agent.api import Agent
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig


def turn(reasoning="", *calls, content=""):
    """The text the model writes for one turn (thinking mode), calls as (name, arguments)."""
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
    (project / "notes.txt").write_text("alpha\n")
    box = tools.DockerSandbox(tools.SandboxConfig(project_dir=project, mount="bind"))
    yield box
    box.stop()


def make_agent(tmp_path, sandbox, script, **config):
    cfg = AgentConfig(
        sessions_dir=tmp_path / "sessions", **{"approval": {"mode": "auto"}, **config}
    )
    events = []
    backend = ScriptedBackend(script)
    agent = Agent(cfg, backend=backend, sandbox=sandbox, on_event=events.append)
    return agent, backend, events


def types(events):
    return [e.type for e in events if not e.type.endswith("_delta")]


def test_a_task_runs_to_submit_with_several_calls_per_turn_in_order(tmp_path, sandbox):
    script = [
        turn(
            "Look first.",
            ("bash", {"command": "cat notes.txt"}),
            ("write_file", {"path": "out.txt", "content": "beta\n"}),
            ("bash", {"command": "cat out.txt notes.txt"}),
        ),
        turn("Done.", ("submit", {"summary": "wrote out.txt"})),
    ]
    agent, backend, events = make_agent(tmp_path, sandbox, script)
    result = agent.run("write beta to out.txt")
    assert (result.status, result.summary) == (ev.RunStatus.submitted, "wrote out.txt")
    assert (Path(sandbox.config.project_dir) / "out.txt").read_text() == "beta\n"
    outputs = [e for e in events if isinstance(e, ev.ToolOutput)]
    assert [o.tool for o in outputs] == ["bash", "write_file", "bash", "submit"]
    assert outputs[0].text.startswith("alpha") and "beta\nalpha" in outputs[2].text
    started = [e.call_id for e in events if isinstance(e, ev.ToolCallStarted)]
    assert [o.call_id for o in outputs] == started and len(set(started)) == 4
    # Results join the conversation in call order, each under its call's id.
    tool_msgs = [m for m in agent.conversation.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_msgs] == started
    assert types(events)[:4] == ["run_started", "message", "message", "step_started"]
    assert types(events)[-2:] == ["step_finished", "run_finished"]
    assert [e.seq for e in events] == list(range(len(events)))
    assert result.totals.steps == 2 and result.totals.tool_calls == 4
    journal = [
        json.loads(line) for line in (result.session_dir / "events.jsonl").read_text().splitlines()
    ]
    assert [j["type"] for j in journal] == [e.type for e in events]


def test_prompts_are_only_ever_appended(tmp_path, sandbox):
    """What the backend holds (prompts and completions, in order) is exactly the rendering of
    the whole conversation: nothing earlier was re-rendered."""
    script = [
        turn("a", ("bash", {"command": "echo one"})),
        turn("b", ("bash", {"command": "echo two"}), ("bash", {"command": "exit 3"})),
        turn("c", content="All done."),
    ]
    agent, backend, _ = make_agent(tmp_path, sandbox, script)
    result = agent.run("count")
    assert result.status == ev.RunStatus.answered and result.summary == "All done."
    session = agent._session
    held = "".join(p + c for p, c in zip(session.prompts, script, strict=True))
    assert held == dsml.encode_messages(agent.conversation.messages, "thinking")
    result = agent.send("and once more")
    assert result.status == ev.RunStatus.backend_error  # the script has no fourth turn
    assert session.prompts[-1].startswith("<｜User｜>and once more")


def test_an_answer_without_a_call_ends_the_run(tmp_path, sandbox):
    agent, _, _ = make_agent(tmp_path, sandbox, [turn("easy", content="4")])
    result = agent.run("2+2?")
    assert (result.status, result.summary, result.totals.steps) == ("answered", "4", 1)


def test_tool_errors_go_to_the_model_and_never_end_the_run(tmp_path, sandbox):
    script = [
        turn("x", ("read_file", {"path": "missing.txt"})),
        turn("y", ("bash", {"command": "exit 7"})),
        turn("z", ("submit", {"summary": "ok"})),
    ]
    agent, _, events = make_agent(tmp_path, sandbox, script)
    result = agent.run("try")
    outputs = [e for e in events if isinstance(e, ev.ToolOutput)]
    assert result.status == "submitted" and [o.is_error for o in outputs][:2] == [True, True]
    assert result.totals.tool_errors == 2 and result.totals.format_errors == 0


def test_a_malformed_call_is_returned_as_an_error_the_model_can_correct(tmp_path, sandbox):
    bad = (
        'Oops.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="bash">\n'
        '<｜DSML｜parameter name="cmd" string="true">ls</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"
    )
    script = [
        bad,
        turn("fixed", ("bash", {"command": "ls"})),
        turn("", ("submit", {"summary": "s"})),
    ]
    agent, _, events = make_agent(tmp_path, sandbox, script)
    result = agent.run("list")
    finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert finished[0].error and "command" in finished[0].error
    first_result = next(m for m in agent.conversation.messages if m.role == "tool")
    assert first_result.tool_call_id == finished[0].call_id and "command" in first_result.content
    assert result.status == "submitted" and result.totals.format_errors == 1


def test_consecutive_format_failures_stop_the_run(tmp_path, sandbox):
    bad = turn("", ("no_such_tool", {"x": 1}))
    agent, _, _ = make_agent(tmp_path, sandbox, [bad] * 5, limits={"max_format_failures": 3})
    result = agent.run("go")
    assert result.status == ev.RunStatus.format_error and result.totals.steps == 3
    assert "no_such_tool" in result.summary


def test_a_turn_cut_off_by_the_token_limit_is_closed_before_the_next_prompt(tmp_path, sandbox):
    long_turn = turn("x" * 400, ("bash", {"command": "true"}))
    script = [long_turn, turn("", ("submit", {"summary": "s"}))]
    agent, backend, _ = make_agent(tmp_path, sandbox, script, backend={"max_tokens_per_step": 50})
    result = agent.run("go")
    prompts = agent._session.prompts
    assert result.status == "submitted" and result.totals.format_errors == 1
    assert prompts[1].startswith("</think><｜end▁of▁sentence｜><｜User｜>Your last turn was cut")


def test_headless_ask_mode_denies_shell_commands_and_tells_the_model(tmp_path, sandbox):
    script = [turn("", ("bash", {"command": "touch pwned"})), turn("", content="ok")]
    agent, _, events = make_agent(tmp_path, sandbox, script, approval={"mode": "ask"})
    assert agent.run("go").status == "answered"
    assert not (Path(sandbox.config.project_dir) / "pwned").exists()
    output = next(e for e in events if isinstance(e, ev.ToolOutput))
    assert output.is_error and "headless" in output.text
    assert any(isinstance(e, ev.ApprovalResolved) and not e.approved for e in events)


def test_stream_yields_journaled_events_and_waits_for_approve(tmp_path, sandbox):
    script = [
        turn("", ("bash", {"command": "echo approved > a.txt"})),
        turn("", ("submit", {"summary": "s"})),
    ]
    agent, _, _ = make_agent(tmp_path, sandbox, script, approval={"mode": "ask"})

    async def consume():
        seen = []
        async for event in agent.stream("go"):
            seen.append(event)
            if isinstance(event, ev.ApprovalRequested):
                agent.approve(event.request_id, True)
        return seen

    seen = asyncio.run(consume())
    assert seen[-1].type == "run_finished" and seen[-1].status == "submitted"
    assert (Path(sandbox.config.project_dir) / "a.txt").read_text() == "approved\n"
    journal = (agent.last_result.session_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in journal] == [e.seq for e in seen]


def test_the_suffix_renderer_matches_render_suffix_on_a_long_conversation(tmp_path, sandbox):
    script = [
        turn(f"r{i}", ("bash", {"command": f"echo {i}"}), ("bash", {"command": "true"}))
        for i in range(12)
    ] + [turn("", content="end")]
    agent, _, _ = make_agent(tmp_path, sandbox, script)
    agent.run("many steps")
    conv = agent.conversation
    for cut in range(2, len(conv.messages)):
        if conv.messages[cut - 1].role != "assistant":
            continue
        end = cut
        while end < len(conv.messages) and conv.messages[end].role == "tool":
            end += 1
        if end == cut:
            continue
        expected = dsml.render_suffix(conv.messages[:cut], conv.messages[cut:end], "thinking")
        assert conv._render(cut, end) == expected


FRAGMENTS = [
    "</think>",
    "<think>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜begin▁of▁sentence｜>",
    "\n\n<｜DSML｜tool_calls>\n",
    "</｜DSML｜tool_calls>",
    '<｜DSML｜invoke name="bash">\n',
    '<｜DSML｜invoke name="nope">\n',
    "</｜DSML｜invoke>\n",
    '<｜DSML｜parameter name="command" string="true">',
    '<｜DSML｜parameter name="x" string="false">',
    "</｜DSML｜parameter>\n",
    "<｜DSML｜",
    "｜｜DSML｜｜",
    "<invoke>",
    "{",
    "}",
    "echo hi",
    "\n",
    " ",
    "é",
    "\ufffd",
]


def test_whatever_the_model_writes_the_run_ends_with_a_status(tmp_path, sandbox):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pieces = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=5), max_size=25)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(pieces.map("".join), min_size=1, max_size=3))
    def check(script):
        agent, _, events = make_agent(
            tmp_path,
            sandbox,
            script,
            approval={"mode": "auto", "rules": [{"tool": "bash", "action": "deny"}]},
        )
        result = agent.run("anything")
        assert result.status not in (ev.RunStatus.error,), result.summary
        assert events[-1].type == "run_finished"
        agent.close()

    check()


def test_chat_mode_and_max_reasoning_effort_render_as_the_format_says(tmp_path, sandbox):
    def chat_turn(content, *calls):
        message = dsml.AssistantMessage(
            content=content, tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls]
        )
        return dsml.render_suffix([dsml.UserMessage(content="")], [message], "chat")

    script = [chat_turn("Listing.", ("bash", {"command": "ls"})), chat_turn("Done.")]
    agent, backend, events = make_agent(tmp_path, sandbox, script, thinking_mode="chat")
    result = agent.run("list")
    assert (result.status, result.summary) == (ev.RunStatus.answered, "Done.")
    prompts = agent._session.prompts
    assert all(p.endswith("<｜Assistant｜></think>") for p in prompts)
    assert not any(isinstance(e, ev.ReasoningDelta) for e in events)
    held = "".join(p + c for p, c in zip(prompts, script, strict=True))
    assert held == dsml.encode_messages(agent.conversation.messages, "chat")

    agent, _, _ = make_agent(tmp_path, sandbox, [turn("", content="ok")], reasoning_effort="max")
    agent.run("think hard")
    expected = dsml.encode_messages(
        agent.conversation.messages[:2], "thinking", reasoning_effort="max"
    )
    assert agent._session.prompts[0] == expected and "Reasoning Effort" in expected
