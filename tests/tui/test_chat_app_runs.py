"""The app driven by Textual's Pilot against the scripted backend, tools in real sandboxes:
sending a task, approving and denying commands, interrupting, resuming."""

from __future__ import annotations

import pytest

from tui import ChatApp
from tui.approval_screen import ApprovalScreen
from tui.blocks import ContentBlock, NoteBlock, ReasoningBlock, ToolBlock, UserBlock
from tui.transcript import Transcript, plain_lines

pytestmark = pytest.mark.anyio


def blocks(app: ChatApp, kind: type | None = None) -> list:
    found = app.query_one(Transcript).model.blocks
    return [b for b in found if kind is None or isinstance(b, kind)]


async def send(pilot, text: str) -> None:
    await pilot.click("#composer")
    for key in text:
        await pilot.press("space" if key == " " else key)
    await pilot.press("enter")


async def test_a_task_streams_into_the_transcript_and_status_bar(make_factory, kit):
    script = [
        kit.turn(
            "I should greet from the shell. Then I will read the notes file, check its content.",
            ("bash", {"command": "echo hi from $0 && cat notes.txt"}),
            content="Running **echo**.",
        ),
        kit.submit("said hi"),
    ]
    app = ChatApp(make_factory(script))
    async with app.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await send(pilot, "say hi")
        await kit.wait_for(pilot, lambda: blocks(app, NoteBlock) and not app.running)
        user = blocks(app, UserBlock)
        assert [b.text for b in user] == ["say hi"]
        reasoning = blocks(app, ReasoningBlock)[0]
        assert reasoning.text.startswith("I should greet") and not reasoning.expanded
        assert blocks(app, ContentBlock)[0].text.strip() == "Running **echo**."
        bash, done = blocks(app, ToolBlock)
        assert bash.name == "bash" and bash.data["exit_code"] == 0
        assert "hi from bash\nalpha" in bash.output and not bash.is_error
        assert done.name == "submit"
        assert "submitted: said hi" in blocks(app, NoteBlock)[-1].text
        status = app.query_one("#status").status
        assert (status.step, status.backend, status.model) == (2, "scripted", "scripted-test")
        assert status.context_tokens > 0 and status.context_limit == 1_000_000
        assert status.activity == "idle (submitted)"
        screen = "\n".join(plain_lines(app.query_one(Transcript)))
        assert "▸ reasoning" in screen and "exit 0" in screen and "Running echo." in screen
        # Reasoning is one line until clicked.
        assert "check its content" not in screen
        transcript = app.query_one(Transcript)
        row = next(i for i, line in enumerate(plain_lines(transcript)) if "▸ reasoning" in line)
        await pilot.click(Transcript, offset=(3, row))
        assert reasoning.expanded
        assert "check its content" in "\n".join(plain_lines(transcript))


async def test_approve_one_command_and_deny_another_with_a_message(make_factory, kit, project):
    script = [
        kit.turn("", ("bash", {"command": "echo approved > a.txt"})),
        kit.turn("", ("bash", {"command": "echo denied > b.txt"})),
        kit.submit("tried both"),
    ]
    app = ChatApp(make_factory(script, sandbox="docker", approval="ask"))
    async with app.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await send(pilot, "write two files")
        await kit.wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen), timeout=60)
        assert app.screen.query_one("#approval-call").content.code == "echo approved > a.txt"
        await pilot.press("y")
        await kit.wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, ApprovalScreen)
                and app.screen.request.arguments["command"] == "echo denied > b.txt"
            ),
        )
        await pilot.press("m")
        for key in "use python":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        await kit.wait_for(pilot, lambda: not app.running and blocks(app, NoteBlock)[-1:])
        first, second, _ = blocks(app, ToolBlock)
        assert first.approval == "approved" and first.data["exit_code"] == 0
        assert second.approval == "denied: denied by the user: use python"
        assert (project / "a.txt").read_text() == "approved\n"
        assert not (project / "b.txt").exists()
        told = [m.content for m in app.agent.conversation.messages if m.role == "tool"]
        assert any("use python" in text for text in told)


async def test_allow_always_adds_a_rule_for_the_pattern(make_factory, kit):
    script = [
        kit.turn("", ("bash", {"command": "echo one"})),
        kit.turn("", ("bash", {"command": "echo two"})),
        kit.turn("", ("bash", {"command": "ls"})),
        kit.submit("ok"),
    ]
    app = ChatApp(make_factory(script, approval="ask"))
    async with app.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await send(pilot, "echo")
        await kit.wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        assert app.screen.query_one("#approval-pattern").value == "echo *"
        await pilot.press("a")
        # `echo two` matches the new rule; `ls` asks again.
        await kit.wait_for(
            pilot,
            lambda: (
                isinstance(app.screen, ApprovalScreen)
                and app.screen.request.arguments["command"] == "ls"
            ),
        )
        await pilot.press("n")
        await kit.wait_for(pilot, lambda: not app.running and blocks(app, NoteBlock)[-1:])
        one, two, ls, _ = blocks(app, ToolBlock)
        assert (one.approval, two.approval) == ("approved", "")
        assert two.output.startswith("two") and ls.approval == "denied: denied by the user"
        rules = app.agent.config.approval.rules
        assert [(r.tool, r.pattern, r.action) for r in rules] == [("bash", "echo *", "allow")]


async def test_escape_interrupts_the_step_and_the_session_goes_on(make_factory, kit):
    long_thought = "Let me think about this carefully. " * 40
    script = [kit.turn(long_thought, ("bash", {"command": "echo never"})), kit.submit("resumed")]
    app = ChatApp(make_factory(script, delay_s=0.02))
    async with app.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await send(pilot, "think")
        await kit.wait_for(
            pilot, lambda: len("".join(b.text for b in blocks(app, ReasoningBlock))) > 48
        )
        await pilot.press("escape")
        await kit.wait_for(pilot, lambda: not app.running and blocks(app, NoteBlock)[-1:])
        shown = blocks(app, ReasoningBlock)[0].text
        assert 0 < len(shown) < len(long_thought)
        assert "cancelled" in blocks(app, NoteBlock)[-1].text
        assert any(b.text == "⏸ interrupted" for b in blocks(app, NoteBlock))
        # Nothing shown is lost: the partial reasoning is in the conversation.
        assistant = [m for m in app.agent.conversation.messages if m.role == "assistant"][-1]
        assert assistant.reasoning_content.strip() == shown.strip()
        await send(pilot, "go on")
        await kit.wait_for(
            pilot, lambda: not app.running and "submitted" in blocks(app, NoteBlock)[-1].text
        )
        assert [b.text for b in blocks(app, UserBlock)] == ["think", "go on"]


async def test_resume_reopens_the_transcript_and_continues(make_factory, kit):
    script = [
        kit.turn("First look.", ("bash", {"command": "cat notes.txt"})),
        kit.submit("looked"),
        kit.submit("looked again"),
    ]
    factory = make_factory(script)
    app = ChatApp(factory)
    async with app.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await send(pilot, "look")
        await kit.wait_for(pilot, lambda: not app.running and blocks(app, NoteBlock)[-1:])
        session_id = app.agent.session_id
        before = [
            (type(b).__name__, getattr(b, "text", getattr(b, "output", ""))) for b in blocks(app)
        ]
        await pilot.press("ctrl+q")
    again = ChatApp(factory, resume=session_id)
    async with again.run_test(size=(100, 40)) as pilot:
        await kit.wait_for(pilot, lambda: again.agent is not None and blocks(again))
        after = [
            (type(b).__name__, getattr(b, "text", getattr(b, "output", ""))) for b in blocks(again)
        ]
        assert after == before
        assert again.query_one("#status").status.step == 2
        await send(pilot, "once more")
        await kit.wait_for(
            pilot, lambda: not again.running and "looked again" in blocks(again, NoteBlock)[-1].text
        )
        assert "resumed" in blocks(again, NoteBlock)[-2].text or any(
            "resumed" in b.text for b in blocks(again, NoteBlock)
        )
