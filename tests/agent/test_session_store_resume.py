"""Resume: a process killed with SIGKILL mid-step (during a generation, or during a tool) is
resumed in a new process with every completed event kept, from the saved backend session (no
re-prefill), and runs to the end."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dsml
import tools
from agent import events as ev
from agent.api import INTERRUPTED_CALL, Agent
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig
from tools.sandbox_admin import prune_sandboxes

CHILD = """
import json, sys
from pathlib import Path
import tools
from agent.api import Agent
from agent.backends.scripted import ScriptedBackend
from agent.config import AgentConfig

script, sessions, project = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
box = tools.DockerSandbox(tools.SandboxConfig(project_dir=project, mount="bind"))
cfg = AgentConfig(sessions_dir=sessions, approval={"mode": "auto"})
Agent(cfg, backend=ScriptedBackend(script, delay_s=0.01), sandbox=box).run("count to four")
"""


def turn(reasoning="", *calls, content=""):
    message = dsml.AssistantMessage(
        reasoning_content=reasoning,
        content=content,
        tool_calls=[dsml.ToolCall(name=n, arguments=a) for n, a in calls],
    )
    return dsml.render_suffix([dsml.UserMessage(content="")], [message], "thinking")


def run_child_until(tmp_path, script, ready, settle=0.0):
    """Start the agent in a child process; SIGKILL it `settle` s after `ready(events)` holds."""
    sessions, project = tmp_path / "sessions", tmp_path / "project"
    project.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(script), str(sessions), str(project)],
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            journals = list(sessions.glob("*/events.jsonl"))
            if journals:
                lines = journals[0].read_bytes().split(b"\n")[:-1]
                if ready([json.loads(line) for line in lines]):
                    break
            assert child.poll() is None, "the child ended before it could be killed"
            time.sleep(0.02)
        else:
            raise AssertionError("the child never reached the point to kill it")
        time.sleep(settle)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
        prune_sandboxes()  # the killed child's container
    return sessions, project, journals[0]


def resume(sessions, project, script):
    cfg = AgentConfig(sessions_dir=sessions, approval={"mode": "auto"})
    box = tools.DockerSandbox(tools.SandboxConfig(project_dir=project, mount="bind"))
    session_id = next(sessions.iterdir()).name
    return Agent.resume(session_id, cfg, backend=ScriptedBackend(script), sandbox=box), box


SCRIPT = [
    turn(
        f"Step {i}, thinking it over at some length. " * 4,
        ("bash", {"command": f"echo {i} >> count.txt"}),
    )
    for i in range(1, 4)
] + [
    turn(
        "All four.",
        ("bash", {"command": "echo 4 >> count.txt"}),
        ("submit", {"summary": "counted"}),
    )
]


def test_killed_mid_generation_resumes_from_the_saved_cache_keeping_every_event(tmp_path):
    def mid_step_3(events):
        started = any(e["type"] == "step_started" and e["step"] == 3 for e in events)
        return (
            started and sum(e["type"] == "reasoning_delta" and e["step"] == 3 for e in events) >= 3
        )

    sessions, project, journal = run_child_until(tmp_path, SCRIPT, mid_step_3)
    before = journal.read_bytes()
    kept = before[: before.rfind(b"\n") + 1]
    agent, box = resume(sessions, project, SCRIPT)
    try:
        assert agent._session.position == 2 and agent.conversation.in_context == 5
        result = agent.send(None)
    finally:
        box.stop()
    assert result.status == ev.RunStatus.submitted and result.summary == "counted"
    after = journal.read_bytes()
    assert after.startswith(kept)  # every event written before the kill, byte for byte
    events = [ev.parse_event(line) for line in after.splitlines()]
    assert [e.seq for e in events] == list(range(len(events)))
    # No re-prefill: the first prompt after the resume is only the pending tool result.
    first_prompt = agent._session.prompts[0]
    assert first_prompt == (
        "<｜User｜><tool_result>[exit code 0]</tool_result><｜Assistant｜><think>"
    )
    resumed_step = next(
        e for e in events[len(kept.splitlines()) :] if isinstance(e, ev.StepStarted)
    )
    assert resumed_step.step == 4 and resumed_step.context_tokens > 0
    assert (project / "count.txt").read_text() == "1\n2\n3\n4\n"


def test_killed_during_a_tool_resumes_with_that_call_marked_interrupted(tmp_path):
    script = [
        turn("Start.", ("bash", {"command": "echo 1 >> count.txt"})),
        turn("Slow one.", ("bash", {"command": "sleep 60; echo never >> count.txt"})),
        turn("Go on.", ("submit", {"summary": "resumed"})),
    ]

    def in_step_2_tool(events):
        return any(
            e["type"] == "message" and e["step"] == 2 and e["message"]["role"] == "assistant"
            for e in events
        )

    sessions, project, journal = run_child_until(tmp_path, script, in_step_2_tool, settle=0.5)
    kept = journal.read_bytes()
    agent, box = resume(sessions, project, script)
    try:
        messages = agent.conversation.messages
        assert messages[-1].role == "tool" and messages[-1].content == INTERRUPTED_CALL
        assert agent._session.position == 1  # the cache saved at the end of step 1
        result = agent.send(None)
    finally:
        box.stop()
    assert result.status == ev.RunStatus.submitted and result.summary == "resumed"
    assert journal.read_bytes().startswith(kept)
    # Step 2's turn, newer than the cache, went back in as the exact text the model wrote.
    assert script[1] in agent._session.prompts[0]
    assert (project / "count.txt").read_text() == "1\n"


EMBEDDED_CHILD = """
import sys
from pathlib import Path
import torch, tools
from model import ModelConfig
from agent.api import Agent
from agent.backends.embedded import EmbeddedBackend, untrained_tiny_model
from agent.config import AgentConfig

torch.set_num_threads(1)
sessions, project = Path(sys.argv[1]), Path(sys.argv[2])
backend = EmbeddedBackend(*untrained_tiny_model(ModelConfig), model_name="untrained-tiny",
                          context_limit=16384)
cfg = AgentConfig(sessions_dir=sessions, system_prompt="Agent.", approval={"mode": "auto"},
                  backend={"max_tokens_per_step": 48}, limits={"max_format_failures": 50})
Agent(cfg, backend=backend, sandbox=tools.LocalSandbox(project),
      tools=[tools.SubmitTool()]).run("Say hello.")
"""


def test_embedded_session_killed_mid_step_resumes_in_a_new_process_without_re_prefill(tmp_path):
    import torch

    from agent.backends.embedded import EmbeddedBackend, untrained_tiny_model
    from model import ModelConfig

    sessions, project = tmp_path / "sessions", tmp_path / "project"
    project.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", EMBEDDED_CHILD, str(sessions), str(project)],
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            journals = list(sessions.glob("*/events.jsonl"))
            lines = journals[0].read_bytes().split(b"\n")[:-1] if journals else []
            if any(
                json.loads(line)["type"] == "step_started" and json.loads(line)["step"] == 2
                for line in lines
            ):
                break
            time.sleep(0.02)
        time.sleep(0.2)
        assert child.poll() is None, "the child ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    journal = journals[0]
    kept = journal.read_bytes()
    kept = kept[: kept.rfind(b"\n") + 1]
    saved = [e for e in map(ev.parse_event, kept.splitlines()) if isinstance(e, ev.StepFinished)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        backend = EmbeddedBackend(
            *untrained_tiny_model(ModelConfig), model_name="untrained-tiny", context_limit=16384
        )
        cfg = AgentConfig(
            sessions_dir=sessions,
            system_prompt="Agent.",
            approval={"mode": "auto"},
            backend={"max_tokens_per_step": 8},
            limits={"max_steps": 1},
        )
        events = []
        agent = Agent.resume(
            journal.parent.name,
            cfg,
            backend=backend,
            sandbox=tools.LocalSandbox(project),
            tools=[tools.SubmitTool()],
            on_event=events.append,
        )
        assert agent._session.context_tokens == saved[-1].usage.context_tokens  # loaded
        result = agent.send(None)
        agent.close()
    finally:
        torch.set_num_threads(threads)
    assert result.status not in (ev.RunStatus.error, ev.RunStatus.backend_error), result.summary
    assert journal.read_bytes().startswith(kept)
    usage = next(e.usage for e in events if isinstance(e, ev.StepFinished))
    step = next(e for e in events if isinstance(e, ev.StepStarted))
    assert usage.cached_tokens == saved[-1].usage.context_tokens  # nothing prefilled again
    assert usage.prompt_tokens - usage.cached_tokens == step.prompt_tokens
    assert step.prompt_tokens < usage.cached_tokens // 4
