"""The editor (Enter sends, Ctrl+J a newline, history) and the slash commands."""

from __future__ import annotations

import pytest

from tui import ChatApp
from tui.blocks import UserBlock
from tui.commands import UnknownCommand, parse_command
from tui.composer import Composer
from tui.screens import HelpScreen, SessionsScreen
from tui.transcript import Transcript

pytestmark = pytest.mark.anyio


async def type_text(pilot, text: str) -> None:
    for key in text:
        await pilot.press(
            {" ": "space", "/": "slash", "-": "minus", ".": "full_stop"}.get(key, key)
        )


async def test_enter_sends_ctrl_j_breaks_the_line_and_up_recalls(make_factory, kit):
    app = ChatApp(make_factory([kit.submit("one"), kit.submit("two")]))
    async with app.run_test(size=(100, 30)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        composer = app.query_one(Composer)
        await type_text(pilot, "first")
        await pilot.press("ctrl+j")
        await type_text(pilot, "line")
        assert composer.text == "first\nline"
        await pilot.press("enter")
        await kit.wait_for(pilot, lambda: not app.running and app.agent.session_id)
        shown = [b.text for b in app.query_one(Transcript).model.blocks if isinstance(b, UserBlock)]
        assert shown == ["first\nline"] and composer.text == ""
        await type_text(pilot, "second")
        await pilot.press("enter")
        await kit.wait_for(
            pilot, lambda: not app.running and len(app.agent.conversation.messages) > 4
        )
        await pilot.press("up")
        assert composer.text == "second"
        await pilot.press("up")
        assert composer.text == "first\nline"
        await pilot.press("down", "down")
        assert composer.text == ""


def test_slash_commands_parse_and_unknown_ones_are_named():
    assert parse_command("/approval auto").name == "approval"
    assert parse_command("/approval auto").argument == "auto"
    assert parse_command("hello /quit") is None and parse_command("//etc") is None
    with pytest.raises(UnknownCommand, match="unknown command /frobnicate; commands: /help"):
        parse_command("/frobnicate")


async def test_commands_change_approval_export_and_resume(make_factory, kit, tmp_path):
    factory = make_factory([kit.submit("first"), kit.submit("second")], approval="ask")
    app = ChatApp(factory)
    async with app.run_test(size=(100, 30)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        await pilot.click("#composer")
        await type_text(pilot, "/approval auto")
        await pilot.press("enter")
        assert app.agent.config.approval.mode == "auto"
        assert app.query_one("#status").status.approval_mode == "auto"
        await type_text(pilot, "/help")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await type_text(pilot, "hi")
        await pilot.press("enter")
        await kit.wait_for(pilot, lambda: not app.running and app.agent.session_id)
        first = app.agent.session_id
        out = tmp_path / "out.md"
        app._command(parse_command(f"/export {out}"))
        text = out.read_text()
        assert text.startswith(f"# Session {first}") and "## User" in text and "hi" in text
        # /model: the model in use and its window; another cannot take over, and it says why.
        await type_text(pilot, "/model")
        await pilot.press("enter")
        await type_text(pilot, "/model deepseek-v4")
        await pilot.press("enter")
        await pilot.pause()
        shown, asked = [n for n in app._notifications if n.title == "/model"][-2:]
        assert "backend: scripted · model: scripted-test" in shown.message
        assert "context window: " in shown.message and "used: " in shown.message
        assert shown.severity == "information" and "Cannot switch" not in shown.message
        assert asked.severity == "warning"
        assert "Cannot switch to 'deepseek-v4' in this session." in asked.message
        assert "holds its cache" in asked.message and f"dsv4 chat --resume {first}" in asked.message
        # /sessions lists it; choosing it in another app reopens it.
        await type_text(pilot, "/sessions")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert [s.id for s in app.screen.sessions] == [first]
        await pilot.press("escape")
    again = ChatApp(factory)
    async with again.run_test(size=(100, 30)) as pilot:
        await kit.wait_for(pilot, lambda: again.agent is not None)
        again._command(parse_command(f"/resume {first[:17]}"))
        await kit.wait_for(
            pilot, lambda: again.agent is not None and again.agent.session_id == first
        )
        await kit.wait_for(pilot, lambda: again.query_one(Transcript).model.blocks)
        texts = [getattr(b, "text", "") for b in again.query_one(Transcript).model.blocks]
        assert "hi" in texts


async def test_page_keys_scroll_the_transcript_while_typing(make_factory, kit):
    factory = make_factory([])
    app = ChatApp(factory, resume=kit.write_session(factory.config.sessions_dir, steps=20))
    async with app.run_test(size=(100, 30)) as pilot:
        await kit.wait_for(pilot, lambda: app.agent is not None)
        transcript = app.query_one(Transcript)
        await pilot.pause()
        bottom = transcript.scroll_y
        assert bottom > 0 and app.focused is app.query_one(Composer)
        await pilot.press("pageup", "pageup")
        await kit.wait_for(pilot, lambda: transcript.scroll_y < bottom - 20)
        await pilot.press("pagedown", "pagedown")
        await kit.wait_for(pilot, lambda: transcript.is_vertical_scroll_end)
        assert app.focused is app.query_one(Composer)
